//! Authenticode for PE images: the image hash, and an embedded signature
//! (`docs/notes/packaging.md` §1–§2; the Authenticode PE specification, "Calculating the PE Image
//! Hash"; the PE Format specification, "The Attribute Certificate Table (Image Only)").
//!
//! - **Image hash**: the whole file except three holes: the optional header's `CheckSum`, the
//!   certificate-table entry of the data directories (index 4), and the certificate table itself
//!   (which sits at the end of the file). This is osslsigncode's reading of the specification,
//!   and equals the specification's section-by-section order for images whose sections follow
//!   each other, as the linker writes them.
//! - **Padding**: an unsigned image whose length is not a multiple of 8 gets zero bytes up to the
//!   next multiple, before hashing, so that the hash a catalog records for the unsigned image is
//!   the hash of the signed one.
//! - **Embedding**: one `WIN_CERTIFICATE` (`dwLength` = 8 + the DER + its zero padding to 8,
//!   `wRevision` 0x0200, `wCertificateType` 0x0002 PKCS_SIGNED_DATA) appended; data directory 4
//!   holds its **file offset** and size; the checksum is recomputed last (it is outside the hash,
//!   so the signature stays valid).
//! - **Re-signing** first removes the existing table, so a signed image signed again carries only
//!   the new signature.

use der::Encode;
use der::asn1::OctetString;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::base::error::{Context, Error, Result, bail};
use crate::image::pe::{self, DIR_SECURITY, PeImage};
use crate::packaging::pkcs7::{self, DigestInfo, Signer, SpcIndirectDataContent, oid};

/// `WIN_CERT_REVISION_2_0`.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// `WIN_CERTIFICATE` header size (`dwLength`, `wRevision`, `wCertificateType`).
const WIN_CERTIFICATE_HEADER: usize = 8;

/// Where the parts the hash skips are.
struct Holes {
    checksum: usize,
    security_entry: usize,
    /// File offset where the certificate table starts (the file's length if there is none).
    table: usize,
}

fn not_a_pe(e: &pe::FormatError) -> Error {
    Error::new(format!("cannot sign: {e}"))
}

fn holes(bytes: &[u8]) -> Result<Holes> {
    let image = PeImage::parse(bytes).map_err(|e| not_a_pe(&e))?;
    let security_entry = image.data_directory_offset(DIR_SECURITY).ok_or_else(|| {
        Error::new(
            "the image declares fewer than 5 data directories, so it has no certificate-table \
             entry to sign into (NumberOfRvaAndSizes < 5); relink it with a standard linker",
        )
    })?;
    let table = match image.data_directory(DIR_SECURITY) {
        Some(d) if d.is_present() => {
            let start = usize::try_from(d.virtual_address).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(d.size).unwrap_or(usize::MAX));
            if end != bytes.len() || start < image.optional_header.size_of_headers as usize {
                bail!(
                    "the certificate table (file offset 0x{:X}, 0x{:X} bytes) is not at the end of \
                     the {}-byte file: the image was modified after signing; rebuild it",
                    d.virtual_address,
                    d.size,
                    bytes.len()
                );
            }
            start
        }
        _ => bytes.len(),
    };
    Ok(Holes {
        checksum: image.checksum_offset(),
        security_entry,
        table,
    })
}

/// The Authenticode hash of `bytes` (signed or not) with digest `D`. An unsigned image is hashed
/// as if zero-padded to a multiple of 8 bytes, as [`sign_image`] pads it.
pub fn image_hash<D: Digest>(bytes: &[u8]) -> Result<Vec<u8>> {
    let h = holes(bytes)?;
    let mut d = D::new();
    d.update(&bytes[..h.checksum]);
    d.update(&bytes[h.checksum + 4..h.security_entry]);
    d.update(&bytes[h.security_entry + 8..h.table]);
    if h.table == bytes.len() {
        d.update(&[0u8; 8][..padding(bytes.len())]);
    }
    Ok(d.finalize().to_vec())
}

/// The SHA-256 Authenticode hash (what the signature and a catalog's member record).
pub fn image_sha256(bytes: &[u8]) -> Result<Vec<u8>> {
    image_hash::<Sha256>(bytes)
}

/// The SHA-1 Authenticode hash (a version 2 catalog's compatibility member).
pub fn image_sha1(bytes: &[u8]) -> Result<Vec<u8>> {
    image_hash::<Sha1>(bytes)
}

fn padding(len: usize) -> usize {
    len.next_multiple_of(8) - len
}

/// `bytes` without its certificate table: the table cut off, the directory entry zeroed. The
/// checksum is left as it was (it is outside the hash; [`sign_image`] recomputes it).
pub fn strip_signature(bytes: &[u8]) -> Result<Vec<u8>> {
    let h = holes(bytes)?;
    let mut out = bytes[..h.table].to_vec();
    out[h.security_entry..h.security_entry + 8].fill(0);
    Ok(out)
}

/// The DER PKCS#7 of the embedded signature, if the image has one.
pub fn embedded_signature(bytes: &[u8]) -> Result<Option<&[u8]>> {
    let h = holes(bytes)?;
    if h.table == bytes.len() {
        return Ok(None);
    }
    let table = &bytes[h.table..];
    let length = pe::u32_at(table, 0).unwrap_or(0) as usize;
    let (revision, kind) = (pe::u16_at(table, 4), pe::u16_at(table, 6));
    if length < WIN_CERTIFICATE_HEADER
        || length > table.len()
        || revision != Some(WIN_CERT_REVISION_2_0)
        || kind != Some(WIN_CERT_TYPE_PKCS_SIGNED_DATA)
    {
        bail!("the certificate table does not hold a WIN_CERTIFICATE with a PKCS#7 signature");
    }
    let body = &table[WIN_CERTIFICATE_HEADER..length];
    // The DER may be followed by zero padding: take exactly one TLV.
    let der_len = der::AnyRef::from_der_partial(body)?;
    Ok(Some(&body[..der_len]))
}

/// Helper: the length of the first DER TLV in a buffer that may have trailing padding.
trait DerPartial {
    fn from_der_partial(bytes: &[u8]) -> Result<usize>;
}

impl DerPartial for der::AnyRef<'_> {
    fn from_der_partial(bytes: &[u8]) -> Result<usize> {
        let mut reader = der::SliceReader::new(bytes).context("reading the signature")?;
        let header =
            <der::Header as der::Decode>::decode(&mut reader).context("reading the signature")?;
        let total = header
            .length
            .for_tlv()
            .context("reading the signature's length")?;
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if total > bytes.len() {
            bail!("the signature is truncated");
        }
        Ok(total)
    }
}

/// The `SpcIndirectDataContent` an embedded signature signs: the image's SHA-256 hash.
fn indirect_data(hash: &[u8]) -> Result<Vec<u8>> {
    SpcIndirectDataContent {
        data: pkcs7::pe_image_data(&[], 0)?,
        message_digest: DigestInfo {
            algorithm: pkcs7::algorithm(oid::SHA256),
            digest: OctetString::new(hash).context("encoding the image hash")?,
        },
    }
    .to_der()
    .context("encoding SpcIndirectDataContent")
}

/// `bytes` with an embedded SHA-256 Authenticode signature by `signer`, replacing any signature
/// it had, and a recomputed checksum.
pub fn sign_image(bytes: &[u8], signer: &Signer) -> Result<Vec<u8>> {
    let mut out = strip_signature(bytes)?;
    out.resize(out.len() + padding(out.len()), 0);
    let hash = image_sha256(&out)?;
    let pkcs7 = pkcs7::sign(signer, oid::SPC_INDIRECT_DATA, &indirect_data(&hash)?)?;
    let table_offset = out.len();
    let length = WIN_CERTIFICATE_HEADER + pkcs7.len() + padding(pkcs7.len());
    let too_big = || Error::new("the signed image would be larger than 4 GiB");
    let length32 = u32::try_from(length).map_err(|_| too_big())?;
    let offset32 = u32::try_from(table_offset).map_err(|_| too_big())?;
    out.extend_from_slice(&length32.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(&pkcs7);
    out.resize(table_offset + length, 0);

    let h = holes(&out[..table_offset])?;
    out[h.security_entry..h.security_entry + 4].copy_from_slice(&offset32.to_le_bytes());
    out[h.security_entry + 4..h.security_entry + 8].copy_from_slice(&length32.to_le_bytes());
    let sum = pe::pe_checksum(&out, h.checksum);
    out[h.checksum..h.checksum + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Checks an embedded signature the way a verifier does: the PKCS#7 verifies (signature,
/// messageDigest) with `cert`'s key, and the hash it signs is the image's current hash.
pub fn verify_image(bytes: &[u8], cert: &x509_cert::Certificate) -> Result<()> {
    let Some(sig) = embedded_signature(bytes)? else {
        bail!("the image is not signed");
    };
    let v = pkcs7::verify(sig, Some(cert))?;
    if v.content_type != oid::SPC_INDIRECT_DATA {
        bail!(
            "the signature's content is {}, not SpcIndirectData",
            v.content_type
        );
    }
    let content: SpcIndirectDataContent =
        der::Decode::from_der(&v.content).context("reading SpcIndirectDataContent")?;
    if content.message_digest.digest.as_bytes() != image_sha256(bytes)?.as_slice() {
        bail!("the image hash does not match the signature: the image was modified after signing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pe::testimage::{CHECKSUM, data_directory, good};

    #[test]
    fn signing_embeds_a_valid_signature_and_checksum_and_resigning_replaces_it() {
        let signer = crate::packaging::cert::tests::test_signer();
        let image = good();
        let sealed = sign_image(&image, &signer).unwrap();
        verify_image(&sealed, &signer.cert).unwrap();
        let pe = PeImage::parse(&sealed).unwrap();
        assert_eq!(pe.optional_header.checksum, pe.computed_checksum());
        let dir = pe.data_directory(DIR_SECURITY).unwrap();
        assert_eq!(
            dir.virtual_address as usize,
            image.len().next_multiple_of(8)
        );
        assert_eq!(
            dir.virtual_address as usize + dir.size as usize,
            sealed.len()
        );
        assert_eq!(dir.size % 8, 0);
        assert_eq!(
            pe::u16_at(&sealed, dir.virtual_address as usize + 4),
            Some(0x0200)
        );
        assert_eq!(
            pe::u16_at(&sealed, dir.virtual_address as usize + 6),
            Some(0x0002)
        );
        // The hash ignores the signature: unsigned (padded) and sealed images hash alike.
        assert_eq!(
            image_sha256(&image).unwrap(),
            image_sha256(&sealed).unwrap()
        );
        // Signing again replaces the signature instead of adding one.
        let again = sign_image(&sealed, &signer).unwrap();
        assert_eq!(again.len(), sealed.len());
        verify_image(&again, &signer.cert).unwrap();
        assert_eq!(
            strip_signature(&again).unwrap(),
            strip_signature(&sealed).unwrap()
        );
    }

    #[test]
    fn the_hash_skips_checksum_and_security_entry_but_nothing_else() {
        let image = good();
        let base = image_sha256(&image).unwrap();
        let mut b = image.clone();
        b[CHECKSUM] ^= 0xFF;
        assert_eq!(image_sha256(&b).unwrap(), base);
        let mut b = image.clone();
        b[CHECKSUM + 4] ^= 1; // Subsystem, right after the checksum
        assert_ne!(image_sha256(&b).unwrap(), base);
        let mut b = image.clone();
        b[0x450] ^= 1; // section data
        assert_ne!(image_sha256(&b).unwrap(), base);
        // The certificate-table entry: covered by signing, which sets it and keeps the hash.
    }

    #[test]
    fn an_image_of_odd_length_is_padded_to_8_before_hashing_and_signing() {
        let signer = crate::packaging::cert::tests::test_signer();
        let mut image = good();
        image.extend_from_slice(&[1, 2, 3]);
        crate::image::pe::testimage::fix_checksum(&mut image);
        let unsigned_hash = image_sha256(&image).unwrap();
        let sealed = sign_image(&image, &signer).unwrap();
        let dir = PeImage::parse(&sealed)
            .unwrap()
            .data_directory(DIR_SECURITY)
            .unwrap();
        assert_eq!(dir.virtual_address as usize, image.len() + 5);
        assert_eq!(&sealed[image.len()..image.len() + 5], &[0; 5]);
        // The catalog's hash of the unsigned image is the signed image's hash.
        assert_eq!(image_sha256(&sealed).unwrap(), unsigned_hash);
        verify_image(&sealed, &signer.cert).unwrap();
    }

    #[test]
    fn a_tampered_signed_image_fails_verification() {
        let signer = crate::packaging::cert::tests::test_signer();
        let mut sealed = sign_image(&good(), &signer).unwrap();
        sealed[0x410] ^= 1;
        let e = verify_image(&sealed, &signer.cert).unwrap_err().to_string();
        assert!(e.contains("modified after signing"), "{e}");
    }

    #[test]
    fn what_is_not_a_pe_image_is_refused() {
        let signer = crate::packaging::cert::tests::test_signer();
        let e = sign_image(b"MZ nothing", &signer).unwrap_err().to_string();
        assert!(e.contains("not a PE image"), "{e}");
        let mut image = good();
        let at = data_directory(DIR_SECURITY);
        let len = u32::try_from(image.len()).unwrap();
        image[at..at + 4].copy_from_slice(&(len - 16).to_le_bytes());
        image[at + 4..at + 8].copy_from_slice(&8u32.to_le_bytes());
        let e = sign_image(&image, &signer).unwrap_err().to_string();
        assert!(e.contains("not at the end"), "{e}");
    }
}

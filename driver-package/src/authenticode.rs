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

use authenticode::{AttributeCertificateIterator, AuthenticodeSignature, authenticode_digest};
use der::Encode;
use der::asn1::OctetString;
use sha1::Sha1;
use sha2::digest::Update;
use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result, bail};
use crate::pe::{self, PeHeaders};
use crate::pkcs7::{self, DigestInfo, Signer, SpcIndirectDataContent, oid};

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

fn headers(bytes: &[u8]) -> Result<PeHeaders<'_>> {
    PeHeaders::parse(bytes).map_err(|e| Error::new(format!("cannot sign: {e}")))
}

fn holes(bytes: &[u8]) -> Result<Holes> {
    let image = headers(bytes)?;
    let security_entry = image.security_entry_offset.ok_or_else(|| {
        Error::new(
            "the image declares fewer than 5 data directories, so it has no certificate-table \
             entry to sign into (NumberOfRvaAndSizes < 5); relink it with a standard linker",
        )
    })?;
    let table = match image.certificate_table() {
        Some((start, size)) => {
            let end = start.saturating_add(size);
            if end != bytes.len() || start < image.size_of_headers {
                bail!(
                    "the certificate table (file offset 0x{start:X}, 0x{size:X} bytes) is not at \
                     the end of the {}-byte file: the image was modified after signing; rebuild it",
                    bytes.len()
                );
            }
            start
        }
        None => bytes.len(),
    };
    Ok(Holes {
        checksum: image.checksum_offset,
        security_entry,
        table,
    })
}

/// The Authenticode hash of `bytes` (signed or not) with digest `D`, computed by
/// [`authenticode::authenticode_digest`] in the specification's order (headers, sections by file
/// offset, then what follows them up to the certificate table). An unsigned image is hashed as if
/// zero-padded to a multiple of 8 bytes, as [`sign_image`] pads it.
///
/// # Errors
/// When `bytes` is not a PE image with a certificate-table entry, or its certificate table is
/// not at the end of the file.
pub fn image_hash<D: Digest + Update>(bytes: &[u8]) -> Result<Vec<u8>> {
    let h = holes(bytes)?;
    let padded;
    let bytes = if h.table == bytes.len() && padding(bytes.len()) > 0 {
        padded = [bytes, &[0u8; 8][..padding(bytes.len())]].concat();
        &padded[..]
    } else {
        bytes
    };
    let image = headers(bytes)?;
    let mut d = D::new();
    authenticode_digest(&image, &mut d).map_err(|e| {
        Error::new(format!(
            "cannot hash the image: {e} (a section or the certificate table lies outside the file)"
        ))
    })?;
    Ok(d.finalize().to_vec())
}

/// The SHA-256 Authenticode hash (what the signature and a catalog's member record).
///
/// # Errors
/// As [`image_hash`].
pub fn image_sha256(bytes: &[u8]) -> Result<Vec<u8>> {
    image_hash::<Sha256>(bytes)
}

/// The SHA-1 Authenticode hash (a version 2 catalog's compatibility member).
///
/// # Errors
/// As [`image_hash`].
pub fn image_sha1(bytes: &[u8]) -> Result<Vec<u8>> {
    image_hash::<Sha1>(bytes)
}

fn padding(len: usize) -> usize {
    len.next_multiple_of(8) - len
}

/// `bytes` without its certificate table: the table cut off, the directory entry zeroed. The
/// checksum is left as it was (it is outside the hash; [`sign_image`] recomputes it).
///
/// # Errors
/// As [`image_hash`].
pub fn strip_signature(bytes: &[u8]) -> Result<Vec<u8>> {
    let h = holes(bytes)?;
    let mut out = bytes[..h.table].to_vec();
    out[h.security_entry..h.security_entry + 8].fill(0);
    Ok(out)
}

/// The embedded signature, parsed by [`authenticode::AuthenticodeSignature`], if the image has
/// one: the first `WIN_CERTIFICATE` of the certificate table, which must be a PKCS#7
/// `SignedData` of revision 2.0.
///
/// # Errors
/// When the image is not a PE image, or its certificate table does not hold such a signature.
pub fn embedded_signature(bytes: &[u8]) -> Result<Option<AuthenticodeSignature>> {
    holes(bytes)?;
    let image = headers(bytes)?;
    let refuse = |why: String| {
        Error::new(format!(
            "the certificate table does not hold a WIN_CERTIFICATE with a PKCS#7 signature: {why}"
        ))
    };
    let Some(mut table) =
        AttributeCertificateIterator::new(&image).map_err(|e| refuse(e.to_string()))?
    else {
        return Ok(None);
    };
    match table.next() {
        None => Err(refuse("the table is empty".into())),
        Some(Err(e)) => Err(refuse(e.to_string())),
        Some(Ok(entry)) => entry
            .get_authenticode_signature()
            .map(Some)
            .map_err(|e| refuse(e.to_string())),
    }
}

/// The DER of the embedded signature's PKCS#7, if the image has one (without the zero padding
/// of its `WIN_CERTIFICATE`).
///
/// # Errors
/// As [`embedded_signature`].
pub fn embedded_signature_der(bytes: &[u8]) -> Result<Option<&[u8]>> {
    let h = holes(bytes)?;
    if h.table == bytes.len() {
        return Ok(None);
    }
    let table = &bytes[h.table..];
    let length = pe::u32_at(table, 0).unwrap_or(0) as usize;
    if length < WIN_CERTIFICATE_HEADER || length > table.len() {
        bail!("the certificate table does not hold a WIN_CERTIFICATE with a PKCS#7 signature");
    }
    let body = &table[WIN_CERTIFICATE_HEADER..length];
    let mut reader = der::SliceReader::new(body).context("reading the signature")?;
    let header =
        <der::Header as der::Decode>::decode(&mut reader).context("reading the signature")?;
    let total = header
        .length
        .for_tlv()
        .context("reading the signature's length")?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    if total > body.len() {
        bail!("the signature is truncated");
    }
    Ok(Some(&body[..total]))
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
///
/// # Errors
/// When `bytes` is not a PE image that can be signed (see [`image_hash`]), or signing fails.
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
/// messageDigest) with `cert`'s key, it is an Authenticode signature
/// ([`authenticode::AuthenticodeSignature`]), and the hash it signs is the image's current hash.
///
/// # Errors
/// When the image is unsigned, the signature does not verify with `cert`, or the image changed
/// after signing.
pub fn verify_image(bytes: &[u8], cert: &x509_cert::Certificate) -> Result<()> {
    let Some(der) = embedded_signature_der(bytes)? else {
        bail!("the image is not signed");
    };
    let v = pkcs7::verify(der, Some(cert))?;
    if v.content_type != oid::SPC_INDIRECT_DATA {
        bail!(
            "the signature's content is {}, not SpcIndirectData",
            v.content_type
        );
    }
    let Some(signature) = embedded_signature(bytes)? else {
        bail!("the image is not signed");
    };
    if signature.digest() != image_sha256(bytes)?.as_slice() {
        bail!("the image hash does not match the signature: the image was modified after signing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pe::{u16_at, u32_at};
    use crate::testimage::{CHECKSUM, SECURITY_ENTRY, fix_checksum, good, image};

    /// (file offset, size) of the certificate table.
    fn table(bytes: &[u8]) -> (usize, usize) {
        PeHeaders::parse(bytes)
            .unwrap()
            .certificate_table()
            .unwrap()
    }

    /// The image hash the way osslsigncode reads the specification: the whole file but the
    /// checksum, the certificate-table entry and the table (zero-padded to 8 when unsigned).
    fn hash_by_holes(bytes: &[u8]) -> Vec<u8> {
        let end = PeHeaders::parse(bytes)
            .unwrap()
            .certificate_table()
            .map_or(bytes.len(), |t| t.0);
        let mut d = Sha256::new();
        Digest::update(&mut d, &bytes[..CHECKSUM]);
        Digest::update(&mut d, &bytes[CHECKSUM + 4..SECURITY_ENTRY]);
        Digest::update(&mut d, &bytes[SECURITY_ENTRY + 8..end]);
        if end == bytes.len() {
            Digest::update(&mut d, &[0u8; 8][..padding(bytes.len())]);
        }
        d.finalize().to_vec()
    }

    #[test]
    fn the_crates_digest_equals_the_whole_file_reading_for_contiguous_images() {
        let signer = crate::cert::tests::test_signer();
        for len in [0x200, 0x400, 0x1000] {
            let mut unsigned = image(pe::MACHINE_AMD64, len);
            assert_eq!(image_sha256(&unsigned).unwrap(), hash_by_holes(&unsigned));
            unsigned.extend_from_slice(&[7, 7, 7]); // trailing data, odd length
            assert_eq!(image_sha256(&unsigned).unwrap(), hash_by_holes(&unsigned));
            let sealed = sign_image(&unsigned, &signer).unwrap();
            assert_eq!(image_sha256(&sealed).unwrap(), hash_by_holes(&sealed));
        }
    }

    #[test]
    fn signing_embeds_a_valid_signature_and_checksum_and_resigning_replaces_it() {
        let signer = crate::cert::tests::test_signer();
        let image = good();
        let sealed = sign_image(&image, &signer).unwrap();
        verify_image(&sealed, &signer.cert).unwrap();
        assert_eq!(
            u32_at(&sealed, CHECKSUM).unwrap(),
            pe::pe_checksum(&sealed, CHECKSUM)
        );
        let (offset, size) = table(&sealed);
        assert_eq!(offset, image.len().next_multiple_of(8));
        assert_eq!(offset + size, sealed.len());
        assert_eq!(size % 8, 0);
        assert_eq!(u16_at(&sealed, offset + 4), Some(0x0200));
        assert_eq!(u16_at(&sealed, offset + 6), Some(0x0002));
        let parsed = embedded_signature(&sealed).unwrap().unwrap();
        assert_eq!(parsed.digest(), image_sha256(&image).unwrap().as_slice());
        assert_eq!(
            embedded_signature_der(&sealed).unwrap().unwrap()[0],
            0x30,
            "a DER SEQUENCE"
        );
        assert!(embedded_signature(&image).unwrap().is_none());
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
        assert_ne!(image_sha1(&b).unwrap(), image_sha1(&image).unwrap());
        // The certificate-table entry: covered by signing, which sets it and keeps the hash.
    }

    #[test]
    fn an_image_of_odd_length_is_padded_to_8_before_hashing_and_signing() {
        let signer = crate::cert::tests::test_signer();
        let mut image = good();
        image.extend_from_slice(&[1, 2, 3]);
        fix_checksum(&mut image);
        let unsigned_hash = image_sha256(&image).unwrap();
        let sealed = sign_image(&image, &signer).unwrap();
        assert_eq!(table(&sealed).0, image.len() + 5);
        assert_eq!(&sealed[image.len()..image.len() + 5], &[0; 5]);
        // The catalog's hash of the unsigned image is the signed image's hash.
        assert_eq!(image_sha256(&sealed).unwrap(), unsigned_hash);
        verify_image(&sealed, &signer.cert).unwrap();
    }

    #[test]
    fn a_tampered_signed_image_fails_verification() {
        let signer = crate::cert::tests::test_signer();
        let mut sealed = sign_image(&good(), &signer).unwrap();
        sealed[0x410] ^= 1;
        let e = verify_image(&sealed, &signer.cert).unwrap_err().to_string();
        assert!(e.contains("modified after signing"), "{e}");
        let other = crate::cert::self_signed(
            &crate::cert::tests::test_key(),
            std::time::SystemTime::now(),
            std::time::Duration::from_hours(1),
        )
        .unwrap();
        let sealed = sign_image(&good(), &signer).unwrap();
        let e = verify_image(&sealed, &other).unwrap_err().to_string();
        assert!(e.contains("another certificate"), "{e}");
        let e = verify_image(&good(), &signer.cert).unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
    }

    #[test]
    fn what_is_not_a_pe_image_is_refused() {
        let signer = crate::cert::tests::test_signer();
        let e = sign_image(b"MZ nothing", &signer).unwrap_err().to_string();
        assert!(e.contains("not a PE image"), "{e}");
        let mut image = good();
        let len = u32::try_from(image.len()).unwrap();
        image[SECURITY_ENTRY..SECURITY_ENTRY + 4].copy_from_slice(&(len - 16).to_le_bytes());
        image[SECURITY_ENTRY + 4..SECURITY_ENTRY + 8].copy_from_slice(&8u32.to_le_bytes());
        let e = sign_image(&image, &signer).unwrap_err().to_string();
        assert!(e.contains("not at the end"), "{e}");
        // A table at the end that is not a WIN_CERTIFICATE with PKCS#7 is refused on reading.
        let mut image = good();
        image.extend_from_slice(&[16, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        image[SECURITY_ENTRY..SECURITY_ENTRY + 4].copy_from_slice(&len.to_le_bytes());
        image[SECURITY_ENTRY + 4..SECURITY_ENTRY + 8].copy_from_slice(&16u32.to_le_bytes());
        let e = embedded_signature(&image).unwrap_err().to_string();
        assert!(e.contains("does not hold a WIN_CERTIFICATE"), "{e}");
    }
}

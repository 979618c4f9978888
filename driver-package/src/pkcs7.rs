//! The PKCS#7 / CMS `SignedData` that both an Authenticode signature and a signed catalog are,
//! and the Microsoft ASN.1 structures they carry (`docs/notes/packaging.md` §3, §4).
//!
//! One signer, RSA PKCS#1 v1.5 with SHA-256, `SignedData` version 1 and `SignerInfo` version 1
//! with issuer and serial number, as signtool writes them (the `cms` crate's builder would write
//! version 3 for a content type other than id-data, which Windows is not known to accept).
//!
//! Authenticated attributes: contentType, messageDigest, SpcStatementType (individual) and an
//! empty SpcSpOpusInfo. The messageDigest is the SHA-256 of the content's value octets (without
//! its outer tag and length, RFC 2315 §9.3); the signature covers the DER of the attributes as a
//! SET (tag 0x31).
//!
//! The content sits directly in `[0] EXPLICIT` (a SEQUENCE, not wrapped in an OCTET STRING), which
//! is how Authenticode (SpcIndirectDataContent) and catalogs (the CTL) carry it.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, BitString, BmpString, Null, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::error::{Context, Error, Result, bail};

/// The object identifiers used by Authenticode and catalogs.
pub mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    /// PKCS#7 signedData.
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// PKCS#9 contentType attribute.
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    /// PKCS#9 messageDigest attribute.
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    /// SHA-256.
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// rsaEncryption (the SignerInfo signature algorithm signtool writes).
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// sha256WithRSAEncryption (the certificate's signature algorithm).
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    /// SPC_INDIRECT_DATA_OBJID: Authenticode content, and a catalog member's hash attribute.
    pub const SPC_INDIRECT_DATA: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.4");
    /// SPC_STATEMENT_TYPE_OBJID.
    pub const SPC_STATEMENT_TYPE: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.11");
    /// SPC_INDIVIDUAL_SP_KEY_PURPOSE_OBJID: the "individual" statement type.
    pub const SPC_INDIVIDUAL: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.21");
    /// SPC_SP_OPUS_INFO_OBJID.
    pub const SPC_SP_OPUS_INFO: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.12");
    /// SPC_PE_IMAGE_DATAOBJ: the data of a PE file's indirect data.
    pub const SPC_PE_IMAGE_DATA: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.15");
    /// 1.3.6.1.4.1.311.2.1.25: the data of a flat file's (an INF's) indirect data in a catalog.
    pub const SPC_FLAT_FILE_DATA: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.2.1.25");
    /// szOID_CTL: the content type of a catalog.
    pub const CTL: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.10.1");
    /// szOID_CATALOG_LIST: the CTL's subject usage in a catalog.
    pub const CATALOG_LIST: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.12.1.1");
    /// szOID_CATALOG_LIST_MEMBER2: members identified by their SHA-256 (catalog version 2).
    pub const CATALOG_LIST_MEMBER_V2: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.12.1.3");
    /// CAT_NAMEVALUE_OBJID: a name/value attribute (member or catalog level).
    pub const CAT_NAMEVALUE: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.12.2.1");
    /// CAT_MEMBERINFO2_OBJID: the member's kind (catalog version 2).
    pub const CAT_MEMBERINFO2: Oid = Oid::new_unwrap("1.3.6.1.4.1.311.12.2.3");
    /// The code-signing extended key usage.
    pub const EKU_CODE_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.3");
}

/// `SpcAttributeTypeAndOptionalValue`: what was hashed (a PE image, a flat file).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcAttributeTypeAndOptionalValue {
    /// `SPC_PE_IMAGE_DATA` or `SPC_FLAT_FILE_DATA`.
    pub kind: ObjectIdentifier,
    /// `SpcPeImageData` or an `SpcLink`.
    pub value: Option<Any>,
}

/// `DigestInfo`: the hash and its algorithm.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct DigestInfo {
    /// SHA-256 (or SHA-1), NULL parameters.
    pub algorithm: AlgorithmIdentifierOwned,
    /// The hash.
    pub digest: OctetString,
}

/// `SpcIndirectDataContent`: the signed content of Authenticode, and a catalog member's hash.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcIndirectDataContent {
    /// What was hashed.
    pub data: SpcAttributeTypeAndOptionalValue,
    /// The hash.
    pub message_digest: DigestInfo,
}

pub use choices::{SpcLink, SpcString};

/// The CHOICE types, apart: `der`'s Choice derive expands to nested or-patterns.
#[allow(clippy::unnested_or_patterns)]
mod choices {
    use der::Choice;
    use der::asn1::{BmpString, Ia5String};

    /// `SpcString`.
    #[derive(Clone, Debug, Eq, PartialEq, Choice)]
    pub enum SpcString {
        /// `[0] IMPLICIT BMPString`.
        #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
        Unicode(BmpString),
        /// `[1] IMPLICIT IA5String`.
        #[asn1(context_specific = "1", tag_mode = "IMPLICIT")]
        Ascii(Ia5String),
    }

    /// `SpcLink` (only the `file` alternative is written).
    #[derive(Clone, Debug, Eq, PartialEq, Choice)]
    pub enum SpcLink {
        /// `[0] IMPLICIT IA5String`.
        #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
        Url(Ia5String),
        /// `[2] EXPLICIT SpcString`.
        #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
        File(SpcString),
    }
}

/// `SpcPeImageData`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SpcPeImageData {
    /// `SpcPeImageFlags`.
    pub flags: BitString,
    /// `[0] EXPLICIT SpcLink`: `file` `"<<<Obsolete>>>"` when there are no page hashes.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub file: Option<SpcLink>,
}

/// `SpcLink` `file` = the unicode string `text`.
pub fn spc_file_link(text: &str) -> Result<SpcLink> {
    Ok(SpcLink::File(SpcString::Unicode(
        BmpString::from_utf8(text).context("encoding a BMPString")?,
    )))
}

/// The `SpcAttributeTypeAndOptionalValue` of a PE image: `SpcPeImageData` without page hashes.
/// `flags` is the `SpcPeImageFlags` bit string: signtool leaves it empty in an embedded
/// signature, makecat/inf2cat write bits 0 and 2 (`03 02 05 A0`) for a catalog member.
pub fn pe_image_data(flags: &[u8], unused_bits: u8) -> Result<SpcAttributeTypeAndOptionalValue> {
    let value = SpcPeImageData {
        flags: BitString::new(unused_bits, flags).context("encoding SpcPeImageFlags")?,
        file: Some(spc_file_link("<<<Obsolete>>>")?),
    };
    Ok(SpcAttributeTypeAndOptionalValue {
        kind: oid::SPC_PE_IMAGE_DATA,
        value: Some(to_any(&value)?),
    })
}

/// An algorithm identifier with NULL parameters (how signtool and makecat write SHA-256 and
/// rsaEncryption).
#[must_use]
pub fn algorithm(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: Some(Any::from(Null)),
    }
}

/// The DER of `value` as an `Any` (its full TLV).
pub fn to_any(value: &impl Encode) -> Result<Any> {
    let der = value.to_der().context("DER-encoding")?;
    Any::from_der(&der).context("DER-encoding")
}

/// The value octets of a DER TLV (what messageDigest covers): `der` without its tag and length.
pub fn value_octets(der: &[u8]) -> Result<&[u8]> {
    let any = der::AnyRef::from_der(der).context("reading DER content")?;
    Ok(any.value())
}

/// An attribute with one value.
pub fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).context("encoding an attribute")?,
    })
}

/// The signing key and its certificate.
#[derive(Clone)]
pub struct Signer {
    /// The RSA private key.
    pub key: RsaPrivateKey,
    /// The certificate of its public key.
    pub cert: Certificate,
    /// The certificates between it and a root, from its issuer up (not the root): embedded in
    /// every signature beside `cert` so a verifier that trusts only the root can build the
    /// chain, as signtool does. Empty for a self-signed certificate.
    pub chain: Vec<Certificate>,
}

/// Shows the certificate's subject and serial, never the key.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tbs = &self.cert.tbs_certificate;
        f.debug_struct("Signer")
            .field("subject", &tbs.subject.to_string())
            .field("serial", &tbs.serial_number.to_string())
            .field("key", &"<RSA private key>")
            .field(
                "chain",
                &self
                    .chain
                    .iter()
                    .map(|c| c.tbs_certificate.subject.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Signer {
    /// A PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        rsa_sha256(&self.key, message)
    }
}

/// A PKCS#1 v1.5 SHA-256 signature of `message` by `key`.
pub fn rsa_sha256(key: &RsaPrivateKey, message: &[u8]) -> Result<Vec<u8>> {
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(message))
        .context("RSA signing")
}

/// A DER `ContentInfo` holding a `SignedData` of `content` (the full DER of a SEQUENCE) of type
/// `content_type`, signed by `signer`.
pub fn sign(signer: &Signer, content_type: ObjectIdentifier, content: &[u8]) -> Result<Vec<u8>> {
    let digest = Sha256::digest(value_octets(content)?);
    let attrs = signed_attributes(content_type, &digest)?;
    let signature = signer.sign(&attrs.to_der().context("encoding the signed attributes")?)?;
    let tbs = &signer.cert.tbs_certificate;
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }),
        digest_alg: algorithm(oid::SHA256),
        signed_attrs: Some(attrs),
        signature_algorithm: algorithm(oid::RSA_ENCRYPTION),
        signature: OctetString::new(signature).context("encoding the signature")?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![algorithm(oid::SHA256)])
            .context("encoding digestAlgorithms")?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: content_type,
            econtent: Some(Any::from_der(content).context("reading the content to sign")?),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(
                std::iter::once(&signer.cert)
                    .chain(&signer.chain)
                    .map(|c| CertificateChoices::Certificate(c.clone()))
                    .collect::<Vec<_>>(),
            )
            .context("encoding certificates")?,
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![signer_info]).context("encoding signerInfos")?,
        ),
    };
    ContentInfo {
        content_type: oid::SIGNED_DATA,
        content: to_any(&signed_data)?,
    }
    .to_der()
    .context("encoding the PKCS#7 ContentInfo")
}

fn signed_attributes(content_type: ObjectIdentifier, digest: &[u8]) -> Result<SetOfVec<Attribute>> {
    let statement = vec![oid::SPC_INDIVIDUAL];
    let attrs = vec![
        attribute(oid::CONTENT_TYPE, Any::from(content_type))?,
        // SpcSpOpusInfo with neither program name nor URL: an empty SEQUENCE.
        attribute(
            oid::SPC_SP_OPUS_INFO,
            Any::new(der::Tag::Sequence, Vec::<u8>::new()).context("encoding SpcSpOpusInfo")?,
        )?,
        attribute(oid::SPC_STATEMENT_TYPE, to_any(&statement)?)?,
        attribute(
            oid::MESSAGE_DIGEST,
            to_any(&OctetString::new(digest).context("encoding messageDigest")?)?,
        )?,
    ];
    SetOfVec::try_from(attrs).context("encoding the signed attributes")
}

/// A `SignedData` read back: its content and what the signature checks found.
#[derive(Debug)]
pub struct Verified {
    /// The content type.
    pub content_type: ObjectIdentifier,
    /// The content's DER (the full SEQUENCE).
    pub content: Vec<u8>,
}

/// Reads a DER `ContentInfo` holding a one-signer `SignedData`, and checks it the way a verifier
/// does: the messageDigest attribute equals the SHA-256 of the content, the contentType attribute
/// names the content type, and the RSA signature over the attributes verifies with the embedded
/// certificate's key, which must be `expected_signer` when given.
pub fn verify(der_bytes: &[u8], expected_signer: Option<&Certificate>) -> Result<Verified> {
    let info = ContentInfo::from_der(der_bytes).context("not a PKCS#7 ContentInfo")?;
    if info.content_type != oid::SIGNED_DATA {
        bail!(
            "the PKCS#7 content is {}, not signedData",
            info.content_type
        );
    }
    let sd: SignedData = info.content.decode_as().context("reading SignedData")?;
    let content = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| Error::new("the SignedData has no content"))?
        .to_der()
        .context("re-encoding the content")?;
    let signers = sd.signer_infos.0.as_slice();
    let [si] = signers else {
        bail!("expected exactly one signer, found {}", signers.len());
    };
    // The signer's certificate is the one its identifier names (the set may hold its chain too).
    let SignerIdentifier::IssuerAndSerialNumber(id) = &si.sid else {
        bail!("the signer is identified by a key identifier, not by issuer and serial number");
    };
    let found = sd.certificates.as_ref().and_then(|set| {
        set.0.iter().find_map(|c| match c {
            CertificateChoices::Certificate(c)
                if c.tbs_certificate.issuer == id.issuer
                    && c.tbs_certificate.serial_number == id.serial_number =>
            {
                Some(c.clone())
            }
            _ => None,
        })
    });
    let Some(cert) = found else {
        bail!("the SignedData carries no certificate of its signer");
    };
    if let Some(expected) = expected_signer
        && expected != &cert
    {
        bail!("signed by another certificate than the test certificate");
    }
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| Error::new("the signer has no authenticated attributes"))?;
    let find = |oid: ObjectIdentifier| -> Result<&Any> {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
            .ok_or_else(|| Error::new(format!("the authenticated attribute {oid} is missing")))
    };
    let ct: ObjectIdentifier = find(oid::CONTENT_TYPE)?
        .decode_as()
        .context("reading contentType")?;
    if ct != sd.encap_content_info.econtent_type {
        bail!("the contentType attribute ({ct}) differs from the content's type");
    }
    let md: OctetString = find(oid::MESSAGE_DIGEST)?
        .decode_as()
        .context("reading messageDigest")?;
    if md.as_bytes() != Sha256::digest(value_octets(&content)?).as_slice() {
        bail!(
            "the messageDigest attribute does not match the content: it was modified after signing"
        );
    }
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .context("encoding the signer's key")?;
    let public = RsaPublicKey::from_public_key_der(&spki)
        .context("the signer's certificate has no RSA key")?;
    let signed = Sha256::digest(attrs.to_der().context("encoding the signed attributes")?);
    public
        .verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &signed,
            si.signature.as_bytes(),
        )
        .map_err(|_| Error::new("the RSA signature does not verify"))?;
    Ok(Verified {
        content_type: sd.encap_content_info.econtent_type,
        content,
    })
}

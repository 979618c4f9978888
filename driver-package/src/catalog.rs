//! Driver catalogs (`.cat`): what inf2cat writes for a package, signed with the test certificate
//! (`docs/notes/packaging.md` §4), and a reader for the round-trip check.
//!
//! A catalog is a PKCS#7 `SignedData` ([`crate::pkcs7`]) whose content (type szOID_CTL) is a
//! Certificate Trust List, held directly in `[0] EXPLICIT`:
//! - subjectUsage {szOID_CATALOG_LIST}, a random 16-byte listIdentifier, thisUpdate (UTCTime),
//!   subjectAlgorithm szOID_CATALOG_LIST_MEMBER2 with NULL parameters: a **version 2** catalog,
//!   whose members are identified by their raw SHA-256 (makecat's `CatalogVersion=2`);
//! - one member per file, sorted by identifier bytes, with the attributes:
//!   SPC_INDIRECT_DATA (the hash: Authenticode for the `.sys` with SpcPeImageData flags `05 A0`
//!   and `"<<<Obsolete>>>"`, the plain file hash for the `.inf` with type
//!   1.3.6.1.4.1.311.2.1.25 and an empty file link), CAT_MEMBERINFO2 (`[0]` PE, `[2]` flat), and the name/values `File` and
//!   `OSAttr` = `2:10.0` (flags 0x10010001: authenticated, ASCII data and name);
//! - for each file also the SHA-1 "compatibility" member makecat adds to version 2 catalogs: the
//!   raw SHA-1 (Authenticode SHA-1 for the image) with CAT_MEMBERINFO2 and the same name/values;
//! - one catalog-level name/value in ctlExtensions: `OS`, the inf2cat codes for Windows 10 and 11
//!   on the architecture ([`os_attribute`]).
//!
//! Name/values: `SEQUENCE { BMPString name, INTEGER flags, OCTET STRING value }`, the value
//! UTF-16LE with a terminating NUL.

use std::time::SystemTime;

use der::asn1::{Any, BmpString, Int, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Sequence, Tag, TagNumber, Tagged};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;

use crate::Arch;
use crate::error::{Context, Error, Result, bail};
use crate::pkcs7::{
    self, DigestInfo, Signer, SpcAttributeTypeAndOptionalValue, SpcIndirectDataContent, oid,
};

/// Name/value flags: CRYPTCAT_ATTR_AUTHENTICATED | DATAASCII | NAMEASCII.
pub const NAME_VALUE_FLAGS: u32 = 0x1001_0001;
/// The member `OSAttr`: NT 10.0 (Windows 10 and 11).
pub const OS_ATTR: &str = "2:10.0";

/// The catalog's `OS` attribute: the inf2cat OS codes for Windows 10 and 11 on `arch` (as
/// observed in catalogs made by inf2cat and the Dev Center: `_v100_X64` is Windows 10 x64,
/// `_21H2`/`_22H2` the Windows 11 releases).
#[must_use]
pub fn os_attribute(arch: Arch) -> &'static str {
    match arch {
        Arch::X64 => "_v100_X64,_v100_X64_21H2,_v100_X64_22H2",
        Arch::Arm64 => "_v100_ARM64_22H2",
    }
}

/// The Certificate Trust List (MS-CAESO).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertificateTrustList {
    /// DEFAULT v1 (0): omitted.
    pub version: Option<u32>,
    /// {szOID_CATALOG_LIST}.
    pub subject_usage: Vec<ObjectIdentifier>,
    /// 16 random bytes.
    pub list_identifier: Option<OctetString>,
    /// Absent.
    pub sequence_number: Option<Int>,
    /// When the catalog was made.
    pub this_update: Time,
    /// Absent.
    pub next_update: Option<Time>,
    /// szOID_CATALOG_LIST_MEMBER2, NULL parameters.
    pub subject_algorithm: AlgorithmIdentifierOwned,
    /// The members.
    pub trusted_subjects: Option<Vec<TrustedSubject>>,
    /// Catalog-level name/values.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub extensions: Option<Vec<Extension>>,
}

/// One catalog member.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TrustedSubject {
    /// The raw hash (SHA-256, or SHA-1 for a compatibility member).
    pub identifier: OctetString,
    /// Its attributes.
    pub attributes: Option<SetOfVec<Attribute>>,
}

/// `CAT_NAMEVALUE`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct NameValueDer {
    /// The name (no NUL).
    pub name: BmpString,
    /// `CRYPTCAT_ATTR_*` flags.
    pub flags: u32,
    /// UTF-16LE with a NUL.
    pub value: OctetString,
}

/// What kind of file a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A PE image: hashed the Authenticode way.
    Pe,
    /// Any other file: hashed whole.
    Flat,
}

impl Kind {
    /// The CAT_MEMBERINFO2 tag number.
    fn member_info_tag(self) -> u8 {
        match self {
            Kind::Pe => 0,
            Kind::Flat => 2,
        }
    }
}

/// A file to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name in the package (`File`).
    pub file: String,
    /// PE or flat.
    pub kind: Kind,
    /// SHA-256 (Authenticode for PE).
    pub sha256: Vec<u8>,
    /// SHA-1 (Authenticode for PE).
    pub sha1: Vec<u8>,
}

/// Everything a catalog says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The files.
    pub members: Vec<Member>,
    /// The `OS` attribute.
    pub os: String,
    /// The listIdentifier.
    pub list_id: [u8; 16],
    /// thisUpdate.
    pub this_update: SystemTime,
}

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn from_utf16z(bytes: &[u8]) -> Result<String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let units = units.strip_suffix(&[0]).unwrap_or(&units);
    String::from_utf16(units).map_err(|_| Error::new("a name/value is not UTF-16"))
}

fn name_value(name: &str, value: &str) -> Result<NameValueDer> {
    Ok(NameValueDer {
        name: BmpString::from_utf8(name).context("encoding a name")?,
        flags: NAME_VALUE_FLAGS,
        value: OctetString::new(utf16z(value)).context("encoding a value")?,
    })
}

fn member_info2(kind: Kind) -> Result<Any> {
    let tag = Tag::ContextSpecific {
        constructed: false,
        number: TagNumber::new(kind.member_info_tag()),
    };
    Any::new(tag, Vec::<u8>::new()).context("encoding CAT_MEMBERINFO2")
}

fn indirect_data(m: &Member) -> Result<SpcIndirectDataContent> {
    let data = match m.kind {
        // Bits 0 and 2, as makecat/inf2cat write them for a member.
        Kind::Pe => pkcs7::pe_image_data(&[0xA0], 5)?,
        Kind::Flat => SpcAttributeTypeAndOptionalValue {
            kind: oid::SPC_FLAT_FILE_DATA,
            value: Some(pkcs7::to_any(&pkcs7::spc_file_link("")?)?),
        },
    };
    Ok(SpcIndirectDataContent {
        data,
        message_digest: DigestInfo {
            algorithm: pkcs7::algorithm(oid::SHA256),
            digest: OctetString::new(m.sha256.clone()).context("encoding a hash")?,
        },
    })
}

/// The CTL of `spec`.
pub fn ctl(spec: &Spec) -> Result<CertificateTrustList> {
    let mut subjects = Vec::new();
    for m in &spec.members {
        let names = [
            pkcs7::attribute(
                oid::CAT_NAMEVALUE,
                pkcs7::to_any(&name_value("File", &m.file)?)?,
            )?,
            pkcs7::attribute(
                oid::CAT_NAMEVALUE,
                pkcs7::to_any(&name_value("OSAttr", OS_ATTR)?)?,
            )?,
        ];
        let info = pkcs7::attribute(oid::CAT_MEMBERINFO2, member_info2(m.kind)?)?;
        let mut main = vec![
            pkcs7::attribute(oid::SPC_INDIRECT_DATA, pkcs7::to_any(&indirect_data(m)?)?)?,
            info.clone(),
        ];
        main.extend(names.iter().cloned());
        let mut compat = vec![info];
        compat.extend(names);
        for (id, attrs) in [(&m.sha256, main), (&m.sha1, compat)] {
            subjects.push(TrustedSubject {
                identifier: OctetString::new(id.clone()).context("encoding an identifier")?,
                attributes: Some(SetOfVec::try_from(attrs).context("encoding attributes")?),
            });
        }
    }
    subjects.sort_by(|a, b| a.identifier.as_bytes().cmp(b.identifier.as_bytes()));
    let os = name_value("OS", &spec.os)?;
    Ok(CertificateTrustList {
        version: None,
        subject_usage: vec![oid::CATALOG_LIST],
        list_identifier: Some(OctetString::new(spec.list_id.to_vec()).context("encoding")?),
        sequence_number: None,
        this_update: Time::UtcTime(
            UtcTime::from_system_time(spec.this_update).context("encoding thisUpdate")?,
        ),
        next_update: None,
        subject_algorithm: pkcs7::algorithm(oid::CATALOG_LIST_MEMBER_V2),
        trusted_subjects: Some(subjects),
        extensions: Some(vec![Extension {
            extn_id: oid::CAT_NAMEVALUE,
            critical: false,
            extn_value: OctetString::new(os.to_der().context("encoding OS")?)
                .context("encoding OS")?,
        }]),
    })
}

/// The signed catalog (DER) of `spec`.
pub fn build(spec: &Spec, signer: &Signer) -> Result<Vec<u8>> {
    let content = ctl(spec)?.to_der().context("encoding the catalog")?;
    pkcs7::sign(signer, oid::CTL, &content)
}

/// A name/value read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameValue {
    /// The name.
    pub name: String,
    /// Its flags.
    pub flags: u32,
    /// The value.
    pub value: String,
}

/// A member read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadMember {
    /// The identifier (a raw hash).
    pub identifier: Vec<u8>,
    /// SPC_INDIRECT_DATA: the data type, the digest algorithm and the digest.
    pub indirect: Option<(ObjectIdentifier, ObjectIdentifier, Vec<u8>)>,
    /// The CAT_MEMBERINFO2 tag number.
    pub member_info: Option<u8>,
    /// The name/values.
    pub names: Vec<NameValue>,
}

/// A catalog read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// subjectUsage.
    pub subject_usage: Vec<ObjectIdentifier>,
    /// subjectAlgorithm.
    pub subject_algorithm: ObjectIdentifier,
    /// listIdentifier.
    pub list_id: Vec<u8>,
    /// The catalog-level name/values.
    pub attributes: Vec<NameValue>,
    /// The members, in file order.
    pub members: Vec<ReadMember>,
}

impl Read {
    /// The member listing `file` with its SHA-256 (the one with SPC_INDIRECT_DATA).
    #[must_use]
    pub fn member(&self, file: &str) -> Option<&ReadMember> {
        self.members.iter().find(|m| {
            m.indirect.is_some() && m.names.iter().any(|n| n.name == "File" && n.value == file)
        })
    }
}

fn read_name_value(any: &Any) -> Result<NameValue> {
    let nv: NameValueDer = any.decode_as().context("reading a name/value")?;
    Ok(NameValue {
        name: nv.name.to_string(),
        flags: nv.flags,
        value: from_utf16z(nv.value.as_bytes())?,
    })
}

/// Reads a CTL (its DER), without the signature.
pub fn read_ctl(der_bytes: &[u8]) -> Result<Read> {
    let ctl = CertificateTrustList::from_der(der_bytes).context("reading the catalog's CTL")?;
    let mut attributes = Vec::new();
    for ext in ctl.extensions.iter().flatten() {
        if ext.extn_id == oid::CAT_NAMEVALUE {
            let any = Any::from_der(ext.extn_value.as_bytes()).context("reading a name/value")?;
            attributes.push(read_name_value(&any)?);
        }
    }
    let mut members = Vec::new();
    for s in ctl.trusted_subjects.iter().flatten() {
        let mut m = ReadMember {
            identifier: s.identifier.as_bytes().to_vec(),
            indirect: None,
            member_info: None,
            names: Vec::new(),
        };
        for a in s.attributes.iter().flat_map(SetOfVec::iter) {
            let Some(value) = a.values.iter().next() else {
                continue;
            };
            if a.oid == oid::SPC_INDIRECT_DATA {
                let c: SpcIndirectDataContent =
                    value.decode_as().context("reading a member hash")?;
                m.indirect = Some((
                    c.data.kind,
                    c.message_digest.algorithm.oid,
                    c.message_digest.digest.as_bytes().to_vec(),
                ));
            } else if a.oid == oid::CAT_MEMBERINFO2 {
                m.member_info = match value.tag() {
                    Tag::ContextSpecific { number, .. } => Some(number.value()),
                    _ => None,
                };
            } else if a.oid == oid::CAT_NAMEVALUE {
                m.names.push(read_name_value(value)?);
            }
        }
        // A SET has no order: name/values are compared by name.
        m.names.sort_by(|a, b| a.name.cmp(&b.name));
        members.push(m);
    }
    Ok(Read {
        subject_usage: ctl.subject_usage,
        subject_algorithm: ctl.subject_algorithm.oid,
        list_id: ctl
            .list_identifier
            .map(|l| l.as_bytes().to_vec())
            .unwrap_or_default(),
        attributes,
        members,
    })
}

/// Reads a signed catalog and checks its signature (by `signer`, when given).
pub fn read(cat: &[u8], signer: Option<&Certificate>) -> Result<Read> {
    let v = pkcs7::verify(cat, signer)?;
    if v.content_type != oid::CTL {
        bail!(
            "the PKCS#7 content is {}, not a catalog (CTL)",
            v.content_type
        );
    }
    read_ctl(&v.content)
}

/// What reading back the catalog of `spec` must give.
#[must_use]
pub fn expected(spec: &Spec) -> Read {
    // Sorted by name, as `read_ctl` gives them.
    let names = |m: &Member| {
        vec![
            NameValue {
                name: "File".into(),
                flags: NAME_VALUE_FLAGS,
                value: m.file.clone(),
            },
            NameValue {
                name: "OSAttr".into(),
                flags: NAME_VALUE_FLAGS,
                value: OS_ATTR.into(),
            },
        ]
    };
    let mut members = Vec::new();
    for m in &spec.members {
        let data = match m.kind {
            Kind::Pe => oid::SPC_PE_IMAGE_DATA,
            Kind::Flat => oid::SPC_FLAT_FILE_DATA,
        };
        members.push(ReadMember {
            identifier: m.sha256.clone(),
            indirect: Some((data, oid::SHA256, m.sha256.clone())),
            member_info: Some(m.kind.member_info_tag()),
            names: names(m),
        });
        members.push(ReadMember {
            identifier: m.sha1.clone(),
            indirect: None,
            member_info: Some(m.kind.member_info_tag()),
            names: names(m),
        });
    }
    members.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    Read {
        subject_usage: vec![oid::CATALOG_LIST],
        subject_algorithm: oid::CATALOG_LIST_MEMBER_V2,
        list_id: spec.list_id.to_vec(),
        attributes: vec![NameValue {
            name: "OS".into(),
            flags: NAME_VALUE_FLAGS,
            value: spec.os.clone(),
        }],
        members,
    }
}

/// Compares a catalog read back with what it should say; each difference in words.
#[must_use]
pub fn differences(read: &Read, want: &Read) -> Vec<String> {
    let mut out = Vec::new();
    if read.subject_usage != want.subject_usage {
        out.push(format!(
            "subjectUsage is {:?}, not {:?}",
            read.subject_usage, want.subject_usage
        ));
    }
    if read.subject_algorithm != want.subject_algorithm {
        out.push(format!(
            "subjectAlgorithm is {}, not {}",
            read.subject_algorithm, want.subject_algorithm
        ));
    }
    if read.list_id.len() != 16 {
        out.push(format!(
            "listIdentifier has {} bytes, not 16",
            read.list_id.len()
        ));
    }
    if read.attributes != want.attributes {
        out.push(format!(
            "catalog attributes are {:?}, not {:?}",
            read.attributes, want.attributes
        ));
    }
    if read.members.len() != want.members.len() {
        out.push(format!(
            "{} members, not {}",
            read.members.len(),
            want.members.len()
        ));
    }
    for w in &want.members {
        match read.members.iter().find(|m| m.identifier == w.identifier) {
            None => out.push(format!(
                "no member {} ({})",
                crate::cert::hex(&w.identifier),
                w.names.first().map_or("", |n| n.value.as_str())
            )),
            Some(m) if m != w => {
                let file = w.names.first().map_or("", |n| n.value.as_str());
                let id = crate::cert::hex(&w.identifier);
                if m.indirect != w.indirect {
                    out.push(format!(
                        "member {id} ({file}): its hash attribute is {:?}, not {:?}",
                        m.indirect, w.indirect
                    ));
                }
                if m.member_info != w.member_info {
                    out.push(format!(
                        "member {id} ({file}): CAT_MEMBERINFO2 is {:?}, not {:?}",
                        m.member_info, w.member_info
                    ));
                }
                if m.names != w.names {
                    out.push(format!(
                        "member {id} ({file}): name/values are {:?}, not {:?}",
                        m.names, w.names
                    ));
                }
            }
            Some(_) => {}
        }
    }
    let mut sorted = read.members.clone();
    sorted.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    if sorted != read.members {
        out.push("members are not sorted by identifier".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::Sha1;
    use sha2::{Digest, Sha256};

    fn spec() -> Spec {
        let image = crate::testimage::good();
        let inf = b"[Version]\r\n";
        Spec {
            members: vec![
                Member {
                    // Long enough that DER orders its File attribute after OSAttr.
                    file: "a-driver-with-a-long-name.sys".into(),
                    kind: Kind::Pe,
                    sha256: crate::authenticode::image_sha256(&image).unwrap(),
                    sha1: crate::authenticode::image_sha1(&image).unwrap(),
                },
                Member {
                    file: "d.inf".into(),
                    kind: Kind::Flat,
                    sha256: Sha256::digest(inf).to_vec(),
                    sha1: Sha1::digest(inf).to_vec(),
                },
            ],
            os: os_attribute(Arch::X64).into(),
            list_id: [7; 16],
            this_update: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000),
        }
    }

    #[test]
    fn a_catalog_reads_back_as_it_was_meant() {
        let signer = crate::cert::tests::test_signer();
        let spec = spec();
        let cat = build(&spec, &signer).unwrap();
        let read = read(&cat, Some(&signer.cert)).unwrap();
        assert_eq!(differences(&read, &expected(&spec)), Vec::<String>::new());
        assert_eq!(read.members.len(), 4);
        let sys = read.member("a-driver-with-a-long-name.sys").unwrap();
        assert_eq!(sys.member_info, Some(0));
        assert_eq!(sys.identifier, spec.members[0].sha256);
        assert_eq!(read.member("d.inf").unwrap().member_info, Some(2));
    }

    #[test]
    fn encodings_match_the_reference_bytes() {
        // CAT_MEMBERINFO2 for a flat file: [2] with no content.
        assert_eq!(
            member_info2(Kind::Flat).unwrap().to_der().unwrap(),
            [0x82, 0x00]
        );
        // The name/value value is UTF-16LE with a NUL; the flags an INTEGER.
        let nv = name_value("OSAttr", "2:10.0").unwrap().to_der().unwrap();
        assert!(nv.ends_with(&[
            0x04, 14, b'2', 0, b':', 0, b'1', 0, b'0', 0, b'.', 0, b'0', 0, 0, 0
        ]));
        assert!(
            nv.windows(6)
                .any(|w| w == [0x02, 0x04, 0x10, 0x01, 0x00, 0x01])
        );
        // A flat member's data: type 1.3.6.1.4.1.311.2.1.25, SpcLink file [2] { [0] "" }.
        let flat = indirect_data(&spec().members[1])
            .unwrap()
            .data
            .to_der()
            .unwrap();
        assert!(flat.ends_with(&[0xA2, 0x02, 0x80, 0x00]), "{flat:02X?}");
        // A PE member's flags: 03 02 05 A0.
        let pe = indirect_data(&spec().members[0])
            .unwrap()
            .data
            .to_der()
            .unwrap();
        assert!(
            pe.windows(4).any(|w| w == [0x03, 0x02, 0x05, 0xA0]),
            "{pe:02X?}"
        );
    }

    #[test]
    fn a_changed_byte_is_caught() {
        let signer = crate::cert::tests::test_signer();
        let spec = spec();
        let cat = build(&spec, &signer).unwrap();
        // Flip a byte of the first member's identifier (inside the signed content).
        let id = &spec.members[1].sha256;
        let at = cat
            .windows(id.len())
            .position(|w| w == id.as_slice())
            .unwrap();
        let mut bad = cat.clone();
        bad[at] ^= 1;
        let e = read(&bad, Some(&signer.cert)).unwrap_err().to_string();
        assert!(e.contains("messageDigest"), "{e}");
        // Another signer's certificate is refused.
        let other = crate::cert::self_signed(
            &signer.key,
            SystemTime::now(),
            std::time::Duration::from_mins(1),
        )
        .unwrap();
        assert!(read(&cat, Some(&other)).is_err());
    }
}

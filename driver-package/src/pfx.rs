//! PKCS#12 (`.pfx`, `.p12`) files: reading a signer's key and certificate out of one, and writing
//! one for Windows' tools (certutil, the certificate import wizard, signtool `/f`).
//!
//! The formats are RFC 7292 (PKCS#12 v1.1) on the RustCrypto types of the `pkcs12`, `pkcs5` and
//! `cms` crates; this module is the glue around them:
//!
//! - **Reading** checks the MAC first (HMAC with SHA-1, SHA-256, SHA-384 or SHA-512, its key from
//!   the PKCS#12 KDF, RFC 7292 appendix B): a MAC that does not match means a wrong password.
//!   Then every safe is decrypted: PBES2 (PBKDF2 + AES-CBC, what OpenSSL 3 and Windows'
//!   "AES256-SHA256" export write) or the legacy PKCS#12 PBE schemes
//!   pbeWithSHAAnd3-KeyTripleDES-CBC (Windows' "TripleDES-SHA1" export, OpenSSL 1.x keys) and
//!   pbeWithSHAAnd40BitRC2-CBC / 128BitRC2-CBC (OpenSSL 1.x certificates). The key is the RSA
//!   key of the first key bag; the signer's certificate is the one whose public key is the key's
//!   (not the first one: a PFX exported with its chain lists the CA certificates too).
//! - **Writing** does what OpenSSL 3 does by default (`openssl pkcs12 -export`): the key in a
//!   pkcs8ShroudedKeyBag and the certificate in an encrypted safe, both PBES2 with
//!   PBKDF2-HMAC-SHA256 ([`ITERATIONS`] rounds) and AES-256-CBC, the MAC HMAC-SHA256, each bag
//!   with a localKeyId attribute (the certificate's SHA-1) that pairs the key with its
//!   certificate on import. Windows 10 1709 and later import it.
//!
//! Only DER is read: a file in BER with indefinite lengths (Java's keytool writes those) is
//! refused with the `openssl pkcs12` command that rewrites it.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, InnerIvInit, KeyIvInit};
use cms::content_info::ContentInfo;
use cms::encrypted_data::EncryptedData;
use cms::enveloped_data::EncryptedContentInfo;
use der::asn1::{OctetString, SetOfVec};
use der::oid::ObjectIdentifier as Oid;
use der::{Any, Decode, Encode};
use hmac::{Hmac, Mac};
use pkcs12::cert_type::CertBag;
use pkcs12::digest_info::DigestInfo;
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::pfx::{Pfx, Version};
use pkcs12::safe_bag::{SafeBag, SafeContents};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, Attributes};

use crate::error::{Context, Error, Result, bail};
use crate::pkcs7::{Signer, algorithm};

/// PBKDF2 and MAC iterations of a written file (OpenSSL 3's default).
pub const ITERATIONS: u32 = 2048;

const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
const LOCAL_KEY_ID: Oid = Oid::new_unwrap("1.2.840.113549.1.9.21");
const SHA1_OID: Oid = Oid::new_unwrap("1.3.14.3.2.26");
const SHA256_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512_OID: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
const PBES2_OID: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");

/// What a PFX holds for signing.
#[derive(Clone)]
pub struct Contents {
    /// The key, the certificate of its public key, and the intermediate certificates of the file
    /// between it and a root ([`Signer::chain`]).
    pub signer: Signer,
    /// The file's other certificates (roots, unrelated ones).
    pub others: Vec<Certificate>,
}

/// Reads the key and certificate of a PFX. `shown` names the file in errors.
pub fn read(bytes: &[u8], password: &str, shown: &str) -> Result<Contents> {
    let pfx = Pfx::from_der(bytes).map_err(|e| {
        let ber = bytes.get(1) == Some(&0x80);
        Error::new(if ber {
            format!(
                "{shown} is PKCS#12 in BER (indefinite lengths), which is not read here: rewrite \
                 it in DER with `openssl pkcs12 -in {shown} -out pem.tmp` then `openssl pkcs12 \
                 -export -in pem.tmp -out new.pfx` (and delete pem.tmp)"
            )
        } else {
            format!("{shown} is not a PKCS#12 (.pfx/.p12) file ({e})")
        })
    })?;
    let Version::V3 = pfx.version;
    if pfx.auth_safe.content_type != ID_DATA {
        bail!(
            "{shown}: the PFX is protected by a public key (content type {}), not by a \
             password; export it again with a password",
            pfx.auth_safe.content_type
        );
    }
    let auth_safe = octets(&pfx.auth_safe.content, shown)?;
    match &pfx.mac_data {
        Some(mac) => check_mac(mac, &auth_safe, password, shown)?,
        None => eprintln!("  {shown} has no MAC: its integrity is checked only by decryption"),
    }
    let safes = Vec::<ContentInfo>::from_der(&auth_safe)
        .with_context(|| format!("{shown}: reading the PFX's safes"))?;
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for safe in &safes {
        let contents = if safe.content_type == ID_DATA {
            octets(&safe.content, shown)?
        } else if safe.content_type == ID_ENCRYPTED_DATA {
            let data: EncryptedData = safe
                .content
                .decode_as()
                .with_context(|| format!("{shown}: reading an encrypted safe"))?;
            decrypt_safe(&data.enc_content_info, password, shown)?
        } else {
            bail!(
                "{shown}: a safe protected by a public key (content type {}) is not read here; \
                 export the PFX again with a password only",
                safe.content_type
            );
        };
        let bags = SafeContents::from_der(&contents)
            .with_context(|| format!("{shown}: reading a safe's bags"))?;
        for bag in bags {
            read_bag(&bag, password, shown, &mut keys, &mut certs)?;
        }
    }
    let Some(key) = keys.into_iter().next() else {
        bail!(
            "{shown} holds no private key (only {} certificate(s)): signing needs the key. Export \
             the certificate again with its private key (Windows: certmgr → Export → \"Yes, \
             export the private key\"; `Export-PfxCertificate`), or give --key KEY.pem --cert \
             CERT.pem",
            certs.len()
        );
    };
    let ours = rsa::RsaPublicKey::from(&key)
        .to_public_key_der()
        .context("encoding the public key")?;
    let position = certs.iter().position(|c| {
        c.tbs_certificate
            .subject_public_key_info
            .to_der()
            .is_ok_and(|d| d == ours.as_bytes())
    });
    let Some(position) = position else {
        bail!(
            "{shown}: none of its {} certificate(s) is the certificate of its private key: the \
             file pairs a key with someone else's certificate. Export the certificate together \
             with its own key",
            certs.len()
        );
    };
    let cert = certs.remove(position);
    let chain = chain_of(&cert, &certs);
    let others = certs.into_iter().filter(|c| !chain.contains(c)).collect();
    Ok(Contents {
        signer: Signer { key, cert, chain },
        others,
    })
}

/// The issuers of `cert` found in `pool`, from its issuer up, stopping before a self-signed root
/// (a verifier has the root; signtool embeds the intermediates).
pub(crate) fn chain_of(cert: &Certificate, pool: &[Certificate]) -> Vec<Certificate> {
    let mut chain: Vec<Certificate> = Vec::new();
    let mut current = cert;
    while current.tbs_certificate.issuer != current.tbs_certificate.subject {
        let Some(issuer) = pool.iter().find(|c| {
            c.tbs_certificate.subject == current.tbs_certificate.issuer && !chain.contains(c)
        }) else {
            break;
        };
        if issuer.tbs_certificate.issuer == issuer.tbs_certificate.subject {
            break;
        }
        chain.push(issuer.clone());
        current = issuer;
    }
    chain
}

fn octets(content: &Any, shown: &str) -> Result<Vec<u8>> {
    Ok(content
        .decode_as::<OctetString>()
        .with_context(|| format!("{shown}: reading the PFX's data"))?
        .into_bytes())
}

fn check_mac(mac: &MacData, data: &[u8], password: &str, shown: &str) -> Result<()> {
    let salt = mac.mac_salt.as_bytes();
    let rounds = mac.iterations;
    let alg = mac.mac.algorithm.oid;
    let expected = mac.mac.digest.as_bytes();
    let Some(computed) = pfx_mac(alg, password, salt, rounds, data)? else {
        bail!(
            "{shown}: its MAC uses the digest {alg}, which is not read here (SHA-1, SHA-256, \
             SHA-384 and SHA-512 are); export it again with `openssl pkcs12 -export -macalg sha256`"
        );
    };
    if computed != expected {
        bail!(
            "{shown}: wrong password (the file's MAC does not match): check XTASK_PFX_PASSWORD or \
             what you typed"
        );
    }
    Ok(())
}

/// HMAC of `data` with the PKCS#12 KDF's MAC key for `password` (RFC 7292 B.2, B.4), with the
/// digest `alg`; `None` for a digest not read here.
fn pfx_mac(
    alg: Oid,
    password: &str,
    salt: &[u8],
    rounds: i32,
    data: &[u8],
) -> Result<Option<Vec<u8>>> {
    macro_rules! with {
        ($d:ty) => {{
            let len = <$d as Digest>::output_size();
            let key = derive_key_utf8::<$d>(password, salt, Pkcs12KeyType::Mac, rounds, len)
                .context("the password is not text the PKCS#12 KDF can use")?;
            let mut mac = <Hmac<$d> as Mac>::new_from_slice(&key).context("keying the MAC")?;
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    Ok(Some(match alg {
        SHA1_OID => with!(Sha1),
        SHA256_OID => with!(Sha256),
        SHA384_OID => with!(Sha384),
        SHA512_OID => with!(Sha512),
        _ => return Ok(None),
    }))
}

fn decrypt_safe(info: &EncryptedContentInfo, password: &str, shown: &str) -> Result<Vec<u8>> {
    let Some(data) = &info.encrypted_content else {
        bail!("{shown}: an encrypted safe has no content");
    };
    let alg = info
        .content_enc_alg
        .to_der()
        .context("encoding an algorithm")?;
    decrypt(&alg, data.as_bytes(), password, shown)
}

/// Decrypts with the algorithm identifier `alg` (DER).
fn decrypt(alg: &[u8], data: &[u8], password: &str, shown: &str) -> Result<Vec<u8>> {
    let id =
        x509_cert::spki::AlgorithmIdentifierOwned::from_der(alg).context("reading an algorithm")?;
    let wrong = || {
        Error::new(format!(
            "{shown}: wrong password (decryption failed): check XTASK_PFX_PASSWORD or what you typed"
        ))
    };
    if id.oid == PBES2_OID {
        let scheme = pkcs5::EncryptionScheme::try_from(alg)
            .with_context(|| format!("{shown}: reading the PBES2 parameters"))?;
        return scheme.decrypt(password, data).map_err(|_| wrong());
    }
    let params = || -> Result<Pkcs12PbeParams> {
        id.parameters
            .as_ref()
            .ok_or_else(|| Error::new(format!("{shown}: PBE parameters missing")))?
            .decode_as()
            .with_context(|| format!("{shown}: reading the PBE parameters"))
    };
    let legacy = |key_len: usize, iv_len: usize| -> Result<(Vec<u8>, Vec<u8>)> {
        let p = params()?;
        let salt = p.salt.as_bytes();
        let key = derive_key_utf8::<Sha1>(
            password,
            salt,
            Pkcs12KeyType::EncryptionKey,
            p.iterations,
            key_len,
        )
        .context("the password is not text the PKCS#12 KDF can use")?;
        let iv = derive_key_utf8::<Sha1>(password, salt, Pkcs12KeyType::Iv, p.iterations, iv_len)
            .context("the password is not text the PKCS#12 KDF can use")?;
        Ok((key, iv))
    };
    match id.oid {
        pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC => {
            let (key, iv) = legacy(24, 8)?;
            cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .context("keying 3DES")?
                .decrypt_padded_vec_mut::<Pkcs7>(data)
                .map_err(|_| wrong())
        }
        pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC
        | pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC => {
            let bits = if id.oid == pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC {
                40
            } else {
                128
            };
            let (key, iv) = legacy(bits / 8, 8)?;
            let cipher = rc2::Rc2::new_with_eff_key_len(&key, bits);
            cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(cipher, &iv)
                .context("keying RC2")?
                .decrypt_padded_vec_mut::<Pkcs7>(data)
                .map_err(|_| wrong())
        }
        other => bail!(
            "{shown} is encrypted with {other}, which is not read here (PBES2 with AES, 3DES and \
             RC2 are): export it again with `openssl pkcs12 -export` (OpenSSL 3: AES-256) or \
             Windows' `Export-PfxCertificate -CryptoAlgorithmOption AES256_SHA256`"
        ),
    }
}

fn read_bag(
    bag: &SafeBag,
    password: &str,
    shown: &str,
    keys: &mut Vec<RsaPrivateKey>,
    certs: &mut Vec<Certificate>,
) -> Result<()> {
    let not_rsa = |e: &dyn std::fmt::Display| {
        Error::new(format!(
            "{shown}: its private key is not an RSA key ({e}); this tool signs with RSA keys only"
        ))
    };
    // `pkcs12` 0.1's decoder keeps the `[0] EXPLICIT` wrapper of bagValue (its encoder adds it):
    // the value is what the wrapper holds.
    let wrapper = der::asn1::AnyRef::from_der(&bag.bag_value)
        .with_context(|| format!("{shown}: reading a bag"))?;
    let value = wrapper.value();
    match bag.bag_id {
        pkcs12::PKCS_12_PKCS8_KEY_BAG_OID => {
            let info = EncryptedPrivateKeyInfo::from_der(value)
                .with_context(|| format!("{shown}: reading the encrypted key"))?;
            let alg = info
                .encryption_algorithm
                .to_der()
                .context("encoding an algorithm")?;
            let der = zeroize::Zeroizing::new(decrypt(
                &alg,
                info.encrypted_data.as_bytes(),
                password,
                shown,
            )?);
            keys.push(RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| not_rsa(&e))?);
        }
        pkcs12::PKCS_12_KEY_BAG_OID => {
            keys.push(RsaPrivateKey::from_pkcs8_der(value).map_err(|e| not_rsa(&e))?);
        }
        pkcs12::PKCS_12_CERT_BAG_OID => {
            let cert_bag = CertBag::from_der(value)
                .with_context(|| format!("{shown}: reading a certificate bag"))?;
            if cert_bag.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                certs.push(
                    Certificate::from_der(cert_bag.cert_value.as_bytes())
                        .with_context(|| format!("{shown}: reading a certificate"))?,
                );
            }
        }
        // CRLs, secrets and nested safes carry nothing a signer needs.
        _ => {}
    }
    Ok(())
}

/// A PFX of `signer`'s key and certificate, protected by `password` (see the module
/// documentation for the algorithms).
pub fn write(signer: &Signer, password: &str) -> Result<Vec<u8>> {
    let cert_der = signer.cert.to_der().context("encoding the certificate")?;
    let local_key_id = Sha1::digest(&cert_der).to_vec();
    let attributes = key_id_attributes(&local_key_id)?;

    // The key: PKCS#8, encrypted with PBES2, in a pkcs8ShroudedKeyBag of a plain safe.
    let key_der = signer
        .key
        .to_pkcs8_der()
        .context("encoding the private key")?;
    let (alg, encrypted) = pbes2_encrypt(password, key_der.as_bytes())?;
    let shrouded = EncryptedPrivateKeyInfo {
        encryption_algorithm: alg,
        encrypted_data: OctetString::new(encrypted).context("encoding the key")?,
    };
    let key_safe: SafeContents = vec![SafeBag {
        bag_id: pkcs12::PKCS_12_PKCS8_KEY_BAG_OID,
        bag_value: shrouded.to_der().context("encoding the key bag")?,
        bag_attributes: Some(attributes.clone()),
    }];
    let key_info = ContentInfo {
        content_type: ID_DATA,
        content: Any::encode_from(
            &OctetString::new(key_safe.to_der().context("encoding the key safe")?)
                .context("encoding the key safe")?,
        )
        .context("encoding the key safe")?,
    };

    // The certificate: a certBag in a safe encrypted with PBES2.
    let cert_bag = CertBag {
        cert_id: pkcs12::PKCS_12_X509_CERT_OID,
        cert_value: OctetString::new(cert_der).context("encoding the certificate bag")?,
    };
    let cert_safe: SafeContents = vec![SafeBag {
        bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
        bag_value: cert_bag.to_der().context("encoding the certificate bag")?,
        bag_attributes: Some(attributes),
    }];
    let (alg, encrypted) = pbes2_encrypt(
        password,
        &cert_safe
            .to_der()
            .context("encoding the certificate safe")?,
    )?;
    let cert_info = ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: Any::encode_from(&EncryptedData {
            version: cms::content_info::CmsVersion::V0,
            enc_content_info: EncryptedContentInfo {
                content_type: ID_DATA,
                content_enc_alg: alg,
                encrypted_content: Some(
                    OctetString::new(encrypted).context("encoding the certificate safe")?,
                ),
            },
            unprotected_attrs: None,
        })
        .context("encoding the certificate safe")?,
    };

    let auth_safe = vec![cert_info, key_info]
        .to_der()
        .context("encoding the PFX's safes")?;
    let mut salt = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let rounds = i32::try_from(ITERATIONS).context("the iteration count")?;
    let mac = pfx_mac(SHA256_OID, password, &salt, rounds, &auth_safe)?
        .ok_or_else(|| Error::new("SHA-256 MAC"))?;
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: ContentInfo {
            content_type: ID_DATA,
            content: Any::encode_from(
                &OctetString::new(auth_safe).context("encoding the PFX's safes")?,
            )
            .context("encoding the PFX's safes")?,
        },
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: algorithm(SHA256_OID),
                digest: OctetString::new(mac).context("encoding the MAC")?,
            },
            mac_salt: OctetString::new(salt.to_vec()).context("encoding the MAC")?,
            iterations: rounds,
        }),
    };
    pfx.to_der().context("encoding the PFX")
}

fn key_id_attributes(id: &[u8]) -> Result<Attributes> {
    let value = Any::encode_from(&OctetString::new(id).context("encoding the key id")?)
        .context("encoding the key id")?;
    let attribute = Attribute {
        oid: LOCAL_KEY_ID,
        values: SetOfVec::try_from(vec![value]).context("encoding the key id")?,
    };
    SetOfVec::try_from(vec![attribute]).context("encoding the key id")
}

/// `data` encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), fresh salt and IV; the
/// algorithm identifier and the ciphertext.
fn pbes2_encrypt(
    password: &str,
    data: &[u8],
) -> Result<(x509_cert::spki::AlgorithmIdentifierOwned, Vec<u8>)> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
    let params = pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(ITERATIONS, &salt, &iv)
        .context("PBES2 parameters")?;
    let scheme = pkcs5::EncryptionScheme::from(params);
    let encrypted = scheme
        .encrypt(password, data)
        .context("encrypting with PBES2")?;
    let alg = x509_cert::spki::AlgorithmIdentifierOwned::from_der(
        &scheme.to_der().context("encoding PBES2 parameters")?,
    )
    .context("encoding PBES2 parameters")?;
    Ok((alg, encrypted))
}

#[cfg(test)]
mod tests;

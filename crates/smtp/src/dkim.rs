//! DKIM signing keys, one per sending domain (RFC 6376; Ed25519 per RFC 8463).
//!
//! Keys live in `<data>/dkim/<domain>.json` (mode 0600): the selector, the algorithm, the
//! PKCS#8 private key and the DNS record that publishes its public half. The operator creates
//! one with `sealmail domain dkim-keygen`; every outbound message whose envelope sender is in
//! that domain is then signed before it enters the outbound queue.

use base64ct::{Base64, Encoding};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// Header fields signed when present (RFC 6376 5.4.1's list, minus trace fields).
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
];

/// The signature algorithm of a domain key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// `ed25519-sha256` (RFC 8463): short keys and signatures; the default.
    #[default]
    Ed25519,
    /// `rsa-sha256` with a 2048-bit key, for receivers that do not know Ed25519 yet.
    Rsa,
}

impl std::str::FromStr for DkimAlgorithm {
    type Err = DkimError;
    fn from_str(s: &str) -> Result<Self, DkimError> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(DkimAlgorithm::Ed25519),
            "rsa" => Ok(DkimAlgorithm::Rsa),
            other => Err(DkimError::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// What can go wrong with DKIM keys.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("unknown DKIM algorithm {0:?} (use rsa or ed25519)")]
    UnknownAlgorithm(String),
    #[error("{0:?} is not a valid domain name")]
    InvalidDomain(String),
    #[error("{0:?} is not a valid DKIM selector (letters, digits, '-' and '.')")]
    InvalidSelector(String),
    #[error("a DKIM key for {0} exists already (pass --replace to rotate it)")]
    KeyExists(String),
    #[error("generating the key failed: {0}")]
    KeyGeneration(String),
    #[error("the DKIM key file {path} is unreadable: {reason}")]
    CorruptKeyFile { path: PathBuf, reason: String },
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The DNS TXT record that publishes a domain key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimRecord {
    /// `<selector>._domainkey.<domain>`
    pub name: String,
    /// `v=DKIM1; k=ed25519; p=...`
    pub value: String,
}

/// On-disk form of a domain key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    selector: String,
    algorithm: DkimAlgorithm,
    /// PKCS#8 DER, base64; wiped on drop.
    private_key: String,
    record: DkimRecord,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

/// The per-domain keys under `<data>/dkim/`.
#[derive(Debug, Clone)]
pub struct DkimKeys {
    dir: PathBuf,
}

impl DkimKeys {
    pub fn new(data_dir: &Path) -> Self {
        DkimKeys {
            dir: data_dir.join("dkim"),
        }
    }

    /// Create a key for `domain` and return the record to publish. Refuses to replace an
    /// existing key unless `replace` (the old signatures stop verifying once DNS changes).
    pub fn generate(
        &self,
        domain: &str,
        selector: &str,
        algorithm: DkimAlgorithm,
        replace: bool,
    ) -> Result<DkimRecord, DkimError> {
        let domain = normalize_domain(domain)?;
        if selector.is_empty()
            || selector.len() > 63
            || !selector
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(DkimError::InvalidSelector(selector.to_string()));
        }
        let path = self.path(&domain);
        if path.exists() && !replace {
            return Err(DkimError::KeyExists(domain));
        }
        let generation = |e: rcgen::Error| DkimError::KeyGeneration(e.to_string());
        let (pkcs8, public, k) = match algorithm {
            DkimAlgorithm::Ed25519 => {
                let pair =
                    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(generation)?;
                // RFC 8463 3: p= is the bare 32-byte public key.
                let public = pair.public_key_raw().to_vec();
                (Zeroizing::new(pair.serialize_der()), public, "ed25519")
            }
            DkimAlgorithm::Rsa => {
                let pair = rcgen::KeyPair::generate_rsa_for(
                    &rcgen::PKCS_RSA_SHA256,
                    rcgen::RsaKeySize::_2048,
                )
                .map_err(generation)?;
                // The SubjectPublicKeyInfo form that openssl and opendkim publish.
                let public = rcgen::PublicKeyData::subject_public_key_info(&pair);
                (Zeroizing::new(pair.serialize_der()), public, "rsa")
            }
        };
        let record = DkimRecord {
            name: format!("{selector}._domainkey.{domain}"),
            value: format!("v=DKIM1; k={k}; p={}", Base64::encode_string(&public)),
        };
        let file = KeyFile {
            selector: selector.to_string(),
            algorithm,
            private_key: Base64::encode_string(&pkcs8),
            record: record.clone(),
        };
        // Check that the key loads before it is saved: a key we cannot sign with is useless.
        load_key(algorithm, &pkcs8).map_err(DkimError::KeyGeneration)?;
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("plain data"));
        write_private(&self.dir, &path, &json)?;
        Ok(record)
    }

    /// The published record of `domain`'s key, if it has one.
    pub fn record(&self, domain: &str) -> Result<Option<DkimRecord>, DkimError> {
        Ok(self.read(domain)?.map(|file| file.record.clone()))
    }

    /// A signer for mail from `domain`, if the domain has a key.
    pub fn signer(&self, domain: &str) -> Result<Option<DomainSigner>, DkimError> {
        let Ok(domain) = normalize_domain(domain) else {
            return Ok(None);
        };
        let Some(file) = self.read(&domain)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| DkimError::CorruptKeyFile {
            path: self.path(&domain),
            reason,
        };
        let der = Zeroizing::new(
            Base64::decode_vec(&file.private_key).map_err(|e| corrupt(e.to_string()))?,
        );
        let key = load_key(file.algorithm, &der).map_err(corrupt)?;
        Ok(Some(DomainSigner {
            domain,
            selector: file.selector.clone(),
            key,
        }))
    }

    fn read(&self, domain: &str) -> Result<Option<KeyFile>, DkimError> {
        let path = self.path(&normalize_domain(domain)?);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DkimError::CorruptKeyFile {
                path,
                reason: e.to_string(),
            })
    }

    fn path(&self, domain: &str) -> PathBuf {
        self.dir.join(format!("{domain}.json"))
    }
}

/// Signs messages for one domain.
pub struct DomainSigner {
    domain: String,
    selector: String,
    key: DkimKey,
}

impl std::fmt::Debug for DomainSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl DomainSigner {
    /// The message with a `DKIM-Signature:` header field prepended (relaxed/relaxed, so the
    /// header folding of relays in between does not break it).
    pub fn sign(self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let DomainSigner {
            domain,
            selector,
            key,
        } = self;
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| DkimError::Signing(e.to_string()))?;
        let header = signature.to_header();
        let mut signed = Vec::with_capacity(header.len() + message.len());
        signed.extend_from_slice(header.as_bytes());
        signed.extend_from_slice(message);
        Ok(signed)
    }
}

fn load_key(algorithm: DkimAlgorithm, der: &[u8]) -> Result<DkimKey, String> {
    match algorithm {
        DkimAlgorithm::Ed25519 => Ed25519Key::from_pkcs8_der(der)
            .map(DkimKey::from)
            .map_err(|e| e.to_string()),
        DkimAlgorithm::Rsa => {
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                .or_else(|_| {
                    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
                        der,
                    )))
                })
                .map(DkimKey::from)
                .map_err(|e| e.to_string())
        }
    }
}

/// Lower-case ASCII domain of letters, digits, '-' and '.': it becomes a file name.
fn normalize_domain(domain: &str) -> Result<String, DkimError> {
    let lower = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 253
        && !lower.starts_with('.')
        && !lower.contains("..")
        && lower
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(lower)
    } else {
        Err(DkimError::InvalidDomain(domain.to_string()))
    }
}

/// Write `bytes` to `path` readable by the owner only: temp file, fsync, rename, dir fsync.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MESSAGE: &[u8] =
        b"From: a@example.test\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n";

    #[test]
    fn generated_keys_sign_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DkimKeys::new(dir.path());
        for (domain, algorithm, k) in [
            ("Example.TEST", DkimAlgorithm::Ed25519, "k=ed25519"),
            ("rsa.test", DkimAlgorithm::Rsa, "k=rsa"),
        ] {
            let record = keys.generate(domain, "s1", algorithm, false).unwrap();
            let lower = domain.to_ascii_lowercase();
            assert_eq!(record.name, format!("s1._domainkey.{lower}"));
            assert!(record.value.starts_with("v=DKIM1; ") && record.value.contains(k));
            let path = dir.path().join("dkim").join(format!("{lower}.json"));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "key file readable by the owner only");
            let signed = keys.signer(domain).unwrap().unwrap().sign(MESSAGE).unwrap();
            let text = String::from_utf8(signed).unwrap();
            assert!(text.starts_with("DKIM-Signature:"), "{text}");
            assert!(text.contains(&format!("d={lower}")) && text.contains("s=s1"));
            assert!(text.ends_with("\r\n\r\nHello.\r\n"));
            assert_eq!(keys.record(domain).unwrap(), Some(record));
        }
        assert!(matches!(
            keys.generate("example.test", "s2", DkimAlgorithm::Ed25519, false),
            Err(DkimError::KeyExists(_))
        ));
        keys.generate("example.test", "s2", DkimAlgorithm::Ed25519, true)
            .unwrap();
        assert!(keys.signer("nokey.test").unwrap().is_none());
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DkimKeys::new(dir.path());
        assert!(matches!(
            keys.generate("../etc", "s", DkimAlgorithm::Ed25519, false),
            Err(DkimError::InvalidDomain(_))
        ));
        assert!(matches!(
            keys.generate("example.test", "a b", DkimAlgorithm::Ed25519, false),
            Err(DkimError::InvalidSelector(_))
        ));
        assert!("dsa".parse::<DkimAlgorithm>().is_err());
        assert_eq!("RSA".parse::<DkimAlgorithm>().unwrap(), DkimAlgorithm::Rsa);
    }
}

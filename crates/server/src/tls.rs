//! TLS for every listener: the operator's certificate, or a self-signed one generated into the
//! data directory on first start so `sealmail serve` works at once on 127.0.0.1.
//!
//! The policy (rustls with aws-lc-rs, X25519MLKEM768 offered and preferred, X25519 for clients
//! that lack it) is `sealmail_imap::server::tls_server_config`, shared by every listener.

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The rustls server configuration shared by IMAP, POP3 and SMTP listeners.
pub fn server_config(data_dir: &Path, files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => self_signed(data_dir)?,
        _ => anyhow::bail!("tls.cert and tls.key must be given together"),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("reading certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading private key {}", key_path.display()))?;
    // One TLS policy for every protocol (post-quantum hybrid first, server's order wins).
    let config = sealmail_imap::server::tls_server_config(certs, key)
        .context("certificate and key do not match")?;
    Ok(Arc::new(config))
}

/// `<data>/tls/cert.pem` and `key.pem`, generated for localhost on first use.
fn self_signed(data_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join("tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem())?;
    eprintln!(
        "generated a self-signed TLS certificate at {}",
        cert_path.display()
    );
    Ok((cert_path, key_path))
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

    /// Run a TLS handshake in memory and return the key exchange group the two sides agreed on.
    fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> rustls::NamedGroup {
        let mut client = ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!client.is_handshaking(), "handshake did not complete");
        client.negotiated_key_exchange_group().unwrap().name()
    }

    fn client_trusting(data_dir: &Path) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(data_dir.join("tls/cert.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    #[test]
    fn self_signed_certificate_is_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        server_config(dir.path(), &TlsFiles::default()).unwrap();
        let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        server_config(dir.path(), &TlsFiles::default()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("tls/cert.pem")).unwrap(),
            cert,
            "reused"
        );
    }

    #[test]
    fn a_rustls_client_negotiates_the_post_quantum_hybrid() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_config(dir.path(), &TlsFiles::default()).unwrap();
        let group = handshake(server, Arc::new(client_trusting(dir.path())));
        assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    }

    #[test]
    fn a_classical_client_still_connects_with_x25519() {
        let dir = tempfile::tempdir().unwrap();
        let server = server_config(dir.path(), &TlsFiles::default()).unwrap();
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider
            .kx_groups
            .retain(|g| g.name() == rustls::NamedGroup::X25519);
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.path().join("tls/cert.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        assert_eq!(
            handshake(server, Arc::new(client)),
            rustls::NamedGroup::X25519
        );
    }

    #[test]
    fn mismatched_or_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let only_cert = TlsFiles {
            cert: Some(dir.path().join("c.pem")),
            key: None,
        };
        assert!(server_config(dir.path(), &only_cert).is_err());
        let missing = TlsFiles {
            cert: Some(dir.path().join("nope.pem")),
            key: Some(dir.path().join("nope.key")),
        };
        let err = server_config(dir.path(), &missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}

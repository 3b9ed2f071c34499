//! rustls client configurations for STARTTLS to other MTAs.
//!
//! Two policies:
//! - **opportunistic** (`require_tls = false`, RFC 7435): any certificate is accepted. Without
//!   DANE or MTA-STS nothing tells us which name the certificate should carry, and refusing
//!   a certificate would only send the mail in the clear instead, which is worse. Encryption
//!   still defeats passive eavesdroppers; the handshake signatures are still checked.
//! - **verified** (`require_tls = true`): the certificate must chain to a trusted root (the
//!   system's, plus the operator's `extra_ca_file`) and name the MX host we connect to (RFC
//!   7817 / RFC 6125: the MX host name, not the recipient domain, as MTA-STS also does).
//!   Otherwise the attempt fails temporarily: required TLS that accepts any certificate would
//!   be defeated by any man in the middle.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Why the verified TLS configuration could not be built (the relay does not start: required
/// TLS without trust anchors could deliver nothing).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("reading extra CA file {path}: {source}")]
    ExtraCaFile {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("extra CA file {0} holds no certificate")]
    NoCertificateInFile(PathBuf),
    #[error("extra CA file {path}: unusable certificate: {source}")]
    InvalidCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "require_tls is set but no trusted root certificate was found \
         (install the system CA certificates or set extra_ca_file)"
    )]
    NoTrustAnchors,
    #[error("building the certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Opportunistic STARTTLS (RFC 7435): any certificate, checked handshake signatures.
pub fn opportunistic_config() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Required TLS: WebPKI verification against the system roots and the certificates of
/// `extra_ca_file` (PEM), for the server name the client connects with (the MX host).
pub fn verified_config(
    extra_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "loading a system root certificate failed");
    }
    // System stores hold the odd certificate webpki cannot use; skipping it is what every
    // rustls client does.
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "system root certificates webpki cannot use");
    }
    if let Some(path) = extra_ca_file {
        for certificate in read_certificates(path)? {
            roots
                .add(certificate)
                .map_err(|source| TlsConfigError::InvalidCertificate {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoTrustAnchors);
    }
    let provider = provider();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let file_error = |source| TlsConfigError::ExtraCaFile {
        path: path.to_path_buf(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)?;
    if certificates.is_empty() {
        return Err(TlsConfigError::NoCertificateInFile(path.to_path_buf()));
    }
    Ok(certificates)
}

/// The reason a handshake with `host` failed because its certificate was rejected, worded
/// for the queue listing and the sender's DSN; `None` when the failure is something else.
pub fn certificate_rejection(host: &str, error: &std::io::Error) -> Option<String> {
    use rustls::CertificateError as E;
    let rustls::Error::InvalidCertificate(reason) = error.get_ref()?.downcast_ref()? else {
        return None;
    };
    Some(match reason {
        E::NotValidForName => format!("certificate for {host} does not match the host name"),
        E::NotValidForNameContext { presented, .. } => format!(
            "certificate for {host} does not match the host name (it names {})",
            if presented.is_empty() {
                "no host".to_string()
            } else {
                presented.join(", ")
            }
        ),
        E::UnknownIssuer => format!("certificate for {host} has an unknown issuer"),
        E::Expired | E::ExpiredContext { .. } => format!("certificate for {host} has expired"),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            format!("certificate for {host} is not valid yet")
        }
        other => format!("certificate for {host} was rejected: {other}"),
    })
}

/// Accepts every certificate: opportunistic TLS only (see the module documentation).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_ca_file_errors_are_specific() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            verified_config(Some(&missing)),
            Err(TlsConfigError::ExtraCaFile { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        assert!(matches!(
            verified_config(Some(&empty)),
            Err(TlsConfigError::NoCertificateInFile(_))
        ));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(verified_config(Some(&good)).is_ok());
    }

    #[test]
    fn certificate_rejections_name_the_host_and_the_reason() {
        let wrap = |e: rustls::CertificateError| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(e),
            )
        };
        assert_eq!(
            certificate_rejection("mx.example", &wrap(rustls::CertificateError::UnknownIssuer))
                .as_deref(),
            Some("certificate for mx.example has an unknown issuer")
        );
        let mismatch = rustls::CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("mx.example").unwrap(),
            presented: vec!["DnsName(\"other.example\")".into()],
        };
        let text = certificate_rejection("mx.example", &wrap(mismatch)).unwrap();
        assert!(
            text.starts_with("certificate for mx.example does not match")
                && text.contains("other.example"),
            "{text}"
        );
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(certificate_rejection("mx.example", &other), None);
    }
}

//! TLS: implicit TLS negotiates the post-quantum hybrid X25519MLKEM768 with a stock rustls
//! client; STARTTLS upgrades a plain connection, and authentication waits for it.

use crate::common::{RawClient, TestServer};
use sealmail_imap::server::{TlsSettings, tls_server_config};
use std::sync::Arc;
use tokio_rustls::rustls::{self, pki_types};

struct Certificate {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// A self-signed certificate for `localhost`, and a client that trusts exactly it.
fn certificate() -> Certificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let server = Arc::new(tls_server_config(vec![cert.clone()], key).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    // The client uses rustls's stock provider and defaults, as a real client would.
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Certificate {
        server,
        client: Arc::new(client),
    }
}

fn server_name() -> pki_types::ServerName<'static> {
    pki_types::ServerName::try_from("localhost").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_negotiates_x25519mlkem768() {
    let cert = certificate();
    let server_config = Arc::clone(&cert.server);
    let server = TestServer::start(move |config| {
        config.loopback_plaintext_auth = false;
        config.tls = Some(TlsSettings {
            config: server_config,
            implicit: true,
        });
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cert.client)
        .connect(server_name(), tcp)
        .await
        .unwrap();
    let (_, connection) = tls.get_ref();
    assert_eq!(
        connection.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    assert_eq!(
        connection.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (mut client, greeting) = RawClient::over(Box::new(tls)).await;
    assert!(greeting.contains("AUTH=PLAIN"), "{greeting}");
    assert!(!greeting.contains("STARTTLS"), "{greeting}");
    let reply = client
        .command("a LOGIN alice@example.org \"correct horse\"")
        .await;
    assert!(reply.last().unwrap().starts_with("a OK"), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_and_login_waits_for_it() {
    let cert = certificate();
    let server_config = Arc::clone(&cert.server);
    let server = TestServer::start(move |config| {
        config.loopback_plaintext_auth = false;
        config.tls = Some(TlsSettings {
            config: server_config,
            implicit: false,
        });
    })
    .await;
    let (mut client, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    assert!(greeting.contains("LOGINDISABLED"), "{greeting}");
    assert!(!greeting.contains("AUTH=PLAIN"), "{greeting}");
    let reply = client
        .command("a LOGIN alice@example.org \"correct horse\"")
        .await;
    assert!(
        reply.last().unwrap().starts_with("a NO [PRIVACYREQUIRED]"),
        "{reply:?}"
    );
    let reply = client.command("b STARTTLS").await;
    assert_eq!(reply, vec!["b OK begin TLS negotiation now".to_string()]);
    let tls = tokio_rustls::TlsConnector::from(cert.client)
        .connect(server_name(), client.into_stream())
        .await
        .unwrap();
    // No second greeting after STARTTLS: the client asks for capabilities again.
    let mut client = RawClient::wrap(Box::new(tls));
    let reader_greeting = client.command("c CAPABILITY").await;
    assert!(
        reader_greeting[0].contains("AUTH=PLAIN"),
        "{reader_greeting:?}"
    );
    assert!(
        !reader_greeting[0].contains("STARTTLS"),
        "{reader_greeting:?}"
    );
    let reply = client
        .command("d LOGIN alice@example.org \"correct horse\"")
        .await;
    assert!(reply.last().unwrap().starts_with("d OK"), "{reply:?}");
    server.shutdown().await;
}

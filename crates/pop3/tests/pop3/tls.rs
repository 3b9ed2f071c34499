//! TLS: implicit TLS (POP3S) and STLS (RFC 2595); authentication waits for TLS when the
//! loopback exemption is off.

use crate::common::{ADDRESS, PASSWORD, RawClient, TestServer, certificate};
use tokio_rustls::rustls::pki_types::ServerName;

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_serves_the_session() {
    let cert = certificate();
    let server = TestServer::start_tls(&cert, true).await;
    server.seed(&[b"Subject: tls\r\n\r\n.hidden\r\n"]).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cert.client.clone())
        .connect(localhost(), tcp)
        .await
        .unwrap();
    let (mut client, greeting) = RawClient::over(Box::new(tls)).await;
    assert!(greeting.starts_with("+OK"), "{greeting}");
    client.command("CAPA").await;
    let capa = String::from_utf8(client.multiline().await).unwrap();
    assert!(
        capa.contains("USER\r\n") && !capa.contains("STLS"),
        "{capa}"
    );
    client.command(&format!("USER {ADDRESS}")).await;
    assert!(
        client
            .command(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("+OK")
    );
    assert!(client.command("RETR 1").await.starts_with("+OK"));
    assert_eq!(
        client.multiline().await,
        b"Subject: tls\r\n\r\n..hidden\r\n.\r\n"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stls_upgrades_and_drops_pipelined_plaintext() {
    let cert = certificate();
    let server = TestServer::start_tls(&cert, false).await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.command("CAPA").await;
    let capa = String::from_utf8(client.multiline().await).unwrap();
    assert!(
        capa.contains("STLS\r\n") && !capa.contains("USER"),
        "{capa}"
    );
    assert_eq!(
        client.command(&format!("USER {ADDRESS}")).await,
        "-ERR [SYS/PERM] authentication requires TLS: use STLS first"
    );
    // A command injected behind STLS in the same packet must not survive the upgrade.
    client.send(b"STLS\r\nUSER injected\r\n").await;
    assert_eq!(client.line().await, "+OK begin TLS negotiation");
    let tls = tokio_rustls::TlsConnector::from(cert.client.clone())
        .connect(localhost(), client.into_stream())
        .await
        .unwrap();
    let mut client = crate::common::RawClient::over_without_greeting(Box::new(tls));
    // PASS right away: had `USER injected` been kept, this would try that name.
    assert_eq!(
        client.command(&format!("PASS {PASSWORD}")).await,
        "-ERR send USER first"
    );
    client.command("CAPA").await;
    let capa = String::from_utf8(client.multiline().await).unwrap();
    assert!(
        capa.contains("USER\r\n") && !capa.contains("STLS"),
        "{capa}"
    );
    assert!(client.command("STLS").await.starts_with("-ERR"));
    client.command(&format!("USER {ADDRESS}")).await;
    assert!(
        client
            .command(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("+OK")
    );
    server.shutdown().await;
}

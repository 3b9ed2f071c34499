//! SPF, DKIM, DMARC and ARC on inbound mail, against a stub DNS server on 127.0.0.1: the
//! results land in an Authentication-Results field, and DMARC `p=reject` is honoured.

use crate::common::{ALICE, RawClient, TestServer};
use crate::dns_stub::DnsStub;
use base64ct::{Base64, Encoding};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use sealmail_smtp::{DnsResolver, InboundAuthConfig, InboundAuthenticator};
use std::time::Duration;

/// A fresh Ed25519 key and the DKIM record (RFC 8463) that publishes it.
fn dkim_key() -> (Ed25519Key, String) {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let record = format!(
        "v=DKIM1; k=ed25519; p={}",
        Base64::encode_string(&key.public_key())
    );
    (key, record)
}

fn dkim_sign(key: Ed25519Key, domain: &str, message: &str) -> String {
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector("sel")
        .headers(["From", "To", "Subject", "Message-ID"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\n\
         Hello Alice,\r\nthis is {subject}.\r\n"
    )
}

/// An MX whose inbound checks ask `dns`.
async fn server(dns: &DnsStub, honor_dmarc_reject: bool) -> TestServer {
    let config = InboundAuthConfig {
        resolver: DnsResolver::Nameservers(vec![dns.addr]),
        honor_dmarc_reject,
        dns_timeout: Duration::from_secs(2),
    };
    let authenticator = InboundAuthenticator::new(&config, "mx.example.test").unwrap();
    TestServer::start_with(
        |_| {},
        move |delivery, _| delivery.with_inbound_auth(authenticator),
    )
    .await
}

/// Send one message; returns the final reply code (`250 2.0.0`, `550 5.7.1`, ...).
async fn send(server: &TestServer, mail_from: &str, body: &str) -> String {
    let (mut client, _) = RawClient::connect(server.addr).await;
    let codes = client
        .codes(
            format!("EHLO client.test\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
                .as_bytes(),
            4,
        )
        .await;
    assert_eq!(codes[1..], ["250 2.1.0", "250 2.1.5", "354 end d"]);
    let mut data = body.to_string();
    data.push_str(".\r\n");
    let reply = client.codes(data.as_bytes(), 1).await.remove(0);
    client.send(b"QUIT\r\n").await;
    reply
}

/// The one message in Alice's inbox, as text.
async fn stored(server: &TestServer) -> String {
    let messages = server.messages(ALICE, "INBOX").await;
    assert_eq!(messages.len(), 1);
    String::from_utf8(messages[0].clone()).unwrap()
}

/// The first header field of `text`, unfolded.
fn authentication_results(text: &str) -> String {
    assert!(
        text.starts_with("Authentication-Results: mx.example.test"),
        "{text}"
    );
    let end = text.find("\r\nReceived: ").expect("Received: follows");
    text[..end].replace("\r\n\t", " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signed_mail_from_an_spf_authorized_ip_passes_everything() {
    let dns = DnsStub::start().await;
    let (key, record) = dkim_key();
    dns.txt("sel._domainkey.example.org", &record);
    dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("_dmarc.example.org", "v=DMARC1; p=reject");
    let server = server(&dns, true).await;
    let signed = dkim_sign(key, "example.org", &message("news@example.org", "signed"));
    assert_eq!(
        send(&server, "news@example.org", &signed).await,
        "250 2.0.0"
    );
    let text = stored(&server).await;
    let results = authentication_results(&text);
    for expected in [
        "spf=pass",
        "smtp.mailfrom=news@example.org",
        "dkim=pass header.d=example.org header.s=sel",
        "arc=none",
        "dmarc=pass header.from=example.org policy.dmarc=reject",
    ] {
        assert!(results.contains(expected), "{expected} in {results}");
    }
    assert!(!text.contains("X-Spam-Flag"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_body_fails_dkim_and_forged_results_are_removed() {
    let dns = DnsStub::start().await;
    let (key, record) = dkim_key();
    dns.txt("sel._domainkey.example.org", &record);
    dns.txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
    let server = server(&dns, true).await;
    let signed = dkim_sign(key, "example.org", &message("news@example.org", "tampered"));
    let tampered = signed.replace("this is tampered.", "this is TAMPERED.");
    assert_ne!(signed, tampered);
    // A sender claiming our own verdict: RFC 8601 5 says we remove it.
    let forged = format!("Authentication-Results: mx.example.test; dkim=pass\r\n{tampered}");
    assert_eq!(
        send(&server, "news@example.org", &forged).await,
        "250 2.0.0"
    );
    let text = stored(&server).await;
    let results = authentication_results(&text);
    assert!(results.contains("dkim=fail"), "{results}");
    assert!(!results.contains("dkim=pass"), "{results}");
    assert_eq!(
        text.matches("Authentication-Results: mx.example.test")
            .count(),
        1,
        "the forged field is gone: {text}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_fails_for_an_ip_the_domain_does_not_authorize() {
    let dns = DnsStub::start().await;
    dns.txt("elsewhere.test", "v=spf1 ip4:192.0.2.1 -all");
    let server = server(&dns, true).await;
    let body = message("someone@elsewhere.test", "spf-fail");
    assert_eq!(
        send(&server, "someone@elsewhere.test", &body).await,
        "250 2.0.0"
    );
    let results = authentication_results(&stored(&server).await);
    assert!(results.contains("spf=fail"), "{results}");
    assert!(
        results.contains("dkim=none") || !results.contains("dkim="),
        "{results}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_reject_with_failing_alignment_is_refused_with_550() {
    let dns = DnsStub::start().await;
    dns.txt("strict.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("_dmarc.strict.test", "v=DMARC1; p=reject");
    let server = server(&dns, true).await;
    let body = message("ceo@strict.test", "spoofed");
    assert_eq!(send(&server, "ceo@strict.test", &body).await, "550 5.7.1");
    assert_eq!(
        server.queued(ALICE),
        0,
        "nothing stored for a refused message"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_quarantine_delivers_flagged_as_junk() {
    let dns = DnsStub::start().await;
    dns.txt("loose.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("_dmarc.loose.test", "v=DMARC1; p=quarantine");
    let server = server(&dns, true).await;
    let body = message("billing@loose.test", "quarantined");
    assert_eq!(
        send(&server, "billing@loose.test", &body).await,
        "250 2.0.0"
    );
    let text = stored(&server).await;
    assert!(text.contains("\r\nX-Spam-Flag: YES\r\n"), "{text}");
    let results = authentication_results(&text);
    assert!(
        results.contains("dmarc=fail") && results.contains("policy.dmarc=quarantine"),
        "{results}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arc_sealed_message_records_arc_pass() {
    let dns = DnsStub::start().await;
    let (arc_key, arc_record) = dkim_key();
    dns.txt("arc._domainkey.forwarder.test", &arc_record);
    dns.txt("list.test", "v=spf1 ip4:127.0.0.1 -all");
    let server = server(&dns, true).await;
    // The forwarder's own verdict and its ARC set (RFC 8617), as a mailing list would add.
    let original = message("member@list.test", "arc");
    let parsed = AuthenticatedMessage::parse(original.as_bytes()).unwrap();
    let results = AuthenticationResults::new("forwarder.test");
    let set = mail_auth::arc::ArcSealer::from_key(arc_key)
        .domain("forwarder.test")
        .selector("arc")
        .headers(["From", "To", "Subject"])
        .seal(&parsed, &results, &ArcOutput::default())
        .unwrap();
    let sealed = format!("{}{original}", set.to_header());
    assert_eq!(
        send(&server, "member@list.test", &sealed).await,
        "250 2.0.0"
    );
    let results = authentication_results(&stored(&server).await);
    assert!(results.contains("; arc=pass"), "{results}");

    // A chain whose seal names a key that is not published fails outright.
    let unpublished = sealed.replace("s=arc", "s=gone");
    let server2 = crate::inbound_auth::server(&dns, true).await;
    assert_eq!(
        send(&server2, "member@list.test", &unpublished).await,
        "250 2.0.0"
    );
    let results = authentication_results(&stored(&server2).await);
    assert!(
        !results.contains("; arc=pass") && !results.contains("; arc=none"),
        "{results}"
    );
    server.shutdown().await;
    server2.shutdown().await;
}

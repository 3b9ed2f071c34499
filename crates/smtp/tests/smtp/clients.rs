//! Real clients against the listeners: Python's smtplib, swaks and nodemailer. Each test
//! delivers to an offline address, checks that the marker is nowhere in the data directory in
//! clear text, then logs in and finds the message, and the queue empty.

use crate::common::{ALICE, BOB, TestServer, files_containing, marker};
use std::path::Path;
use std::process::Command;

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn run_blocking(mut command: Command) -> String {
    tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap()
}

/// The marker is sealed (no clear text anywhere), then, after login, delivered exactly once.
async fn assert_sealed_then_delivered(
    server: &TestServer,
    address: &str,
    folder: &str,
    marker: &str,
) {
    assert_eq!(server.queued(address), 1, "{address} has one sealed item");
    assert!(files_containing(server.data_dir(), marker.as_bytes()).is_empty());
    let messages = server.messages(address, folder).await;
    let hits = messages
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains(marker))
        .count();
    assert_eq!(hits, 1, "{address} has the message once in {folder}");
    assert_eq!(server.queued(address), 0);
}

fn python_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python/smtplib_client.py")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_mx_with_starttls() {
    let server = TestServer::mx().await;
    let marker = marker("smtplib");
    let mut command = Command::new("python3");
    command.args([
        python_script(),
        "mx".into(),
        server.addr.port().to_string(),
        marker.clone(),
    ]);
    assert_eq!(run_blocking(command).await.trim(), "ok");
    assert_sealed_then_delivered(&server, ALICE, "INBOX", &marker).await;
    let text = String::from_utf8(server.messages(ALICE, "INBOX").await.remove(0)).unwrap();
    assert!(
        text.contains("with ESMTPS id"),
        "TLS recorded in Received: {text}"
    );
    assert!(
        text.contains("\n.a line starting with a dot"),
        "dot-stuffing round trip"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_submission_stores_sent_and_seals_local_recipient() {
    let server = TestServer::submission().await;
    let marker = marker("submit");
    let mut command = Command::new("python3");
    command.args([
        python_script(),
        "submission".into(),
        server.addr.port().to_string(),
        marker.clone(),
    ]);
    assert_eq!(run_blocking(command).await.trim(), "ok");
    assert_sealed_then_delivered(&server, BOB, "INBOX", &marker).await;
    let sent = server.messages(ALICE, "Sent").await;
    assert_eq!(sent.len(), 1, "one copy in the sender's Sent folder");
    let text = String::from_utf8_lossy(&sent[0]);
    assert!(
        text.contains(&marker) && !text.starts_with("Received:"),
        "{text}"
    );
    server.shutdown().await;
}

/// RFC 3461 from a real client: smtplib's mail and rcpt options ask for a success report,
/// and the final delivery here sends the sender a `delivered` DSN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_notify_success_gets_a_delivered_report() {
    let server = TestServer::submission().await;
    let marker = marker("dsn");
    let mut command = Command::new("python3");
    command.args([
        python_script(),
        "dsn".into(),
        server.addr.port().to_string(),
        marker.clone(),
    ]);
    assert_eq!(run_blocking(command).await.trim(), "ok");
    assert_sealed_then_delivered(&server, BOB, "INBOX", &marker).await;
    let alice = server.messages(ALICE, "INBOX").await;
    assert_eq!(alice.len(), 1, "one success report");
    let report = String::from_utf8_lossy(&alice[0]);
    assert!(
        report.contains("Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\n"),
        "{report}"
    );
    assert!(report.contains(&format!("Original-Envelope-Id: {marker}")));
    assert!(report.contains("Original-Recipient: rfc822;bob@example.test"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_submission_over_implicit_tls() {
    let server = TestServer::start(|config| {
        config.session.mode = sealmail_smtp::Mode::Submission;
        config.loopback_plaintext_auth = false;
        config.tls = Some(sealmail_smtp::TlsSettings {
            config: crate::common::tls_config(),
            implicit: true,
        });
    })
    .await;
    let marker = marker("implicit");
    let mut command = Command::new("python3");
    command.args([
        python_script(),
        "implicit".into(),
        server.addr.port().to_string(),
        marker.clone(),
    ]);
    assert_eq!(run_blocking(command).await.trim(), "ok");
    assert_sealed_then_delivered(&server, BOB, "INBOX", &marker).await;
    let text = String::from_utf8(server.messages(BOB, "INBOX").await.remove(0)).unwrap();
    assert!(text.contains("with ESMTPSA id"), "{text}");
    server.shutdown().await;
}

fn swaks_available() -> bool {
    Command::new("swaks")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelining_and_starttls() {
    assert!(
        swaks_available(),
        "swaks is required: apt-get install -y swaks"
    );
    let server = TestServer::mx().await;
    let marker = marker("swaks");
    let mut command = Command::new("swaks");
    command.args([
        "--server",
        "127.0.0.1",
        "--port",
        &server.addr.port().to_string(),
        "--ehlo",
        "swaks.test",
        "--from",
        "sender@remote.test",
        "--to",
        ALICE,
        "--tls",
        "--pipeline",
        "--header",
        "Subject: swaks",
        "--body",
        &marker,
    ]);
    let transcript = run_blocking(command).await;
    assert!(
        transcript.contains("250 2.0.0 message accepted"),
        "{transcript}"
    );
    assert_sealed_then_delivered(&server, ALICE, "INBOX", &marker).await;

    // Unknown recipient: swaks reports the 550 and exits non-zero.
    let output = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &server.addr.port().to_string(),
            "--from",
            "s@remote.test",
            "--to",
            "nobody@example.test",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("550 5.1.1"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodemailer_over_starttls() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        node_dir.join("node_modules/nodemailer").is_dir(),
        "nodemailer is required: npm ci --prefix crates/smtp/tests/node"
    );
    let server = TestServer::mx().await;
    let marker = marker("nodemailer");
    let mut command = Command::new("node");
    command
        .current_dir(&node_dir)
        .args(["send.mjs", &server.addr.port().to_string(), &marker]);
    let result = run_blocking(command).await;
    assert!(
        result.contains(r#""accepted":["alice@example.test"]"#)
            && result.contains(r#""rejected":["nobody@example.test"]"#)
            && result.contains("250 2.0.0"),
        "{result}"
    );
    assert_sealed_then_delivered(&server, ALICE, "INBOX", &marker).await;
    server.shutdown().await;
}

//! Real clients against the real server: Python's poplib (every command, over STLS and over
//! implicit TLS, certificate verified) and Debian's fetchmail (STLS, with and without `keep`).

use crate::common::{ADDRESS, PASSWORD, TestServer, certificate};
use std::path::Path;
use std::process::{Command, Output};

/// The messages `poplib_session.py` expects, in order.
const POPLIB_MESSAGES: [&[u8]; 3] = [
    b"Subject: first\r\n\r\n.leading dot\r\n..two dots\r\nplain\r\n",
    b"Subject: second\n\nbare lf body\nno final newline",
    b"Subject: third\r\nX-Other: y\r\n\r\nl1\r\nl2\r\nl3\r\n",
];

async fn run(command: Command) -> Output {
    let mut command = command;
    tokio::task::spawn_blocking(move || command.output().expect("the client runs"))
        .await
        .unwrap()
}

fn report(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn poplib_session(implicit: bool) {
    let cert = certificate();
    let server = TestServer::start_tls(&cert, implicit).await;
    let uids = server.seed(&POPLIB_MESSAGES).await;
    let ca = server.dir.join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/poplib_session.py"
        ))
        .arg(if implicit { "implicit" } else { "stls" })
        .arg(server.addr.port().to_string())
        .arg(&ca)
        .arg(ADDRESS)
        .arg(PASSWORD);
    let output = run(command).await;
    assert!(output.status.success(), "{}", report(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("poplib session passed"),
        "{}",
        report(&output)
    );
    // The script deleted the second message at QUIT; the others are still there.
    assert_eq!(server.inbox_uids().await, vec![uids[0], uids[2]]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_over_stls() {
    poplib_session(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_over_implicit_tls() {
    poplib_session(true).await;
}

/// Run fetchmail once against the server with `options`; messages go to `mbox` via an MDA.
async fn fetchmail(server: &TestServer, ca: &Path, mbox: &Path, options: &str) -> Output {
    let rc = server.dir.join("fetchmailrc");
    let rc_text = format!(
        "set no bouncemail\n\
         poll localhost via 127.0.0.1 port {port} proto pop3 auth password\n  \
         user \"{ADDRESS}\" there with password \"{PASSWORD}\" is \"nobody\" here\n  \
         {options}\n  \
         sslproto \"tls1.2+\" sslcertck sslcertfile \"{ca}\" sslcommonname \"localhost\"\n  \
         mda \"/bin/sh -c 'cat >> {mbox}; echo ===END=== >> {mbox}'\"\n",
        port = server.addr.port(),
        ca = ca.display(),
        mbox = mbox.display(),
    );
    std::fs::write(&rc, rc_text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    // fetchmail refuses a run control file others can read (it holds a password).
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut command = Command::new("fetchmail");
    command
        .arg("--fetchmailrc")
        .arg(&rc)
        .arg("--idfile")
        .arg(server.dir.join("fetchids"))
        .arg("--pidfile")
        .arg(server.dir.join("fetchmail.pid"))
        .arg("--nosyslog")
        .arg("--verbose")
        .env("HOME", &server.dir);
    run(command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_fetchmail_with_and_without_keep() {
    let cert = certificate();
    // STLS port with plaintext login refused: fetchmail must upgrade to authenticate.
    let server = TestServer::start_tls(&cert, false).await;
    server
        .seed(&[
            b"Subject: fm one\r\n\r\n.dotted line\r\nbody one\r\n",
            b"Subject: fm two\r\n\r\nbody two\r\n",
        ])
        .await;
    let ca = server.dir.join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let mbox = server.dir.join("mbox");

    // keep: both messages fetched, both left on the server.
    let output = fetchmail(&server, &ca, &mbox, "keep").await;
    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
    let delivered = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(delivered.matches("===END===").count(), 2, "{delivered}");
    assert!(delivered.contains("Subject: fm one"), "{delivered}");
    assert!(
        delivered.contains("\n.dotted line\n"),
        "unstuffed: {delivered}"
    );
    assert!(delivered.contains("body two"), "{delivered}");
    assert_eq!(server.inbox_uids().await.len(), 2, "keep leaves mail");

    // keep again: UIDL is stable, so fetchmail knows both and fetches nothing (exit 1).
    let output = fetchmail(&server, &ca, &mbox, "keep").await;
    assert_eq!(output.status.code(), Some(1), "{}", report(&output));
    let delivered = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(delivered.matches("===END===").count(), 2, "{delivered}");

    // no keep, fetchall: both fetched again and deleted at QUIT.
    let output = fetchmail(&server, &ca, &mbox, "no keep fetchall").await;
    assert_eq!(output.status.code(), Some(0), "{}", report(&output));
    let delivered = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(delivered.matches("===END===").count(), 4, "{delivered}");
    assert!(server.inbox_uids().await.is_empty(), "{}", report(&output));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("POP3> STLS") && log.contains("POP3> QUIT"),
        "fetchmail upgraded with STLS: {log}"
    );
    server.shutdown().await;
}

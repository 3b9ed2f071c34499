//! End to end with Python's imaplib: a scripted session over a real socket against the server
//! running on a real encrypted mailbox.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_scripted_session() {
    let server = crate::common::TestServer::start(|_| {}).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/imaplib_session.py"
    );
    let port = server.addr.port();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("IMAP_PORT", port.to_string())
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "imaplib session failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("imaplib session passed"), "{stdout}");
    server.shutdown().await;
}

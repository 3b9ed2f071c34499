//! `sealmail restore` while a running `sealmail serve` has the mailbox open (an IMAP session is
//! logged in, idle): the restore must refuse with a clear error and leave the mailbox working;
//! once the server is gone the same restore succeeds. Also: `sealmail backup` while the server
//! has the mailbox open.
//!
//! (Written standalone; the server start-up helpers mirror `serve.rs` and belong in the shared
//! test support module.)

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADDRESS: &str = "user@example.org";
const PASSWORD: &str = "correct horse battery staple 42";

fn sealmail(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealmail"));
    command.arg("--data-dir").arg(data_dir);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `sealmail <args>` with the password on stdin.
fn with_password(data_dir: &Path, args: &[&str]) -> Output {
    let mut child = sealmail(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A running server; killed if the test fails before stopping it.
struct Server {
    child: Child,
    imap: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let imap = free_port();
        let mut command = sealmail(data_dir);
        command.arg("serve");
        for variable in [
            "SEALMAIL_IMAPS_LISTEN",
            "SEALMAIL_POP3_LISTEN",
            "SEALMAIL_POP3S_LISTEN",
            "SEALMAIL_SMTP_LISTEN",
            "SEALMAIL_SUBMISSION_LISTEN",
            "SEALMAIL_SUBMISSIONS_LISTEN",
            "SEALMAIL_METRICS_LISTEN",
        ] {
            command.env(variable, format!("127.0.0.1:{}", free_port()));
        }
        let mut child = command
            .env("SEALMAIL_IMAP_LISTEN", format!("127.0.0.1:{imap}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sealmail serve");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        while Instant::now() < deadline && !seen.contains("sealmail is running") {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("server exited early: {seen}");
            }
            seen.push_str(&line);
        }
        assert!(
            seen.contains("sealmail is running"),
            "server did not start: {seen}"
        );
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Server { child, imap }
    }

    /// SIGTERM, then wait (bounded) for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Logs in, appends `sys.argv[1]`, selects INBOX and says "ready"; then holds the session
/// until a line arrives on stdin, checks the mailbox still works (another append, a search
/// finding every message) and logs out.
const HOLD_SESSION: &str = r#"
import imaplib, os, sys
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]))
c.login(os.environ["ADDRESS"], os.environ["PASSWORD"])
typ, data = c.append("INBOX", None, None, ("Subject: " + sys.argv[1] + "\r\n\r\nbody\r\n").encode())
assert typ == "OK", data
typ, data = c.select("INBOX")
assert typ == "OK", data
print("ready", data[0].decode(), flush=True)
sys.stdin.readline()
typ, data = c.append("INBOX", None, None, b"Subject: after the refused restore\r\n\r\nbody\r\n")
assert typ == "OK", data
typ, data = c.search(None, "ALL")
print("all", len(data[0].split()), flush=True)
c.logout()
"#;

struct Session {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn open(server: &Server, subject: &str) -> Session {
        let mut child = Command::new("python3")
            .args(["-c", HOLD_SESSION, subject])
            .env("IMAP_PORT", server.imap.to_string())
            .env("ADDRESS", ADDRESS)
            .env("PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "session did not start: {line:?}");
        Session { child, stdout }
    }

    /// Let the session finish; the number of messages its last search found.
    fn finish(mut self) -> usize {
        self.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(self.child.wait().unwrap().success(), "session failed");
        line.trim()
            .strip_prefix("all ")
            .unwrap_or_else(|| panic!("unexpected session output {line:?}"))
            .parse()
            .unwrap()
    }
}

#[test]
fn restore_refuses_while_a_running_server_has_the_mailbox_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = format!("file://{}", dir.path().join("backups").display());
    let added = with_password(&data, &["account", "add", ADDRESS, "--password-stdin"]);
    assert!(added.status.success(), "{added:?}");
    let server = Server::start(&data);

    // A backup while the server has the mailbox open (a session is logged in).
    let first = Session::open(&server, "first");
    let backup = with_password(
        &data,
        &["backup", ADDRESS, "--password-stdin", "--target", &target],
    );
    assert!(
        backup.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert_eq!(first.finish(), 2);

    // The restore is refused while a session holds the mailbox, and changes nothing.
    let held = Session::open(&server, "second");
    let restore_args = [
        "restore",
        ADDRESS,
        "--password-stdin",
        "--target",
        target.as_str(),
    ];
    let refused = with_password(&data, &restore_args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "restore ran over an open mailbox"
    );
    assert!(stderr.contains("in use"), "unclear refusal: {stderr}");
    assert_eq!(held.finish(), 4, "the open mailbox lost messages");
    server.stop();

    // With the server gone, the same restore brings back the backed-up state.
    let restored = with_password(&data, &restore_args);
    assert!(
        restored.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let server = Server::start(&data);
    assert_eq!(Session::open(&server, "third").finish(), 3);
    server.stop();
}

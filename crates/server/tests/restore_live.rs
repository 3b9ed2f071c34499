//! `sealmail restore` while a running `sealmail serve` has the mailbox open (an IMAP session is
//! logged in, idle): the restore must refuse with a clear error and leave the mailbox working;
//! once the server is gone the same restore succeeds. Also: `sealmail backup` while the server
//! has the mailbox open.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use support::{Serve, Server, sealmail};

const ADDRESS: &str = "user@example.org";
const PASSWORD: &str = "correct horse battery staple 42";

/// Run `sealmail <args>` with the password on stdin.
fn with_password(data_dir: &Path, args: &[&str]) -> Output {
    support::run(sealmail(data_dir).args(args), &format!("{PASSWORD}\n"))
}

/// A server with only plain IMAP, on a port of the kernel's choosing.
fn start(data_dir: &Path) -> Server {
    Serve::new(data_dir)
        .only(&["IMAP"])
        .never_logs(PASSWORD)
        .start()
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
            .env("IMAP_PORT", server.port("IMAP").to_string())
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
    let server = start(&data);

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
    assert!(server.stop().success());

    // With the server gone, the same restore brings back the backed-up state.
    let restored = with_password(&data, &restore_args);
    assert!(
        restored.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let server = start(&data);
    assert_eq!(Session::open(&server, "third").finish(), 3);
    assert!(server.stop().success());
}

//! MX delivery's direct path, end to end on the real `sealmail serve`: while an IMAP session
//! holds a mailbox open, mail arriving over SMTP is written straight into it and its IDLE sees
//! the new message at once; with nobody logged in, the message is sealed into the queue.

mod support;

use sealmail_core::registry::Registry;
use sealmail_core::seal::SealedQueue;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use support::Serve;

const ONLINE: &str = "online@example.test";
const OFFLINE: &str = "offline@example.test";
const PASSWORD: &str = "direct path password";
/// The longest any single reply may take before the test fails with a clear message.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A line-oriented client connection with a bounded wait for every read.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no reply within {REPLY_TIMEOUT:?}: {e}"));
        assert!(n > 0, "the server closed the connection");
        line
    }

    /// Lines up to and including the first one starting with `prefix`.
    fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// The last line of a (possibly multi-line) SMTP reply.
    fn smtp_reply(&mut self) -> String {
        loop {
            let line = self.line();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }
}

/// One SMTP transaction to `recipient`; the final reply to the message.
fn deliver(port: u16, recipient: &str, marker: &str) -> String {
    let mut smtp = Client::connect(port);
    assert!(smtp.smtp_reply().starts_with("220"));
    smtp.send("EHLO sender.test\r\n");
    assert!(smtp.smtp_reply().starts_with("250"));
    smtp.send(&format!(
        "MAIL FROM:<someone@sender.test>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    ));
    assert!(smtp.smtp_reply().starts_with("250"));
    let rcpt = smtp.smtp_reply();
    assert!(rcpt.starts_with("250"), "RCPT refused: {rcpt}");
    assert!(smtp.smtp_reply().starts_with("354"));
    smtp.send(&format!(
        "From: someone@sender.test\r\nTo: {recipient}\r\nSubject: {marker}\r\n\r\n{marker}\r\n.\r\n"
    ));
    let reply = smtp.smtp_reply();
    smtp.send("QUIT\r\n");
    reply
}

fn add_accounts(data_dir: &Path) -> Registry {
    for address in [ONLINE, OFFLINE] {
        support::add_account_with_cheap_kdf(data_dir, address, PASSWORD);
    }
    Registry::open(data_dir).unwrap()
}

fn pending(registry: &Registry, address: &str) -> usize {
    let account = registry.lookup(address).unwrap().unwrap();
    SealedQueue::new(registry.data_dir())
        .pending_count(account.mailbox_id.as_str())
        .unwrap()
}

#[test]
fn mx_mail_for_a_logged_in_owner_reaches_its_idle_session_without_the_sealed_queue() {
    let dir = tempfile::tempdir().unwrap();
    let registry = add_accounts(dir.path());
    let server = Serve::new(dir.path())
        .only(&["IMAP", "SMTP"])
        .never_logs(PASSWORD)
        .start();
    let (imap_port, smtp_port) = (server.port("IMAP"), server.port("SMTP"));

    let mut imap = Client::connect(imap_port);
    assert!(imap.line().starts_with("* OK"));
    imap.send(&format!("a LOGIN {ONLINE} \"{PASSWORD}\"\r\n"));
    let login = imap.until("a ");
    assert!(login.last().unwrap().starts_with("a OK"), "{login:?}");
    imap.send("b SELECT INBOX\r\n");
    let select = imap.until("b ");
    assert!(select.iter().any(|l| l == "* 0 EXISTS\r\n"), "{select:?}");
    imap.send("c IDLE\r\n");
    assert!(imap.line().starts_with("+ "));

    let reply = deliver(smtp_port, ONLINE, "direct-marker-1");
    assert!(reply.starts_with("250 "), "{reply}");
    // Pushed to the idling session, which never logged in again.
    let pushed = imap.until("* 1 EXISTS");
    assert!(!pushed.iter().any(|l| l.starts_with("c ")), "{pushed:?}");
    assert_eq!(
        pending(&registry, ONLINE),
        0,
        "nothing went through the queue"
    );

    imap.send("DONE\r\n");
    let done = imap.until("c ");
    assert!(done.last().unwrap().starts_with("c OK"), "{done:?}");
    imap.send("d FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    let fetch = imap.until("d ").concat();
    assert!(fetch.contains("Subject: direct-marker-1"), "{fetch}");
    assert!(fetch.contains("FLAGS ()"), "delivered unread: {fetch}");
    assert!(fetch.contains("d OK"), "{fetch}");

    // Nobody holds the other mailbox: its mail is sealed, as before.
    let reply = deliver(smtp_port, OFFLINE, "sealed-marker-2");
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(pending(&registry, OFFLINE), 1);
    let queue_dir = dir.path().join("queue");
    let online_id = registry.lookup(ONLINE).unwrap().unwrap().mailbox_id;
    let online_queue = queue_dir.join(online_id.as_str());
    let queued_for_online = std::fs::read_dir(&online_queue)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(queued_for_online, 0, "{}", online_queue.display());

    // The sealed one arrives at the owner's next login.
    let mut other = Client::connect(imap_port);
    assert!(other.line().starts_with("* OK"));
    other.send(&format!("a LOGIN {OFFLINE} \"{PASSWORD}\"\r\n"));
    assert!(other.until("a ").last().unwrap().starts_with("a OK"));
    other.send("b SELECT INBOX\r\n");
    let select = other.until("b ");
    assert!(select.iter().any(|l| l == "* 1 EXISTS\r\n"), "{select:?}");
    assert_eq!(pending(&registry, OFFLINE), 0);
}

/// Mail sealed by another process (`sealmail deliver`, as a Node MX calling `deliver()` would)
/// for an owner who is logged in to the running server: the server folds it in on its own and
/// the idling session sees it, without a new login.
#[test]
fn mail_sealed_by_another_process_reaches_a_logged_in_idle_session() {
    let dir = tempfile::tempdir().unwrap();
    let registry = add_accounts(dir.path());
    let server = Serve::new(dir.path())
        .only(&["IMAP"])
        .never_logs(PASSWORD)
        .never_logs("other-process-marker-3")
        .start();
    let mut imap = Client::connect(server.port("IMAP"));
    assert!(imap.line().starts_with("* OK"));
    imap.send(&format!("a LOGIN {ONLINE} \"{PASSWORD}\"\r\n"));
    assert!(imap.until("a ").last().unwrap().starts_with("a OK"));
    imap.send("b SELECT INBOX\r\n");
    let select = imap.until("b ");
    assert!(select.iter().any(|l| l == "* 0 EXISTS\r\n"), "{select:?}");
    imap.send("c IDLE\r\n");
    assert!(imap.line().starts_with("+ "));

    let mut deliver = support::sealmail(dir.path())
        .args(["deliver", ONLINE])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    deliver
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: other-process-marker-3\r\n\r\nsealed elsewhere\r\n")
        .unwrap();
    assert!(deliver.wait().unwrap().success());

    let pushed = imap.until("* 1 EXISTS");
    assert!(!pushed.iter().any(|l| l.starts_with("c ")), "{pushed:?}");
    assert_eq!(pending(&registry, ONLINE), 0, "the queue was drained");
    imap.send("DONE\r\n");
    assert!(imap.until("c ").last().unwrap().starts_with("c OK"));
    imap.send("d FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    let fetch = imap.until("d ").concat();
    assert!(fetch.contains("Subject: other-process-marker-3"), "{fetch}");
}

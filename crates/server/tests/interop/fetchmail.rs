//! Debian's `fetchmail` pulling over IMAP, certificate verified: over STARTTLS with `keep`
//! (messages stay, marked seen, and a later run fetches nothing new) and over implicit TLS
//! without it (messages delivered, then flagged deleted and expunged on the server). Each
//! message goes through an MDA that writes it to its own file.

use super::{Server, run_bounded, write_private};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run fetchmail once with `options` in its poll entry; `implicit_tls` picks IMAPS over
/// STARTTLS. Returns the exit code (0: mail fetched, 1: no new mail) and what it printed.
fn fetchmail(
    server: &Server,
    delivered: &Path,
    implicit_tls: bool,
    options: &str,
) -> (i32, String) {
    let command = fetchmail_command(server, delivered, implicit_tls, options);
    let finished = run_bounded(command, Duration::from_secs(60));
    let report = finished.report();
    (finished.status.code().expect("fetchmail exited"), report)
}

/// The fetchmail command line and its run control file for one poll entry.
fn fetchmail_command(
    server: &Server,
    delivered: &Path,
    implicit_tls: bool,
    options: &str,
) -> Command {
    std::fs::create_dir_all(delivered).unwrap();
    let (port, tls) = if implicit_tls {
        (server.imaps, "ssl")
    } else {
        // Without `ssl`, `sslproto` makes STARTTLS mandatory: no login in the clear.
        (server.imap, "")
    };
    let rc = server.path("fetchmailrc");
    write_private(
        &rc,
        &format!(
            "set no bouncemail\n\
             poll localhost via 127.0.0.1 port {port} proto imap auth password timeout 20\n  \
             user \"{user}\" there with password \"{password}\" is \"nobody\" here\n  \
             {options}\n  \
             {tls} sslproto \"tls1.2+\" sslcertck sslcertfile \"{cert}\" sslcommonname \"localhost\"\n  \
             mda \"/bin/sh -c 'cat > {dir}/.partial.$$ && mv {dir}/.partial.$$ {dir}/message.$$'\"\n",
            user = super::ADDRESS,
            password = super::PASSWORD,
            cert = server.cert.display(),
            dir = delivered.display(),
        ),
    );
    let mut command = Command::new("fetchmail");
    command
        .arg("--fetchmailrc")
        .arg(&rc)
        .arg("--idfile")
        .arg(server.path("fetchids"))
        .arg("--pidfile")
        .arg(server.path("fetchmail.pid"))
        .arg("--nosyslog")
        .arg("--verbose")
        .env("HOME", server.dir.path());
    command
}

/// The subjects of the delivered files, sorted; each file must be one whole message.
/// The files the MDA finished: it writes each message under a temporary name and renames it
/// when complete, so a file seen here is whole.
fn delivered_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("message."))
        })
        .collect()
}

fn delivered_subjects(dir: &Path) -> Vec<String> {
    let mut subjects: Vec<String> = delivered_files(dir)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let subject = text
                .lines()
                .find_map(|line| line.strip_prefix("Subject: "))
                .unwrap_or_else(|| panic!("no Subject in {text}"));
            assert!(text.contains(&format!("The body of {subject}.")), "{text}");
            subject.to_string()
        })
        .collect();
    subjects.sort();
    subjects
}

#[test]
fn fetchmail_keep_over_starttls_then_delete_over_imaps() {
    let server = Server::start();
    server.mailbox(&["append:INBOX:pull one", "append:INBOX:pull two"]);
    let delivered = server.path("delivered");

    // keep: both delivered, both left on the server and marked seen.
    let (code, report) = fetchmail(&server, &delivered, false, "keep");
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("STARTTLS"),
        "upgraded with STARTTLS: {report}"
    );
    assert_eq!(delivered_subjects(&delivered), ["pull one", "pull two"]);
    let dump = server.dump();
    assert_eq!(dump.subjects("INBOX"), ["pull one", "pull two"]);
    assert_eq!(dump.flags("INBOX", "pull one"), ["\\Seen"]);

    // keep again: nothing new (exit 1), nothing delivered twice.
    let (code, report) = fetchmail(&server, &delivered, false, "keep");
    assert_eq!(code, 1, "{report}");
    assert_eq!(delivered_subjects(&delivered).len(), 2);

    // A new message is the only one fetched next time.
    server.mailbox(&["append:INBOX:pull three"]);
    let (code, report) = fetchmail(&server, &delivered, false, "keep");
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        delivered_subjects(&delivered),
        ["pull one", "pull three", "pull two"]
    );

    // No keep, over implicit TLS, fetchall: all three fetched again, then removed.
    let again = server.path("delivered-again");
    let (code, report) = fetchmail(&server, &again, true, "no keep fetchall");
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        delivered_subjects(&again),
        ["pull one", "pull three", "pull two"]
    );
    assert!(server.dump().subjects("INBOX").is_empty(), "{report}");

    // And nothing is left to fetch.
    let (code, report) = fetchmail(&server, &again, true, "no keep fetchall");
    assert_eq!(code, 1, "{report}");
}

/// Wait until `dir` holds `count` delivered messages; panics after 20 s.
fn wait_for_delivery(dir: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = delivered_files(dir).len();
        if files >= count {
            return delivered_subjects(dir);
        }
        assert!(
            Instant::now() < deadline,
            "{files} of {count} messages delivered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// fetchmail's `idle` option: it stays in IDLE and fetches each new message as the server
/// announces it, without polling.
#[test]
fn fetchmail_idle_fetches_new_mail_as_it_arrives() {
    let server = Server::start();
    server.mailbox(&["append:INBOX:before idle"]);
    let delivered = server.path("delivered");
    let mut command = fetchmail_command(&server, &delivered, true, "no keep fetchall idle");
    // No daemon: fetchmail stays in the foreground until this test kills it.
    command
        .arg("--nodetach")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut idler = KillOnDrop(command.spawn().expect("start fetchmail"));

    assert_eq!(wait_for_delivery(&delivered, 1), ["before idle"]);
    server.mailbox(&["append:INBOX:during idle"]);
    assert_eq!(
        wait_for_delivery(&delivered, 2),
        ["before idle", "during idle"]
    );
    server.mailbox(&["append:INBOX:still idling"]);
    assert_eq!(wait_for_delivery(&delivered, 3).len(), 3);
    assert!(
        idler.0.try_wait().unwrap().is_none(),
        "fetchmail stayed connected"
    );
    // Each message is deleted once delivered: soon nothing is left on the server.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.dump().subjects("INBOX").is_empty() {
        assert!(Instant::now() < deadline, "fetched mail left on the server");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A background client, killed when the test ends however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! `sealmail serve` as a user runs it: the real binary on 127.0.0.1, driven by Python's imaplib
//! and poplib over STARTTLS/STLS and implicit TLS, then stopped with SIGTERM.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Serve, Server, sealmail};

fn start(data_dir: &Path) -> Server {
    Serve::new(data_dir).never_logs(PASSWORD).start()
}

fn start_with_config(data_dir: &Path, config: &Path) -> Server {
    Serve::new(data_dir)
        .config(config)
        .never_logs(PASSWORD)
        .start()
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

const PASSWORD: &str = "s3rve-test password";

fn python(script: &str, server: &Server) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("IMAP_PORT", server.port("IMAP").to_string())
        .env("IMAPS_PORT", server.port("IMAPS").to_string())
        .env("POP3_PORT", server.port("POP3").to_string())
        .env("POP3S_PORT", server.port("POP3S").to_string())
        .env("PASSWORD", PASSWORD)
        .env("CAFILE", server.cert())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn add_account(data_dir: &Path, address: &str) {
    let mut child = sealmail(data_dir)
        .args(["account", "add", address, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

const CLIENT: &str = r#"
import imaplib, os, ssl
# Verify the server's generated certificate for 127.0.0.1, as a careful client would.
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
user, password = "user@example.org", os.environ["PASSWORD"]

plain = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]))
assert "STARTTLS" in plain.capabilities, plain.capabilities
plain.starttls(ssl_context=ctx)
plain.login(user, password)
typ, data = plain.append("INBOX", "(\\Flagged)", None, b"Subject: over starttls\r\nFrom: a@example.org\r\n\r\nneedle-in-body\r\n")
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = plain.select("INBOX")
print("exists", data[0].decode())
typ, data = plain.search(None, "TEXT", "needle-in-body")
print("search", data[0].decode())
plain.logout()

secure = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ctx)
try:
    secure.login(user, "wrong password")
    print("wrong password accepted")
except imaplib.IMAP4.error as e:
    print("wrong password refused")
secure.login(user, password)
secure.select("INBOX")
typ, data = secure.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("fetch", data[0][0].decode(), data[0][1].decode().strip())
secure.logout()
"#;

#[test]
fn serve_answers_imap_clients_over_starttls_and_implicit_tls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    add_account(dir.path(), "user@example.org");
    let server = start(dir.path());
    let out = python(CLIENT, &server);
    assert!(out.contains("exists 1"), "{out}");
    assert!(out.contains("search 1"), "{out}");
    assert!(out.contains("wrong password refused"), "{out}");
    assert!(out.contains("\\Flagged"), "{out}");
    assert!(out.contains("Subject: over starttls"), "{out}");
    let scraped = http_get(server.port("metrics"), "/metrics");
    assert!(scraped.starts_with("HTTP/1.1 200 OK"), "{scraped}");
    assert!(
        scraped.contains("sealmail_logins_total{result=\"failed\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("sealmail_logins_total{result=\"ok\"} 2"),
        "{scraped}"
    );
    assert!(
        scraped.contains("command=\"APPEND\",outcome=\"ok\"} 1"),
        "{scraped}"
    );
    assert!(
        !scraped.contains("user@example.org"),
        "no addresses in metrics"
    );
    assert!(http_get(server.port("metrics"), "/other").starts_with("HTTP/1.1 404"));
    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    // The generated certificate is reused on the next start, and the mail is still there.
    let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let server = start(dir.path());
    assert_eq!(
        std::fs::read(dir.path().join("tls/cert.pem")).unwrap(),
        cert
    );
    let recount = python(
        r#"
import imaplib, os, ssl
s = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ssl._create_unverified_context())
s.login("user@example.org", os.environ["PASSWORD"])
print("exists", s.select("INBOX")[1][0].decode())
s.logout()
"#,
        &server,
    );
    assert!(recount.contains("exists 1"), "{recount}");
    assert!(server.stop().success());
}

#[test]
fn mail_delivered_while_offline_appears_at_the_next_imap_login() {
    let dir = tempfile::tempdir().unwrap();
    add_account(dir.path(), "user@example.org");
    let server = start(dir.path());
    let mut deliver = sealmail(dir.path())
        .args(["deliver", "user@example.org"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    deliver
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: sealed while offline\r\n\r\nopened only by the owner\r\n")
        .unwrap();
    assert!(deliver.wait().unwrap().success());
    let out = python(
        r#"
import imaplib, os, ssl
s = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ssl._create_unverified_context())
s.login("user@example.org", os.environ["PASSWORD"])
print("exists", s.select("INBOX")[1][0].decode())
print(s.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode().strip())
s.logout()
"#,
        &server,
    );
    assert!(out.contains("exists 1"), "{out}");
    assert!(out.contains("Subject: sealed while offline"), "{out}");
    assert!(server.stop().success());
}

const POP3_CLIENT: &str = r#"
import imaplib, os, poplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
user, password = "user@example.org", os.environ["PASSWORD"]

pop = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S_PORT"]), context=ctx)
pop.user(user)
pop.pass_(password)
print("pop3 stat", pop.stat()[0])
print("pop3 retr", b"|".join(pop.retr(1)[1]).decode())

# IMAP works on the same mailbox while POP3 holds the maildrop lock.
imap = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ctx)
imap.login(user, password)
imap.select("INBOX")
typ, data = imap.store("1", "+FLAGS", "\\Flagged")
print("imap store", typ)
pop.dele(1)
print("pop3 quit", pop.quit().decode())
print("imap exists after quit", imap.select("INBOX")[1][0].decode())
imap.logout()

plain = poplib.POP3("127.0.0.1", int(os.environ["POP3_PORT"]))
assert "STLS" in plain.capa()
plain.stls(context=ctx)
plain.user(user)
plain.pass_(password)
print("stls stat", plain.stat()[0])
plain.quit()
"#;

#[test]
fn serve_answers_pop3_clients_and_pop3_login_drains_sealed_mail() {
    let dir = tempfile::tempdir().unwrap();
    add_account(dir.path(), "user@example.org");
    let server = start(dir.path());
    let mut deliver = sealmail(dir.path())
        .args(["deliver", "user@example.org"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    deliver
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: sealed for pop3\r\n\r\n.dotted\r\n")
        .unwrap();
    assert!(deliver.wait().unwrap().success());
    let out = python(POP3_CLIENT, &server);
    assert!(out.contains("pop3 stat 1"), "{out}");
    assert!(
        out.contains("pop3 retr Subject: sealed for pop3||.dotted"),
        "{out}"
    );
    assert!(out.contains("imap store OK"), "{out}");
    assert!(out.contains("pop3 quit +OK"), "{out}");
    assert!(out.contains("imap exists after quit 0"), "{out}");
    assert!(out.contains("stls stat 0"), "{out}");
    assert!(server.stop().success());
}

#[test]
fn serve_takes_submissions_over_implicit_tls_into_the_outbound_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    add_account(&data_dir, "sender@example.org");
    // No DNS answers here: the message must wait, durable, in the outbound queue.
    let config = dir.path().join("sealmail.toml");
    std::fs::write(
        &config,
        "[outbound]\nnameservers = [\"127.0.0.1:9\"]\nfirst_retry_secs = 600\n",
    )
    .unwrap();
    let server = Serve::new(&data_dir)
        .only(&["SUBMISSIONS"])
        .config(&config)
        .never_logs(PASSWORD)
        .start();
    let script = r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
with smtplib.SMTP_SSL("127.0.0.1", int(os.environ["PORT"]), context=ctx, timeout=20) as smtp:
    smtp.login("sender@example.org", os.environ["PASSWORD"])
    try:
        smtp.sendmail("someone@example.org", ["far@remote.example"], "Subject: x\r\n\r\nx\r\n")
        print("foreign sender accepted")
    except smtplib.SMTPSenderRefused as error:
        print("sender refused", error.smtp_code)
    refused = smtp.sendmail("sender@example.org", ["far@remote.example"],
        "From: sender@example.org\r\nSubject: relay\r\n\r\nrelay-marker-7Qz\r\n")
    print("refused", refused)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", server.port("SUBMISSIONS").to_string())
        .env("PASSWORD", PASSWORD)
        .env("CAFILE", data_dir.join("tls/cert.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    server.kill();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sender refused 553"), "{stdout}");
    assert!(stdout.contains("refused {}"), "{stdout}");
    let queued: Vec<_> = std::fs::read_dir(data_dir.join("outbound"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(queued.len(), 2, "message and envelope: {queued:?}");
    let message = queued
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "eml"))
        .unwrap();
    let text = std::fs::read_to_string(message).unwrap();
    assert!(text.contains("relay-marker-7Qz"), "{text}");
    assert!(text.contains("with ESMTPSA id"), "{text}");
}

/// Complete backup versions (manifest written) at a `file://` target, oldest first.
fn stored_versions(target: &Path) -> Vec<String> {
    let mut versions: Vec<String> = std::fs::read_dir(target)
        .into_iter()
        .flatten()
        .flat_map(|mailbox_dir| std::fs::read_dir(mailbox_dir.unwrap().path()).unwrap())
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    versions.sort();
    versions
}

/// Milliseconds since the epoch of a backup version name such as `20261128T203656.123Z`.
fn version_millis(version: &str) -> i64 {
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &version[0..4],
        &version[4..6],
        &version[6..8],
        &version[9..11],
        &version[11..13],
        &version[13..15]
    );
    let seconds = sealmail_core::time::parse_iso8601_utc(&iso)
        .unwrap_or_else(|| panic!("not a version name: {version}"));
    let millis: i64 = version[16..19].parse().expect("milliseconds");
    seconds * 1000 + millis
}

/// Wait up to `limit` for `condition`; false if it never held.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

const APPEND_ONE: &str = r#"
import imaplib, os, sys
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]))
c.login("user@example.org", os.environ["PASSWORD"])
typ, data = c.append("INBOX", None, None, ("Subject: scheduled " + sys.argv[1] + "\r\n\r\nbackupMARKERzz\r\n").encode())
assert typ == "OK", data
c.logout()
"#;

fn append_over_imap(server: &Server, subject: &str) {
    python(
        &APPEND_ONE.replace("sys.argv[1]", &format!("{subject:?}")),
        server,
    );
}

#[test]
fn serve_backs_up_logged_in_mailboxes_at_most_once_per_interval() {
    const INTERVAL: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = dir.path().join("backups");
    add_account(&data, "user@example.org");
    let config = dir.path().join("sealmail.toml");
    std::fs::write(
        &config,
        format!(
            "[backup]\ntarget = \"file://{}\"\ninterval_secs = {}\n",
            target.display(),
            INTERVAL.as_secs()
        ),
    )
    .unwrap();
    let server = start_with_config(&data, &config);
    // Nobody is logged in: the server has no key, so there is nothing it can back up.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stored_versions(&target), Vec::<String>::new());

    // A login (the mailbox stays open for a while after LOGOUT) lets it back up.
    append_over_imap(&server, "one");
    assert!(
        wait_for(Duration::from_secs(20), || stored_versions(&target).len()
            == 1),
        "no scheduled backup appeared: {:?}",
        stored_versions(&target)
    );
    let first = stored_versions(&target);
    // A change right away: the next backup is due only once the interval has passed since the
    // first one finished. The version names are the backups' start times, so their distance
    // shows it whatever the machine's load (no wall-clock watching here).
    append_over_imap(&server, "two");
    let mut versions = Vec::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            versions = stored_versions(&target);
            versions.last() != first.last()
        }),
        "the change was never backed up: {:?}\n{}",
        stored_versions(&target),
        http_get(server.port("metrics"), "/metrics")
    );
    let (first, second) = (&first[0], versions.last().unwrap());
    let apart = version_millis(second) - version_millis(first);
    assert!(
        apart >= INTERVAL.as_millis() as i64,
        "{first} and {second} are only {apart} ms apart"
    );
    // Retention keeps the newest version of each day: the first is gone unless midnight (UTC)
    // fell between the two.
    assert_eq!(
        versions.contains(first),
        second[..8] != first[..8],
        "{versions:?}"
    );
    let scraped = http_get(server.port("metrics"), "/metrics");
    assert!(
        scraped.contains("sealmail_backups_total{result=\"failed\"} 0"),
        "{scraped}"
    );
    let ok: u64 = scraped
        .lines()
        .find_map(|line| line.strip_prefix("sealmail_backups_total{result=\"ok\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok >= 2, "{scraped}");
    assert!(
        grep_dir(&target, b"backupMARKERzz").is_empty(),
        "backups are encrypted"
    );
    assert!(server.stop().success());
}

fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(grep_dir(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(path);
        }
    }
    hits
}

//! Durability of SMTP acknowledgements: the real `sealmail serve` is killed with SIGKILL at
//! random moments during a stream of deliveries and restarted. Every message that got a 250
//! must be in the mailbox after the owner's login, exactly once.

mod support;

use sealmail_core::account;
use sealmail_core::registry::Registry;
use sealmail_core::seal::SealedQueue;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Serve, Server};

const ADDRESS: &str = "crash@example.test";
const PASSWORD: &str = "crash test password";
/// Delivery attempts in total (acknowledged or not), and the most server lives.
const ATTEMPTS: usize = 100;
const MAX_RESTARTS: usize = 25;

/// A server with only the MX listener, on a port of the kernel's choosing.
fn start(data_dir: &Path) -> Server {
    Serve::new(data_dir)
        .only(&["SMTP"])
        .never_logs(PASSWORD)
        .start()
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// One SMTP transaction: `Ok(Ok(()))` when the final reply was 250, `Ok(Err(reply))` when
/// the server refused.
fn deliver(port: u16, marker: &str) -> std::io::Result<Result<(), String>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut reply = || -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    };
    reply()?;
    writer.write_all(
        format!("EHLO crash.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<{ADDRESS}>\r\nDATA\r\n")
            .as_bytes(),
    )?;
    for _ in 0..3 {
        reply()?;
    }
    let data = reply()?;
    if !data.starts_with("354") {
        return Ok(Err(data));
    }
    // A few kilobytes, so kills land inside DATA too.
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n".repeat(100);
    writer.write_all(
        format!("Subject: {marker}\r\n\r\n{marker}\r\n{filler}\r\n.\r\nQUIT\r\n").as_bytes(),
    )?;
    let last = reply()?;
    Ok(if last.starts_with("250 ") {
        Ok(())
    } else {
        Err(last)
    })
}

#[test]
fn every_acknowledged_message_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    support::add_account_with_cheap_kdf(dir.path(), ADDRESS, PASSWORD);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let mut acknowledged = Vec::new();
    let mut attempt = 0;
    let mut restarts = 0;
    while attempt < ATTEMPTS && restarts < MAX_RESTARTS {
        let server = start(dir.path());
        let port = server.port("SMTP");
        restarts += 1;
        let pid = server.pid().to_string();
        let delay = Duration::from_millis(5 + random.next(120));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = Command::new("kill").args(["-9", &pid]).status();
        });
        while attempt < ATTEMPTS {
            let marker = format!("crash-{seed:x}-{attempt}");
            attempt += 1;
            match deliver(port, &marker) {
                Ok(Ok(())) => acknowledged.push(marker),
                Ok(Err(reply)) => panic!("seed {seed:x}: {marker} refused: {reply}"),
                Err(_) => break,
            }
        }
        killer.join().unwrap();
        server.kill();
    }

    let registry = Registry::open(dir.path()).unwrap();
    let opened = account::open_mailbox(&registry, ADDRESS, PASSWORD).unwrap();
    let mailbox = opened.mailbox();
    let mut subjects = Vec::new();
    for state in mailbox.message_states("INBOX").unwrap() {
        let raw = mailbox.fetch_raw("INBOX", state.uid).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let subject = text
            .lines()
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap()
            .to_string();
        subjects.push(subject);
    }
    for marker in &acknowledged {
        let copies = subjects.iter().filter(|s| *s == marker).count();
        assert_eq!(
            copies, 1,
            "seed {seed:x}: {marker} acknowledged, found {copies} times"
        );
    }
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        subjects.len(),
        "seed {seed:x}: no message twice"
    );
    let account = registry.lookup(ADDRESS).unwrap().unwrap();
    assert_eq!(
        SealedQueue::new(dir.path())
            .pending_count(account.mailbox_id.as_str())
            .unwrap(),
        0
    );
    assert!(
        acknowledged.len() >= 10 && restarts >= 2,
        "seed {seed:x}: the test exercised little ({} acknowledged over {restarts} runs)",
        acknowledged.len()
    );
    eprintln!(
        "{} of {attempt} deliveries acknowledged over {restarts} server runs, {} stored",
        acknowledged.len(),
        subjects.len()
    );
}

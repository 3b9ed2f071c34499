//! `sealmail queue` driven as an operator would: the sealed queue per mailbox (counts, ages,
//! sizes, never content), the outbound queue, retry and bounce of outbound items, and the
//! queue gauges on the metrics endpoint of `sealmail serve`.

mod support;

use sealmail_smtp::outbound::store::{Envelope, QueueDir, RecipientState, RecipientStatus};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Serve, ok};

const OWNER: &str = "owner@example.org";
const SENDER: &str = "sender@example.org";
const MARKER: &str = "qz7SEALEDmarker3p";
fn sealmail(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    support::run(support::sealmail(data_dir).args(args), stdin)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Two accounts; two messages sealed for the owner (nobody is logged in).
fn data_dir_with_sealed_mail() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for address in [OWNER, SENDER] {
        ok(&sealmail(
            dir.path(),
            &["account", "add", address, "--password-stdin"],
            "correct horse battery\n",
        ));
    }
    for n in 0..2 {
        let message = format!("Subject: {MARKER} {n}\r\n\r\nbody {MARKER}\r\n");
        ok(&sealmail(dir.path(), &["deliver", OWNER], &message));
    }
    dir
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An outbound item from SENDER to two remote domains, its next attempt a day away (so a
/// running server leaves it alone), as a failed attempt leaves it.
fn queue_outbound_item(data_dir: &Path, id: &str) {
    let recipient = |address: &str| RecipientState {
        address: address.into(),
        status: RecipientStatus::Pending,
        last_reply: Some("421 4.3.2 try again later".into()),
        remote_host: Some("mx.remote.test".into()),
        notify_success: false,
        notify_failure: true,
        original_recipient: None,
        notify_delay: true,
        delay_reported: false,
        notify: None,
    };
    let envelope = Envelope {
        id: id.into(),
        sender: SENDER.into(),
        created: now_ms() / 1000 - 600,
        attempts: 3,
        next_attempt_ms: now_ms() + 86_400_000,
        recipients: vec![recipient("a@remote.test"), recipient("b@other.test")],
        envelope_id: None,
        return_full: false,
        tls_failure: None,
    };
    QueueDir::new(data_dir)
        .insert(
            &envelope,
            format!("Subject: outbound {MARKER}\r\n\r\nhello\r\n").as_bytes(),
        )
        .unwrap();
}

fn mailbox_id_of(data_dir: &Path, address: &str) -> String {
    let list = ok(&sealmail(data_dir, &["account", "list"], ""));
    let line = list
        .lines()
        .find(|line| line.starts_with(&format!("{address}\t")))
        .expect("the account is listed");
    line.split('\t').nth(1).unwrap().to_string()
}

#[test]
fn queue_list_shows_counts_ages_and_sizes_but_never_content() {
    let dir = data_dir_with_sealed_mail();
    let owner_mailbox = mailbox_id_of(dir.path(), OWNER);
    let rows = json_lines(&ok(&sealmail(dir.path(), &["queue", "list", "--json"], "")));
    assert_eq!(rows.len(), 1, "only the owner has mail waiting: {rows:?}");
    let row = &rows[0];
    assert_eq!(row["mailbox_id"], owner_mailbox.as_str());
    assert_eq!(row["address"], OWNER);
    assert_eq!(row["pending"], 2);
    assert_eq!(row["quarantined"], 0);
    assert!(row["bytes"].as_u64().unwrap() > 2 * 20, "{row}");
    assert!(row["oldest_age_secs"].as_u64().unwrap() < 3600, "{row}");
    let table = ok(&sealmail(dir.path(), &["queue", "list"], ""));
    assert!(table.starts_with("MAILBOX\tADDRESS\tITEMS"), "{table}");
    assert!(
        table.contains(&format!("{owner_mailbox}\t{OWNER}\t2\t")),
        "{table}"
    );
    for output in [&table, &rows[0].to_string()] {
        assert!(!output.contains(MARKER), "content shown: {output}");
    }
}

#[test]
fn outbound_items_are_listed_retried_and_bounced() {
    let dir = data_dir_with_sealed_mail();
    let id = "00006b0b00000000aaaabbbbccccdddd";
    queue_outbound_item(dir.path(), id);
    let rows = json_lines(&ok(&sealmail(
        dir.path(),
        &["queue", "outbound", "--json"],
        "",
    )));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id);
    assert_eq!(
        rows[0]["domains"],
        serde_json::json!(["other.test", "remote.test"])
    );
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["last_error"], "421 4.3.2 try again later");
    let table = ok(&sealmail(dir.path(), &["queue", "outbound"], ""));
    assert!(
        table.contains(&format!("{id}\tother.test,remote.test\t3\t")),
        "{table}"
    );
    assert!(!table.contains(MARKER));

    let before = now_ms();
    let retried = ok(&sealmail(dir.path(), &["queue", "retry", id], ""));
    assert!(retried.contains(id), "{retried}");
    let envelope = QueueDir::new(dir.path())
        .read_envelope(id)
        .unwrap()
        .unwrap();
    assert!(
        envelope.next_attempt_ms <= now_ms() && envelope.next_attempt_ms >= before,
        "due now: {}",
        envelope.next_attempt_ms
    );

    let unknown = sealmail(dir.path(), &["queue", "bounce", "ffff0000"], "");
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no outbound item ffff0000"), "{stderr}");

    let sender_mailbox = mailbox_id_of(dir.path(), SENDER);
    let bounced = ok(&sealmail(dir.path(), &["queue", "bounce", id], ""));
    assert!(bounced.contains("2 recipients"), "{bounced}");
    assert!(
        QueueDir::new(dir.path())
            .read_envelope(id)
            .unwrap()
            .is_none()
    );
    let outbound = ok(&sealmail(dir.path(), &["queue", "outbound", "--json"], ""));
    assert!(outbound.trim().is_empty(), "{outbound}");
    // The failure report waits sealed for the (offline) sender.
    let rows = json_lines(&ok(&sealmail(dir.path(), &["queue", "list", "--json"], "")));
    let sender_row = rows
        .iter()
        .find(|row| row["mailbox_id"] == sender_mailbox.as_str())
        .expect("the sender has its report waiting");
    assert_eq!(sender_row["pending"], 1);
}

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn metrics_report_both_queue_sizes() {
    let dir = data_dir_with_sealed_mail();
    queue_outbound_item(dir.path(), "00006b0b00000000eeeeffff00001111");
    let server = Serve::new(dir.path())
        .only(&["metrics"])
        .never_logs(MARKER)
        .start();
    let metrics = scrape(server.port("metrics"));
    for expected in [
        "sealmail_sealed_queue_items 2\n",
        "sealmail_sealed_queue_mailboxes 1\n",
        "sealmail_outbound_queue_items 1\n",
        "# TYPE sealmail_sealed_queue_bytes gauge\n",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected:?} missing: {metrics}"
        );
    }
    let bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealmail_sealed_queue_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes > 40);
    assert!(!metrics.contains(MARKER));
    assert!(!metrics.contains(OWNER), "no address in metrics");
}

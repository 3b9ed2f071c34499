//! Extensions of issue #5 over raw sockets: SAVEDATE (RFC 8514), UTF8=ACCEPT (RFC 6855),
//! LITERAL+ (RFC 7888), NOTIFY (RFC 5465), and COMPRESS=DEFLATE (RFC 4978) driven by a Python
//! client that inflates and deflates with zlib, over plain TCP and over TLS.

use crate::common::{ADDRESS, PASSWORD, RawClient, TestServer, append, message};
use std::time::Duration;

fn tagged<'a>(lines: &'a [String], tag: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no tagged reply for {tag} in {lines:?}"))
}

/// Today (UTC) as an IMAP `date`, e.g. `7-Feb-2026`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let date = sealmail_imap::proto::Date::from_days_since_epoch(secs.div_euclid(86_400));
    format!(
        "{}-{}-{}",
        date.day,
        sealmail_imap::proto::Date::MONTHS[usize::from(date.month - 1)],
        date.year
    )
}

/// Read lines until one satisfies `pred`, failing if it does not come within 5 s.
async fn expect_line(c: &mut RawClient, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(5), c.line())
            .await
            .unwrap_or_else(|_| panic!("expected line never came; saw {seen:?}"));
        let done = pred(&line);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// No line arrives within `wait`.
async fn expect_silence(c: &mut RawClient, wait: Duration) {
    if let Ok(line) = tokio::time::timeout(wait, c.line()).await {
        panic!("unexpected line {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savedate_is_when_the_message_entered_the_folder() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let caps = c.command("c CAPABILITY").await;
    assert!(caps[0].contains(" SAVEDATE"), "{caps:?}");
    let raw = message("old", "from 2000");
    c.send(
        format!(
            "a APPEND INBOX \"01-Jan-2000 10:00:00 +0000\" {{{}+}}\r\n{raw}\r\n",
            raw.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(tagged(&c.until_tagged("a").await, "a").starts_with("a OK"));
    c.command("s SELECT INBOX").await;
    let today = today();
    let reply = c.command("f FETCH 1 (INTERNALDATE SAVEDATE)").await;
    assert!(
        reply[0].contains("INTERNALDATE \"01-Jan-2000 10:00:00 +0000\""),
        "{reply:?}"
    );
    let padded = format!("SAVEDATE \"{:0>11}", today);
    assert!(reply[0].contains(&padded), "{reply:?} lacks {padded}");
    // The internal date is from 2000, the save date is today.
    let reply = c.command("s1 SEARCH BEFORE 1-Jan-2001").await;
    assert_eq!(reply[0], "* SEARCH 1");
    let reply = c.command("s2 SEARCH SAVEDBEFORE 1-Jan-2001").await;
    assert_eq!(reply[0], "* SEARCH");
    let reply = c.command(&format!("s3 SEARCH SAVEDON {today}")).await;
    assert_eq!(reply[0], "* SEARCH 1");
    let reply = c.command(&format!("s4 SEARCH SAVEDSINCE {today}")).await;
    assert_eq!(reply[0], "* SEARCH 1");
    let reply = c.command("s5 SEARCH SAVEDATESUPPORTED").await;
    assert_eq!(reply[0], "* SEARCH 1");
    // COPY sets a new save date in the target; the internal date travels with the message.
    c.command("k CREATE Kept").await;
    c.command("k1 COPY 1 Kept").await;
    c.command("k2 SELECT Kept").await;
    let reply = c.command("k3 FETCH 1 (INTERNALDATE SAVEDATE)").await;
    assert!(reply[0].contains("\"01-Jan-2000"), "{reply:?}");
    assert!(reply[0].contains(&padded), "{reply:?}");
    let reply = c.command("k4 SEARCH NOT SAVEDSINCE 1-Jan-2001").await;
    assert_eq!(reply[0], "* SEARCH");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_accept_names_strings_and_append() {
    let server = TestServer::start(|_| {}).await;
    let mut legacy = RawClient::login(server.addr).await;
    let mut c = RawClient::login(server.addr).await;
    let caps = c.command("c CAPABILITY").await;
    assert!(caps[0].contains(" UTF8=ACCEPT"), "{caps:?}");
    // Before ENABLE, the UTF8 data item is refused.
    let raw = "Subject: Grüße\r\n\r\nhallo\r\n";
    c.send(format!("u0 APPEND INBOX UTF8 (~{{{}+}}\r\n{raw})\r\n", raw.len()).as_bytes())
        .await;
    assert!(tagged(&c.until_tagged("u0").await, "u0").starts_with("u0 BAD"));
    let reply = c.command("e ENABLE UTF8=ACCEPT").await;
    assert_eq!(reply[0], "* ENABLED UTF8=ACCEPT");
    // Quoted UTF-8 mailbox name, taken as UTF-8 rather than modified UTF-7.
    let reply = c.command("m CREATE \"Grüße\"").await;
    assert!(tagged(&reply, "m").starts_with("m OK"), "{reply:?}");
    let reply = c.command("l LIST \"\" \"Gr*\"").await;
    assert!(
        reply[0].starts_with("* LIST") && reply[0].contains("Grüße"),
        "{reply:?}"
    );
    // A session without UTF8=ACCEPT sees the same folder in modified UTF-7.
    let reply = legacy.command("l LIST \"\" \"Gr*\"").await;
    assert!(reply[0].contains("Gr&APwA3w-e"), "{reply:?}");
    c.send(
        format!(
            "u1 APPEND \"Grüße\" UTF8 (~{{{}+}}\r\n{raw})\r\n",
            raw.len()
        )
        .as_bytes(),
    )
    .await;
    let reply = c.until_tagged("u1").await;
    assert!(tagged(&reply, "u1").starts_with("u1 OK"), "{reply:?}");
    c.command("s SELECT \"Grüße\"").await;
    let reply = c
        .command("f FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(reply[0].contains("Subject: Grüße"), "{reply:?}");
    // SEARCH with CHARSET is a BAD once UTF8=ACCEPT is on (RFC 6855 section 3).
    let reply = c.command("x SEARCH CHARSET UTF-8 SUBJECT \"Grüße\"").await;
    assert!(tagged(&reply, "x").starts_with("x BAD"), "{reply:?}");
    let reply = c.command("y SEARCH SUBJECT \"Grüße\"").await;
    assert_eq!(reply[0], "* SEARCH 1");
    // The legacy session still searches with a charset.
    legacy.command("s SELECT \"Gr&APwA3w-e\"").await;
    let reply = legacy
        .command("y SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße")
        .await;
    assert_eq!(reply[0], "* SEARCH 1");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_plus_without_the_4096_byte_limit_of_literal_minus() {
    let server = TestServer::start(|_| {}).await;
    let (mut c, greeting) = RawClient::connect(server.addr).await;
    // LITERAL+ is a superset of LITERAL- (RFC 7888 section 4): only LITERAL+ is advertised.
    assert!(greeting.contains(" LITERAL+"), "{greeting}");
    assert!(!greeting.contains("LITERAL-"), "{greeting}");
    let reply = c
        .command(&format!(
            "l LOGIN {{{}+}}\r\n{ADDRESS} \"{PASSWORD}\"",
            ADDRESS.len()
        ))
        .await;
    assert!(tagged(&reply, "l").starts_with("l OK"), "{reply:?}");
    // A non-synchronising literal well past 4096 bytes is taken without a continuation.
    let big = message("big", &"0123456789abcdef".repeat(1024));
    assert!(big.len() > 16_000);
    let reply = append(&mut c, "a", "INBOX", &big).await;
    assert!(reply.starts_with("a OK"), "{reply}");
    c.command("s SELECT INBOX").await;
    let reply = c.command("f FETCH 1 RFC822.SIZE").await;
    assert!(
        reply[0].contains(&format!("RFC822.SIZE {}", big.len())),
        "{reply:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reports_other_mailboxes_and_new_messages_while_idle() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    let caps = a.command("c CAPABILITY").await;
    assert!(caps[0].contains(" NOTIFY"), "{caps:?}");
    b.command("b0 CREATE Lists/rust").await;
    b.command("b1 CREATE Archive").await;
    a.command("s SELECT INBOX").await;
    let reply = a
        .command(
            "n NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) \
             MessageExpunge)) (SUBTREE Lists (MessageNew MessageExpunge FlagChange)) \
             (PERSONAL (MailboxName))",
        )
        .await;
    assert_eq!(reply, vec!["n OK NOTIFY completed".to_string()]);
    a.send(b"i IDLE\r\n").await;
    assert!(a.line().await.starts_with("+ "));

    append(&mut b, "b2", "Lists/rust", &message("list", "x")).await;
    let seen = expect_line(&mut a, |l| l.starts_with("* STATUS")).await;
    let status = seen.last().unwrap();
    assert!(status.starts_with("* STATUS Lists/rust ("), "{status}");
    assert!(status.contains("MESSAGES 1"), "{status}");
    assert!(status.contains("UIDNEXT 2"), "{status}");

    // A new message in the selected mailbox: EXISTS, then FETCH with the requested items.
    append(&mut b, "b3", "INBOX", &message("pushed", "y")).await;
    let seen = expect_line(&mut a, |l| l.contains(" FETCH ")).await;
    assert!(seen.contains(&"* 1 EXISTS".to_string()), "{seen:?}");
    let fetch = seen.last().unwrap();
    assert!(fetch.starts_with("* 1 FETCH (UID 1 "), "{fetch}");
    assert!(fetch.contains("Subject: pushed"), "{fetch}");

    // Archive is covered by PERSONAL with MailboxName only: no STATUS for it. The next STATUS
    // is for Lists/rust.
    append(&mut b, "b4", "Archive", &message("quiet", "z")).await;
    b.command("b5 SELECT Lists/rust").await;
    b.command("b6 STORE 1 +FLAGS (\\Flagged)").await;
    let seen = expect_line(&mut a, |l| l.starts_with("* STATUS")).await;
    assert!(
        seen.last().unwrap().starts_with("* STATUS Lists/rust"),
        "{seen:?}"
    );

    // Mailbox names: created, renamed (with OLDNAME), deleted.
    b.command("b7 CREATE Fresh").await;
    let seen = expect_line(&mut a, |l| l.starts_with("* LIST")).await;
    assert_eq!(seen.last().unwrap(), "* LIST () \"/\" Fresh");
    b.command("b8 RENAME Fresh Renamed").await;
    let seen = expect_line(&mut a, |l| l.starts_with("* LIST")).await;
    assert_eq!(
        seen.last().unwrap(),
        "* LIST () \"/\" Renamed (\"OLDNAME\" (Fresh))"
    );
    b.command("b9 DELETE Renamed").await;
    let seen = expect_line(&mut a, |l| l.starts_with("* LIST")).await;
    assert_eq!(seen.last().unwrap(), "* LIST (\\NonExistent) \"/\" Renamed");

    // Expunge in the selected mailbox while idle.
    b.command("c0 SELECT INBOX").await;
    // The notification FETCH used BODY.PEEK: the message is still unseen.
    let reply = b.command("c9 FETCH 1 (FLAGS)").await;
    assert_eq!(reply[0], "* 1 FETCH (FLAGS ())");
    b.command("c1 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.command("c2 EXPUNGE").await;
    let seen = expect_line(&mut a, |l| l.contains("EXPUNGE")).await;
    assert_eq!(seen.last().unwrap(), "* 1 EXPUNGE");

    a.send(b"DONE\r\n").await;
    let reply = a.until_tagged("i").await;
    assert_eq!(tagged(&reply, "i"), "i OK IDLE terminated");
    server.shutdown().await;
}

/// NOTIFY means the client listens all the time, not only during IDLE or a command (RFC 5465
/// section 3.1): events are pushed between commands. The server used to hold them until the
/// next command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_events_arrive_between_commands_without_idle() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    // STATUS before the OK for each watched mailbox that exists (INBOX).
    let reply = a
        .command("n NOTIFY SET STATUS (INBOXES (MessageNew MessageExpunge))")
        .await;
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert!(
        reply[0].starts_with("* STATUS INBOX (MESSAGES 0 "),
        "{reply:?}"
    );
    // No command from `a`: the STATUS comes anyway.
    append(&mut b, "b1", "INBOX", &message("one", "x")).await;
    let seen = expect_line(&mut a, |l| l.starts_with("* STATUS")).await;
    assert!(
        seen.last()
            .unwrap()
            .starts_with("* STATUS INBOX (MESSAGES 1 UIDNEXT 2 "),
        "{seen:?}"
    );
    append(&mut b, "b2", "INBOX", &message("two", "x")).await;
    expect_line(&mut a, |l| l.starts_with("* STATUS INBOX (MESSAGES 2 ")).await;
    // Nothing new: nothing reported.
    let reply = a.command("a2 NOOP").await;
    assert_eq!(reply, vec!["a2 OK NOOP completed".to_string()]);
    // NOTIFY NONE: silence, between commands and at the next one.
    a.command("a4 NOTIFY NONE").await;
    append(&mut b, "b4", "INBOX", &message("four", "x")).await;
    expect_silence(&mut a, Duration::from_millis(200)).await;
    let reply = a.command("a5 NOOP").await;
    assert_eq!(reply, vec!["a5 OK NOOP completed".to_string()]);
    server.shutdown().await;
}

/// The selected mailbox between commands: SELECTED pushes new messages and expunges;
/// SELECTED-DELAYED pushes new messages but holds expunges for a command (RFC 5465 section
/// 6.1.2); without either, nothing about the selected mailbox is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_selected_mailbox_events_between_commands() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    for n in 0..3 {
        append(
            &mut b,
            &format!("b{n}"),
            "INBOX",
            &message(&format!("m{n}"), "x"),
        )
        .await;
    }
    a.command("s SELECT INBOX").await;
    b.command("bs SELECT INBOX").await;

    a.command("n1 NOTIFY SET (SELECTED (MessageNew MessageExpunge))")
        .await;
    append(&mut b, "b3", "INBOX", &message("m3", "x")).await;
    expect_line(&mut a, |l| l == "* 4 EXISTS").await;
    b.command("b4 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.command("b5 EXPUNGE").await;
    expect_line(&mut a, |l| l == "* 1 EXPUNGE").await;

    a.command("n2 NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))")
        .await;
    b.command("b6 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.command("b7 EXPUNGE").await;
    append(&mut b, "b8", "INBOX", &message("m4", "x")).await;
    // The expunged message keeps its number until a command may report it.
    expect_line(&mut a, |l| l == "* 4 EXISTS").await;
    let reply = a.command("a1 NOOP").await;
    assert_eq!(reply, ["* 1 EXPUNGE", "a1 OK NOOP completed"]);

    a.command("n3 NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
        .await;
    append(&mut b, "b9", "INBOX", &message("m5", "x")).await;
    expect_silence(&mut a, Duration::from_millis(200)).await;
    let reply = a.command("a2 NOOP").await;
    assert_eq!(reply, ["* 4 EXISTS", "a2 OK NOOP completed"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_refuses_bad_event_sets() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let reply = a
        .command("n1 NOTIFY SET (PERSONAL (MessageNew MessageExpunge SubscriptionChange))")
        .await;
    assert_eq!(
        reply[0],
        "n1 NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName)] unsupported event"
    );
    let reply = a.command("n2 NOTIFY SET (PERSONAL (MessageNew))").await;
    assert!(reply[0].starts_with("n2 BAD"), "{reply:?}");
    let reply = a.command("n3 NOTIFY SET (PERSONAL (FlagChange))").await;
    assert!(reply[0].starts_with("n3 BAD"), "{reply:?}");
    let reply = a
        .command("n4 NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))")
        .await;
    assert!(reply[0].starts_with("n4 BAD"), "{reply:?}");
    let reply = a.command("n5 NOTIFY SET (SELECTED (MailboxName))").await;
    assert!(reply[0].starts_with("n5 BAD"), "{reply:?}");
    let reply = a.command("n6 NOTIFY SET (NOWHERE (MailboxName))").await;
    assert!(reply[0].starts_with("n6 BAD"), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_overflow_turns_notify_off() {
    let server = TestServer::start(|config| {
        config.session.notify_queue_limit = 2;
    })
    .await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    for (i, folder) in ["One", "Two", "Three"].iter().enumerate() {
        b.command(&format!("c{i} CREATE {folder}")).await;
    }
    a.command("n NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
        .await;
    // Events are pushed between commands; in the middle of one (an APPEND waiting for its
    // literal) they pile up.
    a.send(b"x APPEND Two {6}\r\n").await;
    assert!(a.line().await.starts_with("+ "));
    for (i, folder) in ["One", "Two", "Three"].iter().enumerate() {
        append(&mut b, &format!("a{i}"), folder, &message(folder, "x")).await;
    }
    a.send(b"x: y\r\n\r\n").await;
    let reply = a.until_tagged("x").await;
    assert!(reply.last().unwrap().starts_with("x OK"), "{reply:?}");
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("* OK [NOTIFICATIONOVERFLOW]")),
        "{reply:?}"
    );
    assert!(
        !reply.iter().any(|l| l.starts_with("* STATUS")),
        "{reply:?}"
    );
    // NOTIFY is off now.
    append(&mut b, "a9", "One", &message("later", "x")).await;
    let reply = a.command("y NOOP").await;
    assert_eq!(reply, vec!["y OK NOOP completed".to_string()]);
    // A new NOTIFY SET starts over.
    a.command("n2 NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
        .await;
    append(&mut b, "a10", "Two", &message("again", "x")).await;
    let seen = expect_line(&mut a, |l| l.starts_with("* STATUS")).await;
    assert!(
        seen.last()
            .unwrap()
            .starts_with("* STATUS Two (MESSAGES 3 "),
        "{seen:?}"
    );
    expect_silence(&mut a, Duration::from_millis(100)).await;
    server.shutdown().await;
}

/// Run `tests/python/compress_session.py` against `port`.
async fn python_compress_session(port: u16, tls: bool) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/compress_session.py"
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .env("IMAP_PORT", port.to_string())
            .env("IMAP_TLS", if tls { "1" } else { "0" })
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "compress session failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("compress session passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_deflate_with_python_zlib_over_plain_tcp() {
    let server = TestServer::start(|_| {}).await;
    python_compress_session(server.addr.port(), false).await;
    // The server is still healthy for uncompressed clients.
    let mut c = RawClient::login(server.addr).await;
    let reply = c.command("x COMPRESS GZIP").await;
    assert!(reply[0].starts_with("x BAD"), "{reply:?}");
    c.command("s SELECT INBOX").await;
    let reply = c.command("f FETCH 1:* (FLAGS)").await;
    assert!(reply[0].starts_with("* 1 FETCH"), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_deflate_with_python_zlib_over_tls() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ),
    );
    let tls =
        std::sync::Arc::new(sealmail_imap::server::tls_server_config(vec![cert], key).unwrap());
    let server = TestServer::start(move |config| {
        config.loopback_plaintext_auth = false;
        config.tls = Some(sealmail_imap::server::TlsSettings {
            config: tls,
            implicit: true,
        });
    })
    .await;
    python_compress_session(server.addr.port(), true).await;
    server.shutdown().await;
}

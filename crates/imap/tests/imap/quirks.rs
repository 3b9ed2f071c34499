//! Real-client quirks from issue #5, each replayed over a raw socket: regression tests named
//! after what clients ran into.

use crate::common::{RawClient, TestServer, append, message};
use std::time::Duration;

fn tagged<'a>(lines: &'a [String], tag: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no tagged reply for {tag} in {lines:?}"))
}

/// Lines that arrive within `wait`.
async fn lines_within(c: &mut RawClient, wait: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = tokio::time::timeout(wait, c.line()).await {
        lines.push(line);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_after_expunge_sends_no_zero_exists_loop() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    for i in 1..=2 {
        append(
            &mut b,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("m{i}"), "x"),
        )
        .await;
    }
    a.command("s SELECT INBOX").await;
    a.send(b"i IDLE\r\n").await;
    assert!(a.line().await.starts_with("+ "));
    b.command("b0 SELECT INBOX").await;
    b.command("b1 STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
    b.command("b2 EXPUNGE").await;
    // Both removals, then silence: no `* 0 EXISTS`, no repeated EXPUNGE. When the idling
    // session wakes between the STORE and the EXPUNGE (a loaded machine), it reports the
    // \Deleted flags first, which is right too.
    let lines = lines_within(&mut a, Duration::from_millis(700)).await;
    let (flag_updates, others): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|line| line.contains(" FETCH "));
    assert_eq!(others, vec!["* 1 EXPUNGE", "* 1 EXPUNGE"], "{lines:?}");
    for update in flag_updates {
        assert!(
            [
                "* 1 FETCH (UID 1 FLAGS (\\Deleted))",
                "* 2 FETCH (UID 2 FLAGS (\\Deleted))"
            ]
            .contains(&update.as_str()),
            "{lines:?}"
        );
    }
    // A change in another folder of the mailbox does not wake it either.
    b.command("b3 CREATE Other").await;
    append(&mut b, "b4", "Other", &message("o", "x")).await;
    let lines = lines_within(&mut a, Duration::from_millis(300)).await;
    assert!(lines.is_empty(), "{lines:?}");
    a.send(b"DONE\r\n").await;
    let reply = a.until_tagged("i").await;
    assert_eq!(reply, vec!["i OK IDLE terminated"]);
    let reply = a.command("n NOOP").await;
    assert_eq!(reply, vec!["n OK NOOP completed"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_while_another_session_has_the_source_selected() {
    let server = TestServer::start(|_| {}).await;
    let mut mover = RawClient::login(server.addr).await;
    let mut plain = RawClient::login(server.addr).await;
    let mut qresync = RawClient::login(server.addr).await;
    for i in 1..=3 {
        append(
            &mut mover,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("m{i}"), "x"),
        )
        .await;
    }
    mover.command("c CREATE Archive").await;
    plain.command("s SELECT INBOX").await;
    qresync.command("e ENABLE QRESYNC").await;
    qresync.command("s SELECT INBOX").await;
    // The QRESYNC session waits in IDLE and hears about the move at once.
    qresync.send(b"i IDLE\r\n").await;
    assert!(qresync.line().await.starts_with("+ "));
    mover.command("m0 SELECT INBOX").await;
    let reply = mover.command("m1 UID MOVE 2 Archive").await;
    assert!(reply[0].starts_with("* OK [COPYUID "), "{reply:?}");
    assert_eq!(reply[1], "* 2 EXPUNGE");
    let line = tokio::time::timeout(Duration::from_secs(5), qresync.line())
        .await
        .expect("VANISHED while idle");
    assert_eq!(line, "* VANISHED 2");
    qresync.send(b"DONE\r\n").await;
    qresync.until_tagged("i").await;
    // The plain session learns at its next command that allows EXPUNGE, by sequence number.
    let reply = plain.command("n NOOP").await;
    assert_eq!(reply, vec!["* 2 EXPUNGE", "n OK NOOP completed"]);
    let reply = plain.command("f UID FETCH 1:* (UID)").await;
    assert_eq!(reply.len(), 3, "{reply:?}");
    // The message is in the target, readable by every session.
    let reply = plain.command("t STATUS Archive (MESSAGES)").await;
    assert_eq!(reply[0], "* STATUS Archive (MESSAGES 1)");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_fetch_with_star_on_an_empty_folder() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    c.command("c CREATE Empty").await;
    c.command("s SELECT Empty").await;
    for (tag, command) in [
        ("f1", "UID FETCH 1:* (FLAGS)"),
        ("f2", "UID FETCH * (UID)"),
        ("f3", "UID FETCH 5:* (FLAGS) (CHANGEDSINCE 1)"),
        ("f4", "UID SEARCH UID 1:*"),
        ("f5", "UID STORE 1:* +FLAGS (\\Seen)"),
    ] {
        let reply = c.command(&format!("{tag} {command}")).await;
        assert!(
            tagged(&reply, tag).starts_with(&format!("{tag} OK")),
            "{command}: {reply:?}"
        );
        assert!(
            !reply.iter().any(|l| l.starts_with("* ") && l != "* SEARCH"),
            "{command}: {reply:?}"
        );
    }
    // The first message then gets UID 1 (its EXISTS came with APPEND's reply) and `*` finds it.
    append(&mut c, "a", "Empty", &message("first", "x")).await;
    let reply = c.command("f6 UID FETCH 1:* (FLAGS)").await;
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("* 1 FETCH (UID 1 FLAGS")),
        "{reply:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_set_with_ten_thousand_ranges_parses_within_the_line_limit() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    for i in 1..=3 {
        append(
            &mut c,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("m{i}"), "x"),
        )
        .await;
    }
    c.command("s SELECT INBOX").await;
    // 10,000 disjoint ranges of six-digit UIDs, the shape a client syncing a sparse folder
    // sends, plus the real UIDs at the end: about 140 KB on one line.
    let mut set: Vec<String> = (0..10_000u32)
        .map(|i| format!("{}:{}", 100_000 + 4 * i, 100_001 + 4 * i))
        .collect();
    set.push("1:3".into());
    let set = set.join(",");
    assert!(set.len() > 130_000, "{}", set.len());
    let started = std::time::Instant::now();
    let reply = c.command(&format!("f UID FETCH {set} (FLAGS)")).await;
    assert_eq!(tagged(&reply, "f"), "f OK FETCH completed");
    assert_eq!(
        reply.iter().filter(|l| l.contains(" FETCH (")).count(),
        3,
        "{reply:?}"
    );
    let reply = c.command(&format!("g UID SEARCH UID {set}")).await;
    assert_eq!(reply[0], "* SEARCH 1 2 3");
    let reply = c
        .command(&format!("h UID STORE {set} +FLAGS.SILENT (\\Seen)"))
        .await;
    assert_eq!(tagged(&reply, "h"), "h OK STORE completed");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_sends_logout_leaves_no_session_behind() {
    // Two connections per address: a leaked slot would lock this client out after two drops.
    let server = TestServer::start(|config| {
        config.max_connections_per_ip = 2;
        config.max_connections = 2;
    })
    .await;
    for round in 0..6 {
        let mut c = connect_with_retry(server.addr).await;
        let reply = c
            .command("l LOGIN alice@example.org \"correct horse\"")
            .await;
        assert!(reply[0].starts_with("l OK"), "round {round}: {reply:?}");
        c.command("s SELECT INBOX").await;
        let reply = append(&mut c, "a", "INBOX", &message(&format!("r{round}"), "x")).await;
        assert!(reply.starts_with("a OK"), "{reply}");
        // Mid-IDLE, the connection just drops.
        c.send(b"i IDLE\r\n").await;
        assert!(c.line().await.starts_with("+ "));
        drop(c);
    }
    // The mailbox is intact and usable by the next session.
    let mut c = connect_with_retry(server.addr).await;
    c.command("l LOGIN alice@example.org \"correct horse\"")
        .await;
    let reply = c.command("s STATUS INBOX (MESSAGES)").await;
    assert_eq!(reply[0], "* STATUS INBOX (MESSAGES 6)");
    let mut second = connect_with_retry(server.addr).await;
    let reply = second.command("c CAPABILITY").await;
    assert!(reply[0].starts_with("* CAPABILITY"), "{reply:?}");
    server.shutdown().await;
}

/// Connect, waiting for a slot freed by a dropped connection (the server notices the drop
/// within milliseconds; more than 5 s means the slot leaked).
async fn connect_with_retry(addr: std::net::SocketAddr) -> RawClient {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (client, greeting) = RawClient::connect(addr).await;
        if greeting.starts_with("* OK") {
            return client;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connection slot never freed: {greeting}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Protocol conformance over a real socket: RFC example exchanges, malformed input (each gets the
//! RFC's answer and the connection stays usable), state rules, extensions.

use crate::common::{RawClient, TestServer, append, message};

fn tagged<'a>(lines: &'a [String], tag: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no tagged {tag} reply in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_bad_and_connection_stays_usable() {
    let server = TestServer::start(|config| {
        config.limits.max_line = 4096;
        config.limits.max_literal = 1024;
    })
    .await;
    let (mut c, greeting) = RawClient::connect(server.addr).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{greeting}"
    );

    // Bad tag / no tag / 8-bit garbage: untagged BAD.
    c.send(b"+plus NOOP\r\n").await;
    assert!(c.line().await.starts_with("* BAD [PARSE]"));
    c.send(b"\xff\xfe\xfd garbage\r\n").await;
    assert!(c.line().await.starts_with("* BAD [PARSE]"));
    c.send(b"\r\n").await;
    assert!(c.line().await.starts_with("* BAD"));
    // Unknown command and trailing junk: tagged BAD.
    let reply = c.command("a1 FROBNICATE").await;
    assert!(tagged(&reply, "a1").starts_with("a1 BAD"), "{reply:?}");
    let reply = c.command("a2 NOOP now").await;
    assert!(tagged(&reply, "a2").starts_with("a2 BAD"), "{reply:?}");
    // Wrong state.
    let reply = c.command("a3 FETCH 1 FLAGS").await;
    assert!(tagged(&reply, "a3").starts_with("a3 BAD"), "{reply:?}");
    let reply = c.command("a4 SELECT INBOX").await;
    assert!(tagged(&reply, "a4").starts_with("a4 BAD"), "{reply:?}");
    // A huge synchronising literal is refused before any data is sent.
    c.send(b"a5 LOGIN {99999999999}\r\n").await;
    let line = c.line().await;
    assert!(line.starts_with("a5 NO [TOOBIG]"), "{line}");
    // An over-long line is discarded with a count; the tag is kept.
    let long = format!("a6 LOGIN {} x\r\n", "u".repeat(5000));
    c.send(long.as_bytes()).await;
    let line = c.line().await;
    assert!(
        line.starts_with("a6 BAD [TOOBIG] command line too long, 5013 bytes discarded"),
        "{line}"
    );
    // A non-synchronising literal over the limit is read, discarded and refused.
    let mut big = b"a7 LOGIN {2000+}\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000));
    big.extend_from_slice(b" pw\r\n");
    c.send(&big).await;
    let line = c.line().await;
    assert!(line.starts_with("a7 BAD [TOOBIG]"), "{line}");
    // Truncated literal inside a completed frame: parse error, tagged.
    let reply = c.command("a8 LOGIN \"unterminated").await;
    assert!(
        tagged(&reply, "a8").starts_with("a8 BAD [PARSE]"),
        "{reply:?}"
    );
    // After all that the connection still works.
    let reply = c.command("a9 CAPABILITY").await;
    assert!(reply[0].starts_with("* CAPABILITY IMAP4rev1"), "{reply:?}");
    assert!(tagged(&reply, "a9").starts_with("a9 OK"));
    // Synchronising literal within limits: continuation, then login.
    c.send(b"b1 LOGIN {17}\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send(b"alice@example.org {13}\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send(b"correct horse\r\n").await;
    let reply = c.until_tagged("b1").await;
    assert!(
        tagged(&reply, "b1").starts_with("b1 OK [CAPABILITY"),
        "{reply:?}"
    );
    let reply = c.command("b2 LOGOUT").await;
    assert!(reply[0].starts_with("* BYE"));
    assert!(tagged(&reply, "b2").starts_with("b2 OK"));
    server.shutdown().await;
}

/// RFC 9051 section 8 style exchange, checked line by line where the answer is determined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_sample_exchange() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    for i in 1..=3 {
        let line = append(
            &mut c,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("s{i}"), "hi"),
        )
        .await;
        assert!(line.starts_with(&format!("p{i} OK [APPENDUID ")), "{line}");
    }
    let reply = c.command("a002 select inbox").await;
    assert_eq!(
        reply[0],
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    );
    assert_eq!(reply[1], "* 3 EXISTS");
    assert!(reply.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")));
    assert!(
        reply
            .iter()
            .any(|l| l == "* OK [UIDNEXT 4] predicted next UID")
    );
    assert!(reply.iter().any(|l| {
        l.starts_with("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]")
    }));
    assert_eq!(
        tagged(&reply, "a002"),
        "a002 OK [READ-WRITE] SELECT completed"
    );
    let reply = c.command("a003 fetch 3 full").await;
    assert!(
        reply[0].starts_with("* 3 FETCH (FLAGS () INTERNALDATE \""),
        "{reply:?}"
    );
    assert!(reply[0].contains("RFC822.SIZE "));
    assert!(reply[0].contains("ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"s3\" ((\"Bob\" NIL \"bob\" \"example.org\"))"));
    assert!(
        reply[0].contains(
            " BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 4 1))"
        ),
        "{reply:?}"
    );
    let reply = c.command("a004 fetch 3 body[header]").await;
    assert!(
        reply[0].starts_with("* 3 FETCH (BODY[HEADER] {"),
        "{reply:?}"
    );
    assert!(reply[0].contains("Subject: s3\r\n"));
    // BODY[...] without PEEK set \Seen, reported in the same response.
    assert!(reply[0].ends_with(" FLAGS (\\Seen))"), "{reply:?}");
    let reply = c.command("a005 store 3 +flags \\deleted").await;
    assert_eq!(reply[0], "* 3 FETCH (FLAGS (\\Seen \\Deleted))");
    assert_eq!(tagged(&reply, "a005"), "a005 OK STORE completed");
    let reply = c.command("a006 expunge").await;
    assert_eq!(reply[0], "* 3 EXPUNGE");
    let reply = c.command("a007 logout").await;
    assert!(reply[0].starts_with("* BYE"));
    assert_eq!(tagged(&reply, "a007"), "a007 OK LOGOUT completed");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_session_sees_expunge_only_when_allowed() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    for i in 1..=3 {
        append(
            &mut a,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("m{i}"), "x"),
        )
        .await;
    }
    a.command("s1 SELECT INBOX").await;
    b.command("s2 SELECT INBOX").await;
    let reply = b.command("b1 STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(reply.len(), 1);
    b.command("b2 EXPUNGE").await;
    // FETCH by sequence number must not see the EXPUNGE (numbers would shift under it) ...
    let reply = a.command("a1 FETCH 1:3 (FLAGS)").await;
    assert!(!reply.iter().any(|l| l.contains("EXPUNGE")), "{reply:?}");
    assert_eq!(
        reply
            .iter()
            .filter(|l| l.starts_with("* ") && l.contains(" FETCH "))
            .count(),
        3,
        "{reply:?}"
    );
    // ... NOOP may.
    let reply = a.command("a2 NOOP").await;
    assert!(reply.contains(&"* 2 EXPUNGE".to_string()), "{reply:?}");
    let reply = a.command("a3 SEARCH ALL").await;
    assert_eq!(reply[0], "* SEARCH 1 2");
    // MOVE while the other session has the folder selected.
    b.command("c0 CREATE Other").await;
    let reply = b.command("c1 MOVE 1 Other").await;
    assert!(reply[0].starts_with("* OK [COPYUID "), "{reply:?}");
    assert_eq!(reply[1], "* 1 EXPUNGE");
    let reply = a.command("a4 UID SEARCH ALL").await;
    assert!(reply.contains(&"* 1 EXPUNGE".to_string()), "{reply:?}");
    // No `* 0 EXISTS` loops: an idle session on an emptied folder hears nothing more.
    b.command("c2 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.command("c3 EXPUNGE").await;
    let reply = a.command("a5 NOOP").await;
    assert_eq!(
        reply,
        vec![
            "* 1 EXPUNGE".to_string(),
            "a5 OK NOOP completed".to_string()
        ]
    );
    let reply = a.command("a6 NOOP").await;
    assert_eq!(reply, vec!["a6 OK NOOP completed".to_string()]);
    // SEARCH by sequence numbers on an empty folder finds nothing, without an error.
    let reply = a.command("a8 SEARCH 1:*").await;
    assert_eq!(reply[0], "* SEARCH");
    assert!(tagged(&reply, "a8").starts_with("a8 OK"), "{reply:?}");
    // UID FETCH with `*` on an empty folder is fine.
    let reply = a.command("a7 UID FETCH 1:* (FLAGS)").await;
    assert_eq!(reply, vec!["a7 OK FETCH completed".to_string()]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_qresync_esearch_searchres() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    for i in 1..=5 {
        append(
            &mut c,
            &format!("p{i}"),
            "INBOX",
            &message(&format!("m{i}"), "x"),
        )
        .await;
    }
    let reply = c.command("e1 ENABLE QRESYNC").await;
    assert_eq!(reply[0], "* ENABLED QRESYNC");
    let reply = c.command("e2 SELECT INBOX").await;
    let modseq: u64 = reply
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .expect("HIGHESTMODSEQ on SELECT");
    let validity: u32 = reply
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Conditional STORE: the second one fails for message 2 with MODIFIED.
    let reply = c
        .command(&format!(
            "e3 STORE 1:2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)"
        ))
        .await;
    assert!(
        reply[0].starts_with("* 1 FETCH (FLAGS (\\Seen) MODSEQ ("),
        "{reply:?}"
    );
    let reply = c
        .command(&format!(
            "e4 STORE 2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)"
        ))
        .await;
    assert_eq!(
        tagged(&reply, "e4"),
        "e4 OK [MODIFIED 2] conditional STORE failed for some messages"
    );
    // CHANGEDSINCE returns only the changed messages.
    let reply = c
        .command(&format!("e5 FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})"))
        .await;
    assert_eq!(reply.len(), 3, "{reply:?}");
    // Expunge one, then a QRESYNC select from the old state reports it VANISHED (EARLIER).
    c.command("e6 STORE 5 +FLAGS.SILENT (\\Deleted)").await;
    let reply = c.command("e7 EXPUNGE").await;
    assert_eq!(reply[0], "* VANISHED 5", "{reply:?}");
    c.command("e8 UNSELECT").await;
    let reply = c
        .command(&format!(
            "e9 SELECT INBOX (QRESYNC ({validity} {modseq} 1:5))"
        ))
        .await;
    assert!(
        reply.contains(&"* VANISHED (EARLIER) 5".to_string()),
        "{reply:?}"
    );
    assert_eq!(
        reply.iter().filter(|l| l.contains(" FETCH (UID ")).count(),
        2,
        "{reply:?}"
    );
    // ESEARCH and SEARCHRES.
    let reply = c.command("f1 SEARCH RETURN (MIN MAX COUNT) SEEN").await;
    assert_eq!(
        reply[0], "* ESEARCH (TAG \"f1\") MIN 1 MAX 2 COUNT 2",
        "{reply:?}"
    );
    let reply = c.command("f2 UID SEARCH RETURN (SAVE) NOT SEEN").await;
    assert_eq!(reply.len(), 1, "SAVE alone answers no ESEARCH: {reply:?}");
    let reply = c.command("f3 UID FETCH $ (UID)").await;
    assert_eq!(reply.len(), 3, "{reply:?}");
    assert!(reply[0].starts_with("* 3 FETCH (UID 3"), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_binary_sections_and_quota() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let one = message("one", "first");
    let mime = "From: a@b\r\nSubject: mime\r\nMIME-Version: 1.0\r\n\
                Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\
                Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\n\
                Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                AAECAw==\r\n--XX--\r\n";
    c.send(
        format!(
            "m1 APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {{{}+}}\r\n{one} {{{}+}}\r\n{mime}\r\n",
            one.len(),
            mime.len()
        )
        .as_bytes(),
    )
    .await;
    let reply = c.until_tagged("m1").await;
    assert!(
        tagged(&reply, "m1").starts_with("m1 OK [APPENDUID ")
            && tagged(&reply, "m1").contains(" 1:2]"),
        "{reply:?}"
    );
    c.command("s SELECT INBOX").await;
    let reply = c.command("f1 FETCH 1 (INTERNALDATE FLAGS)").await;
    assert_eq!(
        reply[0],
        "* 1 FETCH (INTERNALDATE \"17-Jul-1996 09:44:25 +0000\" FLAGS (\\Seen))"
    );
    let reply = c
        .command("f2 FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])")
        .await;
    assert!(reply[0].contains("BODY[1] {5}hello"), "{reply:?}");
    assert!(reply[0].contains("BODY[2.MIME] {"), "{reply:?}");
    assert!(
        reply[0].contains("BINARY[2] ~{4}\0\u{1}\u{2}\u{3}"),
        "{reply:?}"
    );
    assert!(reply[0].contains("BINARY.SIZE[2] 4"), "{reply:?}");
    let reply = c.command("f3 FETCH 2 (BODYSTRUCTURE)").await;
    assert!(
        reply[0].contains("\"MIXED\" (\"BOUNDARY\" \"XX\")"),
        "{reply:?}"
    );
    let reply = c
        .command("f4 FETCH 1 (PREVIEW EMAILID THREADID SAVEDATE)")
        .await;
    assert!(reply[0].starts_with("* 1 FETCH (PREVIEW "), "{reply:?}");
    assert!(reply[0].contains("first"), "{reply:?}");
    assert!(reply[0].contains(" EMAILID (M"), "{reply:?}");
    assert!(reply[0].contains(" SAVEDATE \""), "{reply:?}");
    let reply = c.command("q1 GETQUOTAROOT INBOX").await;
    assert_eq!(reply[0], "* QUOTAROOT INBOX \"\"");
    assert!(reply[1].starts_with("* QUOTA \"\" (STORAGE "), "{reply:?}");
    assert!(reply[1].ends_with(" 102400)"), "{reply:?}");
    let reply = c
        .command("q2 STATUS INBOX (MESSAGES UNSEEN SIZE HIGHESTMODSEQ APPENDLIMIT)")
        .await;
    assert!(
        reply[0].starts_with("* STATUS INBOX (MESSAGES 2 UNSEEN 1 SIZE "),
        "{reply:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_to_idle_connections() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    c.command("s SELECT INBOX").await;
    c.send(b"i IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    let addr = server.addr;
    let stopping = tokio::spawn(server.shutdown());
    let line = c.line().await;
    assert!(line.starts_with("* BYE"), "{line}");
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_address() {
    let server = TestServer::start(|config| {
        config.session.login_limiter = std::sync::Arc::new(
            sealmail_imap::session::LoginLimiter::new(3, std::time::Duration::from_secs(60)),
        );
    })
    .await;
    let (mut c, _) = RawClient::connect(server.addr).await;
    for i in 0..3 {
        let reply = c
            .command(&format!("w{i} LOGIN alice@example.org wrong"))
            .await;
        assert!(
            tagged(&reply, &format!("w{i}")).contains("NO [AUTHENTICATIONFAILED]"),
            "{reply:?}"
        );
    }
    // Now even the right password is refused, from a fresh connection too.
    let (mut d, _) = RawClient::connect(server.addr).await;
    let reply = d
        .command("r LOGIN alice@example.org \"correct horse\"")
        .await;
    assert!(
        tagged(&reply, "r").starts_with("r NO [UNAVAILABLE]"),
        "{reply:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_extended_selection_and_return_options() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    c.command("c1 CREATE Foo/Bar").await;
    c.command("c2 SUBSCRIBE Foo/Bar").await;
    // New folders start subscribed; only the child stays subscribed here.
    c.command("c3 UNSUBSCRIBE Foo").await;
    let reply = c
        .command("l1 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"")
        .await;
    assert!(
        reply.iter().any(|l| l.starts_with("* LIST (")
            && l.ends_with(" \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))")),
        "{reply:?}"
    );
    let reply = c.command("l2 LIST (SUBSCRIBED) \"\" \"*\"").await;
    assert!(
        reply.contains(&"* LIST (\\HasNoChildren \\Subscribed) \"/\" Foo/Bar".to_string()),
        "{reply:?}"
    );
    assert!(!reply.iter().any(|l| l.ends_with(" Foo")), "{reply:?}");
    let reply = c.command("l3 LIST (SPECIAL-USE) \"\" \"*\"").await;
    assert!(
        reply
            .iter()
            .any(|l| l.contains("\\Trash") && l.ends_with(" Trash")),
        "{reply:?}"
    );
    assert!(!reply.iter().any(|l| l.ends_with(" INBOX")), "{reply:?}");
    let reply = c
        .command("l4 LIST \"\" \"INBOX\" RETURN (STATUS (MESSAGES UIDNEXT))")
        .await;
    assert_eq!(reply[0], "* LIST (\\HasNoChildren) \"/\" INBOX");
    assert_eq!(reply[1], "* STATUS INBOX (MESSAGES 0 UIDNEXT 1)");
    let reply = c.command("l5 LIST \"\" \"\"").await;
    assert_eq!(reply[0], "* LIST (\\Noselect) \"/\" \"\"");
    server.shutdown().await;
}

/// Counts what the server reports through the metrics hooks.
#[derive(Default)]
struct Counting {
    commands: std::sync::Mutex<Vec<(&'static str, sealmail_imap::metrics::Outcome)>>,
    logins: std::sync::Mutex<(u32, u32)>,
    connections: std::sync::atomic::AtomicI64,
}

impl sealmail_imap::metrics::Metrics for Counting {
    fn command(
        &self,
        name: &'static str,
        outcome: sealmail_imap::metrics::Outcome,
        _: std::time::Duration,
    ) {
        self.commands.lock().unwrap().push((name, outcome));
    }
    fn login(&self, succeeded: bool) {
        let mut logins = self.logins.lock().unwrap();
        if succeeded {
            logins.0 += 1;
        } else {
            logins.1 += 1;
        }
    }
    fn connection(&self, opened: bool) {
        self.connections.fetch_add(
            if opened { 1 } else { -1 },
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_hooks_see_commands_logins_and_connections() {
    use sealmail_imap::metrics::Outcome;
    let counting = std::sync::Arc::new(Counting::default());
    let metrics = std::sync::Arc::clone(&counting);
    let server = TestServer::start(move |config| config.session.metrics = metrics).await;
    let (mut c, _) = RawClient::connect(server.addr).await;
    c.command("a LOGIN alice@example.org nope").await;
    c.command("b LOGIN alice@example.org \"correct horse\"")
        .await;
    c.command("c SELECT INBOX").await;
    c.command("d FETCH 1 FLAGS").await;
    c.command("e UID FETCH 1:* FLAGS").await;
    assert_eq!(
        counting
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    c.command("f LOGOUT").await;
    assert_eq!(*counting.logins.lock().unwrap(), (1, 1));
    assert_eq!(
        *counting.commands.lock().unwrap(),
        vec![
            ("LOGIN", Outcome::No),
            ("LOGIN", Outcome::Ok),
            ("SELECT", Outcome::Ok),
            ("FETCH", Outcome::Bad),
            ("UID FETCH", Outcome::Ok),
            ("LOGOUT", Outcome::Ok),
        ]
    );
    server.shutdown().await;
    assert_eq!(
        counting
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_half_received_command_finish() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let raw = message("late", "body");
    let (head, tail) = raw.split_at(20);
    // A synchronising literal: once `+` arrives the server has read the command line.
    c.send(format!("ap APPEND INBOX {{{}}}\r\n", raw.len()).as_bytes())
        .await;
    assert!(c.line().await.starts_with("+ "));
    c.send(head.as_bytes()).await;
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the command");
    c.send(format!("{tail}\r\n").as_bytes()).await;
    let reply = c.until_tagged("ap").await;
    assert!(
        tagged(&reply, "ap").starts_with("ap OK [APPENDUID "),
        "{reply:?}"
    );
    let line = c.line().await;
    assert!(line.starts_with("* BYE"), "{line}");
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sends_keepalives_and_ends_on_done() {
    let server = TestServer::start(|config| {
        config.idle_keepalive = std::time::Duration::from_millis(100);
    })
    .await;
    let mut c = RawClient::login(server.addr).await;
    c.command("s SELECT INBOX").await;
    c.send(b"i IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    assert_eq!(c.line().await, "* OK still here");
    assert_eq!(c.line().await, "* OK still here");
    c.send(b"DONE\r\n").await;
    let reply = c.until_tagged("i").await;
    assert_eq!(tagged(&reply, "i"), "i OK IDLE terminated");
    // Anything but DONE ends IDLE with BAD.
    c.send(b"j IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send(b"NOOP\r\n").await;
    let reply = c.until_tagged("j").await;
    assert!(tagged(&reply, "j").starts_with("j BAD"), "{reply:?}");
    server.shutdown().await;
}

/// APPEND to the selected folder announces the new message (EXISTS) before its tagged OK, once,
/// with the flags it was given; after another session's APPEND, the next one of ours reports
/// both messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_to_the_selected_folder_reports_exists_once() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    a.command("a1 SELECT INBOX").await;
    let raw = message("one", "first");
    a.send(
        format!(
            "a2 APPEND INBOX (\\Flagged) {{{}+}}\r\n{raw}\r\n",
            raw.len()
        )
        .as_bytes(),
    )
    .await;
    let reply = a.until_tagged("a2").await;
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_eq!(reply[0], "* 1 EXISTS");
    assert!(reply[1].starts_with("a2 OK [APPENDUID "), "{reply:?}");
    assert_eq!(a.command("a3 NOOP").await, ["a3 OK NOOP completed"]);

    let line = append(&mut b, "b1", "INBOX", &message("two", "second")).await;
    assert!(line.starts_with("b1 OK [APPENDUID "), "{line}");
    let line = append(&mut a, "a4", "INBOX", &message("three", "third")).await;
    assert!(line.starts_with("a4 OK [APPENDUID "), "{line}");
    let reply = a.command("a5 NOOP").await;
    assert_eq!(reply, ["a5 OK NOOP completed"], "a4 reported everything");
    let reply = a.command("a6 UID FETCH 1:* (FLAGS)").await;
    assert_eq!(
        reply,
        [
            "* 1 FETCH (UID 1 FLAGS (\\Flagged))",
            "* 2 FETCH (UID 2 FLAGS ())",
            "* 3 FETCH (UID 3 FLAGS ())",
            "a6 OK FETCH completed"
        ]
    );

    // Our own flag change and expunge keep the view current: the next APPEND is announced as
    // before, and nothing is reported twice.
    let reply = a.command("a7 UID STORE 2 +FLAGS (\\Deleted)").await;
    assert_eq!(reply[0], "* 2 FETCH (UID 2 FLAGS (\\Deleted))");
    assert_eq!(a.command("a8 UID EXPUNGE 2").await[0], "* 2 EXPUNGE");
    let raw = message("four", "fourth");
    a.send(format!("a9 APPEND INBOX {{{}+}}\r\n{raw}\r\n", raw.len()).as_bytes())
        .await;
    let reply = a.until_tagged("a9").await;
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_eq!(reply[0], "* 3 EXISTS");
    assert_eq!(a.command("a10 NOOP").await, ["a10 OK NOOP completed"]);
    let reply = a.command("a11 UID FETCH 1:* (UID)").await;
    assert_eq!(
        reply,
        [
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 3)",
            "* 3 FETCH (UID 4)",
            "a11 OK FETCH completed"
        ]
    );
    server.shutdown().await;
}

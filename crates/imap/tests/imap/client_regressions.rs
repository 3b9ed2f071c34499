//! Regressions found by driving the server with real mail clients (crates/server/tests/interop),
//! replayed here over the raw protocol. Each test is named after what broke.

use crate::common::{RawClient, TestServer, append};

/// A message whose whole body is a message/rfc822 (a forward as attachment without a multipart
/// around it): part 1 is that body, i.e. the encapsulated message with its header, and
/// 1.HEADER / 1.TEXT address the encapsulated message's header and text. The server used to
/// answer part 1 with the inner message's text only, and 1.HEADER / 1.TEXT with NIL, while
/// BODYSTRUCTURE gave part 1 the size of the whole encapsulated message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_message_rfc822_part_one_is_the_encapsulated_message() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let inner = "Subject: inner\r\nFrom: x@example.org\r\n\r\ninner body\r\n";
    let outer = format!(
        "Subject: forwarded\r\nFrom: a@example.org\r\nMIME-Version: 1.0\r\n\
         Content-Type: message/rfc822\r\n\r\n{inner}"
    );
    let appended = append(&mut c, "a1", "INBOX", &outer).await;
    assert!(appended.starts_with("a1 OK"), "{appended}");
    c.command("s SELECT INBOX").await;

    let reply = c.command("f1 FETCH 1 (BODYSTRUCTURE)").await;
    let size = inner.len();
    assert!(
        reply[0].contains(&format!(
            "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" {size} "
        )),
        "{reply:?}"
    );
    let reply = c.command("f2 FETCH 1 (BODY.PEEK[1])").await;
    assert_eq!(
        reply[0],
        format!("* 1 FETCH (BODY[1] {{{size}}}{inner})"),
        "part 1 is the whole encapsulated message"
    );
    let reply = c.command("f3 FETCH 1 (BODY.PEEK[1.HEADER])").await;
    assert_eq!(
        reply[0],
        "* 1 FETCH (BODY[1.HEADER] {39}Subject: inner\r\nFrom: x@example.org\r\n\r\n)"
    );
    let reply = c
        .command("f4 FETCH 1 (BODY.PEEK[1.TEXT] BODY.PEEK[1.1])")
        .await;
    assert_eq!(
        reply[0],
        "* 1 FETCH (BODY[1.TEXT] {12}inner body\r\n BODY[1.1] {12}inner body\r\n)"
    );
    let reply = c.command("f5 FETCH 1 (BINARY.SIZE[1])").await;
    assert_eq!(reply[0], format!("* 1 FETCH (BINARY.SIZE[1] {size})"));
    server.shutdown().await;
}

/// `SEARCH RETURN (SAVE MIN)` (or MAX, or both) without ALL or COUNT saves only the messages
/// MIN/MAX name, not the whole result (RFC 5182 section 2.1); `RETURN (SAVE)` alone and SAVE
/// with ALL keep saving everything. The server used to save the whole result every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_save_with_min_or_max_saves_only_those_messages() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    for n in 1..=5 {
        let raw = format!("Subject: m{n}\r\n\r\nbody\r\n");
        assert!(append(&mut c, "a", "INBOX", &raw).await.starts_with("a OK"));
    }
    c.command("s SELECT INBOX").await;

    let reply = c.command("s1 UID SEARCH RETURN (SAVE MIN) 2:4").await;
    assert_eq!(reply[0], "* ESEARCH (TAG \"s1\") UID MIN 2", "{reply:?}");
    let reply = c.command("f1 UID FETCH $ (UID)").await;
    assert_eq!(reply, ["* 2 FETCH (UID 2)", "f1 OK FETCH completed"]);

    let reply = c.command("s2 UID SEARCH RETURN (MAX SAVE MIN) 2:4").await;
    assert_eq!(
        reply[0], "* ESEARCH (TAG \"s2\") UID MIN 2 MAX 4",
        "{reply:?}"
    );
    let reply = c.command("f2 UID FETCH $ (UID)").await;
    assert_eq!(
        reply,
        [
            "* 2 FETCH (UID 2)",
            "* 4 FETCH (UID 4)",
            "f2 OK FETCH completed"
        ]
    );

    c.command("s3 UID SEARCH RETURN (SAVE MIN ALL) 2:4").await;
    let reply = c.command("f3 UID FETCH $ (UID)").await;
    assert_eq!(reply.len(), 4, "ALL saves the whole result: {reply:?}");

    let reply = c.command("s4 UID SEARCH RETURN (SAVE) 3:5").await;
    assert_eq!(reply, ["s4 OK SEARCH completed"]);
    let reply = c.command("f4 UID FETCH $ (UID)").await;
    assert_eq!(
        reply.len(),
        4,
        "SAVE alone saves the whole result: {reply:?}"
    );
    server.shutdown().await;
}

/// DELETE of a mailbox with subfolders removes the mailbox and its messages and keeps the
/// subfolders; the name stays as a `\Noselect` level of hierarchy (RFC 9051 section 6.3.5,
/// second example, and what Dovecot does). Deleting that `\Noselect` name is refused with
/// `[HASCHILDREN]`. The server used to refuse the first DELETE with `NO [CANNOT]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_mailbox_with_subfolders_keeps_the_subfolders() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    c.command("c1 CREATE foo/bar").await;
    let raw = "Subject: parent\r\n\r\nbody\r\n";
    assert!(append(&mut c, "a1", "foo", raw).await.starts_with("a1 OK"));
    assert!(
        append(&mut c, "a2", "foo/bar", raw)
            .await
            .starts_with("a2 OK")
    );
    c.command("s1 SELECT foo").await;

    let reply = c.command("d1 DELETE foo").await;
    assert_eq!(reply.last().unwrap(), "d1 OK DELETE completed", "{reply:?}");
    let reply = c.command("l1 LIST \"\" foo*").await;
    assert_eq!(
        reply,
        [
            "* LIST (\\Noselect \\HasChildren) \"/\" foo",
            "* LIST (\\HasNoChildren) \"/\" foo/bar",
            "l1 OK LIST completed",
        ]
    );
    // The deleted mailbox was selected: the session is back in the authenticated state.
    let reply = c.command("f1 FETCH 1 FLAGS").await;
    assert!(reply.last().unwrap().starts_with("f1 BAD"), "{reply:?}");
    let reply = c.command("s2 STATUS foo/bar (MESSAGES)").await;
    assert_eq!(reply[0], "* STATUS foo/bar (MESSAGES 1)");

    let reply = c.command("d2 DELETE foo").await;
    assert!(
        reply.last().unwrap().starts_with("d2 NO [HASCHILDREN]"),
        "{reply:?}"
    );
    let reply = c.command("d3 DELETE nowhere").await;
    assert!(
        reply.last().unwrap().starts_with("d3 NO [NONEXISTENT]"),
        "{reply:?}"
    );
    // Re-created, the name is an empty mailbox again.
    c.command("c2 CREATE foo").await;
    let reply = c.command("s3 STATUS foo (MESSAGES)").await;
    assert_eq!(reply[0], "* STATUS foo (MESSAGES 0)");
    let reply = c.command("d4 DELETE foo/bar").await;
    assert_eq!(reply.last().unwrap(), "d4 OK DELETE completed");
    let reply = c.command("d5 DELETE foo").await;
    assert_eq!(reply.last().unwrap(), "d5 OK DELETE completed");
    let reply = c.command("l2 LIST \"\" foo*").await;
    assert_eq!(reply, ["l2 OK LIST completed"]);
    server.shutdown().await;
}

/// LIST-STATUS: each mailbox's STATUS comes right after its LIST (RFC 5819 section 2), and a
/// `\Noselect` level gets none. The server used to send every LIST first, then every STATUS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_status_puts_each_status_right_after_its_list() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    c.command("c1 CREATE Box").await;
    c.command("c2 CREATE Lists/rust").await;
    c.command("c3 DELETE Lists").await;
    let raw = "Subject: one\r\n\r\nbody\r\n";
    assert!(append(&mut c, "a1", "Box", raw).await.starts_with("a1 OK"));
    let reply = c
        .command("l1 LIST \"\" (Box INBOX Lists*) RETURN (STATUS (MESSAGES))")
        .await;
    assert_eq!(
        reply,
        [
            "* LIST (\\HasNoChildren) \"/\" Box",
            "* STATUS Box (MESSAGES 1)",
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* STATUS INBOX (MESSAGES 0)",
            "* LIST (\\Noselect \\HasChildren) \"/\" Lists",
            "* LIST (\\HasNoChildren) \"/\" Lists/rust",
            "* STATUS Lists/rust (MESSAGES 0)",
            "l1 OK LIST completed",
        ]
    );
    server.shutdown().await;
}

/// `SORT RETURN (SAVE MIN)` saves the MIN message only, as SEARCH does (RFC 5182 section 2.4;
/// ESORT's MIN and MAX are the first and last in sort order, RFC 5267 section 3.2). The server
/// used to save the whole result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_save_with_min_or_max_saves_only_those_messages() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    // Sizes grow with the UID: 1 is the smallest.
    for n in 1..=4 {
        let raw = format!("Subject: m{n}\r\n\r\n{}\r\n", "x".repeat(n * 10));
        assert!(append(&mut c, "a", "INBOX", &raw).await.starts_with("a OK"));
    }
    c.command("s SELECT INBOX").await;

    let reply = c
        .command("s1 UID SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 1:3")
        .await;
    assert_eq!(reply[0], "* ESEARCH (TAG \"s1\") UID MIN 3", "{reply:?}");
    let reply = c.command("f1 UID FETCH $ (UID)").await;
    assert_eq!(reply, ["* 3 FETCH (UID 3)", "f1 OK FETCH completed"]);

    let reply = c
        .command("s2 UID SORT RETURN (SAVE MAX) (REVERSE SIZE) UTF-8 1:3")
        .await;
    assert_eq!(reply[0], "* ESEARCH (TAG \"s2\") UID MAX 1", "{reply:?}");
    let reply = c.command("f2 UID FETCH $ (UID)").await;
    assert_eq!(reply, ["* 1 FETCH (UID 1)", "f2 OK FETCH completed"]);

    c.command("s3 SORT RETURN (SAVE MIN MAX) (SIZE) UTF-8 2:4")
        .await;
    let reply = c.command("f3 UID FETCH $ (UID)").await;
    assert_eq!(
        reply,
        [
            "* 2 FETCH (UID 2)",
            "* 4 FETCH (UID 4)",
            "f3 OK FETCH completed"
        ]
    );

    // With COUNT (or ALL), SAVE keeps every match.
    c.command("s4 SORT RETURN (SAVE MIN COUNT) (SIZE) UTF-8 2:4")
        .await;
    let reply = c.command("f4 UID FETCH $ (UID)").await;
    assert_eq!(reply.len(), 4, "{reply:?}");
    server.shutdown().await;
}

//! RFC 1939 behaviour over raw sockets: states, every command, byte-exact message transfer,
//! deletions only at QUIT, bad input.

use crate::common::{ADDRESS, PASSWORD, RawClient, TestServer};
use base64ct::{Base64, Encoding};

const DOTS: &[u8] = b"Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nend.\r\n";
const BARE_LF: &[u8] = b"Subject: bare\n\n.body\nlast line without newline";
/// BARE_LF as RETR sends it (before dot-stuffing): its size is what LIST and STAT count.
const BARE_LF_SENT: &[u8] = b"Subject: bare\r\n\r\n.body\r\nlast line without newline\r\n";
const PLAIN: &[u8] = b"Subject: plain\r\nFrom: a@example.org\r\n\r\nl1\r\nl2\r\nl3\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_capa_and_wrong_state_commands() {
    let server = TestServer::start(|_| {}).await;
    let (mut client, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.starts_with("+OK "), "{greeting}");
    assert!(!greeting.contains('<'), "no APOP timestamp: {greeting}");
    assert!(client.command("CAPA").await.starts_with("+OK"));
    let capa = String::from_utf8(client.multiline().await).unwrap();
    for cap in [
        "TOP\r\n",
        "UIDL\r\n",
        "USER\r\n",
        "SASL PLAIN\r\n",
        "RESP-CODES\r\n",
        "AUTH-RESP-CODE\r\n",
        "PIPELINING\r\n",
        "EXPIRE NEVER\r\n",
        "IMPLEMENTATION sealmail",
    ] {
        assert!(capa.contains(cap), "{cap} missing from {capa}");
    }
    assert!(!capa.contains("STLS"), "no TLS configured: {capa}");
    for command in [
        "STAT", "LIST", "RETR 1", "DELE 1", "RSET", "NOOP", "UIDL", "TOP 1 1",
    ] {
        let reply = client.command(command).await;
        assert_eq!(reply, "-ERR command not valid in this state", "{command}");
    }
    assert_eq!(client.command("XYZZY").await, "-ERR unknown command");
    assert_eq!(client.command("").await, "-ERR unknown command");
    assert!(client.command("APOP alice 0123").await.starts_with("-ERR"));
    assert!(client.command("PASS before-user").await.starts_with("-ERR"));
    assert!(client.command("STLS").await.starts_with("-ERR"));
    assert!(
        client
            .command("RETR")
            .await
            .starts_with("-ERR syntax error")
    );
    // An over-long line is refused and discarded; the session goes on.
    let long = format!("USER {}\r\n", "x".repeat(10_000));
    client.send(long.as_bytes()).await;
    assert_eq!(client.line().await, "-ERR line too long");
    assert_eq!(client.command("QUIT").await, "+OK signing off");
    assert!(client.is_closed().await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_and_auth_plain() {
    let server = TestServer::start(|_| {}).await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    assert!(
        client
            .command(&format!("USER {ADDRESS}"))
            .await
            .starts_with("+OK")
    );
    assert_eq!(
        client.command("PASS wrong password").await,
        "-ERR [AUTH] authentication failed"
    );
    // After a failed PASS the client starts again with USER.
    assert!(
        client
            .command(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("-ERR")
    );
    // AUTH PLAIN with an initial response (RFC 5034).
    let response = Base64::encode_string(format!("\0{ADDRESS}\0{PASSWORD}").as_bytes());
    let reply = client.command(&format!("AUTH PLAIN {response}")).await;
    assert!(reply.starts_with("+OK maildrop locked"), "{reply}");
    assert!(client.command("USER x").await.starts_with("-ERR"));
    assert_eq!(
        client.command("QUIT").await,
        "+OK signing off (0 messages left)"
    );
    // AUTH PLAIN with a continuation, a bad one and a cancelled one.
    let (mut client, _) = RawClient::connect(server.addr).await;
    assert_eq!(client.command("AUTH PLAIN").await, "+ ");
    assert_eq!(client.command("*").await, "-ERR authentication cancelled");
    assert_eq!(client.command("AUTH PLAIN").await, "+ ");
    assert_eq!(client.command("!!!").await, "-ERR invalid base64 response");
    let wrong = Base64::encode_string(format!("\0{ADDRESS}\0nope").as_bytes());
    assert_eq!(
        client.command(&format!("AUTH PLAIN {wrong}")).await,
        "-ERR [AUTH] authentication failed"
    );
    assert!(client.command("AUTH CRAM-MD5").await.starts_with("-ERR"));
    assert_eq!(
        client.command("AUTH PLAIN =").await,
        "-ERR malformed PLAIN response"
    );
    assert_eq!(client.command("AUTH").await, "+OK mechanisms follow");
    assert_eq!(client.multiline().await, b"PLAIN\r\n.\r\n");
    assert_eq!(client.command("AUTH PLAIN").await, "+ ");
    let reply = client.command(&response).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited() {
    let server = TestServer::start(|config| {
        config.session.login_limiter = std::sync::Arc::new(
            sealmail_core::login_limiter::LoginLimiter::new(2, std::time::Duration::from_secs(60)),
        );
    })
    .await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    for _ in 0..2 {
        client.command(&format!("USER {ADDRESS}")).await;
        assert_eq!(
            client.command("PASS bad").await,
            "-ERR [AUTH] authentication failed"
        );
    }
    client.command(&format!("USER {ADDRESS}")).await;
    let reply = client.command(&format!("PASS {PASSWORD}")).await;
    assert!(
        reply.starts_with("-ERR [SYS/TEMP] too many failed logins"),
        "{reply}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_refused_off_loopback_rule() {
    // With the loopback exemption off, 127.0.0.1 is treated like any remote peer.
    let server = TestServer::start(|config| config.loopback_plaintext_auth = false).await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.command("CAPA").await;
    let capa = String::from_utf8(client.multiline().await).unwrap();
    assert!(!capa.contains("USER") && !capa.contains("SASL"), "{capa}");
    assert_eq!(
        client.command(&format!("USER {ADDRESS}")).await,
        "-ERR [SYS/PERM] authentication requires TLS"
    );
    let response = Base64::encode_string(format!("\0{ADDRESS}\0{PASSWORD}").as_bytes());
    assert!(
        client
            .command(&format!("AUTH PLAIN {response}"))
            .await
            .starts_with("-ERR [SYS/PERM]")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commands_and_byte_exact_transfer() {
    let server = TestServer::start(|_| {}).await;
    let uids = server.seed(&[DOTS, BARE_LF, PLAIN]).await;
    let uidvalidity = {
        use sealmail_core::mailstore::{MailSession, MailStore};
        let session = server.store.login(ADDRESS, PASSWORD).await.unwrap();
        session.folder("INBOX").await.unwrap().uidvalidity
    };
    let mut client = RawClient::login(server.addr).await;
    let total = DOTS.len() + BARE_LF_SENT.len() + PLAIN.len();
    assert_eq!(client.command("STAT").await, format!("+OK 3 {total}"));
    assert_eq!(
        client.command("LIST 2").await,
        format!("+OK 2 {}", BARE_LF_SENT.len())
    );
    assert!(client.command("LIST").await.starts_with("+OK 3 messages"));
    assert_eq!(
        client.multiline().await,
        format!(
            "1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
            DOTS.len(),
            BARE_LF_SENT.len(),
            PLAIN.len()
        )
        .as_bytes()
    );
    assert!(client.command("UIDL").await.starts_with("+OK"));
    let expected_uidl = format!(
        "1 {uidvalidity}.{}\r\n2 {uidvalidity}.{}\r\n3 {uidvalidity}.{}\r\n.\r\n",
        uids[0], uids[1], uids[2]
    );
    assert_eq!(client.multiline().await, expected_uidl.as_bytes());
    assert_eq!(
        client.command("UIDL 3").await,
        format!("+OK 3 {uidvalidity}.{}", uids[2])
    );
    // RETR: dot-stuffed exactly; bare LF served as CRLF, a final line ending added.
    assert_eq!(
        client.command("RETR 1").await,
        format!("+OK {} octets", DOTS.len())
    );
    assert_eq!(
        client.multiline().await,
        b"Subject: dots\r\n\r\n..\r\n...two\r\n..x\r\nend.\r\n.\r\n"
    );
    assert!(client.command("RETR 2").await.starts_with("+OK"));
    assert_eq!(
        client.multiline().await,
        b"Subject: bare\r\n\r\n..body\r\nlast line without newline\r\n.\r\n"
    );
    assert!(client.command("RETR 3").await.starts_with("+OK"));
    let mut expected = PLAIN.to_vec();
    expected.extend_from_slice(b".\r\n");
    assert_eq!(client.multiline().await, expected);
    // TOP: header, blank line, n body lines.
    assert!(client.command("TOP 3 1").await.starts_with("+OK"));
    assert_eq!(
        client.multiline().await,
        b"Subject: plain\r\nFrom: a@example.org\r\n\r\nl1\r\n.\r\n"
    );
    assert!(client.command("TOP 1 0").await.starts_with("+OK"));
    assert_eq!(client.multiline().await, b"Subject: dots\r\n\r\n.\r\n");
    // Missing messages.
    for command in ["RETR 0", "RETR 4", "DELE 9", "LIST 4", "UIDL 0", "TOP 5 1"] {
        let reply = client.command(command).await;
        assert!(
            reply.starts_with("-ERR no such message"),
            "{command}: {reply}"
        );
    }
    // DELE marks; the message disappears from this session's listings only.
    assert_eq!(client.command("DELE 2").await, "+OK message 2 deleted");
    assert_eq!(
        client.command("DELE 2").await,
        "-ERR message 2 already deleted"
    );
    assert!(client.command("RETR 2").await.starts_with("-ERR"));
    assert_eq!(
        client.command("STAT").await,
        format!("+OK 2 {}", DOTS.len() + PLAIN.len())
    );
    assert_eq!(
        server.inbox_uids().await.len(),
        3,
        "nothing removed before QUIT"
    );
    // RSET unmarks everything.
    assert!(
        client
            .command("RSET")
            .await
            .starts_with("+OK maildrop has 3 messages")
    );
    assert_eq!(client.command("NOOP").await, "+OK");
    assert!(client.command("DELE 1").await.starts_with("+OK"));
    assert!(client.command("DELE 3").await.starts_with("+OK"));
    assert_eq!(
        client.command("QUIT").await,
        "+OK signing off (1 messages left)"
    );
    assert!(client.is_closed().await);
    assert_eq!(server.inbox_uids().await, vec![uids[1]]);
    // UIDL is stable across sessions; numbering starts again at 1.
    let mut client = RawClient::login(server.addr).await;
    assert_eq!(
        client.command("UIDL 1").await,
        format!("+OK 1 {uidvalidity}.{}", uids[1])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_before_quit_deletes_nothing() {
    let server = TestServer::start(|_| {}).await;
    let uids = server.seed(&[PLAIN, DOTS]).await;
    let mut client = RawClient::login(server.addr).await;
    assert!(client.command("DELE 1").await.starts_with("+OK"));
    assert!(client.command("DELE 2").await.starts_with("+OK"));
    drop(client);
    // The lock is released once the connection is gone; a new session sees everything.
    let mut again = None;
    for _ in 0..100 {
        let (mut client, _) = RawClient::connect(server.addr).await;
        client.command(&format!("USER {ADDRESS}")).await;
        let reply = client.command(&format!("PASS {PASSWORD}")).await;
        if reply.starts_with("+OK") {
            again = Some(client);
            break;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut client = again.expect("the maildrop lock is released after a disconnect");
    assert!(client.command("STAT").await.starts_with("+OK 2 "));
    assert_eq!(server.inbox_uids().await, uids);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_session_gets_in_use_and_pipelining_works() {
    let server = TestServer::start(|_| {}).await;
    server.seed(&[PLAIN]).await;
    let mut first = RawClient::login(server.addr).await;
    let (mut second, _) = RawClient::connect(server.addr).await;
    second.command(&format!("USER {ADDRESS}")).await;
    assert_eq!(
        second.command(&format!("PASS {PASSWORD}")).await,
        "-ERR [IN-USE] maildrop already locked by another POP3 session"
    );
    // Pipelined commands are answered in order (RFC 2449 PIPELINING).
    first.send(b"STAT\r\nNOOP\r\nLIST 1\r\nQUIT\r\n").await;
    assert_eq!(first.line().await, format!("+OK 1 {}", PLAIN.len()));
    assert_eq!(first.line().await, "+OK");
    assert_eq!(first.line().await, format!("+OK 1 {}", PLAIN.len()));
    assert!(first.line().await.starts_with("+OK signing off"));
    // After QUIT the lock is free.
    second.command(&format!("USER {ADDRESS}")).await;
    let reply = second.command(&format!("PASS {PASSWORD}")).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_sessions_without_update() {
    let mut server = TestServer::start(|_| {}).await;
    let uids = server.seed(&[PLAIN]).await;
    let mut client = RawClient::login(server.addr).await;
    assert!(client.command("DELE 1").await.starts_with("+OK"));
    server.stop().await;
    assert_eq!(client.line().await, "-ERR [SYS/TEMP] server shutting down");
    assert!(client.is_closed().await);
    assert_eq!(server.inbox_uids().await, uids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_serves_in_order_and_quit_releases_the_lock_at_once() {
    let server = TestServer::start(|_| {}).await;
    let messages: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("Subject: {i}\r\n\r\n.{i}\r\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    server.seed(&refs).await;
    let mut client = RawClient::login(server.addr).await;
    // Out of order, skipping a deleted one, then in order: each RETR gets its own message.
    assert!(client.command("DELE 2").await.starts_with("+OK"));
    for n in [1, 3, 5, 4, 3] {
        assert!(
            client
                .command(&format!("RETR {n}"))
                .await
                .starts_with("+OK")
        );
        let expected = format!("Subject: {i}\r\n\r\n..{i}\r\n.\r\n", i = n - 1);
        assert_eq!(client.multiline().await, expected.as_bytes(), "RETR {n}");
    }
    assert!(client.command("RETR 1").await.starts_with("+OK"));
    client.multiline().await;
    // A read-ahead of message 3 is pending: QUIT must still free the maildrop at once.
    assert!(client.command("QUIT").await.starts_with("+OK"));
    let mut again = RawClient::login(server.addr).await;
    assert!(again.command("STAT").await.starts_with("+OK 4 "));
    server.shutdown().await;
}

/// Regression: LIST and STAT announced the stored size of a message kept with bare LF, while
/// RETR sends it with CRLF line endings (and a final CRLF), so clients that check sizes saw a
/// mismatch. Every size announced must equal the octets RETR sends, dot-stuffing undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_stat_sizes_equal_the_octets_retr_sends() {
    let server = TestServer::start(|_| {}).await;
    let messages: [&[u8]; 5] = [
        DOTS,
        BARE_LF,
        PLAIN,
        b"Subject: mixed\r\n\nline one\nline two\r\n.dot\r",
        b"no header, no line ending at all",
    ];
    server.seed(&messages).await;
    let mut client = RawClient::login(server.addr).await;
    let mut total = 0;
    for number in 1..=messages.len() {
        let listed: usize = client
            .command(&format!("LIST {number}"))
            .await
            .split(' ')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        let status = client.command(&format!("RETR {number}")).await;
        assert_eq!(status, format!("+OK {listed} octets"));
        let body = client.multiline().await;
        let sent: usize = body[..body.len() - 3]
            .split_inclusive(|&b| b == b'\n')
            .map(|line| line.strip_prefix(b".").unwrap_or(line).len())
            .sum();
        assert_eq!(listed, sent, "message {number}");
        total += sent;
    }
    assert_eq!(
        client.command("STAT").await,
        format!("+OK {} {total}", messages.len())
    );
    assert!(client.command("QUIT").await.starts_with("+OK"));
    server.shutdown().await;
}

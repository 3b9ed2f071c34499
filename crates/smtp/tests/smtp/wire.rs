//! Raw-socket tests: sealed delivery end to end, bad input, disconnects, pipelining, BDAT.

use crate::common::{ALICE, BOB, FULL, RawClient, SMALL, TestServer, files_containing, marker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_delivery_to_two_offline_recipients_then_login() {
    let server = TestServer::mx().await;
    let marker = marker("raw");
    let (mut client, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.starts_with("220 mx.example.test"), "{greeting}");
    let ehlo = client.codes(b"EHLO client.test\r\n", 1).await;
    assert_eq!(ehlo, ["250 HELP"]);
    // One pipelined group (RFC 2920), DATA last.
    let codes = client
        .codes(
            format!(
                "MAIL FROM:<sender@remote.test>\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<nobody@example.test>\r\n\
                 RCPT TO:<{FULL}>\r\nRCPT TO:<someone@elsewhere.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
            )
            .as_bytes(),
            7,
        )
        .await;
    assert_eq!(
        codes,
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "552 5.2.2",
            "550 5.7.1",
            "250 2.1.5",
            "354 end d"
        ]
    );
    let body = format!("Subject: sealed\r\n\r\n{marker}\r\n..stuffed\r\n.\r\n");
    assert_eq!(client.codes(body.as_bytes(), 1).await, ["250 2.0.0"]);
    // Acknowledged means on disk: both items are in the queue now, and nothing readable is.
    assert_eq!(server.queued(ALICE), 1);
    assert_eq!(server.queued(BOB), 1);
    assert_eq!(
        files_containing(server.data_dir(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "the marker is nowhere in clear text"
    );
    assert_eq!(client.codes(b"QUIT\r\n", 1).await, ["221 2.0.0"]);
    assert!(client.is_closed().await);

    for address in [ALICE, BOB] {
        let messages = server.messages(address, "INBOX").await;
        assert_eq!(messages.len(), 1, "{address} has the message once");
        let text = String::from_utf8_lossy(&messages[0]);
        assert!(
            text.starts_with("Received: from client.test ([127.0.0.1])"),
            "{text}"
        );
        assert!(text.contains(&marker));
        assert!(text.contains("\r\n.stuffed\r\n"), "dot-stuffing undone");
        assert_eq!(server.queued(address), 0, "login drained the queue");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_data_stores_nothing() {
    let server = TestServer::mx().await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    let codes = client
        .codes(
            format!("EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
                .as_bytes(),
            4,
        )
        .await;
    assert_eq!(codes.last().unwrap(), "354 end d");
    client.send(b"Subject: cut\r\n\r\nhalf a message\r\n").await;
    drop(client.into_inner());
    // Let the server notice the EOF, then check nothing was queued.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.queued(ALICE), 0);
    // The same on a chunked transfer cut inside a chunk.
    let (mut client, _) = RawClient::connect(server.addr).await;
    client
        .send(format!("EHLO c.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<{ALICE}>\r\nBDAT 100 LAST\r\nonly some").as_bytes())
        .await;
    for _ in 0..3 {
        client.reply().await;
    }
    drop(client.into_inner());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.queued(ALICE), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_over_the_wire() {
    let server = TestServer::mx().await;
    let marker = marker("bdat");
    let (mut client, _) = RawClient::connect(server.addr).await;
    let first = "Subject: chunked\r\n\r\n";
    let second = format!("{marker}\r\n");
    let input = format!(
        "EHLO c.test\r\nMAIL FROM:<s@r.test> BODY=8BITMIME\r\nRCPT TO:<{ALICE}>\r\nBDAT {}\r\n{first}BDAT {} LAST\r\n{second}",
        first.len(),
        second.len()
    );
    let codes = client.codes(input.as_bytes(), 5).await;
    assert_eq!(
        codes,
        [
            "250 HELP",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert_eq!(server.queued(ALICE), 1);
    let messages = server.messages(ALICE, "INBOX").await;
    assert!(messages[0].ends_with(format!("{first}{second}").as_bytes()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_replies_and_nothing_is_stored() {
    let server = TestServer::mx().await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.codes(b"EHLO c.test\r\n", 1).await;
    let start = format!("MAIL FROM:<s@r.test>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n");
    let cases: [(&[u8], &str); 4] = [
        (b"bare\nline feed\r\n.\r\n", "554 5.6.0"),
        (b"nul \0 byte\r\n.\r\n", "554 5.6.0"),
        (
            &[b"x".repeat(1500).as_slice(), b"\r\n.\r\n"].concat(),
            "500 5.5.2",
        ),
        (
            &[b"y\r\n".repeat(400_000).as_slice(), b".\r\n"].concat(),
            "552 5.3.4",
        ),
    ];
    for (body, expected) in cases {
        let codes = client.codes(start.as_bytes(), 3).await;
        assert_eq!(codes[2], "354 end d");
        assert_eq!(client.codes(body, 1).await, [expected]);
    }
    assert_eq!(
        client
            .codes(b"MAIL FROM:<s@r.test> SIZE=2000000\r\n", 1)
            .await,
        ["552 5.3.4"]
    );
    // Pipelined garbage, then a valid command: each line answered, in order.
    let codes = client
        .codes(b"HELLO\r\nMAIL\r\nRCPT TO:<x@y>\r\nNOOP\n\r\nNOOP\r\n", 6)
        .await;
    assert_eq!(
        codes,
        [
            "500 5.5.1",
            "501 5.5.4",
            "503 5.5.1",
            "500 5.5.2",
            "500 5.5.1",
            "250 2.0.0"
        ]
    );
    assert_eq!(server.queued(ALICE), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_421_to_idle_clients() {
    let server = TestServer::mx().await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.codes(b"EHLO c.test\r\n", 1).await;
    let shutdown = tokio::spawn(server.shutdown());
    assert!(client.reply().await.starts_with("421 4.3.2"));
    assert!(client.is_closed().await);
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_counts_mail_waiting_sealed_for_an_offline_owner() {
    let server = TestServer::mx().await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.codes(b"EHLO c.test\r\n", 1).await;
    let start = format!("MAIL FROM:<s@r.test> SIZE=2000\r\nRCPT TO:<{SMALL}>\r\n");
    assert_eq!(
        client.codes(start.as_bytes(), 2).await,
        ["250 2.1.0", "250 2.1.5"]
    );
    let body = format!(
        "Subject: fill\r\n\r\n{}.\r\n",
        "0123456789abcdef\r\n".repeat(100)
    );
    assert_eq!(
        client.codes(format!("DATA\r\n{body}").as_bytes(), 2).await,
        ["354 end d", "250 2.0.0"]
    );
    // Nothing recorded as used (the owner never logged in), but the sealed item counts: with
    // SIZE=2000 the next message would pass the 3000-byte quota.
    assert_eq!(
        client.codes(start.as_bytes(), 2).await,
        ["250 2.1.0", "552 5.2.2"]
    );
    assert_eq!(server.queued(SMALL), 1);
    // Shutdown while this client's transaction is open: after the grace period, 421.
    let shutdown = tokio::spawn(server.shutdown());
    assert!(client.reply().await.starts_with("421 4.3.2"));
    shutdown.await.unwrap();
}

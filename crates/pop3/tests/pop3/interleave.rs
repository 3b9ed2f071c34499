//! IMAP and POP3 on one mailbox at once: IMAP keeps working while POP3 holds the maildrop
//! lock, flags set over IMAP survive POP3's UPDATE, and a message IMAP expunges under a POP3
//! session gives a clean `-ERR`.

use crate::common::{ImapClient, RawClient, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_flags_and_expunges_while_pop3_is_in_transaction() {
    let server = TestServer::start(|_| {}).await;
    let uids = server
        .seed(&[
            b"Subject: one\r\n\r\n1\r\n",
            b"Subject: two\r\n\r\n2\r\n",
            b"Subject: three\r\n\r\n3\r\n",
        ])
        .await;
    let mut pop = RawClient::login(server.addr).await;
    assert!(pop.command("STAT").await.starts_with("+OK 3 "));

    // IMAP logs in and works while POP3 holds the maildrop lock.
    let mut imap = ImapClient::login(server.imap_addr).await;
    let select = imap.command("SELECT INBOX").await;
    assert!(select.iter().any(|l| l == "* 3 EXISTS"), "{select:?}");
    let store = imap
        .command(&format!("UID STORE {} +FLAGS (\\Flagged)", uids[0]))
        .await;
    assert!(store.last().unwrap().contains(" OK"), "{store:?}");
    // And expunges the third message under POP3's feet.
    imap.command(&format!("UID STORE {} +FLAGS (\\Deleted)", uids[2]))
        .await;
    let expunge = imap.command("EXPUNGE").await;
    assert!(expunge.iter().any(|l| l == "* 3 EXPUNGE"), "{expunge:?}");

    // POP3 keeps its numbering; the flagged message is served unchanged, the expunged one
    // gives -ERR, and the session is still usable.
    assert!(pop.command("RETR 1").await.starts_with("+OK"));
    assert_eq!(pop.multiline().await, b"Subject: one\r\n\r\n1\r\n.\r\n");
    assert_eq!(
        pop.command("RETR 3").await,
        "-ERR message 3 was removed by another session"
    );
    assert_eq!(pop.command("NOOP").await, "+OK");
    assert!(pop.command("DELE 2").await.starts_with("+OK"));
    assert!(pop.command("DELE 3").await.starts_with("+OK"));
    assert!(pop.command("QUIT").await.starts_with("+OK signing off"));

    // UPDATE removed message 2 (DELE of an already expunged one is harmless), and the IMAP
    // session hears of it; message 1 keeps the flag IMAP set.
    let noop = imap.command("NOOP").await;
    assert!(noop.iter().any(|l| l == "* 2 EXPUNGE"), "{noop:?}");
    let fetch = imap.command("UID FETCH 1:* (FLAGS)").await;
    let fetched: Vec<&String> = fetch
        .iter()
        .filter(|l| l.starts_with("* ") && l.contains("FETCH"))
        .collect();
    assert_eq!(fetched.len(), 1, "{fetch:?}");
    assert!(
        fetched[0].contains(&format!("UID {}", uids[0])) && fetched[0].contains("\\Flagged"),
        "{fetch:?}"
    );
    assert_eq!(server.inbox_uids().await, vec![uids[0]]);
    server.shutdown().await;
}

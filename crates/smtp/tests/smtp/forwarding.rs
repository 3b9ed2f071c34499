//! Forwarding per address: to a webhook (signed, retried from the durable queue), to other
//! local addresses (re-entering delivery), and to remote addresses through the outbound queue.

use crate::common::{ALICE, BOB, RawClient, TestServer, files_containing, marker};
use base64ct::{Base64, Encoding};
use sealmail_core::registry::{Address, ForwardMode, WebhookSecret};
use sealmail_smtp::webhook::{DELIVERY_HEADER, SIGNATURE_HEADER, WebhookPayload, verify_signature};
use sealmail_smtp::{Relay, RelayError, WebhookConfig, WebhookQueue};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request the test receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 webhook receiver: answers `500` to the first request and `200` after.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mail", listener.local_addr().unwrap());
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut stream = BufReader::new(stream);
            let mut request_line = String::new();
            if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                continue;
            }
            assert!(
                request_line.starts_with("POST /hooks/mail HTTP/1.1"),
                "{request_line}"
            );
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .expect("a Content-Length");
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).await.unwrap();
            let attempt = {
                let mut log = log.lock().unwrap();
                log.push(Received {
                    at: Instant::now(),
                    headers,
                    body,
                });
                log.len()
            };
            let status = if attempt == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream
                .get_mut()
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, received)
}

async fn send(server: &TestServer, rcpt: &str, body: &str) -> String {
    let (mut client, _) = RawClient::connect(server.addr).await;
    let codes = client
        .codes(
            format!(
                "EHLO c.test\r\nMAIL FROM:<sender@remote.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
            )
            .as_bytes(),
            4,
        )
        .await;
    assert_eq!(codes[1..], ["250 2.1.0", "250 2.1.5", "354 end d"]);
    let reply = client
        .codes(format!("{body}.\r\n").as_bytes(), 1)
        .await
        .remove(0);
    client.send(b"QUIT\r\n").await;
    reply
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_a_signed_post_retried_after_a_500_and_forward_only_keeps_no_copy() {
    let (url, received) = webhook_receiver().await;
    let backoff = Duration::from_millis(300);
    let queue_slot: Arc<Mutex<Option<Arc<WebhookQueue>>>> = Arc::default();
    let slot = Arc::clone(&queue_slot);
    let server = TestServer::start_with(
        |_| {},
        move |delivery, registry| {
            let queue = WebhookQueue::open(
                registry.data_dir(),
                WebhookConfig {
                    initial_backoff: backoff,
                    max_backoff: Duration::from_secs(2),
                    max_attempts: 5,
                    request_timeout: Duration::from_secs(5),
                },
            )
            .unwrap();
            *slot.lock().unwrap() = Some(Arc::clone(&queue));
            delivery.with_webhook_queue(queue)
        },
    )
    .await;
    let queue = queue_slot.lock().unwrap().clone().unwrap();
    let secret = b"per-address webhook secret".to_vec();
    server
        .registry
        .add_forward_webhook(ALICE, &url, &WebhookSecret::new(secret.clone()).unwrap())
        .unwrap();
    server
        .registry
        .set_forward_mode(ALICE, ForwardMode::ForwardOnly)
        .unwrap();

    let marker = marker("webhook");
    let body = format!("Subject: to the hook\r\nMessage-ID: <hook@test>\r\n\r\n{marker}\r\n");
    assert_eq!(send(&server, ALICE, &body).await, "250 2.0.0");
    // Acknowledged means queued on disk, and encrypted there.
    assert_eq!(queue.pending().unwrap(), 1);
    assert_eq!(
        files_containing(server.data_dir(), marker.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(Arc::clone(&queue).run(async move {
        let _ = stopped.await;
    }));
    wait_until("the retry to succeed", || {
        received.lock().unwrap().len() == 2 && queue.pending().unwrap() == 0
    })
    .await;
    let requests = received.lock().unwrap().clone();
    assert!(
        requests[1].at - requests[0].at >= backoff,
        "the retry waited for the backoff"
    );
    for request in &requests {
        let signature = request.header(SIGNATURE_HEADER).expect("signed");
        assert!(verify_signature(&secret, &request.body, signature));
        assert!(!verify_signature(
            b"another secret",
            &request.body,
            signature
        ));
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        requests[0].body, requests[1].body,
        "a retry resends the same body"
    );
    let payload: WebhookPayload = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(
        requests[1].header(DELIVERY_HEADER),
        Some(payload.id.as_str())
    );
    assert_eq!(payload.recipient, ALICE);
    assert_eq!(payload.sender, "sender@remote.test");
    assert_eq!(payload.subject.as_deref(), Some("to the hook"));
    assert!(payload.headers.iter().any(|h| h.name == "Received"));
    let raw = String::from_utf8(Base64::decode_vec(&payload.raw).unwrap()).unwrap();
    assert!(raw.contains(&marker), "{raw}");
    assert_eq!(queue.failed().unwrap(), 0);
    // Forward only: the mailbox got nothing.
    assert_eq!(server.queued(ALICE), 0);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops")
        .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_between_local_addresses_reenters_delivery_and_stops_at_loops() {
    let server = TestServer::mx().await;
    // Alice -> Bob and Bob -> Alice, both keeping copies: one copy each, no loop.
    server.registry.add_forward_address(ALICE, BOB).unwrap();
    server.registry.add_forward_address(BOB, ALICE).unwrap();
    let marker = marker("local-forward");
    let body = format!("Subject: loop\r\n\r\n{marker}\r\n");
    assert_eq!(send(&server, ALICE, &body).await, "250 2.0.0");
    assert_eq!(server.queued(ALICE), 1);
    assert_eq!(server.queued(BOB), 1);
    for address in [ALICE, BOB] {
        let messages = server.messages(address, "INBOX").await;
        assert_eq!(messages.len(), 1);
        assert!(String::from_utf8_lossy(&messages[0]).contains(&marker));
    }
    server.shutdown().await;
}

/// Sender, recipients and message of one relayed message.
type Relayed = (String, Vec<Address>, Vec<u8>);

/// An outbound queue that records what it is given, standing in for the relay.
#[derive(Debug, Default)]
struct RecordingRelay {
    queued: Mutex<Vec<Relayed>>,
}

impl Relay for RecordingRelay {
    fn enqueue(
        &self,
        sender: &str,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<(), RelayError> {
        self.queued
            .lock()
            .unwrap()
            .push((sender.into(), recipients.to_vec(), message.to_vec()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forwards_go_to_the_outbound_queue_or_stay_local_without_one() {
    // Without a relay, forward-only mail to a remote address is kept in the mailbox.
    let server = TestServer::mx().await;
    server
        .registry
        .add_forward_address(ALICE, "alice@elsewhere.test")
        .unwrap();
    server
        .registry
        .set_forward_mode(ALICE, ForwardMode::ForwardOnly)
        .unwrap();
    assert_eq!(
        send(&server, ALICE, "Subject: kept\r\n\r\nbody\r\n").await,
        "250 2.0.0"
    );
    assert_eq!(server.queued(ALICE), 1, "nothing acknowledged is lost");
    server.shutdown().await;

    // With one, the relay gets it and the mailbox does not.
    let relay = Arc::new(RecordingRelay::default());
    let for_delivery: Arc<dyn Relay> = relay.clone();
    let server = TestServer::start_with(
        |_| {},
        move |delivery, _| delivery.with_outbound_queue(for_delivery),
    )
    .await;
    server
        .registry
        .add_forward_address(ALICE, "alice@elsewhere.test")
        .unwrap();
    server
        .registry
        .set_forward_mode(ALICE, ForwardMode::ForwardOnly)
        .unwrap();
    let marker = marker("relay");
    assert_eq!(
        send(&server, ALICE, &format!("Subject: out\r\n\r\n{marker}\r\n")).await,
        "250 2.0.0"
    );
    assert_eq!(server.queued(ALICE), 0);
    let queued = relay.queued.lock().unwrap().clone();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, "sender@remote.test");
    assert_eq!(queued[0].1[0].as_str(), "alice@elsewhere.test");
    assert!(String::from_utf8_lossy(&queued[0].2).contains(&marker));
    server.shutdown().await;
}

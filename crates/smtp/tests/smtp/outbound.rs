//! The outbound relay end to end: a submission server with an outbound queue relays to a
//! second sealmail instance acting as the remote domain's MX, found through a DNS stub on
//! 127.0.0.1. Covers DKIM signatures verified by mail-auth, retries after the remote comes
//! up, DSN bounces into the sender's INBOX, required TLS with certificate verification against a
//! test CA, opportunistic TLS, and real clients on implicit TLS.

use crate::common::{ALICE, BOB, PASSWORD, RawClient, Store, cheap_kdf, marker, tls_config};
use crate::dns_stub::DnsStub;
use base64ct::{Base64, Encoding};
use mail_auth::{AuthenticatedMessage, DkimResult};
use sealmail_core::mailstore::{LocalMailStore, MailSession, MailStore};
use sealmail_core::registry::{AccountOptions, Registry, RegistryOptions};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::UidSet;
use sealmail_smtp::outbound::resolve::MxResolver;
use sealmail_smtp::server::{self, ServerConfig, TlsSettings};
use sealmail_smtp::{DkimAlgorithm, DkimKeys, LocalDelivery, Mode, OutboundConfig, OutboundQueue};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CAROL: &str = "carol@remote.test";
const NOBODY: &str = "nobody@remote.test";

/// One sealmail instance: registry, store, a listener, and (for the sender) its queue.
struct Instance {
    addr: SocketAddr,
    registry: Arc<Registry>,
    store: Arc<Store>,
    queue: Option<Arc<OutboundQueue>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    dir: tempfile::TempDir,
}

impl Instance {
    fn registry(dir: &Path, addresses: &[&str]) -> Arc<Registry> {
        let registry = Arc::new(
            Registry::open_with(
                dir,
                RegistryOptions {
                    create_if_missing: true,
                    unknown_address_kdf: cheap_kdf(),
                    ..RegistryOptions::default()
                },
            )
            .unwrap(),
        );
        for address in addresses {
            let options = AccountOptions {
                quota: None,
                with_recovery_code: false,
                kdf: cheap_kdf(),
            };
            registry
                .add_account(address, Some(PASSWORD), &options)
                .unwrap();
        }
        registry
    }

    /// The remote domain's MX: `carol@remote.test` exists, STARTTLS when `tls` (with a
    /// self-signed certificate for `localhost`).
    async fn remote(listener: tokio::net::TcpListener, tls: bool) -> Instance {
        Instance::remote_with_tls(listener, tls.then(tls_config)).await
    }

    /// The remote domain's MX, with STARTTLS over `tls` when given.
    async fn remote_with_tls(
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let registry = Instance::registry(dir.path(), &[CAROL]);
        let store = Arc::new(LocalMailStore::new(Arc::clone(&registry)));
        let delivery = LocalDelivery::new(Arc::clone(&registry), Arc::clone(&store));
        let mut config = ServerConfig::default();
        config.session.hostname = "mx.remote.test".into();
        config.tls = tls.map(|config| TlsSettings {
            config,
            implicit: false,
        });
        Instance::serve(listener, dir, registry, store, delivery, None, config)
    }

    /// Our side: `alice@` and `bob@example.test`, submission with an outbound queue that asks
    /// `dns` and connects to port `remote_port`.
    async fn sender(
        dns: SocketAddr,
        remote_port: u16,
        configure: impl FnOnce(&mut OutboundConfig, &mut ServerConfig),
    ) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let registry = Instance::registry(dir.path(), &[ALICE, BOB]);
        let store = Arc::new(LocalMailStore::new(Arc::clone(&registry)));
        let mut outbound = OutboundConfig {
            hostname: "mail.example.test".into(),
            port: remote_port,
            nameservers: vec![dns],
            first_retry: Duration::from_millis(300),
            max_retry_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            ..OutboundConfig::default()
        };
        let mut config = ServerConfig::default();
        config.session.mode = Mode::Submission;
        config.session.hostname = "mail.example.test".into();
        config.failed_auth_delay = Duration::from_millis(50);
        configure(&mut outbound, &mut config);
        let queue = Arc::new(OutboundQueue::new(Arc::clone(&registry), outbound).unwrap());
        let delivery = LocalDelivery::new(Arc::clone(&registry), Arc::clone(&store))
            .with_outbound(Arc::clone(&queue));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Instance::serve(
            listener,
            dir,
            registry,
            store,
            delivery,
            Some(queue),
            config,
        )
    }

    fn serve(
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
        registry: Arc<Registry>,
        store: Arc<Store>,
        delivery: LocalDelivery<Store>,
        queue: Option<Arc<OutboundQueue>>,
        config: ServerConfig,
    ) -> Instance {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Some(queue) = &queue {
            tokio::spawn(Arc::clone(queue).run(until_stopped(stopped.clone())));
        }
        tokio::spawn(server::run(
            listener,
            Arc::new(delivery),
            config,
            until_stopped(stopped),
        ));
        Instance {
            addr,
            registry,
            store,
            queue,
            stop: Some(stop),
            dir,
        }
    }

    fn queued(&self, address: &str) -> usize {
        let account = self.registry.lookup(address).unwrap().unwrap();
        SealedQueue::new(self.dir.path())
            .pending_count(account.mailbox_id.as_str())
            .unwrap()
    }

    async fn messages(&self, address: &str, folder: &str) -> Vec<String> {
        let session = self.store.login(address, PASSWORD).await.unwrap();
        session
            .fetch_raw(folder, UidSet::all())
            .await
            .unwrap()
            .into_iter()
            .map(|m| String::from_utf8(m.bytes).unwrap())
            .collect()
    }

    /// Wait until `address` has at least `count` messages in INBOX; returns them. Reports are
    /// folded into an open mailbox at once, else sealed; the login that looks drains those.
    async fn wait_for_inbox(&self, address: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let inbox = self.messages(address, "INBOX").await;
            if inbox.len() >= count {
                return inbox;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} messages for {address}: {inbox:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn outbound_pending(&self) -> Vec<sealmail_smtp::outbound::QueuedEnvelope> {
        self.queue.as_ref().unwrap().pending().unwrap()
    }

    fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(true);
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// DNS for `remote.test`: its MX `mx.remote.test` is 127.0.0.1.
async fn dns_for_remote() -> DnsStub {
    let dns = DnsStub::start().await;
    dns.mx("remote.test", 10, "mx.remote.test");
    dns.a("mx.remote.test", Ipv4Addr::LOCALHOST);
    dns
}

/// Authenticate as alice over plain loopback and send one message; returns the final reply.
async fn submit(addr: SocketAddr, recipients: &[&str], marker: &str) -> Vec<String> {
    let (mut client, greeting) = RawClient::connect(addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let auth = Base64::encode_string(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let mut script = format!("EHLO client.test\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<{ALICE}>\r\n");
    for recipient in recipients {
        script.push_str(&format!("RCPT TO:<{recipient}>\r\n"));
    }
    script.push_str("DATA\r\n");
    let mut codes = client.codes(script.as_bytes(), 4 + recipients.len()).await;
    let body = format!(
        "From: Alice <{ALICE}>\r\nTo: {}\r\nSubject: relay test\r\nDate: Sat, 28 Nov 2026 21:40:00 +0000\r\nMessage-ID: <{marker}@example.test>\r\n\r\nHello over the relay.\r\n{marker}\r\n.\r\nQUIT\r\n",
        recipients.join(", ")
    );
    codes.extend(client.codes(body.as_bytes(), 2).await);
    codes
}

/// Every DKIM result of `message`, verified against the stub's TXT records.
async fn dkim_results(dns: &DnsStub, message: &str) -> Vec<DkimResult> {
    let resolver = MxResolver::new(&[dns.addr]).unwrap();
    let parsed = AuthenticatedMessage::parse(message.as_bytes()).unwrap();
    resolver
        .authenticator()
        .verify_dkim(&parsed)
        .await
        .iter()
        .map(|output| output.result().clone())
        .collect()
}

async fn relay_with_dkim(algorithm: DkimAlgorithm) {
    let dns = dns_for_remote().await;
    let remote = Instance::remote(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        true,
    )
    .await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    let record = DkimKeys::new(local.dir.path())
        .generate("example.test", "sel1", algorithm, false)
        .unwrap();
    dns.txt(&record.name, &record.value);

    let marker = marker("relay");
    let codes = submit(local.addr, &[CAROL, BOB], &marker).await;
    assert_eq!(
        codes,
        [
            "250 HELP",
            "235 2.7.0",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "354 end d",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    wait_until("the remote MX has the message", || {
        remote.queued(CAROL) == 1
    })
    .await;
    let received = remote.messages(CAROL, "INBOX").await;
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert!(message.contains(&marker), "{message}");
    assert!(
        message.contains("with ESMTPS id"),
        "relayed over STARTTLS: {message}"
    );
    assert!(
        message.starts_with("Received: from mail.example.test"),
        "{message}"
    );
    assert_eq!(
        dkim_results(&dns, message).await,
        [DkimResult::Pass],
        "{message}"
    );
    // The same verification fails once the body is changed: it really checks something.
    let tampered = message.replace("Hello over the relay.", "Hello over the relay!");
    assert!(
        !dkim_results(&dns, &tampered)
            .await
            .contains(&DkimResult::Pass)
    );

    let sent = local.messages(ALICE, "Sent").await;
    assert!(
        sent.len() == 1 && sent[0].contains(&marker),
        "Sent copy: {sent:?}"
    );
    assert_eq!(
        local.queued(BOB),
        1,
        "the local recipient is delivered locally"
    );
    assert!(local.messages(BOB, "INBOX").await[0].contains(&marker));
    wait_until("the outbound queue is empty", || {
        local.outbound_pending().is_empty()
    })
    .await;
    let leftovers = std::fs::read_dir(local.dir.path().join("outbound"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "no files left in the outbound directory");
    local.shutdown();
    remote.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_relays_to_a_second_instance_with_an_ed25519_dkim_signature() {
    relay_with_dkim(DkimAlgorithm::Ed25519).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_relays_to_a_second_instance_with_an_rsa_dkim_signature() {
    relay_with_dkim(DkimAlgorithm::Rsa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_down_is_retried_after_it_comes_up() {
    let dns = dns_for_remote().await;
    // A port nobody listens on yet: bound but not listening, so connections are refused and
    // no other test can take the port before the remote comes up on it.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let local = Instance::sender(dns.addr, port, |_, _| {}).await;
    let marker = marker("retry");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    wait_until("a first attempt failed", || {
        local
            .outbound_pending()
            .first()
            .is_some_and(|e| e.attempts >= 1)
    })
    .await;
    let pending = local.outbound_pending();
    assert_eq!(pending.len(), 1);
    let reason = pending[0].recipients[0]
        .last_reply
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("connection"), "{reason}");
    let remote = Instance::remote(reserved.listen(128).unwrap(), true).await;
    wait_until("the retry reached the remote", || remote.queued(CAROL) == 1).await;
    assert!(remote.messages(CAROL, "INBOX").await[0].contains(&marker));
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    assert!(
        local.messages(ALICE, "INBOX").await.is_empty(),
        "no bounce for a late success"
    );
    local.shutdown();
    remote.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_550_bounces_a_dsn_into_the_senders_inbox() {
    let dns = dns_for_remote().await;
    let remote = Instance::remote(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        true,
    )
    .await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    // Alice stays logged in (an IDLE client): the bounce must reach her open session at
    // once, not wait sealed for her next login.
    let session = local.store.login(ALICE, PASSWORD).await.unwrap();
    let mut changes = session.subscribe();
    let marker = marker("bounce");
    let codes = submit(local.addr, &[CAROL, NOBODY], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    let change = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.origin == sealmail_core::mailstore::DELIVERY_ORIGIN {
                return change;
            }
        }
    })
    .await
    .expect("the bounce is announced to alice's session");
    assert_eq!(change.folder, "INBOX");
    assert_eq!(local.queued(ALICE), 0, "folded in, not left sealed");
    assert_eq!(remote.queued(CAROL), 1, "the good recipient still got it");
    let inbox: Vec<String> = session
        .fetch_raw("INBOX", UidSet::all())
        .await
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.bytes).unwrap())
        .collect();
    assert_eq!(inbox.len(), 1);
    let dsn = &inbox[0];
    assert!(
        dsn.contains("Subject: Undelivered Mail Returned to Sender"),
        "{dsn}"
    );
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(
        dsn.contains(&format!("Final-Recipient: rfc822; {NOBODY}")),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("Remote-MTA: dns; mx.remote.test"), "{dsn}");
    assert!(!dsn.contains(&format!("Final-Recipient: rfc822; {CAROL}")));
    assert!(
        dsn.contains(&format!("Message-ID: <{marker}@example.test>")),
        "original headers"
    );
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    local.shutdown();
    remote.shutdown();
}

/// A scripted remote MX on 127.0.0.1 that records every command line it gets. It offers
/// `extensions` after EHLO, refuses `nobody@` with 550, and accepts everything else; with a
/// `421` greeting it turns every connection away (a host that is down for maintenance); after
/// STARTTLS it breaks the handshake.
struct FakeMx {
    addr: SocketAddr,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeMx {
    async fn start(greeting: &'static str, extensions: &'static [&'static str]) -> FakeMx {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, count) = (Arc::clone(&lines), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let (reader, mut writer) = stream.into_split();
                    let mut reader = tokio::io::BufReader::new(reader);
                    let _ = writer.write_all(format!("{greeting}\r\n").as_bytes()).await;
                    if greeting.starts_with("421") {
                        return;
                    }
                    let mut in_data = false;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let text = line.trim_end().to_string();
                        if in_data {
                            if text == "." {
                                in_data = false;
                                let _ = writer.write_all(b"250 2.0.0 queued\r\n").await;
                            }
                            continue;
                        }
                        seen.lock().unwrap().push(text.clone());
                        let upper = text.to_ascii_uppercase();
                        let reply = if upper.starts_with("EHLO") {
                            let mut reply = String::from("250-fake.remote.test");
                            for extension in extensions {
                                reply.push_str(&format!("\r\n250-{extension}"));
                            }
                            reply + "\r\n250 PIPELINING"
                        } else if upper.starts_with("RCPT") && upper.contains("NOBODY@") {
                            "550 5.1.1 no such user".into()
                        } else if upper.starts_with("DATA") {
                            in_data = true;
                            "354 go ahead".into()
                        } else if upper.starts_with("STARTTLS") {
                            // Agree, then answer the client's hello with text: the
                            // handshake fails.
                            let _ = writer.write_all(b"220 2.0.0 go ahead\r\n").await;
                            let mut hello = [0u8; 64];
                            let _ = tokio::io::AsyncReadExt::read(&mut reader, &mut hello).await;
                            let _ = writer.write_all(b"this is not TLS\r\n").await;
                            return;
                        } else if upper.starts_with("QUIT") {
                            let _ = writer.write_all(b"221 2.0.0 bye\r\n").await;
                            return;
                        } else {
                            "250 2.0.0 ok".into()
                        };
                        let _ = writer.write_all(format!("{reply}\r\n").as_bytes()).await;
                    }
                });
            }
        });
        FakeMx {
            addr,
            lines,
            connections,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Submit from alice with DSN parameters: RET=FULL ENVID=`marker`, carol with NOTIFY=SUCCESS
/// and an ORCPT, nobody with NOTIFY=NEVER.
async fn submit_with_dsn(local: &Instance, marker: &str) {
    let (mut client, greeting) = RawClient::connect(local.addr).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let auth = Base64::encode_string(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let script = format!(
        "EHLO client.test\r\nAUTH PLAIN {auth}\r\n\
         MAIL FROM:<{ALICE}> RET=FULL ENVID={marker}\r\n\
         RCPT TO:<{CAROL}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol+2Balias@remote.test\r\n\
         RCPT TO:<{NOBODY}> NOTIFY=NEVER\r\nDATA\r\n"
    );
    let codes = client.codes(script.as_bytes(), 6).await;
    assert_eq!(
        codes[2..],
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 end d"]
    );
    let body = format!("Subject: dsn test\r\n\r\n{marker} body\r\n.\r\nQUIT\r\n");
    let codes = client.codes(body.as_bytes(), 2).await;
    assert_eq!(codes[0], "250 2.0.0");
}

/// RFC 3461 5.2.2: a server without DSN cannot report the success itself, so we send a
/// `relayed` report; NOTIFY=NEVER silences the bounce; no DSN parameter reaches a server
/// that does not know them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_notify_success_to_a_server_without_dsn_reports_relayed() {
    let dns = dns_for_remote().await;
    let remote = FakeMx::start("220 fake.remote.test ESMTP", &["8BITMIME"]).await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    let marker = marker("dsn-relayed");
    submit_with_dsn(&local, &marker).await;
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    let lines = remote.lines();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("NOTIFY=") && !l.contains("ENVID=")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == &format!("RCPT TO:<{CAROL}>")));
    // Reports are written before the item leaves the queue: all of them are here now.
    let inbox = local.messages(ALICE, "INBOX").await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let report = &inbox[0];
    assert!(
        report.contains("Action: relayed\r\nStatus: 2.0.0"),
        "{report}"
    );
    assert!(
        report.contains(&format!("Original-Envelope-Id: {marker}")),
        "{report}"
    );
    assert!(
        report.contains("Original-Recipient: rfc822;carol+2Balias@remote.test"),
        "{report}"
    );
    assert!(!report.contains(NOBODY), "NOTIFY=NEVER: {report}");
    assert!(
        !report.contains(&format!("{marker} body")),
        "a success report carries no content, RET=FULL or not"
    );
    local.shutdown();
}

/// A server that offers DSN gets the sender's RET, ENVID, NOTIFY and ORCPT, and the success
/// report is then its to send: none from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_are_passed_on_to_a_server_with_dsn() {
    let dns = dns_for_remote().await;
    let remote = FakeMx::start("220 fake.remote.test ESMTP", &["8BITMIME", "DSN"]).await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    let marker = marker("dsn-passed");
    submit_with_dsn(&local, &marker).await;
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    let lines = remote.lines();
    assert!(
        lines.contains(&format!("MAIL FROM:<{ALICE}> RET=FULL ENVID={marker}")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "RCPT TO:<{CAROL}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol+2Balias@remote.test"
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("RCPT TO:<{NOBODY}> NOTIFY=NEVER")),
        "{lines:?}"
    );
    assert!(
        local.messages(ALICE, "INBOX").await.is_empty(),
        "no success report (the remote's job) and no bounce (NOTIFY=NEVER)"
    );
    local.shutdown();
}

/// A message that cannot be delivered for `delay_notice_after` gets one `delayed` report
/// for the recipients that did not opt out (NOTIFY without DELAY), however many retries
/// follow; the item stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_delivery_is_reported_once_while_retrying() {
    let dns = dns_for_remote().await;
    let remote = FakeMx::start("421 4.3.2 down for maintenance", &[]).await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |outbound, _| {
        outbound.delay_notice_after = Some(Duration::ZERO);
        outbound.first_retry = Duration::from_millis(50);
        outbound.max_retry_interval = Duration::from_millis(100);
    })
    .await;
    let marker = marker("delay");
    let other = "other@remote.test";
    let (mut client, _) = RawClient::connect(local.addr).await;
    let auth = Base64::encode_string(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let script = format!(
        "EHLO client.test\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<{ALICE}>\r\n\
         RCPT TO:<{CAROL}>\r\nRCPT TO:<{other}> NOTIFY=FAILURE\r\nDATA\r\n"
    );
    let codes = client.codes(script.as_bytes(), 6).await;
    assert_eq!(codes[5], "354 end d");
    let body = format!("Subject: delay test\r\n\r\n{marker}\r\n.\r\nQUIT\r\n");
    assert_eq!(client.codes(body.as_bytes(), 2).await[0], "250 2.0.0");
    wait_until("three attempts were made", || {
        local
            .outbound_pending()
            .first()
            .is_some_and(|e| e.attempts >= 3)
    })
    .await;
    assert!(remote.connections.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let pending = local.outbound_pending();
    assert_eq!(pending.len(), 1, "still queued");
    let carol = pending[0]
        .recipients
        .iter()
        .find(|r| r.address == CAROL)
        .unwrap();
    assert!(carol.delay_reported);
    let inbox = local.messages(ALICE, "INBOX").await;
    assert_eq!(inbox.len(), 1, "one delay report, not one per retry");
    let report = &inbox[0];
    assert!(report.contains("Subject: Delayed Mail"), "{report}");
    assert!(
        report.contains(&format!(
            "Final-Recipient: rfc822; {CAROL}\r\nAction: delayed\r\nStatus: 4.3.2"
        )),
        "{report}"
    );
    assert!(report.contains("Will-Retry-Until: "), "{report}");
    assert!(
        !report.contains(other),
        "NOTIFY=FAILURE: no delay report: {report}"
    );
    local.shutdown();
}

/// NOTIFY=SUCCESS for a local recipient: the final delivery here reports `delivered` to the
/// (local) sender before the 250; recipients that did not ask are not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_delivery_reports_success_when_asked() {
    let dns = dns_for_remote().await;
    let local = Instance::sender(dns.addr, 9, |_, _| {}).await;
    let marker = marker("local-success");
    let (mut client, _) = RawClient::connect(local.addr).await;
    let auth = Base64::encode_string(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let script = format!(
        "EHLO client.test\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<{ALICE}> ENVID={marker}\r\n\
         RCPT TO:<{BOB}> NOTIFY=SUCCESS\r\nDATA\r\n"
    );
    let codes = client.codes(script.as_bytes(), 5).await;
    assert_eq!(codes[4], "354 end d");
    let body = format!("Subject: local\r\n\r\n{marker} body\r\n.\r\nQUIT\r\n");
    assert_eq!(client.codes(body.as_bytes(), 2).await[0], "250 2.0.0");
    let bob = local.messages(BOB, "INBOX").await;
    assert_eq!(bob.len(), 1);
    assert!(bob[0].contains(&format!("{marker} body")));
    let alice = local.messages(ALICE, "INBOX").await;
    assert_eq!(
        alice.len(),
        1,
        "the success report, there before the 250: {alice:?}"
    );
    let report = &alice[0];
    assert!(
        report.contains(&format!(
            "Final-Recipient: rfc822; {BOB}\r\nAction: delivered\r\nStatus: 2.0.0"
        )),
        "{report}"
    );
    assert!(report.contains(&format!("Original-Envelope-Id: {marker}")));
    assert!(report.contains("Reporting-MTA: dns; mail.example.test"));
    assert!(!report.contains(&format!("{marker} body")), "headers only");
    local.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_bounce_and_required_tls_is_enforced() {
    let dns = dns_for_remote().await;
    // The remote offers no STARTTLS; we require it, and the message lifetime is zero, so the
    // first failed attempt is also the last.
    let remote = Instance::remote(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        false,
    )
    .await;
    // Trust anchors of our own, so the test does not depend on the machine's CA store.
    let ca = TestCa::new();
    let ca_file = ca.pem_file();
    let local = Instance::sender(dns.addr, remote.addr.port(), |outbound, _| {
        outbound.require_tls = true;
        outbound.extra_ca_file = Some(ca_file);
        outbound.max_lifetime = Duration::ZERO;
    })
    .await;
    let marker = marker("expire");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    let inbox = local.wait_for_inbox(ALICE, 1).await;
    assert_eq!(remote.queued(CAROL), 0, "nothing sent in the clear");
    let dsn = &inbox[0];
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(dsn.contains("STARTTLS"), "the reason is given: {dsn}");
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    local.shutdown();
    remote.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_domains_are_refused_without_a_queue_and_bounced_with_one() {
    let dns = dns_for_remote().await;
    let local = Instance::sender(dns.addr, 9, |_, _| {}).await;
    let marker = marker("nxdomain");
    // nowhere.test has no DNS records at all: NXDOMAIN is permanent.
    let codes = submit(local.addr, &["someone@nowhere.test"], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    let dsn = &local.wait_for_inbox(ALICE, 1).await[0];
    assert!(
        dsn.contains("Final-Recipient: rfc822; someone@nowhere.test"),
        "{dsn}"
    );
    local.shutdown();
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Submission over implicit TLS (port 465 style) with relaying.
async fn implicit_tls_sender(dns: &DnsStub, remote_port: u16) -> Instance {
    Instance::sender(dns.addr, remote_port, |_, config| {
        config.loopback_plaintext_auth = false;
        config.tls = Some(TlsSettings {
            config: tls_config(),
            implicit: true,
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtp_ssl_and_nodemailer_relay_over_implicit_tls() {
    let dns = dns_for_remote().await;
    let remote = Instance::remote(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        true,
    )
    .await;
    let local = implicit_tls_sender(&dns, remote.addr.port()).await;
    let python_marker = marker("smtp-ssl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtplib_client.py");
    let mut python = Command::new("python3");
    python.args([
        script.display().to_string(),
        "implicit".into(),
        local.addr.port().to_string(),
        python_marker.clone(),
        CAROL.into(),
    ]);
    let node_marker = marker("nodemailer-465");
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let mut node = Command::new("node");
    node.current_dir(&node_dir).args([
        "submit.mjs".to_string(),
        local.addr.port().to_string(),
        node_marker.clone(),
        CAROL.into(),
    ]);
    let (python_out, node_out) =
        tokio::task::spawn_blocking(move || (run(&mut python), run(&mut node)))
            .await
            .unwrap();
    assert_eq!(python_out.trim(), "ok");
    assert!(
        node_out.contains(&format!("\"accepted\":[\"{CAROL}\"]")),
        "{node_out}"
    );
    wait_until("both messages reached the remote", || {
        remote.queued(CAROL) == 2
    })
    .await;
    let received = remote.messages(CAROL, "INBOX").await;
    for marker in [&python_marker, &node_marker] {
        assert_eq!(
            received
                .iter()
                .filter(|m| m.contains(marker.as_str()))
                .count(),
            1,
            "{marker} arrived once"
        );
    }
    let sent = local.messages(ALICE, "Sent").await;
    assert_eq!(sent.len(), 2, "both submissions have a Sent copy");
    local.shutdown();
    remote.shutdown();
}

/// Opportunistic TLS (RFC 7435): a failed STARTTLS handshake does not hold the mail back; it
/// goes in the clear on a new connection, and the failure is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starttls_falls_back_to_clear_text_and_is_recorded() {
    let dns = dns_for_remote().await;
    let remote = FakeMx::start("220 fake.remote.test ESMTP", &["STARTTLS"]).await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    let marker = marker("tls-fallback");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    let lines = remote.lines();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("STARTTLS"), 1, "{lines:?}");
    assert_eq!(count("MAIL FROM:"), 1, "{lines:?}");
    assert_eq!(count("DATA"), 1, "{lines:?}");
    assert_eq!(
        remote.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(local.queue.as_ref().unwrap().tls_failures(), 1);
    assert!(
        local.messages(ALICE, "INBOX").await.is_empty(),
        "delivered: no bounce"
    );
    local.shutdown();
}

/// The operator's `retry` makes a waiting item due at once; `bounce` gives up on it, reports
/// the failure to the sender and removes it. Ids that are not items are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_retry_and_bounce_of_an_outbound_item() {
    let dns = dns_for_remote().await;
    let remote = FakeMx::start("421 4.3.2 down for maintenance", &[]).await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |outbound, _| {
        // Without the operator, the next attempt would be an hour away.
        outbound.first_retry = Duration::from_secs(3600);
        outbound.max_retry_interval = Duration::from_secs(3600);
    })
    .await;
    let marker = marker("operator");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0");
    let first_attempt = || {
        local
            .outbound_pending()
            .first()
            .is_some_and(|e| e.attempts >= 1)
    };
    wait_until("a first attempt failed", first_attempt).await;
    let queue = Arc::clone(local.queue.as_ref().unwrap());
    let id = local.outbound_pending()[0].id.clone();
    let retried = queue.retry_now(&id).await.unwrap();
    assert_eq!(retried.attempts, 1);
    wait_until("the retry was made", || {
        local
            .outbound_pending()
            .first()
            .is_some_and(|e| e.attempts >= 2)
    })
    .await;
    assert!(matches!(
        queue.bounce_now("../../registry").await,
        Err(sealmail_smtp::outbound::AdminError::NoSuchItem(_))
    ));
    assert!(matches!(
        queue.retry_now("0123abcd").await,
        Err(sealmail_smtp::outbound::AdminError::NoSuchItem(_))
    ));
    assert_eq!(queue.bounce_now(&id).await.unwrap(), 1);
    assert!(local.outbound_pending().is_empty());
    let inbox = local.messages(ALICE, "INBOX").await;
    assert_eq!(inbox.len(), 1, "the sender is told");
    let report = &inbox[0];
    assert!(report.contains("Action: failed"), "{report}");
    assert!(report.contains("cancelled by the postmaster"), "{report}");
    assert!(
        report.contains("421 4.3.2"),
        "the last error is given: {report}"
    );
    local.shutdown();
}

/// A certificate authority made for one test, its root written to `ca.pem` in a tempdir (the
/// sender's `extra_ca_file`).
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sealmail test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa { issuer, dir }
    }

    fn pem_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server configuration whose certificate this CA issued for `name`.
    fn server_config(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        server_config(cert.der().clone(), &key)
    }
}

fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap(),
    )
}

/// A self-signed certificate for the right name: no trusted CA issued it.
fn self_signed_for_the_mx() -> Arc<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec!["mx.remote.test".into()]).unwrap();
    server_config(certified.cert.der().clone(), &certified.signing_key)
}

/// Relay one message to a remote MX serving `remote_tls`, with `require_tls` and the test
/// CA's file as `extra_ca_file`. Returns the DNS stub (it must outlive the attempts), the
/// sender, the remote and the message's marker.
async fn relay_requiring_tls(
    ca: &TestCa,
    remote_tls: Arc<rustls::ServerConfig>,
) -> (DnsStub, Instance, Instance, String) {
    let dns = dns_for_remote().await;
    let remote = Instance::remote_with_tls(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(remote_tls),
    )
    .await;
    let ca_file = ca.pem_file();
    let local = Instance::sender(dns.addr, remote.addr.port(), |outbound, _| {
        outbound.require_tls = true;
        outbound.extra_ca_file = Some(ca_file);
    })
    .await;
    let marker = marker("verified-tls");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0", "{codes:?}");
    (dns, local, remote, marker)
}

/// Wait until CAROL's queued item records an attempt whose reason contains `expected`, then
/// check that nothing reached the remote and that the failure was counted as a TLS failure.
async fn assert_held_back_with(local: &Instance, remote: &Instance, expected: &str) {
    wait_until(&format!("an attempt failed with {expected:?}"), || {
        local.outbound_pending().iter().any(|envelope| {
            envelope.recipients.iter().any(|r| {
                r.address == CAROL
                    && r.last_reply
                        .as_deref()
                        .is_some_and(|reply| reply.contains(expected))
            })
        })
    })
    .await;
    let pending = local.outbound_pending();
    assert_eq!(pending.len(), 1, "still queued: {pending:?}");
    let reply = pending[0].recipients[0].last_reply.clone().unwrap();
    assert!(
        reply.starts_with("TLS required but certificate for mx.remote.test"),
        "{reply}"
    );
    assert!(
        pending[0]
            .tls_failure
            .as_deref()
            .is_some_and(|failure| failure.contains(expected)),
        "{pending:?}"
    );
    assert!(local.queue.as_ref().unwrap().tls_failures() >= 1);
    assert_eq!(remote.queued(CAROL), 0, "nothing reached the remote");
    assert!(
        remote.messages(CAROL, "INBOX").await.is_empty(),
        "nothing sent in the clear"
    );
    assert!(
        local.messages(ALICE, "INBOX").await.is_empty(),
        "a temporary failure: no bounce"
    );
}

/// Required TLS: the MX's certificate is issued for `mx.remote.test` by a CA the sender
/// trusts through `extra_ca_file`, so the message goes through, over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_delivers_when_the_certificate_verifies() {
    let ca = TestCa::new();
    let (_dns, local, remote, marker) =
        relay_requiring_tls(&ca, ca.server_config("mx.remote.test")).await;
    wait_until("the remote MX has the message", || {
        remote.queued(CAROL) == 1
    })
    .await;
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    let received = remote.messages(CAROL, "INBOX").await;
    assert!(
        received.len() == 1 && received[0].contains(&marker),
        "{received:?}"
    );
    assert!(received[0].contains("with ESMTPS id"), "{}", received[0]);
    assert_eq!(local.queue.as_ref().unwrap().tls_failures(), 0);
    local.shutdown();
    remote.shutdown();
}

/// Required TLS with a certificate no trusted CA issued: held back, never sent in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_a_certificate_of_an_unknown_issuer() {
    let ca = TestCa::new();
    let (_dns, local, remote, _) = relay_requiring_tls(&ca, self_signed_for_the_mx()).await;
    assert_held_back_with(&local, &remote, "unknown issuer").await;
    local.shutdown();
    remote.shutdown();
}

/// Required TLS with a certificate from the trusted CA, but for another host: held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_a_certificate_for_another_name() {
    let ca = TestCa::new();
    let (_dns, local, remote, _) =
        relay_requiring_tls(&ca, ca.server_config("other.remote.test")).await;
    assert_held_back_with(&local, &remote, "does not match the host name").await;
    let pending = local.outbound_pending();
    let reply = pending[0].recipients[0].last_reply.clone().unwrap();
    assert!(
        reply.contains("other.remote.test"),
        "names what it found: {reply}"
    );
    local.shutdown();
    remote.shutdown();
}

/// Opportunistic TLS (RFC 7435) accepts a certificate of an unknown issuer: the message goes
/// over TLS, and nothing counts as a TLS failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_tls_accepts_a_certificate_of_an_unknown_issuer() {
    let dns = dns_for_remote().await;
    let remote = Instance::remote_with_tls(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(self_signed_for_the_mx()),
    )
    .await;
    let local = Instance::sender(dns.addr, remote.addr.port(), |_, _| {}).await;
    let marker = marker("opportunistic");
    let codes = submit(local.addr, &[CAROL], &marker).await;
    assert_eq!(codes[codes.len() - 2], "250 2.0.0", "{codes:?}");
    wait_until("the remote MX has the message", || {
        remote.queued(CAROL) == 1
    })
    .await;
    wait_until("the queue is empty", || local.outbound_pending().is_empty()).await;
    let received = remote.messages(CAROL, "INBOX").await;
    assert!(
        received.len() == 1 && received[0].contains(&marker),
        "{received:?}"
    );
    assert!(
        received[0].contains("with ESMTPS id"),
        "over TLS: {}",
        received[0]
    );
    assert_eq!(local.queue.as_ref().unwrap().tls_failures(), 0);
    local.shutdown();
    remote.shutdown();
}

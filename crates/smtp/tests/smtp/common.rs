//! Test harness: a real SMTP server on 127.0.0.1 over a real registry and sealed queue.

use sealmail_core::mailstore::{LocalMailStore, MailSession, MailStore};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::UidSet;
use sealmail_smtp::server::{self, ServerConfig, TlsSettings};
use sealmail_smtp::{LocalDelivery, Mode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";
/// Quota 1 byte, 4096 used: every RCPT gets 552 5.2.2.
pub const FULL: &str = "full@example.test";
/// Quota 3000 bytes, nothing used: room for one small message, then its sealed copy counts.
pub const SMALL: &str = "small@example.test";
pub const PASSWORD: &str = "correct horse";

pub fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

pub type Store = LocalMailStore<Arc<Registry>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    dir: tempfile::TempDir,
}

/// A self-signed certificate for `localhost`, as a shared rustls configuration.
pub fn tls_config() -> Arc<rustls::ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let chain = vec![cert.cert.der().clone()];
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

impl TestServer {
    /// An MX listener with STARTTLS.
    pub async fn mx() -> TestServer {
        TestServer::start(|config| {
            config.tls = Some(TlsSettings {
                config: tls_config(),
                implicit: false,
            });
        })
        .await
    }

    /// A submission listener with STARTTLS; loopback clients must still use TLS to AUTH.
    pub async fn submission() -> TestServer {
        TestServer::start(|config| {
            config.session.mode = Mode::Submission;
            config.loopback_plaintext_auth = false;
            config.tls = Some(TlsSettings {
                config: tls_config(),
                implicit: false,
            });
        })
        .await
    }

    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        TestServer::start_with(configure, |delivery, _| delivery).await
    }

    /// Like [`TestServer::start`], with a chance to extend the delivery (inbound checks,
    /// forwarding) given the registry.
    pub async fn start_with(
        configure: impl FnOnce(&mut ServerConfig),
        extend: impl FnOnce(LocalDelivery<Store>, &Arc<Registry>) -> LocalDelivery<Store>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(
            Registry::open_with(
                dir.path(),
                RegistryOptions {
                    create_if_missing: true,
                    unknown_address_kdf: cheap_kdf(),
                    ..RegistryOptions::default()
                },
            )
            .unwrap(),
        );
        for (address, quota) in [
            (ALICE, Some(100 << 20)),
            (BOB, None),
            (FULL, Some(1)),
            (SMALL, Some(3000)),
        ] {
            let options = AccountOptions {
                quota,
                with_recovery_code: false,
                kdf: cheap_kdf(),
            };
            let account = registry
                .add_account(address, Some(PASSWORD), &options)
                .unwrap();
            if address == FULL {
                registry.set_used_bytes(&account.mailbox_id, 4096).unwrap();
            }
        }
        let store = Arc::new(LocalMailStore::new(Arc::clone(&registry)));
        let delivery = Arc::new(extend(
            LocalDelivery::new(Arc::clone(&registry), Arc::clone(&store)),
            &registry,
        ));
        let mut config = ServerConfig::default();
        config.session.hostname = "mx.example.test".into();
        config.session.max_message_size = 1 << 20;
        config.failed_auth_delay = Duration::from_millis(50);
        config.shutdown_grace = Duration::from_millis(500);
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, delivery, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            registry,
            store,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sealed items waiting for `address`.
    pub fn queued(&self, address: &str) -> usize {
        let account = self.registry.lookup(address).unwrap().unwrap();
        SealedQueue::new(self.data_dir())
            .pending_count(account.mailbox_id.as_str())
            .unwrap()
    }

    /// Log in (which drains the queue) and return the raw messages of `folder`.
    pub async fn messages(&self, address: &str, folder: &str) -> Vec<Vec<u8>> {
        let session = self.store.login(address, PASSWORD).await.unwrap();
        session
            .fetch_raw(folder, UidSet::all())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.bytes)
            .collect()
    }

    /// Stop the server and wait until every connection has finished.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// Every file under `dir` (data dir, queue, mailboxes, WAL files) that contains `marker`.
pub fn files_containing(dir: &Path, marker: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(marker.len()).any(|w| w == marker) {
                    hits.push(path);
                }
            }
        }
    }
    assert!(files > 0, "the data dir has files to search");
    hits
}

/// A unique marker for one test's message.
pub fn marker(name: &str) -> String {
    format!(
        "MARKER-{name}-{:x}",
        std::process::id() as u64 * 1_000_003 + rand_suffix()
    )
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// A line-level SMTP client that sends bytes exactly as given.
pub struct RawClient {
    reader: tokio::io::BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
    writer: tokio::io::WriteHalf<tokio::net::TcpStream>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> (RawClient, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (reader, writer) = tokio::io::split(stream);
        let mut client = RawClient {
            reader: tokio::io::BufReader::new(reader),
            writer,
        };
        let greeting = client.reply().await;
        (client, greeting)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// One complete (possibly multi-line) reply, lines joined with `\n`; empty at EOF.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("reply within 10 s")
                .unwrap();
            if n == 0 {
                return lines.join("\n");
            }
            assert!(
                line.ends_with("\r\n"),
                "reply lines end with CRLF: {line:?}"
            );
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Send `bytes`, then read `count` replies and return their first 9 characters
    /// (`250 2.1.5`), the part a test asserts on.
    pub async fn codes(&mut self, bytes: &[u8], count: usize) -> Vec<String> {
        self.send(bytes).await;
        let mut codes = Vec::new();
        for _ in 0..count {
            let reply = self.reply().await;
            let last = reply.lines().last().unwrap_or("").to_string();
            codes.push(last.chars().take(9).collect());
        }
        codes
    }

    /// True once the server has closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line)).await,
            Ok(Ok(0))
        )
    }

    pub fn into_inner(self) -> tokio::net::TcpStream {
        self.reader.into_inner().unsplit(self.writer)
    }
}

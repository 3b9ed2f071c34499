//! Test harness: a real POP3 server and a real IMAP server on 127.0.0.1, sharing one
//! `LocalMailStore` over a real registry and encrypted mailbox.

use sealmail_core::mailstore::{LocalMailStore, MailSession, MailStore};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_core::store::AppendOptions;
use sealmail_pop3::server::{self, ServerConfig, TlsSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types};

pub const ADDRESS: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse";

pub type Store = LocalMailStore<Registry>;

/// Argon2id parameters small enough for tests (the real cost is measured in benchmarks).
fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

/// A self-signed certificate for `localhost`: the server config, a rustls client config that
/// trusts exactly it, and its PEM for external clients.
pub struct Certificate {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    pub pem: String,
}

pub fn certificate() -> Certificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let server =
        Arc::new(sealmail_imap::server::tls_server_config(vec![cert.clone()], key).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Certificate {
        server,
        client: Arc::new(client),
        pem: generated.cert.pem(),
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// An IMAP server on the same store, for interleaving tests.
    pub imap_addr: SocketAddr,
    pub store: Arc<Store>,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open_with(
            dir.path(),
            RegistryOptions {
                create_if_missing: true,
                unknown_address_kdf: cheap_kdf(),
                ..RegistryOptions::default()
            },
        )
        .unwrap();
        registry
            .add_account(
                ADDRESS,
                Some(PASSWORD),
                &AccountOptions {
                    quota: Some(100 << 20),
                    with_recovery_code: false,
                    kdf: cheap_kdf(),
                },
            )
            .unwrap();
        let store = Arc::new(LocalMailStore::new(registry));
        let mut config = ServerConfig::default();
        config.session.failed_login_delay = Duration::from_millis(10);
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let imap_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let imap_addr = imap_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (imap_stop_tx, imap_stopped) = tokio::sync::oneshot::channel::<()>();
        let pop3 = tokio::spawn(server::run(
            listener,
            Arc::clone(&store),
            config,
            async move {
                let _ = stopped.await;
                let _ = imap_stop_tx.send(());
            },
        ));
        let imap = tokio::spawn(sealmail_imap::server::run(
            imap_listener,
            Arc::clone(&store),
            sealmail_imap::server::ServerConfig::default(),
            async move {
                let _ = imap_stopped.await;
            },
        ));
        TestServer {
            addr,
            imap_addr,
            store,
            dir: dir.path().to_path_buf(),
            stop: Some(stop),
            tasks: vec![pop3, imap],
            _dir: dir,
        }
    }

    /// Start with TLS configured (implicit or STLS) and plaintext login refused.
    pub async fn start_tls(cert: &Certificate, implicit: bool) -> TestServer {
        let server_config = Arc::clone(&cert.server);
        TestServer::start(move |config| {
            config.loopback_plaintext_auth = false;
            config.tls = Some(TlsSettings {
                config: server_config,
                implicit,
            });
        })
        .await
    }

    /// Append messages to the INBOX through the store; returns their UIDs.
    pub async fn seed(&self, messages: &[&[u8]]) -> Vec<u32> {
        let session = self.store.login(ADDRESS, PASSWORD).await.unwrap();
        let batch = messages
            .iter()
            .map(|m| (m.to_vec(), AppendOptions::default()))
            .collect();
        let appended = session.append("INBOX", batch).await.unwrap();
        appended.iter().map(|a| a.uid).collect()
    }

    /// UIDs currently in the INBOX, read through the store.
    pub async fn inbox_uids(&self) -> Vec<u32> {
        let session = self.store.login(ADDRESS, PASSWORD).await.unwrap();
        session
            .message_states("INBOX")
            .await
            .unwrap()
            .iter()
            .map(|s| s.uid)
            .collect()
    }

    /// Stop the servers and wait until every connection has finished.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Like [`TestServer::shutdown`], keeping the data (and the store) for inspection.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

/// Any byte stream a test client talks over (TCP, or TLS over TCP).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A raw line-level client: sends bytes exactly as given, reads lines and multi-line bodies
/// exactly as the server sent them.
pub struct RawClient {
    reader: tokio::io::BufReader<Box<dyn Stream>>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> (RawClient, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        RawClient::over(Box::new(stream)).await
    }

    pub async fn over(stream: Box<dyn Stream>) -> (RawClient, String) {
        let mut client = RawClient {
            reader: tokio::io::BufReader::new(stream),
        };
        let greeting = client.line().await;
        (client, greeting)
    }

    /// Wrap a stream mid-session (after STLS there is no new greeting).
    pub fn over_without_greeting(stream: Box<dyn Stream>) -> RawClient {
        RawClient {
            reader: tokio::io::BufReader::new(stream),
        }
    }

    /// Give the stream back (after STLS's +OK, to run the handshake over it).
    pub fn into_stream(self) -> Box<dyn Stream> {
        assert!(
            self.reader.buffer().is_empty(),
            "no data may follow STLS's +OK"
        );
        self.reader.into_inner()
    }

    /// Connect and log in with USER/PASS.
    pub async fn login(addr: SocketAddr) -> RawClient {
        let (mut client, _) = RawClient::connect(addr).await;
        assert!(
            client
                .command(&format!("USER {ADDRESS}"))
                .await
                .starts_with("+OK")
        );
        let reply = client.command(&format!("PASS {PASSWORD}")).await;
        assert!(reply.starts_with("+OK"), "{reply}");
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// One line, CRLF included, as raw bytes.
    pub async fn raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            self.reader.read_until(b'\n', &mut line),
        )
        .await
        .expect("server answers within 10 s")
        .unwrap();
        assert!(n > 0, "connection closed while a line was expected");
        line
    }

    /// One line without its CRLF, which it must have.
    pub async fn line(&mut self) -> String {
        let line = self.raw_line().await;
        assert!(
            line.ends_with(b"\r\n"),
            "line not CRLF-terminated: {line:?}"
        );
        String::from_utf8(line[..line.len() - 2].to_vec()).unwrap()
    }

    /// Send a command line (CRLF added) and read the status line.
    pub async fn command(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.line().await
    }

    /// The body of a multi-line response after its status line, up to and including the
    /// terminating `.` CRLF, byte for byte.
    pub async fn multiline(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.raw_line().await;
            body.extend_from_slice(&line);
            if line == b".\r\n" {
                return body;
            }
        }
    }

    /// Whether the server closed the connection (EOF on the next read).
    pub async fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            self.reader.read_until(b'\n', &mut rest),
        )
        .await
        .expect("server closes within 10 s")
        .unwrap_or(0);
        n == 0
    }
}

/// A minimal IMAP client for interleaving tests: tagged commands, untagged lines collected.
pub struct ImapClient {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    tag: u32,
}

impl ImapClient {
    pub async fn login(addr: SocketAddr) -> ImapClient {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut client = ImapClient {
            reader: tokio::io::BufReader::new(stream),
            tag: 0,
        };
        let mut greeting = String::new();
        client.reader.read_line(&mut greeting).await.unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let reply = client
            .command(&format!("LOGIN {ADDRESS} \"{PASSWORD}\""))
            .await;
        assert!(reply.last().unwrap().contains(" OK"), "{reply:?}");
        client
    }

    /// Run one command; returns every line up to and including the tagged completion.
    pub async fn command(&mut self, command: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("IMAP server answers within 10 s")
                .unwrap();
            assert!(n > 0, "IMAP connection closed");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line.trim_end().to_string());
            if done {
                return lines;
            }
        }
    }
}

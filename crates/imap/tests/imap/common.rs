//! Test harness: a real server on 127.0.0.1 over a real registry and encrypted mailbox.

use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_imap::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const ADDRESS: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse";

/// Argon2id parameters small enough for tests (the real cost is measured in benchmarks).
fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
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
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, store, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
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

/// Any byte stream a test client talks over (TCP, or TLS over TCP).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A raw line-level IMAP client for conformance tests: it sends bytes exactly as given and
/// returns the server's lines (literals inlined) up to the tagged completion.
pub struct RawClient {
    reader: tokio::io::BufReader<tokio::io::ReadHalf<Box<dyn Stream>>>,
    writer: tokio::io::WriteHalf<Box<dyn Stream>>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> (RawClient, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        RawClient::over(Box::new(stream)).await
    }

    /// Wrap a connected stream and read the greeting.
    pub async fn over(stream: Box<dyn Stream>) -> (RawClient, String) {
        let mut client = RawClient::wrap(stream);
        let greeting = client.line().await;
        (client, greeting)
    }

    /// Wrap a stream mid-session (after STARTTLS there is no new greeting).
    pub fn wrap(stream: Box<dyn Stream>) -> RawClient {
        let (reader, writer) = tokio::io::split(stream);
        RawClient {
            reader: tokio::io::BufReader::new(reader),
            writer,
        }
    }

    /// Give the stream back (after STARTTLS's tagged OK, to run the handshake over it).
    pub fn into_stream(self) -> Box<dyn Stream> {
        assert!(
            self.reader.buffer().is_empty(),
            "no data may follow STARTTLS's OK"
        );
        self.reader.into_inner().unsplit(self.writer)
    }

    /// Connect and log in.
    pub async fn login(addr: SocketAddr) -> RawClient {
        let (mut client, _) = RawClient::connect(addr).await;
        let reply = client
            .command(&format!("L1 LOGIN {ADDRESS} \"{PASSWORD}\""))
            .await;
        assert!(reply.last().unwrap().starts_with("L1 OK"), "{reply:?}");
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.unwrap();
    }

    /// One response line; a trailing `{n}` literal is read and appended (lossily as UTF-8).
    pub async fn line(&mut self) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut out = String::new();
        loop {
            let mut line = Vec::new();
            let n = tokio::time::timeout(
                Duration::from_secs(10),
                self.reader.read_until(b'\n', &mut line),
            )
            .await
            .expect("server answers within 10 s")
            .unwrap();
            assert!(n > 0, "connection closed; so far: {out:?}");
            let text = String::from_utf8_lossy(&line).into_owned();
            let trimmed = text.trim_end_matches(['\r', '\n']);
            out.push_str(trimmed);
            let literal = trimmed
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match literal {
                Some(size) => {
                    let mut data = vec![0u8; size];
                    self.reader.read_exact(&mut data).await.unwrap();
                    out.push_str(&String::from_utf8_lossy(&data));
                }
                None => return out,
            }
        }
    }

    /// Send `command` (tag first, without CRLF) and collect lines through its tagged reply.
    pub async fn command(&mut self, command: &str) -> Vec<String> {
        let tag = command.split(' ').next().unwrap().to_string();
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.until_tagged(&tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// A small RFC 5322 message.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
         Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject}@x>\r\n\r\n{body}\r\n"
    )
}

/// APPEND with a LITERAL+ literal; returns the tagged line.
pub async fn append(client: &mut RawClient, tag: &str, folder: &str, raw: &str) -> String {
    client
        .send(format!("{tag} APPEND {folder} {{{}+}}\r\n{raw}\r\n", raw.len()).as_bytes())
        .await;
    client.until_tagged(tag).await.pop().unwrap()
}

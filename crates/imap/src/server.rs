//! The tokio driver: accept connections, enforce connection limits and timeouts, shuttle bytes
//! between the socket and a [`Session`], and shut down gracefully.

use crate::compress::DeflateStream;
use crate::proto::{FrameEvent, Framer, Limits, Response, StatusKind, StatusResponse};
use crate::session::{Flow, Responder, Session, SessionConfig};
use sealmail_core::mailstore::MailStore;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::rustls;

/// TLS on a listener: implicit (IMAPS, the handshake comes first) or STARTTLS on a plain port.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<rustls::ServerConfig>,
    pub implicit: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("implicit", &self.implicit)
            .finish_non_exhaustive()
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub session: SessionConfig,
    pub limits: Limits,
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Close a connection silent for this long (RFC 9051 requires at least 30 minutes;
    /// IDLE clients re-issue IDLE before it runs out).
    pub idle_timeout: Duration,
    /// How long a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// While IDLE, send `* OK still here` this often, so NAT boxes and phones' radios do not
    /// drop a silent connection.
    pub idle_keepalive: Duration,
    /// Let clients on loopback authenticate without TLS.
    pub loopback_plaintext_auth: bool,
    pub tls: Option<TlsSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            limits: Limits::default(),
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout: Duration::from_secs(30 * 60),
            tls_handshake_timeout: Duration::from_secs(30),
            idle_keepalive: Duration::from_secs(120),
            loopback_plaintext_auth: true,
            tls: None,
        }
    }
}

/// A rustls server configuration for mail clients: TLS 1.2 and 1.3, with the post-quantum
/// hybrid key exchange X25519MLKEM768 offered first, then the classical groups.
pub fn tls_server_config(
    cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    // Prefer our order (post-quantum first) over the client's.
    config.ignore_client_order = true;
    Ok(config)
}

/// Accept connections on `listener` until `shutdown` completes, then stop accepting, tell
/// every session to finish (`* BYE`) and wait for them.
pub async fn run<M: MailStore>(
    listener: TcpListener,
    store: Arc<M>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let session_config = Arc::new(config.session.clone());
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut accept_errors = 0u32;
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    accept_errors = 0;
                    pair
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    accept_errors = (accept_errors + 1).min(10);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10 << accept_errors.min(6))).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(guard) = ConnectionGuard::acquire(&slots, &per_ip, peer.ip(), &config) else {
            let mut stream = stream;
            connections.spawn(async move {
                let _ = stream
                    .write_all(b"* BYE [UNAVAILABLE] too many connections\r\n")
                    .await;
            });
            continue;
        };
        let trusted = config.loopback_plaintext_auth && peer.ip().is_loopback();
        let session = Session::new(Arc::clone(&store), Arc::clone(&session_config), trusted)
            .with_peer(peer.ip());
        let config = Arc::clone(&config);
        let stop = stop_rx.clone();
        config.session.metrics.connection(true);
        connections.spawn(async move {
            let _guard = guard;
            let _closed = ClosedOnDrop(Arc::clone(&config.session.metrics));
            if let Err(e) = serve_tcp(session, stream, &config, stop).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serve one TCP connection: implicit TLS first when configured, STARTTLS when asked for.
async fn serve_tcp<M: MailStore>(
    mut session: Session<M>,
    mut tcp: TcpStream,
    config: &ServerConfig,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut framer = Framer::new(config.limits);
    match &config.tls {
        Some(tls) if tls.implicit => {
            let mut stream = handshake(tls, tcp, config).await?;
            session.tls_started();
            greet(&mut session, &mut stream).await?;
            serve_layers(&mut session, &mut stream, &mut framer, config, stop).await?;
        }
        Some(tls) => {
            session = session.offer_starttls();
            greet(&mut session, &mut tcp).await?;
            if serve_layers(&mut session, &mut tcp, &mut framer, config, stop.clone()).await?
                == Ended::StartTls
            {
                let mut stream = handshake(tls, tcp, config).await?;
                session.tls_started();
                // Input pipelined behind STARTTLS arrived unprotected: it is dropped
                // (RFC 9051 section 11.1), so a fresh framer.
                let mut framer = Framer::new(config.limits);
                serve_layers(&mut session, &mut stream, &mut framer, config, stop).await?;
            }
        }
        None => {
            greet(&mut session, &mut tcp).await?;
            serve_layers(&mut session, &mut tcp, &mut framer, config, stop).await?;
        }
    }
    Ok(())
}

/// Serve `stream`, and once the client turns on COMPRESS=DEFLATE, the same stream wrapped in
/// [`DeflateStream`] (over TLS when TLS is active, RFC 4978 section 4).
async fn serve_layers<M: MailStore, S: AsyncRead + AsyncWrite + Unpin + Send>(
    session: &mut Session<M>,
    stream: &mut S,
    framer: &mut Framer,
    config: &ServerConfig,
    stop: watch::Receiver<bool>,
) -> io::Result<Ended> {
    let ended = serve(session, stream, framer, config, stop.clone()).await?;
    if ended != Ended::Compress {
        return Ok(ended);
    }
    // Bytes already read behind the COMPRESS command are the start of the compressed stream.
    let mut compressed = DeflateStream::new(stream, framer.take_unread());
    serve(session, &mut compressed, framer, config, stop).await
}

async fn handshake(
    tls: &TlsSettings,
    tcp: TcpStream,
    config: &ServerConfig,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
    tokio::time::timeout(config.tls_handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

async fn greet<M: MailStore, S: AsyncWrite + Unpin + Send>(
    session: &mut Session<M>,
    stream: &mut S,
) -> io::Result<()> {
    let mut out = Responder::new(stream, session.encode_options());
    session.greeting(&mut out);
    out.flush().await
}

/// How long a client in the middle of a command (a large APPEND, say) may take to finish it
/// once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why [`serve`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed,
    StartTls,
    /// COMPRESS DEFLATE was accepted: everything after its tagged OK is compressed.
    Compress,
}

/// Drive a connection: the read loop, IDLE notifications, timeouts and shutdown. Returns when
/// the client is gone, logged out, or STARTTLS was accepted.
pub async fn serve<M: MailStore, S: AsyncRead + AsyncWrite + Unpin + Send>(
    session: &mut Session<M>,
    stream: &mut S,
    framer: &mut Framer,
    config: &ServerConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<Ended> {
    // Filled through `read_buf`, which writes into spare capacity without zeroing it first:
    // an idle connection's memory holds only the pages its few commands touched.
    let mut buf = Vec::with_capacity(8 * 1024);
    // Set once shutdown began while a command was half received: it may finish until then.
    let mut stopping = false;
    // The autologout timer counts from the client's last bytes (or from the start of shutdown):
    // what the server sends (IDLE and NOTIFY pushes, keepalives) does not keep a silent
    // client logged in. An IDLE client re-issues IDLE in time (RFC 9051 section 6.3.13).
    let mut last_activity = tokio::time::Instant::now();
    loop {
        if stopping && !framer.is_mid_command() {
            let mut out = Responder::new(stream, session.encode_options());
            bye(&mut out, "server shutting down").await;
            return Ok(Ended::Closed);
        }
        let idling = session.is_idling();
        // IDLE, or NOTIFY between commands (never inside a half-received one).
        let listening = session.reports_between_commands() && (idling || !framer.is_mid_command());
        let deadline = last_activity
            + if stopping {
                SHUTDOWN_GRACE
            } else {
                config.idle_timeout
            };
        buf.clear();
        tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => {
                let mut out = Responder::new(stream, session.encode_options());
                let n = match read {
                    Ok(result) => result?,
                    Err(_elapsed) => {
                        let reason = if stopping {
                            "server shutting down"
                        } else {
                            "autologout: idle for too long"
                        };
                        bye(&mut out, reason).await;
                        return Ok(Ended::Closed);
                    }
                };
                if n == 0 {
                    // The client went away without LOGOUT; dropping the session closes files.
                    return Ok(Ended::Closed);
                }
                last_activity = tokio::time::Instant::now();
                framer.push(&buf[..n]);
                while let Some(event) = framer.next_event() {
                    match event {
                        FrameEvent::Command(frame) => {
                            match session.handle_frame(&frame, &mut out).await? {
                                Flow::Continue => {}
                                Flow::Close => {
                                    out.shutdown().await?;
                                    return Ok(Ended::Closed);
                                }
                                Flow::StartTls => {
                                    out.flush().await?;
                                    return Ok(Ended::StartTls);
                                }
                                Flow::Compress => {
                                    out.flush().await?;
                                    return Ok(Ended::Compress);
                                }
                            }
                        }
                        FrameEvent::ContinuationNeeded => {
                            out.push(&Response::Continue("ready for literal data".into()));
                        }
                        FrameEvent::Error(error) => session.frame_error(&error, &mut out),
                    }
                }
                out.flush().await?;
            }
            () = session.wait_change(), if listening => {
                let mut out = Responder::new(stream, session.encode_options());
                session.send_unsolicited(&mut out).await?;
                out.flush().await?;
            }
            () = tokio::time::sleep(config.idle_keepalive), if idling => {
                let mut out = Responder::new(stream, session.encode_options());
                out.push(&Response::Status(StatusResponse::untagged(
                    StatusKind::Ok,
                    None,
                    "still here",
                )));
                out.flush().await?;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                last_activity = tokio::time::Instant::now();
            }
        }
    }
}

async fn bye(out: &mut Responder<'_>, text: &str) {
    out.push(&Response::Status(StatusResponse::untagged(
        StatusKind::Bye,
        None,
        text,
    )));
    let _ = out.shutdown().await;
}

/// Reports a connection's end to the metrics, however its task ends.
struct ClosedOnDrop(Arc<dyn crate::metrics::Metrics>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.connection(false);
    }
}

/// A connection's slot in the global and per-address limits, released on drop.
struct ConnectionGuard {
    _permit: tokio::sync::OwnedSemaphorePermit,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ConnectionGuard {
    fn acquire(
        slots: &Arc<Semaphore>,
        per_ip: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        config: &ServerConfig,
    ) -> Option<Self> {
        let permit = Arc::clone(slots).try_acquire_owned().ok()?;
        let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= config.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(ConnectionGuard {
            _permit: permit,
            per_ip: Arc::clone(per_ip),
            ip,
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

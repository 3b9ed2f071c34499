//! The tokio driver: accept connections, enforce connection limits and timeouts, shuttle lines
//! between the socket and a [`Session`], and shut down gracefully. TLS works as in the IMAP
//! driver: implicit (POP3S, port 995) or STLS on the plain port, over one shared rustls config.

use crate::proto::{self, LineEvent, LineFramer, RespCode};
use crate::session::{Flow, Session, SessionConfig};
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

/// TLS on a listener: implicit (POP3S, the handshake comes first) or STLS on a plain port.
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
    /// Longest command line, CRLF included.
    pub max_line: usize,
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Close a silent connection after this long (RFC 1939 section 3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// How long a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Let clients on loopback authenticate without TLS (the same rule as IMAP's).
    pub loopback_plaintext_auth: bool,
    pub tls: Option<TlsSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            max_line: proto::DEFAULT_MAX_LINE,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout: Duration::from_secs(10 * 60),
            tls_handshake_timeout: Duration::from_secs(30),
            loopback_plaintext_auth: true,
            tls: None,
        }
    }
}

/// Accept connections on `listener` until `shutdown` completes, then stop accepting, end every
/// session (without entering UPDATE, so nothing is deleted) and wait for them.
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
                    tracing::warn!(error = %e, "pop3 accept failed");
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
                    .write_all(b"-ERR [SYS/TEMP] too many connections\r\n")
                    .await;
            });
            continue;
        };
        let trusted = config.loopback_plaintext_auth && peer.ip().is_loopback();
        let session = Session::new(Arc::clone(&store), Arc::clone(&session_config), trusted)
            .with_peer(peer.ip());
        let config = Arc::clone(&config);
        let stop = stop_rx.clone();
        let metrics = Arc::clone(&session_config.metrics);
        metrics.connection(true);
        connections.spawn(async move {
            let _guard = guard;
            if let Err(e) = serve_tcp(session, stream, &config, stop).await {
                tracing::debug!(error = %e, %peer, "pop3 connection ended with an error");
            }
            metrics.connection(false);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serve one TCP connection: implicit TLS first when configured, STLS when asked for.
async fn serve_tcp<M: MailStore>(
    mut session: Session<M>,
    mut tcp: TcpStream,
    config: &ServerConfig,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut framer = LineFramer::new(config.max_line);
    match &config.tls {
        Some(tls) if tls.implicit => {
            let mut stream = handshake(tls, tcp, config).await?;
            session.tls_started();
            greet(&session, &mut stream).await?;
            serve(&mut session, &mut stream, &mut framer, config, stop).await?;
        }
        Some(tls) => {
            session = session.offer_stls();
            greet(&session, &mut tcp).await?;
            if serve(&mut session, &mut tcp, &mut framer, config, stop.clone()).await?
                == Ended::StartTls
            {
                let mut stream = handshake(tls, tcp, config).await?;
                session.tls_started();
                // Input pipelined behind STLS arrived unprotected: drop it (RFC 2595 section 4
                // lets the client send nothing before the handshake).
                framer.clear();
                serve(&mut session, &mut stream, &mut framer, config, stop).await?;
            }
        }
        None => {
            greet(&session, &mut tcp).await?;
            serve(&mut session, &mut tcp, &mut framer, config, stop).await?;
        }
    }
    Ok(())
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
    session: &Session<M>,
    stream: &mut S,
) -> io::Result<()> {
    let mut out = Vec::new();
    session.greeting(&mut out);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Why [`serve`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed,
    StartTls,
}

/// Drive a connection: the read loop, timeouts and shutdown. Returns when the client is gone,
/// has quit, or STLS was accepted. Pipelined commands (RFC 2449 PIPELINING) are answered in
/// order, with one write per batch of input.
pub async fn serve<M: MailStore, S: AsyncRead + AsyncWrite + Unpin + Send>(
    session: &mut Session<M>,
    stream: &mut S,
    framer: &mut LineFramer,
    config: &ServerConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<Ended> {
    let mut buf = vec![0u8; 8 * 1024];
    let mut out = Vec::with_capacity(8 * 1024);
    loop {
        tokio::select! {
            read = tokio::time::timeout(config.idle_timeout, stream.read(&mut buf)) => {
                let n = match read {
                    Ok(result) => result?,
                    Err(_elapsed) => {
                        // RFC 1939 section 3: an autologout timer ends the session without
                        // entering UPDATE.
                        out.clear();
                        proto::err(&mut out, None, "autologout: idle for too long");
                        let _ = stream.write_all(&out).await;
                        let _ = stream.shutdown().await;
                        return Ok(Ended::Closed);
                    }
                };
                if n == 0 {
                    // The client went away without QUIT: nothing is deleted.
                    return Ok(Ended::Closed);
                }
                framer.push(&buf[..n]);
                while let Some(event) = framer.next_event() {
                    let flow = match event {
                        LineEvent::Line(line) => session.handle_line(&line, &mut out).await,
                        LineEvent::TooLong { .. } => {
                            session.line_too_long(&mut out);
                            Flow::Continue
                        }
                    };
                    // Large RETR responses go out as they are made, not all at the end.
                    if out.len() >= 64 * 1024 || flow != Flow::Continue {
                        stream.write_all(&out).await?;
                        out.clear();
                    }
                    match flow {
                        Flow::Continue => {}
                        Flow::Close => {
                            stream.flush().await?;
                            let _ = stream.shutdown().await;
                            return Ok(Ended::Closed);
                        }
                        Flow::StartTls => {
                            stream.flush().await?;
                            return Ok(Ended::StartTls);
                        }
                    }
                }
                stream.write_all(&out).await?;
                out.clear();
                stream.flush().await?;
            }
            _ = stop.changed() => {
                if !framer.has_partial_line() {
                    out.clear();
                    proto::err(&mut out, Some(RespCode::SysTemp), "server shutting down");
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                    return Ok(Ended::Closed);
                }
            }
        }
    }
}

/// A connection's slot in the global and per-address limits, released on drop. (The same
/// shape as the IMAP driver's; both could move to a shared crate with the listener loop.)
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

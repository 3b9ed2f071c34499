//! The tokio driver: accept connections, enforce connection limits and timeouts, shuttle bytes
//! between the socket and a [`Session`], and shut down gracefully.

use crate::proto::{FrameEvent, Framer, Limits, Response, StatusKind, StatusResponse};
use crate::session::{Flow, Responder, Session, SessionConfig};
use sealmail_core::mailstore::MailStore;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

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
    /// Let clients on loopback authenticate without TLS.
    pub loopback_plaintext_auth: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            limits: Limits::default(),
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout: Duration::from_secs(30 * 60),
            loopback_plaintext_auth: true,
        }
    }
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
        let (reader, writer) = stream.into_split();
        let secure = config.loopback_plaintext_auth && peer.ip().is_loopback();
        let session = Session::new(Arc::clone(&store), Arc::clone(&session_config), secure);
        let config = Arc::clone(&config);
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let _guard = guard;
            if let Err(e) = serve(session, reader, Box::new(writer), &config, stop, peer).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Drive one connection: the read loop, IDLE notifications, timeouts and shutdown.
pub async fn serve<M: MailStore>(
    mut session: Session<M>,
    mut reader: impl AsyncRead + Unpin,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    config: &ServerConfig,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) -> io::Result<()> {
    let mut out = Responder::new(writer);
    let mut framer = Framer::new(config.limits);
    let mut buf = vec![0u8; 16 * 1024];
    session.greeting(&mut out);
    out.flush().await?;
    tracing::debug!(%peer, "connection opened");
    loop {
        let idling = session.is_idling();
        tokio::select! {
            read = tokio::time::timeout(config.idle_timeout, reader.read(&mut buf)) => {
                let n = match read {
                    Ok(result) => result?,
                    Err(_elapsed) => {
                        bye(&mut out, "autologout: idle for too long").await;
                        return Ok(());
                    }
                };
                if n == 0 {
                    // The client went away without LOGOUT; dropping the session closes files.
                    return Ok(());
                }
                framer.push(&buf[..n]);
                while let Some(event) = framer.next_event() {
                    match event {
                        FrameEvent::Command(frame) => {
                            if session.handle_frame(&frame, &mut out).await? == Flow::Close {
                                out.shutdown().await?;
                                return Ok(());
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
            () = session.wait_change(), if idling => {
                session.send_updates(&mut out, true).await?;
                out.flush().await?;
            }
            _ = stop.changed() => {
                if !framer.is_mid_command() {
                    bye(&mut out, "server shutting down").await;
                    return Ok(());
                }
            }
        }
    }
}

async fn bye(out: &mut Responder, text: &str) {
    out.push(&Response::Status(StatusResponse::untagged(
        StatusKind::Bye,
        None,
        text,
    )));
    let _ = out.shutdown().await;
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

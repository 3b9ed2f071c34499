//! The tokio driver: accept connections, enforce connection limits and timeouts, run TLS
//! (implicit or STARTTLS), feed bytes to a [`Session`] and resolve its actions through
//! [`LocalDelivery`], and shut down gracefully.

use crate::delivery::LocalDelivery;
use crate::rate_limit::{RateLimiter, RateLimits, ip_key};
use crate::session::{Action, AuthFailure, Mode, RecipientVerdict, Session, SessionConfig};
use sealmail_core::login_limiter::LoginLimiter;
use sealmail_core::mailstore::MailStore;
use sealmail_core::registry::Address;
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

/// TLS on a listener: implicit (port 465 style, the handshake comes first) or STARTTLS.
#[derive(Clone)]
pub struct TlsSettings {
    /// Shared by every listener of the process.
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
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Close a connection silent for this long (RFC 5321 4.5.3.2.7: at least 5 minutes).
    pub idle_timeout: Duration,
    /// How long a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Let submission clients on loopback authenticate without TLS.
    pub loopback_plaintext_auth: bool,
    /// Pause before answering a failed AUTH, to slow down password guessing (the session
    /// also closes after `session.max_errors` failures).
    pub failed_auth_delay: Duration,
    /// Failed-login budget per client IP and per address, shared with IMAP and POP3 so a
    /// guesser gets no extra tries on another port.
    pub login_limiter: Arc<LoginLimiter>,
    pub rate_limits: RateLimits,
    /// On shutdown, how long a client in the middle of a transaction may take to finish it
    /// before it gets `421` (its message was not acknowledged, so the sender retries).
    pub shutdown_grace: Duration,
    pub tls: Option<TlsSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout: Duration::from_secs(5 * 60),
            tls_handshake_timeout: Duration::from_secs(30),
            loopback_plaintext_auth: true,
            failed_auth_delay: Duration::from_secs(2),
            login_limiter: Arc::new(LoginLimiter::default()),
            rate_limits: RateLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Accept connections on `listener` until `shutdown` completes, then stop accepting, let each
/// connection finish its current transaction (idle ones get `421`) and wait for them.
pub async fn run<M: MailStore>(
    listener: TcpListener,
    delivery: Arc<LocalDelivery<M>>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let session_config = Arc::new(config.session.clone());
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let limiters = Arc::new(Limiters::new(&config.rate_limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut accept_errors = 0u32;
    loop {
        while connections.try_join_next().is_some() {}
        let (mut stream, peer) = tokio::select! {
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
        if !limiters.allow_connection(peer.ip()) {
            tracing::info!(%peer, "connection refused: rate limit");
            connections.spawn(async move {
                let _ = stream
                    .write_all(
                        b"421 4.7.0 too many connections from your address, try again later\r\n",
                    )
                    .await;
            });
            continue;
        }
        let Some(guard) = ConnectionGuard::acquire(&slots, &per_ip, peer.ip(), &config) else {
            connections.spawn(async move {
                let _ = stream
                    .write_all(b"421 4.7.0 too many connections, try again later\r\n")
                    .await;
            });
            continue;
        };
        let mut session = Session::new(Arc::clone(&session_config), peer.ip());
        if config.loopback_plaintext_auth && peer.ip().is_loopback() {
            session = session.allow_plaintext_auth();
        }
        let config = Arc::clone(&config);
        let delivery = Arc::clone(&delivery);
        let limiters = Arc::clone(&limiters);
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let _guard = guard;
            if let Err(e) = serve_tcp(session, stream, &delivery, &config, &limiters, stop).await {
                tracing::debug!(error = %e, %peer, "SMTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Why [`drive`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    StartTls,
}

/// Serve one TCP connection: implicit TLS first when configured, STARTTLS when asked for.
async fn serve_tcp<M: MailStore>(
    mut session: Session,
    mut tcp: TcpStream,
    delivery: &LocalDelivery<M>,
    config: &ServerConfig,
    limiters: &Limiters,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut connection = Connection {
        delivery,
        config,
        limiters,
        mail_session: None,
    };
    match &config.tls {
        Some(tls) if tls.implicit => {
            let mut stream = handshake(tls, tcp, config).await?;
            session.tls_started();
            session.greeting();
            connection.drive(&mut session, &mut stream, stop).await?;
        }
        Some(tls) => {
            session = session.offer_starttls();
            session.greeting();
            if connection
                .drive(&mut session, &mut tcp, stop.clone())
                .await?
                == Ended::StartTls
            {
                let mut stream = handshake(tls, tcp, config).await?;
                session.tls_started();
                connection.mail_session = None;
                connection.drive(&mut session, &mut stream, stop).await?;
            }
        }
        None => {
            session.greeting();
            connection.drive(&mut session, &mut tcp, stop).await?;
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

/// What one connection holds besides its state machine.
struct Connection<'a, M: MailStore> {
    delivery: &'a LocalDelivery<M>,
    config: &'a ServerConfig,
    limiters: &'a Limiters,
    /// Submission: the authenticated user's open mailbox, for Sent copies.
    mail_session: Option<M::Session>,
}

impl<M: MailStore> Connection<'_, M> {
    /// Read, run the state machine, write. Returns when the connection is done or STARTTLS
    /// was accepted (its 220 already sent).
    async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        session: &mut Session,
        stream: &mut S,
        mut stop: watch::Receiver<bool>,
    ) -> io::Result<Ended> {
        let mut buf = vec![0u8; 16 * 1024];
        // Set when shutdown is first seen: the end of the grace period for an open transaction.
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            match session.next_action() {
                Action::NeedInput => {
                    let stopping = *stop.borrow();
                    let now = tokio::time::Instant::now();
                    if stopping {
                        let deadline =
                            *stop_deadline.get_or_insert(now + self.config.shutdown_grace);
                        if session.is_idle() || now >= deadline {
                            session.shutting_down();
                            continue;
                        }
                    }
                    write_output(session, stream).await?;
                    let wait = match stop_deadline {
                        Some(deadline) => deadline.saturating_duration_since(now),
                        None => self.config.idle_timeout,
                    };
                    tokio::select! {
                        read = tokio::time::timeout(wait, stream.read(&mut buf)) => {
                            match read {
                                // The client left; whatever transaction was open is dropped
                                // unstored (no 250 was given for it).
                                Ok(Ok(0)) => return Ok(Ended::Closed),
                                Ok(Ok(n)) => session.push_input(&buf[..n]),
                                Ok(Err(e)) => return Err(e),
                                // Shutdown's grace period is over: the top of the loop says 421.
                                Err(_elapsed) if stop_deadline.is_some() => {}
                                Err(_elapsed) => session.timed_out(),
                            }
                        }
                        // Re-checked at the top of the loop; only watched while not stopping,
                        // so a dropped sender cannot make this spin.
                        _ = stop.changed(), if !stopping => {}
                    }
                }
                Action::CheckRecipient { address, size_hint } => {
                    let mut verdict = self.delivery.check_recipient(&address, size_hint).await;
                    // Only authenticated clients get this far on submission (MAIL needs AUTH).
                    if verdict == RecipientVerdict::NotLocal
                        && self.config.session.mode == Mode::Submission
                        && self.delivery.relays()
                    {
                        verdict = RecipientVerdict::Relay;
                    }
                    if verdict == RecipientVerdict::Accepted
                        && !self.limiters.allow_message_for(&address)
                    {
                        tracing::info!(%address, "recipient refused: rate limit");
                        verdict = RecipientVerdict::RateLimited;
                    }
                    session.recipient_checked(address, verdict);
                }
                Action::Deliver(delivery) => {
                    let result = match (&self.config.session.mode, &self.mail_session) {
                        (Mode::Submission, Some(mail_session)) => {
                            // Sent copy, local recipients, outbound queue: all durable
                            // before the 250. A failure part-way means a retry may repeat
                            // the earlier steps, never that a 250 hides a lost message.
                            let copy = delivery.message.clone();
                            match self.delivery.store_sent(mail_session, copy).await {
                                Ok(()) => match self.delivery.relay(&delivery).await {
                                    Ok(()) => self.delivery.deliver(delivery).await,
                                    Err(failure) => Err(failure),
                                },
                                Err(failure) => Err(failure),
                            }
                        }
                        _ => self.delivery.deliver(delivery).await,
                    };
                    session.delivered(result);
                }
                Action::Authenticate(credentials) => {
                    let peer = Some(session.peer());
                    let limiter = &self.config.login_limiter;
                    let username = credentials.username.clone();
                    if !limiter.allows(peer, &username) {
                        tracing::warn!(?peer, "submission AUTH refused: too many failures");
                        tokio::time::sleep(self.config.failed_auth_delay).await;
                        session.authenticated(Err(AuthFailure::TooManyFailures));
                        continue;
                    }
                    match self.delivery.authenticate(credentials).await {
                        Ok((address, mail_session)) => {
                            limiter.record_success(&username);
                            self.mail_session = Some(mail_session);
                            session.authenticated(Ok(address));
                        }
                        Err(failure) => {
                            if failure == AuthFailure::InvalidCredentials {
                                tracing::info!(?peer, "submission AUTH failed");
                                limiter.record_failure(peer, &username);
                                tokio::time::sleep(self.config.failed_auth_delay).await;
                            }
                            session.authenticated(Err(failure));
                        }
                    }
                }
                Action::StartTls => {
                    write_output(session, stream).await?;
                    return Ok(Ended::StartTls);
                }
                Action::Close => {
                    write_output(session, stream).await?;
                    let _ = stream.shutdown().await;
                    return Ok(Ended::Closed);
                }
            }
        }
    }
}

async fn write_output<S: AsyncWrite + Unpin>(
    session: &mut Session,
    stream: &mut S,
) -> io::Result<()> {
    if session.has_output() {
        stream.write_all(&session.take_output()).await?;
        stream.flush().await?;
    }
    Ok(())
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

/// The rate limiters of one listener.
#[derive(Debug)]
struct Limiters {
    connections_per_ip: Option<RateLimiter<IpAddr>>,
    messages_per_recipient: Option<RateLimiter<Address>>,
}

impl Limiters {
    fn new(limits: &RateLimits) -> Self {
        Limiters {
            connections_per_ip: limits.connections_per_ip.map(RateLimiter::new),
            messages_per_recipient: limits.messages_per_recipient.map(RateLimiter::new),
        }
    }

    fn allow_connection(&self, ip: IpAddr) -> bool {
        self.connections_per_ip
            .as_ref()
            .is_none_or(|limiter| limiter.try_acquire(&ip_key(ip)))
    }

    fn allow_message_for(&self, recipient: &Address) -> bool {
        self.messages_per_recipient
            .as_ref()
            .is_none_or(|limiter| limiter.try_acquire(recipient))
    }
}

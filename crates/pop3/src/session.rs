//! The POP3 state machine (RFC 1939 section 3): AUTHORIZATION, then TRANSACTION on a snapshot
//! of the INBOX taken at login, then UPDATE at QUIT, where messages marked by DELE are
//! removed. A session that ends any other way removes nothing.

use crate::metrics::{Metrics, NoMetrics};
use crate::proto::{self, Command, ParseError, RespCode, Secret};
use base64ct::{Base64, Encoding};
use sealmail_core::Error as StoreError;
use sealmail_core::login_limiter::LoginLimiter;
use sealmail_core::mailstore::{MailSession, MailStore, RawMessage};
use sealmail_core::store::UidSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The only folder POP3 shows.
pub const INBOX: &str = "INBOX";

/// Per-server settings every session reads.
#[derive(Clone)]
pub struct SessionConfig {
    /// Pause before answering a failed login, to slow password guessing.
    pub failed_login_delay: Duration,
    /// Greeting text after `+OK`.
    pub greeting: String,
    /// Failed-login limits, shared with the other protocol servers of the process.
    pub login_limiter: Arc<LoginLimiter>,
    /// Command, login and connection counters of the binary (none by default).
    pub metrics: Arc<dyn Metrics>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("failed_login_delay", &self.failed_login_delay)
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            failed_login_delay: Duration::from_secs(2),
            greeting: "sealmail POP3 ready".into(),
            login_limiter: Arc::new(LoginLimiter::default()),
            metrics: Arc::new(NoMetrics),
        }
    }
}

/// What the connection driver does after a line was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// QUIT (or a fatal error): flush and close.
    Close,
    /// STLS was accepted: flush, discard buffered input, and run the TLS handshake.
    StartTls,
}

/// One message of the maildrop as the session numbers it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    uid: u32,
    /// Octets as RETR sends them, before dot-stuffing.
    size: u64,
    deleted: bool,
}

/// The TRANSACTION state: the store session (holding the maildrop lock) and the message list
/// fixed at login (RFC 1939: message numbers do not change during a session).
struct Maildrop<S> {
    /// Shared with a read-ahead task (see [`Prefetch`]).
    mail: Arc<S>,
    uidvalidity: u32,
    messages: Vec<Entry>,
    prefetch: Option<Prefetch>,
}

/// Read-ahead: after RETR n, the next message is read from the store while the client is still
/// receiving this one (clients download in order), so the decryption and decompression of one
/// message overlap the transfer of the previous.
struct Prefetch {
    uid: u32,
    task: tokio::task::JoinHandle<sealmail_core::Result<Vec<RawMessage>>>,
}

impl<S> Drop for Maildrop<S> {
    /// A pending read-ahead must not keep the store session (and its maildrop lock) alive.
    fn drop(&mut self) {
        if let Some(prefetch) = self.prefetch.take() {
            prefetch.task.abort();
        }
    }
}

impl<S> Maildrop<S> {
    /// The live (not deleted) message numbered `number`.
    fn live(&self, number: u32) -> Result<Entry, String> {
        match number
            .checked_sub(1)
            .and_then(|i| self.messages.get(i as usize))
        {
            Some(entry) if entry.deleted => Err(format!("message {number} already deleted")),
            Some(entry) => Ok(*entry),
            None => Err(format!("no such message: {number}")),
        }
    }

    fn totals(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|e| !e.deleted)
            .fold((0, 0), |(n, size), e| (n + 1, size + e.size))
    }

    fn unique_id(&self, entry: &Entry) -> String {
        // Stable across sessions: a UID is never reused within one UIDVALIDITY.
        format!("{}.{}", self.uidvalidity, entry.uid)
    }
}

enum State<S> {
    Authorization {
        /// The name given by USER, awaiting PASS.
        user: Option<String>,
        /// AUTH PLAIN sent `+ ` and waits for the client's response line.
        awaiting_sasl: bool,
    },
    Transaction(Maildrop<S>),
    Closed,
}

/// One connection's POP3 state.
pub struct Session<M: MailStore> {
    store: Arc<M>,
    config: Arc<SessionConfig>,
    state: State<M::Session>,
    /// The peer may authenticate over this transport (TLS is on, or plaintext is allowed
    /// for it, e.g. on loopback).
    auth_allowed: bool,
    tls_active: bool,
    /// TLS is configured for this plain connection, so STLS is offered.
    stls_offered: bool,
    peer: Option<IpAddr>,
}

impl<M: MailStore> Session<M> {
    /// A new session; `plaintext_auth_allowed` says whether USER/PASS and AUTH may be used
    /// before TLS (the loopback rule of `loopback_plaintext_auth`).
    pub fn new(store: Arc<M>, config: Arc<SessionConfig>, plaintext_auth_allowed: bool) -> Self {
        Session {
            store,
            config,
            state: State::Authorization {
                user: None,
                awaiting_sasl: false,
            },
            auth_allowed: plaintext_auth_allowed,
            tls_active: false,
            stls_offered: false,
            peer: None,
        }
    }

    pub fn with_peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// TLS is configured: offer STLS while the connection is plain.
    pub fn offer_stls(mut self) -> Self {
        self.stls_offered = true;
        self
    }

    /// The TLS handshake completed (implicit TLS, or after STLS). RFC 2595 section 4: the
    /// client starts over, so a USER given before is forgotten.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.auth_allowed = true;
        if let State::Authorization { user, .. } = &mut self.state {
            *user = None;
        }
    }

    pub fn greeting(&self, out: &mut Vec<u8>) {
        proto::ok(out, &self.config.greeting);
    }

    /// In TRANSACTION state (for logs and tests).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// A line longer than the limit arrived; it was discarded.
    pub fn line_too_long(&mut self, out: &mut Vec<u8>) {
        if let State::Authorization { awaiting_sasl, .. } = &mut self.state {
            *awaiting_sasl = false;
        }
        proto::err(out, None, "line too long");
    }

    /// Handle one client line (without its line ending), appending the response to `out`.
    pub async fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Flow {
        let started = Instant::now();
        let answer_start = out.len();
        let (name, flow) = self.dispatch_line(line, out).await;
        let ok = !out[answer_start..].starts_with(b"-ERR");
        self.config.metrics.command(name, ok, started.elapsed());
        flow
    }

    /// [`Self::handle_line`] without the metrics: the command's name for them, and the flow.
    async fn dispatch_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> (&'static str, Flow) {
        if let State::Authorization {
            awaiting_sasl: awaiting @ true,
            ..
        } = &mut self.state
        {
            *awaiting = false;
            if line == b"*" {
                proto::err(out, None, "authentication cancelled");
                return ("AUTH", Flow::Continue);
            }
            let response = Secret::new(line);
            return ("AUTH", self.sasl_plain(&response, out).await);
        }
        let command = match proto::parse_command(line) {
            Ok(command) => command,
            Err(ParseError::UnknownCommand | ParseError::Empty) => {
                proto::err(out, None, "unknown command");
                return ("UNKNOWN", Flow::Continue);
            }
            Err(e @ ParseError::Syntax { command, .. }) => {
                proto::err(out, None, &e.to_string());
                return (command, Flow::Continue);
            }
        };
        let name = command.name();
        tracing::trace!(command = name, "pop3 command");
        let flow = match command {
            Command::Capa => {
                self.capa(out);
                Flow::Continue
            }
            Command::Noop => {
                if self.is_authenticated() {
                    proto::ok(out, "");
                } else {
                    wrong_state(out);
                }
                Flow::Continue
            }
            Command::Quit => self.quit(out).await,
            Command::Apop => {
                proto::err(out, None, "APOP is not supported");
                Flow::Continue
            }
            Command::Stls => self.stls(out),
            Command::User(name) => {
                self.user(name, out);
                Flow::Continue
            }
            Command::Pass(password) => self.pass(&password, out).await,
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response, out).await,
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_) => {
                self.transaction(command, out).await;
                Flow::Continue
            }
        };
        (name, flow)
    }

    fn capa(&self, out: &mut Vec<u8>) {
        proto::ok(out, "capability list follows");
        for cap in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            proto::multiline_line(out, cap);
        }
        if matches!(self.state, State::Authorization { .. }) {
            if self.auth_allowed {
                proto::multiline_line(out, "USER");
                proto::multiline_line(out, "SASL PLAIN");
            }
            if self.stls_offered && !self.tls_active {
                proto::multiline_line(out, "STLS");
            }
        }
        proto::multiline_line(out, "EXPIRE NEVER");
        proto::multiline_line(
            out,
            concat!("IMPLEMENTATION sealmail-", env!("CARGO_PKG_VERSION")),
        );
        proto::end_multiline(out);
    }

    fn stls(&mut self, out: &mut Vec<u8>) -> Flow {
        if !matches!(self.state, State::Authorization { .. }) {
            wrong_state(out);
        } else if self.tls_active {
            proto::err(out, None, "TLS is already active");
        } else if !self.stls_offered {
            proto::err(out, None, "STLS is not available");
        } else {
            proto::ok(out, "begin TLS negotiation");
            return Flow::StartTls;
        }
        Flow::Continue
    }

    /// Authentication is refused on this transport until TLS; writes the refusal.
    fn refuse_plaintext(&self, out: &mut Vec<u8>) -> bool {
        if self.auth_allowed {
            return false;
        }
        let text = if self.stls_offered {
            "authentication requires TLS: use STLS first"
        } else {
            "authentication requires TLS"
        };
        proto::err(out, Some(RespCode::SysPerm), text);
        true
    }

    fn user(&mut self, name: String, out: &mut Vec<u8>) {
        let State::Authorization { user, .. } = &mut self.state else {
            return wrong_state(out);
        };
        if !self.auth_allowed {
            self.refuse_plaintext(out);
            return;
        }
        *user = Some(name);
        proto::ok(out, "send PASS");
    }

    async fn pass(&mut self, password: &Secret, out: &mut Vec<u8>) -> Flow {
        let State::Authorization { user, .. } = &mut self.state else {
            wrong_state(out);
            return Flow::Continue;
        };
        let Some(name) = user.take() else {
            proto::err(out, None, "send USER first");
            return Flow::Continue;
        };
        if self.refuse_plaintext(out) {
            return Flow::Continue;
        }
        let Ok(password) = std::str::from_utf8(password.expose()) else {
            self.failed_login(&name, out).await;
            return Flow::Continue;
        };
        self.sign_in(&name, password, out).await
    }

    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial_response: Option<Secret>,
        out: &mut Vec<u8>,
    ) -> Flow {
        let State::Authorization { awaiting_sasl, .. } = &mut self.state else {
            wrong_state(out);
            return Flow::Continue;
        };
        let Some(mechanism) = mechanism else {
            // RFC 5034 section 4 leaves a bare AUTH open; like many servers we list the
            // mechanisms, which some clients (fetchmail among them) probe for.
            proto::ok(out, "mechanisms follow");
            proto::multiline_line(out, "PLAIN");
            proto::end_multiline(out);
            return Flow::Continue;
        };
        if mechanism != "PLAIN" {
            proto::err(out, None, "unsupported authentication mechanism");
            return Flow::Continue;
        }
        if !self.auth_allowed {
            self.refuse_plaintext(out);
            return Flow::Continue;
        }
        match initial_response {
            // `=` is an empty initial response (RFC 5034 section 4), which PLAIN rejects.
            Some(response) if response.expose() == b"=" => {
                self.sasl_plain(&Secret::new(b""), out).await
            }
            Some(response) => self.sasl_plain(&response, out).await,
            None => {
                *awaiting_sasl = true;
                out.extend_from_slice(b"+ \r\n");
                Flow::Continue
            }
        }
    }

    /// Decode `base64(authzid NUL authcid NUL password)` (RFC 4616) and sign in.
    async fn sasl_plain(&mut self, encoded: &Secret, out: &mut Vec<u8>) -> Flow {
        let decoded = std::str::from_utf8(encoded.expose())
            .ok()
            .and_then(|e| Base64::decode_vec(e).ok())
            .map(Zeroizing::new);
        let Some(decoded) = decoded else {
            proto::err(out, None, "invalid base64 response");
            return Flow::Continue;
        };
        let mut fields = decoded.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            proto::err(out, None, "malformed PLAIN response");
            return Flow::Continue;
        };
        if !authzid.is_empty() && authzid != authcid {
            proto::err(out, Some(RespCode::Auth), "cannot act as another user");
            return Flow::Continue;
        }
        let Ok(user) = std::str::from_utf8(authcid) else {
            proto::err(out, Some(RespCode::Auth), "authentication failed");
            return Flow::Continue;
        };
        let user = user.to_string();
        let Ok(password) = std::str::from_utf8(password) else {
            self.failed_login(&user, out).await;
            return Flow::Continue;
        };
        self.sign_in(&user, password, out).await
    }

    async fn failed_login(&self, user: &str, out: &mut Vec<u8>) {
        tracing::info!(peer = ?self.peer, "pop3 login failed");
        self.config.metrics.login(false);
        self.config.login_limiter.record_failure(self.peer, user);
        tokio::time::sleep(self.config.failed_login_delay).await;
        proto::err(out, Some(RespCode::Auth), "authentication failed");
    }

    async fn sign_in(&mut self, user: &str, password: &str, out: &mut Vec<u8>) -> Flow {
        let limiter = Arc::clone(&self.config.login_limiter);
        if !limiter.allows(self.peer, user) {
            tracing::warn!(peer = ?self.peer, "pop3 login refused: too many failures");
            tokio::time::sleep(self.config.failed_login_delay).await;
            proto::err(
                out,
                Some(RespCode::SysTemp),
                "too many failed logins, try again later",
            );
            return Flow::Continue;
        }
        let mail = match self.store.login(user, password).await {
            Ok(mail) => mail,
            Err(StoreError::WrongPassword) => {
                self.failed_login(user, out).await;
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "pop3 login could not open the mailbox");
                proto::err(
                    out,
                    Some(RespCode::SysTemp),
                    "mailbox temporarily unavailable",
                );
                return Flow::Continue;
            }
        };
        limiter.record_success(user);
        self.config.metrics.login(true);
        match mail.lock_maildrop().await {
            Ok(true) => {}
            Ok(false) => {
                // The password was right; the refusal is about the lock (RFC 2449 IN-USE).
                proto::err(
                    out,
                    Some(RespCode::InUse),
                    "maildrop already locked by another POP3 session",
                );
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "pop3 maildrop lock failed");
                proto::err(out, Some(RespCode::SysTemp), "maildrop unavailable");
                return Flow::Continue;
            }
        }
        let loaded = async {
            let folder = mail.folder(INBOX).await?;
            let summaries = mail.summaries(INBOX, UidSet::all()).await?;
            Ok::<_, StoreError>((folder, summaries))
        }
        .await;
        let (folder, summaries) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "pop3 could not list the INBOX");
                proto::err(out, Some(RespCode::SysTemp), "maildrop unavailable");
                return Flow::Continue;
            }
        };
        let maildrop = Maildrop {
            mail: Arc::new(mail),
            uidvalidity: folder.uidvalidity,
            prefetch: None,
            messages: summaries
                .iter()
                .map(|s| Entry {
                    uid: s.uid,
                    // What RETR sends (CRLF line endings), as RFC 1939 section 11 sizes mean.
                    size: s.crlf_size,
                    deleted: false,
                })
                .collect(),
        };
        let (count, size) = maildrop.totals();
        tracing::info!(peer = ?self.peer, "pop3 login succeeded");
        self.state = State::Transaction(maildrop);
        proto::ok(
            out,
            &format!("maildrop locked and ready, {count} messages ({size} octets)"),
        );
        Flow::Continue
    }

    async fn transaction(&mut self, command: Command, out: &mut Vec<u8>) {
        let State::Transaction(maildrop) = &mut self.state else {
            return wrong_state(out);
        };
        match command {
            Command::Stat => {
                let (count, size) = maildrop.totals();
                proto::ok(out, &format!("{count} {size}"));
            }
            Command::List(Some(n)) => match maildrop.live(n) {
                Ok(entry) => proto::ok(out, &format!("{n} {}", entry.size)),
                Err(text) => proto::err(out, None, &text),
            },
            Command::List(None) => {
                let (count, size) = maildrop.totals();
                proto::ok(out, &format!("{count} messages ({size} octets)"));
                for (i, entry) in maildrop.messages.iter().enumerate() {
                    if !entry.deleted {
                        proto::multiline_line(out, &format!("{} {}", i + 1, entry.size));
                    }
                }
                proto::end_multiline(out);
            }
            Command::Uidl(Some(n)) => match maildrop.live(n) {
                Ok(entry) => proto::ok(out, &format!("{n} {}", maildrop.unique_id(&entry))),
                Err(text) => proto::err(out, None, &text),
            },
            Command::Uidl(None) => {
                proto::ok(out, "unique-id listing follows");
                for (i, entry) in maildrop.messages.iter().enumerate() {
                    if !entry.deleted {
                        let line = format!("{} {}", i + 1, maildrop.unique_id(entry));
                        proto::multiline_line(out, &line);
                    }
                }
                proto::end_multiline(out);
            }
            Command::Retr(n) => send_message(maildrop, n, None, out).await,
            Command::Top { message, lines } => {
                send_message(maildrop, message, Some(lines), out).await
            }
            Command::Dele(n) => match maildrop.live(n) {
                Ok(_) => {
                    maildrop.messages[n as usize - 1].deleted = true;
                    proto::ok(out, &format!("message {n} deleted"));
                }
                Err(text) => proto::err(out, None, &text),
            },
            Command::Rset => {
                for entry in &mut maildrop.messages {
                    entry.deleted = false;
                }
                let (count, size) = maildrop.totals();
                proto::ok(
                    out,
                    &format!("maildrop has {count} messages ({size} octets)"),
                );
            }
            _ => wrong_state(out),
        }
    }

    /// QUIT: in TRANSACTION, enter UPDATE and remove the messages marked by DELE.
    async fn quit(&mut self, out: &mut Vec<u8>) -> Flow {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Transaction(mut maildrop) => {
                // The session, and with it the maildrop lock, must end with QUIT's answer.
                if let Some(prefetch) = maildrop.prefetch.take() {
                    prefetch.task.abort();
                    let _ = prefetch.task.await;
                }
                let doomed: Vec<u32> = maildrop
                    .messages
                    .iter()
                    .filter(|e| e.deleted)
                    .map(|e| e.uid)
                    .collect();
                let result = if doomed.is_empty() {
                    Ok(Vec::new())
                } else {
                    maildrop
                        .mail
                        .remove_messages(INBOX, UidSet::from_uids(doomed))
                        .await
                };
                match result {
                    Ok(_) => {
                        let (count, _) = maildrop.totals();
                        proto::ok(out, &format!("signing off ({count} messages left)"));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "pop3 UPDATE failed");
                        proto::err(
                            out,
                            Some(RespCode::SysTemp),
                            "some deleted messages were not removed",
                        );
                    }
                }
            }
            _ => proto::ok(out, "signing off"),
        }
        Flow::Close
    }
}

async fn send_message<S: MailSession>(
    maildrop: &mut Maildrop<S>,
    number: u32,
    body_lines: Option<u32>,
    out: &mut Vec<u8>,
) {
    let entry = match maildrop.live(number) {
        Ok(entry) => entry,
        Err(text) => return proto::err(out, None, &text),
    };
    let prefetched = match maildrop.prefetch.take() {
        Some(prefetch) if prefetch.uid == entry.uid => prefetch.task.await.ok(),
        Some(stale) => {
            stale.task.abort();
            None
        }
        None => None,
    };
    let fetched = match prefetched {
        Some(result) => result,
        None => {
            maildrop
                .mail
                .fetch_raw(INBOX, UidSet::from_uids([entry.uid]))
                .await
        }
    };
    match fetched {
        Ok(mut found) => match found.pop() {
            Some(message) => {
                if body_lines.is_none() {
                    read_ahead(maildrop, number);
                }
                proto::ok(out, &format!("{} octets", entry.size));
                proto::write_message(out, &message.bytes, body_lines);
            }
            // An IMAP session expunged it since this session started.
            None => proto::err(
                out,
                None,
                &format!("message {number} was removed by another session"),
            ),
        },
        Err(e) => {
            tracing::error!(error = %e, "pop3 could not read a message");
            proto::err(out, Some(RespCode::SysTemp), "message unavailable");
        }
    }
}

/// Start reading the next live message after `number` in the background.
fn read_ahead<S: MailSession>(maildrop: &mut Maildrop<S>, number: u32) {
    let Some(next) = maildrop
        .messages
        .iter()
        .skip(number as usize)
        .find(|e| !e.deleted)
    else {
        return;
    };
    let (uid, mail) = (next.uid, Arc::clone(&maildrop.mail));
    let task = tokio::spawn(async move { mail.fetch_raw(INBOX, UidSet::from_uids([uid])).await });
    maildrop.prefetch = Some(Prefetch { uid, task });
}

fn wrong_state(out: &mut Vec<u8>) {
    proto::err(out, None, "command not valid in this state");
}

//! The IMAP session state machine: one per connection. It takes framed client input, runs
//! commands against a [`MailSession`] and writes responses through a [`Responder`]. The
//! commands themselves live one per file under [`op`].

mod convert;
mod limiter;
mod notify;
mod op;
mod responder;
mod selected;

pub use limiter::LoginLimiter;
pub use responder::Responder;

use crate::metrics::{Metrics, NoMetrics, Outcome};
use crate::proto::{
    Code, Command, CommandBody, EncodeOptions, FrameError, ParseOptions, Response, SeqNumber,
    SequenceSet, StatusKind, StatusResponse, Tag, is_idle_done, parse_command,
};
use notify::{Notify, Overflow};
use sealmail_core::Error as StoreError;
use sealmail_core::mailstore::{Change, MailSession, MailStore};
use selected::{Report, Selected};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Per-server settings every session reads.
#[derive(Clone)]
pub struct SessionConfig {
    /// Allow LOGIN/AUTHENTICATE without TLS (set for loopback connections or by configuration).
    pub allow_plaintext_auth: bool,
    /// Pause before answering a failed login, to slow password guessing.
    pub failed_login_delay: Duration,
    /// Largest message APPEND accepts (APPENDLIMIT).
    pub max_message_size: u64,
    /// Greeting text after `* OK`.
    pub greeting: String,
    /// Failed-login limits shared by every session of the server.
    pub login_limiter: Arc<LoginLimiter>,
    pub metrics: Arc<dyn Metrics>,
    /// NOTIFY events for other mailboxes a session may hold unreported before it gives up with
    /// `[NOTIFICATIONOVERFLOW]` (RFC 5465 section 5.8).
    pub notify_queue_limit: usize,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("failed_login_delay", &self.failed_login_delay)
            .field("max_message_size", &self.max_message_size)
            .field("login_limiter", &self.login_limiter)
            .field("notify_queue_limit", &self.notify_queue_limit)
            .finish_non_exhaustive()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            allow_plaintext_auth: false,
            failed_login_delay: Duration::from_secs(2),
            max_message_size: sealmail_core::store::DEFAULT_MAX_MESSAGE_SIZE,
            greeting: "sealmail IMAP4rev2 ready".into(),
            login_limiter: Arc::new(LoginLimiter::default()),
            metrics: Arc::new(NoMetrics),
            notify_queue_limit: 1000,
        }
    }
}

/// What the connection driver does after a frame was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The session ended (LOGOUT): flush and close.
    Close,
    /// STARTTLS was accepted: flush, discard buffered input, and run the TLS handshake.
    StartTls,
    /// COMPRESS DEFLATE was accepted: flush the OK, then compress both directions.
    Compress,
}

/// Extensions the client turned on with ENABLE (RFC 5161).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub rev2: bool,
    /// UTF8=ACCEPT (RFC 6855): UTF-8 mailbox names and strings, APPEND's UTF8 data item.
    pub utf8_accept: bool,
}

impl Enabled {
    /// Mailbox names travel as UTF-8 rather than modified UTF-7.
    pub fn utf8_mailboxes(&self) -> bool {
        self.rev2 || self.utf8_accept
    }
}

/// What the session waits for besides the next command.
enum Pending {
    None,
    /// IDLE is running; `DONE` ends it with a tagged OK for this tag.
    Idle(Tag),
    /// AUTHENTICATE PLAIN waits for the client's base64 response line.
    AuthPlain(Tag),
}

pub(crate) enum State<S> {
    NotAuthenticated,
    Authenticated(Authed<S>),
    Logout,
}

/// An authenticated session: the store handle, its change feed, and the selected folder.
pub(crate) struct Authed<S> {
    pub mail: S,
    pub changes: broadcast::Receiver<Change>,
    pub selected: Option<Selected>,
    /// Set when a change for the selected folder arrived and untagged updates are due.
    pub dirty: bool,
}

/// One connection's IMAP state.
pub struct Session<M: MailStore> {
    pub(crate) store: Arc<M>,
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) state: State<M::Session>,
    pub(crate) enabled: Enabled,
    /// TLS is active, or the peer is trusted for plaintext authentication.
    pub(crate) secure: bool,
    /// The client's address, for login rate limits and logs.
    pub(crate) peer: Option<std::net::IpAddr>,
    /// TLS is configured for this plain connection, so STARTTLS is offered.
    pub(crate) starttls_offered: bool,
    /// COMPRESS DEFLATE is active (RFC 4978).
    pub(crate) compressed: bool,
    /// What NOTIFY SET asked for (RFC 5465); `None` before it and after NOTIFY NONE.
    pub(crate) notify: Option<Notify>,
    /// The NOTIFY queue overflowed; `[NOTIFICATIONOVERFLOW]` is due.
    notify_overflowed: bool,
    pending: Pending,
}

/// The tagged completion of a command: OK with an optional code.
pub(crate) struct Done {
    pub code: Option<Code>,
    pub text: String,
}

impl Done {
    pub fn ok(text: impl Into<String>) -> Self {
        Done {
            code: None,
            text: text.into(),
        }
    }

    pub fn with_code(code: Code, text: impl Into<String>) -> Self {
        Done {
            code: Some(code),
            text: text.into(),
        }
    }
}

/// Why a command did not complete with OK.
#[derive(Debug)]
pub(crate) enum Failure {
    No(Option<Code>, String),
    Bad(String),
    /// Writing to the client failed: the connection is gone.
    Io(io::Error),
}

impl Failure {
    pub fn no_code(code: Code, text: impl Into<String>) -> Self {
        Failure::No(Some(code), text.into())
    }

    pub fn bad(text: impl Into<String>) -> Self {
        Failure::Bad(text.into())
    }

    /// Map a store error to a NO with the code RFC 5530 defines for it; `missing` is the code
    /// for a folder that does not exist (`TRYCREATE` for APPEND/COPY/MOVE, else `NONEXISTENT`).
    pub fn store(error: StoreError, missing: Code) -> Self {
        match error {
            StoreError::NoSuchFolder(name) => {
                Failure::no_code(missing, format!("no folder named {name:?}"))
            }
            StoreError::FolderExists(name) => {
                Failure::no_code(Code::AlreadyExists, format!("{name:?} already exists"))
            }
            e @ (StoreError::FolderNotAllowed(..) | StoreError::InvalidFolderName(..)) => {
                Failure::no_code(Code::Cannot, e.to_string())
            }
            e @ StoreError::QuotaExceeded { .. } => {
                Failure::no_code(Code::OverQuota, e.to_string())
            }
            e @ StoreError::MessageTooLarge { .. } => Failure::no_code(Code::TooBig, e.to_string()),
            StoreError::WrongPassword => {
                Failure::no_code(Code::AuthenticationFailed, "authentication failed")
            }
            StoreError::NoSuchMessage(uid) => {
                Failure::no_code(Code::ExpungeIssued, format!("message {uid} was expunged"))
            }
            e => {
                tracing::error!(error = %e, "store failure");
                Failure::no_code(Code::ServerBug, "internal error, see server log")
            }
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

pub(crate) type OpResult = Result<Done, Failure>;

impl<M: MailStore> Session<M> {
    pub fn new(store: Arc<M>, config: Arc<SessionConfig>, secure: bool) -> Self {
        Session {
            store,
            config,
            state: State::NotAuthenticated,
            enabled: Enabled::default(),
            secure,
            peer: None,
            starttls_offered: false,
            compressed: false,
            notify: None,
            notify_overflowed: false,
            pending: Pending::None,
        }
    }

    /// Offer STARTTLS on this (plain) connection.
    pub fn offer_starttls(mut self) -> Self {
        self.starttls_offered = true;
        self
    }

    /// The TLS handshake after STARTTLS (or on an implicit-TLS port) succeeded.
    pub fn tls_started(&mut self) {
        self.secure = true;
        self.starttls_offered = false;
    }

    /// Record the client's IP address (login rate limits are kept per address).
    pub fn with_peer(mut self, peer: std::net::IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The greeting sent when the connection opens.
    pub fn greeting(&self, out: &mut Responder<'_>) {
        let code = Code::Capability(self.capabilities());
        out.push(&Response::Status(StatusResponse::untagged(
            StatusKind::Ok,
            Some(code),
            self.config.greeting.clone(),
        )));
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.pending, Pending::Idle(_))
    }

    /// Whether changes are reported as they happen rather than at the next command: during
    /// IDLE, and whenever NOTIFY is on, which tells the server that the client "listens for
    /// event notifications all the time (even when no command is in progress)" (RFC 5465
    /// section 3.1). The driver then waits in [`Session::wait_change`] between commands and
    /// reports with [`Session::send_unsolicited`].
    pub fn reports_between_commands(&self) -> bool {
        self.is_idling() || self.notify.is_some()
    }

    pub fn is_logged_out(&self) -> bool {
        matches!(self.state, State::Logout)
    }

    /// How responses are encoded for this session (UTF-8 mailbox names after IMAP4rev2).
    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            utf8_mailboxes: self.enabled.utf8_mailboxes(),
        }
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            utf8_mailboxes: self.enabled.utf8_mailboxes(),
        }
    }

    /// Handle one framed input (a command, or a continuation line for IDLE / AUTHENTICATE).
    pub async fn handle_frame(
        &mut self,
        frame: &[u8],
        out: &mut Responder<'_>,
    ) -> io::Result<Flow> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Idle(tag) => {
                if is_idle_done(frame) {
                    self.send_updates(out, true).await?;
                    complete(out, &tag, Ok(Done::ok("IDLE terminated")));
                } else {
                    complete(out, &tag, Err(Failure::bad("expected DONE")));
                }
                return Ok(Flow::Continue);
            }
            Pending::AuthPlain(tag) => {
                let result = op::login::authenticate_response(self, frame).await;
                self.finish(out, &tag, result).await?;
                return Ok(Flow::Continue);
            }
            Pending::None => {}
        }
        let command = match parse_command(frame, self.parse_options()) {
            Ok(command) => command,
            Err(failure) => {
                let response = match failure.tag {
                    Some(tag) => StatusResponse::tagged(
                        tag,
                        StatusKind::Bad,
                        Some(Code::Parse),
                        failure.error.to_string(),
                    ),
                    None => StatusResponse::untagged(
                        StatusKind::Bad,
                        Some(Code::Parse),
                        failure.error.to_string(),
                    ),
                };
                out.push(&Response::Status(response));
                return Ok(Flow::Continue);
            }
        };
        let name = command.body.name();
        let started = std::time::Instant::now();
        let (flow, outcome) = self.execute(command, out).await?;
        // ENABLE may have changed how mailbox names are written for the commands that follow.
        out.options = self.encode_options();
        self.config
            .metrics
            .command(name, outcome, started.elapsed());
        tracing::debug!(command = name, outcome = outcome.as_str(), "command");
        Ok(flow)
    }

    /// Answer a command the framer refused (too long, literal too big).
    pub fn frame_error(&mut self, error: &FrameError, out: &mut Responder<'_>) {
        let (kind, code) = match error {
            FrameError::LiteralTooBig {
                synchronizing: true,
                ..
            } => (StatusKind::No, Some(Code::TooBig)),
            FrameError::LiteralTooBig { .. } => (StatusKind::Bad, Some(Code::TooBig)),
            FrameError::LineTooLong { .. } => (StatusKind::Bad, Some(Code::TooBig)),
        };
        let response = StatusResponse {
            tag: error.tag().cloned(),
            kind,
            code,
            text: error.to_string(),
        };
        out.push(&Response::Status(response));
    }

    async fn execute(
        &mut self,
        command: Command,
        out: &mut Responder<'_>,
    ) -> io::Result<(Flow, Outcome)> {
        let Command { tag, body } = command;
        if let Err(reason) = self.check_state(&body) {
            complete(out, &tag, Err(Failure::bad(reason)));
            return Ok((Flow::Continue, Outcome::Bad));
        }
        // RFC 9051 section 7.5.1: no EXPUNGE during FETCH, STORE and SEARCH by sequence number,
        // because it would shift the numbers the client is using.
        let allow_expunge = match &body {
            CommandBody::Fetch { uid, .. }
            | CommandBody::Store { uid, .. }
            | CommandBody::Copy { uid, .. }
            | CommandBody::Sort { uid, .. }
            | CommandBody::Thread { uid, .. } => *uid,
            CommandBody::Search(search) => search.uid,
            _ => true,
        };
        let result = match body {
            CommandBody::Capability => op::capability::run(self, out),
            CommandBody::Noop | CommandBody::Check => Ok(Done::ok("NOOP completed")),
            CommandBody::Logout => {
                out.push(&Response::Status(StatusResponse::untagged(
                    StatusKind::Bye,
                    None,
                    "logging out",
                )));
                self.state = State::Logout;
                complete(out, &tag, Ok(Done::ok("LOGOUT completed")));
                return Ok((Flow::Close, Outcome::Ok));
            }
            CommandBody::Id(_) => op::id::run(out),
            CommandBody::Enable(capabilities) => op::enable::run(self, capabilities, out),
            CommandBody::Login { username, password } => {
                op::login::login(self, &username, password).await
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => match op::login::authenticate(self, &mechanism, initial_response, out).await {
                Ok(None) => {
                    self.pending = Pending::AuthPlain(tag);
                    return Ok((Flow::Continue, Outcome::Ok));
                }
                Ok(Some(done)) => Ok(done),
                Err(e) => Err(e),
            },
            CommandBody::StartTls if self.starttls_offered => {
                complete(out, &tag, Ok(Done::ok("begin TLS negotiation now")));
                return Ok((Flow::StartTls, Outcome::Ok));
            }
            CommandBody::StartTls => Err(Failure::bad("STARTTLS is not offered here")),
            CommandBody::Unauthenticate => {
                self.state = State::NotAuthenticated;
                self.enabled = Enabled::default();
                self.notify = None;
                Ok(Done::ok("UNAUTHENTICATE completed"))
            }
            CommandBody::Namespace => op::namespace::run(out),
            CommandBody::Select {
                mailbox,
                read_only,
                params,
            } => op::select::select(self, mailbox.0, read_only, params, out).await,
            CommandBody::Close => op::select::close(self, true).await,
            CommandBody::Unselect => op::select::close(self, false).await,
            CommandBody::Create {
                mailbox,
                special_use,
            } => op::create::run(self, mailbox.0, special_use).await,
            CommandBody::Delete(mailbox) => op::delete::run(self, mailbox.0).await,
            CommandBody::Rename { from, to } => op::rename::run(self, from.0, to.0).await,
            CommandBody::Subscribe(mailbox) => op::subscribe::run(self, mailbox.0, true).await,
            CommandBody::Unsubscribe(mailbox) => op::subscribe::run(self, mailbox.0, false).await,
            CommandBody::List(list) => op::list::list(self, list, out).await,
            CommandBody::Lsub { reference, pattern } => {
                op::list::lsub(self, reference, pattern, out).await
            }
            CommandBody::Status { mailbox, items } => {
                op::status::run(self, mailbox.0, items, out).await
            }
            CommandBody::Append { mailbox, messages } => {
                op::append::run(self, mailbox.0, messages, out).await
            }
            CommandBody::Idle => {
                out.push(&Response::Continue("idling".into()));
                self.send_updates(out, true).await?;
                self.pending = Pending::Idle(tag);
                return Ok((Flow::Continue, Outcome::Ok));
            }
            CommandBody::Expunge => op::expunge::run(self, None, out).await,
            CommandBody::UidExpunge(set) => op::expunge::run(self, Some(set), out).await,
            CommandBody::Search(search) => op::search::run(self, search, &tag, out).await,
            CommandBody::Fetch {
                uid,
                set,
                attributes,
                changed_since,
                vanished,
            } => op::fetch::run(self, uid, set, attributes, changed_since, vanished, out).await,
            CommandBody::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => op::store::run(self, uid, set, unchanged_since, mode, silent, flags, out).await,
            CommandBody::Copy { uid, set, mailbox } => {
                op::copy::run(self, uid, set, mailbox.0, false, out).await
            }
            CommandBody::Move { uid, set, mailbox } => {
                op::copy::run(self, uid, set, mailbox.0, true, out).await
            }
            CommandBody::GetQuota(root) => op::quota::get_quota(self, root, out).await,
            CommandBody::GetQuotaRoot(mailbox) => {
                op::quota::get_quota_root(self, mailbox.0, out).await
            }
            CommandBody::SetQuota { .. } => Err(Failure::no_code(
                Code::NoPerm,
                "quota is set by the administrator",
            )),
            CommandBody::Notify(notify) => op::notify::run(self, notify, out).await,
            CommandBody::Compress(algorithm) => match op::compress::run(self, &algorithm) {
                Ok(done) => {
                    complete(out, &tag, Ok(done));
                    return Ok((Flow::Compress, Outcome::Ok));
                }
                Err(failure) => Err(failure),
            },
            CommandBody::Sort {
                uid,
                criteria,
                charset,
                key,
                result,
            } => {
                let command = op::sort::SortCommand {
                    uid,
                    criteria,
                    charset,
                    key,
                    result,
                };
                op::sort::run(self, command, &tag, out).await
            }
            CommandBody::Thread {
                uid,
                algorithm,
                charset,
                key,
            } => op::thread::run(self, uid, algorithm, &charset, &key, out).await,
        };
        if let Err(Failure::Io(e)) = result {
            return Err(e);
        }
        // NOTIFY SELECTED (not SELECTED-DELAYED) asks for expunges as soon as possible, even
        // after commands that use sequence numbers (RFC 5465 section 5.3): such clients use UIDs.
        let immediate_expunge = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .is_some_and(|s| !s.delayed);
        if self.selected_mut().is_some() || self.notify.is_some() {
            self.send_updates(out, allow_expunge || immediate_expunge)
                .await?;
        }
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(Failure::No(..)) => Outcome::No,
            Err(_) => Outcome::Bad,
        };
        complete(out, &tag, result);
        Ok((Flow::Continue, outcome))
    }

    /// Send the tagged completion after untagged updates.
    async fn finish(
        &mut self,
        out: &mut Responder<'_>,
        tag: &Tag,
        result: OpResult,
    ) -> io::Result<()> {
        if let Err(Failure::Io(e)) = result {
            return Err(e);
        }
        complete(out, tag, result);
        Ok(())
    }

    /// Whether `body` is valid in the current state (RFC 9051 section 3).
    fn check_state(&self, body: &CommandBody) -> Result<(), &'static str> {
        use CommandBody as C;
        let authenticated = matches!(self.state, State::Authenticated(_));
        let selected = matches!(
            &self.state,
            State::Authenticated(Authed {
                selected: Some(_),
                ..
            })
        );
        match body {
            C::Capability | C::Noop | C::Logout | C::Id(_) => Ok(()),
            C::Login { .. } | C::Authenticate { .. } | C::StartTls if authenticated => {
                Err("already authenticated")
            }
            C::Login { .. } | C::Authenticate { .. } | C::StartTls => Ok(()),
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::UidExpunge(_)
            | C::Search(_)
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
            | C::Sort { .. }
            | C::Thread { .. }
                if !selected =>
            {
                Err("no folder selected")
            }
            _ if !authenticated => Err("authenticate first"),
            _ => Ok(()),
        }
    }

    pub(crate) fn authed(&mut self) -> Result<&mut Authed<M::Session>, Failure> {
        match &mut self.state {
            State::Authenticated(authed) => Ok(authed),
            _ => Err(Failure::bad("authenticate first")),
        }
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Authenticated(authed) => authed.selected.as_mut(),
            _ => None,
        }
    }

    /// Wait until a change arrives that [`Session::send_unsolicited`] would report now (see
    /// [`Session::reports_between_commands`]). Cancel-safe.
    pub async fn wait_change(&mut self) {
        let limit = self.config.notify_queue_limit;
        let selected_now = self.pushes_selected_changes();
        let State::Authenticated(authed) = &mut self.state else {
            return std::future::pending().await;
        };
        loop {
            match authed.changes.recv().await {
                Ok(change) => {
                    if route(&change, authed, &mut self.notify, limit).is_err() {
                        self.notify = None;
                        self.notify_overflowed = true;
                        return;
                    }
                    if (selected_now && authed.dirty)
                        || self.notify.as_ref().is_some_and(Notify::has_queued)
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    authed.dirty = true;
                    if self.notify.take().is_some() {
                        self.notify_overflowed = true;
                    }
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Report what [`Session::wait_change`] waited for, between commands: everything during
    /// IDLE. With NOTIFY outside IDLE: events for other mailboxes, and the selected mailbox's
    /// only if SELECTED or SELECTED-DELAYED asked for them, expunges only for SELECTED
    /// (SELECTED-DELAYED holds them for a command that allows them, RFC 5465 section 6.1.2).
    pub async fn send_unsolicited(&mut self, out: &mut Responder<'_>) -> io::Result<()> {
        let idling = self.is_idling();
        let Some(notify) = self.notify.as_ref() else {
            // IDLE without NOTIFY: everything.
            return self.send_updates(out, true).await;
        };
        // With NOTIFY, IDLE sends exactly the events NOTIFY asked for (RFC 5465 section 4);
        // IDLE allows expunges even for SELECTED-DELAYED.
        match notify.selected.as_ref().map(|s| s.delayed) {
            Some(delayed) => self.send_updates(out, !delayed || idling).await,
            None => self.report(out, false, false).await,
        }
    }

    /// Whether the selected mailbox's changes are pushed as they happen: with NOTIFY, when it
    /// names the selected mailbox with events (SELECTED or SELECTED-DELAYED; leaving it out is
    /// `SELECTED NONE`, RFC 5465 section 3.1), also during IDLE (section 4); without NOTIFY,
    /// during IDLE. Otherwise they wait for the next command.
    fn pushes_selected_changes(&self) -> bool {
        match &self.notify {
            Some(notify) => notify.selected.is_some(),
            None => self.is_idling(),
        }
    }

    /// Send untagged EXISTS / EXPUNGE / FETCH for changes other sessions (or this one) made to
    /// the selected folder since it was last synchronised, then what NOTIFY asked for: FETCH of
    /// new messages, STATUS and LIST for other mailboxes.
    pub async fn send_updates(
        &mut self,
        out: &mut Responder<'_>,
        allow_expunge: bool,
    ) -> io::Result<()> {
        self.report(out, true, allow_expunge).await
    }

    /// [`Session::send_updates`], with the selected folder's changes left for later unless
    /// `sync_selected`.
    async fn report(
        &mut self,
        out: &mut Responder<'_>,
        sync_selected: bool,
        allow_expunge: bool,
    ) -> io::Result<()> {
        let condstore = self.enabled.condstore;
        let qresync = self.enabled.qresync;
        let limit = self.config.notify_queue_limit;
        let State::Authenticated(authed) = &mut self.state else {
            return Ok(());
        };
        loop {
            match authed.changes.try_recv() {
                Ok(change) => {
                    if route(&change, authed, &mut self.notify, limit).is_err() {
                        self.notify = None;
                        self.notify_overflowed = true;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    authed.dirty = true;
                    if self.notify.take().is_some() {
                        self.notify_overflowed = true;
                    }
                }
                Err(_) => break,
            }
        }
        if std::mem::take(&mut self.notify_overflowed) {
            out.push(&notify::overflow_response());
        }
        // NOTIFY without FlagChange for the selected mailbox: no FETCH for other sessions'
        // flag changes there (RFC 5465 section 5.1), not even after a command.
        let report_flags = self
            .notify
            .as_ref()
            .is_none_or(Notify::reports_selected_flags);
        let mut new_uids = Vec::new();
        if let Some(selected) = authed.selected.as_mut()
            && sync_selected
            && (authed.dirty || allow_expunge && selected.expunge_pending)
        {
            authed.dirty = false;
            let report = Report {
                expunges: allow_expunge,
                flags: report_flags,
                condstore,
                qresync,
            };
            match selected.synchronise(&authed.mail, out, report).await {
                Ok(added) => new_uids = added,
                Err(Failure::Io(e)) => return Err(e),
                Err(other) => {
                    tracing::warn!(?other, "could not synchronise the selected folder");
                }
            }
        }
        if let Some(notify) = self.notify.as_mut()
            && notify.has_queued()
        {
            let selected = authed.selected.as_ref().map(|s| s.folder.as_str());
            match notify.deliver(&authed.mail, selected, condstore, out).await {
                Ok(()) => {}
                Err(Failure::Io(e)) => return Err(e),
                Err(other) => tracing::warn!(?other, "could not report NOTIFY events"),
            }
        }
        // `MessageNew (fetch-att ...)` for the selected mailbox: FETCH after the EXISTS.
        let attributes = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .map(|s| s.new_message_fetch.clone())
            .unwrap_or_default();
        if !attributes.is_empty() && !new_uids.is_empty() {
            let set = SequenceSet::Ranges(
                new_uids
                    .iter()
                    .map(|&uid| (SeqNumber::Value(uid), SeqNumber::Value(uid)))
                    .collect(),
            );
            match op::fetch::run(self, true, set, attributes, None, false, out).await {
                Err(Failure::Io(e)) => return Err(e),
                Err(other) => tracing::warn!(?other, "could not fetch new messages for NOTIFY"),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// Sort one change into the selected folder's pending updates (`authed.dirty`) or the NOTIFY
/// queue of events for other mailboxes.
fn route<S: MailSession>(
    change: &Change,
    authed: &mut Authed<S>,
    notify: &mut Option<Notify>,
    limit: usize,
) -> Result<(), Overflow> {
    if change.origin == authed.mail.id()
        && let Some(selected) = authed.selected.as_mut()
        && selected.folder == change.folder
    {
        selected.note_own_change(change);
    }
    if relevant(change, authed.selected.as_ref(), authed.mail.id()) {
        authed.dirty = true;
        return Ok(());
    }
    if authed
        .selected
        .as_ref()
        .is_some_and(|s| s.folder == change.folder)
    {
        // This session's own flag change or expunge in the selected folder: already reported.
        return Ok(());
    }
    match notify {
        Some(notify) if notify.watches_others() => notify.queue(change, limit),
        _ => Ok(()),
    }
}

/// Whether a change needs untagged updates in a session that selected `selected`. A session's
/// own flag changes and expunges were already reported by the command that made them; its own
/// additions (APPEND, COPY into the selected folder) still need EXISTS, unless APPEND recorded
/// them already (see `Selected::record_own_append`): then the change's MODSEQ is known.
fn relevant(change: &Change, selected: Option<&Selected>, own_id: u64) -> bool {
    use sealmail_core::mailstore::ChangeEvent;
    let Some(selected) = selected.filter(|s| s.folder == change.folder) else {
        return false;
    };
    if change.origin != own_id {
        return true;
    }
    match change.event {
        ChangeEvent::FlagsChanged | ChangeEvent::MessagesExpunged => false,
        // MODSEQ 0: a change that does not say which (COPY).
        ChangeEvent::MessagesAdded => change.modseq == 0 || change.modseq > selected.known_modseq,
        _ => true,
    }
}

/// Write the tagged completion for `result`.
fn complete(out: &mut Responder<'_>, tag: &Tag, result: OpResult) {
    let response = match result {
        Ok(done) => StatusResponse::tagged(tag.clone(), StatusKind::Ok, done.code, done.text),
        Err(Failure::No(code, text)) => {
            StatusResponse::tagged(tag.clone(), StatusKind::No, code, text)
        }
        Err(Failure::Bad(text)) => StatusResponse::tagged(tag.clone(), StatusKind::Bad, None, text),
        Err(Failure::Io(_)) => return,
    };
    out.push(&Response::Status(response));
}

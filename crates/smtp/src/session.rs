//! The SMTP state machine, without I/O. The driver pushes received bytes in with
//! [`Session::push_input`], asks [`Session::next_action`] what to do, resolves the actions that
//! need the outside world (a recipient lookup, a durable delivery, a password check, a TLS
//! handshake) and writes [`Session::take_output`] to the client whenever it needs more input.
//! Replies come out in command order, so pipelined clients (RFC 2920) see what they expect.

use crate::proto::{
    AuthMechanism, ChunkCollector, Command, CommandError, DataReceiver, DsnReturn,
    MAX_COMMAND_LINE, MailParams, MessageDefect, RcptParams, Reply,
};
use base64ct::{Base64, Encoding};
use sealmail_core::registry::Address;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// Which listener a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inbound mail from other servers for local addresses; no authentication.
    Mx,
    /// Mail from our own users: AUTH required, sender must be the authenticated address.
    Submission,
}

/// Per-listener settings of the state machine.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub mode: Mode,
    /// Our name in the greeting and the Received: header.
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_size: usize,
    /// RFC 5321 4.5.3.1.8: at least 100 must be accepted.
    pub max_recipients: usize,
    /// Rejected commands after which the connection is closed (pipelined garbage, scanners).
    pub max_errors: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            mode: Mode::Mx,
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 20,
        }
    }
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Send the pending output, then read more input.
    NeedInput,
    /// Look the recipient up, then call [`Session::recipient_checked`].
    CheckRecipient {
        address: Address,
        /// The client's SIZE estimate, for the quota check.
        size_hint: Option<u64>,
    },
    /// Store the message durably for every recipient, then call [`Session::delivered`].
    Deliver(Delivery),
    /// Check the password, then call [`Session::authenticated`].
    Authenticate(Credentials),
    /// Send the pending output (the 220), run the TLS handshake, then call
    /// [`Session::tls_started`].
    StartTls,
    /// Send the pending output and close the connection.
    Close,
}

/// A message ready to be stored.
#[derive(Debug)]
pub struct Delivery {
    /// The reverse-path (empty for bounces).
    pub sender: String,
    pub recipients: Vec<Address>,
    /// Remote recipients of an authenticated submission, for the outbound queue.
    pub relay_recipients: Vec<Address>,
    /// The `Received:` header field to prepend for recipients, CRLF-terminated.
    pub received: String,
    /// The client's address and EHLO/HELO name, for SPF.
    pub peer: IpAddr,
    pub helo: String,
    /// Sent by an authenticated (submission) client: no SPF/DKIM/DMARC checks.
    pub authenticated: bool,
    /// The message as the client sent it.
    pub message: Vec<u8>,
    /// What the client asked of delivery status notifications (RFC 3461).
    pub dsn: DsnRequest,
}

/// A transaction's DSN parameters (RFC 3461): RET and ENVID from MAIL, NOTIFY and ORCPT
/// from RCPT for the recipients that carried them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRequest {
    pub ret: Option<DsnReturn>,
    /// xtext, as the client sent it.
    pub envid: Option<String>,
    pub relay_recipients: Vec<(Address, RcptParams)>,
    /// Local recipients' parameters (a success report for final delivery, RFC 3461 5.2.1).
    pub local_recipients: Vec<(Address, RcptParams)>,
}

impl Delivery {
    /// The message as recipients get it: our trace header first.
    pub fn with_trace_header(&self) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.received.len() + self.message.len());
        full.extend_from_slice(self.received.as_bytes());
        full.extend_from_slice(&self.message);
        full
    }
}

/// AUTH credentials; the password is wiped on drop and never printed.
pub struct Credentials {
    pub username: String,
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// The answer to [`Action::CheckRecipient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientVerdict {
    Accepted,
    /// A local domain without this address.
    Unknown,
    /// A domain we do not host.
    NotLocal,
    /// A domain we do not host, and the client may relay to it (authenticated submission
    /// with an outbound queue).
    Relay,
    /// The account is over its quota (or would be with SIZE).
    OverQuota,
    /// The lookup failed (disk, database); the client should retry later.
    TemporaryFailure,
    /// The recipient has received too many messages recently; the client should retry later.
    RateLimited,
}

/// Why a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    OverQuota,
    TooLarge,
    /// Refused by policy (the sender domain's DMARC `p=reject`).
    PolicyRejected,
    /// Nothing was promised: the client keeps the message and retries.
    Temporary,
}

/// Why AUTH failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    InvalidCredentials,
    /// Too many recent failures from this client or for this address: not even checked.
    TooManyFailures,
    Temporary,
}

/// The SMTP state machine of one connection. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: IpAddr,
    tls_active: bool,
    tls_offered: bool,
    /// Plaintext AUTH allowed without TLS (loopback clients).
    plaintext_auth_allowed: bool,
    /// The EHLO/HELO argument, and whether it was EHLO.
    greeting: Option<(String, bool)>,
    authenticated: Option<Address>,
    transaction: Option<Transaction>,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    errors: u32,
    /// A command line outgrew [`MAX_COMMAND_LINE`]; its rest is dropped up to the next LF.
    discarding_long_line: bool,
}

#[derive(Debug)]
struct Transaction {
    from: String,
    params: MailParams,
    recipients: Vec<Address>,
    relay_recipients: Vec<Address>,
    /// DSN parameters of relayed recipients that carried any.
    relay_dsn: Vec<(Address, RcptParams)>,
    /// DSN parameters of local recipients that carried any.
    local_dsn: Vec<(Address, RcptParams)>,
    /// The parameters of the RCPT whose recipient check is in progress.
    checking: RcptParams,
    /// Set by the first BDAT; a DATA after it is out of sequence.
    chunks: Option<ChunkCollector>,
}

#[derive(Debug)]
enum Phase {
    Command,
    Data(DataReceiver),
    /// Reading a BDAT chunk's bytes; `refusal` is the reply for a chunk that cannot be accepted
    /// (its bytes are still read, to stay in step with the client).
    Bdat {
        remaining: u64,
        last: bool,
        refusal: Option<Reply>,
    },
    AuthPlain,
    /// AUTH LOGIN: waiting for the username (`None`) or the password.
    AuthLogin(Option<String>),
    Closed,
}

impl Transaction {
    fn recipient_count(&self) -> usize {
        self.recipients.len() + self.relay_recipients.len()
    }
}

/// Makes `Received:` ids unique within the process.
static TRANSACTION_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Session {
    pub fn new(config: Arc<SessionConfig>, peer: IpAddr) -> Self {
        Session {
            config,
            peer,
            tls_active: false,
            tls_offered: false,
            plaintext_auth_allowed: false,
            greeting: None,
            authenticated: None,
            transaction: None,
            phase: Phase::Command,
            input: Vec::new(),
            output: Vec::new(),
            errors: 0,
            discarding_long_line: false,
        }
    }

    /// Advertise STARTTLS (the driver holds a TLS configuration).
    pub fn offer_starttls(mut self) -> Self {
        self.tls_offered = true;
        self
    }

    /// Let this client authenticate without TLS (it connects over loopback).
    pub fn allow_plaintext_auth(mut self) -> Self {
        self.plaintext_auth_allowed = true;
        self
    }

    /// The connection is encrypted (implicit TLS, or STARTTLS completed): RFC 3207 4.2 says
    /// everything learned before is forgotten.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.tls_offered = false;
        self.greeting = None;
        self.authenticated = None;
        self.transaction = None;
        self.phase = Phase::Command;
        self.input.clear();
    }

    pub fn greeting(&mut self) {
        self.reply(Reply::plain(
            220,
            vec![format!("{} ESMTP sealmail", self.config.hostname)],
        ));
    }

    /// The server is shutting down: say so and close.
    pub fn shutting_down(&mut self) {
        self.reply(Reply::new(
            421,
            "4.3.2",
            "server shutting down, try again later",
        ));
        self.phase = Phase::Closed;
    }

    /// The client was silent for too long.
    pub fn timed_out(&mut self) {
        self.reply(Reply::new(421, "4.4.2", "timeout, closing connection"));
        self.phase = Phase::Closed;
    }

    /// True between transactions, where closing the connection loses nothing.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Command) && self.transaction.is_none() && self.input.is_empty()
    }

    /// The client's IP address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    pub fn authenticated_address(&self) -> Option<&Address> {
        self.authenticated.as_ref()
    }

    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Replies produced so far, to be written to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Process buffered input until something outside the state machine is needed.
    pub fn next_action(&mut self) -> Action {
        loop {
            let action = match &mut self.phase {
                Phase::Closed => return Action::Close,
                Phase::Data(receiver) => {
                    let fed = receiver.feed(&self.input);
                    self.input.drain(..fed.consumed);
                    if !fed.finished {
                        return Action::NeedInput;
                    }
                    let Phase::Data(receiver) = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!("matched Data above")
                    };
                    self.message_received(receiver.finish())
                }
                Phase::Bdat {
                    remaining,
                    last,
                    refusal,
                } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    if refusal.is_none()
                        && let Some(chunks) =
                            self.transaction.as_mut().and_then(|t| t.chunks.as_mut())
                    {
                        chunks.push(&self.input[..take]);
                    }
                    self.input.drain(..take);
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return Action::NeedInput;
                    }
                    let (last, refusal) = (*last, refusal.take());
                    self.phase = Phase::Command;
                    self.chunk_received(last, refusal)
                }
                Phase::Command | Phase::AuthPlain | Phase::AuthLogin(_) => {
                    let Some(line) = self.take_line() else {
                        return Action::NeedInput;
                    };
                    match line {
                        Ok(line) => self.line_received(&line),
                        Err(reply) => {
                            self.phase = Phase::Command;
                            self.refuse(reply);
                            None
                        }
                    }
                }
            };
            if let Some(action) = action {
                return action;
            }
        }
    }

    /// The next CRLF-terminated line without its CRLF, an error reply for a malformed one, or
    /// `None` when no complete line is buffered.
    fn take_line(&mut self) -> Option<Result<Zeroizing<Vec<u8>>, Reply>> {
        let Some(lf) = self.input.iter().position(|b| *b == b'\n') else {
            if self.input.len() > MAX_COMMAND_LINE {
                self.input.clear();
                self.discarding_long_line = true;
            }
            return None;
        };
        // Zeroizing: in AUTH phases the line is a password.
        let line: Zeroizing<Vec<u8>> = Zeroizing::new(self.input.drain(..=lf).collect());
        if std::mem::take(&mut self.discarding_long_line) || line.len() > MAX_COMMAND_LINE {
            return Some(Err(Reply::new(500, "5.5.2", "line too long")));
        }
        match line.strip_suffix(b"\r\n") {
            Some(content) => Some(Ok(Zeroizing::new(content.to_vec()))),
            None => Some(Err(Reply::new(
                500,
                "5.5.2",
                "syntax error: lines must end with CRLF",
            ))),
        }
    }

    fn line_received(&mut self, line: &[u8]) -> Option<Action> {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::AuthPlain => self.auth_plain_response(line),
            Phase::AuthLogin(username) => self.auth_login_response(line, username),
            _ => match Command::parse(line) {
                Ok(command) => self.command(command),
                Err(error) => {
                    self.refuse(command_error_reply(&error));
                    None
                }
            },
        }
    }

    fn command(&mut self, command: Command) -> Option<Action> {
        match command {
            Command::Ehlo(domain) => {
                self.transaction = None;
                let mut lines = vec![
                    format!("{} greets {domain}", self.config.hostname),
                    "PIPELINING".into(),
                    format!("SIZE {}", self.config.max_message_size),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "CHUNKING".into(),
                    "DSN".into(),
                ];
                if self.tls_offered && !self.tls_active {
                    lines.push("STARTTLS".into());
                }
                if self.auth_available() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                lines.push("HELP".into());
                self.greeting = Some((domain, true));
                self.reply(Reply::plain(250, lines));
            }
            Command::Helo(domain) => {
                self.transaction = None;
                self.reply(Reply::plain(250, vec![self.config.hostname.clone()]));
                self.greeting = Some((domain, false));
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => return self.rcpt(to, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => {
                let refusal = match &self.transaction {
                    None => Some(Reply::new(503, "5.5.1", "MAIL first")),
                    Some(t) if t.recipient_count() == 0 => {
                        Some(Reply::new(554, "5.5.1", "no valid recipients"))
                    }
                    Some(_) => None,
                };
                if let Some(transaction) = &mut self.transaction
                    && refusal.is_none()
                    && transaction.chunks.is_none()
                {
                    transaction.chunks = Some(ChunkCollector::with_size_hint(
                        self.config.max_message_size,
                        transaction.params.size,
                    ));
                }
                self.phase = Phase::Bdat {
                    remaining: size,
                    last,
                    refusal,
                };
            }
            Command::Rset => {
                self.transaction = None;
                self.reply(Reply::new(250, "2.0.0", "OK"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "bye"));
                self.phase = Phase::Closed;
            }
            // RFC 5321 3.5.3: 252 when we will not say whether an address exists.
            Command::Vrfy => self.reply(Reply::new(
                252,
                "2.5.0",
                "cannot VRFY; send the message and delivery will be attempted",
            )),
            Command::Expn => self.reply(Reply::new(502, "5.5.1", "EXPN not available")),
            Command::Help => self.reply(Reply::new(
                214,
                "2.0.0",
                "commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH",
            )),
            Command::StartTls => return self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, initial_response),
        }
        None
    }

    fn mail(&mut self, from: String, params: MailParams) {
        if self.greeting.is_none() {
            return self.refuse(Reply::new(503, "5.5.1", "send EHLO or HELO first"));
        }
        if self.transaction.is_some() {
            return self.refuse(Reply::new(503, "5.5.1", "nested MAIL command"));
        }
        if !from.is_ascii() && !params.smtputf8 {
            return self.reply(Reply::new(
                553,
                "5.6.7",
                "non-ASCII address requires the SMTPUTF8 parameter",
            ));
        }
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_size as u64)
        {
            return self.reply(Reply::new(
                552,
                "5.3.4",
                format!(
                    "message size exceeds the limit of {} bytes",
                    self.config.max_message_size
                ),
            ));
        }
        if self.config.mode == Mode::Submission {
            let Some(authenticated) = &self.authenticated else {
                return self.reply(Reply::new(530, "5.7.0", "authentication required"));
            };
            if Address::parse(&from).ok().as_ref() != Some(authenticated) {
                return self.reply(Reply::new(
                    553,
                    "5.7.1",
                    "sender address must be the authenticated address",
                ));
            }
        }
        self.transaction = Some(Transaction {
            from,
            params,
            recipients: Vec::new(),
            relay_recipients: Vec::new(),
            relay_dsn: Vec::new(),
            local_dsn: Vec::new(),
            checking: RcptParams::default(),
            chunks: None,
        });
        self.reply(Reply::new(250, "2.1.0", "sender OK"));
    }

    fn rcpt(&mut self, to: String, params: RcptParams) -> Option<Action> {
        let max_recipients = self.config.max_recipients;
        let Some(transaction) = &mut self.transaction else {
            self.refuse(Reply::new(503, "5.5.1", "MAIL first"));
            return None;
        };
        if !to.is_ascii() && !transaction.params.smtputf8 {
            self.reply(Reply::new(
                553,
                "5.6.7",
                "non-ASCII address requires SMTPUTF8 on MAIL FROM",
            ));
            return None;
        }
        let Ok(address) = Address::parse(&to) else {
            self.reply(Reply::new(553, "5.1.3", "recipient address not valid"));
            return None;
        };
        if transaction.recipients.contains(&address)
            || transaction.relay_recipients.contains(&address)
        {
            // Listed twice: delivered once, which is what the client wants.
            self.reply(Reply::new(250, "2.1.5", "recipient OK"));
            return None;
        }
        if transaction.recipient_count() >= max_recipients {
            self.reply(Reply::new(452, "4.5.3", "too many recipients"));
            return None;
        }
        transaction.checking = params;
        Some(Action::CheckRecipient {
            address,
            size_hint: transaction.params.size,
        })
    }

    /// The answer to [`Action::CheckRecipient`].
    pub fn recipient_checked(&mut self, address: Address, verdict: RecipientVerdict) {
        let reply = match verdict {
            RecipientVerdict::Accepted => {
                if let Some(transaction) = &mut self.transaction {
                    let params = std::mem::take(&mut transaction.checking);
                    if params != RcptParams::default() {
                        transaction.local_dsn.push((address.clone(), params));
                    }
                    transaction.recipients.push(address);
                }
                Reply::new(250, "2.1.5", "recipient OK")
            }
            RecipientVerdict::Relay => {
                if let Some(transaction) = &mut self.transaction {
                    let params = std::mem::take(&mut transaction.checking);
                    if params != RcptParams::default() {
                        transaction.relay_dsn.push((address.clone(), params));
                    }
                    transaction.relay_recipients.push(address);
                }
                Reply::new(250, "2.1.5", "recipient OK, will relay")
            }
            RecipientVerdict::Unknown => Reply::new(550, "5.1.1", "no such mailbox here"),
            RecipientVerdict::NotLocal => match self.config.mode {
                Mode::Mx => Reply::new(550, "5.7.1", "relaying denied"),
                Mode::Submission => Reply::new(
                    550,
                    "5.7.1",
                    "relaying to other domains is not configured on this server",
                ),
            },
            RecipientVerdict::OverQuota => Reply::new(552, "5.2.2", "mailbox full"),
            RecipientVerdict::TemporaryFailure => {
                Reply::new(451, "4.3.0", "temporary failure, try again later")
            }
            RecipientVerdict::RateLimited => Reply::new(
                450,
                "4.7.1",
                "too many messages for this recipient, try again later",
            ),
        };
        self.reply(reply);
    }

    fn data(&mut self) {
        let Some(transaction) = &self.transaction else {
            return self.refuse(Reply::new(503, "5.5.1", "MAIL first"));
        };
        if transaction.chunks.is_some() {
            return self.refuse(Reply::new(503, "5.5.1", "DATA after BDAT"));
        }
        if transaction.recipient_count() == 0 {
            return self.reply(Reply::new(554, "5.5.1", "no valid recipients"));
        }
        let size_hint = transaction.params.size;
        self.reply(Reply::plain(
            354,
            vec!["end data with <CR><LF>.<CR><LF>".into()],
        ));
        self.phase = Phase::Data(DataReceiver::with_size_hint(
            self.config.max_message_size,
            size_hint,
        ));
    }

    fn chunk_received(&mut self, last: bool, refusal: Option<Reply>) -> Option<Action> {
        if let Some(refusal) = refusal {
            self.refuse(refusal);
            return None;
        }
        let too_large = self
            .transaction
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .is_some_and(ChunkCollector::is_too_large);
        if too_large {
            // RFC 3030 3: after a failed chunk the transaction is over; further BDATs get 503.
            self.transaction = None;
            self.reply(defect_reply(MessageDefect::TooLarge));
            return None;
        }
        if !last {
            self.reply(Reply::new(250, "2.0.0", "chunk received"));
            return None;
        }
        let chunks = self
            .transaction
            .as_mut()
            .and_then(|t| t.chunks.take())
            .expect("a BDAT without refusal has a transaction with chunks");
        self.message_received(chunks.finish())
    }

    fn message_received(&mut self, message: Result<Vec<u8>, MessageDefect>) -> Option<Action> {
        let transaction = self
            .transaction
            .take()
            .expect("message text is only read inside a transaction");
        match message {
            Err(defect) => {
                self.reply(defect_reply(defect));
                None
            }
            Ok(message) => Some(Action::Deliver(Delivery {
                received: self.received_header(&transaction),
                peer: self.peer,
                helo: self
                    .greeting
                    .as_ref()
                    .map_or_else(String::new, |(name, _)| name.clone()),
                authenticated: self.authenticated.is_some(),
                sender: transaction.from,
                recipients: transaction.recipients,
                relay_recipients: transaction.relay_recipients,
                message,
                dsn: DsnRequest {
                    ret: transaction.params.ret,
                    envid: transaction.params.envid,
                    relay_recipients: transaction.relay_dsn,
                    local_recipients: transaction.local_dsn,
                },
            })),
        }
    }

    /// The answer to [`Action::Deliver`]. Call only once every recipient's copy is durable.
    pub fn delivered(&mut self, result: Result<(), DeliveryFailure>) {
        self.reply(match result {
            Ok(()) => Reply::new(250, "2.0.0", "message accepted"),
            Err(DeliveryFailure::OverQuota) => Reply::new(552, "5.2.2", "mailbox full"),
            Err(DeliveryFailure::TooLarge) => defect_reply(MessageDefect::TooLarge),
            Err(DeliveryFailure::PolicyRejected) => Reply::new(
                550,
                "5.7.1",
                "message refused: the sender domain's DMARC policy rejects it",
            ),
            Err(DeliveryFailure::Temporary) => Reply::new(
                451,
                "4.3.0",
                "temporary failure, message not accepted; try again",
            ),
        });
    }

    fn starttls(&mut self) -> Option<Action> {
        if self.tls_active {
            self.refuse(Reply::new(503, "5.5.1", "TLS already active"));
            return None;
        }
        if !self.tls_offered {
            self.reply(Reply::new(454, "4.7.0", "TLS not available"));
            return None;
        }
        self.reply(Reply::plain(220, vec!["2.0.0 ready to start TLS".into()]));
        // RFC 3207 4.2: anything pipelined behind STARTTLS arrived in the clear; drop it.
        self.input.clear();
        Some(Action::StartTls)
    }

    fn auth_available(&self) -> bool {
        self.config.mode == Mode::Submission
            && self.authenticated.is_none()
            && (self.tls_active || self.plaintext_auth_allowed)
    }

    fn auth(&mut self, mechanism: AuthMechanism, initial: Option<String>) -> Option<Action> {
        if self.config.mode != Mode::Submission {
            self.refuse(Reply::new(502, "5.5.1", "AUTH not available on this port"));
            return None;
        }
        if self.greeting.is_none() {
            self.refuse(Reply::new(503, "5.5.1", "send EHLO first"));
            return None;
        }
        if self.authenticated.is_some() || self.transaction.is_some() {
            self.refuse(Reply::new(503, "5.5.1", "AUTH not allowed now"));
            return None;
        }
        if !self.tls_active && !self.plaintext_auth_allowed {
            self.reply(Reply::new(
                538,
                "5.7.11",
                "encryption required: use STARTTLS",
            ));
            return None;
        }
        let initial = Zeroizing::new(initial);
        match (mechanism, initial.as_deref()) {
            (AuthMechanism::Plain, None) => {
                self.reply(Reply::plain(334, vec![String::new()]));
                self.phase = Phase::AuthPlain;
                None
            }
            (AuthMechanism::Plain, Some(response)) => self.auth_plain_response(response.as_bytes()),
            (AuthMechanism::Login, None) => {
                self.reply(Reply::plain(334, vec![Base64::encode_string(b"Username:")]));
                self.phase = Phase::AuthLogin(None);
                None
            }
            (AuthMechanism::Login, Some(response)) => {
                self.auth_login_response(response.as_bytes(), None)
            }
        }
    }

    /// `message = [authzid] UTF8NUL authcid UTF8NUL passwd` (RFC 4616), base64-encoded.
    fn auth_plain_response(&mut self, line: &[u8]) -> Option<Action> {
        let decoded = match decode_sasl(line) {
            Ok(decoded) => decoded,
            Err(reply) => {
                self.refuse(reply);
                return None;
            }
        };
        let mut parts = decoded.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.refuse(Reply::new(501, "5.5.2", "malformed PLAIN response"));
            return None;
        };
        if !authzid.is_empty() && authzid != authcid {
            self.reply(Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid",
            ));
            return None;
        }
        self.credentials(authcid, password)
    }

    fn auth_login_response(&mut self, line: &[u8], username: Option<String>) -> Option<Action> {
        let decoded = match decode_sasl(line) {
            Ok(decoded) => decoded,
            Err(reply) => {
                self.refuse(reply);
                return None;
            }
        };
        match username {
            None => {
                let Ok(username) = String::from_utf8(decoded.to_vec()) else {
                    self.refuse(Reply::new(501, "5.5.2", "username is not UTF-8"));
                    return None;
                };
                self.reply(Reply::plain(334, vec![Base64::encode_string(b"Password:")]));
                self.phase = Phase::AuthLogin(Some(username));
                None
            }
            Some(username) => self.credentials(username.as_bytes(), &decoded),
        }
    }

    fn credentials(&mut self, username: &[u8], password: &[u8]) -> Option<Action> {
        let (Ok(username), Ok(password)) =
            (std::str::from_utf8(username), std::str::from_utf8(password))
        else {
            self.refuse(Reply::new(501, "5.5.2", "credentials are not UTF-8"));
            return None;
        };
        Some(Action::Authenticate(Credentials {
            username: username.to_string(),
            password: Zeroizing::new(password.to_string()),
        }))
    }

    /// The answer to [`Action::Authenticate`].
    pub fn authenticated(&mut self, result: Result<Address, AuthFailure>) {
        match result {
            Ok(address) => {
                self.authenticated = Some(address);
                self.reply(Reply::new(235, "2.7.0", "authentication successful"));
            }
            // Counted with the other errors, so password guessing ends with a 421.
            Err(AuthFailure::InvalidCredentials) => {
                self.refuse(Reply::new(
                    535,
                    "5.7.8",
                    "authentication credentials invalid",
                ));
            }
            Err(AuthFailure::TooManyFailures) => {
                self.refuse(Reply::new(
                    454,
                    "4.7.0",
                    "too many failed logins, try again later",
                ));
            }
            Err(AuthFailure::Temporary) => {
                self.reply(Reply::new(454, "4.7.0", "temporary authentication failure"));
            }
        }
    }

    /// `Received:` per RFC 5321 4.4, with the protocol names of RFC 3848 and RFC 6531.
    fn received_header(&self, transaction: &Transaction) -> String {
        let (helo, esmtp) = self
            .greeting
            .as_ref()
            .map(|(name, esmtp)| (name.as_str(), *esmtp))
            .unwrap_or(("unknown", false));
        let protocol = match (esmtp, transaction.params.smtputf8) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "UTF8SMTP",
        };
        let protocol = format!(
            "{protocol}{}{}",
            if self.tls_active { "S" } else { "" },
            if self.authenticated.is_some() {
                "A"
            } else {
                ""
            }
        );
        let now = sealmail_core::time::now_unix();
        let id = format!(
            "{now:x}{:06x}",
            TRANSACTION_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
        );
        // `for` only with a single recipient: it would disclose Bcc recipients otherwise.
        let for_clause = match (
            transaction.recipients.as_slice(),
            transaction.relay_recipients.as_slice(),
        ) {
            ([only], []) | ([], [only]) => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        format!(
            "Received: from {helo} ([{peer}])\r\n\tby {host} (sealmail) with {protocol} id {id}{for_clause};\r\n\t{date}\r\n",
            peer = self.peer,
            host = self.config.hostname,
            date = rfc5322_date(now),
        )
    }

    fn reply(&mut self, reply: Reply) {
        reply.encode_into(&mut self.output);
    }

    /// A reply to a command that should not have been sent; too many of them end the session.
    fn refuse(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "too many errors, closing connection",
            ));
            self.phase = Phase::Closed;
        }
    }
}

fn decode_sasl(line: &[u8]) -> Result<Zeroizing<Vec<u8>>, Reply> {
    if line == b"*" {
        return Err(Reply::new(501, "5.0.0", "authentication cancelled"));
    }
    if line == b"=" {
        return Ok(Zeroizing::new(Vec::new()));
    }
    let text = std::str::from_utf8(line).map_err(|_| Reply::new(501, "5.5.2", "invalid base64"))?;
    Base64::decode_vec(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| Reply::new(501, "5.5.2", "invalid base64"))
}

fn command_error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::Unrecognized => Reply::new(500, "5.5.1", "command not recognized"),
        CommandError::NotImplemented => Reply::new(502, "5.5.1", "command not implemented"),
        CommandError::Syntax(what) => Reply::new(501, "5.5.4", format!("syntax error: {what}")),
        CommandError::UnsupportedParameter(name) => {
            Reply::new(555, "5.5.4", format!("parameter {name} not supported"))
        }
        CommandError::UnsupportedMechanism => Reply::new(504, "5.5.4", "mechanism not supported"),
    }
}

fn defect_reply(defect: MessageDefect) -> Reply {
    match defect {
        MessageDefect::TooLarge => Reply::new(552, "5.3.4", "message exceeds the size limit"),
        MessageDefect::Nul => Reply::new(554, "5.6.0", "message contains NUL octets"),
        MessageDefect::BareLineBreak => Reply::new(
            554,
            "5.6.0",
            "message contains a bare CR or LF; lines must end with CRLF",
        ),
        MessageDefect::LineTooLong => Reply::new(
            500,
            "5.5.2",
            "message has a line longer than 1000 octets (RFC 5321 4.5.3.1.6)",
        ),
    }
}

/// `Sat, 28 Nov 2026 21:40:00 +0000` (RFC 5322 3.3).
pub(crate) fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = sealmail_core::time::civil_from_unix(unix);
    let weekday = DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize];
    let month = MONTHS[(mo - 1) as usize];
    format!("{weekday}, {d} {month} {y} {h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests;

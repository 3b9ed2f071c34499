//! A lean SMTP client for relaying (RFC 5321): EHLO (HELO fallback), STARTTLS (RFC 3207),
//! MAIL, one RCPT per recipient with its own reply, DATA with dot-stuffing, QUIT.
//!
//! Written here rather than taken from `mail-send` because the queue needs each recipient's
//! own reply (to retry, bounce or report each one separately), which `mail-send` folds into
//! one error for the whole message, and because this is about 300 lines over the tokio and
//! rustls we already have.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Longest reply line read from a server; anything longer is a protocol error.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 128;

/// How the client connects and talks.
#[derive(Clone)]
pub struct ClientSettings {
    /// Our name in EHLO.
    pub hostname: String,
    /// Refuse to send without STARTTLS (the attempt fails temporarily and is retried). Must
    /// go with a `tls` configuration that verifies certificates ([`super::tls`]).
    pub require_tls: bool,
    /// For each command and for connecting.
    pub timeout: Duration,
    /// For the final reply after the message text (RFC 5321 4.5.3.2.6: 10 minutes).
    pub data_timeout: Duration,
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("hostname", &self.hostname)
            .field("require_tls", &self.require_tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A server reply: its code and its text lines joined with spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// What happened to one recipient in a session that got as far as RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    Delivered(Reply),
    /// 4xx: try again later.
    Deferred(Reply),
    /// 5xx: give up and bounce.
    Rejected(Reply),
}

/// Why a whole session failed (every recipient shares the outcome).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS required but {0}")]
    TlsUnavailable(String),
    /// TLS is required and the server's certificate failed verification (wrong name, unknown
    /// issuer, expired): never retried in the clear.
    #[error("TLS required but {0}")]
    CertificateRejected(String),
    /// The server refused the session or the sender (greeting, EHLO/HELO, MAIL FROM).
    #[error("{0}")]
    Refused(Reply),
}

impl SessionError {
    /// A 5xx to the session or the sender: retrying will not help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SessionError::Refused(reply) if reply.is_permanent())
    }

    /// TLS could not be had: not offered, refused, a failed handshake, or a rejected
    /// certificate (counted by the relay's TLS-failure metric).
    pub fn is_tls_failure(&self) -> bool {
        matches!(
            self,
            SessionError::TlsUnavailable(_) | SessionError::CertificateRejected(_)
        )
    }
}

/// One message for one host.
#[derive(Debug)]
pub struct Transaction<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub message: &'a [u8],
    /// The sender's DSN parameters, passed on to a server that offers DSN (RFC 3461 5.2).
    pub dsn: &'a DsnParameters,
}

/// RFC 3461 parameters to pass on: RET and ENVID for MAIL, NOTIFY and ORCPT for each RCPT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnParameters {
    /// RET=FULL was asked for.
    pub return_full: bool,
    /// ENVID, xtext.
    pub envelope_id: Option<String>,
    /// Per recipient of the transaction, in the same order: the NOTIFY value (`NEVER` or a
    /// list) and the ORCPT value (`rfc822;xtext`), each when the sender gave one.
    pub recipients: Vec<(Option<String>, Option<String>)>,
}

/// What a session that got as far as RCPT came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOutcome {
    /// One result per recipient, in order.
    pub results: Vec<RecipientResult>,
    /// The server offered DSN, so it was handed the sender's DSN parameters and takes over
    /// the success reports (RFC 3461 5.2.2); otherwise a requested success report is ours
    /// to send, as `relayed`.
    pub remote_dsn: bool,
    /// The mail went over STARTTLS.
    pub tls: bool,
    /// The STARTTLS handshake failed and the mail went in the clear after all
    /// (opportunistic TLS): why, for the logs and the queue listing.
    pub tls_failure: Option<String>,
}

/// Deliver `transaction` to the server at `addr` (named `host`, for SNI), over STARTTLS when
/// the server offers it. Returns one result per recipient, in order, unless the session
/// failed as a whole. Opportunistic TLS (RFC 7435): when the handshake fails and TLS is not
/// required, the delivery is made again on a new connection in the clear, and the failure
/// is reported in [`SessionOutcome::tls_failure`]. When TLS is required nothing is ever sent
/// in the clear, and a certificate that fails verification ends the attempt with
/// [`SessionError::CertificateRejected`].
pub async fn deliver(
    addr: SocketAddr,
    host: &str,
    settings: &ClientSettings,
    transaction: &Transaction<'_>,
) -> Result<SessionOutcome, SessionError> {
    match deliver_once(addr, host, settings, transaction, true).await {
        Err(SessionError::TlsUnavailable(reason)) if !settings.require_tls => {
            tracing::warn!(%host, %addr, %reason, "STARTTLS failed; delivering in the clear");
            let mut outcome = deliver_once(addr, host, settings, transaction, false).await?;
            outcome.tls_failure = Some(reason);
            Ok(outcome)
        }
        other => other,
    }
}

/// One connection: STARTTLS when offered and `try_tls`, then the transaction.
async fn deliver_once(
    addr: SocketAddr,
    host: &str,
    settings: &ClientSettings,
    transaction: &Transaction<'_>,
    try_tls: bool,
) -> Result<SessionOutcome, SessionError> {
    let tcp = tokio::time::timeout(settings.timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let mut plain = BufReader::new(tcp);
    expect(read_reply(&mut plain, settings.timeout).await?, 220)?;
    let extensions = ehlo(&mut plain, settings).await?;
    if !try_tls || !extensions.iter().any(|e| e == "STARTTLS") {
        if settings.require_tls {
            let _ = quit(&mut plain, settings).await;
            return Err(SessionError::TlsUnavailable(format!(
                "{host} does not offer STARTTLS"
            )));
        }
        return send(&mut plain, settings, &extensions, transaction, false).await;
    }
    command(&mut plain, b"STARTTLS\r\n").await?;
    let reply = read_reply(&mut plain, settings.timeout).await?;
    if reply.code != 220 {
        if settings.require_tls {
            return Err(SessionError::TlsUnavailable(format!(
                "STARTTLS refused: {reply}"
            )));
        }
        // Opportunistic: carry on in the clear.
        let mut outcome = send(&mut plain, settings, &extensions, transaction, false).await?;
        outcome.tls_failure = Some(format!("STARTTLS refused: {reply}"));
        return Ok(outcome);
    }
    // RFC 3207 4.2: nothing may be buffered past the 220.
    if !plain.buffer().is_empty() {
        return Err(SessionError::Protocol("data pipelined after 220".into()));
    }
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&settings.tls));
    let tls = tokio::time::timeout(
        settings.timeout,
        connector.connect(server_name, plain.into_inner()),
    )
    .await
    .map_err(|_| SessionError::Timeout)?
    .map_err(|e| match super::tls::certificate_rejection(host, &e) {
        // Only the verified configuration (required TLS) rejects certificates; the caller
        // never falls back to clear text for this variant.
        Some(reason) => SessionError::CertificateRejected(reason),
        None => SessionError::TlsUnavailable(format!("TLS handshake failed: {e}")),
    })?;
    let mut tls = BufReader::new(tls);
    let extensions = ehlo(&mut tls, settings).await?;
    send(&mut tls, settings, &extensions, transaction, true).await
}

/// EHLO, falling back to HELO (RFC 5321 3.2); returns the upper-cased extension keywords.
async fn ehlo<S: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut S,
    settings: &ClientSettings,
) -> Result<Vec<String>, SessionError> {
    command(stream, format!("EHLO {}\r\n", settings.hostname).as_bytes()).await?;
    let reply = read_reply_lines(stream, settings.timeout).await?;
    if reply.0 == 250 {
        return Ok(reply
            .1
            .iter()
            .skip(1)
            .filter_map(|line| line.split_ascii_whitespace().next())
            .map(str::to_ascii_uppercase)
            .collect());
    }
    command(stream, format!("HELO {}\r\n", settings.hostname).as_bytes()).await?;
    expect(read_reply(stream, settings.timeout).await?, 250)?;
    Ok(Vec::new())
}

/// MAIL, RCPT for each recipient, DATA, QUIT.
async fn send<S: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut S,
    settings: &ClientSettings,
    extensions: &[String],
    transaction: &Transaction<'_>,
    tls: bool,
) -> Result<SessionOutcome, SessionError> {
    let has = |name: &str| extensions.iter().any(|e| e == name);
    let remote_dsn = has("DSN");
    let outcome = |results| SessionOutcome {
        results,
        remote_dsn,
        tls,
        tls_failure: None,
    };
    let mut mail = format!("MAIL FROM:<{}>", transaction.sender);
    if remote_dsn {
        let dsn = transaction.dsn;
        if dsn.return_full {
            mail.push_str(" RET=FULL");
        }
        if let Some(envelope_id) = &dsn.envelope_id {
            mail.push_str(&format!(" ENVID={envelope_id}"));
        }
    }
    if has("SIZE") {
        mail.push_str(&format!(" SIZE={}", transaction.message.len()));
    }
    if has("8BITMIME") && !transaction.message.is_ascii() {
        mail.push_str(" BODY=8BITMIME");
    }
    let needs_utf8 =
        !transaction.sender.is_ascii() || transaction.recipients.iter().any(|r| !r.is_ascii());
    if needs_utf8 {
        if !has("SMTPUTF8") {
            let _ = quit(stream, settings).await;
            return Err(SessionError::Refused(Reply {
                code: 553,
                text: "5.6.7 the server does not accept internationalized addresses (SMTPUTF8)"
                    .into(),
            }));
        }
        mail.push_str(" SMTPUTF8");
    }
    mail.push_str("\r\n");
    command(stream, mail.as_bytes()).await?;
    expect(read_reply(stream, settings.timeout).await?, 250)?;
    let mut results = Vec::with_capacity(transaction.recipients.len());
    for (index, recipient) in transaction.recipients.iter().enumerate() {
        let mut rcpt = format!("RCPT TO:<{recipient}>");
        if let Some((notify, orcpt)) = transaction.dsn.recipients.get(index).filter(|_| remote_dsn)
        {
            if let Some(notify) = notify {
                rcpt.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some(orcpt) = orcpt {
                rcpt.push_str(&format!(" ORCPT={orcpt}"));
            }
        }
        rcpt.push_str("\r\n");
        command(stream, rcpt.as_bytes()).await?;
        let reply = read_reply(stream, settings.timeout).await?;
        results.push(match reply.code {
            250 | 251 => RecipientResult::Delivered(reply),
            500.. => RecipientResult::Rejected(reply),
            _ => RecipientResult::Deferred(reply),
        });
    }
    if !results
        .iter()
        .any(|r| matches!(r, RecipientResult::Delivered(_)))
    {
        let _ = quit(stream, settings).await;
        return Ok(outcome(results));
    }
    command(stream, b"DATA\r\n").await?;
    let reply = read_reply(stream, settings.timeout).await?;
    if reply.code != 354 {
        let _ = quit(stream, settings).await;
        return Ok(outcome(apply_to_accepted(results, &reply)));
    }
    let text = dot_stuff(transaction.message);
    stream
        .write_all(&text)
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let reply = read_reply(stream, settings.data_timeout).await?;
    let _ = quit(stream, settings).await;
    Ok(outcome(apply_to_accepted(results, &reply)))
}

/// After DATA every accepted recipient shares the final reply.
fn apply_to_accepted(results: Vec<RecipientResult>, reply: &Reply) -> Vec<RecipientResult> {
    results
        .into_iter()
        .map(|result| match result {
            RecipientResult::Delivered(_) => match reply.code {
                250 => RecipientResult::Delivered(reply.clone()),
                500.. => RecipientResult::Rejected(reply.clone()),
                _ => RecipientResult::Deferred(reply.clone()),
            },
            other => other,
        })
        .collect()
}

async fn quit<S: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut S,
    settings: &ClientSettings,
) -> Result<(), SessionError> {
    command(stream, b"QUIT\r\n").await?;
    read_reply(stream, settings.timeout).await.map(|_| ())
}

/// The message text as sent after DATA: lines starting with '.' get another '.', the text
/// ends with CRLF, then the terminating `.` line (RFC 5321 4.5.2).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

async fn command<S: AsyncWrite + Unpin>(stream: &mut S, line: &[u8]) -> Result<(), SessionError> {
    stream
        .write_all(line)
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))
}

fn expect(reply: Reply, code: u16) -> Result<Reply, SessionError> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(SessionError::Refused(reply))
    }
}

async fn read_reply<S: AsyncBufRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Reply, SessionError> {
    let (code, lines) = read_reply_lines(stream, timeout).await?;
    Ok(Reply {
        code,
        text: lines.join(" "),
    })
}

/// One reply: `code` and the text of each line (RFC 5321 4.2: `NNN-text` lines, then `NNN text`).
async fn read_reply_lines<S: AsyncBufRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(u16, Vec<String>), SessionError> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            timeout,
            (&mut *stream)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(|e| SessionError::Connect(e.to_string()))?;
        if read == 0 {
            return Err(SessionError::Connect(
                "connection closed by the server".into(),
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(SessionError::Protocol("reply line too long".into()));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| SessionError::Protocol(format!("malformed reply {line:?}")))?;
        let separator = line.as_bytes().get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_string());
        match separator {
            Some(b'-') if lines.len() < MAX_REPLY_LINES => continue,
            Some(b'-') => return Err(SessionError::Protocol("reply has too many lines".into())),
            _ => return Ok((code, lines)),
        }
    }
}

/// Used by tests to drive the client over any stream.
#[cfg(test)]
async fn read_one<S: tokio::io::AsyncRead + Unpin>(stream: S) -> Result<Reply, SessionError> {
    read_reply(&mut BufReader::new(stream), Duration::from_secs(1)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_termination() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n..\r\n"), b"a\r\n...\r\n.\r\n");
    }

    #[tokio::test]
    async fn multi_line_replies_are_joined() {
        let reply = read_one(&b"250-first\r\n250-second\r\n250 last\r\n"[..])
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "first second last");
        assert!(matches!(
            read_one(&b"hello\r\n"[..]).await,
            Err(SessionError::Protocol(_))
        ));
        assert!(matches!(
            read_one(&b"250-only\r\n"[..]).await,
            Err(SessionError::Connect(_))
        ));
    }
}

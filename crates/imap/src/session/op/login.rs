//! LOGIN and AUTHENTICATE PLAIN (RFC 4616, with SASL-IR from RFC 4959).

use crate::proto::{Code, Response, Secret};
use crate::session::{Authed, Done, Failure, OpResult, Responder, Session, State};
use base64ct::{Base64, Encoding};
use sealmail_core::mailstore::{MailSession, MailStore};
use zeroize::Zeroizing;

pub(crate) async fn login<M: MailStore>(
    session: &mut Session<M>,
    username: &str,
    password: Secret,
) -> OpResult {
    let password = std::str::from_utf8(password.expose())
        .map_err(|_| Failure::no_code(Code::AuthenticationFailed, "authentication failed"))?;
    sign_in(session, username, password).await
}

/// AUTHENTICATE: `Ok(None)` means a continuation was sent and the response line is awaited.
pub(crate) async fn authenticate<M: MailStore>(
    session: &mut Session<M>,
    mechanism: &str,
    initial_response: Option<Secret>,
    out: &mut Responder<'_>,
) -> Result<Option<Done>, Failure> {
    if mechanism != "PLAIN" {
        return Err(Failure::no_code(
            Code::Cannot,
            "unsupported authentication mechanism",
        ));
    }
    check_transport(session)?;
    match initial_response {
        Some(response) => plain(session, response.expose()).await.map(Some),
        None => {
            out.push(&Response::Continue(String::new()));
            Ok(None)
        }
    }
}

/// The client's line after our `+` continuation.
pub(crate) async fn authenticate_response<M: MailStore>(
    session: &mut Session<M>,
    line: &[u8],
) -> OpResult {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"*" {
        return Err(Failure::bad("authentication cancelled"));
    }
    plain(session, line).await
}

/// Decode `base64(authzid NUL authcid NUL password)` and sign in.
async fn plain<M: MailStore>(session: &mut Session<M>, encoded: &[u8]) -> OpResult {
    let encoded =
        std::str::from_utf8(encoded).map_err(|_| Failure::bad("invalid base64 response"))?;
    let decoded = Zeroizing::new(
        Base64::decode_vec(encoded).map_err(|_| Failure::bad("invalid base64 response"))?,
    );
    let mut fields = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Failure::bad("malformed PLAIN response"));
    };
    if !authzid.is_empty() && authzid != authcid {
        return Err(Failure::no_code(
            Code::AuthorizationFailed,
            "cannot act as another user",
        ));
    }
    let (Ok(user), Ok(password)) = (std::str::from_utf8(authcid), std::str::from_utf8(password))
    else {
        return Err(Failure::no_code(
            Code::AuthenticationFailed,
            "authentication failed",
        ));
    };
    let user = user.to_string();
    sign_in(session, &user, password).await
}

fn check_transport<M: MailStore>(session: &Session<M>) -> Result<(), Failure> {
    if session.secure || session.config.allow_plaintext_auth {
        Ok(())
    } else {
        Err(Failure::no_code(
            Code::PrivacyRequired,
            "use TLS before authenticating",
        ))
    }
}

async fn sign_in<M: MailStore>(session: &mut Session<M>, user: &str, password: &str) -> OpResult {
    check_transport(session)?;
    let limiter = std::sync::Arc::clone(&session.config.login_limiter);
    if !limiter.allows(session.peer, user) {
        tracing::warn!(peer = ?session.peer, "login refused: too many failures");
        tokio::time::sleep(session.config.failed_login_delay).await;
        return Err(Failure::no_code(
            Code::Unavailable,
            "too many failed logins, try again later",
        ));
    }
    match session.store.login(user, password).await {
        Ok(mail) => {
            limiter.record_success(user);
            let changes = mail.subscribe();
            session.state = State::Authenticated(Authed {
                mail,
                changes,
                selected: None,
                dirty: false,
            });
            session.config.metrics.login(true);
            tracing::info!(peer = ?session.peer, "login succeeded");
            Ok(Done::with_code(
                Code::Capability(session.capabilities()),
                "logged in",
            ))
        }
        Err(sealmail_core::Error::WrongPassword) => {
            session.config.metrics.login(false);
            tracing::info!(peer = ?session.peer, "login failed");
            limiter.record_failure(session.peer, user);
            tokio::time::sleep(session.config.failed_login_delay).await;
            Err(Failure::no_code(
                Code::AuthenticationFailed,
                "authentication failed",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "login could not open the mailbox");
            Err(Failure::no_code(
                Code::Unavailable,
                "mailbox temporarily unavailable",
            ))
        }
    }
}

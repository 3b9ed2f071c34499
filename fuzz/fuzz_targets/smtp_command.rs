//! Fuzz the SMTP layers that see untrusted bytes: the command parser, and the whole state
//! machine (DATA, BDAT, AUTH phases) driven by arbitrary input split at arbitrary points.
//! Invariants: no panic, every reply line is `ddd[ -]text CRLF`, and buffered input stays
//! bounded by what was pushed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealmail_smtp::proto::Command;
use sealmail_smtp::session::{Action, AuthFailure, Mode, RecipientVerdict, Session, SessionConfig};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    for line in input.split(|b| *b == b'\n') {
        let _ = Command::parse(line.strip_suffix(b"\r").unwrap_or(line));
    }
    let config = SessionConfig {
        mode: if selector & 1 == 0 { Mode::Mx } else { Mode::Submission },
        max_message_size: 4096,
        ..SessionConfig::default()
    };
    let mut session = Session::new(Arc::new(config), "192.0.2.7".parse().unwrap());
    if selector & 2 != 0 {
        session = session.allow_plaintext_auth();
    }
    session.greeting();
    let split = usize::from(selector >> 2).min(input.len());
    let mut output = Vec::new();
    'feed: for piece in [&input[..split], &input[split..]] {
        session.push_input(piece);
        loop {
            match session.next_action() {
                Action::NeedInput => break,
                Action::Close => break 'feed,
                Action::StartTls => session.tls_started(),
                Action::CheckRecipient { address, .. } => {
                    let verdict = if address.as_str().len() % 2 == 0 {
                        RecipientVerdict::Accepted
                    } else {
                        RecipientVerdict::Unknown
                    };
                    session.recipient_checked(address, verdict);
                }
                Action::Deliver(delivery) => {
                    assert!(!delivery.recipients.is_empty());
                    assert!(delivery.message.len() <= 4096);
                    session.delivered(Ok(()));
                }
                Action::Authenticate(credentials) => {
                    let result = sealmail_core::registry::Address::parse(&credentials.username)
                        .map_err(|_| AuthFailure::InvalidCredentials);
                    session.authenticated(result);
                }
            }
        }
        output.extend(session.take_output());
    }
    for line in output.split_inclusive(|b| *b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "reply line without CRLF");
        assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit), "bad reply line");
        assert!(line[3] == b' ' || line[3] == b'-');
    }
});

//! The state machine driven without sockets: replies to pipelined input, in order.

use super::*;
use crate::proto::DsnNotify;

/// Drive `session` over `input`, resolving actions the way a driver would: recipients on
/// `example.test` exist except `nobody@`, `full@` is over quota; deliveries succeed and are
/// recorded; the password `right` is correct.
struct Harness {
    session: Session,
    delivered: Vec<Delivery>,
}

impl Harness {
    fn new(mode: Mode) -> Self {
        let config = SessionConfig {
            mode,
            hostname: "mx.test".into(),
            max_message_size: 200,
            max_recipients: 3,
            max_errors: 5,
        };
        let mut session = Session::new(Arc::new(config), "192.0.2.1".parse().unwrap());
        session.greeting();
        Harness {
            session,
            delivered: Vec::new(),
        }
    }

    fn send(&mut self, input: &[u8]) -> String {
        self.session.push_input(input);
        loop {
            match self.session.next_action() {
                Action::NeedInput | Action::Close | Action::StartTls => break,
                Action::CheckRecipient { address, .. } => {
                    let verdict = match address.as_str() {
                        "nobody@example.test" => RecipientVerdict::Unknown,
                        "full@example.test" => RecipientVerdict::OverQuota,
                        a if a.ends_with("@example.test") => RecipientVerdict::Accepted,
                        a if a.ends_with("@relay.test") => RecipientVerdict::Relay,
                        _ => RecipientVerdict::NotLocal,
                    };
                    self.session.recipient_checked(address, verdict);
                }
                Action::Deliver(delivery) => {
                    self.delivered.push(delivery);
                    self.session.delivered(Ok(()));
                }
                Action::Authenticate(credentials) => {
                    let result = if &*credentials.password == "right" {
                        Ok(Address::parse(&credentials.username).unwrap())
                    } else {
                        Err(AuthFailure::InvalidCredentials)
                    };
                    self.session.authenticated(result);
                }
            }
        }
        String::from_utf8(self.session.take_output()).unwrap()
    }

    fn codes(&mut self, input: &[u8]) -> Vec<String> {
        self.send(input)
            .lines()
            .filter(|line| line.as_bytes().get(3) == Some(&b' '))
            .map(|line| line[..line.len().min(9)].to_string())
            .collect()
    }
}

#[test]
fn pipelined_transaction_gets_replies_in_order() {
    let mut h = Harness::new(Mode::Mx);
    let greeting = h.send(b"");
    assert!(greeting.starts_with("220 mx.test ESMTP"), "{greeting}");
    let ehlo = h.send(b"EHLO client.test\r\n");
    for extension in [
        "PIPELINING",
        "SIZE 200",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(ehlo.contains(extension), "{extension} missing: {ehlo}");
    }
    assert!(!ehlo.contains("AUTH"), "MX offers no AUTH");
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured");
    let codes = h.codes(
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<full@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n",
    );
    assert_eq!(
        codes,
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "552 5.2.2",
            "550 5.7.1",
            "354 end d"
        ]
    );
    let codes = h.codes(b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_eq!(codes, ["250 2.0.0", "221 2.0.0"]);
    assert_eq!(h.delivered.len(), 1);
    let delivery = &h.delivered[0];
    assert_eq!(delivery.message, b"Subject: hi\r\n\r\n.dot\r\n");
    assert_eq!(
        delivery.recipients,
        [Address::parse("b@example.test").unwrap()]
    );
    assert!(
        delivery
            .received
            .starts_with("Received: from client.test ([192.0.2.1])")
    );
    assert!(delivery.received.contains("with ESMTP id"));
    assert!(delivery.received.contains("for <b@example.test>"));
    assert!(delivery.received.ends_with(" +0000\r\n"));
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"");
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(
        h.codes(b"HELO c.test\r\nRCPT TO:<b@example.test>\r\n"),
        ["250 mx.te", "503 5.5.1"]
    );
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nDATA\r\n"),
        ["250 2.1.0", "554 5.5.1"]
    );
    assert_eq!(
        h.codes(b"MAIL FROM:<a@b.test>\r\n"),
        ["503 5.5.1"],
        "nested MAIL"
    );
    assert_eq!(
        h.codes(b"RSET\r\nVRFY x\r\nEXPN y\r\nHELP\r\nNOOP\r\n"),
        [
            "250 2.0.0",
            "252 2.5.0",
            "502 5.5.1",
            "214 2.0.0",
            "250 2.0.0"
        ]
    );
}

#[test]
fn garbage_gets_errors_then_the_connection_closes() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"");
    let codes = h.codes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nfoo\r\nbar\r\nbaz\r\nNOOP\r\n");
    assert_eq!(
        codes,
        [
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "421 4.7.0"
        ]
    );
    assert!(matches!(h.session.next_action(), Action::Close));
}

#[test]
fn bare_lf_and_long_command_lines() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"");
    assert_eq!(h.codes(b"NOOP\n"), ["500 5.5.2"]);
    let mut long = vec![b'N'; MAX_COMMAND_LINE + 10];
    assert!(h.send(&long).is_empty(), "nothing until the line ends");
    long.clear();
    long.extend_from_slice(&[b'x'; 3000]);
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(h.codes(&long), ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn message_defects_are_refused_after_the_data() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"EHLO c.test\r\n");
    let start = b"MAIL FROM:<a@r.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n";
    assert_eq!(h.codes(start).last().unwrap(), "354 end d");
    assert_eq!(h.codes(b"a\nb\r\n.\r\n"), ["554 5.6.0"], "bare LF");
    h.codes(start);
    assert_eq!(h.codes(b"a\0b\r\n.\r\n"), ["554 5.6.0"], "NUL");
    h.codes(start);
    let mut long = vec![b'y'; 1200];
    long.extend_from_slice(b"\r\n.\r\n");
    // Over 200 bytes: the size limit answers first.
    assert_eq!(h.codes(&long), ["552 5.3.4"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@r.test> SIZE=201\r\n"), ["552 5.3.4"]);
    assert!(h.delivered.is_empty(), "nothing defective was delivered");
    assert_eq!(
        h.codes(b"MAIL FROM:<a@r.test> SIZE=20\r\n"),
        ["250 2.1.0"],
        "session still usable"
    );
}

#[test]
fn bdat_chunks_including_refused_ones_stay_in_step() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"EHLO c.test\r\n");
    // A BDAT without a transaction: its bytes are read and dropped, then 503.
    assert_eq!(
        h.codes(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        ["503 5.5.1", "250 2.0.0"]
    );
    let codes = h.codes(
        b"MAIL FROM:<a@r.test>\r\nRCPT TO:<b@example.test>\r\nBDAT 9\r\nSubject: BDAT 8 LAST\r\n\r\n\r\nhi\r\n",
    );
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"]);
    assert_eq!(h.delivered[0].message, b"Subject: \r\n\r\nhi\r\n");
    assert_eq!(
        h.codes(b"MAIL FROM:<a@r.test>\r\nRCPT TO:<b@example.test>\r\nBDAT 0 LAST\r\n"),
        ["250 2.1.0", "250 2.1.5", "250 2.0.0"]
    );
    assert_eq!(h.delivered[1].message, b"");
    h.codes(b"MAIL FROM:<a@r.test>\r\nRCPT TO:<b@example.test>\r\n");
    let mut big = b"BDAT 300\r\n".to_vec();
    big.extend_from_slice(&[b'z'; 300]);
    big.extend_from_slice(b"BDAT 1 LAST\r\nz");
    assert_eq!(
        h.codes(&big),
        ["552 5.3.4", "503 5.5.1"],
        "after a failed chunk, no transaction"
    );
    assert_eq!(h.delivered.len(), 2);
}

#[test]
fn recipient_limit_and_duplicates() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n");
    let codes = h.codes(
        b"RCPT TO:<1@example.test>\r\nRCPT TO:<1@EXAMPLE.test>\r\nRCPT TO:<2@example.test>\r\n\
          RCPT TO:<3@example.test>\r\nRCPT TO:<4@example.test>\r\nRCPT TO:<bad address@x>\r\n",
    );
    assert_eq!(
        codes,
        [
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "501 5.5.4"
        ]
    );
    h.codes(b"DATA\r\nx\r\n.\r\n");
    assert_eq!(h.delivered[0].recipients.len(), 3);
    assert!(
        !h.delivered[0].received.contains("for <"),
        "no for clause with several recipients"
    );
}

#[test]
fn smtputf8_addresses_need_the_parameter() {
    let mut h = Harness::new(Mode::Mx);
    h.send(b"EHLO c.test\r\n");
    assert_eq!(
        h.codes("MAIL FROM:<jos\u{e9}@r.test>\r\n".as_bytes()),
        ["553 5.6.7"]
    );
    let codes = h.codes("MAIL FROM:<jos\u{e9}@r.test> SMTPUTF8\r\nRCPT TO:<m\u{fc}ller@example.test>\r\nDATA\r\nx\r\n.\r\n".as_bytes());
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "354 end d", "250 2.0.0"]);
    assert!(h.delivered[0].received.contains("with UTF8SMTP id"));
}

#[test]
fn submission_requires_auth_and_own_sender() {
    let mut h = Harness::new(Mode::Submission);
    h.send(b"");
    let ehlo = h.send(b"EHLO c.test\r\n");
    assert!(
        !ehlo.contains("AUTH"),
        "no AUTH without TLS from a non-loopback peer"
    );
    assert_eq!(h.codes(b"AUTH PLAIN AGEAYg==\r\n"), ["538 5.7.1"]);
    assert_eq!(h.codes(b"MAIL FROM:<me@example.test>\r\n"), ["530 5.7.0"]);
    h.session.tls_started();
    let ehlo = h.send(b"EHLO c.test\r\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let wrong = Base64::encode_string(b"\0me@example.test\0wrong");
    assert_eq!(
        h.codes(format!("AUTH PLAIN {wrong}\r\n").as_bytes()),
        ["535 5.7.8"]
    );
    // AUTH LOGIN, cancelled, then completed.
    assert_eq!(h.codes(b"AUTH LOGIN\r\n*\r\n"), ["334 VXNlc", "501 5.0.0"]);
    let user = Base64::encode_string(b"me@example.test");
    let pass = Base64::encode_string(b"right");
    let codes = h.codes(format!("AUTH LOGIN\r\n{user}\r\n{pass}\r\n").as_bytes());
    assert_eq!(codes, ["334 VXNlc", "334 UGFzc", "235 2.7.0"]);
    assert_eq!(
        h.session.authenticated_address().unwrap().as_str(),
        "me@example.test"
    );
    assert_eq!(
        h.codes(b"MAIL FROM:<other@example.test>\r\n"),
        ["553 5.7.1"]
    );
    let codes = h.codes(b"MAIL FROM:<Me@Example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<you@example.test>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(
        codes,
        [
            "250 2.1.0",
            "550 5.7.1",
            "250 2.1.5",
            "354 end d",
            "250 2.0.0"
        ]
    );
    assert!(h.delivered[0].received.contains("with ESMTPSA id"));
}

#[test]
fn relayed_recipients_travel_apart_from_local_ones() {
    let mut h = Harness::new(Mode::Submission);
    h.send(b"");
    h.session.tls_started();
    let auth = Base64::encode_string(b"\0me@example.test\0right");
    let codes = h.codes(
        format!(
            "EHLO c.test\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<me@example.test>\r\n\
             RCPT TO:<far@relay.test>\r\nRCPT TO:<far@relay.test>\r\nRCPT TO:<you@example.test>\r\n\
             DATA\r\nhi\r\n.\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(
        codes,
        [
            "250 HELP",
            "235 2.7.0",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "354 end d",
            "250 2.0.0"
        ]
    );
    let delivery = &h.delivered[0];
    assert_eq!(delivery.recipients.len(), 1, "one local recipient");
    assert_eq!(delivery.recipients[0].as_str(), "you@example.test");
    assert_eq!(
        delivery.relay_recipients.len(),
        1,
        "listed twice, relayed once"
    );
    assert_eq!(delivery.relay_recipients[0].as_str(), "far@relay.test");
    // A transaction with only relayed recipients is complete too.
    let codes =
        h.codes(b"MAIL FROM:<me@example.test>\r\nRCPT TO:<x@relay.test>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "354 end d", "250 2.0.0"]);
    assert!(h.delivered[1].received.contains("for <x@relay.test>"));
}

#[test]
fn dsn_parameters_of_relayed_recipients_reach_the_delivery() {
    let mut h = Harness::new(Mode::Submission);
    h.send(b"");
    h.session.tls_started();
    let auth = Base64::encode_string(b"\0me@example.test\0right");
    let ehlo = h.send(format!("EHLO c.test\r\nAUTH PLAIN {auth}\r\n").as_bytes());
    assert!(ehlo.contains("250-DSN\r\n"), "{ehlo}");
    let codes = h.codes(
        b"MAIL FROM:<me@example.test> RET=HDRS ENVID=env+2B1\r\n\
          RCPT TO:<far@relay.test> NOTIFY=SUCCESS ORCPT=rfc822;far@relay.test\r\n\
          RCPT TO:<quiet@relay.test> NOTIFY=NEVER\r\n\
          RCPT TO:<plain@relay.test>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        codes.last().map(String::as_str),
        Some("250 2.0.0"),
        "{codes:?}"
    );
    let dsn = &h.delivered[0].dsn;
    assert_eq!(dsn.ret, Some(DsnReturn::Headers));
    assert_eq!(dsn.envid.as_deref(), Some("env+2B1"));
    let listed: Vec<(&str, Option<DsnNotify>, Option<&str>)> = dsn
        .relay_recipients
        .iter()
        .map(|(a, p)| (a.as_str(), p.notify, p.orcpt.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "far@relay.test",
                Some(DsnNotify {
                    success: true,
                    failure: false,
                    delay: false
                }),
                Some("rfc822;far@relay.test")
            ),
            ("quiet@relay.test", Some(DsnNotify::default()), None),
        ],
        "only relayed recipients that carried parameters"
    );
    let codes =
        h.codes(b"MAIL FROM:<me@example.test>\r\nRCPT TO:<x@relay.test> NOTIFY=SOMETIMES\r\n");
    assert_eq!(codes, ["250 2.1.0", "501 5.5.4"]);
}

#[test]
fn auth_plain_with_a_separate_response_line() {
    let mut h = Harness::new(Mode::Submission);
    h.session = h.session.allow_plaintext_auth();
    h.send(b"EHLO c.test\r\n");
    let response = Base64::encode_string(b"me@example.test\0me@example.test\0right");
    let codes = h.codes(format!("AUTH PLAIN\r\n{response}\r\n").as_bytes());
    assert_eq!(codes, ["334 ", "235 2.7.0"]);
    assert_eq!(
        h.codes(b"AUTH PLAIN\r\n"),
        ["503 5.5.1"],
        "already authenticated"
    );
    assert_eq!(h.codes(b"AUTH PLAIN ***\r\n"), ["503 5.5.1"]);
}

#[test]
fn credentials_debug_hides_the_password() {
    let credentials = Credentials {
        username: "me@example.test".into(),
        password: Zeroizing::new("hunter2".into()),
    };
    let printed = format!("{credentials:?}");
    assert!(!printed.contains("hunter2") && printed.contains("REDACTED"));
}

#[test]
fn starttls_drops_pipelined_input_and_resets_state() {
    let mut h = Harness::new(Mode::Mx);
    h.session =
        Session::new(h.session.config.clone(), "192.0.2.1".parse().unwrap()).offer_starttls();
    let ehlo = h.send(b"EHLO c.test\r\n");
    assert!(ehlo.contains("STARTTLS"));
    h.session
        .push_input(b"STARTTLS\r\nMAIL FROM:<injected@r.test>\r\n");
    assert!(matches!(h.session.next_action(), Action::StartTls));
    assert_eq!(
        String::from_utf8(h.session.take_output()).unwrap(),
        "220 2.0.0 ready to start TLS\r\n"
    );
    h.session.tls_started();
    assert_eq!(
        h.codes(b""),
        Vec::<String>::new(),
        "the injected command is gone"
    );
    assert_eq!(
        h.codes(b"MAIL FROM:<a@r.test>\r\n"),
        ["503 5.5.1"],
        "EHLO again after TLS"
    );
    let ehlo = h.send(b"EHLO c.test\r\n");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(h.codes(b"STARTTLS\r\n"), ["503 5.5.1"]);
}

#[test]
fn date_format() {
    assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc5322_date(1_795_901_000),
        "Sat, 28 Nov 2026 21:23:20 +0000"
    );
}

#[test]
fn repeated_auth_failures_close_the_connection() {
    let mut h = Harness::new(Mode::Submission);
    h.session = h.session.allow_plaintext_auth();
    h.send(b"EHLO c.test\r\n");
    let wrong = Base64::encode_string(b"\0me@example.test\0wrong");
    let line = format!("AUTH PLAIN {wrong}\r\n");
    for _ in 0..4 {
        assert_eq!(h.codes(line.as_bytes()), ["535 5.7.8"]);
    }
    assert_eq!(
        h.codes(line.as_bytes()),
        ["535 5.7.8", "421 4.7.0"],
        "max_errors is 5"
    );
    assert!(matches!(h.session.next_action(), Action::Close));
}

#[test]
fn rate_limited_recipients_policy_rejections_and_auth_lockouts_have_their_replies() {
    let config = Arc::new(SessionConfig {
        mode: Mode::Mx,
        hostname: "mx.test".into(),
        ..SessionConfig::default()
    });
    let mut session = Session::new(config, "192.0.2.7".parse().unwrap());
    session.push_input(
        b"EHLO relay.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\n",
    );
    let Action::CheckRecipient { address, .. } = session.next_action() else {
        panic!("a recipient check")
    };
    session.recipient_checked(address.clone(), RecipientVerdict::RateLimited);
    session.push_input(b"RCPT TO:<b@example.test>\r\n");
    let Action::CheckRecipient { .. } = session.next_action() else {
        panic!("a recipient check")
    };
    session.recipient_checked(address, RecipientVerdict::Accepted);
    session.push_input(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
    let Action::Deliver(delivery) = session.next_action() else {
        panic!("a delivery")
    };
    // What SPF needs travels with the message.
    assert_eq!(delivery.peer, "192.0.2.7".parse::<IpAddr>().unwrap());
    assert_eq!(delivery.helo, "relay.test");
    assert!(!delivery.authenticated);
    session.delivered(Err(DeliveryFailure::PolicyRejected));
    session.authenticated(Err(AuthFailure::TooManyFailures));
    let output = String::from_utf8(session.take_output()).unwrap();
    let last_lines: Vec<&str> = output
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l.get(..9).unwrap_or(l))
        .collect();
    assert_eq!(
        last_lines[last_lines.len() - 6..],
        [
            "250 2.1.0",
            "450 4.7.1",
            "250 2.1.5",
            "354 end d",
            "550 5.7.1",
            "454 4.7.0"
        ]
    );
}

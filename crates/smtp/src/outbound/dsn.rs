//! Delivery status notifications (RFC 3464): a `multipart/report` with a human-readable part,
//! a `message/delivery-status` part (one block per recipient) and the original headers.

use crate::session::rfc5322_date;

/// What is being reported for a recipient (RFC 3464 2.3.3, `action-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Given up: bounced.
    Failed,
    /// Not delivered yet, still being retried (NOTIFY=DELAY).
    Delayed,
    /// Delivered into the recipient's mailbox here (NOTIFY=SUCCESS).
    Delivered,
    /// Handed to a server that does not report successes itself, i.e. without DSN
    /// (NOTIFY=SUCCESS, RFC 3461 5.2.2).
    Relayed,
}

impl DsnAction {
    fn action_value(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }

    /// The `Status:` of a recipient with this action and this diagnostic.
    fn status(self, diagnostic: &str) -> String {
        match self {
            // A failure after retries keeps its 4.x.x code (e.g. 4.4.7, expired), as Postfix does.
            DsnAction::Failed => status_code(diagnostic, "45", "5.0.0"),
            DsnAction::Delayed => status_code(diagnostic, "4", "4.0.0"),
            DsnAction::Delivered | DsnAction::Relayed => status_code(diagnostic, "2", "2.0.0"),
        }
    }
}

/// One recipient's block.
#[derive(Debug, Clone)]
pub struct DsnRecipient<'a> {
    pub address: &'a str,
    pub action: DsnAction,
    /// The remote reply (`550 5.1.1 no such user`) or our own reason.
    pub diagnostic: &'a str,
    pub remote_host: Option<&'a str>,
    /// The sender's ORCPT (`rfc822;xtext`), echoed as Original-Recipient (RFC 3464 2.3.1).
    pub original_recipient: Option<&'a str>,
    /// For a delayed recipient: until when delivery is retried (unix seconds), given as
    /// Will-Retry-Until (RFC 3464 2.3.9).
    pub retry_until: Option<i64>,
}

/// Build the report. `arrival` is when we accepted the original (unix seconds);
/// `envelope_id` is the sender's ENVID (xtext); `return_full` (RET=FULL) returns the whole
/// original message instead of its headers (RFC 3461 4.3).
pub fn build(
    reporting_host: &str,
    sender: &str,
    original: &[u8],
    arrival: i64,
    recipients: &[DsnRecipient<'_>],
    envelope_id: Option<&str>,
    return_full: bool,
) -> Vec<u8> {
    let now = sealmail_core::time::now_unix();
    let boundary = format!("sealmail-dsn-{}", crate::outbound::store::new_id());
    let failed = recipients.iter().any(|r| r.action == DsnAction::Failed);
    let delayed = !failed && recipients.iter().any(|r| r.action == DsnAction::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Delivery Status Notification (Success)"
    };
    let mut text = String::new();
    text.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_host}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{reporting_host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a delivery status notification (RFC 3464).\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
        date = rfc5322_date(now),
        id = crate::outbound::store::new_id(),
    ));
    if failed {
        text.push_str(&format!(
            "This is the mail system at {reporting_host}.\r\n\r\n\
             Your message could not be delivered to one or more recipients:\r\n\r\n"
        ));
    } else if delayed {
        text.push_str(&format!(
            "This is the mail system at {reporting_host}.\r\n\r\n\
             Your message has not been delivered yet to the recipients below. Delivery is\r\n\
             still being retried; you do not need to send it again.\r\n\r\n"
        ));
    } else {
        text.push_str("Your message was delivered to the following recipients:\r\n\r\n");
    }
    for recipient in recipients {
        text.push_str(&format!(
            "<{}>: {}\r\n",
            recipient.address,
            one_line(recipient.diagnostic)
        ));
    }
    text.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n"
    ));
    if let Some(envelope_id) = envelope_id {
        text.push_str(&format!("Original-Envelope-Id: {envelope_id}\r\n"));
    }
    text.push_str(&format!(
        "Reporting-MTA: dns; {reporting_host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(arrival)
    ));
    for recipient in recipients {
        let action = recipient.action.action_value();
        let status = recipient.action.status(recipient.diagnostic);
        text.push_str("\r\n");
        if let Some(original) = recipient.original_recipient {
            text.push_str(&format!("Original-Recipient: {original}\r\n"));
        }
        text.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {status}\r\n",
            recipient.address
        ));
        if let Some(host) = recipient.remote_host {
            text.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        text.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(recipient.diagnostic),
            rfc5322_date(now)
        ));
        if let Some(until) = recipient.retry_until {
            text.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }
    let (returned_type, returned) = match return_full {
        true => ("message/rfc822", original),
        false => ("text/rfc822-headers", original_headers(original)),
    };
    text.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: {returned_type}\r\n\r\n"
    ));
    let mut report = text.into_bytes();
    report.extend_from_slice(returned);
    if !report.ends_with(b"\r\n") {
        report.extend_from_slice(b"\r\n");
    }
    report.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    report
}

/// The header section of `message`, its final CRLF included.
fn original_headers(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &message[..end + 2],
        None => message,
    }
}

/// The first enhanced status code (RFC 3463) in a reply such as `550 5.1.1 text` whose class
/// is one of `classes`; otherwise `fallback`.
fn status_code(diagnostic: &str, classes: &str, fallback: &str) -> String {
    diagnostic
        .split_ascii_whitespace()
        .find(|word| {
            let mut parts = word.split('.');
            parts
                .next()
                .is_some_and(|c| c.len() == 1 && classes.contains(c))
                && parts.clone().count() == 2
                && parts
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or(fallback)
        .to_string()
}

/// Header field values stay on one line, well below the 998-octet limit.
fn one_line(text: &str) -> String {
    text.chars()
        .take(800)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_is_a_parseable_multipart_report() {
        let original = b"From: a@example.test\r\nSubject: original subject\r\n\r\nsecret body\r\n";
        let report = build(
            "mx.example.test",
            "a@example.test",
            original,
            1_700_000_000,
            &[DsnRecipient {
                address: "b@remote.test",
                action: DsnAction::Failed,
                diagnostic: "550 5.1.1 no such user",
                remote_host: Some("mx.remote.test"),
                original_recipient: None,
                retry_until: None,
            }],
            None,
            false,
        );
        let text = String::from_utf8(report.clone()).unwrap();
        assert!(text.contains("Status: 5.1.1\r\n"), "{text}");
        assert!(text.contains("Action: failed\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.remote.test\r\n"));
        assert!(text.contains("Subject: original subject"));
        assert!(
            !text.contains("secret body"),
            "only the headers are returned"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&report)
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        let content_type = mail_parser::MimeHeaders::content_type(&parsed).unwrap();
        assert_eq!(content_type.c_type, "multipart");
        assert_eq!(content_type.subtype(), Some("report"));
        assert_eq!(parsed.parts.len(), 4, "root, text, status, headers");
    }

    #[test]
    fn dsn_parameters_are_echoed_and_ret_full_returns_the_message() {
        let original = b"Subject: original subject\r\n\r\nthe body\r\n";
        let report = build(
            "mx.example.test",
            "a@example.test",
            original,
            1_700_000_000,
            &[DsnRecipient {
                address: "b@remote.test",
                action: DsnAction::Delivered,
                diagnostic: "250 2.0.0 queued",
                remote_host: None,
                original_recipient: Some("rfc822;B+40remote.test"),
                retry_until: None,
            }],
            Some("ENV+2B1"),
            true,
        );
        let text = String::from_utf8(report).unwrap();
        assert!(text.contains("Original-Envelope-Id: ENV+2B1\r\n"), "{text}");
        assert!(text.contains("Original-Recipient: rfc822;B+40remote.test\r\n"));
        assert!(text.contains("Action: delivered\r\n"));
        assert!(text.contains("Content-Type: message/rfc822\r\n"));
        assert!(text.contains("the body"), "RET=FULL returns the body");
    }

    #[test]
    fn delay_report_says_delayed_and_until_when_it_is_retried() {
        let report = build(
            "mx.example.test",
            "a@example.test",
            b"Subject: s\r\n\r\nbody\r\n",
            1_700_000_000,
            &[DsnRecipient {
                address: "b@remote.test",
                action: DsnAction::Delayed,
                diagnostic: "421 4.3.2 try later",
                remote_host: Some("mx.remote.test"),
                original_recipient: None,
                retry_until: Some(1_700_432_000),
            }],
            None,
            true,
        );
        let text = String::from_utf8(report).unwrap();
        assert!(text.contains("Subject: Delayed Mail (still being retried)\r\n"));
        assert!(
            text.contains("Action: delayed\r\nStatus: 4.3.2\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "Will-Retry-Until: {}\r\n",
            rfc5322_date(1_700_432_000)
        )));
        assert!(text.contains("still being retried"));
        let relayed = build(
            "mx.example.test",
            "a@example.test",
            b"Subject: s\r\n\r\nbody\r\n",
            1_700_000_000,
            &[DsnRecipient {
                address: "b@remote.test",
                action: DsnAction::Relayed,
                diagnostic: "250 ok",
                remote_host: Some("mx.remote.test"),
                original_recipient: None,
                retry_until: None,
            }],
            None,
            false,
        );
        let relayed = String::from_utf8(relayed).unwrap();
        assert!(
            relayed.contains("Action: relayed\r\nStatus: 2.0.0\r\n"),
            "{relayed}"
        );
        assert!(relayed.contains("Delivery Status Notification (Success)"));
    }

    #[test]
    fn status_codes_come_from_replies_of_the_right_class() {
        assert_eq!(status_code("550 5.7.1 denied", "45", "5.0.0"), "5.7.1");
        assert_eq!(status_code("550 denied", "45", "5.0.0"), "5.0.0");
        assert_eq!(status_code("250 2.0.0 ok", "45", "5.0.0"), "5.0.0");
        assert_eq!(status_code("250 2.0.0 ok", "2", "2.0.0"), "2.0.0");
        assert_eq!(
            status_code("4.4.7 expired; last error: 451 4.3.0 busy", "45", "5.0.0"),
            "4.4.7"
        );
        assert_eq!(status_code("5.1.1.1 x", "45", "5.0.0"), "5.0.0");
    }
}

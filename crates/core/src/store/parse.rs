//! Turn raw RFC 5322 bytes into what the store indexes: envelope, body structure, search text,
//! and the byte ranges of attachment bodies that are stored de-duplicated.
//!
//! Parsing never fails: a message mail-parser cannot make sense of is still stored byte for byte
//! and described as a single `text/plain` part.

use super::types::{BodyPart, EmailAddress, EmbeddedMessage, Envelope};
use crate::time::iso8601_utc;
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Attachment bodies smaller than this stay inline in the message skeleton: de-duplicating them
/// would cost more in rows than it saves.
pub(crate) const MIN_DEDUP_ATTACHMENT: u32 = 2048;

/// Cap on the text handed to the full-text index per message, so one huge text part cannot
/// balloon the index.
const MAX_INDEXED_TEXT: usize = 1 << 20;

const PREVIEW_CHARS: usize = 200;

#[derive(Debug, Default)]
pub(crate) struct ParsedMessage {
    pub envelope: Envelope,
    pub body: BodyPart,
    /// Decoded subject.
    pub subject: Option<String>,
    /// ISO-8601 UTC of the Date header.
    pub header_date: Option<String>,
    pub from: Vec<EmailAddress>,
    pub sender: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Decoded text of the text (or HTML-converted) body parts, for the full-text index.
    pub text: String,
    pub preview: Option<String>,
    /// Sorted, non-overlapping `[start, end)` ranges of attachment bodies in the raw message.
    pub attachment_ranges: Vec<(u32, u32)>,
    pub has_attachment: bool,
}

impl ParsedMessage {
    /// Addresses of From, To, Cc and Bcc as one string for the full-text index.
    pub fn address_text(&self) -> String {
        let mut out = String::new();
        for addr in self
            .from
            .iter()
            .chain(&self.to)
            .chain(&self.cc)
            .chain(&self.bcc)
        {
            for part in [&addr.name, &addr.address].into_iter().flatten() {
                out.push_str(part);
                out.push(' ');
            }
        }
        out
    }
}

pub(crate) fn parse(raw: &[u8]) -> ParsedMessage {
    let Some(message) = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.parts.is_empty())
    else {
        return unparsed(raw);
    };
    let mut parsed = ParsedMessage {
        envelope: envelope_of(&message),
        body: body_part(&message, 0, 0),
        subject: message.subject().map(str::to_string),
        header_date: message.date().map(|d| iso8601_utc(d.to_timestamp())),
        from: addresses(message.from()),
        sender: addresses(message.sender()),
        reply_to: addresses(message.reply_to()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        bcc: addresses(message.bcc()),
        message_id: message.message_id().map(str::to_string),
        in_reply_to: text_list(message.in_reply_to()).into_iter().next(),
        references: text_list(message.references()),
        ..Default::default()
    };
    parsed.text = indexed_body_text(&message);
    parsed.preview = message
        .body_preview(PREVIEW_CHARS * 2)
        .map(|p| normalize_preview(&p));
    parsed.has_attachment = message.attachment_count() > 0;
    let mut ranges: Vec<(u32, u32)> = message
        .attachments()
        .filter(|part| !part.is_multipart())
        .map(|part| (part.offset_body, part.offset_end))
        .filter(|&(start, end)| end > start && end - start >= MIN_DEDUP_ATTACHMENT)
        .filter(|&(_, end)| end as usize <= raw.len())
        .collect();
    ranges.sort_unstable();
    ranges.dedup_by(|next, prev| next.0 < prev.1); // drop any overlap, keep the first
    parsed.attachment_ranges = ranges;
    parsed
}

/// What the full-text index takes from a message (its `subject`, `addresses` and `body`
/// columns), exactly as [`parse`] gives it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IndexedText {
    pub subject: Option<String>,
    pub addresses: String,
    pub text: String,
}

/// [`parse`] for the full-text indexer, which re-reads each stored message: only the subject,
/// the addresses and the text, without the envelope, body structure, preview and attachment
/// ranges the indexer would throw away.
pub(crate) fn parse_for_index(raw: &[u8]) -> IndexedText {
    let Some(message) = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.parts.is_empty())
    else {
        let parsed = unparsed(raw);
        return IndexedText {
            addresses: parsed.address_text(),
            subject: parsed.subject,
            text: parsed.text,
        };
    };
    let people = ParsedMessage {
        from: addresses(message.from()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        bcc: addresses(message.bcc()),
        ..Default::default()
    };
    IndexedText {
        subject: message.subject().map(str::to_string),
        addresses: people.address_text(),
        text: indexed_body_text(&message),
    }
}

/// The decoded text of the text (or HTML-converted) body parts, capped for the index.
fn indexed_body_text(message: &Message<'_>) -> String {
    let mut text = String::new();
    for index in 0..message.text_body_count() {
        if text.len() >= MAX_INDEXED_TEXT {
            break;
        }
        if let Some(part) = message.body_text(index) {
            text.push_str(&part);
            text.push('\n');
        }
    }
    truncate_at_char_boundary(&mut text, MAX_INDEXED_TEXT);
    text
}

/// A message without a parseable structure: one text/plain part, body = everything after the
/// first blank line (or all of it).
fn unparsed(raw: &[u8]) -> ParsedMessage {
    let end = raw.len() as u32;
    let body_offset = find_header_end(raw).unwrap_or(0) as u32;
    ParsedMessage {
        body: BodyPart {
            media_type: "text".into(),
            media_subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
            encoding: "7bit".into(),
            header_offset: 0,
            body_offset,
            end_offset: end,
            lines: count_lines(&raw[body_offset as usize..]),
            ..Default::default()
        },
        text: String::from_utf8_lossy(&raw[..raw.len().min(MAX_INDEXED_TEXT)]).into_owned(),
        ..Default::default()
    }
}

/// Offset just past the blank line that ends the header section.
pub(crate) fn find_header_end(raw: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    while line_start < raw.len() {
        let line_end = raw[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| line_start + p);
        let line_end = line_end?;
        let line = &raw[line_start..line_end];
        if line.is_empty() || line == b"\r" {
            return Some(line_end + 1);
        }
        line_start = line_end + 1;
    }
    None
}

fn envelope_of(message: &Message<'_>) -> Envelope {
    let raw = |name: &str| {
        message
            .header_raw(name)
            .map(unfold)
            .filter(|v| !v.is_empty())
    };
    Envelope {
        date: raw("Date"),
        subject: raw("Subject"),
        from: addresses(message.from()),
        sender: addresses(message.sender()),
        reply_to: addresses(message.reply_to()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        bcc: addresses(message.bcc()),
        in_reply_to: raw("In-Reply-To"),
        message_id: raw("Message-ID"),
    }
}

fn body_part(message: &Message<'_>, id: usize, depth: usize) -> BodyPart {
    let Some(part) = message.parts.get(id) else {
        return BodyPart::default();
    };
    let (media_type, media_subtype, params) = match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default(),
            ct.attributes()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect(),
        ),
        None => (
            "text".into(),
            "plain".into(),
            vec![("charset".into(), "us-ascii".into())],
        ),
    };
    let raw = message.raw_message();
    let (body_offset, end_offset) = (part.offset_body, part.offset_end.max(part.offset_body));
    let body_bytes = raw
        .get(body_offset as usize..end_offset as usize)
        .unwrap_or_default();
    let mut out = BodyPart {
        media_type,
        media_subtype,
        params,
        content_id: part.content_id().map(|v| format!("<{v}>")),
        description: part.content_description().map(str::to_string),
        encoding: part
            .content_transfer_encoding()
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "7bit".into()),
        disposition: part.content_disposition().map(|d| {
            let params = d.attributes().unwrap_or_default();
            (
                d.ctype().to_ascii_lowercase(),
                params
                    .iter()
                    .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                    .collect(),
            )
        }),
        language: text_list(part.content_language()),
        location: part.content_location().map(str::to_string),
        header_offset: part.offset_header,
        body_offset,
        end_offset,
        lines: 0,
        parts: Vec::new(),
        message: None,
    };
    match &part.body {
        PartType::Multipart(children) if depth < 64 => {
            out.parts = children
                .iter()
                .map(|&child| body_part(message, child as usize, depth + 1))
                .collect();
        }
        PartType::Message(embedded) if depth < 64 => {
            out.lines = count_lines(body_bytes);
            out.message = Some(Box::new(EmbeddedMessage {
                envelope: envelope_of(embedded),
                body: body_part(embedded, 0, depth + 1),
            }));
        }
        _ => {
            if out.media_type == "text" {
                out.lines = count_lines(body_bytes);
            }
        }
    }
    out
}

fn addresses(address: Option<&Address<'_>>) -> Vec<EmailAddress> {
    let named = |name: &Option<std::borrow::Cow<'_, str>>| name.as_deref().map(str::to_string);
    match address {
        None => Vec::new(),
        Some(Address::List(list)) => list
            .iter()
            .map(|a| EmailAddress {
                name: named(&a.name),
                address: named(&a.address),
            })
            .collect(),
        Some(Address::Group(groups)) => {
            let mut out = Vec::new();
            for group in groups {
                // A group without a name is how mail-parser returns plain lists sometimes.
                if let Some(name) = &group.name {
                    out.push(EmailAddress {
                        name: Some(name.to_string()),
                        address: None,
                    });
                }
                out.extend(group.addresses.iter().map(|a| EmailAddress {
                    name: named(&a.name),
                    address: named(&a.address),
                }));
                if group.name.is_some() {
                    out.push(EmailAddress::default());
                }
            }
            out
        }
    }
}

fn text_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(text) => vec![text.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Header value as sent, with folding removed and surrounding whitespace trimmed.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for piece in value.split('\n') {
        out.push_str(piece.strip_suffix('\r').unwrap_or(piece));
    }
    out.trim().to_string()
}

fn normalize_preview(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(PREVIEW_CHARS).collect()
}

pub(crate) fn count_lines(bytes: &[u8]) -> u32 {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    let unterminated = usize::from(bytes.last().is_some_and(|&b| b != b'\n'));
    (newlines + unterminated) as u32
}

fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexer's lighter parse gives the index exactly what the full parse gives it.
    #[test]
    fn parse_for_index_agrees_with_parse() {
        let messages: &[&[u8]] = &[
            b"From: Ann <ann@example.com>\r\nTo: bob@example.org, Carol <c@example.net>\r\n\
              Cc: undisclosed-recipients:;\r\nBcc: Team: d@example.com, e@example.com;\r\n\
              Subject: =?utf-8?q?caf=C3=A9?= plans\r\n\r\nplain body\r\n",
            b"Subject: alternative\r\nMIME-Version: 1.0\r\n\
              Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\n\
              Content-Type: text/plain\r\n\r\nthe plain version\r\n--x\r\n\
              Content-Type: text/html\r\n\r\n<p>the <b>html</b> version</p>\r\n--x--\r\n",
            b"Subject: html only\r\nContent-Type: text/html\r\n\r\n<div>only <i>html</i></div>\r\n",
            b"Subject: attached\r\nMIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\n\
              Content-Type: text/plain\r\n\r\nsee the file\r\n--y\r\n\
              Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment\r\n\r\n\
              attached notes\r\n--y--\r\n",
            b"no headers at all, just text\r\n",
            b"",
            b"\x00\x01\xff\xfe binary \x00 with NUL\r\n\r\n\x80\x81",
        ];
        for raw in messages {
            let full = parse(raw);
            let expected = IndexedText {
                addresses: full.address_text(),
                subject: full.subject,
                text: full.text,
            };
            assert_eq!(
                parse_for_index(raw),
                expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let first = parse_for_index(messages[0]);
        assert_eq!(first.subject.as_deref(), Some("café plans"));
        assert!(first.addresses.contains("Carol c@example.net"), "{first:?}");
        assert!(
            parse_for_index(messages[1])
                .text
                .contains("the plain version")
        );
    }
}

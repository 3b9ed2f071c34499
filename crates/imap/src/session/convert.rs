//! Conversions between the store's plain types and the protocol's: flags, ENVELOPE,
//! BODYSTRUCTURE, body sections, search keys, dates.

use super::Failure;
use super::selected::Selected;
use crate::proto::{self, Section, SectionText};
use sealmail_core::store::{self, BodyPart, EmailAddress, Flags, UidSet};

/// Flags as IMAP atoms.
pub fn flags(flags: &Flags) -> Vec<String> {
    flags.to_imap()
}

/// Protocol flags -> store flags; `\Recent` is dropped, unknown system flags refused.
pub fn store_flags(flags: &[proto::Flag]) -> Result<Flags, Failure> {
    Flags::from_imap(flags.iter().map(proto::Flag::as_str)).map_err(Failure::bad)
}

/// The flags every folder supports, for FLAGS and PERMANENTFLAGS.
pub fn system_flags() -> Vec<String> {
    ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        .map(String::from)
        .to_vec()
}

fn address(a: &EmailAddress) -> proto::Address {
    match &a.address {
        Some(addr) => {
            let (mailbox, host) = match addr.rsplit_once('@') {
                Some((local, domain)) => (local.to_string(), Some(domain.to_string())),
                None => (addr.clone(), None),
            };
            proto::Address {
                name: a.name.clone(),
                adl: None,
                mailbox: Some(mailbox),
                // RFC 9051: a missing domain is sent as NIL only for group syntax; use an empty
                // host otherwise so the entry is not mistaken for a group start.
                host: Some(host.unwrap_or_default()),
            }
        }
        // Group start `(NIL NIL "group" NIL)` or group end `(NIL NIL NIL NIL)`.
        None => proto::Address {
            name: None,
            adl: None,
            mailbox: a.name.clone(),
            host: None,
        },
    }
}

fn addresses(list: &[EmailAddress]) -> Vec<proto::Address> {
    list.iter().map(address).collect()
}

/// ENVELOPE; Sender and Reply-To default to From (RFC 9051 section 7.5.2).
pub fn envelope(e: &store::Envelope) -> proto::Envelope {
    let from = addresses(&e.from);
    let sender = if e.sender.is_empty() {
        from.clone()
    } else {
        addresses(&e.sender)
    };
    let reply_to = if e.reply_to.is_empty() {
        from.clone()
    } else {
        addresses(&e.reply_to)
    };
    proto::Envelope {
        date: e.date.clone(),
        subject: e.subject.clone(),
        from,
        sender,
        reply_to,
        to: addresses(&e.to),
        cc: addresses(&e.cc),
        bcc: addresses(&e.bcc),
        in_reply_to: e.in_reply_to.clone(),
        message_id: e.message_id.clone(),
    }
}

/// BODYSTRUCTURE from the store's MIME tree.
pub fn body_structure(part: &BodyPart) -> proto::BodyStructure {
    let extension = proto::BodyExtension {
        md5: None,
        disposition: part
            .disposition
            .as_ref()
            .map(|(kind, params)| (kind.to_ascii_uppercase(), params.clone())),
        language: part.language.clone(),
        location: part.location.clone(),
    };
    let upper_params = |params: &[(String, String)]| -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect()
    };
    if part.is_multipart() {
        // A multipart without parts cannot be expressed; describe it as an empty text part.
        if part.parts.is_empty() {
            return proto::BodyStructure::Single {
                media_type: "TEXT".into(),
                subtype: "PLAIN".into(),
                params: Vec::new(),
                id: None,
                description: None,
                encoding: "7BIT".into(),
                size: 0,
                kind: proto::SinglePartKind::Text { lines: 0 },
                extension,
            };
        }
        return proto::BodyStructure::Multi {
            parts: part.parts.iter().map(body_structure).collect(),
            subtype: part.media_subtype.to_ascii_uppercase(),
            params: upper_params(&part.params),
            extension,
        };
    }
    let kind = match &part.message {
        Some(embedded) => proto::SinglePartKind::Message {
            envelope: Box::new(envelope(&embedded.envelope)),
            body: Box::new(body_structure(&embedded.body)),
            lines: u64::from(part.lines),
        },
        None if part.media_type.eq_ignore_ascii_case("text") => proto::SinglePartKind::Text {
            lines: u64::from(part.lines),
        },
        None => proto::SinglePartKind::Basic,
    };
    proto::BodyStructure::Single {
        media_type: part.media_type.to_ascii_uppercase(),
        subtype: part.media_subtype.to_ascii_uppercase(),
        params: upper_params(&part.params),
        id: part.content_id.clone(),
        description: part.description.clone(),
        encoding: part.encoding.to_ascii_uppercase(),
        size: u64::from(part.size()),
        kind,
        extension,
    }
}

fn slice(raw: &[u8], from: u32, to: u32) -> Vec<u8> {
    let (from, to) = (from as usize, to as usize);
    raw.get(from.min(raw.len())..to.min(raw.len()))
        .unwrap_or_default()
        .to_vec()
}

/// The bytes of a body section (RFC 9051 section 6.4.5), `None` when the part does not exist.
pub fn section_bytes(raw: &[u8], root: &BodyPart, section: &Section) -> Option<Vec<u8>> {
    let part = root.find(&section.part)?;
    // HEADER / TEXT / HEADER.FIELDS of a part address the message inside a message/rfc822 part.
    let message_part = |part: &BodyPart| -> Option<(u32, u32, u32)> {
        if section.part.is_empty() {
            return Some((root.header_offset, root.body_offset, root.end_offset));
        }
        let embedded = part.message.as_ref()?;
        Some((
            embedded.body.header_offset,
            embedded.body.body_offset,
            embedded.body.end_offset,
        ))
    };
    match &section.text {
        None if section.part.is_empty() => Some(raw.to_vec()),
        None => Some(slice(raw, part.body_offset, part.end_offset)),
        Some(SectionText::Mime) => Some(slice(raw, part.header_offset, part.body_offset)),
        Some(SectionText::Header) => {
            let (header, body, _) = message_part(part)?;
            Some(slice(raw, header, body))
        }
        Some(SectionText::Text) => {
            let (_, body, end) = message_part(part)?;
            Some(slice(raw, body, end))
        }
        Some(SectionText::HeaderFields { not, fields }) => {
            let (header, body, _) = message_part(part)?;
            Some(header_fields(
                &raw[header as usize..(body as usize).min(raw.len())],
                fields,
                *not,
            ))
        }
    }
}

/// Keep (or drop, with `not`) the named header fields, folded lines included, followed by the
/// blank line that ends a header.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| &line[..i])
                .unwrap_or(b"");
            let listed = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name.trim_ascii()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Apply `<offset.length>` to section data.
pub fn partial(data: Vec<u8>, partial: Option<(u32, u32)>) -> Vec<u8> {
    match partial {
        None => data,
        Some((offset, length)) => {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(length as usize).min(data.len());
            data[start..end].to_vec()
        }
    }
}

fn day(date: &proto::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// Protocol search key -> store search key; sequence-number sets resolve against the selected
/// folder. Keys about `\Recent` match nothing: no message is ever recent to a later session.
pub fn search_key(
    key: &proto::SearchKey,
    selected: &Selected,
) -> Result<store::SearchKey, Failure> {
    use proto::SearchKey as P;
    use store::SearchKey as S;
    let nothing = || S::Uids(UidSet::default());
    Ok(match key {
        P::All => S::All,
        P::Answered => S::Answered(true),
        P::Unanswered => S::Answered(false),
        P::Deleted => S::Deleted(true),
        P::Undeleted => S::Deleted(false),
        P::Draft => S::Draft(true),
        P::Undraft => S::Draft(false),
        P::Flagged => S::Flagged(true),
        P::Unflagged => S::Flagged(false),
        P::Seen => S::Seen(true),
        P::Unseen => S::Seen(false),
        P::Recent | P::New => nothing(),
        P::Old => S::All,
        P::Keyword(k) => S::Keyword(k.clone(), true),
        P::Unkeyword(k) => S::Keyword(k.clone(), false),
        P::Bcc(s) => S::Bcc(s.clone()),
        P::Cc(s) => S::Cc(s.clone()),
        P::From(s) => S::From(s.clone()),
        P::To(s) => S::To(s.clone()),
        P::Subject(s) => S::Subject(s.clone()),
        P::Body(s) => S::Body(s.clone()),
        P::Text(s) => S::Text(s.clone()),
        P::Header(name, value) => S::Header(name.clone(), value.clone()),
        P::Before(d) => S::Before(day(d)),
        P::On(d) => S::On(day(d)),
        P::Since(d) => S::Since(day(d)),
        P::SentBefore(d) => S::SentBefore(day(d)),
        P::SentOn(d) => S::SentOn(day(d)),
        P::SentSince(d) => S::SentSince(day(d)),
        P::Larger(n) => S::Larger(*n),
        P::Smaller(n) => S::Smaller(*n),
        P::ModSeq(m) => S::ModSeq(*m),
        P::Older(s) => S::Older(u64::from(*s)),
        P::Younger(s) => S::Younger(u64::from(*s)),
        P::EmailId(id) => S::EmailId(id.clone()),
        P::ThreadId(id) => S::ThreadId(id.clone()),
        P::SavedBefore(d) => S::SavedBefore(day(d)),
        P::SavedOn(d) => S::SavedOn(day(d)),
        P::SavedSince(d) => S::SavedSince(day(d)),
        // Every folder keeps a save date (RFC 8514 section 4.2).
        P::SaveDateSupported => S::All,
        P::Uid(set) => S::Uids(selected.uid_set(&selected.resolve(set, true)?)),
        // Numbers past the end match nothing in a search (an empty folder's `1:*` is common).
        P::SequenceSet(set) => S::Uids(
            selected
                .resolve(set, false)
                .map(|indexes| selected.uid_set(&indexes))
                .unwrap_or_default(),
        ),
        P::Not(inner) => S::Not(Box::new(search_key(inner, selected)?)),
        P::Or(a, b) => S::Or(
            Box::new(search_key(a, selected)?),
            Box::new(search_key(b, selected)?),
        ),
        P::And(keys) => S::And(
            keys.iter()
                .map(|k| search_key(k, selected))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Whether a search uses MODSEQ (then SEARCH results carry the highest MODSEQ, RFC 7162).
pub fn uses_modseq(key: &proto::SearchKey) -> bool {
    use proto::SearchKey as P;
    match key {
        P::ModSeq(_) => true,
        P::Not(inner) => uses_modseq(inner),
        P::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        P::And(keys) => keys.iter().any(uses_modseq),
        _ => false,
    }
}

/// ISO-8601 UTC text from the store -> Unix seconds (0 if unreadable, which the store never
/// writes).
pub fn unix_time(iso: &str) -> i64 {
    sealmail_core::time::parse_iso8601_utc(iso).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_keeps_folded_lines_and_ends_with_blank_line() {
        let header = b"From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n\r\n";
        assert_eq!(
            header_fields(header, &["subject".into()], false),
            b"Subject: one\r\n two\r\n\r\n"
        );
        assert_eq!(
            header_fields(header, &["SUBJECT".into()], true),
            b"From: a@b\r\nTo: c@d\r\n\r\n"
        );
    }

    #[test]
    fn partial_clamps_to_data() {
        assert_eq!(partial(b"0123456789".to_vec(), Some((2, 3))), b"234");
        assert_eq!(partial(b"0123".to_vec(), Some((2, 10))), b"23");
        assert_eq!(partial(b"0123".to_vec(), Some((9, 10))), b"");
    }
}

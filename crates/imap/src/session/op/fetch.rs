//! FETCH and UID FETCH (RFC 9051 section 6.4.5, CHANGEDSINCE/VANISHED from RFC 7162, BINARY from
//! RFC 3516, EMAILID/THREADID RFC 8474, SAVEDATE RFC 8514, PREVIEW RFC 8970).
//!
//! Messages are processed in chunks, each one coarse store call, and output is flushed between
//! chunks so a `FETCH 1:* BODY[]` never holds the whole folder in memory.

use crate::proto::{
    Code, Data, FetchAttribute, FetchItem, Response, Section, SectionText, SequenceSet,
};
use crate::session::{Done, Failure, OpResult, Responder, Session, convert};
use base64ct::{Base64, Encoding};
use sealmail_core::mailstore::{MailSession, MailStore};
use sealmail_core::store::{BodyPart, FlagMode, Flags, MessageSummary, UidSet};
use std::collections::HashMap;

/// Messages per store call when only metadata is fetched.
const METADATA_CHUNK: usize = 500;
/// Messages per store call when bodies are fetched (bounded memory per chunk).
const BODY_CHUNK: usize = 16;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<M: MailStore>(
    session: &mut Session<M>,
    uid: bool,
    set: SequenceSet,
    mut attributes: Vec<FetchAttribute>,
    changed_since: Option<u64>,
    vanished: bool,
    out: &mut Responder<'_>,
) -> OpResult {
    if vanished && (!uid || !session.enabled.qresync || changed_since.is_none()) {
        return Err(Failure::bad(
            "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC",
        ));
    }
    if changed_since.is_some() {
        session.enabled.condstore = true;
    }
    let authed = session.authed()?;
    let Some(selected) = authed.selected.as_mut() else {
        return Err(Failure::bad("no folder selected"));
    };
    let mut indexes = selected.resolve(&set, uid)?;
    if let Some(since) = changed_since {
        indexes.retain(|&i| selected.messages[i].modseq > since);
        if vanished {
            let requested = match &set {
                SequenceSet::Ranges(_) => {
                    UidSet::from_ranges(set.resolved_ranges(selected.largest_uid().max(1)))
                }
                SequenceSet::Saved => UidSet::from_uids(selected.saved_search.iter().copied()),
            };
            let gone: Vec<u32> = authed
                .mail
                .expunged_since(&selected.folder, since)
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?
                .into_iter()
                .filter(|u| requested.contains(*u))
                .collect();
            if !gone.is_empty() {
                out.push(&Response::Data(Data::Vanished {
                    earlier: true,
                    uids: gone,
                }));
            }
        }
    }
    if uid && !attributes.contains(&FetchAttribute::Uid) {
        attributes.insert(0, FetchAttribute::Uid);
    }
    let needs_raw = attributes.iter().any(|a| {
        matches!(
            a,
            FetchAttribute::BodySection { .. }
                | FetchAttribute::Rfc822
                | FetchAttribute::Rfc822Header
                | FetchAttribute::Rfc822Text
                | FetchAttribute::Binary { .. }
                | FetchAttribute::BinarySize(_)
        )
    });
    let needs_summary = needs_raw
        || attributes.iter().any(|a| {
            !matches!(
                a,
                FetchAttribute::Uid | FetchAttribute::Flags | FetchAttribute::ModSeq
            )
        });
    let sets_seen = !selected.read_only
        && attributes.iter().any(|a| {
            matches!(
                a,
                FetchAttribute::BodySection { peek: false, .. }
                    | FetchAttribute::Binary { peek: false, .. }
                    | FetchAttribute::Rfc822
                    | FetchAttribute::Rfc822Text
            )
        });
    // Set \Seen first (one store call), so the FETCH responses carry the new flags.
    let mut newly_seen = Vec::new();
    if sets_seen {
        let unseen: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&i| !selected.messages[i].flags.seen)
            .collect();
        if !unseen.is_empty() {
            let seen = Flags {
                seen: true,
                ..Flags::default()
            };
            let changed = authed
                .mail
                .set_flags(
                    &selected.folder,
                    selected.uid_set(&unseen),
                    FlagMode::Add,
                    seen,
                    None,
                )
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?;
            for state in changed.updated {
                if let Some(i) = selected.index_of(state.uid) {
                    selected.messages[i] = state;
                    newly_seen.push(i);
                }
            }
        }
    }
    let chunk_size = if needs_raw {
        BODY_CHUNK
    } else {
        METADATA_CHUNK
    };
    let condstore = session_condstore(&attributes);
    for chunk in indexes.chunks(chunk_size) {
        let uids = selected.uid_set(chunk);
        let summaries: HashMap<u32, MessageSummary> = if needs_summary {
            authed
                .mail
                .summaries(&selected.folder, uids.clone())
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?
                .into_iter()
                .map(|s| (s.uid, s))
                .collect()
        } else {
            HashMap::new()
        };
        let raws: HashMap<u32, Vec<u8>> = if needs_raw {
            authed
                .mail
                .fetch_raw(&selected.folder, uids)
                .await
                .map_err(|e| Failure::store(e, Code::NonExistent))?
                .into_iter()
                .map(|r| (r.uid, r.bytes))
                .collect()
        } else {
            HashMap::new()
        };
        for &i in chunk {
            let m = &selected.messages[i];
            let summary = summaries.get(&m.uid);
            let raw = raws.get(&m.uid);
            // Expunged by another session after we last synchronised: nothing to send.
            if (needs_summary && summary.is_none()) || (needs_raw && raw.is_none()) {
                continue;
            }
            let mut items = Vec::with_capacity(attributes.len() + 1);
            for attribute in &attributes {
                items.push(item(attribute, m.uid, &m.flags, m.modseq, summary, raw)?);
            }
            if newly_seen.contains(&i) && !attributes.contains(&FetchAttribute::Flags) {
                items.push(FetchItem::Flags(convert::flags(&m.flags)));
            }
            if condstore && !attributes.contains(&FetchAttribute::ModSeq) {
                items.push(FetchItem::ModSeq(m.modseq));
            }
            out.push(&Response::Data(Data::Fetch {
                seq: i as u32 + 1,
                items,
            }));
        }
        out.flush_if_large().await?;
    }
    Ok(Done::ok("FETCH completed"))
}

/// CHANGEDSINCE already added MODSEQ to the attributes in the parser; nothing else forces it.
fn session_condstore(_attributes: &[FetchAttribute]) -> bool {
    false
}

fn item(
    attribute: &FetchAttribute,
    uid: u32,
    flags: &Flags,
    modseq: u64,
    summary: Option<&MessageSummary>,
    raw: Option<&Vec<u8>>,
) -> Result<FetchItem, Failure> {
    let missing = || Failure::no_code(Code::ServerBug, "message data missing");
    let summary = || summary.ok_or_else(missing);
    let raw = || raw.ok_or_else(missing);
    Ok(match attribute {
        FetchAttribute::Uid => FetchItem::Uid(uid),
        FetchAttribute::Flags => FetchItem::Flags(convert::flags(flags)),
        FetchAttribute::ModSeq => FetchItem::ModSeq(modseq),
        FetchAttribute::InternalDate => {
            FetchItem::InternalDate(convert::unix_time(&summary()?.internal_date))
        }
        FetchAttribute::Rfc822Size => FetchItem::Rfc822Size(summary()?.size),
        FetchAttribute::Envelope => {
            FetchItem::Envelope(Box::new(convert::envelope(&summary()?.envelope)))
        }
        FetchAttribute::BodyStructure => FetchItem::BodyStructure(Box::new(
            convert::body_structure(&summary()?.body_structure),
        )),
        FetchAttribute::Body => FetchItem::Body(Box::new(convert::body_structure(
            &summary()?.body_structure,
        ))),
        FetchAttribute::EmailId => FetchItem::EmailId(summary()?.email_id.clone()),
        FetchAttribute::ThreadId => FetchItem::ThreadId(Some(summary()?.thread_id.clone())),
        FetchAttribute::SaveDate => {
            FetchItem::SaveDate(Some(convert::unix_time(&summary()?.saved_at)))
        }
        FetchAttribute::Preview { .. } => FetchItem::Preview(summary()?.preview.clone()),
        FetchAttribute::Rfc822 => FetchItem::Rfc822(raw()?.clone()),
        FetchAttribute::Rfc822Header => FetchItem::Rfc822Header(
            section(
                raw()?,
                &summary()?.body_structure,
                Section {
                    part: Vec::new(),
                    text: Some(SectionText::Header),
                },
            )
            .unwrap_or_default(),
        ),
        FetchAttribute::Rfc822Text => FetchItem::Rfc822Text(
            section(
                raw()?,
                &summary()?.body_structure,
                Section {
                    part: Vec::new(),
                    text: Some(SectionText::Text),
                },
            )
            .unwrap_or_default(),
        ),
        FetchAttribute::BodySection {
            section: spec,
            partial,
            ..
        } => {
            let data = section(raw()?, &summary()?.body_structure, spec.clone());
            FetchItem::BodySection {
                section: spec.clone(),
                origin: partial.map(|(offset, _)| offset),
                data: data.map(|d| convert::partial(d, *partial)),
            }
        }
        FetchAttribute::Binary { part, partial, .. } => {
            let data = binary(raw()?, &summary()?.body_structure, part)?;
            FetchItem::Binary {
                part: part.clone(),
                origin: partial.map(|(offset, _)| offset),
                data: data.map(|d| convert::partial(d, *partial)),
            }
        }
        FetchAttribute::BinarySize(part) => FetchItem::BinarySize {
            part: part.clone(),
            size: binary(raw()?, &summary()?.body_structure, part)?.map_or(0, |d| d.len() as u64),
        },
    })
}

fn section(raw: &[u8], root: &BodyPart, section: Section) -> Option<Vec<u8>> {
    convert::section_bytes(raw, root, &section)
}

/// The decoded content of a part (RFC 3516): base64 is decoded, identity encodings pass through,
/// others are refused with UNKNOWN-CTE.
fn binary(raw: &[u8], root: &BodyPart, part: &[u32]) -> Result<Option<Vec<u8>>, Failure> {
    let Some(node) = root.find(part) else {
        return Ok(None);
    };
    let body = section(
        raw,
        root,
        Section {
            part: part.to_vec(),
            text: None,
        },
    )
    .unwrap_or_default();
    match node.encoding.to_ascii_lowercase().as_str() {
        "7bit" | "8bit" | "binary" | "" => Ok(Some(body)),
        "base64" => {
            let compact: String = body
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(|&b| b as char)
                .collect();
            Base64::decode_vec(&compact)
                .map(Some)
                .map_err(|_| Failure::no_code(Code::UnknownCte, "invalid base64 content"))
        }
        "quoted-printable" => Ok(Some(decode_quoted_printable(&body))),
        _ => Err(Failure::no_code(
            Code::UnknownCte,
            "content transfer encoding not decodable",
        )),
    }
}

/// Quoted-printable (RFC 2045 section 6.7): `=XX` escapes, soft line breaks (`=` at the end of a
/// line), trailing whitespace on lines dropped. Malformed escapes are kept literally, as the RFC
/// recommends for robustness.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for line in input.split_inclusive(|&b| b == b'\n') {
        let (content, ending): (&[u8], &[u8]) = match line.strip_suffix(b"\r\n") {
            Some(c) => (c, b"\r\n"),
            None => match line.strip_suffix(b"\n") {
                Some(c) => (c, b"\n"),
                None => (line, b""),
            },
        };
        let content = content.trim_ascii_end();
        let (content, soft_break) = match content.strip_suffix(b"=") {
            Some(c) => (c, true),
            None => (content, false),
        };
        let mut i = 0;
        while i < content.len() {
            let b = content[i];
            let hex = |c: u8| (c as char).to_digit(16);
            if b == b'='
                && let (Some(h), Some(l)) = (
                    content.get(i + 1).copied().and_then(hex),
                    content.get(i + 2).copied().and_then(hex),
                )
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            out.push(b);
            i += 1;
        }
        if !soft_break {
            out.extend_from_slice(ending);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode_quoted_printable;

    #[test]
    fn quoted_printable_known_answers() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"Gr=C3=BC=C3=9Fe\r\n", "Grüße\r\n".as_bytes()),
            (b"soft=\r\nbreak\r\n", b"softbreak\r\n"),
            (b"trailing   \r\nx", b"trailing\r\nx"),
            (b"bad =ZZ escape", b"bad =ZZ escape"),
            (b"end =4", b"end =4"),
            (b"a=3D=3d", b"a=="),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_quoted_printable(input), *expected, "{input:?}");
        }
    }
}

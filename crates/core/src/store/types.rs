//! Plain, owned, serializable types the store hands out. They carry no SQLite types so they can
//! cross the `MailStore` boundary and, later, a WebSocket.

use serde::{Deserialize, Serialize};

/// The IMAP system flags (without `\Recent`, which is per session) and keywords of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    /// Keywords such as `$Forwarded` or `$Junk`, in the order first set, without duplicates.
    pub keywords: Vec<String>,
}

impl Flags {
    /// Parse IMAP flag atoms (`\Seen`, `$Forwarded`, ...). System flags match case-insensitively;
    /// `\Recent` is ignored (it cannot be stored); other `\`-flags are refused.
    pub fn from_imap<'a>(atoms: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut flags = Flags::default();
        for atom in atoms {
            match atom.to_ascii_lowercase().as_str() {
                "\\seen" => flags.seen = true,
                "\\answered" => flags.answered = true,
                "\\flagged" => flags.flagged = true,
                "\\deleted" => flags.deleted = true,
                "\\draft" => flags.draft = true,
                "\\recent" => {}
                _ if atom.starts_with('\\') => return Err(format!("unknown system flag {atom}")),
                _ if atom.is_empty() || atom.len() > 255 => {
                    return Err("keyword must be 1 to 255 bytes".into());
                }
                _ => flags.add_keyword(atom),
            }
        }
        Ok(flags)
    }

    /// The flags as IMAP atoms, system flags first.
    pub fn to_imap(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(5 + self.keywords.len());
        for (set, name) in [
            (self.seen, "\\Seen"),
            (self.answered, "\\Answered"),
            (self.flagged, "\\Flagged"),
            (self.deleted, "\\Deleted"),
            (self.draft, "\\Draft"),
        ] {
            if set {
                out.push(name.to_string());
            }
        }
        out.extend(self.keywords.iter().cloned());
        out
    }

    fn add_keyword(&mut self, keyword: &str) {
        if !self
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword))
        {
            self.keywords.push(keyword.to_string());
        }
    }

    /// Apply a STORE-style change and return the result.
    pub fn apply(&self, mode: FlagMode, change: &Flags) -> Flags {
        match mode {
            FlagMode::Replace => change.clone(),
            FlagMode::Add => {
                let mut out = self.clone();
                out.seen |= change.seen;
                out.answered |= change.answered;
                out.flagged |= change.flagged;
                out.deleted |= change.deleted;
                out.draft |= change.draft;
                for keyword in &change.keywords {
                    out.add_keyword(keyword);
                }
                out
            }
            FlagMode::Remove => {
                let mut out = self.clone();
                out.seen &= !change.seen;
                out.answered &= !change.answered;
                out.flagged &= !change.flagged;
                out.deleted &= !change.deleted;
                out.draft &= !change.draft;
                out.keywords
                    .retain(|k| !change.keywords.iter().any(|c| c.eq_ignore_ascii_case(k)));
                out
            }
        }
    }
}

/// How a flag change combines with the flags a message has (IMAP STORE `FLAGS`, `+FLAGS`, `-FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagMode {
    Replace,
    Add,
    Remove,
}

/// A set of UIDs as sorted, non-overlapping inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidSet(Vec<(u32, u32)>);

impl UidSet {
    /// Build from arbitrary (possibly overlapping, reversed) ranges.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut ranges: Vec<(u32, u32)> = ranges
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self(merged)
    }

    pub fn from_uids(uids: impl IntoIterator<Item = u32>) -> Self {
        Self::from_ranges(uids.into_iter().map(|u| (u, u)))
    }

    pub fn all() -> Self {
        Self(vec![(1, u32::MAX)])
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn contains(&self, uid: u32) -> bool {
        self.0
            .binary_search_by(|&(start, end)| {
                if end < uid {
                    std::cmp::Ordering::Less
                } else if start > uid {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges as a JSON array `[[a,b],...]`, bound as one SQL parameter.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("ranges serialize")
    }
}

/// What `STATUS`/`SELECT` need to know about a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    pub path: String,
    /// `\Sent`, `\Drafts`, ... (RFC 6154), if any.
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub subscribed: bool,
    pub messages: u32,
    pub unseen: u32,
    /// Sum of RFC822.SIZE of the messages (STATUS=SIZE).
    pub size: u64,
}

impl FolderInfo {
    /// RFC 8474 MAILBOXID. UIDVALIDITY values are unique within a mailbox file (a counter that
    /// only grows, see `insert_folder`) and survive RENAME, which is what MAILBOXID promises;
    /// renaming INBOX moves its messages to a new folder, which gets a new id as it should.
    pub fn mailbox_id(&self) -> String {
        format!("F{:08x}", self.uidvalidity)
    }
}

/// An address as it appears in a header: display name (decoded) and `local@domain`.
/// A group is written as `{name: group, address: None}` followed by its members and a closing
/// `{None, None}`, the shape IMAP ENVELOPE uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// The IMAP ENVELOPE fields. `date`, `subject`, `in_reply_to` and `message_id` are the header
/// values as sent (unfolded, encoded-words intact); addresses are parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<EmailAddress>,
    pub sender: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One MIME part as IMAP BODYSTRUCTURE describes it, with byte offsets into the raw message so
/// `BODY[1.2]`, `BODY[1.2.MIME]` and `BINARY[...]` are slices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Lowercase MIME type and subtype, e.g. `text` / `plain`, `multipart` / `mixed`.
    pub media_type: String,
    pub media_subtype: String,
    /// Content-Type parameters (names lowercased), e.g. `charset`, `boundary`, `name`.
    pub params: Vec<(String, String)>,
    pub content_id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding as sent, lowercased; `7bit` when absent.
    pub encoding: String,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Offset of this part's header, of its body, and of its end in the raw message.
    pub header_offset: u32,
    pub body_offset: u32,
    pub end_offset: u32,
    /// Number of lines of the body (text parts and message/rfc822).
    pub lines: u32,
    /// Children of a multipart part.
    pub parts: Vec<BodyPart>,
    /// The envelope and body of a message/rfc822 part.
    pub message: Option<Box<EmbeddedMessage>>,
}

impl BodyPart {
    /// Body size in octets as transmitted.
    pub fn size(&self) -> u32 {
        self.end_offset.saturating_sub(self.body_offset)
    }

    pub fn is_multipart(&self) -> bool {
        self.media_type == "multipart"
    }

    /// The part at an IMAP section path like `[1, 2]` (1-based). `[]` is the whole message.
    /// A non-multipart message has part `1` = itself (for a message/rfc822 body too: part 1 is
    /// then the encapsulated message); a message/rfc822 part's children are reached through
    /// its embedded body.
    pub fn find(&self, path: &[u32]) -> Option<&BodyPart> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = if self.is_multipart() {
            self.parts.get(first.checked_sub(1)? as usize)?
        } else if first == 1 {
            self
        } else {
            return None;
        };
        if rest.is_empty() {
            return Some(child);
        }
        match &child.message {
            Some(embedded) if !child.is_multipart() => embedded.body.find(rest),
            _ => child.find(rest),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedMessage {
    pub envelope: Envelope,
    pub body: BodyPart,
}

/// The per-message data the IMAP session keeps for a selected folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
}

/// Everything about a message except its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    /// ISO-8601 UTC.
    pub internal_date: String,
    /// ISO-8601 UTC (RFC 8514 SAVEDATE).
    pub saved_at: String,
    pub size: u64,
    /// Octets with every line ending CRLF and a final CRLF: what POP3 announces and sends
    /// (differs from `size` only for messages stored with bare LF or no final line ending).
    pub crlf_size: u64,
    /// Stable across folders for copies of one message (RFC 8474 EMAILID).
    pub email_id: String,
    /// RFC 8474 THREADID.
    pub thread_id: String,
    pub preview: Option<String>,
    pub envelope: Envelope,
    pub body_structure: BodyPart,
}

/// Options for [`Mailbox::append`](super::Mailbox::append).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppendOptions {
    pub flags: Flags,
    /// Unix seconds; now when `None`.
    pub internal_date: Option<i64>,
}

/// Result of an append: what UIDPLUS's APPENDUID reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
    pub modseq: u64,
}

/// Result of COPY or MOVE: source and destination UIDs in order (UIDPLUS's COPYUID).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copied {
    pub uidvalidity: u32,
    pub pairs: Vec<(u32, u32)>,
}

/// Result of a flag change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagsChanged {
    /// Messages whose flags were written, with their new state.
    pub updated: Vec<MessageState>,
    /// UIDs left alone because their MODSEQ exceeded UNCHANGEDSINCE (CONDSTORE's MODIFIED).
    pub modified: Vec<u32>,
}

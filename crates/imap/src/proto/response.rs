//! Responses the server sends, as plain data; [`super::encode`] turns them into bytes.

use super::types::{Section, StatusItem, Tag};

/// `response = *(continue-req / response-data) response-done`
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Status(StatusResponse),
    Data(Data),
    /// `continue-req = "+" SP (resp-text / base64) CRLF`
    Continue(String),
}

/// `resp-cond-state / resp-cond-bye / response-tagged`: OK, NO, BAD, PREAUTH, BYE.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusResponse {
    /// `None` for untagged (`*`) responses.
    pub tag: Option<Tag>,
    pub kind: StatusKind,
    pub code: Option<Code>,
    /// Human-readable text; line breaks are replaced on encoding.
    pub text: String,
}

impl StatusResponse {
    pub fn tagged(tag: Tag, kind: StatusKind, code: Option<Code>, text: impl Into<String>) -> Self {
        StatusResponse {
            tag: Some(tag),
            kind,
            code,
            text: text.into(),
        }
    }

    pub fn untagged(kind: StatusKind, code: Option<Code>, text: impl Into<String>) -> Self {
        StatusResponse {
            tag: None,
            kind,
            code,
            text: text.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// `resp-text-code` (RFC 9051 and extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Alert,
    AlreadyExists,
    /// `"APPENDUID" SP nz-number SP append-uid` (UIDPLUS)
    AppendUid {
        uid_validity: u32,
        uids: Vec<u32>,
    },
    AuthenticationFailed,
    AuthorizationFailed,
    BadCharset(Vec<String>),
    Cannot,
    Capability(Vec<String>),
    ClientBug,
    Closed,
    ContactAdmin,
    /// `"COPYUID" SP nz-number SP uid-set SP uid-set` (UIDPLUS), source and destination in the
    /// same order.
    CopyUid {
        uid_validity: u32,
        source: Vec<u32>,
        destination: Vec<u32>,
    },
    Corruption,
    Expired,
    ExpungeIssued,
    HasChildren,
    HighestModSeq(u64),
    InUse,
    Limit,
    /// `"MODIFIED" SP sequence-set` (CONDSTORE)
    Modified(Vec<u32>),
    NoModSeq,
    NonExistent,
    NoPerm,
    OverQuota,
    Parse,
    PermanentFlags(Vec<String>),
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    ServerBug,
    TooBig,
    TryCreate,
    UidNext(u32),
    UidNotSticky,
    UidValidity(u32),
    Unavailable,
    UnknownCte,
    Unseen(u32),
    UseAttr,
    MailboxId(String),
    /// `COMPRESSIONACTIVE` (RFC 4978)
    CompressionActive,
    /// `"BADEVENT" SP "(" event *(SP event) ")"`: the events NOTIFY supports (RFC 5465)
    BadEvent(Vec<String>),
    /// `NOTIFICATIONOVERFLOW` (RFC 5465)
    NotificationOverflow,
}

/// Untagged data responses.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Capability(Vec<String>),
    Enabled(Vec<String>),
    /// `mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
    /// [SP mbox-list-extended]`
    List {
        attributes: Vec<String>,
        delimiter: Option<char>,
        mailbox: String,
        /// `mbox-list-extended` CHILDINFO (RFC 5258 RECURSIVEMATCH), e.g. `["SUBSCRIBED"]`.
        child_info: Vec<String>,
        /// `mbox-list-extended` OLDNAME (RFC 5465): the name before a rename.
        old_name: Option<String>,
    },
    Lsub {
        attributes: Vec<String>,
        delimiter: Option<char>,
        mailbox: String,
    },
    /// `"STATUS" SP mailbox SP "(" [status-att-list] ")"`
    Status {
        mailbox: String,
        items: Vec<(StatusItem, StatusValue)>,
    },
    /// `mailbox-data =/ "SEARCH" *(SP nz-number) [SP search-sort-mod-seq]`
    Search {
        ids: Vec<u32>,
        highest_modseq: Option<u64>,
    },
    /// `esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)`
    ESearch {
        tag: Option<Tag>,
        uid: bool,
        min: Option<u32>,
        max: Option<u32>,
        count: Option<u32>,
        all: Option<Vec<u32>>,
        highest_modseq: Option<u64>,
    },
    /// `sort-data = "SORT" *(SP nz-number) [SP search-sort-mod-seq]`
    Sort {
        ids: Vec<u32>,
        highest_modseq: Option<u64>,
    },
    /// `thread-data = "THREAD" [SP 1*thread-list]`
    Thread(ThreadList),
    Flags(Vec<String>),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// `"VANISHED" [SP "(EARLIER)"] SP known-uids` (QRESYNC)
    Vanished {
        earlier: bool,
        uids: Vec<u32>,
    },
    Fetch {
        seq: u32,
        items: Vec<FetchItem>,
    },
    /// `id-response = "ID" SP id-params-list`
    Id(Option<Vec<(String, Option<String>)>>),
    /// `namespace-response = "NAMESPACE" SP namespace SP namespace SP namespace`
    Namespace {
        personal: Vec<(String, Option<char>)>,
        other: Vec<(String, Option<char>)>,
        shared: Vec<(String, Option<char>)>,
    },
    /// `quota-response = "QUOTA" SP quota-root-name SP quota-list` (usage, limit per resource)
    Quota {
        root: String,
        resources: Vec<(String, u64, u64)>,
    },
    QuotaRoot {
        mailbox: String,
        roots: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusValue {
    Number(u64),
    /// MAILBOXID (RFC 8474): `"MAILBOXID" SP "(" objectid ")"`
    ObjectId(String),
}

/// A node of a THREAD response; `id == 0` is a placeholder parent with no message of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNode {
    pub id: u32,
    pub children: Vec<ThreadNode>,
}

/// Dropped without recursion: a reply chain thousands of messages deep (anyone can mail one)
/// must not exhaust a worker thread's stack.
impl Drop for ThreadNode {
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(mut node) = pending.pop() {
            pending.append(&mut node.children);
        }
    }
}

/// The threads of a THREAD response as one flat list: every node depth-first (a parent, then
/// each child with its whole subtree), threads one after another, each node as (id, number of
/// children); id 0 is a placeholder parent. Flat, so a result of 100,000 messages is built,
/// encoded and dropped without an allocation per node or recursion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadList {
    pub nodes: Vec<(u32, u32)>,
}

impl ThreadList {
    /// Flatten trees (without recursion).
    pub fn from_trees(roots: &[ThreadNode]) -> ThreadList {
        let mut nodes = Vec::new();
        let mut stack: Vec<&ThreadNode> = roots.iter().rev().collect();
        while let Some(node) = stack.pop() {
            let children = u32::try_from(node.children.len()).unwrap_or(u32::MAX);
            nodes.push((node.id, children));
            stack.extend(node.children.iter().rev());
        }
        ThreadList { nodes }
    }
}

/// `msg-att-dynamic / msg-att-static` items of a FETCH response.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchItem {
    Flags(Vec<String>),
    Uid(u32),
    Rfc822Size(u64),
    /// Seconds since the Unix epoch; encoded as `date-time` in UTC.
    InternalDate(i64),
    ModSeq(u64),
    EmailId(String),
    ThreadId(Option<String>),
    SaveDate(Option<i64>),
    Preview(Option<String>),
    Envelope(Box<Envelope>),
    BodyStructure(Box<BodyStructure>),
    /// `BODY` without section: body structure without extension data.
    Body(Box<BodyStructure>),
    /// `"BODY" section ["<" number ">"] SP nstring`
    BodySection {
        section: Section,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    /// `"BINARY" section-binary ["<" number ">"] SP (nstring / literal8)`
    Binary {
        part: Vec<u32>,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    BinarySize {
        part: Vec<u32>,
        size: u64,
    },
    Rfc822(Vec<u8>),
    Rfc822Header(Vec<u8>),
    Rfc822Text(Vec<u8>),
}

/// `envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to
/// SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"`; header values raw as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// `address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"`; a group start has
/// `host: None` and the group name as `mailbox`, a group end has `mailbox` and `host` both `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    pub adl: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// `body = "(" (body-type-1part / body-type-mpart) ")"`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStructure {
    Single {
        media_type: String,
        subtype: String,
        params: Vec<(String, String)>,
        id: Option<String>,
        description: Option<String>,
        encoding: String,
        size: u64,
        kind: SinglePartKind,
        extension: BodyExtension,
    },
    Multi {
        parts: Vec<BodyStructure>,
        subtype: String,
        params: Vec<(String, String)>,
        extension: BodyExtension,
    },
}

/// What follows the basic fields of a single part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinglePartKind {
    Basic,
    /// `body-type-text = media-text SP body-fields SP body-fld-lines`
    Text {
        lines: u64,
    },
    /// `body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines`
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyStructure>,
        lines: u64,
    },
}

/// `body-ext-1part` / `body-ext-mpart` (MD5 is single-part only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExtension {
    pub md5: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
}

//! Typed IMAP commands as the parser produces them.
//!
//! Every type is plain owned data: validated where the grammar restricts values (tags, sequence
//! numbers), secrets wrapped so `Debug` never prints them.

use std::fmt;

/// `tag = 1*<any ASTRING-CHAR except "+">` (RFC 9051).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// Longest tag accepted; real clients use a few characters, so this only bounds replies.
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&[u8]> for Tag {
    type Error = ();

    fn try_from(bytes: &[u8]) -> Result<Self, ()> {
        if bytes.is_empty()
            || bytes.len() > Self::MAX_LEN
            || !bytes.iter().all(|&b| is_astring_char(b) && b != b'+')
        {
            return Err(());
        }
        // Every astring-char is 7-bit ASCII, so this cannot fail.
        Ok(Tag(String::from_utf8_lossy(bytes).into_owned()))
    }
}

impl TryFrom<&str> for Tag {
    type Error = ();

    fn try_from(s: &str) -> Result<Self, ()> {
        Tag::try_from(s.as_bytes())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `ATOM-CHAR = <any CHAR except atom-specials>`;
/// `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials`.
pub fn is_atom_char(b: u8) -> bool {
    b.is_ascii()
        && !b.is_ascii_control()
        && !matches!(
            b,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// A password or SASL response: never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Overwrite before the allocation is returned; `black_box` keeps the writes from being
        // optimised away as dead stores.
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// One parsed command: `command = tag SP (command-any / command-auth / command-nonauth /
/// command-select) CRLF`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub tag: Tag,
    pub body: CommandBody,
}

/// Every command of RFC 3501 / RFC 9051 and of the extensions sealmail implements.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]` (SASL-IR, RFC 4959).
    /// `initial_response` is still base64: `Some(empty)` stands for "=".
    Authenticate {
        mechanism: String,
        initial_response: Option<Secret>,
    },
    /// `login = "LOGIN" SP userid SP password`
    Login {
        username: String,
        password: Secret,
    },
    /// `enable = "ENABLE" 1*(SP capability)` (RFC 5161)
    Enable(Vec<String>),
    /// `select = "SELECT" SP mailbox [select-params]`; EXAMINE is the same with `read_only`.
    Select {
        mailbox: Mailbox,
        read_only: bool,
        params: SelectParams,
    },
    /// `create = "CREATE" SP mailbox [create-params]` (USE from RFC 6154).
    Create {
        mailbox: Mailbox,
        special_use: Vec<String>,
    },
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    /// `list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]`
    List(ListCommand),
    /// `lsub = "LSUB" SP mailbox SP list-mailbox`
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    /// `status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")"`
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    /// `append = "APPEND" SP mailbox 1*append-message` (MULTIAPPEND, RFC 3502)
    Append {
        mailbox: Mailbox,
        messages: Vec<AppendMessage>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Unauthenticate,
    Expunge,
    /// `uid-expunge = "UID" SP "EXPUNGE" SP sequence-set` (UIDPLUS)
    UidExpunge(SequenceSet),
    Search(SearchCommand),
    /// `fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    /// "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]`
    Fetch {
        uid: bool,
        set: SequenceSet,
        attributes: Vec<FetchAttribute>,
        changed_since: Option<u64>,
        vanished: bool,
    },
    /// `store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags`
    Store {
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    /// `move = "MOVE" SP sequence-set SP mailbox` (RFC 6851)
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    /// `id = "ID" SP id-params-list`; `None` is `NIL` (RFC 2971)
    Id(Option<Vec<(String, Option<String>)>>),
    /// `sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria` (RFC 5256)
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: String,
        key: SearchKey,
        result: Option<Vec<SearchReturn>>,
    },
    /// `thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria` (RFC 5256)
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
    },
    /// `getquota = "GETQUOTA" SP quota-root-name` (RFC 9208)
    GetQuota(String),
    /// `getquotaroot = "GETQUOTAROOT" SP mailbox`
    GetQuotaRoot(Mailbox),
    /// `setquota = "SETQUOTA" SP quota-root-name SP setquota-list`
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    /// `compress = "COMPRESS" SP algorithm` (RFC 4978)
    Compress(String),
    /// `notify = "NOTIFY" SP (notify-set / notify-none)` (RFC 5465)
    Notify(NotifyCommand),
}

impl CommandBody {
    /// The command name as clients write it, for logs and metrics (never arguments).
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            Capability => "CAPABILITY",
            Noop => "NOOP",
            Logout => "LOGOUT",
            StartTls => "STARTTLS",
            Authenticate { .. } => "AUTHENTICATE",
            Login { .. } => "LOGIN",
            Enable(_) => "ENABLE",
            Select {
                read_only: false, ..
            } => "SELECT",
            Select {
                read_only: true, ..
            } => "EXAMINE",
            Create { .. } => "CREATE",
            Delete(_) => "DELETE",
            Rename { .. } => "RENAME",
            Subscribe(_) => "SUBSCRIBE",
            Unsubscribe(_) => "UNSUBSCRIBE",
            List(_) => "LIST",
            Lsub { .. } => "LSUB",
            Namespace => "NAMESPACE",
            Status { .. } => "STATUS",
            Append { .. } => "APPEND",
            Idle => "IDLE",
            Check => "CHECK",
            Close => "CLOSE",
            Unselect => "UNSELECT",
            Unauthenticate => "UNAUTHENTICATE",
            Expunge => "EXPUNGE",
            UidExpunge(_) => "UID EXPUNGE",
            Search(s) if s.uid => "UID SEARCH",
            Search(_) => "SEARCH",
            Fetch { uid: true, .. } => "UID FETCH",
            Fetch { .. } => "FETCH",
            Store { uid: true, .. } => "UID STORE",
            Store { .. } => "STORE",
            Copy { uid: true, .. } => "UID COPY",
            Copy { .. } => "COPY",
            Move { uid: true, .. } => "UID MOVE",
            Move { .. } => "MOVE",
            Id(_) => "ID",
            Sort { uid: true, .. } => "UID SORT",
            Sort { .. } => "SORT",
            Thread { uid: true, .. } => "UID THREAD",
            Thread { .. } => "THREAD",
            GetQuota(_) => "GETQUOTA",
            GetQuotaRoot(_) => "GETQUOTAROOT",
            SetQuota { .. } => "SETQUOTA",
            Compress(_) => "COMPRESS",
            Notify(_) => "NOTIFY",
        }
    }
}

/// A mailbox name, decoded from modified UTF-7 (or taken as UTF-8 after `ENABLE UTF8=ACCEPT`).
/// `INBOX` in any case is normalised to `INBOX` (RFC 3501 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox(pub String);

impl Mailbox {
    pub fn new(name: String) -> Self {
        if name.eq_ignore_ascii_case("INBOX") {
            Mailbox("INBOX".into())
        } else {
            Mailbox(name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `select-params = SP "(" select-param *(SP select-param) ")"`: CONDSTORE and QRESYNC (RFC 7162).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QresyncParams>,
}

/// `"QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST with its LIST-EXTENDED (RFC 5258) options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Selection options upper-cased: `SUBSCRIBED`, `REMOTE`, `RECURSIVEMATCH`, `SPECIAL-USE`.
    pub select_options: Vec<String>,
    /// Return options upper-cased: `SUBSCRIBED`, `CHILDREN`, `SPECIAL-USE`; STATUS separately.
    pub return_options: Vec<String>,
    /// `"STATUS" SP "(" status-att *(SP status-att) ")"` (LIST-STATUS, RFC 5819)
    pub return_status: Option<Vec<StatusItem>>,
}

/// `status-att = "MESSAGES" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN" / "DELETED" / "SIZE" /
/// "RECENT" / "HIGHESTMODSEQ" / "APPENDLIMIT" / "MAILBOXID"`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
    MailboxId,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
            StatusItem::MailboxId => "MAILBOXID",
        }
    }

    pub const ALL: [StatusItem; 10] = [
        StatusItem::Messages,
        StatusItem::Recent,
        StatusItem::UidNext,
        StatusItem::UidValidity,
        StatusItem::Unseen,
        StatusItem::Deleted,
        StatusItem::Size,
        StatusItem::HighestModSeq,
        StatusItem::AppendLimit,
        StatusItem::MailboxId,
    ];
}

/// `append-message = append-opts SP append-data`;
/// `append-data = literal / literal8 / "UTF8" SP "(" literal8 ")"` (`literal8` is BINARY,
/// RFC 3516; the UTF8 form is RFC 6855).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub internal_date: Option<DateTime>,
    pub data: Vec<u8>,
    /// Sent as `~{n}`: may contain NUL and needs no content-transfer-decoding.
    pub binary: bool,
    /// Sent as `"UTF8" SP "(" literal8 ")"` (RFC 6855 section 4): headers may hold raw UTF-8.
    pub utf8: bool,
}

/// `flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword /
/// flag-extension`. System flags keep their canonical spelling; keywords keep the client's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flag(String);

impl Flag {
    pub const SEEN: &'static str = "\\Seen";
    pub const ANSWERED: &'static str = "\\Answered";
    pub const FLAGGED: &'static str = "\\Flagged";
    pub const DELETED: &'static str = "\\Deleted";
    pub const DRAFT: &'static str = "\\Draft";
    pub const RECENT: &'static str = "\\Recent";

    /// Canonicalise system flags (`\SEEN` -> `\Seen`); keywords are taken as written.
    pub fn new(name: &str) -> Self {
        for system in [
            Self::SEEN,
            Self::ANSWERED,
            Self::FLAGGED,
            Self::DELETED,
            Self::DRAFT,
            Self::RECENT,
        ] {
            if name.eq_ignore_ascii_case(system) {
                return Flag(system.into());
            }
        }
        Flag(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in minutes, e.g. `-0700` is -420.
    pub zone_minutes: i16,
}

impl DateTime {
    /// Seconds since the Unix epoch (UTC).
    pub fn unix_timestamp(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }

    /// The UTC date-time of a Unix timestamp.
    pub fn from_unix_timestamp(ts: i64) -> Self {
        let days = ts.div_euclid(86_400);
        let secs = ts.rem_euclid(86_400);
        DateTime {
            date: Date::from_days_since_epoch(days),
            hour: (secs / 3600) as u8,
            minute: (secs % 3600 / 60) as u8,
            second: (secs % 60) as u8,
            zone_minutes: 0,
        }
    }
}

/// `date = date-text / DQUOTE date-text DQUOTE`; `date-text = date-day "-" date-month "-" date-year`
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub const MONTHS: [&'static str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// Validate a calendar date (leap years included).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (day >= 1 && day <= days_in_month).then_some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(&self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Inverse of [`Date::days_since_epoch`] (`civil_from_days`).
    pub fn from_days_since_epoch(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        Date { year, month, day }
    }
}

/// `seq-number = nz-number / "*"`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    /// `*`: the largest number in use.
    Largest,
}

impl SeqNumber {
    /// Resolve `*` against the largest number in use.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(v) => v,
            SeqNumber::Largest => largest,
        }
    }
}

/// `sequence-set = (seq-number / seq-range) ["," sequence-set]`, or `"$"` (SEARCHRES, RFC 5182).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    /// Ranges as written; a single number is a range with equal ends.
    Ranges(Vec<(SeqNumber, SeqNumber)>),
    /// `$`: the result of the last SEARCH with `RETURN (SAVE)`.
    Saved,
}

impl SequenceSet {
    /// Whether `n` is in the set, `*` meaning `largest`. `$` matches nothing: callers substitute
    /// the saved result first.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(ranges) => ranges.iter().any(|&(a, b)| {
                let (a, b) = (a.resolve(largest), b.resolve(largest));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                lo <= n && n <= hi
            }),
        }
    }

    /// Normalised inclusive ranges (low <= high), `*` resolved to `largest`.
    pub fn resolved_ranges(&self, largest: u32) -> Vec<(u32, u32)> {
        match self {
            SequenceSet::Saved => Vec::new(),
            SequenceSet::Ranges(ranges) => ranges
                .iter()
                .map(|&(a, b)| {
                    let (a, b) = (a.resolve(largest), b.resolve(largest));
                    if a <= b { (a, b) } else { (b, a) }
                })
                .collect(),
        }
    }
}

/// `fetch-att` items (RFC 9051, plus CONDSTORE, OBJECTID, SAVEDATE and PREVIEW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttribute {
    Envelope,
    Flags,
    InternalDate,
    /// `RFC822`: the whole message, sets `\Seen`.
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// `BODY` without a section: the non-extensible body structure.
    Body,
    BodyStructure,
    Uid,
    /// `"BODY" [".PEEK"] section [partial]`
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// `"BINARY" [".PEEK"] section-binary [partial]` (RFC 3516)
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    /// `"BINARY.SIZE" section-binary`
    BinarySize(Vec<u32>),
    ModSeq,
    EmailId,
    ThreadId,
    SaveDate,
    /// `"PREVIEW" [SP "(" "LAZY" ")"]` (RFC 8970)
    Preview {
        lazy: bool,
    },
}

/// `section = "[" [section-spec] "]"`;
/// `section-spec = section-msgtext / (section-part ["." section-text])`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// `section-part = nz-number *("." nz-number)`; empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// `section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"`;
/// `section-text = section-msgtext / "MIME"`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields { not: bool, fields: Vec<String> },
    Text,
    Mime,
}

/// `store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// `SEARCH` with its ESEARCH return options and charset.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCommand {
    pub uid: bool,
    pub charset: Option<String>,
    /// `search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"`;
    /// `None` without RETURN (plain `* SEARCH`), `Some(empty)` means `RETURN ()` = ALL.
    pub result: Option<Vec<SearchReturn>>,
    pub key: SearchKey,
}

/// `search-return-opt = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"` (RFC 4731, RFC 5182)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// `search-key` (RFC 3501 section 6.4.4, RFC 9051, RFC 7162 MODSEQ, RFC 5032 WITHIN,
/// RFC 8474 EMAILID/THREADID). A parenthesised list or a top-level sequence of keys is `And`.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    SequenceSet(SequenceSet),
    And(Vec<SearchKey>),
    /// `search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer`; the entry
    /// name and type are accepted and ignored, as RFC 7162 allows for servers without per-flag
    /// modseqs.
    ModSeq(u64),
    Older(u32),
    Younger(u32),
    EmailId(String),
    ThreadId(String),
    /// `"SAVEDBEFORE" SP date / "SAVEDON" SP date / "SAVEDSINCE" SP date /
    /// "SAVEDATESUPPORTED"` (RFC 8514)
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    SaveDateSupported,
}

/// `sort-key = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" / "SUBJECT" / "TO" / "DISPLAYFROM" /
/// "DISPLAYTO"`, each optionally preceded by `"REVERSE" SP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// `thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

// NOTIFY (RFC 5465) -------------------------------------------------------------------------

/// `notify-set = "SET" [status-indicator] SP event-groups` / `notify-none = "NONE"`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyCommand {
    None,
    Set {
        /// `status-indicator = SP "STATUS"`: send STATUS for the watched mailboxes first.
        status: bool,
        groups: Vec<NotifyGroup>,
    },
}

/// `event-group = "(" filter-mailboxes SP events ")"`; `events = "(" event *(SP event) ")" /
/// "NONE"` (an empty `events` is `NONE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
}

/// `filter-mailboxes = filter-mailboxes-selected / filter-mailboxes-other`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    /// `"selected"`: the selected mailbox.
    Selected,
    /// `"selected-delayed"`: the selected mailbox, expunges held for a command that allows them.
    SelectedDelayed,
    /// `"inboxes"`: mailboxes that receive new mail.
    Inboxes,
    /// `"personal"`: every mailbox of the user.
    Personal,
    /// `"subscribed"`
    Subscribed,
    /// `"subtree" SP one-or-more-mailbox`: the mailboxes and all below them.
    Subtree(Vec<Mailbox>),
    /// `"mailboxes" SP one-or-more-mailbox`: exactly these.
    Mailboxes(Vec<Mailbox>),
}

impl NotifyFilter {
    pub fn is_selected(&self) -> bool {
        matches!(self, NotifyFilter::Selected | NotifyFilter::SelectedDelayed)
    }
}

/// `event = message-event / mailbox-event / user-event / event-ext`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// `"MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]`
    MessageNew(Vec<FetchAttribute>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    QuotaChange,
    /// `event-ext = atom`: an event this server does not know, kept for `BADEVENT`.
    Other(String),
}

impl NotifyEvent {
    /// The event's name as RFC 5465 spells it.
    pub fn name(&self) -> &str {
        match self {
            NotifyEvent::MessageNew(_) => "MessageNew",
            NotifyEvent::MessageExpunge => "MessageExpunge",
            NotifyEvent::FlagChange => "FlagChange",
            NotifyEvent::AnnotationChange => "AnnotationChange",
            NotifyEvent::MailboxName => "MailboxName",
            NotifyEvent::SubscriptionChange => "SubscriptionChange",
            NotifyEvent::MailboxMetadataChange => "MailboxMetadataChange",
            NotifyEvent::ServerMetadataChange => "ServerMetadataChange",
            NotifyEvent::QuotaChange => "QuotaChange",
            NotifyEvent::Other(name) => name,
        }
    }

    /// `message-event`: about messages rather than mailboxes or the user.
    pub fn is_message_event(&self) -> bool {
        matches!(
            self,
            NotifyEvent::MessageNew(_)
                | NotifyEvent::MessageExpunge
                | NotifyEvent::FlagChange
                | NotifyEvent::AnnotationChange
        )
    }
}

//! Strict command parser: one framed command (see [`super::frame`]) in, a typed [`Command`] or a
//! typed [`ParseError`] out. It never panics and never allocates more than the input's size
//! (plus small constant overhead), and recursion in search keys is depth-limited.

use super::types::*;
use super::utf7;

/// How deep `NOT` / `OR` / parenthesised search keys may nest.
const MAX_SEARCH_DEPTH: usize = 32;

/// Parser settings that depend on the session (what the client enabled).
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// After `ENABLE UTF8=ACCEPT` or `ENABLE IMAP4rev2`, mailbox names are UTF-8, not modified
    /// UTF-7.
    pub utf8_mailboxes: bool,
}

/// Why a command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("missing or invalid tag")]
    BadTag,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{what} expected at byte {at}")]
    Expected { what: &'static str, at: usize },
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    #[error("number out of range at byte {0}")]
    NumberOutOfRange(usize),
    #[error("invalid date at byte {0}")]
    InvalidDate(usize),
    #[error("invalid mailbox name: {0}")]
    InvalidMailboxName(#[from] utf7::Utf7Error),
    #[error("literal shorter than announced")]
    TruncatedLiteral,
    #[error("search keys nested too deeply")]
    TooDeep,
    #[error("unexpected data at byte {0}")]
    TrailingData(usize),
}

/// A failed parse, with the tag when one could be read so the reply can be a tagged `BAD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ParseFailure {
    pub tag: Option<Tag>,
    pub error: ParseError,
}

/// Parse one complete command as produced by the framer (ending in CRLF; a bare LF is accepted).
pub fn parse_command(
    input: &[u8],
    options: ParseOptions,
) -> std::result::Result<Command, ParseFailure> {
    let mut cursor = Cursor {
        input,
        pos: 0,
        options,
    };
    let tag = cursor
        .tag()
        .map_err(|error| ParseFailure { tag: None, error })?;
    let body = cursor
        .command_body()
        .and_then(|body| cursor.end().map(|()| body))
        .map_err(|error| ParseFailure {
            tag: Some(tag.clone()),
            error,
        })?;
    Ok(Command { tag, body })
}

/// Parse a line that should be exactly `DONE` (ending IDLE).
pub fn is_idle_done(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.eq_ignore_ascii_case(b"DONE")
}

type Result<T> = std::result::Result<T, ParseError>;

struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
    options: ParseOptions,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn expected(&self, what: &'static str) -> ParseError {
        ParseError::Expected { what, at: self.pos }
    }

    fn byte(&mut self, b: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn sp(&mut self) -> Result<()> {
        self.byte(b' ', "SP")
    }

    fn try_byte(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Whether the remaining input starts with `word` (case-insensitive) followed by a
    /// delimiter; consumes it if so.
    fn try_keyword(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        if end <= self.input.len()
            && self.input[self.pos..end].eq_ignore_ascii_case(word.as_bytes())
            && self
                .input
                .get(end)
                .is_none_or(|&b| matches!(b, b' ' | b'\r' | b'\n' | b')' | b'(' | b'['))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// `CRLF` and end of input.
    fn end(&mut self) -> Result<()> {
        let rest = &self.input[self.pos..];
        if rest == b"\r\n" || rest == b"\n" {
            self.pos = self.input.len();
            Ok(())
        } else {
            Err(ParseError::TrailingData(self.pos))
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// `tag = 1*<any ASTRING-CHAR except "+">`
    fn tag(&mut self) -> Result<Tag> {
        let raw = self.take_while(|b| b != b' ' && b != b'\r' && b != b'\n');
        let tag = Tag::try_from(raw).map_err(|()| ParseError::BadTag)?;
        if self.peek() != Some(b' ') {
            return Err(ParseError::BadTag);
        }
        self.pos += 1;
        Ok(tag)
    }

    /// `atom = 1*ATOM-CHAR`
    fn atom(&mut self) -> Result<&'a [u8]> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            Err(self.expected("atom"))
        } else {
            Ok(atom)
        }
    }

    /// An atom upper-cased, for keywords.
    fn keyword(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    /// `number64 = 1*DIGIT` (at most 2^63-1).
    fn number64(&mut self) -> Result<u64> {
        let start = self.pos;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.expected("number"));
        }
        let mut value: u64 = 0;
        for &d in digits {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|&v| v <= i64::MAX as u64)
                .ok_or(ParseError::NumberOutOfRange(start))?;
        }
        Ok(value)
    }

    /// `number = 1*DIGIT` (unsigned 32-bit).
    fn number(&mut self) -> Result<u32> {
        let start = self.pos;
        u32::try_from(self.number64()?).map_err(|_| ParseError::NumberOutOfRange(start))
    }

    /// `nz-number = digit-nz *DIGIT`
    fn nz_number(&mut self) -> Result<u32> {
        let start = self.pos;
        match self.number()? {
            0 => Err(ParseError::NumberOutOfRange(start)),
            n => Ok(n),
        }
    }

    /// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`; `QUOTED-CHAR = <any TEXT-CHAR except
    /// quoted-specials> / "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4`
    fn quoted(&mut self) -> Result<Vec<u8>> {
        self.byte(b'"', "quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n' | 0) => return Err(self.expected("closing quote")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err(self.expected("quoted-special after backslash")),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `literal = "{" number64 ["+"] "}" CRLF *CHAR8`, or `literal8 = "~{" number64 ["+"] "}"
    /// CRLF *OCTET` when `allow_binary`. Returns the bytes and whether it was a literal8.
    fn literal(&mut self, allow_binary: bool) -> Result<(&'a [u8], bool)> {
        let binary = allow_binary && self.try_byte(b'~');
        self.byte(b'{', "literal")?;
        let start = self.pos;
        let size = self.number64()?;
        self.try_byte(b'+');
        self.byte(b'}', "'}'")?;
        if !self.try_byte(b'\r') && self.peek() != Some(b'\n') {
            return Err(self.expected("CRLF after literal size"));
        }
        self.byte(b'\n', "CRLF after literal size")?;
        let size = usize::try_from(size).map_err(|_| ParseError::NumberOutOfRange(start))?;
        let end = self
            .pos
            .checked_add(size)
            .filter(|&e| e <= self.input.len())
            .ok_or(ParseError::TruncatedLiteral)?;
        let data = &self.input[self.pos..end];
        self.pos = end;
        if !binary && data.contains(&0) {
            return Err(ParseError::Expected {
                what: "literal without NUL (use literal8)",
                at: start,
            });
        }
        Ok((data, binary))
    }

    /// `string = quoted / literal`
    fn string(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal(false)?.0.to_vec()),
            _ => Err(self.expected("string")),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`
    fn astring(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let raw = self.take_while(is_astring_char);
                if raw.is_empty() {
                    Err(self.expected("astring"))
                } else {
                    Ok(raw.to_vec())
                }
            }
        }
    }

    fn astring_utf8(&mut self, what: &'static str) -> Result<String> {
        String::from_utf8(self.astring()?).map_err(|_| ParseError::InvalidUtf8(what))
    }

    /// `nstring = string / nil`
    fn nstring_utf8(&mut self, what: &'static str) -> Result<Option<String>> {
        if self.try_keyword("NIL") {
            return Ok(None);
        }
        String::from_utf8(self.string()?)
            .map(Some)
            .map_err(|_| ParseError::InvalidUtf8(what))
    }

    fn mailbox_text(&self, raw: Vec<u8>) -> Result<String> {
        if self.options.utf8_mailboxes {
            String::from_utf8(raw).map_err(|_| ParseError::InvalidUtf8("mailbox name"))
        } else {
            Ok(utf7::decode(&raw)?)
        }
    }

    /// `mailbox = "INBOX" / astring`
    fn mailbox(&mut self) -> Result<Mailbox> {
        let raw = self.astring()?;
        Ok(Mailbox::new(self.mailbox_text(raw)?))
    }

    /// `list-mailbox = 1*list-char / string`; `list-char = ATOM-CHAR / list-wildcards /
    /// resp-specials`
    fn list_mailbox(&mut self) -> Result<String> {
        let raw = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let raw = self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*');
                if raw.is_empty() {
                    return Err(self.expected("list-mailbox"));
                }
                raw.to_vec()
            }
        };
        self.mailbox_text(raw)
    }

    /// `seq-number = nz-number / "*"`
    fn seq_number(&mut self) -> Result<SeqNumber> {
        if self.try_byte(b'*') {
            Ok(SeqNumber::Largest)
        } else {
            Ok(SeqNumber::Value(self.nz_number()?))
        }
    }

    /// `sequence-set = (seq-number / seq-range) ["," sequence-set]`; `seq-range = seq-number ":"
    /// seq-number`; or `"$"` (RFC 5182).
    fn sequence_set(&mut self) -> Result<SequenceSet> {
        if self.try_byte(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let first = self.seq_number()?;
            let last = if self.try_byte(b':') {
                self.seq_number()?
            } else {
                first
            };
            ranges.push((first, last));
            if !self.try_byte(b',') {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    /// `flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword /
    /// flag-extension`
    fn flag(&mut self) -> Result<Flag> {
        let backslash = self.try_byte(b'\\');
        let atom = self.atom()?;
        if backslash {
            let name = String::from_utf8_lossy(atom);
            return Ok(Flag::new(&format!("\\{name}")));
        }
        Ok(Flag::new(&String::from_utf8_lossy(atom)))
    }

    /// `flag-list = "(" [flag *(SP flag)] ")"`
    fn flag_list(&mut self) -> Result<Vec<Flag>> {
        self.byte(b'(', "flag list")?;
        let mut flags = Vec::new();
        if self.try_byte(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.try_byte(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// `date = date-text / DQUOTE date-text DQUOTE`;
    /// `date-text = date-day "-" date-month "-" date-year`
    fn date(&mut self) -> Result<Date> {
        let quoted = self.try_byte(b'"');
        let start = self.pos;
        let day = self.take_while(|b| b.is_ascii_digit());
        if day.is_empty() || day.len() > 2 {
            return Err(ParseError::InvalidDate(start));
        }
        let date = self.date_rest(start, day)?;
        if quoted {
            self.byte(b'"', "closing quote of date")?;
        }
        Ok(date)
    }

    /// `"-" date-month "-" date-year` after the day digits.
    fn date_rest(&mut self, start: usize, day: &[u8]) -> Result<Date> {
        let day: u8 = std::str::from_utf8(day)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(ParseError::InvalidDate(start))?;
        self.byte(b'-', "'-' in date")?;
        let month_raw = self.input.get(self.pos..self.pos + 3);
        let month = month_raw
            .and_then(|m| {
                Date::MONTHS
                    .iter()
                    .position(|name| name.as_bytes().eq_ignore_ascii_case(m))
            })
            .ok_or(ParseError::InvalidDate(start))?;
        self.pos += 3;
        self.byte(b'-', "'-' in date")?;
        let year = self.take_while(|b| b.is_ascii_digit());
        if year.len() != 4 {
            return Err(ParseError::InvalidDate(start));
        }
        let year: u16 = std::str::from_utf8(year)
            .ok()
            .and_then(|y| y.parse().ok())
            .ok_or(ParseError::InvalidDate(start))?;
        Date::new(year, month as u8 + 1, day).ok_or(ParseError::InvalidDate(start))
    }

    /// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE`;
    /// `date-day-fixed = (SP DIGIT) / 2DIGIT`; `time = 2DIGIT ":" 2DIGIT ":" 2DIGIT`;
    /// `zone = ("+" / "-") 4DIGIT`
    fn date_time(&mut self) -> Result<DateTime> {
        self.byte(b'"', "date-time")?;
        let start = self.pos;
        self.try_byte(b' ');
        let day = self.take_while(|b| b.is_ascii_digit());
        if day.is_empty() || day.len() > 2 {
            return Err(ParseError::InvalidDate(start));
        }
        let date = self.date_rest(start, day)?;
        self.sp()?;
        let two_digits = |cursor: &mut Self, max: u8| -> Result<u8> {
            let digits = cursor.input.get(cursor.pos..cursor.pos + 2);
            let value = digits
                .filter(|d| d.iter().all(u8::is_ascii_digit))
                .map(|d| (d[0] - b'0') * 10 + (d[1] - b'0'))
                .filter(|&v| v <= max)
                .ok_or(ParseError::InvalidDate(start))?;
            cursor.pos += 2;
            Ok(value)
        };
        let hour = two_digits(self, 23)?;
        self.byte(b':', "':' in time")?;
        let minute = two_digits(self, 59)?;
        self.byte(b':', "':' in time")?;
        // 60 admits a leap second.
        let second = two_digits(self, 60)?;
        self.sp()?;
        let sign: i16 = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(ParseError::InvalidDate(start)),
        };
        self.pos += 1;
        let zone_hours = two_digits(self, 23)?;
        let zone_minutes = two_digits(self, 59)?;
        self.byte(b'"', "closing quote of date-time")?;
        Ok(DateTime {
            date,
            hour,
            minute,
            second,
            zone_minutes: sign * (i16::from(zone_hours) * 60 + i16::from(zone_minutes)),
        })
    }

    fn command_body(&mut self) -> Result<CommandBody> {
        let name = self.keyword()?;
        use CommandBody as C;
        Ok(match name.as_str() {
            "CAPABILITY" => C::Capability,
            "NOOP" => C::Noop,
            "LOGOUT" => C::Logout,
            "STARTTLS" => C::StartTls,
            "NAMESPACE" => C::Namespace,
            "IDLE" => C::Idle,
            "CHECK" => C::Check,
            "CLOSE" => C::Close,
            "UNSELECT" => C::Unselect,
            "UNAUTHENTICATE" => C::Unauthenticate,
            "EXPUNGE" => C::Expunge,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.keyword()?;
                let initial_response = if self.try_byte(b' ') {
                    let raw = self.take_while(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
                    });
                    if raw.is_empty() {
                        return Err(self.expected("base64 initial response"));
                    }
                    // "=" stands for an empty initial response (RFC 4959).
                    Some(Secret::new(if raw == b"=" {
                        Vec::new()
                    } else {
                        raw.to_vec()
                    }))
                } else {
                    None
                };
                C::Authenticate {
                    mechanism,
                    initial_response,
                }
            }
            "LOGIN" => {
                self.sp()?;
                let username = self.astring_utf8("user name")?;
                self.sp()?;
                let password = Secret::new(self.astring()?);
                C::Login { username, password }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.try_byte(b' ') {
                    capabilities.push(self.keyword()?);
                }
                if capabilities.is_empty() {
                    return Err(self.expected("capability"));
                }
                C::Enable(capabilities)
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let params = if self.try_byte(b' ') {
                    self.select_params()?
                } else {
                    SelectParams::default()
                };
                C::Select {
                    mailbox,
                    read_only: name == "EXAMINE",
                    params,
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.try_byte(b' ') {
                    // `create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"` (RFC 6154)
                    self.byte(b'(', "create parameters")?;
                    if !self.try_keyword("USE") {
                        return Err(self.expected("USE"));
                    }
                    self.sp()?;
                    self.byte(b'(', "use attributes")?;
                    while !self.try_byte(b')') {
                        if !special_use.is_empty() {
                            self.sp()?;
                        }
                        self.byte(b'\\', "use-attr")?;
                        special_use.push(format!("\\{}", String::from_utf8_lossy(self.atom()?)));
                    }
                    self.byte(b')', "')'")?;
                }
                C::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" => {
                self.sp()?;
                C::Delete(self.mailbox()?)
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                C::Rename { from, to }
            }
            "SUBSCRIBE" => {
                self.sp()?;
                C::Subscribe(self.mailbox()?)
            }
            "UNSUBSCRIBE" => {
                self.sp()?;
                C::Unsubscribe(self.mailbox()?)
            }
            "LIST" => C::List(self.list()?),
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?.0;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                C::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                C::Status { mailbox, items }
            }
            "APPEND" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut messages = Vec::new();
                while self.try_byte(b' ') {
                    messages.push(self.append_message()?);
                }
                if messages.is_empty() {
                    return Err(self.expected("message literal"));
                }
                C::Append { mailbox, messages }
            }
            "SEARCH" => C::Search(self.search(false)?),
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_or_move(false, &name)?,
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "UID" => {
                self.sp()?;
                let sub = self.keyword()?;
                match sub.as_str() {
                    "SEARCH" => C::Search(self.search(true)?),
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" | "MOVE" => self.copy_or_move(true, &sub)?,
                    "SORT" => self.sort(true)?,
                    "THREAD" => self.thread(true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        C::UidExpunge(self.sequence_set()?)
                    }
                    _ => return Err(ParseError::UnknownCommand(format!("UID {sub}"))),
                }
            }
            "ID" => {
                self.sp()?;
                if self.try_keyword("NIL") {
                    C::Id(None)
                } else {
                    self.byte(b'(', "ID parameter list")?;
                    let mut params = Vec::new();
                    while !self.try_byte(b')') {
                        if !params.is_empty() {
                            self.sp()?;
                        }
                        let key = String::from_utf8(self.string()?)
                            .map_err(|_| ParseError::InvalidUtf8("ID field"))?;
                        self.sp()?;
                        let value = self.nstring_utf8("ID value")?;
                        params.push((key, value));
                        // RFC 2971 caps the list at 30 pairs.
                        if params.len() > 30 {
                            return Err(self.expected("at most 30 ID fields"));
                        }
                    }
                    C::Id(Some(params))
                }
            }
            "GETQUOTA" => {
                self.sp()?;
                C::GetQuota(self.astring_utf8("quota root")?)
            }
            "GETQUOTAROOT" => {
                self.sp()?;
                C::GetQuotaRoot(self.mailbox()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring_utf8("quota root")?;
                self.sp()?;
                self.byte(b'(', "quota limits")?;
                let mut limits = Vec::new();
                while !self.try_byte(b')') {
                    if !limits.is_empty() {
                        self.sp()?;
                    }
                    let resource = self.keyword()?;
                    self.sp()?;
                    limits.push((resource, self.number64()?));
                }
                C::SetQuota { root, limits }
            }
            "COMPRESS" => {
                self.sp()?;
                C::Compress(self.keyword()?)
            }
            "NOTIFY" => {
                self.sp()?;
                C::Notify(self.notify()?)
            }
            _ => return Err(ParseError::UnknownCommand(name)),
        })
    }

    /// `notify = "NOTIFY" SP (notify-set / notify-none)` (RFC 5465; "NOTIFY" consumed);
    /// `notify-set = "SET" [status-indicator] SP event-groups`;
    /// `event-groups = event-group *(SP event-group)`
    fn notify(&mut self) -> Result<NotifyCommand> {
        if self.try_keyword("NONE") {
            return Ok(NotifyCommand::None);
        }
        if !self.try_keyword("SET") {
            return Err(self.expected("SET or NONE"));
        }
        self.sp()?;
        let status = self.try_keyword("STATUS");
        if status {
            self.sp()?;
        }
        let mut groups = vec![self.notify_group()?];
        while self.try_byte(b' ') {
            groups.push(self.notify_group()?);
        }
        Ok(NotifyCommand::Set { status, groups })
    }

    /// `event-group = "(" filter-mailboxes SP events ")"`
    fn notify_group(&mut self) -> Result<NotifyGroup> {
        self.byte(b'(', "event group")?;
        let at = self.pos;
        let filter = match self.keyword()?.as_str() {
            "SELECTED" => NotifyFilter::Selected,
            "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
            "INBOXES" => NotifyFilter::Inboxes,
            "PERSONAL" => NotifyFilter::Personal,
            "SUBSCRIBED" => NotifyFilter::Subscribed,
            "SUBTREE" => {
                self.sp()?;
                NotifyFilter::Subtree(self.one_or_more_mailbox()?)
            }
            "MAILBOXES" => {
                self.sp()?;
                NotifyFilter::Mailboxes(self.one_or_more_mailbox()?)
            }
            _ => {
                return Err(ParseError::Expected {
                    what: "mailbox filter",
                    at,
                });
            }
        };
        self.sp()?;
        let mut events = Vec::new();
        if !self.try_keyword("NONE") {
            self.byte(b'(', "events")?;
            loop {
                events.push(self.notify_event()?);
                if !self.try_byte(b' ') {
                    break;
                }
            }
            self.byte(b')', "')' after events")?;
        }
        self.byte(b')', "')' after event group")?;
        Ok(NotifyGroup { filter, events })
    }

    /// `one-or-more-mailbox = mailbox / many-mailboxes`;
    /// `many-mailboxes = "(" mailbox *(SP mailbox) ")"`
    fn one_or_more_mailbox(&mut self) -> Result<Vec<Mailbox>> {
        if !self.try_byte(b'(') {
            return Ok(vec![self.mailbox()?]);
        }
        let mut mailboxes = vec![self.mailbox()?];
        while self.try_byte(b' ') {
            mailboxes.push(self.mailbox()?);
        }
        self.byte(b')', "')' after mailboxes")?;
        Ok(mailboxes)
    }

    /// `event = message-event / mailbox-event / user-event / event-ext`;
    /// `message-event = ("MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]) /
    /// "MessageExpunge" / "FlagChange" / "AnnotationChange"`
    fn notify_event(&mut self) -> Result<NotifyEvent> {
        let name = self.atom()?;
        let name = String::from_utf8_lossy(name).into_owned();
        Ok(match name.to_ascii_uppercase().as_str() {
            "MESSAGENEW" => {
                let mut attributes = Vec::new();
                if self.input[self.pos..].starts_with(b" (") {
                    self.pos += 2;
                    loop {
                        attributes.push(self.fetch_attribute()?);
                        if !self.try_byte(b' ') {
                            break;
                        }
                    }
                    self.byte(b')', "')' after fetch attributes")?;
                }
                NotifyEvent::MessageNew(attributes)
            }
            "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
            "FLAGCHANGE" => NotifyEvent::FlagChange,
            "ANNOTATIONCHANGE" => NotifyEvent::AnnotationChange,
            "MAILBOXNAME" => NotifyEvent::MailboxName,
            "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
            "MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
            "SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
            "QUOTACHANGE" => NotifyEvent::QuotaChange,
            _ => NotifyEvent::Other(name),
        })
    }

    /// `select-params = SP "(" select-param *(SP select-param) ")"`
    fn select_params(&mut self) -> Result<SelectParams> {
        self.byte(b'(', "select parameters")?;
        let mut params = SelectParams::default();
        loop {
            if self.try_keyword("CONDSTORE") {
                params.condstore = true;
            } else if self.try_keyword("QRESYNC") {
                self.sp()?;
                params.qresync = Some(self.qresync_params()?);
            } else {
                return Err(self.expected("CONDSTORE or QRESYNC"));
            }
            if self.try_byte(b')') {
                return Ok(params);
            }
            self.sp()?;
        }
    }

    /// `"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"`;
    /// `seq-match-data = "(" known-sequence-set SP known-uid-set ")"`
    fn qresync_params(&mut self) -> Result<QresyncParams> {
        self.byte(b'(', "QRESYNC parameters")?;
        let uid_validity = self.nz_number()?;
        self.sp()?;
        let modseq = self.number64()?;
        let mut known_uids = None;
        let mut seq_match = None;
        while self.try_byte(b' ') {
            if self.try_byte(b'(') {
                let seqs = self.sequence_set()?;
                self.sp()?;
                let uids = self.sequence_set()?;
                self.byte(b')', "')'")?;
                seq_match = Some((seqs, uids));
            } else if known_uids.is_none() && seq_match.is_none() {
                known_uids = Some(self.sequence_set()?);
            } else {
                return Err(self.expected("seq-match-data"));
            }
        }
        self.byte(b')', "')'")?;
        Ok(QresyncParams {
            uid_validity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    /// `list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]`
    fn list(&mut self) -> Result<ListCommand> {
        let mut list = ListCommand::default();
        self.sp()?;
        if self.try_byte(b'(') {
            while !self.try_byte(b')') {
                if !list.select_options.is_empty() {
                    self.sp()?;
                }
                list.select_options.push(self.keyword()?);
            }
            self.sp()?;
        }
        list.reference = self.mailbox()?.0;
        self.sp()?;
        if self.try_byte(b'(') {
            loop {
                list.patterns.push(self.list_mailbox()?);
                if self.try_byte(b')') {
                    break;
                }
                self.sp()?;
            }
        } else {
            list.patterns.push(self.list_mailbox()?);
        }
        if self.try_byte(b' ') {
            if !self.try_keyword("RETURN") {
                return Err(self.expected("RETURN"));
            }
            self.sp()?;
            self.byte(b'(', "return options")?;
            let mut first = true;
            while !self.try_byte(b')') {
                if !first {
                    self.sp()?;
                }
                first = false;
                let option = self.keyword()?;
                if option == "STATUS" {
                    self.sp()?;
                    list.return_status = Some(self.status_items()?);
                } else {
                    list.return_options.push(option);
                }
            }
        }
        Ok(list)
    }

    /// `"(" status-att *(SP status-att) ")"`
    fn status_items(&mut self) -> Result<Vec<StatusItem>> {
        self.byte(b'(', "status items")?;
        let mut items = Vec::new();
        loop {
            let at = self.pos;
            let name = self.keyword()?;
            let item = StatusItem::ALL
                .into_iter()
                .find(|i| i.name() == name)
                .ok_or(ParseError::Expected {
                    what: "status item",
                    at,
                })?;
            items.push(item);
            if self.try_byte(b')') {
                return Ok(items);
            }
            self.sp()?;
        }
    }

    /// `append-message = [SP flag-list] [SP date-time] SP append-data` (the leading SP
    /// already consumed).
    fn append_message(&mut self) -> Result<AppendMessage> {
        let mut flags = Vec::new();
        let mut internal_date = None;
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek() == Some(b'"') {
            internal_date = Some(self.date_time()?);
            self.sp()?;
        }
        if self.try_keyword("UTF8") {
            // `"UTF8" SP "(" literal8 ")"` (RFC 6855 section 4)
            self.sp()?;
            self.byte(b'(', "'(' before UTF8 literal8")?;
            if self.peek() != Some(b'~') {
                return Err(self.expected("literal8"));
            }
            let (data, _) = self.literal(true)?;
            self.byte(b')', "')' after UTF8 literal8")?;
            return Ok(AppendMessage {
                flags,
                internal_date,
                data: data.to_vec(),
                binary: true,
                utf8: true,
            });
        }
        let (data, binary) = self.literal(true)?;
        Ok(AppendMessage {
            flags,
            internal_date,
            data: data.to_vec(),
            binary,
            utf8: false,
        })
    }

    /// `search = "SEARCH" [search-return-opts] SP search-program`;
    /// `search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)`
    fn search(&mut self, uid: bool) -> Result<SearchCommand> {
        self.sp()?;
        let result = self.search_return()?;
        let charset = if self.try_keyword("CHARSET") {
            self.sp()?;
            let charset = self.astring_utf8("charset")?;
            self.sp()?;
            Some(charset)
        } else {
            None
        };
        let key = self.search_keys()?;
        Ok(SearchCommand {
            uid,
            charset,
            result,
            key,
        })
    }

    /// `search-return-opts = "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"`,
    /// followed by SP.
    fn search_return(&mut self) -> Result<Option<Vec<SearchReturn>>> {
        if !self.try_keyword("RETURN") {
            return Ok(None);
        }
        self.sp()?;
        self.byte(b'(', "return options")?;
        let mut options = Vec::new();
        while !self.try_byte(b')') {
            if !options.is_empty() {
                self.sp()?;
            }
            let at = self.pos;
            options.push(match self.keyword()?.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" => SearchReturn::Save,
                _ => {
                    return Err(ParseError::Expected {
                        what: "search return option",
                        at,
                    });
                }
            });
        }
        self.sp()?;
        Ok(Some(options))
    }

    /// `search-key *(SP search-key)` up to the end of the line.
    fn search_keys(&mut self) -> Result<SearchKey> {
        let mut keys = vec![self.search_key(0)?];
        while self.try_byte(b' ') {
            keys.push(self.search_key(0)?);
        }
        Ok(if keys.len() == 1 {
            keys.pop().unwrap_or(SearchKey::All)
        } else {
            SearchKey::And(keys)
        })
    }

    fn search_text(&mut self) -> Result<String> {
        self.sp()?;
        self.astring_utf8("search string")
    }

    fn search_date(&mut self) -> Result<Date> {
        self.sp()?;
        self.date()
    }

    /// `search-key` (RFC 9051 section 9, RFC 3501 keys, MODSEQ, WITHIN, OBJECTID).
    fn search_key(&mut self, depth: usize) -> Result<SearchKey> {
        if depth > MAX_SEARCH_DEPTH {
            return Err(ParseError::TooDeep);
        }
        use SearchKey as K;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut keys = vec![self.search_key(depth + 1)?];
                while self.try_byte(b' ') {
                    keys.push(self.search_key(depth + 1)?);
                }
                self.byte(b')', "')'")?;
                return Ok(if keys.len() == 1 {
                    keys.pop().unwrap_or(K::All)
                } else {
                    K::And(keys)
                });
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return Ok(K::SequenceSet(self.sequence_set()?)),
            _ => {}
        }
        let at = self.pos;
        let name = self.keyword()?;
        Ok(match name.as_str() {
            "ALL" => K::All,
            "ANSWERED" => K::Answered,
            "BCC" => K::Bcc(self.search_text()?),
            "BEFORE" => K::Before(self.search_date()?),
            "BODY" => K::Body(self.search_text()?),
            "CC" => K::Cc(self.search_text()?),
            "DELETED" => K::Deleted,
            "DRAFT" => K::Draft,
            "FLAGGED" => K::Flagged,
            "FROM" => K::From(self.search_text()?),
            "HEADER" => {
                let field = self.search_text()?;
                K::Header(field, self.search_text()?)
            }
            "KEYWORD" => {
                self.sp()?;
                K::Keyword(self.flag()?.as_str().to_string())
            }
            "LARGER" => {
                self.sp()?;
                K::Larger(self.number64()?)
            }
            "NEW" => K::New,
            "NOT" => {
                self.sp()?;
                K::Not(Box::new(self.search_key(depth + 1)?))
            }
            "OLD" => K::Old,
            "ON" => K::On(self.search_date()?),
            "OR" => {
                self.sp()?;
                let left = self.search_key(depth + 1)?;
                self.sp()?;
                let right = self.search_key(depth + 1)?;
                K::Or(Box::new(left), Box::new(right))
            }
            "RECENT" => K::Recent,
            "SEEN" => K::Seen,
            "SENTBEFORE" => K::SentBefore(self.search_date()?),
            "SENTON" => K::SentOn(self.search_date()?),
            "SENTSINCE" => K::SentSince(self.search_date()?),
            "SINCE" => K::Since(self.search_date()?),
            "SMALLER" => {
                self.sp()?;
                K::Smaller(self.number64()?)
            }
            "SUBJECT" => K::Subject(self.search_text()?),
            "TEXT" => K::Text(self.search_text()?),
            "TO" => K::To(self.search_text()?),
            "UID" => {
                self.sp()?;
                K::Uid(self.sequence_set()?)
            }
            "UNANSWERED" => K::Unanswered,
            "UNDELETED" => K::Undeleted,
            "UNDRAFT" => K::Undraft,
            "UNFLAGGED" => K::Unflagged,
            "UNKEYWORD" => {
                self.sp()?;
                K::Unkeyword(self.flag()?.as_str().to_string())
            }
            "UNSEEN" => K::Unseen,
            "MODSEQ" => {
                self.sp()?;
                // `search-modseq-ext = SP entry-name SP entry-type-req`, accepted and ignored.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    let entry_type = self.keyword()?;
                    if !matches!(entry_type.as_str(), "PRIV" | "SHARED" | "ALL") {
                        return Err(self.expected("entry type"));
                    }
                    self.sp()?;
                }
                K::ModSeq(self.number64()?)
            }
            "OLDER" => {
                self.sp()?;
                K::Older(self.nz_number()?)
            }
            "YOUNGER" => {
                self.sp()?;
                K::Younger(self.nz_number()?)
            }
            "EMAILID" => {
                self.sp()?;
                K::EmailId(String::from_utf8_lossy(self.atom()?).into_owned())
            }
            "THREADID" => {
                self.sp()?;
                K::ThreadId(String::from_utf8_lossy(self.atom()?).into_owned())
            }
            "SAVEDBEFORE" => K::SavedBefore(self.search_date()?),
            "SAVEDON" => K::SavedOn(self.search_date()?),
            "SAVEDSINCE" => K::SavedSince(self.search_date()?),
            "SAVEDATESUPPORTED" => K::SaveDateSupported,
            _ => {
                return Err(ParseError::Expected {
                    what: "search key",
                    at,
                });
            }
        })
    }

    /// `fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    /// "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]`
    fn fetch(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        use FetchAttribute as F;
        let mut attributes = if self.try_byte(b'(') {
            let mut attributes = Vec::new();
            loop {
                attributes.push(self.fetch_attribute()?);
                if self.try_byte(b')') {
                    break attributes;
                }
                self.sp()?;
            }
        } else if self.try_keyword("ALL") {
            vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope]
        } else if self.try_keyword("FAST") {
            vec![F::Flags, F::InternalDate, F::Rfc822Size]
        } else if self.try_keyword("FULL") {
            vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body,
            ]
        } else {
            vec![self.fetch_attribute()?]
        };
        let mut changed_since = None;
        let mut vanished = false;
        if self.try_byte(b' ') {
            // `fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"`
            self.byte(b'(', "fetch modifiers")?;
            loop {
                if self.try_keyword("CHANGEDSINCE") {
                    self.sp()?;
                    changed_since = Some(self.number64()?);
                } else if self.try_keyword("VANISHED") {
                    vanished = true;
                } else {
                    return Err(self.expected("CHANGEDSINCE or VANISHED"));
                }
                if self.try_byte(b')') {
                    break;
                }
                self.sp()?;
            }
            if changed_since.is_some() && !attributes.contains(&F::ModSeq) {
                // RFC 7162 section 3.1.4.1: CHANGEDSINCE implies MODSEQ.
                attributes.push(F::ModSeq);
            }
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            attributes,
            changed_since,
            vanished,
        })
    }

    /// One `fetch-att`.
    fn fetch_attribute(&mut self) -> Result<FetchAttribute> {
        use FetchAttribute as F;
        let at = self.pos;
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "ENVELOPE" => F::Envelope,
            "FLAGS" => F::Flags,
            "INTERNALDATE" => F::InternalDate,
            "RFC822" => F::Rfc822,
            "RFC822.HEADER" => F::Rfc822Header,
            "RFC822.SIZE" => F::Rfc822Size,
            "RFC822.TEXT" => F::Rfc822Text,
            "BODYSTRUCTURE" => F::BodyStructure,
            "UID" => F::Uid,
            "MODSEQ" => F::ModSeq,
            "EMAILID" => F::EmailId,
            "THREADID" => F::ThreadId,
            "SAVEDATE" => F::SaveDate,
            "PREVIEW" => {
                let lazy = self.input[self.pos..]
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b" (LAZY)"));
                if lazy {
                    self.pos += 7;
                }
                F::Preview { lazy }
            }
            "BODY" if self.peek() != Some(b'[') => F::Body,
            "BODY" | "BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                F::BodySection {
                    peek: name == "BODY.PEEK",
                    section,
                    partial,
                }
            }
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                self.byte(b'[', "section-binary")?;
                let mut part = Vec::new();
                while !self.try_byte(b']') {
                    if !part.is_empty() {
                        self.byte(b'.', "'.' in section")?;
                    }
                    part.push(self.nz_number()?);
                }
                if name == "BINARY.SIZE" {
                    F::BinarySize(part)
                } else {
                    F::Binary {
                        peek: name == "BINARY.PEEK",
                        part,
                        partial: self.partial()?,
                    }
                }
            }
            _ => {
                return Err(ParseError::Expected {
                    what: "fetch attribute",
                    at,
                });
            }
        })
    }

    /// `section = "[" [section-spec] "]"`
    fn section(&mut self) -> Result<Section> {
        self.byte(b'[', "section")?;
        let mut section = Section::default();
        if self.try_byte(b']') {
            return Ok(section);
        }
        loop {
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                section.part.push(self.nz_number()?);
                if self.try_byte(b'.') {
                    continue;
                }
                break;
            }
            let at = self.pos;
            let text = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
            let text = String::from_utf8_lossy(text).to_ascii_uppercase();
            section.text = Some(match text.as_str() {
                "HEADER" => SectionText::Header,
                "TEXT" => SectionText::Text,
                "MIME" if !section.part.is_empty() => SectionText::Mime,
                "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                    self.sp()?;
                    self.byte(b'(', "header list")?;
                    let mut fields = Vec::new();
                    loop {
                        fields.push(self.astring_utf8("header field name")?);
                        if self.try_byte(b')') {
                            break;
                        }
                        self.sp()?;
                    }
                    SectionText::HeaderFields {
                        not: text.ends_with(".NOT"),
                        fields,
                    }
                }
                _ => {
                    return Err(ParseError::Expected {
                        what: "section text",
                        at,
                    });
                }
            });
            break;
        }
        self.byte(b']', "']'")?;
        Ok(section)
    }

    /// `partial = "<" number "." nz-number ">"`
    fn partial(&mut self) -> Result<Option<(u32, u32)>> {
        if !self.try_byte(b'<') {
            return Ok(None);
        }
        let offset = self.number()?;
        self.byte(b'.', "'.' in partial")?;
        let length = self.nz_number()?;
        self.byte(b'>', "'>'")?;
        Ok(Some((offset, length)))
    }

    /// `store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags`
    fn store(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.try_byte(b'(') {
            // `store-modifier = "UNCHANGEDSINCE" SP mod-sequence-valzer`
            if !self.try_keyword("UNCHANGEDSINCE") {
                return Err(self.expected("UNCHANGEDSINCE"));
            }
            self.sp()?;
            unchanged_since = Some(self.number64()?);
            self.byte(b')', "')'")?;
            self.sp()?;
        }
        let mode = if self.try_byte(b'+') {
            StoreMode::Add
        } else if self.try_byte(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let silent = if self.try_keyword("FLAGS") {
            false
        } else if self.try_keyword("FLAGS.SILENT") {
            true
        } else {
            return Err(self.expected("FLAGS or FLAGS.SILENT"));
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.try_byte(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandBody::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        })
    }

    fn copy_or_move(&mut self, uid: bool, name: &str) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if name == "MOVE" {
            CommandBody::Move { uid, set, mailbox }
        } else {
            CommandBody::Copy { uid, set, mailbox }
        })
    }

    /// `sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria`;
    /// `search-criteria = charset 1*(SP search-key)`
    fn sort(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let result = self.search_return()?;
        self.byte(b'(', "sort criteria")?;
        let mut criteria = Vec::new();
        loop {
            let reverse = self.try_keyword("REVERSE");
            if reverse {
                self.sp()?;
            }
            let at = self.pos;
            let key = match self.keyword()?.as_str() {
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                _ => {
                    return Err(ParseError::Expected {
                        what: "sort key",
                        at,
                    });
                }
            };
            criteria.push(SortCriterion { reverse, key });
            if self.try_byte(b')') {
                break;
            }
            self.sp()?;
        }
        self.sp()?;
        let charset = self.astring_utf8("charset")?;
        self.sp()?;
        let key = self.search_keys()?;
        Ok(CommandBody::Sort {
            uid,
            criteria,
            charset,
            key,
            result,
        })
    }

    /// `thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria`
    fn thread(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let at = self.pos;
        let algorithm = match self.keyword()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            _ => {
                return Err(ParseError::Expected {
                    what: "thread algorithm",
                    at,
                });
            }
        };
        self.sp()?;
        let charset = self.astring_utf8("charset")?;
        self.sp()?;
        let key = self.search_keys()?;
        Ok(CommandBody::Thread {
            uid,
            algorithm,
            charset,
            key,
        })
    }
}

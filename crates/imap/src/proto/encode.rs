//! Encoding: responses (what the server sends) and commands (for tests and load generators, and
//! so that every parsed command can be round-tripped).

use super::response::*;
use super::types::*;
use super::utf7;
use std::fmt::Write as _;

/// Encoder settings that depend on the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeOptions {
    /// Mailbox names as UTF-8 instead of modified UTF-7 (after `ENABLE UTF8=ACCEPT`/`IMAP4rev2`).
    pub utf8_mailboxes: bool,
}

/// Append the encoding of `response` (with its CRLF) to `out`.
pub fn encode_response(response: &Response, options: EncodeOptions, out: &mut Vec<u8>) {
    let mut w = Writer { out, options };
    match response {
        Response::Status(status) => w.status(status),
        Response::Data(data) => w.data(data),
        Response::Continue(text) => {
            w.raw("+ ");
            w.text(if text.is_empty() { "" } else { text });
        }
    }
    w.raw("\r\n");
}

/// Encode a response into a fresh buffer.
pub fn response_bytes(response: &Response, options: EncodeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(response, options, &mut out);
    out
}

/// Compress ids into runs `a:b`, keeping their order (COPYUID needs source and destination in
/// corresponding order), e.g. `[1, 2, 3, 7, 5]` -> `1:3,7,5`.
pub fn sequence_set_string(ids: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && end.checked_add(1) == Some(ids[i + 1]) {
            end = ids[i + 1];
            i += 1;
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            let _ = write!(s, "{start}");
        } else {
            let _ = write!(s, "{start}:{end}");
        }
        i += 1;
    }
    s
}

/// `date-time` in UTC for a Unix timestamp, e.g. `"17-Jul-1996 09:01:33 +0000"`.
pub fn date_time_string(timestamp: i64) -> String {
    let dt = DateTime::from_unix_timestamp(timestamp);
    format_date_time(&dt)
}

fn format_date_time(dt: &DateTime) -> String {
    let zone = dt.zone_minutes;
    let sign = if zone < 0 { '-' } else { '+' };
    let zone = zone.unsigned_abs();
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
        dt.date.day,
        Date::MONTHS[usize::from(dt.date.month - 1)],
        dt.date.year,
        dt.hour,
        dt.minute,
        dt.second,
        sign,
        zone / 60,
        zone % 60
    )
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    options: EncodeOptions,
}

impl Writer<'_> {
    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn num(&mut self, n: impl std::fmt::Display) {
        let _ = write!(StringSink(self.out), "{n}");
    }

    /// Human text: no line breaks, no NUL, even if a caller passes some.
    fn text(&mut self, text: &str) {
        for c in text.chars() {
            let c = if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            };
            let mut buf = [0u8; 4];
            self.out
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    /// `string = quoted / literal`: quoted when short and printable 7-bit, else a literal.
    fn string(&mut self, bytes: &[u8]) {
        let quotable = bytes.len() <= 1024 && bytes.iter().all(|&b| (0x20..0x7f).contains(&b));
        if quotable {
            self.out.push(b'"');
            for &b in bytes {
                if b == b'"' || b == b'\\' {
                    self.out.push(b'\\');
                }
                self.out.push(b);
            }
            self.out.push(b'"');
        } else {
            self.literal(bytes, false);
        }
    }

    fn literal(&mut self, bytes: &[u8], binary: bool) {
        if binary {
            self.out.push(b'~');
        }
        self.out.push(b'{');
        self.num(bytes.len());
        self.raw("}\r\n");
        self.out.extend_from_slice(bytes);
    }

    /// `nstring = string / nil`
    fn nstring(&mut self, value: Option<&[u8]>) {
        match value {
            Some(bytes) => self.string(bytes),
            None => self.raw("NIL"),
        }
    }

    fn nstr(&mut self, value: &Option<String>) {
        self.nstring(value.as_deref().map(str::as_bytes));
    }

    /// `astring`: an atom when possible, else a string.
    fn astring(&mut self, s: &str) {
        if !s.is_empty() && s.bytes().all(is_astring_char) {
            self.raw(s);
        } else {
            self.string(s.as_bytes());
        }
    }

    fn mailbox(&mut self, name: &str) {
        if self.options.utf8_mailboxes {
            self.astring(name);
        } else {
            let encoded = utf7::encode(name);
            self.astring(&encoded);
        }
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.raw("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.raw(" ");
            }
            each(self, item);
        }
        self.raw(")");
    }

    fn atoms(&mut self, items: &[String]) {
        self.list(items, |w, s| w.raw(s));
    }

    fn status(&mut self, status: &StatusResponse) {
        match &status.tag {
            Some(tag) => self.raw(tag.as_str()),
            None => self.raw("*"),
        }
        self.raw(match status.kind {
            StatusKind::Ok => " OK ",
            StatusKind::No => " NO ",
            StatusKind::Bad => " BAD ",
            StatusKind::PreAuth => " PREAUTH ",
            StatusKind::Bye => " BYE ",
        });
        if let Some(code) = &status.code {
            self.raw("[");
            self.code(code);
            self.raw("] ");
        }
        // `resp-text = ["[" resp-text-code "]" SP] [text]`; some clients insist on some text.
        let text = if status.text.is_empty() {
            "done"
        } else {
            &status.text
        };
        self.text(text);
    }

    fn code(&mut self, code: &Code) {
        use Code::*;
        match code {
            Alert => self.raw("ALERT"),
            AlreadyExists => self.raw("ALREADYEXISTS"),
            AppendUid { uid_validity, uids } => {
                self.raw("APPENDUID ");
                self.num(uid_validity);
                self.raw(" ");
                self.raw(&sequence_set_string(uids));
            }
            AuthenticationFailed => self.raw("AUTHENTICATIONFAILED"),
            AuthorizationFailed => self.raw("AUTHORIZATIONFAILED"),
            BadCharset(charsets) => {
                self.raw("BADCHARSET");
                if !charsets.is_empty() {
                    self.raw(" ");
                    self.list(charsets, |w, c| w.astring(c));
                }
            }
            Cannot => self.raw("CANNOT"),
            Capability(caps) => {
                self.raw("CAPABILITY");
                for cap in caps {
                    self.raw(" ");
                    self.raw(cap);
                }
            }
            ClientBug => self.raw("CLIENTBUG"),
            Closed => self.raw("CLOSED"),
            ContactAdmin => self.raw("CONTACTADMIN"),
            CopyUid {
                uid_validity,
                source,
                destination,
            } => {
                self.raw("COPYUID ");
                self.num(uid_validity);
                self.raw(" ");
                self.raw(&sequence_set_string(source));
                self.raw(" ");
                self.raw(&sequence_set_string(destination));
            }
            Corruption => self.raw("CORRUPTION"),
            Expired => self.raw("EXPIRED"),
            ExpungeIssued => self.raw("EXPUNGEISSUED"),
            HasChildren => self.raw("HASCHILDREN"),
            HighestModSeq(m) => {
                self.raw("HIGHESTMODSEQ ");
                self.num(m);
            }
            InUse => self.raw("INUSE"),
            Limit => self.raw("LIMIT"),
            Modified(ids) => {
                self.raw("MODIFIED ");
                self.raw(&sequence_set_string(ids));
            }
            NoModSeq => self.raw("NOMODSEQ"),
            NonExistent => self.raw("NONEXISTENT"),
            NoPerm => self.raw("NOPERM"),
            OverQuota => self.raw("OVERQUOTA"),
            Parse => self.raw("PARSE"),
            PermanentFlags(flags) => {
                self.raw("PERMANENTFLAGS ");
                self.atoms(flags);
            }
            PrivacyRequired => self.raw("PRIVACYREQUIRED"),
            ReadOnly => self.raw("READ-ONLY"),
            ReadWrite => self.raw("READ-WRITE"),
            ServerBug => self.raw("SERVERBUG"),
            TooBig => self.raw("TOOBIG"),
            TryCreate => self.raw("TRYCREATE"),
            UidNext(n) => {
                self.raw("UIDNEXT ");
                self.num(n);
            }
            UidNotSticky => self.raw("UIDNOTSTICKY"),
            UidValidity(n) => {
                self.raw("UIDVALIDITY ");
                self.num(n);
            }
            Unavailable => self.raw("UNAVAILABLE"),
            UnknownCte => self.raw("UNKNOWN-CTE"),
            UseAttr => self.raw("USEATTR"),
            Unseen(n) => {
                self.raw("UNSEEN ");
                self.num(n);
            }
            CompressionActive => self.raw("COMPRESSIONACTIVE"),
            BadEvent(events) => {
                self.raw("BADEVENT ");
                self.atoms(events);
            }
            NotificationOverflow => self.raw("NOTIFICATIONOVERFLOW"),
            MailboxId(id) => {
                self.raw("MAILBOXID (");
                self.raw(id);
                self.raw(")");
            }
        }
    }

    fn data(&mut self, data: &Data) {
        self.raw("* ");
        match data {
            Data::Capability(caps) => {
                self.raw("CAPABILITY");
                for cap in caps {
                    self.raw(" ");
                    self.raw(cap);
                }
            }
            Data::Enabled(caps) => {
                self.raw("ENABLED");
                for cap in caps {
                    self.raw(" ");
                    self.raw(cap);
                }
            }
            Data::List {
                attributes,
                delimiter,
                mailbox,
                child_info,
                old_name,
            } => {
                self.raw("LIST ");
                self.list_entry(attributes, *delimiter, mailbox);
                if !child_info.is_empty() {
                    self.raw(" (\"CHILDINFO\" ");
                    self.list(child_info, |w, c| w.string(c.as_bytes()));
                    self.raw(")");
                }
                if let Some(old_name) = old_name {
                    self.raw(" (\"OLDNAME\" (");
                    self.mailbox(old_name);
                    self.raw("))");
                }
            }
            Data::Lsub {
                attributes,
                delimiter,
                mailbox,
            } => {
                self.raw("LSUB ");
                self.list_entry(attributes, *delimiter, mailbox);
            }
            Data::Status { mailbox, items } => {
                self.raw("STATUS ");
                self.mailbox(mailbox);
                self.raw(" ");
                self.list(items, |w, (item, value)| {
                    w.raw(item.name());
                    w.raw(" ");
                    match value {
                        StatusValue::Number(n) => w.num(n),
                        StatusValue::ObjectId(id) => {
                            w.raw("(");
                            w.raw(id);
                            w.raw(")");
                        }
                    }
                });
            }
            Data::Search {
                ids,
                highest_modseq,
            } => {
                self.raw("SEARCH");
                self.ids_with_modseq(ids, *highest_modseq);
            }
            Data::Sort {
                ids,
                highest_modseq,
            } => {
                self.raw("SORT");
                self.ids_with_modseq(ids, *highest_modseq);
            }
            Data::ESearch {
                tag,
                uid,
                min,
                max,
                count,
                all,
                highest_modseq,
            } => {
                self.raw("ESEARCH");
                if let Some(tag) = tag {
                    self.raw(" (TAG ");
                    self.string(tag.as_str().as_bytes());
                    self.raw(")");
                }
                if *uid {
                    self.raw(" UID");
                }
                for (name, value) in [("MIN", min), ("MAX", max), ("COUNT", count)] {
                    if let Some(v) = value {
                        self.raw(" ");
                        self.raw(name);
                        self.raw(" ");
                        self.num(v);
                    }
                }
                if let Some(all) = all.as_ref().filter(|a| !a.is_empty()) {
                    self.raw(" ALL ");
                    self.raw(&sequence_set_string(all));
                }
                if let Some(m) = highest_modseq {
                    self.raw(" MODSEQ ");
                    self.num(m);
                }
            }
            Data::Thread(threads) => {
                self.raw("THREAD");
                if !threads.nodes.is_empty() {
                    self.raw(" ");
                }
                self.thread_list(threads);
            }
            Data::Flags(flags) => {
                self.raw("FLAGS ");
                self.atoms(flags);
            }
            Data::Exists(n) => {
                self.num(n);
                self.raw(" EXISTS");
            }
            Data::Recent(n) => {
                self.num(n);
                self.raw(" RECENT");
            }
            Data::Expunge(n) => {
                self.num(n);
                self.raw(" EXPUNGE");
            }
            Data::Vanished { earlier, uids } => {
                self.raw("VANISHED ");
                if *earlier {
                    self.raw("(EARLIER) ");
                }
                self.raw(&sequence_set_string(uids));
            }
            Data::Fetch { seq, items } => {
                self.num(seq);
                self.raw(" FETCH ");
                self.list(items, |w, item| w.fetch_item(item));
            }
            Data::Id(params) => {
                self.raw("ID ");
                match params {
                    None => self.raw("NIL"),
                    Some(params) => self.list(params, |w, (k, v)| {
                        w.string(k.as_bytes());
                        w.raw(" ");
                        w.nstr(v);
                    }),
                }
            }
            Data::Namespace {
                personal,
                other,
                shared,
            } => {
                self.raw("NAMESPACE");
                for group in [personal, other, shared] {
                    self.raw(" ");
                    if group.is_empty() {
                        self.raw("NIL");
                    } else {
                        self.raw("(");
                        for (prefix, delimiter) in group {
                            self.raw("(");
                            self.string(prefix.as_bytes());
                            self.raw(" ");
                            self.delimiter(*delimiter);
                            self.raw(")");
                        }
                        self.raw(")");
                    }
                }
            }
            Data::Quota { root, resources } => {
                self.raw("QUOTA ");
                self.astring(root);
                self.raw(" ");
                self.list(resources, |w, (name, usage, limit)| {
                    w.raw(name);
                    w.raw(" ");
                    w.num(usage);
                    w.raw(" ");
                    w.num(limit);
                });
            }
            Data::QuotaRoot { mailbox, roots } => {
                self.raw("QUOTAROOT ");
                self.mailbox(mailbox);
                for root in roots {
                    self.raw(" ");
                    self.astring(root);
                }
            }
        }
    }

    fn delimiter(&mut self, delimiter: Option<char>) {
        match delimiter {
            Some(d) => {
                let mut buf = [0u8; 4];
                self.string(d.encode_utf8(&mut buf).as_bytes());
            }
            None => self.raw("NIL"),
        }
    }

    fn list_entry(&mut self, attributes: &[String], delimiter: Option<char>, mailbox: &str) {
        self.atoms(attributes);
        self.raw(" ");
        self.delimiter(delimiter);
        self.raw(" ");
        self.mailbox(mailbox);
    }

    fn ids_with_modseq(&mut self, ids: &[u32], highest_modseq: Option<u64>) {
        for id in ids {
            self.raw(" ");
            self.num(id);
        }
        if let Some(m) = highest_modseq {
            self.raw(" (MODSEQ ");
            self.num(m);
            self.raw(")");
        }
    }

    /// Each thread as `thread-list = "(" (thread-members / thread-nested) ")"`: a chain of
    /// single children is written flat, several children each in their own parentheses. One
    /// pass over the flat list with a stack of the open parents, no recursion: hostile reply
    /// chains can be arbitrarily deep.
    fn thread_list(&mut self, threads: &ThreadList) {
        /// An open parent: children still to end, and whether each child is parenthesized.
        struct Open {
            remaining: u32,
            nested: bool,
        }
        let mut open: Vec<Open> = Vec::new();
        for &(id, children) in &threads.nodes {
            match open.last() {
                None => self.raw("("),
                Some(parent) if parent.nested => self.raw("("),
                Some(_) => {}
            }
            if id != 0 {
                self.num(id);
            }
            if children > 0 {
                // A message with one child continues its chain; a placeholder, or a message
                // with several children, nests each child.
                let nested = id == 0 || children > 1;
                if id != 0 {
                    self.raw(" ");
                }
                open.push(Open {
                    remaining: children,
                    nested,
                });
                continue;
            }
            // A leaf ends its subtree, and with it every ancestor whose last child it ends.
            loop {
                match open.last_mut() {
                    None => {
                        self.raw(")");
                        break;
                    }
                    Some(parent) => {
                        if parent.nested {
                            self.raw(")");
                        }
                        parent.remaining -= 1;
                        if parent.remaining > 0 {
                            break;
                        }
                        open.pop();
                    }
                }
            }
        }
    }

    fn fetch_item(&mut self, item: &FetchItem) {
        match item {
            FetchItem::Flags(flags) => {
                self.raw("FLAGS ");
                self.atoms(flags);
            }
            FetchItem::Uid(uid) => {
                self.raw("UID ");
                self.num(uid);
            }
            FetchItem::Rfc822Size(size) => {
                self.raw("RFC822.SIZE ");
                self.num(size);
            }
            FetchItem::InternalDate(ts) => {
                self.raw("INTERNALDATE \"");
                self.raw(&date_time_string(*ts));
                self.raw("\"");
            }
            FetchItem::ModSeq(m) => {
                self.raw("MODSEQ (");
                self.num(m);
                self.raw(")");
            }
            FetchItem::EmailId(id) => {
                self.raw("EMAILID (");
                self.raw(id);
                self.raw(")");
            }
            FetchItem::ThreadId(id) => match id {
                Some(id) => {
                    self.raw("THREADID (");
                    self.raw(id);
                    self.raw(")");
                }
                None => self.raw("THREADID NIL"),
            },
            FetchItem::SaveDate(ts) => match ts {
                Some(ts) => {
                    self.raw("SAVEDATE \"");
                    self.raw(&date_time_string(*ts));
                    self.raw("\"");
                }
                None => self.raw("SAVEDATE NIL"),
            },
            FetchItem::Preview(text) => {
                self.raw("PREVIEW ");
                self.nstr(text);
            }
            FetchItem::Envelope(envelope) => {
                self.raw("ENVELOPE ");
                self.envelope(envelope);
            }
            FetchItem::BodyStructure(body) => {
                self.raw("BODYSTRUCTURE ");
                self.body(body, true);
            }
            FetchItem::Body(body) => {
                self.raw("BODY ");
                self.body(body, false);
            }
            FetchItem::BodySection {
                section,
                origin,
                data,
            } => {
                self.raw("BODY");
                self.section(section);
                if let Some(origin) = origin {
                    self.raw("<");
                    self.num(origin);
                    self.raw(">");
                }
                self.raw(" ");
                self.body_data(data.as_deref());
            }
            FetchItem::Binary { part, origin, data } => {
                self.raw("BINARY");
                self.section_binary(part);
                if let Some(origin) = origin {
                    self.raw("<");
                    self.num(origin);
                    self.raw(">");
                }
                self.raw(" ");
                match data {
                    Some(data) if data.contains(&0) => self.literal(data, true),
                    other => self.body_data(other.as_deref()),
                }
            }
            FetchItem::BinarySize { part, size } => {
                self.raw("BINARY.SIZE");
                self.section_binary(part);
                self.raw(" ");
                self.num(size);
            }
            FetchItem::Rfc822(data) => {
                self.raw("RFC822 ");
                self.body_data(Some(data));
            }
            FetchItem::Rfc822Header(data) => {
                self.raw("RFC822.HEADER ");
                self.body_data(Some(data));
            }
            FetchItem::Rfc822Text(data) => {
                self.raw("RFC822.TEXT ");
                self.body_data(Some(data));
            }
        }
    }

    /// Message data is always sent as a literal: it has line breaks and 8-bit bytes.
    fn body_data(&mut self, data: Option<&[u8]>) {
        match data {
            Some(data) => self.literal(data, false),
            None => self.raw("NIL"),
        }
    }

    fn section_binary(&mut self, part: &[u32]) {
        self.raw("[");
        self.part_numbers(part);
        self.raw("]");
    }

    fn part_numbers(&mut self, part: &[u32]) {
        for (i, n) in part.iter().enumerate() {
            if i > 0 {
                self.raw(".");
            }
            self.num(n);
        }
    }

    fn section(&mut self, section: &Section) {
        self.raw("[");
        self.part_numbers(&section.part);
        if let Some(text) = &section.text {
            if !section.part.is_empty() {
                self.raw(".");
            }
            match text {
                SectionText::Header => self.raw("HEADER"),
                SectionText::Text => self.raw("TEXT"),
                SectionText::Mime => self.raw("MIME"),
                SectionText::HeaderFields { not, fields } => {
                    self.raw(if *not {
                        "HEADER.FIELDS.NOT "
                    } else {
                        "HEADER.FIELDS "
                    });
                    self.list(fields, |w, f| w.astring(f));
                }
            }
        }
        self.raw("]");
    }

    fn addresses(&mut self, addresses: &[Address]) {
        if addresses.is_empty() {
            self.raw("NIL");
            return;
        }
        self.raw("(");
        for a in addresses {
            self.raw("(");
            self.nstr(&a.name);
            self.raw(" ");
            self.nstr(&a.adl);
            self.raw(" ");
            self.nstr(&a.mailbox);
            self.raw(" ");
            self.nstr(&a.host);
            self.raw(")");
        }
        self.raw(")");
    }

    fn envelope(&mut self, e: &Envelope) {
        self.raw("(");
        self.nstr(&e.date);
        self.raw(" ");
        self.nstr(&e.subject);
        for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
            self.raw(" ");
            self.addresses(list);
        }
        self.raw(" ");
        self.nstr(&e.in_reply_to);
        self.raw(" ");
        self.nstr(&e.message_id);
        self.raw(")");
    }

    /// `body-fld-param = "(" string SP string *(SP string SP string) ")" / nil`
    fn params(&mut self, params: &[(String, String)]) {
        if params.is_empty() {
            self.raw("NIL");
        } else {
            self.list(params, |w, (k, v)| {
                w.string(k.as_bytes());
                w.raw(" ");
                w.string(v.as_bytes());
            });
        }
    }

    fn body(&mut self, body: &BodyStructure, extended: bool) {
        self.raw("(");
        match body {
            BodyStructure::Single {
                media_type,
                subtype,
                params,
                id,
                description,
                encoding,
                size,
                kind,
                extension,
            } => {
                self.string(media_type.as_bytes());
                self.raw(" ");
                self.string(subtype.as_bytes());
                self.raw(" ");
                self.params(params);
                self.raw(" ");
                self.nstr(id);
                self.raw(" ");
                self.nstr(description);
                self.raw(" ");
                self.string(encoding.as_bytes());
                self.raw(" ");
                self.num(size);
                match kind {
                    SinglePartKind::Basic => {}
                    SinglePartKind::Text { lines } => {
                        self.raw(" ");
                        self.num(lines);
                    }
                    SinglePartKind::Message {
                        envelope,
                        body,
                        lines,
                    } => {
                        self.raw(" ");
                        self.envelope(envelope);
                        self.raw(" ");
                        self.body(body, extended);
                        self.raw(" ");
                        self.num(lines);
                    }
                }
                if extended {
                    self.raw(" ");
                    self.nstr(&extension.md5);
                    self.extension_tail(extension);
                }
            }
            BodyStructure::Multi {
                parts,
                subtype,
                params,
                extension,
            } => {
                for part in parts {
                    self.body(part, extended);
                }
                self.raw(" ");
                self.string(subtype.as_bytes());
                if extended {
                    self.raw(" ");
                    self.params(params);
                    self.extension_tail(extension);
                }
            }
        }
        self.raw(")");
    }

    /// `SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]`
    fn extension_tail(&mut self, extension: &BodyExtension) {
        self.raw(" ");
        match &extension.disposition {
            Some((kind, params)) => {
                self.raw("(");
                self.string(kind.as_bytes());
                self.raw(" ");
                self.params(params);
                self.raw(")");
            }
            None => self.raw("NIL"),
        }
        self.raw(" ");
        match extension.language.as_slice() {
            [] => self.raw("NIL"),
            [one] => self.string(one.as_bytes()),
            many => self.list(many, |w, l| w.string(l.as_bytes())),
        }
        self.raw(" ");
        self.nstr(&extension.location);
    }
}

/// `fmt::Write` over a byte buffer, for numbers.
struct StringSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StringSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Encode a command as a client would send it, with non-synchronising literals (LITERAL+) for
/// anything that cannot be quoted.
pub fn encode_command(command: &Command, options: EncodeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer {
        out: &mut out,
        options,
    };
    w.raw(command.tag.as_str());
    w.raw(" ");
    w.command_body(&command.body);
    w.raw("\r\n");
    out
}

impl Writer<'_> {
    fn client_literal(&mut self, bytes: &[u8], binary: bool) {
        if binary {
            self.out.push(b'~');
        }
        self.out.push(b'{');
        self.num(bytes.len());
        self.raw("+}\r\n");
        self.out.extend_from_slice(bytes);
    }

    /// A client-side string: quoted when possible, else a non-synchronising literal.
    fn client_string(&mut self, bytes: &[u8]) {
        if bytes.len() <= 1024 && bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            self.string(bytes);
        } else {
            self.client_literal(bytes, false);
        }
    }

    fn client_astring(&mut self, s: &str) {
        if !s.is_empty() && s.bytes().all(is_astring_char) {
            self.raw(s);
        } else {
            self.client_string(s.as_bytes());
        }
    }

    fn client_mailbox(&mut self, name: &str) {
        let encoded = if self.options.utf8_mailboxes {
            name.to_string()
        } else {
            utf7::encode(name)
        };
        self.client_astring(&encoded);
    }

    fn list_pattern(&mut self, pattern: &str) {
        let encoded = if self.options.utf8_mailboxes {
            pattern.to_string()
        } else {
            utf7::encode(pattern)
        };
        if !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| is_astring_char(b) || b == b'%' || b == b'*')
        {
            self.raw(&encoded);
        } else {
            self.client_string(encoded.as_bytes());
        }
    }

    fn sequence_set(&mut self, set: &SequenceSet) {
        match set {
            SequenceSet::Saved => self.raw("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, (a, b)) in ranges.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.seq_number(*a);
                    if a != b {
                        self.raw(":");
                        self.seq_number(*b);
                    }
                }
            }
        }
    }

    fn seq_number(&mut self, n: SeqNumber) {
        match n {
            SeqNumber::Value(v) => self.num(v),
            SeqNumber::Largest => self.raw("*"),
        }
    }

    fn flags(&mut self, flags: &[Flag]) {
        self.list(flags, |w, f| w.raw(f.as_str()));
    }

    fn status_items(&mut self, items: &[StatusItem]) {
        self.list(items, |w, i| w.raw(i.name()));
    }

    fn date(&mut self, date: &Date) {
        let _ = write!(
            StringSink(self.out),
            "{}-{}-{:04}",
            date.day,
            Date::MONTHS[usize::from(date.month - 1)],
            date.year
        );
    }

    fn search_return(&mut self, result: &Option<Vec<SearchReturn>>) {
        if let Some(options) = result {
            self.raw("RETURN ");
            self.list(options, |w, o| {
                w.raw(match o {
                    SearchReturn::Min => "MIN",
                    SearchReturn::Max => "MAX",
                    SearchReturn::All => "ALL",
                    SearchReturn::Count => "COUNT",
                    SearchReturn::Save => "SAVE",
                })
            });
            self.raw(" ");
        }
    }

    /// Top-level keys are written space-separated (an `And` at the top needs no parentheses).
    fn search_program(&mut self, key: &SearchKey) {
        match key {
            SearchKey::And(keys) if !keys.is_empty() => {
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        self.raw(" ");
                    }
                    self.search_key(k);
                }
            }
            other => self.search_key(other),
        }
    }

    fn search_key(&mut self, key: &SearchKey) {
        use SearchKey as K;
        let text = |w: &mut Self, name: &str, value: &str| {
            w.raw(name);
            w.raw(" ");
            w.client_astring(value);
        };
        let date = |w: &mut Self, name: &str, value: &Date| {
            w.raw(name);
            w.raw(" ");
            w.date(value);
        };
        match key {
            K::All => self.raw("ALL"),
            K::Answered => self.raw("ANSWERED"),
            K::Bcc(s) => text(self, "BCC", s),
            K::Before(d) => date(self, "BEFORE", d),
            K::Body(s) => text(self, "BODY", s),
            K::Cc(s) => text(self, "CC", s),
            K::Deleted => self.raw("DELETED"),
            K::Draft => self.raw("DRAFT"),
            K::Flagged => self.raw("FLAGGED"),
            K::From(s) => text(self, "FROM", s),
            K::Header(field, value) => {
                text(self, "HEADER", field);
                self.raw(" ");
                self.client_astring(value);
            }
            K::Keyword(k) => {
                self.raw("KEYWORD ");
                self.raw(k);
            }
            K::Larger(n) => {
                self.raw("LARGER ");
                self.num(n);
            }
            K::New => self.raw("NEW"),
            K::Not(inner) => {
                self.raw("NOT ");
                self.search_key(inner);
            }
            K::Old => self.raw("OLD"),
            K::On(d) => date(self, "ON", d),
            K::Or(a, b) => {
                self.raw("OR ");
                self.search_key(a);
                self.raw(" ");
                self.search_key(b);
            }
            K::Recent => self.raw("RECENT"),
            K::Seen => self.raw("SEEN"),
            K::SentBefore(d) => date(self, "SENTBEFORE", d),
            K::SentOn(d) => date(self, "SENTON", d),
            K::SentSince(d) => date(self, "SENTSINCE", d),
            K::Since(d) => date(self, "SINCE", d),
            K::Smaller(n) => {
                self.raw("SMALLER ");
                self.num(n);
            }
            K::Subject(s) => text(self, "SUBJECT", s),
            K::Text(s) => text(self, "TEXT", s),
            K::To(s) => text(self, "TO", s),
            K::Uid(set) => {
                self.raw("UID ");
                self.sequence_set(set);
            }
            K::Unanswered => self.raw("UNANSWERED"),
            K::Undeleted => self.raw("UNDELETED"),
            K::Undraft => self.raw("UNDRAFT"),
            K::Unflagged => self.raw("UNFLAGGED"),
            K::Unkeyword(k) => {
                self.raw("UNKEYWORD ");
                self.raw(k);
            }
            K::Unseen => self.raw("UNSEEN"),
            K::SequenceSet(set) => self.sequence_set(set),
            K::And(keys) => self.list(keys, |w, k| w.search_key(k)),
            K::ModSeq(m) => {
                self.raw("MODSEQ ");
                self.num(m);
            }
            K::Older(n) => {
                self.raw("OLDER ");
                self.num(n);
            }
            K::Younger(n) => {
                self.raw("YOUNGER ");
                self.num(n);
            }
            K::EmailId(id) => {
                self.raw("EMAILID ");
                self.raw(id);
            }
            K::ThreadId(id) => {
                self.raw("THREADID ");
                self.raw(id);
            }
            K::SavedBefore(d) => date(self, "SAVEDBEFORE", d),
            K::SavedOn(d) => date(self, "SAVEDON", d),
            K::SavedSince(d) => date(self, "SAVEDSINCE", d),
            K::SaveDateSupported => self.raw("SAVEDATESUPPORTED"),
        }
    }

    fn fetch_attribute(&mut self, attribute: &FetchAttribute) {
        use FetchAttribute as F;
        let partial = |w: &mut Self, partial: &Option<(u32, u32)>| {
            if let Some((offset, length)) = partial {
                let _ = write!(StringSink(w.out), "<{offset}.{length}>");
            }
        };
        match attribute {
            F::Envelope => self.raw("ENVELOPE"),
            F::Flags => self.raw("FLAGS"),
            F::InternalDate => self.raw("INTERNALDATE"),
            F::Rfc822 => self.raw("RFC822"),
            F::Rfc822Header => self.raw("RFC822.HEADER"),
            F::Rfc822Size => self.raw("RFC822.SIZE"),
            F::Rfc822Text => self.raw("RFC822.TEXT"),
            F::Body => self.raw("BODY"),
            F::BodyStructure => self.raw("BODYSTRUCTURE"),
            F::Uid => self.raw("UID"),
            F::BodySection {
                peek,
                section,
                partial: p,
            } => {
                self.raw(if *peek { "BODY.PEEK" } else { "BODY" });
                self.section(section);
                partial(self, p);
            }
            F::Binary {
                peek,
                part,
                partial: p,
            } => {
                self.raw(if *peek { "BINARY.PEEK" } else { "BINARY" });
                self.section_binary(part);
                partial(self, p);
            }
            F::BinarySize(part) => {
                self.raw("BINARY.SIZE");
                self.section_binary(part);
            }
            F::ModSeq => self.raw("MODSEQ"),
            F::EmailId => self.raw("EMAILID"),
            F::ThreadId => self.raw("THREADID"),
            F::SaveDate => self.raw("SAVEDATE"),
            F::Preview { lazy } => self.raw(if *lazy { "PREVIEW (LAZY)" } else { "PREVIEW" }),
        }
    }

    fn command_body(&mut self, body: &CommandBody) {
        use CommandBody as C;
        let uid_prefix = |w: &mut Self, uid: bool| {
            if uid {
                w.raw("UID ");
            }
        };
        match body {
            C::Capability
            | C::Noop
            | C::Logout
            | C::StartTls
            | C::Namespace
            | C::Idle
            | C::Check
            | C::Close
            | C::Unselect
            | C::Unauthenticate
            | C::Expunge => self.raw(body.name()),
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                self.raw("AUTHENTICATE ");
                self.raw(mechanism);
                if let Some(ir) = initial_response {
                    self.raw(" ");
                    if ir.expose().is_empty() {
                        self.raw("=");
                    } else {
                        self.out.extend_from_slice(ir.expose());
                    }
                }
            }
            C::Login { username, password } => {
                self.raw("LOGIN ");
                self.client_astring(username);
                self.raw(" ");
                match std::str::from_utf8(password.expose()) {
                    Ok(p) => self.client_astring(p),
                    Err(_) => self.client_literal(password.expose(), false),
                }
            }
            C::Enable(caps) => {
                self.raw("ENABLE");
                for cap in caps {
                    self.raw(" ");
                    self.raw(cap);
                }
            }
            C::Select {
                mailbox,
                read_only,
                params,
            } => {
                self.raw(if *read_only { "EXAMINE " } else { "SELECT " });
                self.client_mailbox(mailbox.as_str());
                let mut parts: Vec<Vec<u8>> = Vec::new();
                if params.condstore {
                    parts.push(b"CONDSTORE".to_vec());
                }
                if let Some(q) = &params.qresync {
                    let mut inner = Vec::new();
                    let mut iw = Writer {
                        out: &mut inner,
                        options: self.options,
                    };
                    iw.raw("QRESYNC (");
                    iw.num(q.uid_validity);
                    iw.raw(" ");
                    iw.num(q.modseq);
                    if let Some(known) = &q.known_uids {
                        iw.raw(" ");
                        iw.sequence_set(known);
                    }
                    if let Some((seqs, uids)) = &q.seq_match {
                        iw.raw(" (");
                        iw.sequence_set(seqs);
                        iw.raw(" ");
                        iw.sequence_set(uids);
                        iw.raw(")");
                    }
                    iw.raw(")");
                    parts.push(inner);
                }
                if !parts.is_empty() {
                    self.raw(" (");
                    self.out.extend_from_slice(&parts.join(&b' '));
                    self.raw(")");
                }
            }
            C::Create {
                mailbox,
                special_use,
            } => {
                self.raw("CREATE ");
                self.client_mailbox(mailbox.as_str());
                if !special_use.is_empty() {
                    self.raw(" (USE ");
                    self.atoms(special_use);
                    self.raw(")");
                }
            }
            C::Delete(m) | C::Subscribe(m) | C::Unsubscribe(m) | C::GetQuotaRoot(m) => {
                self.raw(body.name());
                self.raw(" ");
                self.client_mailbox(m.as_str());
            }
            C::Rename { from, to } => {
                self.raw("RENAME ");
                self.client_mailbox(from.as_str());
                self.raw(" ");
                self.client_mailbox(to.as_str());
            }
            C::List(list) => {
                self.raw("LIST ");
                if !list.select_options.is_empty() {
                    self.atoms(&list.select_options);
                    self.raw(" ");
                }
                self.client_mailbox(&list.reference);
                self.raw(" ");
                if list.patterns.len() == 1 {
                    self.list_pattern(&list.patterns[0]);
                } else {
                    self.list(&list.patterns, |w, p| w.list_pattern(p));
                }
                if !list.return_options.is_empty() || list.return_status.is_some() {
                    self.raw(" RETURN (");
                    let mut first = true;
                    for option in &list.return_options {
                        if !first {
                            self.raw(" ");
                        }
                        first = false;
                        self.raw(option);
                    }
                    if let Some(items) = &list.return_status {
                        if !first {
                            self.raw(" ");
                        }
                        self.raw("STATUS ");
                        self.status_items(items);
                    }
                    self.raw(")");
                }
            }
            C::Lsub { reference, pattern } => {
                self.raw("LSUB ");
                self.client_mailbox(reference);
                self.raw(" ");
                self.list_pattern(pattern);
            }
            C::Status { mailbox, items } => {
                self.raw("STATUS ");
                self.client_mailbox(mailbox.as_str());
                self.raw(" ");
                self.status_items(items);
            }
            C::Append { mailbox, messages } => {
                self.raw("APPEND ");
                self.client_mailbox(mailbox.as_str());
                for message in messages {
                    self.raw(" ");
                    if !message.flags.is_empty() {
                        self.flags(&message.flags);
                        self.raw(" ");
                    }
                    if let Some(dt) = &message.internal_date {
                        self.raw("\"");
                        self.raw(&format_date_time(dt));
                        self.raw("\" ");
                    }
                    if message.utf8 {
                        self.raw("UTF8 (");
                        self.client_literal(&message.data, true);
                        self.raw(")");
                    } else {
                        self.client_literal(&message.data, message.binary);
                    }
                }
            }
            C::UidExpunge(set) => {
                self.raw("UID EXPUNGE ");
                self.sequence_set(set);
            }
            C::Search(search) => {
                uid_prefix(self, search.uid);
                self.raw("SEARCH ");
                self.search_return(&search.result);
                if let Some(charset) = &search.charset {
                    self.raw("CHARSET ");
                    self.client_astring(charset);
                    self.raw(" ");
                }
                self.search_program(&search.key);
            }
            C::Fetch {
                uid,
                set,
                attributes,
                changed_since,
                vanished,
            } => {
                uid_prefix(self, *uid);
                self.raw("FETCH ");
                self.sequence_set(set);
                self.raw(" ");
                self.list(attributes, |w, a| w.fetch_attribute(a));
                if changed_since.is_some() || *vanished {
                    self.raw(" (");
                    if let Some(m) = changed_since {
                        self.raw("CHANGEDSINCE ");
                        self.num(m);
                        if *vanished {
                            self.raw(" ");
                        }
                    }
                    if *vanished {
                        self.raw("VANISHED");
                    }
                    self.raw(")");
                }
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                uid_prefix(self, *uid);
                self.raw("STORE ");
                self.sequence_set(set);
                self.raw(" ");
                if let Some(m) = unchanged_since {
                    self.raw("(UNCHANGEDSINCE ");
                    self.num(m);
                    self.raw(") ");
                }
                self.raw(match mode {
                    StoreMode::Replace => "",
                    StoreMode::Add => "+",
                    StoreMode::Remove => "-",
                });
                self.raw(if *silent { "FLAGS.SILENT " } else { "FLAGS " });
                self.flags(flags);
            }
            C::Copy { uid, set, mailbox } | C::Move { uid, set, mailbox } => {
                uid_prefix(self, *uid);
                self.raw(if matches!(body, C::Copy { .. }) {
                    "COPY "
                } else {
                    "MOVE "
                });
                self.sequence_set(set);
                self.raw(" ");
                self.client_mailbox(mailbox.as_str());
            }
            C::Id(params) => {
                self.raw("ID ");
                match params {
                    None => self.raw("NIL"),
                    Some(params) => self.list(params, |w, (k, v)| {
                        w.client_string(k.as_bytes());
                        w.raw(" ");
                        match v {
                            Some(v) => w.client_string(v.as_bytes()),
                            None => w.raw("NIL"),
                        }
                    }),
                }
            }
            C::Sort {
                uid,
                criteria,
                charset,
                key,
                result,
            } => {
                uid_prefix(self, *uid);
                self.raw("SORT ");
                self.search_return(result);
                self.list(criteria, |w, c| {
                    if c.reverse {
                        w.raw("REVERSE ");
                    }
                    w.raw(match c.key {
                        SortKey::Arrival => "ARRIVAL",
                        SortKey::Cc => "CC",
                        SortKey::Date => "DATE",
                        SortKey::From => "FROM",
                        SortKey::Size => "SIZE",
                        SortKey::Subject => "SUBJECT",
                        SortKey::To => "TO",
                        SortKey::DisplayFrom => "DISPLAYFROM",
                        SortKey::DisplayTo => "DISPLAYTO",
                    });
                });
                self.raw(" ");
                self.client_astring(charset);
                self.raw(" ");
                self.search_program(key);
            }
            C::Thread {
                uid,
                algorithm,
                charset,
                key,
            } => {
                uid_prefix(self, *uid);
                self.raw("THREAD ");
                self.raw(match algorithm {
                    ThreadAlgorithm::OrderedSubject => "ORDEREDSUBJECT ",
                    ThreadAlgorithm::References => "REFERENCES ",
                });
                self.client_astring(charset);
                self.raw(" ");
                self.search_program(key);
            }
            C::GetQuota(root) => {
                self.raw("GETQUOTA ");
                self.client_astring(root);
            }
            C::SetQuota { root, limits } => {
                self.raw("SETQUOTA ");
                self.client_astring(root);
                self.raw(" ");
                self.list(limits, |w, (name, limit)| {
                    w.raw(name);
                    w.raw(" ");
                    w.num(limit);
                });
            }
            C::Compress(algorithm) => {
                self.raw("COMPRESS ");
                self.raw(algorithm);
            }
            C::Notify(notify) => self.notify(notify),
        }
    }

    /// `notify = "NOTIFY" SP (notify-set / notify-none)` (RFC 5465)
    fn notify(&mut self, notify: &NotifyCommand) {
        let NotifyCommand::Set { status, groups } = notify else {
            self.raw("NOTIFY NONE");
            return;
        };
        self.raw("NOTIFY SET");
        if *status {
            self.raw(" STATUS");
        }
        for group in groups {
            self.raw(" (");
            let mailboxes = |w: &mut Self, keyword: &str, names: &[Mailbox]| {
                w.raw(keyword);
                w.raw(" ");
                w.list(names, |w, m| w.client_mailbox(m.as_str()));
            };
            match &group.filter {
                NotifyFilter::Selected => self.raw("SELECTED"),
                NotifyFilter::SelectedDelayed => self.raw("SELECTED-DELAYED"),
                NotifyFilter::Inboxes => self.raw("INBOXES"),
                NotifyFilter::Personal => self.raw("PERSONAL"),
                NotifyFilter::Subscribed => self.raw("SUBSCRIBED"),
                NotifyFilter::Subtree(names) => mailboxes(self, "SUBTREE", names),
                NotifyFilter::Mailboxes(names) => mailboxes(self, "MAILBOXES", names),
            }
            self.raw(" ");
            if group.events.is_empty() {
                self.raw("NONE");
            } else {
                self.list(&group.events, |w, event| {
                    w.raw(event.name());
                    if let NotifyEvent::MessageNew(attributes) = event
                        && !attributes.is_empty()
                    {
                        w.raw(" ");
                        w.list(attributes, |w, a| w.fetch_attribute(a));
                    }
                });
            }
            self.raw(")");
        }
    }
}

//! POP3 wire format without I/O: bounded line framing, command parsing (RFC 1939 section 3,
//! RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), response encoding and the byte-exact
//! dot-stuffing of multi-line responses.

use zeroize::Zeroizing;

/// Longest command line accepted, CRLF included. RFC 2449 section 4 allows 255 octets for a
/// command; an AUTH PLAIN initial response with a long password needs more, so the default is
/// generous while still bounded.
pub const DEFAULT_MAX_LINE: usize = 2048;

/// A secret (password, SASL response) whose `Debug` never shows it, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(Zeroizing::new(bytes.to_vec()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `USER name`.
    User(String),
    /// `PASS string`: the rest of the line, spaces included (RFC 1939 section 7 notes that
    /// passwords may contain spaces).
    Pass(Secret),
    /// `AUTH [mechanism [initial-response]]` (RFC 5034); no mechanism lists them.
    Auth {
        mechanism: Option<String>,
        initial_response: Option<Secret>,
    },
    /// `APOP`: recognised so that it gets a clear refusal; it is never offered.
    Apop,
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    /// `TOP msg n`.
    Top {
        message: u32,
        lines: u32,
    },
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
}

impl Command {
    /// The keyword, for logs and metrics (never the arguments: they may be secrets).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Apop => "APOP",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
        }
    }
}

/// Why a command line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command")]
    Empty,
    #[error("unknown command")]
    UnknownCommand,
    #[error("syntax error in {command}: {reason}")]
    Syntax {
        command: &'static str,
        reason: &'static str,
    },
}

/// Parse one command line (without its line ending).
///
/// ```text
/// command  = keyword *(SP argument)       ; RFC 1939 section 3
/// keyword  = 3*4VCHAR                     ; case-insensitive
/// argument = 1*40VCHAR                    ; PASS takes the rest of the line
/// msg      = 1*DIGIT                      ; a message number, 1-based
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if !(3..=4).contains(&keyword.len()) || !keyword.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::UnknownCommand);
    }
    let mut upper = [0u8; 4];
    upper[..keyword.len()].copy_from_slice(keyword);
    upper.make_ascii_uppercase();
    let keyword = &upper[..keyword.len()];
    // PASS keeps its argument whole; everything else splits on single spaces.
    if keyword == b"PASS" {
        return match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass(Secret::new(password))),
            _ => Err(syntax("PASS", "a password is required")),
        };
    }
    let args: Vec<&[u8]> = match rest {
        None => Vec::new(),
        Some(rest) => rest.split(|&b| b == b' ').collect(),
    };
    if args.iter().any(|a| a.is_empty()) {
        return Err(ParseError::Syntax {
            command: name_of(keyword),
            reason: "arguments are separated by single spaces",
        });
    }
    match keyword {
        b"CAPA" => no_args(Command::Capa, "CAPA", &args),
        b"STLS" => no_args(Command::Stls, "STLS", &args),
        b"STAT" => no_args(Command::Stat, "STAT", &args),
        b"NOOP" => no_args(Command::Noop, "NOOP", &args),
        b"RSET" => no_args(Command::Rset, "RSET", &args),
        b"QUIT" => no_args(Command::Quit, "QUIT", &args),
        b"APOP" => Ok(Command::Apop),
        b"USER" => match args.as_slice() {
            [name] => Ok(Command::User(text(name, "USER")?)),
            _ => Err(syntax("USER", "expected one name")),
        },
        b"AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial_response: None,
            }),
            [mechanism] => Ok(Command::Auth {
                mechanism: Some(text(mechanism, "AUTH")?.to_ascii_uppercase()),
                initial_response: None,
            }),
            [mechanism, initial] => Ok(Command::Auth {
                mechanism: Some(text(mechanism, "AUTH")?.to_ascii_uppercase()),
                initial_response: Some(Secret::new(initial)),
            }),
            _ => Err(syntax(
                "AUTH",
                "expected a mechanism and an initial response",
            )),
        },
        b"LIST" => optional_number(&args, "LIST").map(Command::List),
        b"UIDL" => optional_number(&args, "UIDL").map(Command::Uidl),
        b"RETR" => one_number(&args, "RETR").map(Command::Retr),
        b"DELE" => one_number(&args, "DELE").map(Command::Dele),
        b"TOP" => match args.as_slice() {
            [message, lines] => Ok(Command::Top {
                message: number(message, "TOP")?,
                lines: number(lines, "TOP")?,
            }),
            _ => Err(syntax("TOP", "expected a message number and a line count")),
        },
        _ => Err(ParseError::UnknownCommand),
    }
}

fn syntax(command: &'static str, reason: &'static str) -> ParseError {
    ParseError::Syntax { command, reason }
}

fn name_of(keyword: &[u8]) -> &'static str {
    match keyword {
        b"CAPA" => "CAPA",
        b"STLS" => "STLS",
        b"STAT" => "STAT",
        b"NOOP" => "NOOP",
        b"RSET" => "RSET",
        b"QUIT" => "QUIT",
        b"APOP" => "APOP",
        b"USER" => "USER",
        b"AUTH" => "AUTH",
        b"LIST" => "LIST",
        b"UIDL" => "UIDL",
        b"RETR" => "RETR",
        b"DELE" => "DELE",
        b"TOP" => "TOP",
        _ => "command",
    }
}

fn no_args(command: Command, name: &'static str, args: &[&[u8]]) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(syntax(name, "takes no arguments"))
    }
}

fn text(arg: &[u8], command: &'static str) -> Result<String, ParseError> {
    // RFC 1939 arguments are printable ASCII; UTF-8 is accepted for internationalised
    // addresses, control characters never.
    let s = std::str::from_utf8(arg).map_err(|_| syntax(command, "argument is not UTF-8"))?;
    if s.chars().any(char::is_control) {
        return Err(syntax(command, "control character in argument"));
    }
    Ok(s.to_string())
}

fn number(arg: &[u8], command: &'static str) -> Result<u32, ParseError> {
    if arg.is_empty() || arg.len() > 10 || !arg.iter().all(u8::is_ascii_digit) {
        return Err(syntax(command, "expected a decimal number"));
    }
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(syntax(command, "number out of range"))
}

fn one_number(args: &[&[u8]], command: &'static str) -> Result<u32, ParseError> {
    match args {
        [n] => number(n, command),
        _ => Err(syntax(command, "expected a message number")),
    }
}

fn optional_number(args: &[&[u8]], command: &'static str) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [n] => number(n, command).map(Some),
        _ => Err(syntax(command, "expected at most a message number")),
    }
}

/// What the line framer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, its CRLF (or bare LF) removed.
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded, not buffered.
    TooLong { discarded: usize },
}

/// Splits client input into lines, never buffering more than `max_line` bytes.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_line: usize,
    /// Bytes dropped of the current over-long line, while waiting for its end.
    discarding: Option<usize>,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            max_line: max_line.max(8),
            discarding: None,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if let Some(discarded) = &mut self.discarding {
            match bytes.iter().position(|&b| b == b'\n') {
                None => {
                    *discarded += bytes.len();
                    return;
                }
                Some(i) => {
                    // Keep the newline so next_line reports the end of the long line.
                    *discarded += i;
                    bytes = &bytes[i..];
                }
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line or over-long-line notice; `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<LineEvent> {
        if let Some(discarded) = self.discarding {
            if self.buf.first() == Some(&b'\n') {
                self.buf.drain(..1);
                self.discarding = None;
                return Some(LineEvent::TooLong {
                    discarded: discarded + 1,
                });
            }
            return None;
        }
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) if i < self.max_line => {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(LineEvent::Line(line))
            }
            Some(i) => {
                self.buf.drain(..=i);
                Some(LineEvent::TooLong { discarded: i + 1 })
            }
            None if self.buf.len() >= self.max_line => {
                self.discarding = Some(self.buf.len());
                self.buf.clear();
                None
            }
            None => None,
        }
    }

    /// Drop buffered input (after STLS, input pipelined in plaintext must not be trusted).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = None;
    }

    /// Bytes buffered of an incomplete line.
    pub fn has_partial_line(&self) -> bool {
        !self.buf.is_empty() || self.discarding.is_some()
    }
}

/// Response status extension codes (RFC 2449 section 8, RFC 3206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// Another session holds the maildrop lock.
    InUse,
    /// The credentials were wrong (RFC 3206).
    Auth,
    /// A temporary server-side problem (RFC 3206).
    SysTemp,
    /// A permanent server-side problem (RFC 3206).
    SysPerm,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
        }
    }
}

/// `+OK text` CRLF.
pub fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK");
    if !text.is_empty() {
        out.push(b' ');
        push_text(out, text);
    }
    out.extend_from_slice(b"\r\n");
}

/// `-ERR [code] text` CRLF.
pub fn err(out: &mut Vec<u8>, code: Option<RespCode>, text: &str) {
    out.extend_from_slice(b"-ERR");
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    out.push(b' ');
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Response text never carries a line break, whatever it was built from.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// A line of a multi-line response that is not message content (LIST, UIDL, CAPA), dot-stuffed.
pub fn multiline_line(out: &mut Vec<u8>, line: &str) {
    if line.starts_with('.') {
        out.push(b'.');
    }
    push_text(out, line);
    out.extend_from_slice(b"\r\n");
}

/// The terminating `.` CRLF of a multi-line response.
pub fn end_multiline(out: &mut Vec<u8>) {
    out.extend_from_slice(b".\r\n");
}

/// Write a message as the body of a multi-line response (RETR, or TOP with `body_lines`),
/// followed by the terminating `.` line. Lines ending in CRLF are sent byte for byte; a bare
/// LF becomes CRLF and a last line without a line ending gets one, since RFC 1939 section 3
/// defines responses as CRLF-terminated lines. Lines starting with `.` get one more `.`.
/// TOP sends the header, the blank line after it, and at most `body_lines` lines of body.
pub fn write_message(out: &mut Vec<u8>, raw: &[u8], body_lines: Option<u32>) {
    out.reserve(raw.len() + raw.len() / 64 + 3);
    let mut in_body = false;
    let mut body_left = body_lines;
    // Lines that already end in CRLF and start with no dot are copied in runs, not one by one:
    // `verbatim_from` is where the current run of such lines began.
    let mut verbatim_from = 0;
    let mut pos = 0;
    while pos < raw.len() {
        let (end, next) = match raw[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (pos + i, pos + i + 1),
            None => (raw.len(), raw.len()),
        };
        if in_body && let Some(left) = &mut body_left {
            if *left == 0 {
                break;
            }
            *left -= 1;
        }
        let content_end = if end > pos && raw[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let ends_in_crlf = end < raw.len() && content_end < end;
        let starts_with_dot = raw[pos] == b'.';
        if !ends_in_crlf || starts_with_dot {
            out.extend_from_slice(&raw[verbatim_from..pos]);
            if starts_with_dot {
                out.push(b'.');
            }
            out.extend_from_slice(&raw[pos..content_end]);
            out.extend_from_slice(b"\r\n");
            verbatim_from = next;
        }
        if !in_body && content_end == pos {
            in_body = true;
        }
        pos = next;
    }
    out.extend_from_slice(&raw[verbatim_from..pos]);
    end_multiline(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealmail_core::store::crlf_size;

    #[test]
    fn parses_every_command_case_insensitively() {
        let table: &[(&[u8], Command)] = &[
            (b"capa", Command::Capa),
            (b"STLS", Command::Stls),
            (
                b"User alice@example.org",
                Command::User("alice@example.org".into()),
            ),
            (
                b"PASS with spaces ",
                Command::Pass(Secret::new(b"with spaces ")),
            ),
            (
                b"AUTH plain AGEAYg==",
                Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial_response: Some(Secret::new(b"AGEAYg==")),
                },
            ),
            (
                b"AUTH",
                Command::Auth {
                    mechanism: None,
                    initial_response: None,
                },
            ),
            (b"stat", Command::Stat),
            (b"LIST", Command::List(None)),
            (b"LIST 3", Command::List(Some(3))),
            (b"RETR 1", Command::Retr(1)),
            (b"DELE 4294967295", Command::Dele(u32::MAX)),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (b"QUIT", Command::Quit),
            (
                b"top 2 0",
                Command::Top {
                    message: 2,
                    lines: 0,
                },
            ),
            (b"UIDL", Command::Uidl(None)),
            (b"UIDL 7", Command::Uidl(Some(7))),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop,
            ),
        ];
        for (line, expected) in table {
            assert_eq!(
                &parse_command(line).unwrap(),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_bad_input_with_specific_errors() {
        assert_eq!(parse_command(b""), Err(ParseError::Empty));
        assert_eq!(parse_command(b"XYZZY"), Err(ParseError::UnknownCommand));
        assert_eq!(parse_command(b"RE"), Err(ParseError::UnknownCommand));
        assert_eq!(parse_command(b"R3TR 1"), Err(ParseError::UnknownCommand));
        for bad in [
            &b"RETR"[..],
            b"RETR x",
            b"RETR +1",
            b"RETR -1",
            b"RETR 1 2",
            b"RETR  1",
            b"LIST 99999999999",
            b"STAT 1",
            b"TOP 1",
            b"PASS",
            b"PASS ",
            b"USER a b",
            b"USER a\x01",
        ] {
            assert!(
                matches!(parse_command(bad), Err(ParseError::Syntax { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let command = parse_command(b"PASS hunter2").unwrap();
        assert!(!format!("{command:?}").contains("hunter2"));
    }

    #[test]
    fn framer_splits_lines_and_bounds_long_ones() {
        let mut framer = LineFramer::new(16);
        framer.push(b"NOOP\r\nSTAT\nLI");
        assert_eq!(framer.next_event(), Some(LineEvent::Line(b"NOOP".to_vec())));
        assert_eq!(framer.next_event(), Some(LineEvent::Line(b"STAT".to_vec())));
        assert_eq!(framer.next_event(), None);
        framer.push(b"ST\r\n");
        assert_eq!(framer.next_event(), Some(LineEvent::Line(b"LIST".to_vec())));
        // An over-long line arriving in pieces is dropped, not buffered, and reported once.
        framer.push(&[b'x'; 20]);
        assert_eq!(framer.next_event(), None);
        assert!(framer.buf.is_empty());
        framer.push(&[b'y'; 30]);
        assert!(framer.buf.is_empty());
        framer.push(b"zz\r\nQUIT\r\n");
        assert_eq!(
            framer.next_event(),
            Some(LineEvent::TooLong { discarded: 54 })
        );
        assert_eq!(framer.next_event(), Some(LineEvent::Line(b"QUIT".to_vec())));
        // An over-long line arriving at once.
        framer.push(&[b'a'; 40]);
        framer.push(b"\r\nNOOP\r\n");
        assert_eq!(
            framer.next_event(),
            Some(LineEvent::TooLong { discarded: 42 })
        );
        assert_eq!(framer.next_event(), Some(LineEvent::Line(b"NOOP".to_vec())));
    }

    fn served(raw: &[u8], body_lines: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        write_message(&mut out, raw, body_lines);
        out
    }

    #[test]
    fn dot_stuffing_is_byte_exact() {
        let raw = b"Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nend.\r\n";
        assert_eq!(
            served(raw, None),
            b"Subject: dots\r\n\r\n..\r\n...two\r\n..x\r\nend.\r\n.\r\n"
        );
        // CRLF messages without leading dots pass through unchanged.
        let plain = b"A: b\r\n\r\nline\r\n\r\n";
        let mut expected = plain.to_vec();
        expected.extend_from_slice(b".\r\n");
        assert_eq!(served(plain, None), expected);
        assert_eq!(crlf_size(plain), plain.len() as u64);
    }

    #[test]
    fn bare_lf_and_missing_final_crlf() {
        assert_eq!(
            served(b"A: b\n\n.body\nlast", None),
            b"A: b\r\n\r\n..body\r\nlast\r\n.\r\n"
        );
        assert_eq!(crlf_size(b"A: b\n\n.body\nlast"), 21);
        // A CR inside a line is content.
        assert_eq!(
            served(b"A: b\r\n\r\nx\ry\r\n", None),
            b"A: b\r\n\r\nx\ry\r\n.\r\n"
        );
        assert_eq!(served(b"", None), b".\r\n");
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let raw = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(served(raw, Some(0)), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            served(raw, Some(2)),
            b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
        );
        assert_eq!(served(raw, Some(99)), served(raw, None));
        // Header only, no separator: all of it.
        assert_eq!(served(b"A: 1\r\nB: 2", Some(0)), b"A: 1\r\nB: 2\r\n.\r\n");
    }

    #[test]
    fn responses_never_break_lines() {
        let mut out = Vec::new();
        err(&mut out, Some(RespCode::InUse), "locked\r\nby someone");
        ok(&mut out, "");
        multiline_line(&mut out, ".dot");
        assert_eq!(out, b"-ERR [IN-USE] locked  by someone\r\n+OK\r\n..dot\r\n");
    }

    /// The plain line-by-line form of `write_message`, which copies in runs: both must agree.
    fn served_line_by_line(raw: &[u8], body_lines: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_body = false;
        let mut body_left = body_lines;
        let mut rest = raw;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if in_body && let Some(left) = &mut body_left {
                if *left == 0 {
                    break;
                }
                *left -= 1;
            }
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            if !in_body && line.is_empty() {
                in_body = true;
            }
            rest = next;
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    proptest::proptest! {
        #[test]
        fn copying_in_runs_matches_line_by_line(
            raw in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'.'),
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'a'),
                ],
                0..80,
            ),
            body_lines in proptest::option::of(0u32..4),
        ) {
            proptest::prop_assert_eq!(
                served(&raw, body_lines),
                served_line_by_line(&raw, body_lines)
            );
        }

        /// Undoing the dot-stuffing of a served message gives the message with CRLF line
        /// endings back, and the served body never contains a premature terminator.
        #[test]
        fn served_message_round_trips(raw in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b'.'),
                proptest::strategy::Just(b'\r'),
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b'a'),
            ],
            0..64,
        )) {
            let out = served(&raw, None);
            let body = &out[..out.len() - 3];
            proptest::prop_assert!(out.ends_with(b".\r\n"));
            let mut unstuffed = Vec::new();
            for line in body.split_inclusive(|&b| b == b'\n') {
                proptest::prop_assert!(line.ends_with(b"\r\n"));
                proptest::prop_assert_ne!(line, &b".\r\n"[..]);
                unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            }
            proptest::prop_assert_eq!(unstuffed.len() as u64, crlf_size(&raw));
            let mut normalized = Vec::new();
            for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
                let last = i == raw.split(|&b| b == b'\n').count() - 1;
                if last && line.is_empty() {
                    break;
                }
                normalized.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                normalized.extend_from_slice(b"\r\n");
            }
            proptest::prop_assert_eq!(unstuffed, normalized);
        }
    }
}

//! SMTP command lines (RFC 5321 section 4.1) and the ESMTP parameters sealmail supports:
//! SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030), AUTH (RFC 4954),
//! DSN (RFC 3461: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT).

/// Longest command line accepted, CRLF included. RFC 5321 4.5.3.1.4 sets 512 octets; RFC 1870
/// and RFC 6531 let parameters and UTF-8 addresses add to it, so we allow four times that.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Longest chunk size a `BDAT` may announce; larger numbers are a syntax error, not a request.
const MAX_BDAT_DIGITS: usize = 19;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ehlo = "EHLO" SP ( Domain / address-literal ) CRLF`
    Ehlo(String),
    /// `helo = "HELO" SP Domain CRLF`
    Helo(String),
    /// `mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF`
    Mail {
        /// Empty for the null reverse-path `<>` (bounces).
        from: String,
        params: MailParams,
    },
    /// `rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path ) ...`
    Rcpt {
        to: String,
        params: RcptParams,
    },
    Data,
    /// `bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF` (RFC 3030)
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `"AUTH" SP sasl-mech [SP initial-response]` (RFC 4954)
    Auth {
        mechanism: AuthMechanism,
        initial_response: Option<String>,
    },
}

/// SASL mechanisms offered on submission. Both need TLS (or loopback): they send the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

/// `BODY=` of MAIL FROM (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// The MAIL FROM parameters we understand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=` the client's estimate of the message size (RFC 1870).
    pub size: Option<u64>,
    pub body: Body,
    /// `SMTPUTF8`: addresses and headers may be UTF-8 (RFC 6531).
    pub smtputf8: bool,
    /// `RET=`: what a failure DSN returns of the message (RFC 3461 4.3).
    pub ret: Option<DsnReturn>,
    /// `ENVID=`: the sender's id for the transaction, echoed in DSNs, in its xtext form
    /// (RFC 3461 4.4).
    pub envid: Option<String>,
}

/// `ret-value = "FULL" / "HDRS"` (RFC 3461 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    Full,
    Headers,
}

/// The RCPT TO parameters we understand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=`; `None` when absent (the default: failures are reported).
    pub notify: Option<DsnNotify>,
    /// `ORCPT=addr-type;xtext`, kept in that form for the DSN's Original-Recipient field
    /// (RFC 3461 4.2).
    pub orcpt: Option<String>,
}

/// `notify-esmtp-value = "NEVER" / 1#notify-list-element` with
/// `notify-list-element = "SUCCESS" / "FAILURE" / "DELAY"` (RFC 3461 4.1). NEVER is all false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsnNotify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl DsnNotify {
    /// The parameter's value as it goes on a relayed RCPT: `NEVER` or the list.
    pub fn esmtp_value(&self) -> String {
        let listed: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if listed.is_empty() {
            "NEVER".into()
        } else {
            listed.join(",")
        }
    }
}

/// Longest ENVID (RFC 3461 4.4: 100 characters).
const MAX_ENVID: usize = 100;
/// Longest ORCPT value (RFC 3461 4.2: 500 characters).
const MAX_ORCPT: usize = 500;

/// Why a command line was refused, each with its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command not recognized")]
    Unrecognized,
    #[error("command not implemented")]
    NotImplemented,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
    #[error("unsupported authentication mechanism")]
    UnsupportedMechanism,
}

impl Command {
    /// Parse one command line, without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("not UTF-8"))?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(CommandError::Syntax("control character in command"));
        }
        let (verb, rest) = match line.find(' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, ""),
        };
        let no_argument = |command: Command| {
            if rest.trim().is_empty() {
                Ok(command)
            } else {
                Err(CommandError::Syntax("this command takes no argument"))
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => Ok(Command::Ehlo(domain_argument(rest)?)),
            "HELO" => Ok(Command::Helo(domain_argument(rest)?)),
            "MAIL" => {
                let rest = strip_keyword(rest, "FROM:")?;
                let (from, params) = parse_path(rest, true)?;
                Ok(Command::Mail {
                    from,
                    params: parse_mail_params(params)?,
                })
            }
            "RCPT" => {
                let rest = strip_keyword(rest, "TO:")?;
                let (to, params) = parse_path(rest, false)?;
                Ok(Command::Rcpt {
                    to,
                    params: parse_rcpt_params(params)?,
                })
            }
            "DATA" => no_argument(Command::Data),
            "BDAT" => parse_bdat(rest),
            "RSET" => no_argument(Command::Rset),
            // RFC 5321 4.1.1.9: NOOP may carry a string, which is ignored.
            "NOOP" => Ok(Command::Noop),
            "QUIT" => no_argument(Command::Quit),
            "VRFY" => Ok(Command::Vrfy),
            "EXPN" => Ok(Command::Expn),
            "HELP" => Ok(Command::Help),
            "STARTTLS" => no_argument(Command::StartTls),
            "AUTH" => parse_auth(rest),
            "TURN" | "ETRN" | "SEND" | "SOML" | "SAML" => Err(CommandError::NotImplemented),
            _ => Err(CommandError::Unrecognized),
        }
    }
}

fn domain_argument(rest: &str) -> Result<String, CommandError> {
    let domain = rest.trim();
    if domain.is_empty() {
        return Err(CommandError::Syntax(
            "a domain or address literal is required",
        ));
    }
    if domain.contains(char::is_whitespace) || domain.len() > 255 {
        return Err(CommandError::Syntax("invalid domain"));
    }
    Ok(domain.to_string())
}

/// `FROM:` / `TO:` case-insensitively, then optional spaces (RFC 5321 forbids them, but many
/// clients send `MAIL FROM: <a@b>` and refusing them helps nobody).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Result<&'a str, CommandError> {
    let head = rest
        .get(..keyword.len())
        .filter(|head| head.eq_ignore_ascii_case(keyword))
        .ok_or(CommandError::Syntax(
            "expected FROM:<address> or TO:<address>",
        ))?;
    Ok(rest[head.len()..].trim_start())
}

/// `Path = "<" [ A-d-l ":" ] Mailbox ">"`: the mailbox (source route dropped, RFC 5321
/// 4.1.1.3) and what follows the closing bracket. `<>` is allowed only as a reverse-path.
fn parse_path(input: &str, reverse: bool) -> Result<(String, &str), CommandError> {
    let inner = input
        .strip_prefix('<')
        .ok_or(CommandError::Syntax("address must be enclosed in <>"))?;
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (index, c) in inner.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '>' {
            end = Some(index);
            break;
        }
    }
    let end = end.ok_or(CommandError::Syntax("missing > after the address"))?;
    let mut mailbox = &inner[..end];
    let rest = &inner[end + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax("expected a space after the address"));
    }
    if mailbox.starts_with('@') {
        let colon = mailbox
            .find(':')
            .ok_or(CommandError::Syntax("malformed source route"))?;
        mailbox = &mailbox[colon + 1..];
    }
    if mailbox.is_empty() && !reverse {
        return Err(CommandError::Syntax("empty recipient address"));
    }
    if !mailbox.is_empty() && !mailbox.contains('@') {
        return Err(CommandError::Syntax("address must be local-part@domain"));
    }
    if mailbox.contains(char::is_whitespace) && !mailbox.starts_with('"') {
        return Err(CommandError::Syntax("space in address"));
    }
    Ok((mailbox.to_string(), rest))
}

fn parse_rcpt_params(params: &str) -> Result<RcptParams, CommandError> {
    let mut parsed = RcptParams::default();
    for param in params.split_ascii_whitespace() {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (param.to_ascii_uppercase(), None),
        };
        match (keyword.as_str(), value) {
            ("NOTIFY", Some(value)) if parsed.notify.is_none() => {
                parsed.notify = Some(parse_notify(value)?);
            }
            ("ORCPT", Some(value)) if parsed.orcpt.is_none() => {
                let (addr_type, address) = value
                    .split_once(';')
                    .ok_or(CommandError::Syntax("ORCPT must be addr-type;address"))?;
                let atom_ok = !addr_type.is_empty()
                    && addr_type
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !atom_ok || value.len() > MAX_ORCPT || !is_xtext(address) || address.is_empty() {
                    return Err(CommandError::Syntax("malformed ORCPT"));
                }
                parsed.orcpt = Some(value.to_string());
            }
            ("NOTIFY" | "ORCPT", _) => {
                return Err(CommandError::Syntax(
                    "NOTIFY and ORCPT take one value, once",
                ));
            }
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    Ok(parsed)
}

fn parse_notify(value: &str) -> Result<DsnNotify, CommandError> {
    if value.eq_ignore_ascii_case("NEVER") {
        return Ok(DsnNotify::default());
    }
    let mut notify = DsnNotify::default();
    for element in value.split(',') {
        let flag = match element.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut notify.success,
            "FAILURE" => &mut notify.failure,
            "DELAY" => &mut notify.delay,
            _ => {
                return Err(CommandError::Syntax(
                    "NOTIFY is NEVER or a list of SUCCESS, FAILURE, DELAY",
                ));
            }
        };
        *flag = true;
    }
    Ok(notify)
}

/// `xtext = *( xchar / hexchar )`: printable ASCII but `+` and `=`, and `+` followed by two
/// upper-case hex digits (RFC 3461 4).
fn is_xtext(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex =
                    |b: Option<&u8>| b.is_some_and(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
                if !(hex(bytes.get(i + 1)) && hex(bytes.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if bytes[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

fn parse_mail_params(params: &str) -> Result<MailParams, CommandError> {
    let mut parsed = MailParams::default();
    for param in params.split_ascii_whitespace() {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (param.to_ascii_uppercase(), None),
        };
        match (keyword.as_str(), value) {
            ("SIZE", Some(value)) => {
                if value.is_empty()
                    || value.len() > 20
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(CommandError::Syntax("SIZE must be a number"));
                }
                // Overflowing u64 means "too large" anyway.
                parsed.size = Some(value.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("7BIT") => {
                parsed.body = Body::SevenBit;
            }
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("8BITMIME") => {
                parsed.body = Body::EightBitMime;
            }
            ("SMTPUTF8", None) => parsed.smtputf8 = true,
            // RFC 4954 5: AUTH=<mailbox> is informational; we record nothing from it.
            ("AUTH", Some(_)) => {}
            ("RET", Some(value)) if parsed.ret.is_none() => {
                parsed.ret = Some(match value.to_ascii_uppercase().as_str() {
                    "FULL" => DsnReturn::Full,
                    "HDRS" => DsnReturn::Headers,
                    _ => return Err(CommandError::Syntax("RET is FULL or HDRS")),
                });
            }
            ("ENVID", Some(value)) if parsed.envid.is_none() => {
                if value.is_empty() || value.len() > MAX_ENVID || !is_xtext(value) {
                    return Err(CommandError::Syntax("malformed ENVID"));
                }
                parsed.envid = Some(value.to_string());
            }
            ("RET" | "ENVID", _) => {
                return Err(CommandError::Syntax("RET and ENVID take one value, once"));
            }
            _ => return Err(CommandError::UnsupportedParameter(keyword)),
        }
    }
    Ok(parsed)
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split_ascii_whitespace();
    let size = words
        .next()
        .filter(|w| {
            !w.is_empty() && w.len() <= MAX_BDAT_DIGITS && w.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or(CommandError::Syntax("BDAT needs a chunk size"))?
        .parse()
        .map_err(|_| CommandError::Syntax("chunk size too large"))?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax("expected LAST after the chunk size")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many BDAT arguments"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split_ascii_whitespace();
    let mechanism = match words.next() {
        Some(m) if m.eq_ignore_ascii_case("PLAIN") => AuthMechanism::Plain,
        Some(m) if m.eq_ignore_ascii_case("LOGIN") => AuthMechanism::Login,
        Some(_) => return Err(CommandError::UnsupportedMechanism),
        None => return Err(CommandError::Syntax("AUTH needs a mechanism")),
    };
    let initial_response = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many AUTH arguments"));
    }
    Ok(Command::Auth {
        mechanism,
        initial_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CommandError> {
        Command::parse(line.as_bytes())
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            parse("ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse("HELO [127.0.0.1]"),
            Ok(Command::Helo("[127.0.0.1]".into()))
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8"),
            Ok(Command::Mail {
                from: "a@b.example".into(),
                params: MailParams {
                    size: Some(1000),
                    body: Body::EightBitMime,
                    smtputf8: true,
                    ..MailParams::default()
                }
            })
        );
        assert_eq!(
            parse("mail from: <>"),
            Ok(Command::Mail {
                from: String::new(),
                params: MailParams::default()
            })
        );
        assert_eq!(
            parse("RCPT TO:<@relay.example:user@d.example>"),
            Ok(Command::Rcpt {
                to: "user@d.example".into(),
                params: RcptParams::default()
            })
        );
        assert_eq!(
            parse("RCPT TO:<\"odd > name\"@d.example>"),
            Ok(Command::Rcpt {
                to: "\"odd > name\"@d.example".into(),
                params: RcptParams::default()
            })
        );
        assert_eq!(
            parse("BDAT 42 LAST"),
            Ok(Command::Bdat {
                size: 42,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert_eq!(parse("NOOP anything"), Ok(Command::Noop));
        assert_eq!(
            parse("AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial_response: Some("AGEAYg==".into())
            })
        );
    }

    #[test]
    fn dsn_parameters_rfc_3461() {
        let Ok(Command::Mail { params, .. }) = parse("MAIL FROM:<a@b> RET=hdrs ENVID=QQ314159+2Bx")
        else {
            panic!("MAIL with RET and ENVID refused");
        };
        assert_eq!(params.ret, Some(DsnReturn::Headers));
        assert_eq!(params.envid.as_deref(), Some("QQ314159+2Bx"));
        assert_eq!(
            parse("RCPT TO:<a@b> NOTIFY=SUCCESS,failure ORCPT=rfc822;Bob+40b"),
            Ok(Command::Rcpt {
                to: "a@b".into(),
                params: RcptParams {
                    notify: Some(DsnNotify {
                        success: true,
                        failure: true,
                        delay: false
                    }),
                    orcpt: Some("rfc822;Bob+40b".into()),
                }
            })
        );
        assert_eq!(
            parse("RCPT TO:<a@b> NOTIFY=NEVER"),
            Ok(Command::Rcpt {
                to: "a@b".into(),
                params: RcptParams {
                    notify: Some(DsnNotify::default()),
                    orcpt: None,
                }
            })
        );
        for bad in [
            "MAIL FROM:<a@b> RET=BODY",
            "MAIL FROM:<a@b> RET=FULL RET=HDRS",
            "MAIL FROM:<a@b> ENVID=a=b",
            "MAIL FROM:<a@b> ENVID=a+2g",
            "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<a@b> NOTIFY=",
            "RCPT TO:<a@b> ORCPT=b@c",
            "RCPT TO:<a@b> ORCPT=rfc822;",
            "RCPT TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY",
        ] {
            assert!(
                matches!(parse(bad), Err(CommandError::Syntax(_))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        assert!(!is_xtext("a b") && is_xtext("a+20b"));
        assert!(matches!(
            parse(&format!(
                "MAIL FROM:<a@b> ENVID={}",
                "x".repeat(MAX_ENVID + 1)
            )),
            Err(CommandError::Syntax(_))
        ));
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(parse("FOO"), Err(CommandError::Unrecognized));
        assert_eq!(parse("TURN"), Err(CommandError::NotImplemented));
        assert!(matches!(parse("EHLO"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse("MAIL FROM:a@b"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL TO:<a@b>"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse("RCPT TO:<>"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse("RCPT TO:<nobody>"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b>x"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b> SIZE=x"),
            Err(CommandError::Syntax(_))
        ));
        assert_eq!(
            parse("MAIL FROM:<a@b> MT-PRIORITY=3"),
            Err(CommandError::UnsupportedParameter("MT-PRIORITY".into()))
        );
        assert_eq!(
            parse("RCPT TO:<a@b> FOO=1"),
            Err(CommandError::UnsupportedParameter("FOO".into()))
        );
        assert!(matches!(parse("BDAT"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse("BDAT 99999999999999999999"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("BDAT 1 FIRST"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse("DATA now"), Err(CommandError::Syntax(_))));
        assert_eq!(
            parse("AUTH CRAM-MD5"),
            Err(CommandError::UnsupportedMechanism)
        );
        assert!(matches!(
            Command::parse(b"HELO \xff"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            Command::parse(b"HELO a\0b"),
            Err(CommandError::Syntax(_))
        ));
    }

    #[test]
    fn size_overflow_saturates() {
        let Ok(Command::Mail { params, .. }) = parse("MAIL FROM:<a@b> SIZE=99999999999999999999")
        else {
            panic!("expected MAIL");
        };
        assert_eq!(params.size, Some(u64::MAX));
    }
}

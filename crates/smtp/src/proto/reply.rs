//! Reply encoding (RFC 5321 4.2, enhanced status codes RFC 3463 / RFC 2034).

/// One reply: a code, an optional enhanced status code, and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`, e.g. `2.1.5`. RFC 2034 leaves it off greetings and EHLO/HELO.
    pub status: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO, HELO, AUTH challenges).
    pub fn plain(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// `Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF`
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let count = self.lines.len().max(1);
        for index in 0..count {
            let text = self.lines.get(index).map(String::as_str).unwrap_or("");
            let separator = if index + 1 == count { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{separator}", self.code).as_bytes());
            if let Some(status) = self.status {
                out.extend_from_slice(status.as_bytes());
                out.push(b' ');
            }
            // A reply line never carries CR or LF from its text: a client-chosen string in a
            // reply must not be able to forge another reply.
            out.extend(text.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply) -> String {
        let mut out = Vec::new();
        reply.encode_into(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_and_multiline() {
        assert_eq!(encoded(&Reply::new(250, "2.0.0", "OK")), "250 2.0.0 OK\r\n");
        assert_eq!(
            encoded(&Reply::plain(
                250,
                vec!["mx greets you".into(), "PIPELINING".into()]
            )),
            "250-mx greets you\r\n250 PIPELINING\r\n"
        );
        assert_eq!(encoded(&Reply::plain(334, vec![String::new()])), "334 \r\n");
    }

    #[test]
    fn line_breaks_in_text_cannot_forge_replies() {
        let reply = Reply::new(501, "5.5.4", "bad\r\n250 OK");
        assert_eq!(encoded(&reply), "501 5.5.4 bad250 OK\r\n");
    }
}

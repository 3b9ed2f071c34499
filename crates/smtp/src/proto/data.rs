//! Message text: `DATA` reception with dot-unstuffing (RFC 5321 4.5.2), `BDAT` chunks
//! (RFC 3030), and the checks every received message passes before it is stored.

/// Longest text line, CRLF included (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// What is wrong with a received message. Checked after the whole message arrived, so the
/// client's stream stays in sync and the reply says what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageDefect {
    #[error("message exceeds the size limit")]
    TooLarge,
    #[error("message contains a NUL octet")]
    Nul,
    /// A LF without CR, or a CR without LF. Refused (not repaired) so that no other server
    /// can be made to see a different end of data than we do (SMTP smuggling).
    #[error("message contains a bare CR or LF")]
    BareLineBreak,
    #[error("message has a line longer than 1000 octets")]
    LineTooLong,
}

/// Receives the text after `354` until `CRLF . CRLF`, undoing dot-stuffing. Memory stays
/// bounded: beyond `limit` bytes the text is read and dropped, and a line too long to be valid
/// is consumed in pieces rather than buffered whole.
#[derive(Debug)]
pub struct DataReceiver {
    message: Vec<u8>,
    limit: usize,
    too_large: bool,
    /// The previous piece ended a line with CRLF: the next byte starts a line, where a dot is
    /// either stuffing or the end marker.
    at_line_start: bool,
}

/// What [`DataReceiver::feed`] did with the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    pub consumed: usize,
    pub finished: bool,
}

impl DataReceiver {
    pub fn new(limit: usize) -> Self {
        DataReceiver {
            message: Vec::new(),
            limit,
            too_large: false,
            at_line_start: true,
        }
    }

    /// Take as much of `input` as forms whole lines (or a piece of an over-long line). Returns
    /// how many bytes were used and whether the end-of-data line was seen; the rest of the
    /// input belongs to the next command.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let line = match rest.iter().position(|b| *b == b'\n') {
                Some(lf) => &rest[..=lf],
                None if rest.len() > MAX_TEXT_LINE => {
                    // Hopelessly long already: take it now, minus a trailing CR that may
                    // belong to the CRLF arriving next.
                    let take = if rest.ends_with(b"\r") {
                        rest.len() - 1
                    } else {
                        rest.len()
                    };
                    // The piece stays in the message, where the final check finds the line
                    // too long; its remainder does not start a fresh line.
                    self.append(&rest[..take]);
                    consumed += take;
                    self.at_line_start = false;
                    return Fed {
                        consumed,
                        finished: false,
                    };
                }
                None => break,
            };
            consumed += line.len();
            if self.at_line_start && line == b".\r\n" {
                return Fed {
                    consumed,
                    finished: true,
                };
            }
            let text = if self.at_line_start && line.first() == Some(&b'.') {
                &line[1..]
            } else {
                line
            };
            self.append(text);
            self.at_line_start = line.ends_with(b"\r\n");
        }
        Fed {
            consumed,
            finished: false,
        }
    }

    fn append(&mut self, text: &[u8]) {
        if self.too_large {
            return;
        }
        if self.message.len() + text.len() > self.limit {
            self.too_large = true;
            self.message = Vec::new();
            return;
        }
        self.message.extend_from_slice(text);
    }

    /// The received message, or why it cannot be accepted.
    pub fn finish(self) -> Result<Vec<u8>, MessageDefect> {
        if self.too_large {
            return Err(MessageDefect::TooLarge);
        }
        check_message_text(&self.message)?;
        Ok(self.message)
    }
}

/// Collects `BDAT` chunks of one transaction (RFC 3030), bounded by `limit`.
#[derive(Debug)]
pub struct ChunkCollector {
    message: Vec<u8>,
    limit: usize,
    too_large: bool,
}

impl ChunkCollector {
    pub fn new(limit: usize) -> Self {
        ChunkCollector {
            message: Vec::new(),
            limit,
            too_large: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.too_large {
            return;
        }
        if self.message.len() + bytes.len() > self.limit {
            self.too_large = true;
            self.message = Vec::new();
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    pub fn is_too_large(&self) -> bool {
        self.too_large
    }

    pub fn finish(self) -> Result<Vec<u8>, MessageDefect> {
        if self.too_large {
            return Err(MessageDefect::TooLarge);
        }
        check_message_text(&self.message)?;
        Ok(self.message)
    }
}

/// The rules every stored message follows, however it arrived: no NUL (we offer no
/// BINARYMIME), CRLF line endings only, lines of at most 1000 octets with their CRLF.
pub fn check_message_text(message: &[u8]) -> Result<(), MessageDefect> {
    let mut line_len = 0usize;
    let mut defect = None;
    for (index, &byte) in message.iter().enumerate() {
        match byte {
            0 => return Err(MessageDefect::Nul),
            b'\r' if message.get(index + 1) != Some(&b'\n') => {
                return Err(MessageDefect::BareLineBreak);
            }
            b'\n' if index == 0 || message[index - 1] != b'\r' => {
                return Err(MessageDefect::BareLineBreak);
            }
            b'\n' => line_len = 0,
            b'\r' => {}
            _ => {
                line_len += 1;
                // +2 for the CRLF that ends the line.
                if line_len + 2 > MAX_TEXT_LINE {
                    defect = Some(MessageDefect::LineTooLong);
                }
            }
        }
    }
    match defect {
        Some(defect) => Err(defect),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(chunks: &[&[u8]], limit: usize) -> (Result<Vec<u8>, MessageDefect>, Vec<u8>) {
        let mut receiver = DataReceiver::new(limit);
        let mut pending = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            let fed = receiver.feed(&pending);
            pending.drain(..fed.consumed);
            if fed.finished {
                return (receiver.finish(), pending);
            }
        }
        panic!("end of data not seen; left {pending:?}");
    }

    #[test]
    fn dot_unstuffing_and_end_marker() {
        let (message, rest) = receive(&[b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"], 100);
        assert_eq!(message.unwrap(), b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(rest, b"QUIT\r\n", "pipelined command after the data stays");
    }

    #[test]
    fn end_marker_split_across_reads() {
        let (message, _) = receive(&[b"a\r\n", b".", b"\r", b"\n"], 100);
        assert_eq!(message.unwrap(), b"a\r\n");
    }

    #[test]
    fn bare_lf_dot_is_not_the_end() {
        // "\n.\n" and "\n.\r\n" must not end the data: only CRLF . CRLF does.
        let (message, _) = receive(&[b"a\n.\r\nb\r\n.\n.\r\n", b"c\r\n.\r\n"], 100);
        assert_eq!(message, Err(MessageDefect::BareLineBreak));
    }

    #[test]
    fn oversized_message_is_drained_and_refused() {
        let (message, rest) = receive(&[b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n"], 15);
        assert_eq!(message, Err(MessageDefect::TooLarge));
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[test]
    fn long_line_is_consumed_in_pieces_then_refused() {
        let long = vec![b'x'; 5000];
        let mut receiver = DataReceiver::new(1 << 20);
        let fed = receiver.feed(&long);
        assert_eq!(fed.consumed, 5000, "no unbounded buffering of a line");
        let mut tail = b"\r".to_vec();
        let fed = receiver.feed(&tail);
        assert_eq!(fed.consumed, 0, "a lone CR waits for its LF");
        tail.extend_from_slice(b"\n.\r\n");
        let fed = receiver.feed(&tail);
        assert!(fed.finished);
        assert_eq!(receiver.finish(), Err(MessageDefect::LineTooLong));
    }

    #[test]
    fn message_text_rules() {
        assert_eq!(check_message_text(b"a\r\nb\r\n"), Ok(()));
        assert_eq!(check_message_text(b"a\0\r\n"), Err(MessageDefect::Nul));
        assert_eq!(
            check_message_text(b"a\nb\r\n"),
            Err(MessageDefect::BareLineBreak)
        );
        assert_eq!(
            check_message_text(b"a\rb\r\n"),
            Err(MessageDefect::BareLineBreak)
        );
        let mut ok = vec![b'x'; 998];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(check_message_text(&ok), Ok(()));
        let mut long = vec![b'x'; 999];
        long.extend_from_slice(b"\r\n");
        assert_eq!(check_message_text(&long), Err(MessageDefect::LineTooLong));
    }

    #[test]
    fn chunks_are_bounded() {
        let mut chunks = ChunkCollector::new(4);
        chunks.push(b"ab");
        chunks.push(b"cd");
        assert!(!chunks.is_too_large());
        chunks.push(b"e");
        assert!(chunks.is_too_large());
        assert_eq!(chunks.finish(), Err(MessageDefect::TooLarge));
    }
}

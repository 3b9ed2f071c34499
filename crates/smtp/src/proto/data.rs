//! Message text: `DATA` reception with dot-unstuffing (RFC 5321 4.5.2), `BDAT` chunks
//! (RFC 3030), and the checks every received message passes before it is stored.

/// Longest text line, CRLF included (RFC 5321 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// Room kept after a message's announced size for the trace fields delivery puts in front
/// of it (`Received:`, `Authentication-Results:`): adding them then moves the text within its
/// buffer rather than into a new one.
pub const TRACE_HEADROOM: usize = 1024;

/// The most a client's `SIZE=` estimate reserves in advance. A larger message grows its
/// buffer as it arrives, so a false estimate ties up no more than this per connection.
pub const MAX_RESERVED: usize = 1 << 20;

/// The buffer to start a message in: sized for the client's `SIZE=` estimate when it sent
/// one (within `limit` and [`MAX_RESERVED`]), so the text is not copied as the buffer grows.
fn message_buffer(limit: usize, size_hint: Option<u64>) -> Vec<u8> {
    match size_hint {
        Some(size) => Vec::with_capacity(
            usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(limit)
                .min(MAX_RESERVED)
                + TRACE_HEADROOM,
        ),
        None => Vec::new(),
    }
}

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
        DataReceiver::with_size_hint(limit, None)
    }

    /// A receiver whose buffer starts at the client's `SIZE=` estimate.
    pub fn with_size_hint(limit: usize, size_hint: Option<u64>) -> Self {
        DataReceiver {
            message: message_buffer(limit, size_hint),
            limit,
            too_large: false,
            at_line_start: true,
        }
    }

    /// Take as much of `input` as forms whole lines (or a piece of an over-long line). Returns
    /// how many bytes were used and whether the end-of-data line was seen; the rest of the
    /// input belongs to the next command.
    ///
    /// Runs of whole lines that start with no dot are copied in one piece: only the lines that
    /// start with a dot (stuffing, or the end marker) are looked at one by one.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            if self.at_line_start && rest[0] == b'.' {
                let Some(lf) = memchr::memchr(b'\n', rest) else {
                    if rest.len() > MAX_TEXT_LINE {
                        consumed += self.take_long_line_piece(rest);
                    }
                    break;
                };
                let line = &rest[..=lf];
                consumed += line.len();
                if line == b".\r\n" {
                    return Fed {
                        consumed,
                        finished: true,
                    };
                }
                self.append(&line[1..]);
                self.at_line_start = line.ends_with(b"\r\n");
                continue;
            }
            let Some(last_lf) = memchr::memrchr(b'\n', rest) else {
                if rest.len() > MAX_TEXT_LINE {
                    consumed += self.take_long_line_piece(rest);
                }
                break;
            };
            let lines = &rest[..=last_lf];
            // Up to (not into) the next line that starts with a dot after a CRLF.
            let (run, next_starts_line) = match memchr::memmem::find(lines, b"\r\n.") {
                Some(crlf) => (&lines[..crlf + 2], true),
                None => (lines, lines.ends_with(b"\r\n")),
            };
            self.append(run);
            consumed += run.len();
            self.at_line_start = next_starts_line;
        }
        Fed {
            consumed,
            finished: false,
        }
    }

    /// Take a piece of a line already too long to be valid, with no LF in sight, so it is not
    /// buffered whole; returns how many bytes were taken.
    fn take_long_line_piece(&mut self, rest: &[u8]) -> usize {
        // Minus a trailing CR that may belong to the CRLF arriving next.
        let take = if rest.ends_with(b"\r") {
            rest.len() - 1
        } else {
            rest.len()
        };
        // The piece stays in the message, where the final check finds the line too long; its
        // remainder does not start a fresh line.
        self.append(&rest[..take]);
        self.at_line_start = false;
        take
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
        ChunkCollector::with_size_hint(limit, None)
    }

    /// A collector whose buffer starts at the client's `SIZE=` estimate.
    pub fn with_size_hint(limit: usize, size_hint: Option<u64>) -> Self {
        ChunkCollector {
            message: message_buffer(limit, size_hint),
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
/// BINARYMIME), CRLF line endings only, lines of at most 1000 octets with their CRLF. A NUL or
/// a bare CR/LF is reported before a long line, the earliest of them first.
pub fn check_message_text(message: &[u8]) -> Result<(), MessageDefect> {
    let first_nul = memchr::memchr(0, message);
    let mut first_bare = None;
    let mut too_long = false;
    let mut line_start = 0;
    let mut line_feeds = 0usize;
    for lf in memchr::memchr_iter(b'\n', message) {
        if lf == 0 || message[lf - 1] != b'\r' {
            first_bare = Some(lf);
            break;
        }
        line_feeds += 1;
        // The line with its CRLF.
        too_long |= lf + 1 - line_start > MAX_TEXT_LINE;
        line_start = lf + 1;
    }
    if first_bare.is_none() {
        // Every LF has its CR: any other CR is bare. The last line has no CRLF of its own but
        // is held to the same limit as if it had one.
        if memchr::memchr_iter(b'\r', message).count() != line_feeds {
            first_bare = message
                .iter()
                .enumerate()
                .position(|(i, &b)| b == b'\r' && message.get(i + 1) != Some(&b'\n'));
        }
        too_long |= message.len() - line_start + 2 > MAX_TEXT_LINE;
    } else if let Some(lf) = first_bare {
        // A bare CR before the bare LF comes first.
        if let Some(cr) = message[..lf]
            .iter()
            .enumerate()
            .position(|(i, &b)| b == b'\r' && message.get(i + 1) != Some(&b'\n'))
        {
            first_bare = Some(cr);
        }
    }
    match (first_nul, first_bare) {
        (Some(nul), Some(bare)) if bare < nul => Err(MessageDefect::BareLineBreak),
        (Some(_), _) => Err(MessageDefect::Nul),
        (None, Some(_)) => Err(MessageDefect::BareLineBreak),
        (None, None) if too_long => Err(MessageDefect::LineTooLong),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_estimate_reserves_the_message_and_trace_room_within_bounds() {
        let mut receiver = DataReceiver::with_size_hint(1 << 30, Some(5000));
        assert!(receiver.message.capacity() >= 5000 + TRACE_HEADROOM);
        let fed = receiver.feed(b"Subject: a\r\n\r\nbody\r\n.\r\n");
        assert!(fed.finished);
        assert_eq!(receiver.finish().unwrap(), b"Subject: a\r\n\r\nbody\r\n");
        // A lie costs at most MAX_RESERVED, and never more than the limit allows.
        let huge = ChunkCollector::with_size_hint(1 << 30, Some(u64::MAX));
        assert!(huge.message.capacity() <= MAX_RESERVED + TRACE_HEADROOM);
        let small_limit = DataReceiver::with_size_hint(100, Some(1 << 20));
        assert!(small_limit.message.capacity() <= 100 + TRACE_HEADROOM);
        assert_eq!(DataReceiver::new(1 << 20).message.capacity(), 0);
    }

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

    /// The byte-at-a-time definition of [`check_message_text`]'s rules.
    fn check_byte_by_byte(message: &[u8]) -> Result<(), MessageDefect> {
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
                    if line_len + 2 > MAX_TEXT_LINE {
                        defect = Some(MessageDefect::LineTooLong);
                    }
                }
            }
        }
        defect.map_or(Ok(()), Err)
    }

    /// Messages built from pieces that exercise every rule, in many orders.
    fn tricky_messages() -> Vec<Vec<u8>> {
        let pieces: [&[u8]; 9] = [
            b"text\r\n",
            b".dot\r\n",
            b"..two\r\n",
            b"\r\n",
            b"bare\nlf\r\n",
            b"bare\rcr\r\n",
            b"nul\0\r\n",
            b".\n",
            b"\r\r\n",
        ];
        let long = [vec![b'y'; 998], b"\r\n".to_vec()].concat();
        let longer = [vec![b'z'; 999], b"\r\n".to_vec()].concat();
        let mut state = 0x2545_f491_u32;
        let mut messages = Vec::new();
        for _ in 0..400 {
            let mut message = Vec::new();
            for _ in 0..6 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match state % 12 {
                    9 => message.extend_from_slice(&long),
                    10 => message.extend_from_slice(&longer),
                    11 => message.push(b'x'),
                    n => message.extend_from_slice(pieces[n as usize]),
                }
            }
            messages.push(message);
        }
        messages
    }

    #[test]
    fn message_text_rules_match_the_byte_by_byte_definition() {
        for message in tricky_messages() {
            assert_eq!(
                check_message_text(&message),
                check_byte_by_byte(&message),
                "{:?}",
                String::from_utf8_lossy(&message)
            );
        }
    }

    #[test]
    fn received_text_does_not_depend_on_how_reads_split_it() {
        for body in tricky_messages() {
            let mut wire = body.clone();
            wire.extend_from_slice(b"\r\n.\r\nNEXT\r\n");
            let (whole, rest) = receive(&[&wire], 1 << 20);
            assert_eq!(rest, b"NEXT\r\n", "the end marker ends the text");
            // (`receive` stops at the end marker: later pieces are never pushed.)
            for size in [1, 2, 7, 1000] {
                let pieces: Vec<&[u8]> = wire.chunks(size).collect();
                assert_eq!(receive(&pieces, 1 << 20).0, whole, "read size {size}");
            }
        }
        // Dot-stuffing undone on every line that has it, whatever the split.
        let (message, rest) = receive(&[b"a\r\n..b\r\n.", b".c\r\n", b".\r\nX"], 100);
        assert_eq!(message.unwrap(), b"a\r\n.b\r\n.c\r\n");
        assert_eq!(rest, b"X");
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

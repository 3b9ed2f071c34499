//! Framing: split the client's byte stream into complete commands, literals included, with hard
//! bounds so a client can never make the server buffer more than the configured limits.
//!
//! `literal = "{" number64 ["+"] "}" CRLF *CHAR8` (RFC 9051, LITERAL+ from RFC 7888) and
//! `literal8 = "~{" number64 "}" CRLF *OCTET` (RFC 3516). A line that ends in a literal
//! announcement continues after the literal's bytes; a command ends at the first line that does
//! not. Synchronising literals need a `+` continuation from the server before the client sends
//! the data: [`FrameEvent::ContinuationNeeded`] says when.

use super::types::Tag;

/// Size limits of the framing layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line between literals. 10,000 UID ranges of 6-digit numbers need about 140 KB,
    /// which real clients do send (issue #5), so the default is larger than the usual 64 KiB.
    pub max_line: usize,
    /// Largest single literal (an APPENDed message, typically).
    pub max_literal: u64,
    /// Largest whole command, all lines and literals together (MULTIAPPEND).
    pub max_command: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 256 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_command: 128 * 1024 * 1024,
        }
    }
}

/// What the framer found in the input so far.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete command (or a continuation line such as `DONE` or a SASL response), with its
    /// final line ending and all literal bytes in place.
    Command(Vec<u8>),
    /// The client announced a synchronising literal within the limits and waits for `+ ...`.
    ContinuationNeeded,
    /// The command was rejected and discarded; the connection stays usable.
    Error(FrameError),
}

/// A command the framer refused. `tag` is the command's tag when its first bytes held one, so the
/// caller can answer with a tagged `BAD` / `NO`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("command line too long, {discarded} bytes discarded")]
    LineTooLong { tag: Option<Tag>, discarded: u64 },
    /// `synchronizing` literals were never sent (the client waited for `+`), so the caller
    /// answers `NO [TOOBIG]`; non-synchronising ones were read and thrown away.
    #[error("literal of {size} bytes exceeds the limit of {limit} bytes")]
    LiteralTooBig {
        tag: Option<Tag>,
        size: u64,
        limit: u64,
        synchronizing: bool,
    },
}

impl FrameError {
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            FrameError::LineTooLong { tag, .. } | FrameError::LiteralTooBig { tag, .. } => {
                tag.as_ref()
            }
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading a line of the current command; the line started at `line_start` in `command`.
    Line { line_start: usize },
    /// Copying literal bytes into `command`.
    Literal { remaining: u64 },
    /// Throwing away the rest of a refused command: first `literal` bytes, then up to a line
    /// end that announces no further non-synchronising literal.
    Discard {
        literal: u64,
        discarded: u64,
        /// The last bytes of the current discarded line, to spot a literal announcement.
        tail: Vec<u8>,
        error: FrameError,
    },
}

/// Incremental, bounded command framer. Feed bytes with [`Framer::push`], then drain events with
/// [`Framer::next_event`] until it returns `None`.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    input: Vec<u8>,
    read: usize,
    command: Vec<u8>,
    state: State,
}

/// Buffer capacity a connection keeps between commands; larger buffers are freed once drained.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// Bytes kept from a discarded line's end: enough for `~{18446744073709551615+}\r\n`.
const TAIL_KEEP: usize = 32;

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            input: Vec::new(),
            read: 0,
            command: Vec::new(),
            state: State::Line { line_start: 0 },
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Append bytes received from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read > 0 && self.read == self.input.len() {
            self.input.clear();
            self.read = 0;
            // A large APPEND grew the buffer: give the memory back rather than hold it for
            // the rest of a connection that mostly sits idle.
            if self.input.capacity() > RETAINED_CAPACITY {
                self.input = Vec::new();
            }
        } else if self.read > 64 * 1024 && self.read * 2 > self.input.len() {
            self.input.drain(..self.read);
            self.read = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Take the input buffered but not yet framed (after COMPRESS it is compressed data that
    /// belongs to the next layer).
    pub fn take_unread(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.read);
        self.input.clear();
        self.read = 0;
        rest
    }

    /// Whether a command is partly received (for idle timeouts and clean shutdown).
    pub fn is_mid_command(&self) -> bool {
        !self.command.is_empty() || !matches!(self.state, State::Line { .. })
    }

    /// The next event the buffered input allows, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<FrameEvent> {
        loop {
            let available = &self.input[self.read..];
            if available.is_empty() {
                return None;
            }
            match &mut self.state {
                State::Line { line_start } => {
                    let line_start = *line_start;
                    let (chunk, complete) = match memchr_lf(available) {
                        Some(i) => (&available[..=i], true),
                        None => (available, false),
                    };
                    let line_len = self.command.len() - line_start + chunk.len();
                    if line_len > self.limits.max_line {
                        let tag = leading_tag(&self.command, chunk);
                        let discarded = (self.command.len() + chunk.len()) as u64;
                        let tail = keep_tail(&self.command[line_start..], chunk);
                        self.read += chunk.len();
                        self.command.clear();
                        let error = FrameError::LineTooLong { tag, discarded };
                        if complete {
                            match self.finish_discard(discarded, &tail, error) {
                                Some(event) => return Some(event),
                                None => continue,
                            }
                        }
                        self.state = State::Discard {
                            literal: 0,
                            discarded,
                            tail,
                            error,
                        };
                        continue;
                    }
                    self.command.extend_from_slice(chunk);
                    self.read += chunk.len();
                    if !complete {
                        return None;
                    }
                    let line = &self.command[line_start..];
                    match literal_announcement(line) {
                        None => {
                            self.state = State::Line { line_start: 0 };
                            return Some(FrameEvent::Command(std::mem::take(&mut self.command)));
                        }
                        Some(announced) => {
                            let total = self.command.len() as u64;
                            let limit = self
                                .limits
                                .max_literal
                                .min(self.limits.max_command.saturating_sub(total));
                            if announced.size > limit {
                                let tag = leading_tag(&self.command, &[]);
                                let discarded = total;
                                self.command.clear();
                                let error = FrameError::LiteralTooBig {
                                    tag,
                                    size: announced.size,
                                    limit: self.limits.max_literal,
                                    synchronizing: announced.synchronizing,
                                };
                                if announced.synchronizing {
                                    self.state = State::Line { line_start: 0 };
                                    return Some(FrameEvent::Error(error));
                                }
                                self.state = State::Discard {
                                    literal: announced.size,
                                    discarded,
                                    tail: Vec::new(),
                                    error,
                                };
                                continue;
                            }
                            self.state = State::Literal {
                                remaining: announced.size,
                            };
                            if announced.synchronizing {
                                return Some(FrameEvent::ContinuationNeeded);
                            }
                        }
                    }
                }
                State::Literal { remaining } => {
                    let take = (*remaining).min(available.len() as u64) as usize;
                    self.command.extend_from_slice(&available[..take]);
                    self.read += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::Line {
                            line_start: self.command.len(),
                        };
                    }
                }
                State::Discard {
                    literal,
                    discarded,
                    tail,
                    error,
                } => {
                    if *literal > 0 {
                        let take = (*literal).min(available.len() as u64) as usize;
                        self.read += take;
                        *literal -= take as u64;
                        *discarded += take as u64;
                        continue;
                    }
                    match memchr_lf(available) {
                        None => {
                            let len = available.len();
                            let new_tail = keep_tail(tail, available);
                            *tail = new_tail;
                            *discarded += len as u64;
                            self.read += len;
                            return None;
                        }
                        Some(i) => {
                            let chunk_tail = keep_tail(tail, &available[..=i]);
                            let total = *discarded + i as u64 + 1;
                            let error = error.clone();
                            self.read += i + 1;
                            match self.finish_discard(total, &chunk_tail, error) {
                                Some(event) => return Some(event),
                                None => continue,
                            }
                        }
                    }
                }
            }
        }
    }

    /// A discarded line ended: keep discarding through a non-synchronising literal (`None`), or
    /// report the error (a synchronising literal is never sent without our `+`).
    fn finish_discard(
        &mut self,
        discarded: u64,
        tail: &[u8],
        mut error: FrameError,
    ) -> Option<FrameEvent> {
        match literal_announcement(tail) {
            Some(announced) if !announced.synchronizing => {
                self.state = State::Discard {
                    literal: announced.size,
                    discarded,
                    tail: Vec::new(),
                    error,
                };
                None
            }
            _ => {
                if let FrameError::LineTooLong { discarded: d, .. } = &mut error {
                    *d = discarded;
                }
                self.state = State::Line { line_start: 0 };
                Some(FrameEvent::Error(error))
            }
        }
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn keep_tail(previous: &[u8], chunk: &[u8]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(TAIL_KEEP);
    if chunk.len() < TAIL_KEEP {
        let from_prev = TAIL_KEEP - chunk.len();
        tail.extend_from_slice(&previous[previous.len().saturating_sub(from_prev)..]);
    }
    tail.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL_KEEP)..]);
    tail
}

/// The tag at the start of a command, if its first bytes form a valid one.
fn leading_tag(command: &[u8], chunk: &[u8]) -> Option<Tag> {
    let head: Vec<u8> = command
        .iter()
        .chain(chunk.iter())
        .take(Tag::MAX_LEN + 1)
        .copied()
        .collect();
    let end = head.iter().position(|&b| b == b' ')?;
    Tag::try_from(&head[..end]).ok()
}

struct Announcement {
    size: u64,
    synchronizing: bool,
}

/// Parse `{n}` / `{n+}` / `~{n}` right before the line ending, if present.
fn literal_announcement(line: &[u8]) -> Option<Announcement> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner_end = line.len().checked_sub(1)?;
    if line[inner_end] != b'}' {
        return None;
    }
    let open = line[..inner_end].iter().rposition(|&b| b == b'{')?;
    let mut inner = &line[open + 1..inner_end];
    let synchronizing = match inner.strip_suffix(b"+") {
        Some(rest) => {
            inner = rest;
            false
        }
        None => true,
    };
    if inner.is_empty() || !inner.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // An absurd number of digits is still an announcement: saturate so it is refused as too big.
    let size = inner.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Announcement {
        size,
        synchronizing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(framer: &mut Framer) -> Vec<FrameEvent> {
        std::iter::from_fn(|| framer.next_event()).collect()
    }

    fn small() -> Limits {
        Limits {
            max_line: 100,
            max_literal: 50,
            max_command: 200,
        }
    }

    #[test]
    fn splits_lines_and_waits_for_partial_input() {
        let mut f = Framer::new(small());
        f.push(b"a1 NOOP\r\na2 CAPA");
        assert_eq!(
            drain(&mut f),
            vec![FrameEvent::Command(b"a1 NOOP\r\n".to_vec())]
        );
        assert!(f.is_mid_command());
        f.push(b"BILITY\r\n");
        assert_eq!(
            drain(&mut f),
            vec![FrameEvent::Command(b"a2 CAPABILITY\r\n".to_vec())]
        );
        assert!(!f.is_mid_command());
    }

    #[test]
    fn synchronizing_literal_asks_for_continuation_then_completes() {
        let mut f = Framer::new(small());
        f.push(b"a LOGIN {4}\r\n");
        assert_eq!(drain(&mut f), vec![FrameEvent::ContinuationNeeded]);
        f.push(b"user {4+}\r\npa\r\n secret\r\n");
        assert_eq!(
            drain(&mut f),
            vec![FrameEvent::Command(
                b"a LOGIN {4}\r\nuser {4+}\r\npa\r\n secret\r\n".to_vec()
            )]
        );
    }

    #[test]
    fn literal8_is_framed() {
        let mut f = Framer::new(small());
        f.push(b"a APPEND x ~{3+}\r\n\0\x01\n\r\n");
        assert_eq!(
            drain(&mut f),
            vec![FrameEvent::Command(
                b"a APPEND x ~{3+}\r\n\0\x01\n\r\n".to_vec()
            )]
        );
    }

    #[test]
    fn too_long_line_is_discarded_with_count_and_tag() {
        let mut f = Framer::new(small());
        let mut long = b"t7 SEARCH ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 150));
        f.push(&long);
        assert_eq!(drain(&mut f), vec![]);
        f.push(b"yyy\r\nt8 NOOP\r\n");
        assert_eq!(
            drain(&mut f),
            vec![
                FrameEvent::Error(FrameError::LineTooLong {
                    tag: Some(Tag::try_from("t7").unwrap()),
                    discarded: 165,
                }),
                FrameEvent::Command(b"t8 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn oversized_sync_literal_is_refused_without_reading_it() {
        let mut f = Framer::new(small());
        f.push(b"a9 APPEND INBOX {51}\r\na10 NOOP\r\n");
        assert_eq!(
            drain(&mut f),
            vec![
                FrameEvent::Error(FrameError::LiteralTooBig {
                    tag: Some(Tag::try_from("a9").unwrap()),
                    size: 51,
                    limit: 50,
                    synchronizing: true,
                }),
                FrameEvent::Command(b"a10 NOOP\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn oversized_nonsync_literal_is_skipped_including_following_literals() {
        let mut f = Framer::new(small());
        let mut input = b"b1 APPEND INBOX {60+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 60));
        input.extend_from_slice(b" {2+}\r\nzz\r\nb2 NOOP\r\n");
        // Deliver byte by byte to exercise every partial state.
        let mut events = Vec::new();
        for b in input {
            f.push(&[b]);
            events.extend(drain(&mut f));
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            &events[0],
            FrameEvent::Error(FrameError::LiteralTooBig {
                size: 60,
                synchronizing: false,
                ..
            })
        ));
        assert_eq!(events[1], FrameEvent::Command(b"b2 NOOP\r\n".to_vec()));
    }

    #[test]
    fn huge_literal_size_saturates_and_is_refused() {
        let mut f = Framer::new(Limits::default());
        f.push(b"c1 APPEND INBOX {99999999999999999999999999}\r\n");
        assert!(matches!(
            drain(&mut f).as_slice(),
            [FrameEvent::Error(FrameError::LiteralTooBig {
                size: u64::MAX,
                ..
            })]
        ));
    }

    #[test]
    fn command_limit_bounds_multiappend() {
        let mut f = Framer::new(Limits {
            max_command: 150,
            ..small()
        });
        let mut input = b"m APPEND INBOX {50+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 50));
        input.extend_from_slice(b" {50+}\r\n");
        input.extend(std::iter::repeat_n(b'b', 50));
        input.extend_from_slice(b" {50+}\r\n");
        input.extend(std::iter::repeat_n(b'c', 50));
        input.extend_from_slice(b"\r\nn NOOP\r\n");
        f.push(&input);
        let events = drain(&mut f);
        assert!(
            matches!(
                &events[0],
                FrameEvent::Error(FrameError::LiteralTooBig { .. })
            ),
            "{events:?}"
        );
        assert_eq!(events[1], FrameEvent::Command(b"n NOOP\r\n".to_vec()));
    }

    #[test]
    fn garbage_without_tag_reports_no_tag() {
        let mut f = Framer::new(small());
        let mut junk = vec![0xffu8; 120];
        junk.extend_from_slice(b"\r\n");
        f.push(&junk);
        assert_eq!(
            drain(&mut f),
            vec![FrameEvent::Error(FrameError::LineTooLong {
                tag: None,
                discarded: 122
            })]
        );
    }
}

//! Fuzz the IMAP command path with arbitrary client bytes: the framer splits them into
//! commands (bounded by small limits so oversized paths are reached), each command is parsed,
//! and every command that parses must survive encode -> parse unchanged.
//!
//! Asserts, for every input: no panic; the framer never returns more bytes than it was given;
//! decode -> encode -> decode is the identity on parsed commands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealmail_imap::proto::{
    EncodeOptions, FrameEvent, Framer, Limits, ParseOptions, encode_command, parse_command,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks UTF-8 mailbox names (as after ENABLE IMAP4rev2) or modified UTF-7.
    let (utf8, data) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => return,
    };
    let parse_options = ParseOptions {
        utf8_mailboxes: utf8,
    };
    let encode_options = EncodeOptions {
        utf8_mailboxes: utf8,
    };
    let mut framer = Framer::new(Limits {
        max_line: 4096,
        max_literal: 4096,
        max_command: 16 * 1024,
    });
    // Feed in two pieces to exercise partial input.
    let (a, b) = data.split_at(data.len() / 2);
    let mut framed = 0usize;
    for piece in [a, b] {
        framer.push(piece);
        while let Some(event) = framer.next_event() {
            let FrameEvent::Command(bytes) = event else {
                continue;
            };
            framed += bytes.len();
            assert!(framed <= data.len(), "framer produced more bytes than it got");
            let Ok(command) = parse_command(&bytes, parse_options) else {
                continue;
            };
            let encoded = encode_command(&command, encode_options);
            let again = parse_command(&encoded, parse_options).unwrap_or_else(|e| {
                panic!(
                    "re-encoded command does not parse: {e}\n{:?}",
                    String::from_utf8_lossy(&encoded)
                )
            });
            assert_eq!(command, again, "round trip changed the command");
        }
    }
});

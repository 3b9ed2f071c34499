//! Fuzz the POP3 line framer, command parser and message encoder.
//!
//! Asserts, for every input: no panic; the framer never buffers more than its limit and every
//! byte it takes is accounted for; a parsed command's `Debug` never shows a PASS/AUTH secret;
//! and a message served by RETR, once un-stuffed, has exactly the size `crlf_size` reports (what LIST and STAT announce) and
//! never contains the terminating line early.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealmail_pop3::proto::{self, Command, LineEvent, LineFramer};

const MAX_LINE: usize = 64;

fuzz_target!(|data: &[u8]| {
    // Framing, fed in two uneven pieces.
    let mut framer = LineFramer::new(MAX_LINE);
    let split = data.len() / 3;
    let mut seen = 0usize;
    for piece in [&data[..split], &data[split..]] {
        framer.push(piece);
        while let Some(event) = framer.next_event() {
            match event {
                LineEvent::Line(line) => {
                    assert!(line.len() < MAX_LINE);
                    seen += line.len() + 1;
                    if let Ok(command) = proto::parse_command(&line) {
                        let debug = format!("{command:?}");
                        if let Command::Pass(secret)
                        | Command::Auth {
                            initial_response: Some(secret),
                            ..
                        } = &command
                            && secret.expose().len() >= 4
                        {
                            let shown = String::from_utf8_lossy(secret.expose());
                            assert!(!debug.contains(shown.as_ref()), "secret in Debug");
                        }
                    }
                }
                LineEvent::TooLong { discarded } => seen += discarded,
            }
        }
    }
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    let last_newline = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if newlines > 0 {
        assert!(seen >= newlines);
        assert!(seen <= last_newline);
    }

    // Serving the input as a message.
    let mut out = Vec::new();
    proto::write_message(&mut out, data, None);
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    let mut unstuffed = 0u64;
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"));
        assert_ne!(line, b".\r\n");
        unstuffed += line.len() as u64 - u64::from(line.starts_with(b"."));
    }
    assert_eq!(unstuffed, sealmail_core::store::crlf_size(data));
});

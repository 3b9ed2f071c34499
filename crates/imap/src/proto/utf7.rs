//! Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3, kept by RFC 9051 for clients that
//! did not enable UTF-8).
//!
//! Printable ASCII except `&` stands for itself; `&-` is `&`; other characters are UTF-16 encoded
//! in a modified BASE64 (`,` instead of `/`, no padding) between `&` and `-`.

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    #[error("byte {0:#04x} is not allowed in a modified UTF-7 name")]
    InvalidByte(u8),
    #[error("unterminated '&' shift sequence")]
    Unterminated,
    #[error("invalid BASE64 in a shift sequence")]
    InvalidBase64,
    #[error("shift sequence encodes printable ASCII or is not canonical")]
    NotCanonical,
    #[error("invalid UTF-16 in a shift sequence")]
    InvalidUtf16,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decode a modified UTF-7 name to UTF-8, strictly (the canonical encoding only).
pub fn decode(name: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    let mut previous_was_shift = false;
    while i < name.len() {
        let b = name[i];
        if !(0x20..=0x7e).contains(&b) {
            return Err(Utf7Error::InvalidByte(b));
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            previous_was_shift = false;
            continue;
        }
        let end = name[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p)
            .ok_or(Utf7Error::Unterminated)?;
        let encoded = &name[i + 1..end];
        i = end + 1;
        if encoded.is_empty() {
            out.push('&');
            previous_was_shift = false;
            continue;
        }
        // Two adjacent shift sequences would be a non-canonical split of one.
        if previous_was_shift {
            return Err(Utf7Error::NotCanonical);
        }
        previous_was_shift = true;
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let (mut acc, mut bits) = (0u32, 0u32);
        for &c in encoded {
            acc = (acc << 6) | sextet(c).ok_or(Utf7Error::InvalidBase64)?;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be padding: fewer than 6 and all zero.
        if bits >= 6 || acc != 0 || units.is_empty() {
            return Err(Utf7Error::InvalidBase64);
        }
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.map_err(|_| Utf7Error::InvalidUtf16)?;
            if (' '..='~').contains(&ch) {
                return Err(Utf7Error::NotCanonical);
            }
            out.push(ch);
        }
    }
    Ok(out)
}

/// Encode a UTF-8 name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let (mut acc, mut bits) = (0u32, 0u32);
        for &unit in pending.iter() {
            acc = (acc << 16) | u32::from(unit);
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, the first from RFC 3501 section 5.1.3.
    const KNOWN: &[(&str, &str)] = &[
        ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
        ("INBOX", "INBOX"),
        ("Tom &- Jerry", "Tom & Jerry"),
        ("Entw&APw-rfe", "Entwürfe"),
        ("&2D3eAA-", "😀"),
        ("Gel&APY-schte Elemente", "Gelöschte Elemente"),
    ];

    #[test]
    fn known_answers_decode_and_encode() {
        for (encoded, decoded) in KNOWN {
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Ok(*decoded));
            assert_eq!(encode(decoded), *encoded);
        }
    }

    #[test]
    fn rejects_non_canonical_and_broken_input() {
        assert_eq!(decode(b"&U,BTFw"), Err(Utf7Error::Unterminated));
        assert_eq!(decode(b"&AGE-"), Err(Utf7Error::NotCanonical)); // "a" shifted
        assert_eq!(decode(b"&U,A-&ZeU-"), Err(Utf7Error::NotCanonical));
        assert_eq!(decode(b"&U/A-"), Err(Utf7Error::InvalidBase64));
        assert_eq!(decode("ü".as_bytes()), Err(Utf7Error::InvalidByte(0xc3)));
        assert_eq!(decode(b"&2D0-"), Err(Utf7Error::InvalidUtf16)); // lone surrogate
        assert_eq!(decode(b"&U,B-"), Err(Utf7Error::InvalidBase64)); // non-zero padding
    }
}

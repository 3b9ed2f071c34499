//! Email addresses as the registry stores them: validated and normalized, so that one mailbox
//! has exactly one spelling.
//!
//! Accepted form: `local@domain` where `local` is an RFC 5322 dot-atom (UTF-8 allowed, as in
//! RFC 6531) and `domain` a DNS name, internationalized names included. Quoted local parts and
//! address literals (`user@[192.0.2.1]`) are refused: no mail client needs them for a login.
//!
//! Normalization: the local part is lowercased (Unicode-aware); the domain goes through UTS #46
//! (which also lowercases) and is stored in its ASCII (punycode) form.

use crate::error::{Error, Result};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// RFC 5321 section 4.5.3.1.1: at most 64 octets in a local part.
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// RFC 5321 section 4.5.3.1.3: a path is at most 256 octets including the angle brackets.
pub const MAX_ADDRESS_LEN: usize = 254;
/// Longest input we even look at, so validation work stays bounded.
const MAX_INPUT_LEN: usize = 1024;

/// A validated, normalized email address (`local@domain`, lowercase, punycode domain).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    normalized: String,
    at: usize,
}

impl Address {
    /// Validate and normalize `input`; every refusal is [`Error::InvalidAddress`] with a reason.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &'static str| Error::InvalidAddress(shorten(input), reason);
        if input.is_empty() {
            return Err(invalid("empty"));
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(invalid("too long"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains spaces or control characters"));
        }
        let mut pieces = input.split('@');
        let (Some(local), Some(domain), None) = (pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(invalid("must contain exactly one @"));
        };
        validate_local_part(local).map_err(invalid)?;
        let domain = normalize_domain(domain).map_err(invalid)?;
        let local = local.to_lowercase();
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(invalid("local part longer than 64 bytes"));
        }
        let normalized = format!("{local}@{domain}");
        if normalized.len() > MAX_ADDRESS_LEN {
            return Err(invalid("longer than 254 bytes"));
        }
        Ok(Self {
            at: local.len(),
            normalized,
        })
    }

    /// The normalized form, `local@domain`.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    pub fn local_part(&self) -> &str {
        &self.normalized[..self.at]
    }

    /// The domain in ASCII (punycode) form.
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        Self::parse(input)
    }
}

impl TryFrom<String> for Address {
    type Error = Error;

    fn try_from(input: String) -> Result<Self> {
        Self::parse(&input)
    }
}

impl From<Address> for String {
    fn from(address: Address) -> Self {
        address.normalized
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", self.normalized)
    }
}

/// Characters RFC 5322 allows in an atom besides letters and digits (`atext`).
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

fn validate_local_part(local: &str) -> std::result::Result<(), &'static str> {
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.starts_with('"') {
        return Err("quoted local parts are not supported");
    }
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err("local part longer than 64 bytes");
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err("local part has a leading, trailing or doubled dot");
        }
        // Non-ASCII is allowed as RFC 6531 UTF8-non-ascii; whitespace and controls were
        // refused earlier.
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || !c.is_ascii();
        if !atom.chars().all(allowed) {
            return Err("local part contains a character that needs quoting");
        }
    }
    Ok(())
}

fn normalize_domain(domain: &str) -> std::result::Result<String, &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.starts_with('[') {
        return Err("address literals are not supported");
    }
    // STD3 rules keep domains to letters, digits and hyphens; VerifyDNSLength enforces the
    // 63-byte label and 253-byte name limits and refuses empty labels and a trailing dot.
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .map_err(|_| "domain is not a valid (internationalized) DNS name")?;
    Ok(ascii.into_owned())
}

/// Error messages quote the input, but never an unbounded amount of it.
fn shorten(input: &str) -> String {
    const SHOWN: usize = 80;
    match input.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(input: &str) -> String {
        Address::parse(input).unwrap().as_str().to_owned()
    }

    fn reason(input: &str) -> &'static str {
        match Address::parse(input) {
            Err(Error::InvalidAddress(_, reason)) => reason,
            other => panic!("{input:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn lowercases_both_parts() {
        assert_eq!(
            normalized("Alice.Smith@Example.COM"),
            "alice.smith@example.com"
        );
        let address = Address::parse("Bob+Tag@Mail.Example.org").unwrap();
        assert_eq!(address.local_part(), "bob+tag");
        assert_eq!(address.domain(), "mail.example.org");
    }

    #[test]
    fn internationalized_domain_becomes_punycode() {
        assert_eq!(
            normalized("user@bücher.example"),
            "user@xn--bcher-kva.example"
        );
        assert_eq!(
            normalized("user@BÜCHER.example"),
            "user@xn--bcher-kva.example"
        );
        // Already-encoded input normalizes to the same string.
        assert_eq!(
            normalized("user@XN--BCHER-KVA.example"),
            "user@xn--bcher-kva.example"
        );
    }

    #[test]
    fn unicode_local_part_is_lowercased() {
        assert_eq!(normalized("ÜSER@example.com"), "üser@example.com");
    }

    #[test]
    fn single_label_domain_is_accepted() {
        assert_eq!(normalized("root@localhost"), "root@localhost");
    }

    #[test]
    fn refuses_malformed_addresses() {
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("no-at-sign"), "must contain exactly one @");
        assert_eq!(reason("a@b@example.com"), "must contain exactly one @");
        assert_eq!(reason("@example.com"), "empty local part");
        assert_eq!(reason("user@"), "empty domain");
        assert_eq!(
            reason("us er@example.com"),
            "contains spaces or control characters"
        );
        assert_eq!(
            reason("user@example.com\n"),
            "contains spaces or control characters"
        );
        assert_eq!(
            reason("us\u{7}er@example.com"),
            "contains spaces or control characters"
        );
        assert_eq!(
            reason(".user@example.com"),
            "local part has a leading, trailing or doubled dot"
        );
        assert_eq!(
            reason("us..er@example.com"),
            "local part has a leading, trailing or doubled dot"
        );
        assert_eq!(
            reason("us(er)@example.com"),
            "local part contains a character that needs quoting"
        );
        assert_eq!(
            reason("\"quoted\"@example.com"),
            "quoted local parts are not supported"
        );
        assert_eq!(
            reason("user@[192.0.2.1]"),
            "address literals are not supported"
        );
        for bad_domain in [
            "exa mple.com",
            "example..com",
            "example.com.",
            "-bad.com",
            "ex_ample.com",
        ] {
            let input = format!("user@{bad_domain}");
            let result = Address::parse(&input);
            assert!(
                matches!(result, Err(Error::InvalidAddress(..))),
                "{input:?} should be invalid, got {result:?}"
            );
        }
    }

    #[test]
    fn enforces_length_limits() {
        let local_64 = "a".repeat(64);
        assert!(Address::parse(&format!("{local_64}@example.com")).is_ok());
        assert_eq!(
            reason(&format!("{}@example.com", "a".repeat(65))),
            "local part longer than 64 bytes"
        );
        let label_64 = "b".repeat(64);
        assert!(Address::parse(&format!("user@{label_64}.com")).is_err());
        // 4 labels of 60 bytes: a valid DNS name of 243 bytes, but the address exceeds 254.
        let long_domain = vec!["c".repeat(60); 4].join(".");
        assert_eq!(
            reason(&format!("{}@{long_domain}", "d".repeat(20))),
            "longer than 254 bytes"
        );
        assert_eq!(reason(&"x".repeat(2000)), "too long");
    }

    #[test]
    fn error_message_quotes_a_bounded_input() {
        let input = format!("{}@", "é".repeat(300));
        let Err(Error::InvalidAddress(shown, _)) = Address::parse(&input) else {
            panic!("must be invalid");
        };
        assert!(shown.chars().count() <= 83, "{}", shown.len());
    }
}

//! Secrets the registry generates and hands to a person once: account passwords and recovery
//! codes. Both are drawn uniformly (rejection sampling, no modulo bias) from alphabets without
//! look-alike characters, so they survive being read aloud or copied from paper.

use crate::key::random_bytes;
use zeroize::Zeroizing;

/// Letters and digits minus the ones that are easy to confuse (0/O/o, 1/l/I): 56 symbols,
/// about 5.8 bits each.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of a generated password: about 139 bits of entropy.
pub const GENERATED_PASSWORD_LEN: usize = 24;

/// Crockford's base32 alphabet (no I, L, O, U): 5 bits per symbol.
const RECOVERY_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Five groups of five symbols: 125 bits, printed as `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
const RECOVERY_GROUPS: usize = 5;
const RECOVERY_GROUP_LEN: usize = 5;

/// A fresh random password for an account created without one.
pub fn generate_password() -> Zeroizing<String> {
    random_string(PASSWORD_ALPHABET, GENERATED_PASSWORD_LEN)
}

/// A fresh recovery code in its display form (groups separated by dashes).
pub fn generate_recovery_code() -> Zeroizing<String> {
    let symbols = random_string(RECOVERY_ALPHABET, RECOVERY_GROUPS * RECOVERY_GROUP_LEN);
    let mut shown = Zeroizing::new(String::with_capacity(
        RECOVERY_GROUPS * (RECOVERY_GROUP_LEN + 1),
    ));
    for (index, symbol) in symbols.chars().enumerate() {
        if index > 0 && index % RECOVERY_GROUP_LEN == 0 {
            shown.push('-');
        }
        shown.push(symbol);
    }
    shown
}

/// The canonical form of a recovery code as typed by a person: case, dashes and spaces do not
/// matter, and the Crockford look-alikes (O for 0, I and L for 1) are read as digits. This
/// canonical form, not the display form, is what the key derivation sees.
pub fn canonical_recovery_code(typed: &str) -> Zeroizing<String> {
    let mut canonical = Zeroizing::new(String::with_capacity(typed.len()));
    for symbol in typed.chars() {
        match symbol.to_ascii_uppercase() {
            '-' | ' ' => {}
            'O' => canonical.push('0'),
            'I' | 'L' => canonical.push('1'),
            other => canonical.push(other),
        }
    }
    canonical
}

/// `len` symbols drawn uniformly from `alphabet` (at most 256 symbols).
fn random_string(alphabet: &[u8], len: usize) -> Zeroizing<String> {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // Bytes at or above the largest multiple of the alphabet size are rejected so every symbol
    // is equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = Zeroizing::new(String::with_capacity(len));
    while out.len() < len {
        let batch = Zeroizing::new(random_bytes::<64>());
        for &byte in batch.iter() {
            if usize::from(byte) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_password_uses_only_unambiguous_symbols() {
        let password = generate_password();
        assert_eq!(password.len(), GENERATED_PASSWORD_LEN);
        assert!(password.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
        for confusable in ['0', 'O', 'o', '1', 'l', 'I'] {
            assert!(!PASSWORD_ALPHABET.contains(&(confusable as u8)));
        }
        assert_ne!(*password, *generate_password());
    }

    #[test]
    fn recovery_code_has_five_dashed_groups() {
        let code = generate_recovery_code();
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), RECOVERY_GROUPS);
        assert!(groups.iter().all(|g| g.len() == RECOVERY_GROUP_LEN));
        assert!(
            code.bytes()
                .all(|b| b == b'-' || RECOVERY_ALPHABET.contains(&b))
        );
        assert_ne!(*code, *generate_recovery_code());
    }

    #[test]
    fn canonical_recovery_code_forgives_case_dashes_and_lookalikes() {
        assert_eq!(
            *canonical_recovery_code("abcde-fo1il 23456"),
            "ABCDEF011123456"
        );
        let code = generate_recovery_code();
        assert_eq!(
            *canonical_recovery_code(&code.to_lowercase()),
            *canonical_recovery_code(&code)
        );
    }

    #[test]
    fn random_string_is_roughly_uniform() {
        // 20,000 draws over 56 symbols: each appears about 357 times; a modulo bias or a stuck
        // symbol would push some count far outside this band.
        let drawn = random_string(PASSWORD_ALPHABET, 20_000);
        for &symbol in PASSWORD_ALPHABET {
            let count = drawn.bytes().filter(|&b| b == symbol).count();
            assert!(
                (250..500).contains(&count),
                "{} drawn {count} times",
                symbol as char
            );
        }
    }
}

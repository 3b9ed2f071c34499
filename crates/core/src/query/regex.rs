//! The `REGEXP` SQL function, backed by the `regex` crate (linear time, no backtracking), and
//! the translation of `$regex` options and `$like` patterns into it.

use super::error::QueryError;
use regex::{Regex, RegexBuilder};
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Compiled-program size limit handed to the regex crate.
const COMPILED_SIZE_LIMIT: usize = 1 << 20;
/// Compiled regexes kept process-wide; the cache is cleared when it fills.
const CACHE_CAPACITY: usize = 512;

/// Register `regexp(pattern, text)`, which SQLite calls for `text REGEXP pattern`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            // The pattern is a bound parameter, constant for a statement: keep it compiled.
            let regex: Arc<Arc<Regex>> = ctx.get_or_create_aux(
                0,
                |pattern| -> Result<Arc<Regex>, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(compiled(pattern.as_str()?)?)
                },
            )?;
            Ok(match ctx.get_raw(1) {
                ValueRef::Null => None,
                ValueRef::Text(text) => Some(regex.is_match(&String::from_utf8_lossy(text))),
                ValueRef::Integer(i) => Some(regex.is_match(&i.to_string())),
                ValueRef::Real(r) => Some(regex.is_match(&r.to_string())),
                ValueRef::Blob(_) => Some(false),
            })
        },
    )
}

/// A compiled regex for `pattern` (inline flags included), from the cache when possible.
pub(crate) fn compiled(pattern: &str) -> Result<Arc<Regex>, QueryError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(regex) = cache.lock().map_err(|_| poisoned())?.get(pattern) {
        return Ok(regex.clone());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(QueryError::TooComplex(format!(
            "regular expression longer than {MAX_PATTERN_LEN} bytes"
        )));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(COMPILED_SIZE_LIMIT)
        .dfa_size_limit(COMPILED_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| QueryError::invalid("$regex", e.to_string()))?;
    let regex = Arc::new(regex);
    let mut cache = cache.lock().map_err(|_| poisoned())?;
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), regex.clone());
    Ok(regex)
}

fn poisoned() -> QueryError {
    QueryError::invalid("$regex", "regex cache unavailable")
}

/// Mongo's `$options`: `i` (case-insensitive), `m` (multi-line anchors), `s` (dot matches
/// newline), `x` (ignore whitespace and `#` comments).
pub(crate) fn check_options(options: &str) -> Result<(), QueryError> {
    match options.chars().find(|c| !"imsx".contains(*c)) {
        Some(bad) => Err(QueryError::invalid(
            "$options",
            format!("unsupported option {bad:?} (supported: i, m, s, x)"),
        )),
        None => Ok(()),
    }
}

/// The pattern handed to `REGEXP`: the options as inline flags, then the pattern in a group so
/// an inline flag group inside it cannot escape.
pub(crate) fn with_options(pattern: &str, options: &str) -> Result<String, QueryError> {
    check_options(options)?;
    let full = if options.is_empty() {
        pattern.to_owned()
    } else {
        // In `x` mode a trailing `#` comment would swallow the closing parenthesis.
        let end = if options.contains('x') { "\n" } else { "" };
        format!("(?{options})(?:{pattern}{end})")
    };
    compiled(&full)?;
    Ok(full)
}

/// Translate an SQL `LIKE` pattern (`%` any run, `_` one character, `\` escapes the next
/// character) into an anchored regex.
pub(crate) fn like_to_regex(pattern: &str, case_insensitive: bool) -> Result<String, QueryError> {
    let mut out = String::with_capacity(pattern.len() * 2 + 8);
    out.push_str(if case_insensitive { "(?is)^" } else { "(?s)^" });
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '\\' => match chars.next() {
                Some(escaped) => out.push_str(&regex::escape(escaped.encode_utf8(&mut [0; 4]))),
                None => return Err(QueryError::invalid("$like", "pattern ends with '\\'")),
            },
            other => out.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    compiled(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_translation() {
        let re = compiled(&like_to_regex("a%b_c\\%", false).unwrap()).unwrap();
        assert!(re.is_match("aXXbYc%"));
        assert!(!re.is_match("AXXbYc%"));
        assert!(!re.is_match("aXXbYc"));
        let re = compiled(&like_to_regex("ré%", true).unwrap()).unwrap();
        assert!(re.is_match("RÉsumé"));
        let re = compiled(&like_to_regex("a.b", false).unwrap()).unwrap();
        assert!(!re.is_match("axb"));
    }

    #[test]
    fn options_become_inline_flags() {
        let re = compiled(&with_options("^re: ", "i").unwrap()).unwrap();
        assert!(re.is_match("RE: hello"));
        assert!(with_options("x", "g").is_err());
        assert!(with_options("(", "").is_err());
        assert!(matches!(
            with_options(&"a".repeat(MAX_PATTERN_LEN + 1), ""),
            Err(QueryError::TooComplex(_))
        ));
    }
}

//! IMAP-style search over one folder, compiled to one parameterized SQL statement.
//!
//! Substring keys of three characters or more use the trigram full-text index; shorter ones and
//! arbitrary HEADER searches fall back to SQL functions over the stored message, so every key
//! composes under NOT and OR without a second evaluation path.

use super::folders::folder_id;
use super::types::UidSet;
use super::{Mailbox, bodies, parse};
use crate::error::{Error, Result};
use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

/// Maximum nesting of NOT/OR/AND, so a hostile search cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// One search criterion. Dates are `YYYY-MM-DD` and compare by UTC calendar day; text keys
/// match case-insensitive substrings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchKey {
    All,
    Uids(UidSet),
    Seen(bool),
    Answered(bool),
    Flagged(bool),
    Deleted(bool),
    Draft(bool),
    /// KEYWORD (true) / UNKEYWORD (false).
    Keyword(String, bool),
    /// Internal date before / on / since a day.
    Before(String),
    On(String),
    Since(String),
    /// Date header (internal date when absent) before / on / since a day.
    SentBefore(String),
    SentOn(String),
    SentSince(String),
    /// Save date (when the message was added to its folder: APPEND, COPY, MOVE) before / on /
    /// since a day (RFC 8514).
    SavedBefore(String),
    SavedOn(String),
    SavedSince(String),
    Larger(u64),
    Smaller(u64),
    Subject(String),
    From(String),
    To(String),
    Cc(String),
    Bcc(String),
    /// HEADER name value; an empty value matches every message having the field.
    Header(String, String),
    Body(String),
    Text(String),
    /// MODSEQ greater than or equal (RFC 7162).
    ModSeq(u64),
    /// RFC 5032 YOUNGER / OLDER, in seconds relative to now.
    Younger(u64),
    Older(u64),
    /// RFC 8474 EMAILID / THREADID.
    EmailId(String),
    ThreadId(String),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

impl Mailbox {
    /// UIDs of the messages in `folder` matching `key`, ascending.
    pub fn search(&self, folder: &str, key: &SearchKey) -> Result<Vec<u32>> {
        let (filter, params) = filter_sql(&self.conn, folder, key)?;
        let sql = format!("SELECT m.uid {filter} ORDER BY m.uid");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// `FROM messages m WHERE ...` selecting the messages of `folder` that match `key`, with its
/// bound parameters: SEARCH, SORT and THREAD all select their rows through it.
pub(super) fn filter_sql(
    conn: &Connection,
    folder: &str,
    key: &SearchKey,
) -> Result<(String, Vec<Value>)> {
    let id = folder_id(conn, folder)?;
    if key.uses_full_text() {
        // Messages appended since the last indexing run are found like every other.
        super::fts_index::index_all_pending(conn)?;
    }
    // When a full-text key must hold for every hit, drive the query from the index's few
    // matches instead of scanning the folder: `+` keeps SQLite from picking the folder
    // index first.
    let folder_term = if key.requires_full_text() {
        "+m.folder_id"
    } else {
        "m.folder_id"
    };
    let mut sql = format!("FROM messages m WHERE {folder_term} = ? AND ");
    let mut params = vec![Value::Integer(id)];
    compile(key, id, &mut sql, &mut params, 0)?;
    Ok((sql, params))
}

impl SearchKey {
    /// Whether this key itself is a TEXT, BODY or SUBJECT key the trigram index answers.
    fn is_indexed_text(&self) -> bool {
        match self {
            SearchKey::Text(n) | SearchKey::Body(n) | SearchKey::Subject(n) => uses_trigrams(n),
            _ => false,
        }
    }

    /// Whether any part of the key, however nested, reads the trigram index.
    fn uses_full_text(&self) -> bool {
        match self {
            key if key.is_indexed_text() => true,
            SearchKey::And(keys) => keys.iter().any(SearchKey::uses_full_text),
            SearchKey::Or(a, b) => a.uses_full_text() || b.uses_full_text(),
            SearchKey::Not(inner) => inner.uses_full_text(),
            _ => false,
        }
    }

    /// Whether every match must also match a trigram full-text lookup (a TEXT, BODY or
    /// SUBJECT key of three characters or more, at the top level or under AND).
    fn requires_full_text(&self) -> bool {
        match self {
            key if key.is_indexed_text() => true,
            SearchKey::And(keys) => keys.iter().any(SearchKey::requires_full_text),
            _ => false,
        }
    }
}

fn compile(
    key: &SearchKey,
    folder: i64,
    sql: &mut String,
    params: &mut Vec<Value>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(
            "search criteria nested too deeply".into(),
        ));
    }
    let mut bind = |sql: &mut String, fragment: &str, values: Vec<Value>| {
        sql.push_str(fragment);
        params.extend(values);
    };
    let text = |s: &str| Value::Text(s.to_string());
    let int = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    match key {
        SearchKey::All => sql.push('1'),
        // One range (UID 5:*, or THREAD's "known to this session") is a plain comparison the
        // planner can use; several go through one JSON parameter.
        SearchKey::Uids(set) => match set.ranges() {
            [(first, last)] => bind(
                sql,
                "m.uid BETWEEN ? AND ?",
                vec![int(u64::from(*first)), int(u64::from(*last))],
            ),
            // Walked once, range by range over the (folder_id, uid) index: see IN_UID_SET.
            _ => bind(
                sql,
                "m.id IN (SELECT s.id FROM json_each(?) r CROSS JOIN messages s \
                 ON s.folder_id = ? AND s.uid BETWEEN r.value ->> 0 AND r.value ->> 1)",
                vec![text(&set.to_json()), Value::Integer(folder)],
            ),
        },
        SearchKey::Seen(on) => flag(sql, "m.seen", *on),
        SearchKey::Answered(on) => flag(sql, "m.answered", *on),
        SearchKey::Flagged(on) => flag(sql, "m.flagged", *on),
        SearchKey::Deleted(on) => flag(sql, "m.deleted", *on),
        SearchKey::Draft(on) => flag(sql, "m.draft", *on),
        SearchKey::Keyword(keyword, on) => bind(
            sql,
            if *on {
                "EXISTS (SELECT 1 FROM json_each(m.keywords) k WHERE lower(k.value) = lower(?))"
            } else {
                "NOT EXISTS (SELECT 1 FROM json_each(m.keywords) k WHERE lower(k.value) = lower(?))"
            },
            vec![text(keyword)],
        ),
        SearchKey::Before(day) => bind(sql, "m.internal_date < ?", vec![day_start(day)?]),
        SearchKey::On(day) => bind(
            sql,
            "substr(m.internal_date, 1, 10) = ?",
            vec![text(&valid_day(day)?)],
        ),
        SearchKey::Since(day) => bind(sql, "m.internal_date >= ?", vec![day_start(day)?]),
        SearchKey::SentBefore(day) => bind(
            sql,
            "coalesce(m.header_date, m.internal_date) < ?",
            vec![day_start(day)?],
        ),
        SearchKey::SentOn(day) => bind(
            sql,
            "substr(coalesce(m.header_date, m.internal_date), 1, 10) = ?",
            vec![text(&valid_day(day)?)],
        ),
        SearchKey::SentSince(day) => bind(
            sql,
            "coalesce(m.header_date, m.internal_date) >= ?",
            vec![day_start(day)?],
        ),
        SearchKey::SavedBefore(day) => bind(sql, "m.saved_at < ?", vec![day_start(day)?]),
        SearchKey::SavedOn(day) => bind(
            sql,
            "substr(m.saved_at, 1, 10) = ?",
            vec![text(&valid_day(day)?)],
        ),
        SearchKey::SavedSince(day) => bind(sql, "m.saved_at >= ?", vec![day_start(day)?]),
        SearchKey::Larger(n) => bind(sql, "m.size > ?", vec![int(*n)]),
        SearchKey::Smaller(n) => bind(sql, "m.size < ?", vec![int(*n)]),
        SearchKey::Subject(needle) => fts_or_scan(sql, params, "subject", needle, "m.subject"),
        SearchKey::From(needle) => bind(sql, "sm_contains(m.from_addr, ?)", vec![text(needle)]),
        SearchKey::To(needle) => bind(sql, "sm_contains(m.to_addr, ?)", vec![text(needle)]),
        SearchKey::Cc(needle) => bind(sql, "sm_contains(m.cc_addr, ?)", vec![text(needle)]),
        SearchKey::Bcc(needle) => bind(sql, "sm_contains(m.bcc_addr, ?)", vec![text(needle)]),
        SearchKey::Header(name, needle) => bind(
            sql,
            "sm_header_contains((SELECT skeleton FROM bodies WHERE id = m.body_id), ?, ?)",
            vec![text(name), text(needle)],
        ),
        SearchKey::Body(needle) => fts_or_scan(sql, params, "body", needle, SKELETON_TEXT),
        SearchKey::Text(needle) => fts_or_scan(sql, params, "", needle, SKELETON_TEXT),
        SearchKey::ModSeq(n) => bind(sql, "m.modseq >= ?", vec![int(*n)]),
        SearchKey::Younger(secs) => bind(
            sql,
            "m.internal_date > strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?)",
            vec![text(&format!("-{secs} seconds"))],
        ),
        SearchKey::Older(secs) => bind(
            sql,
            "m.internal_date <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?)",
            vec![text(&format!("-{secs} seconds"))],
        ),
        SearchKey::EmailId(id) => match parse_object_id(id, 'M') {
            Some(body_id) => bind(sql, "m.body_id = ?", vec![Value::Integer(body_id)]),
            None => sql.push('0'),
        },
        SearchKey::ThreadId(id) => match parse_object_id(id, 'T') {
            Some(thread) => bind(
                sql,
                "coalesce(m.thread_id, m.body_id) = ?",
                vec![Value::Integer(thread)],
            ),
            None => sql.push('0'),
        },
        SearchKey::Not(inner) => {
            sql.push_str("NOT (");
            compile(inner, folder, sql, params, depth + 1)?;
            sql.push(')');
        }
        SearchKey::Or(a, b) => {
            sql.push('(');
            compile(a, folder, sql, params, depth + 1)?;
            sql.push_str(") OR (");
            compile(b, folder, sql, params, depth + 1)?;
            sql.push(')');
        }
        SearchKey::And(keys) => {
            if keys.is_empty() {
                sql.push('1');
            }
            for (i, inner) in keys.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" AND ");
                }
                sql.push('(');
                compile(inner, folder, sql, params, depth + 1)?;
                sql.push(')');
            }
        }
    }
    Ok(())
}

/// The stored message text for the slow path: the skeleton (headers and text parts).
const SKELETON_TEXT: &str = "sm_skeleton_text((SELECT skeleton FROM bodies WHERE id = m.body_id))";

fn flag(sql: &mut String, column: &str, on: bool) {
    sql.push_str(column);
    sql.push_str(if on { " = 1" } else { " = 0" });
}

/// Whether a substring search for `needle` goes through the trigram index: trigrams cannot
/// match strings of fewer than three characters.
fn uses_trigrams(needle: &str) -> bool {
    needle.chars().count() >= 3
}

/// A substring search: through the trigram index when the needle has three characters or more
/// (trigrams cannot match shorter strings), else by scanning `fallback`.
fn fts_or_scan(
    sql: &mut String,
    params: &mut Vec<Value>,
    column: &str,
    needle: &str,
    fallback: &str,
) {
    if needle.is_empty() {
        sql.push('1');
        return;
    }
    if uses_trigrams(needle) {
        let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
        let query = if column.is_empty() {
            phrase
        } else {
            format!("{{{column}}} : {phrase}")
        };
        sql.push_str("m.body_id IN (SELECT rowid FROM body_fts WHERE body_fts MATCH ?)");
        params.push(Value::Text(query));
    } else {
        sql.push_str("sm_contains(");
        sql.push_str(fallback);
        sql.push_str(", ?)");
        params.push(Value::Text(needle.to_string()));
    }
}

fn valid_day(day: &str) -> Result<String> {
    let ok =
        day.len() == 10 && crate::time::parse_iso8601_utc(&format!("{day}T00:00:00Z")).is_some();
    if ok {
        Ok(day.to_string())
    } else {
        Err(Error::InvalidArgument(format!("invalid date {day:?}")))
    }
}

fn day_start(day: &str) -> Result<Value> {
    Ok(Value::Text(format!("{}T00:00:00Z", valid_day(day)?)))
}

fn parse_object_id(id: &str, prefix: char) -> Option<i64> {
    let hex = id.strip_prefix(prefix)?;
    if hex.len() != 16 {
        return None;
    }
    i64::from_str_radix(hex, 16).ok()
}

/// Register the SQL functions search uses on a mailbox connection.
pub(crate) fn register_functions(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("sm_contains", 2, flags, |ctx| {
        let haystack = match ctx.get_raw(0) {
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t,
            _ => return Ok(false),
        };
        let needle: String = ctx.get(1)?;
        Ok(contains_ignore_case(
            &String::from_utf8_lossy(haystack),
            &needle,
        ))
    })?;
    conn.create_scalar_function("sm_skeleton_text", 1, flags, |ctx| {
        let compressed: Vec<u8> = ctx.get(0)?;
        let skeleton = bodies::decompress_skeleton(&compressed)
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
        Ok(String::from_utf8_lossy(&skeleton).into_owned())
    })?;
    conn.create_scalar_function("sm_header_contains", 3, flags, |ctx| {
        let compressed: Vec<u8> = ctx.get(0)?;
        let name: String = ctx.get(1)?;
        let needle: String = ctx.get(2)?;
        let skeleton = bodies::decompress_skeleton(&compressed)
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
        let header_end = parse::find_header_end(&skeleton).unwrap_or(skeleton.len());
        Ok(header_values(&skeleton[..header_end], &name)
            .any(|value| contains_ignore_case(&value, &needle)))
    })?;
    Ok(())
}

/// Case-insensitive (Unicode simple case folding by lowercasing) substring test.
pub(crate) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let needle = needle.as_bytes();
        return needle.is_empty()
            || haystack
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle));
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Unfolded values of every header field called `name` (case-insensitive) in a header block.
fn header_values<'a>(header: &'a [u8], name: &'a str) -> impl Iterator<Item = String> + 'a {
    let text = String::from_utf8_lossy(header).into_owned();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
        } else if let Some((field, value)) = line.split_once(':') {
            fields.push((field.trim().to_string(), value.trim_start().to_string()));
        }
    }
    fields
        .into_iter()
        .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

//! Folders: create, rename, delete, list, subscribe. '/' is the hierarchy delimiter.

use super::{Mailbox, bodies};
use crate::error::{Error, Result};
use crate::store::types::FolderInfo;
use crate::time::{iso8601_utc, now_unix};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The hierarchy delimiter IMAP LIST reports.
pub const DELIMITER: char = '/';

/// Folders every new mailbox starts with, and their RFC 6154 special-use attribute.
pub(crate) const DEFAULT_FOLDERS: &[(&str, Option<&str>)] = &[
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Junk", Some("\\Junk")),
    ("Trash", Some("\\Trash")),
    ("Archive", Some("\\Archive")),
];

/// RFC 6154 attributes a folder may carry.
const SPECIAL_USES: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

const MAX_FOLDER_NAME: usize = 1024;

/// A folder path in canonical form: `INBOX` (any case) becomes `INBOX`, including as the first
/// segment of a subfolder.
pub fn normalize_folder_name(name: &str) -> Result<String> {
    let invalid = |why| Err(Error::InvalidFolderName(name.to_string(), why));
    if name.is_empty() {
        return invalid("empty name");
    }
    if name.len() > MAX_FOLDER_NAME {
        return invalid("name too long");
    }
    if name.chars().any(|c| c.is_control()) {
        return invalid("control characters");
    }
    if name.contains(['*', '%']) {
        return invalid("'*' and '%' are reserved for LIST patterns");
    }
    if name.split(DELIMITER).any(|segment| segment.is_empty()) {
        return invalid("empty hierarchy level");
    }
    let mut segments = name.split(DELIMITER);
    let first = segments.next().unwrap_or_default();
    let mut out = if first.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        first.into()
    };
    for segment in segments {
        out.push(DELIMITER);
        out.push_str(segment);
    }
    Ok(out)
}

pub(crate) fn folder_id(conn: &Connection, path: &str) -> Result<i64> {
    let path = normalize_folder_name(path)?;
    // Cached: every append and every message fetch starts here.
    conn.prepare_cached("SELECT id FROM folders WHERE path = ?1")?
        .query_row([&path], |r| r.get(0))
        .optional()?
        .ok_or(Error::NoSuchFolder(path))
}

/// Insert a folder row with a fresh UIDVALIDITY.
pub(crate) fn insert_folder(
    conn: &Connection,
    path: &str,
    special_use: Option<&str>,
) -> Result<()> {
    // UIDVALIDITY must differ from any value this name had before, even when a folder is
    // deleted and re-created within one second: keep a counter that only goes up.
    let last: i64 = conn
        .query_row(
            "SELECT value FROM settings WHERE name = 'last_uidvalidity'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let uidvalidity = now_unix().clamp(1, u32::MAX as i64).max(last + 1);
    if uidvalidity > u32::MAX as i64 {
        return Err(Error::InvalidArgument("UIDVALIDITY space exhausted".into()));
    }
    conn.execute(
        "INSERT INTO settings (name, value) VALUES ('last_uidvalidity', ?1)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        [uidvalidity],
    )?;
    conn.execute(
        "INSERT INTO folders (path, special_use, uidvalidity, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![path, special_use, uidvalidity, iso8601_utc(now_unix())],
    )?;
    Ok(())
}

impl Mailbox {
    /// Every folder with its counters, ordered by path.
    pub fn list_folders(&self) -> Result<Vec<FolderInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{FOLDER_INFO_SQL} ORDER BY f.path"))?;
        let rows = stmt.query_map([], folder_info_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One folder's counters (IMAP STATUS / SELECT).
    pub fn folder(&self, path: &str) -> Result<FolderInfo> {
        let path = normalize_folder_name(path)?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{FOLDER_INFO_SQL} WHERE f.path = ?1"))?;
        stmt.query_row([&path], folder_info_from_row)
            .optional()?
            .ok_or(Error::NoSuchFolder(path))
    }

    /// Create a folder and any missing parents. `special_use` is an RFC 6154 attribute.
    pub fn create_folder(&mut self, path: &str, special_use: Option<&str>) -> Result<FolderInfo> {
        let path = normalize_folder_name(path)?;
        if let Some(attr) = special_use
            && !SPECIAL_USES.iter().any(|s| s.eq_ignore_ascii_case(attr))
        {
            return Err(Error::InvalidArgument(format!(
                "unknown special-use {attr}"
            )));
        }
        let special_use =
            special_use.and_then(|a| SPECIAL_USES.iter().find(|s| s.eq_ignore_ascii_case(a)));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if folder_id(&tx, &path).is_ok() {
            return Err(Error::FolderExists(path));
        }
        for parent in ancestors(&path) {
            if folder_id(&tx, parent).is_err() {
                insert_folder(&tx, parent, None)?;
            }
        }
        insert_folder(&tx, &path, special_use.copied())?;
        tx.commit()?;
        self.folder(&path)
    }

    /// Delete a folder and its messages; INBOX cannot be deleted. Subfolders stay: the name
    /// remains a level of hierarchy that LIST shows as not selectable (RFC 9051 section 6.3.5
    /// lets a server delete a mailbox that has inferiors, and Dovecot does).
    pub fn delete_folder(&mut self, path: &str) -> Result<()> {
        let path = normalize_folder_name(path)?;
        if path == "INBOX" {
            return Err(Error::FolderNotAllowed(path, "deleted"));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = folder_id(&tx, &path)?;
        let body_ids: Vec<i64> = tx
            .prepare("SELECT body_id FROM messages WHERE folder_id = ?1")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute("DELETE FROM messages WHERE folder_id = ?1", [id])?;
        for body_id in body_ids {
            bodies::release(&tx, body_id)?;
        }
        tx.execute("DELETE FROM folders WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Rename a folder and its subfolders. Renaming INBOX moves its messages into a new folder
    /// and leaves INBOX empty, as RFC 3501 specifies.
    pub fn rename_folder(&mut self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (normalize_folder_name(from)?, normalize_folder_name(to)?);
        if to == "INBOX" {
            return Err(Error::FolderExists(to));
        }
        if to.starts_with(&format!("{from}{DELIMITER}")) {
            return Err(Error::FolderNotAllowed(from, "moved into itself"));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from_id = folder_id(&tx, &from)?;
        if folder_id(&tx, &to).is_ok() {
            return Err(Error::FolderExists(to));
        }
        for parent in ancestors(&to) {
            if folder_id(&tx, parent).is_err() {
                insert_folder(&tx, parent, None)?;
            }
        }
        if from == "INBOX" {
            insert_folder(&tx, &to, None)?;
            let to_id = folder_id(&tx, &to)?;
            super::messages::move_all(&tx, from_id, to_id)?;
        } else {
            let prefix = format!("{from}{DELIMITER}");
            tx.execute(
                "UPDATE folders SET path = ?2 || substr(path, ?3)
                 WHERE substr(path, 1, ?4) = ?1",
                params![
                    prefix,
                    format!("{to}{DELIMITER}"),
                    prefix.len() + 1,
                    prefix.len()
                ],
            )?;
            tx.execute(
                "UPDATE folders SET path = ?2 WHERE id = ?1",
                params![from_id, to],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_subscribed(&mut self, path: &str, subscribed: bool) -> Result<()> {
        let id = folder_id(&self.conn, path)?;
        self.conn.execute(
            "UPDATE folders SET subscribed = ?2 WHERE id = ?1",
            params![id, subscribed],
        )?;
        Ok(())
    }

    /// The folder with a special-use attribute such as `\Sent`, if any.
    pub fn special_use_folder(&self, special_use: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT path FROM folders WHERE special_use = ?1 COLLATE NOCASE ORDER BY id LIMIT 1",
                [special_use],
                |r| r.get(0),
            )
            .optional()?)
    }
}

const FOLDER_INFO_SQL: &str = "
    SELECT f.path, f.special_use, f.uidvalidity, f.uidnext, f.highestmodseq, f.subscribed,
           (SELECT count(*) FROM messages m WHERE m.folder_id = f.id),
           (SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.seen = 0),
           (SELECT coalesce(sum(size), 0) FROM messages m WHERE m.folder_id = f.id)
    FROM folders f";

fn folder_info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FolderInfo> {
    Ok(FolderInfo {
        path: row.get(0)?,
        special_use: row.get(1)?,
        uidvalidity: row.get(2)?,
        uidnext: row.get(3)?,
        highest_modseq: row.get(4)?,
        subscribed: row.get(5)?,
        messages: row.get(6)?,
        unseen: row.get(7)?,
        size: row.get(8)?,
    })
}

/// `a`, `a/b` for `a/b/c`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices(DELIMITER).map(move |(i, _)| &path[..i])
}

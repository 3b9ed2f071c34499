//! Message bodies at rest: the raw bytes with large attachment bodies cut out (the skeleton,
//! zstd-compressed) and the attachments stored once per mailbox by SHA-256, reference-counted.
//!
//! All functions take a transaction-capable connection; callers run them inside the same
//! transaction as the message rows so reference counts never drift.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// zstd level for skeletons and attachments: level 3 is zstd's default balance; higher levels
/// cost append throughput for a few percent of space.
const ZSTD_LEVEL: i32 = 3;

/// Upper bound accepted when decompressing, so a damaged row cannot make us allocate wildly.
const MAX_DECOMPRESSED: usize = 512 << 20;

/// Store `raw` and return the new body id. `attachment_ranges` are sorted, non-overlapping.
pub(crate) fn insert(
    conn: &Connection,
    raw: &[u8],
    attachment_ranges: &[(u32, u32)],
) -> Result<i64> {
    let mut skeleton = Vec::with_capacity(raw.len());
    let mut parts: Vec<(u64, i64)> = Vec::with_capacity(attachment_ranges.len());
    let mut cursor = 0usize;
    for &(start, end) in attachment_ranges {
        let (start, end) = (start as usize, end as usize);
        skeleton.extend_from_slice(&raw[cursor..start]);
        let attachment_id = insert_attachment(conn, &raw[start..end])?;
        parts.push((start as u64, attachment_id));
        cursor = end;
    }
    skeleton.extend_from_slice(&raw[cursor..]);
    let compressed = zstd::bulk::compress(&skeleton, ZSTD_LEVEL)?;
    conn.execute(
        "INSERT INTO bodies (skeleton, parts, raw_size, refs) VALUES (?1, ?2, ?3, 1)",
        params![
            compressed,
            serde_json::to_string(&parts).expect("parts serialize"),
            raw.len()
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

fn insert_attachment(conn: &Connection, bytes: &[u8]) -> Result<i64> {
    let digest = Sha256::digest(bytes);
    let existing: Option<i64> = conn
        .query_row(
            "SELECT id FROM attachments WHERE sha256 = ?1",
            [digest.as_slice()],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        conn.execute("UPDATE attachments SET refs = refs + 1 WHERE id = ?1", [id])?;
        return Ok(id);
    }
    let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL)?;
    conn.execute(
        "INSERT INTO attachments (sha256, size, data, refs) VALUES (?1, ?2, ?3, 1)",
        params![digest.as_slice(), bytes.len(), compressed],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One more message row points at this body (COPY).
pub(crate) fn add_ref(conn: &Connection, body_id: i64) -> Result<()> {
    conn.execute("UPDATE bodies SET refs = refs + 1 WHERE id = ?1", [body_id])?;
    Ok(())
}

/// One message row less points at this body; the last one frees the body, its full-text entry
/// and its share of each attachment.
pub(crate) fn release(conn: &Connection, body_id: i64) -> Result<()> {
    let (refs, parts): (i64, String) = conn.query_row(
        "UPDATE bodies SET refs = refs - 1 WHERE id = ?1 RETURNING refs, parts",
        [body_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if refs > 0 {
        return Ok(());
    }
    for (_, attachment_id) in parse_parts(&parts)? {
        let remaining: i64 = conn.query_row(
            "UPDATE attachments SET refs = refs - 1 WHERE id = ?1 RETURNING refs",
            [attachment_id],
            |r| r.get(0),
        )?;
        if remaining <= 0 {
            conn.execute("DELETE FROM attachments WHERE id = ?1", [attachment_id])?;
        }
    }
    conn.execute("DELETE FROM body_fts WHERE rowid = ?1", [body_id])?;
    conn.execute("DELETE FROM bodies WHERE id = ?1", [body_id])?;
    Ok(())
}

/// The raw message bytes, exactly as appended.
pub(crate) fn load_raw(conn: &Connection, body_id: i64) -> Result<Vec<u8>> {
    let (compressed, parts, raw_size): (Vec<u8>, String, i64) = conn.query_row(
        "SELECT skeleton, parts, raw_size FROM bodies WHERE id = ?1",
        [body_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let skeleton = decompress(&compressed)?;
    let parts = parse_parts(&parts)?;
    if parts.is_empty() {
        return Ok(skeleton);
    }
    let mut raw = Vec::with_capacity(raw_size.max(0) as usize);
    let mut skeleton_cursor = 0usize;
    for (offset, attachment_id) in parts {
        let take = (offset as usize)
            .checked_sub(raw.len())
            .filter(|n| skeleton_cursor + n <= skeleton.len())
            .ok_or_else(|| corrupt_row("attachment offset out of range"))?;
        raw.extend_from_slice(&skeleton[skeleton_cursor..skeleton_cursor + take]);
        skeleton_cursor += take;
        let data: Vec<u8> = conn.query_row(
            "SELECT data FROM attachments WHERE id = ?1",
            [attachment_id],
            |r| r.get(0),
        )?;
        raw.extend_from_slice(&decompress(&data)?);
    }
    raw.extend_from_slice(&skeleton[skeleton_cursor..]);
    Ok(raw)
}

/// The header section of a stored message (always inside the skeleton: attachments are body
/// parts), used by header searches without reassembling attachments.
pub(crate) fn decompress_skeleton(compressed: &[u8]) -> Result<Vec<u8>> {
    decompress(compressed)
}

fn decompress(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut decoder = zstd::stream::Decoder::new(bytes)?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut decoder, MAX_DECOMPRESSED as u64 + 1),
        &mut out,
    )?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(corrupt_row("stored body exceeds the size limit"));
    }
    Ok(out)
}

fn parse_parts(json: &str) -> Result<Vec<(u64, i64)>> {
    serde_json::from_str(json).map_err(|_| corrupt_row("body part list is not valid"))
}

fn corrupt_row(reason: &str) -> Error {
    Error::Corrupt {
        path: "(mailbox)".into(),
        reason: reason.into(),
    }
}

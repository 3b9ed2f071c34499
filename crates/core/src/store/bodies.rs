//! Message bodies at rest: the raw bytes with large attachment bodies cut out (the skeleton,
//! zstd-compressed) and the attachments stored once per mailbox by SHA-256, reference-counted.
//!
//! All functions take a transaction-capable connection; callers run them inside the same
//! transaction as the message rows so reference counts never drift.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::cell::RefCell;

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
    let compressed = compress(&skeleton)?;
    conn.prepare_cached(
        "INSERT INTO bodies (skeleton, parts, raw_size, refs) VALUES (?1, ?2, ?3, 1)",
    )?
    .execute(params![
        compressed,
        serde_json::to_string(&parts).expect("parts serialize"),
        raw.len()
    ])?;
    Ok(conn.last_insert_rowid())
}

fn insert_attachment(conn: &Connection, bytes: &[u8]) -> Result<i64> {
    let digest = Sha256::digest(bytes);
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM attachments WHERE sha256 = ?1")?
        .query_row([digest.as_slice()], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        conn.prepare_cached("UPDATE attachments SET refs = refs + 1 WHERE id = ?1")?
            .execute([id])?;
        return Ok(id);
    }
    let compressed = compress(bytes)?;
    conn.prepare_cached(
        "INSERT INTO attachments (sha256, size, data, refs) VALUES (?1, ?2, ?3, 1)",
    )?
    .execute(params![digest.as_slice(), bytes.len(), compressed])?;
    Ok(conn.last_insert_rowid())
}

/// One more message row points at this body (COPY).
pub(crate) fn add_ref(conn: &Connection, body_id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE bodies SET refs = refs + 1 WHERE id = ?1")?
        .execute([body_id])?;
    Ok(())
}

/// One message row less points at this body; the last one frees the body, its full-text entry
/// and its share of each attachment.
pub(crate) fn release(conn: &Connection, body_id: i64) -> Result<()> {
    let (refs, parts): (i64, String) = conn
        .prepare_cached("UPDATE bodies SET refs = refs - 1 WHERE id = ?1 RETURNING refs, parts")?
        .query_row([body_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if refs > 0 {
        return Ok(());
    }
    for (_, attachment_id) in parse_parts(&parts)? {
        let remaining: i64 = conn
            .prepare_cached("UPDATE attachments SET refs = refs - 1 WHERE id = ?1 RETURNING refs")?
            .query_row([attachment_id], |r| r.get(0))?;
        if remaining <= 0 {
            conn.prepare_cached("DELETE FROM attachments WHERE id = ?1")?
                .execute([attachment_id])?;
        }
    }
    // A body still waiting for the index has no index entry to delete.
    let was_pending = conn
        .prepare_cached("DELETE FROM fts_pending WHERE body_id = ?1")?
        .execute([body_id])?;
    if was_pending == 0 {
        conn.prepare_cached("DELETE FROM body_fts WHERE rowid = ?1")?
            .execute([body_id])?;
    }
    conn.prepare_cached("DELETE FROM bodies WHERE id = ?1")?
        .execute([body_id])?;
    Ok(())
}

/// The raw message bytes, exactly as appended.
///
/// The hot path of POP3 RETR and IMAP FETCH BODY[]: cached statements, a reused zstd context,
/// and each piece decompressed straight into its place in one buffer of the final size.
pub(crate) fn load_raw(conn: &Connection, body_id: i64) -> Result<Vec<u8>> {
    let mut body =
        conn.prepare_cached("SELECT skeleton, parts, raw_size FROM bodies WHERE id = ?1")?;
    let mut rows = body.query([body_id])?;
    let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let compressed = row
        .get_ref(0)?
        .as_blob()
        .map_err(|_| corrupt_row("skeleton is not a blob"))?;
    let parts = row
        .get_ref(1)?
        .as_str()
        .map_err(|_| corrupt_row("body part list is not text"))?;
    let parts = parse_parts(parts)?;
    let raw_size = usize::try_from(row.get::<_, i64>(2)?)
        .ok()
        .filter(|&n| n <= MAX_DECOMPRESSED)
        .ok_or_else(|| corrupt_row("stored body size out of range"))?;
    if parts.is_empty() {
        let mut raw = vec![0u8; raw_size];
        let written = decompress_into(compressed, &mut raw)?;
        if written != raw_size {
            return Err(corrupt_row("stored body has the wrong size"));
        }
        return Ok(raw);
    }
    let skeleton = decompress(compressed)?;
    let mut raw = vec![0u8; raw_size];
    let mut attachment = conn.prepare_cached("SELECT data, size FROM attachments WHERE id = ?1")?;
    let (mut raw_cursor, mut skeleton_cursor) = (0usize, 0usize);
    for (offset, attachment_id) in parts {
        // The skeleton bytes up to this attachment, then the attachment itself.
        let take = usize::try_from(offset)
            .ok()
            .and_then(|offset| offset.checked_sub(raw_cursor))
            .filter(|n| skeleton_cursor + n <= skeleton.len() && raw_cursor + n <= raw_size)
            .ok_or_else(|| corrupt_row("attachment offset out of range"))?;
        raw[raw_cursor..raw_cursor + take]
            .copy_from_slice(&skeleton[skeleton_cursor..skeleton_cursor + take]);
        skeleton_cursor += take;
        raw_cursor += take;
        let mut rows = attachment.query([attachment_id])?;
        let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        let size = usize::try_from(row.get::<_, i64>(1)?)
            .ok()
            .filter(|n| raw_cursor + n <= raw_size)
            .ok_or_else(|| corrupt_row("attachment larger than its message"))?;
        let slot = &mut raw[raw_cursor..raw_cursor + size];
        let data = row
            .get_ref(0)?
            .as_blob()
            .map_err(|_| corrupt_row("attachment is not a blob"))?;
        if decompress_into(data, slot)? != size {
            return Err(corrupt_row("stored attachment has the wrong size"));
        }
        raw_cursor += size;
    }
    let rest = skeleton.len() - skeleton_cursor;
    if raw_cursor + rest != raw_size {
        return Err(corrupt_row("stored body has the wrong size"));
    }
    raw[raw_cursor..].copy_from_slice(&skeleton[skeleton_cursor..]);
    Ok(raw)
}

/// The header section of a stored message (always inside the skeleton: attachments are body
/// parts), used by header searches without reassembling attachments.
pub(crate) fn decompress_skeleton(compressed: &[u8]) -> Result<Vec<u8>> {
    decompress(compressed)
}

thread_local! {
    /// One zstd compression context per thread, reused for the same reason as the
    /// decompressor below: a fresh level-3 context allocates and clears its tables on every
    /// append, which costs more than compressing a small message.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per thread, reused: creating one allocates and
    /// initialises about 100 KB, more than decompressing a typical message costs. Blocking
    /// threads are pooled, so the context lives as long as its thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compress `bytes` into one zstd frame that records its decompressed size.
fn compress(bytes: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(compressor) => compressor,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        Ok(compressor.compress(bytes)?)
    })
}

/// Decompress one zstd frame into `out`, which must have room for all of it; the number of
/// bytes written.
fn decompress_into(compressed: &[u8], out: &mut [u8]) -> Result<usize> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor
            .decompress_to_buffer(compressed, out)
            .map_err(|_| corrupt_row("stored body does not decompress"))
    })
}

/// Decompress one zstd frame. Every frame we write records its size, so it is decompressed in
/// one call into a buffer of exactly that size; a frame without one is streamed, bounded.
fn decompress(compressed: &[u8]) -> Result<Vec<u8>> {
    let declared = zstd::zstd_safe::get_frame_content_size(compressed)
        .map_err(|_| corrupt_row("stored body has no valid zstd header"))?;
    let Some(size) = declared else {
        return decompress_streaming(compressed);
    };
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_DECOMPRESSED)
        .ok_or_else(|| corrupt_row("stored body exceeds the size limit"))?;
    let mut out = vec![0u8; size];
    let written = decompress_into(compressed, &mut out)?;
    out.truncate(written);
    Ok(out)
}

fn decompress_streaming(compressed: &[u8]) -> Result<Vec<u8>> {
    let mut decoder = zstd::stream::Decoder::new(compressed)?;
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

/// Octets of `raw` as line-based protocols send it: each line ending CRLF (a bare LF becomes
/// CRLF), and a last line without an ending gets one. POP3 LIST, STAT and RETR announce this
/// size (RFC 1939 section 11), since that is what RETR transfers before dot-stuffing.
pub fn crlf_size(raw: &[u8]) -> u64 {
    let bare_lf = raw
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    let final_line_ending = match raw.last() {
        None | Some(b'\n') => 0,
        Some(b'\r') => 1,
        Some(_) => 2,
    };
    (raw.len() + bare_lf + final_line_ending) as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_size_counts_line_endings_as_crlf() {
        for (raw, expected) in [
            (&b""[..], 0),
            (b"a\r\n", 3),
            (b"a\n", 3),
            (b"\n", 2),
            (b"a\nb\r\nc", 9),
            (b"a\r", 3),
            (b"a\r\r\n", 4),
            (b"x\ry\r\n", 5),
        ] {
            assert_eq!(crlf_size(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn frames_without_a_declared_size_still_decompress() {
        let mut streamed = Vec::new();
        let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut encoder, b"streamed body").unwrap();
        encoder.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        assert_eq!(decompress(&streamed).unwrap(), b"streamed body");
        let bulk = zstd::bulk::compress(b"bulk body", 3).unwrap();
        assert_eq!(decompress(&bulk).unwrap(), b"bulk body");
        assert!(decompress(b"not zstd at all").is_err());
    }
}

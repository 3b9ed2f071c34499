//! Message bodies at rest: the raw bytes with large attachment bodies cut out (the skeleton,
//! zstd-compressed) and the attachments stored once per mailbox by SHA-256, reference-counted.
//!
//! All functions take a transaction-capable connection; callers run them inside the same
//! transaction as the message rows so reference counts never drift.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// zstd level for skeletons and attachments alike (`SEALMAIL_BENCH=z` in the store bench
/// measures the choice). Text skeletons: level 1 compresses 20-25% faster than zstd's default
/// level 3 for 1-1.5 points of ratio (32.5% against 31% of raw on prose and HTML), far less
/// than the CPU those extra bytes cost to encrypt as pages. Negative levels are faster still
/// but store 40-50% of raw. Attachments are kept as transfer-encoded (base64) text, so even a
/// JPEG or ZIP still shrinks to 75% of raw by Huffman coding the 64-letter alphabet, at any
/// level from 1 up and at about the same cost; negative levels drop that coding and store
/// 100%, a third more pages to encrypt and a third more quota. Data that is truly
/// incompressible (8-bit binary parts) zstd stores in raw blocks at level 1 at about 2 GB/s,
/// so a per-attachment probe would save nothing it does not cost.
const ZSTD_LEVEL: i32 = 1;

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
    /// decompressor below: a fresh context allocates and clears its tables on every
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

    /// An empty mailbox schema in memory: the `bodies` and `attachments` tables as they are.
    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::sort::register_functions(&conn).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes).unwrap();
        bytes
    }

    /// Base64 with 76-character lines, as mail carries binary attachments.
    fn base64_lines(bytes: &[u8]) -> String {
        use base64ct::Encoding as _;
        base64ct::Base64::encode_string(bytes)
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap()))
            .collect()
    }

    /// Prose-like text of `words` words drawn from a small vocabulary, wrapped at 72 columns.
    fn repetitive_text(words: usize) -> String {
        const VOCABULARY: [&str; 12] = [
            "meeting", "budget", "the", "quarter", "review", "and", "please", "attached", "report",
            "for", "deadline", "team",
        ];
        let (mut text, mut line, mut state) = (String::new(), 0, 0x2545_f491_u32);
        for _ in 0..words {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let word = VOCABULARY[state as usize % VOCABULARY.len()];
            text.push_str(word);
            line += word.len() + 1;
            if line > 72 {
                text.push_str("\r\n");
                line = 0;
            } else {
                text.push(' ');
            }
        }
        text
    }

    fn stored_attachment_sizes(conn: &Connection) -> Vec<(usize, usize)> {
        conn.prepare("SELECT size, length(data) FROM attachments ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn messages_with_compressible_and_incompressible_attachments_round_trip_byte_for_byte() {
        let conn = store();
        let text = repetitive_text(2_000);
        let raw = format!(
            "Subject: both kinds\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\n{text}\r\n\
             --b\r\nContent-Type: image/jpeg; name=\"photo.jpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{photo}\
             --b\r\nContent-Type: text/csv; name=\"figures.csv\"\r\n\
             Content-Disposition: attachment\r\n\r\n{table}\r\n\
             --b--\r\n",
            photo = base64_lines(&random_bytes(30_000)),
            table = "region,quarter,amount\r\nnorth,Q1,1200\r\nsouth,Q1,900\r\n".repeat(200),
        );
        let parsed = super::super::parse::parse(raw.as_bytes());
        assert_eq!(
            parsed.attachment_ranges.len(),
            2,
            "both attachments must be stored apart from the skeleton"
        );
        let body_id = insert(&conn, raw.as_bytes(), &parsed.attachment_ranges).unwrap();
        assert_eq!(load_raw(&conn, body_id).unwrap(), raw.as_bytes());
        // A second message with the same attachments shares them and still reads back whole.
        let again = raw.replace("both kinds", "same parts");
        let again_id = insert(&conn, again.as_bytes(), &parsed.attachment_ranges).unwrap();
        assert_eq!(stored_attachment_sizes(&conn).len(), 2);
        assert_eq!(load_raw(&conn, again_id).unwrap(), again.as_bytes());
        assert_eq!(load_raw(&conn, body_id).unwrap(), raw.as_bytes());
    }

    #[test]
    fn incompressible_attachments_are_stored_at_about_their_raw_size() {
        let conn = store();
        let binary = random_bytes(200_000);
        let id = insert_attachment(&conn, &binary).unwrap();
        let (size, stored) = stored_attachment_sizes(&conn)[0];
        assert_eq!(size, binary.len());
        assert!(
            stored <= binary.len() + 64,
            "{stored} bytes stored for {size} incompressible bytes"
        );
        let data: Vec<u8> = conn
            .query_row("SELECT data FROM attachments WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(decompress(&data).unwrap(), binary);
    }

    #[test]
    fn base64_of_incompressible_data_still_shrinks_to_three_quarters() {
        // Attachments are stored transfer-encoded: 6 bits of information per 8-bit character,
        // which entropy coding recovers. Levels that skip it (zstd's negative ones) store 100%.
        let conn = store();
        let encoded = base64_lines(&random_bytes(60_000));
        insert_attachment(&conn, encoded.as_bytes()).unwrap();
        let (size, stored) = stored_attachment_sizes(&conn)[0];
        assert_eq!(size, encoded.len());
        assert!(
            stored * 100 <= size * 78,
            "{stored} bytes stored for {size} bytes of base64"
        );
    }

    #[test]
    fn text_skeletons_compress_to_under_a_third() {
        let conn = store();
        let raw = format!(
            "Subject: words\r\nContent-Type: text/plain\r\n\r\n{}",
            repetitive_text(6_000)
        );
        let body_id = insert(&conn, raw.as_bytes(), &[]).unwrap();
        let skeleton: Vec<u8> = conn
            .query_row(
                "SELECT skeleton FROM bodies WHERE id = ?1",
                [body_id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            skeleton.len() * 100 <= raw.len() * 30,
            "skeleton stored in {} bytes for {} bytes of text",
            skeleton.len(),
            raw.len()
        );
        // Every frame records its size, which both read paths use to decompress in one call.
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&skeleton).unwrap(),
            Some(raw.len() as u64)
        );
        assert_eq!(load_raw(&conn, body_id).unwrap(), raw.as_bytes());
    }
}

//! The eml-zip export format: one `.eml` file per message under its folder's path, and a
//! manifest (`sealmail-manifest.json`, the archive's last entry) that records what a file name
//! cannot: the exact folder path, special use and subscription of every folder, and each
//! message's flags and internal date.
//!
//! Any unzip tool and mail client can read the `.eml` files; [`crate::import`] reads the whole
//! archive back into a mailbox with flags and dates. Without a manifest (an archive made by
//! hand), every `.eml` entry is imported into the folder named by its directory.
//!
//! Writing is streamed: one message at a time is fetched, compressed and written, so memory
//! does not grow with the mailbox (only the manifest's few dozen bytes per message, the same
//! order as the zip central directory every zip writer keeps).

use super::export::{ExportReport, summaries_in_batches};
use crate::error::{Error, Result};
use crate::store::{Flags, Mailbox};
use crate::time::{civil_from_unix, parse_iso8601_utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{Read, Seek, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Name of the manifest entry, at the archive's root.
pub const EML_ZIP_MANIFEST: &str = "sealmail-manifest.json";
/// The largest manifest read (about two million messages).
const MAX_MANIFEST_BYTES: u64 = 512 << 20;
/// The manifest's `format` value; a reader refuses any other.
const MANIFEST_FORMAT: &str = "sealmail-eml-zip/1";

/// The manifest of an eml-zip archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmlZipManifest {
    pub format: String,
    /// Every folder, in the mailbox's listing order (empty ones included).
    pub folders: Vec<EmlZipFolder>,
    /// Every message, in folder then UID order (the order an import appends them in).
    pub messages: Vec<EmlZipMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmlZipFolder {
    pub path: String,
    pub special_use: Option<String>,
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmlZipMessage {
    /// The entry holding the message, e.g. `Work/2026/0000000003.eml`.
    pub file: String,
    pub folder: String,
    pub uid: u32,
    /// ISO-8601 UTC.
    pub internal_date: String,
    pub flags: Flags,
}

/// Write every folder of `mailbox` as an eml-zip archive to a file (or any seekable `out`).
/// `progress` is called after every message.
pub fn write_eml_zip<W: Write + Seek>(
    mailbox: &Mailbox,
    out: W,
    progress: impl FnMut(&ExportReport),
) -> Result<(ExportReport, W)> {
    let mut zip = ZipWriter::new(out);
    let report = write_entries(mailbox, &mut zip, progress)?;
    Ok((report, zip.finish().map_err(archive_error)?))
}

/// [`write_eml_zip`] to a stream that cannot seek (standard output, a pipe): each entry's
/// sizes follow its data in a data descriptor, which every unzip tool reads.
pub fn write_eml_zip_to_stream<W: Write>(
    mailbox: &Mailbox,
    out: W,
    progress: impl FnMut(&ExportReport),
) -> Result<(ExportReport, W)> {
    let mut zip = ZipWriter::new_stream(out);
    let report = write_entries(mailbox, &mut zip, progress)?;
    Ok((report, zip.finish().map_err(archive_error)?.into_inner()))
}

fn write_entries<W: Write + Seek>(
    mailbox: &Mailbox,
    zip: &mut ZipWriter<W>,
    mut progress: impl FnMut(&ExportReport),
) -> Result<ExportReport> {
    let folders = mailbox.list_folders()?;
    let mut report = ExportReport {
        total_messages: folders.iter().map(|f| u64::from(f.messages)).sum(),
        total_bytes: folders.iter().map(|f| f.size).sum(),
        ..ExportReport::default()
    };
    let mut manifest = EmlZipManifest {
        format: MANIFEST_FORMAT.into(),
        ..EmlZipManifest::default()
    };
    let mut used_dirs = HashSet::new();
    for folder in &folders {
        manifest.folders.push(EmlZipFolder {
            path: folder.path.clone(),
            special_use: folder.special_use.clone(),
            subscribed: folder.subscribed,
        });
        let dir = unique_entry_dir(&folder.path, &mut used_dirs);
        for summary in summaries_in_batches(mailbox, &folder.path)? {
            let summary = summary?;
            let raw = mailbox.fetch_raw(&folder.path, summary.uid)?;
            let file = format!("{dir}/{:010}.eml", summary.uid);
            let internal = parse_iso8601_utc(&summary.internal_date).unwrap_or(0);
            zip.start_file(file.as_str(), entry_options(internal))
                .map_err(archive_error)?;
            zip.write_all(&raw)?;
            report.messages += 1;
            report.bytes += raw.len() as u64;
            manifest.messages.push(EmlZipMessage {
                file,
                folder: folder.path.clone(),
                uid: summary.uid,
                internal_date: summary.internal_date,
                flags: summary.flags,
            });
            progress(&report);
        }
        report.folders += 1;
        progress(&report);
    }
    zip.start_file(EML_ZIP_MANIFEST, entry_options(crate::time::now_unix()))
        .map_err(archive_error)?;
    serde_json::to_writer(&mut *zip, &manifest).map_err(|e| Error::Io(e.into()))?;
    Ok(report)
}

/// One message read back from an archive.
#[derive(Debug)]
pub(crate) struct ArchivedMessage {
    /// Where it came from, for error reports: `archive.zip:INBOX/0000000001.eml`.
    pub origin: String,
    pub folder: String,
    pub raw: Vec<u8>,
    pub flags: Flags,
    pub internal_date: Option<i64>,
}

/// Read an eml-zip archive: `folder` is called for every folder (in order, before its
/// messages), `message` for every message. Entries are read one at a time, each at most
/// `max_message_size` bytes (a larger one is handed over truncated to that size plus one byte,
/// so the store refuses it as too large without the archive inflating it all into memory).
pub(crate) fn read_eml_zip(
    path: &Path,
    max_message_size: u64,
    mut folder: impl FnMut(&EmlZipFolder) -> Result<()>,
    mut message: impl FnMut(ArchivedMessage) -> Result<()>,
) -> Result<()> {
    let invalid = |reason: String| Error::InvalidArchive {
        path: path.into(),
        reason,
    };
    let mut archive =
        ZipArchive::new(std::fs::File::open(path)?).map_err(|e| invalid(e.to_string()))?;
    let manifest = if archive.index_for_name(EML_ZIP_MANIFEST).is_some() {
        let entry = archive
            .by_name(EML_ZIP_MANIFEST)
            .map_err(|e| invalid(e.to_string()))?;
        // A manifest is a few dozen bytes per message; the bound keeps a hostile archive
        // from inflating without limit.
        let manifest: EmlZipManifest = serde_json::from_reader(entry.take(MAX_MANIFEST_BYTES))
            .map_err(|e| invalid(format!("{EML_ZIP_MANIFEST}: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "{EML_ZIP_MANIFEST}: format {:?}, expected {MANIFEST_FORMAT:?}",
                manifest.format
            )));
        }
        manifest
    } else {
        manifest_from_entry_names(&archive)
    };
    let mut current_folder: Option<&str> = None;
    for listed in &manifest.folders {
        folder(listed)?;
    }
    for entry in &manifest.messages {
        if current_folder != Some(entry.folder.as_str())
            && !manifest.folders.iter().any(|f| f.path == entry.folder)
        {
            folder(&EmlZipFolder {
                path: entry.folder.clone(),
                special_use: None,
                subscribed: true,
            })?;
        }
        current_folder = Some(&entry.folder);
        let mut raw = Vec::new();
        archive
            .by_name(&entry.file)
            .map_err(|e| invalid(format!("{}: {e}", entry.file)))?
            .take(max_message_size.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| invalid(format!("{}: {e}", entry.file)))?;
        message(ArchivedMessage {
            origin: format!("{}:{}", path.display(), entry.file),
            folder: entry.folder.clone(),
            raw,
            flags: entry.flags.clone(),
            internal_date: parse_iso8601_utc(&entry.internal_date),
        })?;
    }
    Ok(())
}

/// For an archive without a manifest: every `.eml` entry, sorted by name, in the folder its
/// directory names (`INBOX` for the root), without flags.
fn manifest_from_entry_names<R: Read + Seek>(archive: &ZipArchive<R>) -> EmlZipManifest {
    let mut names: Vec<&str> = archive
        .file_names()
        .filter(|name| name.to_ascii_lowercase().ends_with(".eml"))
        .collect();
    names.sort_unstable();
    let messages = names
        .into_iter()
        .map(|name| {
            let folder = match name.rsplit_once('/') {
                Some((dir, _)) if !dir.is_empty() => dir.to_owned(),
                _ => "INBOX".to_owned(),
            };
            EmlZipMessage {
                file: name.to_owned(),
                folder,
                uid: 0,
                internal_date: String::new(),
                flags: Flags::default(),
            }
        })
        .collect();
    EmlZipManifest {
        format: MANIFEST_FORMAT.into(),
        folders: Vec::new(),
        messages,
    }
}

/// Deflate, dated with the message's internal date (zip dates are local-time-less MS-DOS
/// dates from 1980 to 2107; outside that range the entry keeps the format's default).
fn entry_options(unix: i64) -> SimpleFileOptions {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o600);
    let (y, mo, d, h, mi, s) = civil_from_unix(unix);
    match zip::DateTime::from_date_and_time(
        u16::try_from(y).unwrap_or(0),
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
    ) {
        Ok(date) => options.last_modified_time(date),
        Err(_) => options,
    }
}

/// The archive directory for a folder: its path with every level made safe to extract
/// anywhere (no `..`, no drive letters or backslashes, no control characters), and made
/// unique if two folders come out the same. The manifest keeps the real path.
fn unique_entry_dir(folder: &str, used: &mut HashSet<String>) -> String {
    let safe: Vec<String> = folder
        .split('/')
        .map(|level| {
            let cleaned: String = level
                .chars()
                .map(|c| match c {
                    '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
                    c if c.is_control() => '_',
                    c => c,
                })
                .collect();
            match cleaned.as_str() {
                "" | "." | ".." => cleaned.replace('.', "_") + "_",
                _ => cleaned,
            }
        })
        .collect();
    let base = safe.join("/");
    let mut candidate = base.clone();
    let mut n = 2;
    while !used.insert(candidate.to_lowercase()) {
        candidate = format!("{base}~{n}");
        n += 1;
    }
    candidate
}

fn archive_error(error: zip::result::ZipError) -> Error {
    match error {
        zip::result::ZipError::Io(io) => Error::Io(io),
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_dirs_are_safe_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(unique_entry_dir("INBOX", &mut used), "INBOX");
        assert_eq!(unique_entry_dir("Work/2026", &mut used), "Work/2026");
        assert_eq!(unique_entry_dir("../etc", &mut used), "___/etc");
        assert_eq!(unique_entry_dir("a:b", &mut used), "a_b");
        assert_eq!(unique_entry_dir("a_b", &mut used), "a_b~2");
        assert_eq!(unique_entry_dir("inbox", &mut used), "inbox~2");
        assert_eq!(unique_entry_dir("x//y", &mut used), "x/_/y");
    }
}

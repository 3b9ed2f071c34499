//! Export a mailbox to the formats other mail software reads: Maildir (Maildir++ folders,
//! flags in the `:2,` suffix) and mbox (mboxrd, one file per folder).
//!
//! What survives: every message byte-for-byte, its folder and its internal date (Maildir: the
//! file's modification time; mbox: the `From ` line). Flags survive in Maildir only, and only
//! those it has letters for: \Draft (D), \Flagged (F), $Forwarded (P), \Answered (R),
//! \Seen (S), \Deleted (T); other keywords are dropped. mbox carries no flags: sealmail does
//! not add `Status:`/`X-Status:` headers, so exported messages stay exactly as received.
//! mbox cannot represent a message that does not end in a line break; one is added.
//! eml-zip (one `.eml` per message and a manifest with flags) is in [`super::eml_zip`].
//! [`crate::import`] reads all three formats back.
//!
//! This is the one place sealmail writes mail in plaintext, because the user asked for it.

use crate::error::{Error, Result};
use crate::store::{Flags, Mailbox, MessageSummary, UidSet};
use crate::time::{civil_from_unix, parse_iso8601_utc};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Maildir++ tree: INBOX at the root, other folders as `.Name.Sub` directories.
    Maildir,
    /// A directory with one mboxrd file per folder: `INBOX.mbox`, `Work/2026.mbox`, ...
    Mbox,
    /// One zip file: an `.eml` per message under its folder's path, and a manifest with
    /// folders, flags and internal dates (see [`super::eml_zip`]).
    EmlZip,
}

/// Running totals, handed to the progress callback after every folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    /// What the whole export will write (for a progress bar): messages and their bytes.
    pub total_messages: u64,
    pub total_bytes: u64,
    /// Maildir++ separates folder levels with `.`: a folder whose name has a `.` is written
    /// under a name with `_` instead (original path, path written).
    pub renamed_folders: Vec<(String, String)>,
}

/// Export every folder of `mailbox` into `destination`: for Maildir and mbox a directory
/// (created if missing; must be empty), for eml-zip a new file (must not exist).
pub fn export(
    mailbox: &Mailbox,
    format: ExportFormat,
    destination: &Path,
    mut progress: impl FnMut(&ExportReport),
) -> Result<ExportReport> {
    let maildir = match format {
        ExportFormat::EmlZip => {
            // A new file only: never overwrite what is there.
            let file = File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(destination)?;
            let (report, file) =
                super::eml_zip::write_eml_zip(mailbox, BufWriter::new(file), progress)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            return Ok(report);
        }
        ExportFormat::Maildir => true,
        ExportFormat::Mbox => false,
    };
    std::fs::create_dir_all(destination)?;
    if std::fs::read_dir(destination)?.next().is_some() {
        return Err(Error::InvalidArgument(format!(
            "export destination {} is not empty",
            destination.display()
        )));
    }
    let folders = mailbox.list_folders()?;
    let mut report = ExportReport {
        total_messages: folders.iter().map(|f| u64::from(f.messages)).sum(),
        total_bytes: folders.iter().map(|f| f.size).sum(),
        ..ExportReport::default()
    };
    for folder in folders {
        if maildir {
            let (dir, written_as) = maildir_folder_dir(destination, &folder.path);
            if written_as != folder.path {
                report
                    .renamed_folders
                    .push((folder.path.clone(), written_as));
            }
            write_maildir_folder(mailbox, &folder.path, &dir, &mut report)?;
        } else {
            let file = mbox_file_path(destination, &folder.path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = BufWriter::new(File::create(&file)?);
            let (messages, bytes) = write_mbox_folder(mailbox, &folder.path, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            report.messages += messages;
            report.bytes += bytes;
        }
        report.folders += 1;
        progress(&report);
    }
    Ok(report)
}

/// Write one folder as mboxrd to `out`; returns (messages, message bytes). Lines of a message
/// that start with `From ` after any number of `>` get one more `>`.
pub fn write_mbox_folder(
    mailbox: &Mailbox,
    folder: &str,
    out: &mut impl Write,
) -> Result<(u64, u64)> {
    let (mut messages, mut bytes) = (0, 0);
    for summary in summaries_in_batches(mailbox, folder)? {
        let summary = summary?;
        let raw = mailbox.fetch_raw(folder, summary.uid)?;
        writeln!(
            out,
            "From MAILER-DAEMON {}",
            asctime(internal_unix(&summary))
        )?;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            if line[quotes..].starts_with(b"From ") {
                out.write_all(b">")?;
            }
            out.write_all(line)?;
        }
        // The blank line that ends an mbox entry, in the message's own line-ending style; the
        // importer removes exactly this line again.
        let separator: &[u8] = match () {
            _ if raw.ends_with(b"\r\n") => b"\r\n",
            _ if raw.ends_with(b"\n") => b"\n",
            _ => b"\n\n",
        };
        out.write_all(separator)?;
        messages += 1;
        bytes += raw.len() as u64;
    }
    Ok((messages, bytes))
}

fn write_maildir_folder(
    mailbox: &Mailbox,
    folder: &str,
    dir: &Path,
    report: &mut ExportReport,
) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    if folder != "INBOX" {
        // Maildir++ marks subfolders with this empty file.
        File::create(dir.join("maildirfolder"))?;
    }
    for summary in summaries_in_batches(mailbox, folder)? {
        let summary = summary?;
        let raw = mailbox.fetch_raw(folder, summary.uid)?;
        let internal = internal_unix(&summary);
        // Unique within the folder (the UID), and sorted by UID so an import keeps the order.
        let base = format!("{internal}.U{:010}.sealmail", summary.uid);
        let temporary = dir.join("tmp").join(&base);
        let file = File::create(&temporary)?;
        let mut writer = BufWriter::new(file);
        writer.write_all(&raw)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        let modified =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(internal.max(0) as u64);
        file.set_modified(modified)?;
        file.sync_all()?;
        let name = format!("{base}:2,{}", maildir_flag_letters(&summary.flags));
        std::fs::rename(&temporary, dir.join("cur").join(name))?;
        report.messages += 1;
        report.bytes += raw.len() as u64;
    }
    Ok(())
}

/// The summaries of a folder in UID order, loaded a batch at a time so a folder of any size
/// exports in bounded memory.
pub(crate) fn summaries_in_batches<'a>(
    mailbox: &'a Mailbox,
    folder: &'a str,
) -> Result<impl Iterator<Item = Result<MessageSummary>> + 'a> {
    const BATCH: usize = 256;
    let uids: Vec<u32> = mailbox
        .message_states(folder)?
        .into_iter()
        .map(|state| state.uid)
        .collect();
    let batches: Vec<Vec<u32>> = uids.chunks(BATCH).map(<[u32]>::to_vec).collect();
    Ok(batches.into_iter().flat_map(move |batch| {
        match mailbox.summaries(folder, &UidSet::from_uids(batch)) {
            Ok(summaries) => summaries.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        }
    }))
}

/// The Maildir++ directory of a folder and the folder path it represents.
fn maildir_folder_dir(root: &Path, folder: &str) -> (PathBuf, String) {
    if folder == "INBOX" {
        return (root.to_path_buf(), folder.to_owned());
    }
    let written: Vec<String> = folder
        .split('/')
        .map(|part| part.replace('.', "_"))
        .collect();
    (
        root.join(format!(".{}", written.join("."))),
        written.join("/"),
    )
}

fn mbox_file_path(root: &Path, folder: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    let parts: Vec<&str> = folder.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        path.push(part);
    }
    path.push(format!("{}.mbox", parts[parts.len() - 1]));
    path
}

/// Maildir info letters, in the ASCII order the specification requires.
fn maildir_flag_letters(flags: &Flags) -> String {
    let forwarded = flags
        .keywords
        .iter()
        .any(|k| k.eq_ignore_ascii_case("$Forwarded"));
    [
        (flags.draft, 'D'),
        (flags.flagged, 'F'),
        (forwarded, 'P'),
        (flags.answered, 'R'),
        (flags.seen, 'S'),
        (flags.deleted, 'T'),
    ]
    .into_iter()
    .filter_map(|(set, letter)| set.then_some(letter))
    .collect()
}

fn internal_unix(summary: &MessageSummary) -> i64 {
    parse_iso8601_utc(&summary.internal_date).unwrap_or(0)
}

/// `Sat Nov 28 20:21:38 2026`, the date format of an mbox `From ` line (UTC).
fn asctime(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = civil_from_unix(unix);
    let weekday = DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize];
    let month = MONTHS[(mo - 1) as usize];
    format!("{weekday} {month} {d:2} {h:02}:{mi:02}:{s:02} {y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_known_answers() {
        assert_eq!(asctime(1_795_897_298), "Sat Nov 28 20:21:38 2026");
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn flag_letters_are_sorted() {
        let flags = Flags {
            seen: true,
            answered: true,
            flagged: true,
            deleted: true,
            draft: true,
            keywords: vec!["$Forwarded".into(), "$Junk".into()],
        };
        assert_eq!(maildir_flag_letters(&flags), "DFPRST");
        assert_eq!(maildir_flag_letters(&Flags::default()), "");
    }

    #[test]
    fn folder_paths() {
        let root = Path::new("/x");
        assert_eq!(maildir_folder_dir(root, "INBOX").0, Path::new("/x"));
        assert_eq!(
            maildir_folder_dir(root, "Work/2026"),
            (PathBuf::from("/x/.Work.2026"), "Work/2026".to_string())
        );
        assert_eq!(maildir_folder_dir(root, "v1.2").1, "v1_2".to_string());
        assert_eq!(
            mbox_file_path(root, "Work/2026"),
            Path::new("/x/Work/2026.mbox")
        );
    }
}

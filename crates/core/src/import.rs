//! Import mail from the formats users migrate with: single `.eml` files, mbox files (mboxrd and
//! mboxo, `>From ` quoting undone), Maildir folders (Maildir++ subfolders become folders,
//! flags from the `:2,` suffix are kept) and eml-zip archives (`sealmail export --format
//! eml-zip`: folders, flags and internal dates from its manifest).
//!
//! Messages are appended in batches, each batch one transaction. A message the store refuses
//! (too large, over quota) is reported and the import goes on; nothing already stored is touched.

use crate::error::{Error, Result};
use crate::store::{AppendOptions, Flags, Mailbox};
use crate::time::days_from_civil;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Messages per transaction: large enough to amortize commits, small enough to bound memory.
const BATCH_MESSAGES: usize = 100;
const BATCH_BYTES: usize = 32 << 20;

/// Where messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    Eml(PathBuf),
    Mbox(PathBuf),
    Maildir(PathBuf),
    /// A zip of `.eml` files, with or without sealmail's manifest.
    EmlZip(PathBuf),
}

impl ImportSource {
    /// Recognize a path: a directory with `cur/` or `new/` is a Maildir, a file starting with a
    /// zip signature is an eml-zip archive, a file whose first line starts with `From ` is an
    /// mbox, any other file is one message.
    pub fn detect(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if path.join("cur").is_dir() || path.join("new").is_dir() {
                return Ok(Self::Maildir(path.into()));
            }
            return Err(Error::InvalidArgument(format!(
                "{} is a directory but not a Maildir (no cur/ or new/)",
                path.display()
            )));
        }
        let mut first = [0u8; 5];
        let read = std::io::Read::read(&mut File::open(path)?, &mut first)?;
        if read >= 4 && &first[..4] == b"PK\x03\x04" {
            Ok(Self::EmlZip(path.into()))
        } else if read == 5 && &first == b"From " {
            Ok(Self::Mbox(path.into()))
        } else {
            Ok(Self::Eml(path.into()))
        }
    }
}

/// Running totals, handed to the progress callback after every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub bytes: u64,
    /// Messages the store refused, with where they came from and why.
    pub failed: Vec<(String, String)>,
}

/// One message read from a source, not yet stored.
struct Pending {
    origin: String,
    folder: String,
    raw: Vec<u8>,
    options: AppendOptions,
}

/// Import `source` into `folder` (Maildir++ subfolders go below their own names).
pub fn import(
    mailbox: &mut Mailbox,
    source: &ImportSource,
    folder: &str,
    mut progress: impl FnMut(&ImportReport),
) -> Result<ImportReport> {
    let mut batcher = Batcher {
        mailbox,
        batch: Vec::new(),
        batch_bytes: 0,
        report: ImportReport::default(),
    };
    match source {
        ImportSource::Eml(path) => {
            let raw = std::fs::read(path)?;
            let options = AppendOptions {
                internal_date: modified_unix(path),
                ..Default::default()
            };
            batcher.push(
                Pending {
                    origin: path.display().to_string(),
                    folder: folder.into(),
                    raw,
                    options,
                },
                &mut progress,
            )?;
        }
        ImportSource::Mbox(path) => read_mbox(path, |origin, raw, date| {
            let options = AppendOptions {
                internal_date: date,
                ..Default::default()
            };
            batcher.push(
                Pending {
                    origin,
                    folder: folder.into(),
                    raw,
                    options,
                },
                &mut progress,
            )
        })?,
        ImportSource::Maildir(root) => {
            for (dir, target) in maildir_folders(root, folder)? {
                if batcher.mailbox.folder(&target).is_err() {
                    batcher.flush(&mut progress)?;
                    batcher.mailbox.create_folder(&target, None)?;
                }
                for (path, flags) in maildir_messages(&dir)? {
                    let raw = std::fs::read(&path)?;
                    let options = AppendOptions {
                        flags,
                        internal_date: modified_unix(&path),
                    };
                    let origin = path.display().to_string();
                    batcher.push(
                        Pending {
                            origin,
                            folder: target.clone(),
                            raw,
                            options,
                        },
                        &mut progress,
                    )?;
                }
            }
        }
        ImportSource::EmlZip(path) => {
            let max_size = batcher.mailbox.max_message_size();
            // Both callbacks use the batcher; a folder is created before its first message
            // is pushed (a pending batch of another folder can wait: it names its own).
            let batcher = std::cell::RefCell::new(&mut batcher);
            let target_of = |archived: &str| {
                if archived == "INBOX" {
                    folder.to_owned()
                } else if folder == "INBOX" {
                    archived.to_owned()
                } else {
                    format!("{folder}/{archived}")
                }
            };
            crate::backup::read_eml_zip(
                path,
                max_size,
                |listed| {
                    let mut batcher = batcher.borrow_mut();
                    let target = target_of(&listed.path);
                    if batcher.mailbox.folder(&target).is_err() {
                        let created = batcher
                            .mailbox
                            .create_folder(&target, listed.special_use.as_deref());
                        if created.is_err() {
                            // The special use may already belong to another folder here.
                            batcher.mailbox.create_folder(&target, None)?;
                        }
                        batcher.mailbox.set_subscribed(&target, listed.subscribed)?;
                    }
                    Ok(())
                },
                |message| {
                    batcher.borrow_mut().push(
                        Pending {
                            origin: message.origin,
                            folder: target_of(&message.folder),
                            raw: message.raw,
                            options: AppendOptions {
                                flags: message.flags,
                                internal_date: message.internal_date,
                            },
                        },
                        &mut progress,
                    )
                },
            )?;
        }
    }
    batcher.flush(&mut progress)?;
    // The imported mail goes into the full-text index now, in the importer's time, rather
    // than at the owner's first search.
    batcher.mailbox.index_pending_in_batches(usize::MAX)?;
    Ok(batcher.report)
}

struct Batcher<'a> {
    mailbox: &'a mut Mailbox,
    batch: Vec<Pending>,
    batch_bytes: usize,
    report: ImportReport,
}

impl Batcher<'_> {
    fn push(&mut self, message: Pending, progress: &mut impl FnMut(&ImportReport)) -> Result<()> {
        let same_folder = self
            .batch
            .first()
            .is_none_or(|first| first.folder == message.folder);
        if !same_folder {
            self.flush(progress)?;
        }
        self.batch_bytes += message.raw.len();
        self.batch.push(message);
        if self.batch.len() >= BATCH_MESSAGES || self.batch_bytes >= BATCH_BYTES {
            self.flush(progress)?;
        }
        Ok(())
    }

    fn flush(&mut self, progress: &mut impl FnMut(&ImportReport)) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let items: Vec<(&[u8], AppendOptions)> = batch
            .iter()
            .map(|m| (m.raw.as_slice(), m.options.clone()))
            .collect();
        match self.mailbox.append_many(&first.folder, &items) {
            Ok(_) => self.count(&batch),
            // One bad message must not sink its batch: retry one by one to isolate it.
            Err(Error::MessageTooLarge { .. } | Error::QuotaExceeded { .. }) => {
                for message in &batch {
                    match self
                        .mailbox
                        .append(&message.folder, &message.raw, &message.options)
                    {
                        Ok(_) => self.count(std::slice::from_ref(message)),
                        Err(e @ (Error::MessageTooLarge { .. } | Error::QuotaExceeded { .. })) => {
                            self.report
                                .failed
                                .push((message.origin.clone(), e.to_string()));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        progress(&self.report);
        Ok(())
    }

    fn count(&mut self, messages: &[Pending]) {
        self.report.imported += messages.len() as u64;
        self.report.bytes += messages.iter().map(|m| m.raw.len() as u64).sum::<u64>();
    }
}

/// Split an mbox into messages. A separator is a line starting with `From ` at the start of the
/// file or after an empty line; `>From `-quoted lines (any number of `>`) lose one `>`.
/// Line endings are kept as they are in the file.
fn read_mbox(
    path: &Path,
    mut each: impl FnMut(String, Vec<u8>, Option<i64>) -> Result<()>,
) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut line = Vec::new();
    let mut current: Option<(Vec<u8>, Option<i64>, u64)> = None;
    let mut previous_blank = true;
    let mut line_number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_number += 1;
        if previous_blank && line.starts_with(b"From ") {
            if let Some((raw, date, start)) = current.take() {
                each(
                    format!("{}:{start}", path.display()),
                    strip_separator_blank(raw),
                    date,
                )?;
            }
            current = Some((Vec::new(), from_line_date(&line), line_number));
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let Some((raw, _, _)) = current.as_mut() else {
            return Err(Error::InvalidArgument(format!(
                "{}: not an mbox file",
                path.display()
            )));
        };
        let quoted = line.iter().take_while(|&&b| b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            raw.extend_from_slice(&line[1..]);
        } else {
            raw.extend_from_slice(&line);
        }
    }
    if let Some((raw, date, start)) = current {
        each(
            format!("{}:{start}", path.display()),
            strip_separator_blank(raw),
            date,
        )?;
    }
    Ok(())
}

/// The blank line before the next `From ` belongs to the mbox format, not to the message.
fn strip_separator_blank(mut raw: Vec<u8>) -> Vec<u8> {
    if raw.ends_with(b"\r\n\r\n") {
        raw.truncate(raw.len() - 2);
    } else if raw.ends_with(b"\n\n") {
        raw.truncate(raw.len() - 1);
    }
    raw
}

/// The date of a `From sender Sat Nov 28 10:00:00 2026` line, if it has a readable one.
fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = String::from_utf8_lossy(line);
    let fields: Vec<&str> = text.split_whitespace().collect();
    // From, sender, weekday, month, day, time, year (an optional zone may sit before the year).
    let year: i64 = fields.last()?.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| fields.get(3).is_some_and(|f| f.eq_ignore_ascii_case(m)))? as i64
        + 1;
    let day: i64 = fields.get(4)?.parse().ok()?;
    let mut hms = fields.get(5)?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (
        hms.next()??,
        hms.next()??,
        hms.next().flatten().unwrap_or(0),
    );
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// The Maildir itself and its Maildir++ subfolders (`.Work.2026` -> `<folder>/Work/2026`;
/// `.Sent` etc. at the top level map onto the folders of the same name).
fn maildir_folders(root: &Path, folder: &str) -> Result<Vec<(PathBuf, String)>> {
    let mut out = vec![(root.to_path_buf(), folder.to_string())];
    let mut subfolders = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sub) = name.strip_prefix('.')
            && !sub.is_empty()
            && !sub.starts_with('.')
            && entry.path().join("cur").is_dir()
        {
            let sub_path = sub.replace('.', "/");
            let target = if folder == "INBOX" {
                sub_path
            } else {
                format!("{folder}/{sub_path}")
            };
            subfolders.push((entry.path(), target));
        }
    }
    subfolders.sort();
    out.extend(subfolders);
    Ok(out)
}

/// Files in `new/` and `cur/` with their flags, sorted by name (delivery order for most
/// Maildir writers, whose names start with a timestamp).
fn maildir_messages(dir: &Path) -> Result<Vec<(PathBuf, Flags)>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.push((entry.path(), maildir_flags(&name)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Flags of a Maildir file name's `:2,` info part.
fn maildir_flags(name: &str) -> Flags {
    let mut flags = Flags::default();
    let Some((_, info)) = name.rsplit_once(":2,").or_else(|| name.rsplit_once("!2,")) else {
        return flags;
    };
    for letter in info.chars() {
        match letter {
            'D' => flags.draft = true,
            'F' => flags.flagged = true,
            'P' => flags.keywords.push("$Forwarded".into()),
            'R' => flags.answered = true,
            'S' => flags.seen = true,
            'T' => flags.deleted = true,
            _ => {}
        }
    }
    flags
}

fn modified_unix(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_dates() {
        assert_eq!(
            from_line_date(b"From alice@example.org Sat Nov 28 20:21:38 2026\n"),
            Some(1_795_897_298)
        );
        assert_eq!(from_line_date(b"From MAILER-DAEMON garbage\n"), None);
        assert_eq!(from_line_date(b"From \n"), None);
    }

    #[test]
    fn maildir_flag_letters() {
        let flags = maildir_flags("1700000000.M1P2.host,S=123:2,FRS");
        assert!(flags.flagged && flags.answered && flags.seen && !flags.draft);
        assert_eq!(maildir_flags("1700000000.M1P2.host"), Flags::default());
        assert_eq!(
            maildir_flags("x:2,P").keywords,
            vec!["$Forwarded".to_string()]
        );
    }
}

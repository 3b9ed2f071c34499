//! End-to-end tests of the encrypted mailbox store through its public API.

use sealmail_core::store::{
    AppendOptions, FlagMode, Flags, KeyUsed, Mailbox, RotationStep, SCHEMA_VERSION, SearchKey,
    UidSet,
};
use sealmail_core::{Error, MailboxKey};
use std::path::{Path, PathBuf};

const MARKER: &str = "zq7MARKERplaintext9x";

fn new_mailbox(dir: &Path) -> (Mailbox, MailboxKey, PathBuf) {
    let key = MailboxKey::generate();
    let path = dir.join("mailboxes/ab/abcdef.sqlite");
    let mailbox = Mailbox::create(&path, &key).expect("create mailbox");
    (mailbox, key, path)
}

/// A multipart message with a text part and a base64 attachment of `attachment` bytes.
fn message_with_attachment(subject: &str, body: &str, attachment: &[u8]) -> Vec<u8> {
    let encoded = base64_lines(attachment);
    format!(
        "From: Alice Example <alice@example.org>\r\n\
         To: bob@example.net\r\n\
         Subject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{subject}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {encoded}\
         --b1--\r\n"
    )
    .into_bytes()
}

fn simple_message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@example.com>\r\nTo: Dave <dave@example.com>\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 09:30:00 +0100\r\nMessage-ID: <{subject}.id@example.com>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn base64_lines(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let mut line = 0;
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        line += 4;
        if line == 76 {
            out.push_str("\r\n");
            line = 0;
        }
    }
    if line > 0 {
        out.push_str("\r\n");
    }
    out
}

fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}

#[test]
fn new_mailbox_has_default_folders_with_special_use() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, _, _) = new_mailbox(dir.path());
    let folders = mailbox.list_folders().unwrap();
    let names: Vec<_> = folders.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        names,
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    let sent = folders.iter().find(|f| f.path == "Sent").unwrap();
    assert_eq!(sent.special_use.as_deref(), Some("\\Sent"));
    let validities: std::collections::HashSet<_> = folders.iter().map(|f| f.uidvalidity).collect();
    assert_eq!(
        validities.len(),
        folders.len(),
        "UIDVALIDITY must differ per folder"
    );
}

#[test]
fn marker_never_appears_in_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let attachment = format!("{MARKER} inside the attachment {}", "x".repeat(4000));
    for i in 0..20 {
        let raw = message_with_attachment(
            &format!("{MARKER} subject {i}"),
            &format!("body {MARKER}"),
            attachment.as_bytes(),
        );
        mailbox
            .append("INBOX", &raw, &AppendOptions::default())
            .unwrap();
    }
    // Base64 hides the attachment marker already; check the plain subject/body marker, in the
    // WAL before the checkpoint and in the main file after it.
    assert_eq!(
        files_contain(dir.path(), MARKER.as_bytes()),
        Vec::<PathBuf>::new()
    );
    mailbox.checkpoint().unwrap();
    assert_eq!(
        files_contain(dir.path(), MARKER.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // The search index finds it, so the marker really was stored.
    let hits = mailbox
        .search("INBOX", &SearchKey::Text(MARKER.into()))
        .unwrap();
    assert_eq!(hits.len(), 20);
}

#[test]
fn attachment_in_100_messages_is_stored_once_and_freed_by_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    let attachment = pseudo_random_bytes(200_000, 7);
    for i in 0..100 {
        let raw = message_with_attachment(&format!("copy {i}"), "see attached", &attachment);
        let appended = mailbox
            .append("INBOX", &raw, &AppendOptions::default())
            .unwrap();
        assert_eq!(
            mailbox.fetch_raw("INBOX", appended.uid).unwrap(),
            raw,
            "byte-exact round trip"
        );
    }
    mailbox.checkpoint().unwrap();
    let size_with_100 = std::fs::metadata(&path).unwrap().len();
    assert_eq!(count_rows(&path, &key, "attachments"), 1);
    // 100 copies of a 200 KB incompressible attachment would be > 20 MB.
    assert!(
        size_with_100 < 2_000_000,
        "attachment stored more than once: {size_with_100} bytes"
    );

    mailbox
        .set_flags(
            "INBOX",
            &UidSet::all(),
            FlagMode::Add,
            &Flags {
                deleted: true,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let removed = mailbox.expunge("INBOX", None).unwrap();
    assert_eq!(removed, (1..=100).collect::<Vec<u32>>());
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 0);
    assert_eq!(
        count_rows(&path, &key, "attachments"),
        0,
        "attachment must be freed"
    );
    assert_eq!(count_rows(&path, &key, "bodies"), 0);
}

/// A second, raw connection to a mailbox file, for checks the public API does not offer.
fn raw_connection(path: &Path, key: &MailboxKey) -> rusqlite::Connection {
    Mailbox::raw_connection(path, key).unwrap()
}

fn count_rows(path: &Path, key: &MailboxKey, table: &str) -> i64 {
    raw_connection(path, key)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn messages_round_trip_byte_for_byte_whatever_their_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let mut big = simple_message("big", "");
    big.extend(
        std::iter::repeat_n(
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01\r\n".as_slice(),
            50 * 1024 * 1024 / 66,
        )
        .flatten(),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no headers at all", b"just some text\r\nwithout any header\r\n".to_vec()),
        ("empty", Vec::new()),
        ("NUL bytes", b"Subject: nul\r\n\r\nbefore\0after\0\0\r\n".to_vec()),
        ("bare LF", b"Subject: lf\nFrom: a@b.c\n\nbody\nline\n".to_vec()),
        ("no final newline", b"Subject: x\r\n\r\nno newline at end".to_vec()),
        ("broken MIME", b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nunterminated part".to_vec()),
        ("8-bit garbage", (0u8..=255).cycle().take(5000).collect()),
        ("50 MB", big),
    ];
    for (name, raw) in &cases {
        let appended = mailbox
            .append("INBOX", raw, &AppendOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            &mailbox.fetch_raw("INBOX", appended.uid).unwrap(),
            raw,
            "{name}"
        );
        let summary = &mailbox
            .summaries("INBOX", &UidSet::from_uids([appended.uid]))
            .unwrap()[0];
        assert_eq!(summary.size, raw.len() as u64, "{name}");
    }
}

#[test]
fn oversized_message_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    mailbox.set_max_message_size(1000);
    let err = mailbox
        .append("INBOX", &vec![b'a'; 1001], &AppendOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 1001,
                limit: 1000
            }
        ),
        "{err}"
    );
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 0);
    assert_eq!(mailbox.folder("INBOX").unwrap().uidnext, 1);
}

#[test]
fn quota_refuses_appends_beyond_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let used = mailbox.used_bytes().unwrap();
    mailbox.set_quota_limit(Some(used + 50_000));
    mailbox
        .append(
            "INBOX",
            &simple_message("fits", "small"),
            &AppendOptions::default(),
        )
        .unwrap();
    let big = pseudo_random_bytes(200_000, 3);
    let err = mailbox
        .append("INBOX", &big, &AppendOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded { .. }), "{err}");
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 1);
}

#[test]
fn wrong_key_truncated_tampered_and_foreign_files_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    for i in 0..30 {
        mailbox
            .append(
                "INBOX",
                &simple_message(&format!("m{i}"), &"text ".repeat(200)),
                &AppendOptions::default(),
            )
            .unwrap();
    }
    mailbox.checkpoint().unwrap();
    drop(mailbox);
    let pristine = std::fs::read(&path).unwrap();

    let wrong = MailboxKey::generate();
    assert!(matches!(
        Mailbox::open(&path, &wrong),
        Err(Error::Corrupt { .. })
    ));

    std::fs::write(&path, &pristine[..pristine.len() / 3]).unwrap();
    let truncated =
        Mailbox::open(&path, &key).and_then(|m| m.search("INBOX", &SearchKey::All).map(|_| m));
    assert!(
        matches!(truncated, Err(Error::Corrupt { .. } | Error::Sqlite(_))),
        "truncated file must not open cleanly"
    );

    // One flipped byte in the first page: the page's HMAC fails.
    let mut tampered = pristine.clone();
    tampered[100] ^= 0x01;
    std::fs::write(&path, &tampered).unwrap();
    assert!(matches!(
        Mailbox::open(&path, &key),
        Err(Error::Corrupt { .. })
    ));

    std::fs::write(&path, b"this is not a database at all").unwrap();
    assert!(matches!(
        Mailbox::open(&path, &key),
        Err(Error::Corrupt { .. })
    ));

    std::fs::write(&path, &pristine).unwrap();
    let mailbox = Mailbox::open(&path, &key).unwrap();
    assert_eq!(
        mailbox.folder("INBOX").unwrap().messages,
        30,
        "restored file opens again"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        Mailbox::open(&path, &key),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn newer_schema_is_refused_and_migrations_leave_foreign_keys_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, key, path) = new_mailbox(dir.path());
    drop(mailbox);
    let conn = raw_connection(&path, &key);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(count_rows(&path, &key, "pragma_foreign_key_check"), 0);
    assert_eq!(
        count_rows(
            &path,
            &key,
            "pragma_integrity_check WHERE integrity_check != 'ok'"
        ),
        0
    );
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    let err = Mailbox::open(&path, &key).unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
}

#[test]
fn flags_bump_modseq_and_respect_unchanged_since() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    for i in 0..3 {
        mailbox
            .append(
                "INBOX",
                &simple_message(&format!("f{i}"), "x"),
                &AppendOptions::default(),
            )
            .unwrap();
    }
    let before = mailbox.folder("INBOX").unwrap().highest_modseq;
    let seen = Flags::from_imap(["\\Seen", "$Forwarded"]).unwrap();
    let changed = mailbox
        .set_flags(
            "INBOX",
            &UidSet::from_uids([1, 2]),
            FlagMode::Add,
            &seen,
            None,
        )
        .unwrap();
    assert_eq!(changed.updated.len(), 2);
    let after = mailbox.folder("INBOX").unwrap().highest_modseq;
    assert_eq!(after, before + 1, "one MODSEQ for one STORE");
    assert!(
        changed
            .updated
            .iter()
            .all(|s| s.modseq == after && s.flags.seen && s.flags.keywords == ["$Forwarded"])
    );
    // Setting the same flags again changes nothing and bumps nothing.
    assert!(
        mailbox
            .set_flags(
                "INBOX",
                &UidSet::from_uids([1, 2]),
                FlagMode::Add,
                &seen,
                None
            )
            .unwrap()
            .updated
            .is_empty()
    );
    assert_eq!(mailbox.folder("INBOX").unwrap().highest_modseq, after);
    // UNCHANGEDSINCE older than the messages' MODSEQ: reported as modified, not written.
    let flagged = Flags {
        flagged: true,
        ..Default::default()
    };
    let result = mailbox
        .set_flags(
            "INBOX",
            &UidSet::from_uids([1, 3]),
            FlagMode::Add,
            &flagged,
            Some(before),
        )
        .unwrap();
    assert_eq!(result.modified, vec![1]);
    assert_eq!(
        result.updated.iter().map(|s| s.uid).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(mailbox.folder("INBOX").unwrap().unseen, 1);
    assert_eq!(
        mailbox
            .changed_since("INBOX", after)
            .unwrap()
            .iter()
            .map(|s| s.uid)
            .collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn copy_move_expunge_keep_uids_growing_and_journal_expunges() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    for i in 0..4 {
        mailbox
            .append(
                "INBOX",
                &simple_message(&format!("c{i}"), "body"),
                &AppendOptions::default(),
            )
            .unwrap();
    }
    let copied = mailbox
        .copy_messages("INBOX", &UidSet::from_uids([2, 3]), "Archive")
        .unwrap();
    assert_eq!(copied.pairs, vec![(2, 1), (3, 2)]);
    assert_eq!(
        copied.uidvalidity,
        mailbox.folder("Archive").unwrap().uidvalidity
    );
    let modseq_before_move = mailbox.folder("INBOX").unwrap().highest_modseq;
    let moved = mailbox
        .move_messages("INBOX", &UidSet::from_uids([1, 4]), "Trash")
        .unwrap();
    assert_eq!(moved.pairs, vec![(1, 1), (4, 2)]);
    assert_eq!(
        mailbox.expunged_since("INBOX", modseq_before_move).unwrap(),
        vec![1, 4]
    );
    assert_eq!(
        mailbox.fetch_raw("Trash", 2).unwrap(),
        simple_message("c3", "body")
    );
    assert!(matches!(
        mailbox.fetch_raw("INBOX", 1),
        Err(Error::NoSuchMessage(1))
    ));
    // The copy shares the body: expunging the original keeps the copy readable.
    mailbox
        .set_flags(
            "INBOX",
            &UidSet::all(),
            FlagMode::Add,
            &Flags {
                deleted: true,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        mailbox
            .expunge("INBOX", Some(&UidSet::from_uids([2])))
            .unwrap(),
        vec![2]
    );
    assert_eq!(mailbox.expunge("INBOX", None).unwrap(), vec![3]);
    assert_eq!(
        mailbox.fetch_raw("Archive", 1).unwrap(),
        simple_message("c1", "body")
    );
    // New appends never reuse UIDs.
    let appended = mailbox
        .append(
            "INBOX",
            &simple_message("new", "x"),
            &AppendOptions::default(),
        )
        .unwrap();
    assert_eq!(appended.uid, 5);
}

#[test]
fn save_date_keys_use_the_time_a_message_entered_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    let options = AppendOptions {
        internal_date: Some(946_720_800), // 2000-01-01T10:00:00Z
        ..Default::default()
    };
    mailbox
        .append("INBOX", &simple_message("old", "x"), &options)
        .unwrap();
    mailbox
        .append("INBOX", &simple_message("older", "y"), &options)
        .unwrap();
    let search = |m: &Mailbox, folder: &str, key: SearchKey| m.search(folder, &key).unwrap();
    assert_eq!(
        search(&mailbox, "INBOX", SearchKey::Before("2001-01-01".into())),
        vec![1, 2]
    );
    assert!(
        search(
            &mailbox,
            "INBOX",
            SearchKey::SavedBefore("2001-01-01".into())
        )
        .is_empty()
    );
    assert_eq!(
        search(
            &mailbox,
            "INBOX",
            SearchKey::SavedSince("2001-01-01".into())
        ),
        vec![1, 2]
    );
    // Pretend message 2 was saved long ago: SAVEDON and SAVEDBEFORE find it by that date.
    raw_connection(&path, &key)
        .execute(
            "UPDATE messages SET saved_at = '2010-05-06T07:08:09Z' WHERE uid = 2",
            [],
        )
        .unwrap();
    assert_eq!(
        search(&mailbox, "INBOX", SearchKey::SavedOn("2010-05-06".into())),
        vec![2]
    );
    assert_eq!(
        search(
            &mailbox,
            "INBOX",
            SearchKey::SavedBefore("2010-05-07".into())
        ),
        vec![2]
    );
    // RENAME INBOX saves its messages into the new folder: the save date becomes now.
    mailbox.rename_folder("INBOX", "Old").unwrap();
    assert!(search(&mailbox, "Old", SearchKey::SavedBefore("2011-01-01".into())).is_empty());
    assert_eq!(
        search(&mailbox, "Old", SearchKey::SavedSince("2011-01-01".into())),
        vec![1, 2]
    );
    assert!(matches!(
        mailbox.search("Old", &SearchKey::SavedOn("6-May-2010".into())),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn folders_create_rename_delete_and_inbox_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    mailbox.create_folder("Projects/2026/Q4", None).unwrap();
    assert!(
        mailbox.folder("Projects/2026").is_ok(),
        "parents are created"
    );
    assert!(
        mailbox.create_folder("projects/2026/Q4", None).is_ok(),
        "names are case-sensitive except INBOX"
    );
    assert!(matches!(
        mailbox.create_folder("Projects/2026/Q4", None),
        Err(Error::FolderExists(_))
    ));
    assert!(matches!(
        mailbox.create_folder("inbox", None),
        Err(Error::FolderExists(_))
    ));
    assert!(matches!(
        mailbox.create_folder("a//b", None),
        Err(Error::InvalidFolderName(..))
    ));
    mailbox
        .append(
            "Projects/2026/Q4",
            &simple_message("p", "x"),
            &AppendOptions::default(),
        )
        .unwrap();
    mailbox.rename_folder("Projects", "Work").unwrap();
    assert_eq!(mailbox.folder("Work/2026/Q4").unwrap().messages, 1);
    assert!(matches!(
        mailbox.folder("Projects/2026/Q4"),
        Err(Error::NoSuchFolder(_))
    ));
    // Deleting a folder with subfolders removes it and its messages but keeps the subfolders.
    mailbox
        .append("Work", &simple_message("w", "x"), &AppendOptions::default())
        .unwrap();
    mailbox.delete_folder("Work").unwrap();
    assert!(matches!(
        mailbox.folder("Work"),
        Err(Error::NoSuchFolder(_))
    ));
    assert_eq!(mailbox.folder("Work/2026/Q4").unwrap().messages, 1);
    assert!(matches!(
        mailbox.delete_folder("Work"),
        Err(Error::NoSuchFolder(_))
    ));
    mailbox.delete_folder("Work/2026/Q4").unwrap();
    assert!(matches!(
        mailbox.delete_folder("INBOX"),
        Err(Error::FolderNotAllowed(..))
    ));
    // Renaming INBOX moves its messages and leaves it empty.
    mailbox
        .append(
            "INBOX",
            &simple_message("i", "x"),
            &AppendOptions::default(),
        )
        .unwrap();
    mailbox.rename_folder("INBOX", "Old Inbox").unwrap();
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 0);
    assert_eq!(mailbox.folder("Old Inbox").unwrap().messages, 1);
    let validity = mailbox.folder("Junk").unwrap().uidvalidity;
    mailbox.delete_folder("Junk").unwrap();
    mailbox.create_folder("Junk", Some("\\junk")).unwrap();
    let junk = mailbox.folder("Junk").unwrap();
    assert!(
        junk.uidvalidity > validity,
        "a re-created folder gets a new UIDVALIDITY"
    );
    assert_eq!(junk.special_use.as_deref(), Some("\\Junk"));
}

#[test]
fn search_keys_over_flags_dates_sizes_headers_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let day = 86_400;
    let base = 1_795_897_298 - 10 * day; // 2026-11-18
    let raws = [
        simple_message("Quarterly report", "numbers inside: revenue grew"),
        simple_message("Lunch?", "pizza or sushi"),
        message_with_attachment(
            "Invoice 42",
            "Please find the invoice attached. Ünïcödé Straße",
            &pseudo_random_bytes(5000, 1),
        ),
    ];
    for (i, raw) in raws.iter().enumerate() {
        let options = AppendOptions {
            internal_date: Some(base + i as i64 * day),
            ..Default::default()
        };
        mailbox.append("INBOX", raw, &options).unwrap();
    }
    mailbox
        .set_flags(
            "INBOX",
            &UidSet::from_uids([2]),
            FlagMode::Add,
            &Flags::from_imap(["\\Seen", "Work"]).unwrap(),
            None,
        )
        .unwrap();
    let search = |key: SearchKey| mailbox.search("INBOX", &key).unwrap();
    assert_eq!(search(SearchKey::All), vec![1, 2, 3]);
    assert_eq!(search(SearchKey::Seen(false)), vec![1, 3]);
    assert_eq!(search(SearchKey::Keyword("work".into(), true)), vec![2]);
    assert_eq!(search(SearchKey::Keyword("work".into(), false)), vec![1, 3]);
    assert_eq!(search(SearchKey::Subject("REPORT".into())), vec![1]);
    assert_eq!(
        search(SearchKey::Subject("?".into())),
        vec![2],
        "short needles take the scan path"
    );
    assert_eq!(search(SearchKey::Body("sushi".into())), vec![2]);
    assert_eq!(
        search(SearchKey::Body("straße".into())),
        vec![3],
        "decoded text is indexed"
    );
    assert_eq!(
        search(SearchKey::Text("carol".into())),
        vec![1, 2],
        "addresses are part of TEXT"
    );
    assert_eq!(search(SearchKey::From("alice@example".into())), vec![3]);
    assert_eq!(search(SearchKey::To("DAVE".into())), vec![1, 2]);
    assert_eq!(
        search(SearchKey::Header("Message-ID".into(), "invoice 42@".into())),
        vec![3]
    );
    assert_eq!(
        search(SearchKey::Header("X-Missing".into(), String::new())),
        Vec::<u32>::new()
    );
    assert_eq!(search(SearchKey::Larger(3000)), vec![3]);
    assert_eq!(search(SearchKey::Before("2026-11-19".into())), vec![1]);
    assert_eq!(search(SearchKey::On("2026-11-19".into())), vec![2]);
    assert_eq!(search(SearchKey::Since("2026-11-19".into())), vec![2, 3]);
    assert_eq!(search(SearchKey::SentOn("2026-11-27".into())), vec![1, 2]);
    assert_eq!(
        search(SearchKey::Or(
            Box::new(SearchKey::Uids(UidSet::from_uids([1]))),
            Box::new(SearchKey::Seen(true))
        )),
        vec![1, 2]
    );
    assert_eq!(
        search(SearchKey::Not(Box::new(SearchKey::Text("pizza".into())))),
        vec![1, 3]
    );
    assert_eq!(
        search(SearchKey::And(vec![
            SearchKey::Seen(false),
            SearchKey::Text("invoice".into())
        ])),
        vec![3]
    );
    assert_eq!(
        search(SearchKey::Text("\"quoted\" OR 1=1; --".into())),
        Vec::<u32>::new(),
        "FTS syntax in needles is data"
    );
    let mut deep = SearchKey::All;
    for _ in 0..100 {
        deep = SearchKey::Not(Box::new(deep));
    }
    assert!(matches!(
        mailbox.search("INBOX", &deep),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        mailbox.search("INBOX", &SearchKey::Before("28-Nov-2026".into())),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn summaries_carry_envelope_and_body_structure_with_usable_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let raw = message_with_attachment("Structure", "hello part one", &pseudo_random_bytes(3000, 9));
    mailbox
        .append("INBOX", &raw, &AppendOptions::default())
        .unwrap();
    let summary = mailbox
        .summaries("INBOX", &UidSet::all())
        .unwrap()
        .remove(0);
    assert_eq!(summary.envelope.subject.as_deref(), Some("Structure"));
    assert_eq!(
        summary.envelope.message_id.as_deref(),
        Some("<Structure@example.org>")
    );
    assert_eq!(
        summary.envelope.from[0].address.as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(
        summary.envelope.from[0].name.as_deref(),
        Some("Alice Example")
    );
    let body = &summary.body_structure;
    assert_eq!(
        (body.media_type.as_str(), body.media_subtype.as_str()),
        ("multipart", "mixed")
    );
    assert_eq!(body.parts.len(), 2);
    let text = body.find(&[1]).unwrap();
    assert_eq!(
        &raw[text.body_offset as usize..text.end_offset as usize],
        b"hello part one"
    );
    let attachment = body.find(&[2]).unwrap();
    assert_eq!(attachment.encoding, "base64");
    assert_eq!(attachment.disposition.as_ref().unwrap().0, "attachment");
    assert!(
        raw[attachment.header_offset as usize..]
            .starts_with(b"Content-Type: application/octet-stream")
    );
    assert!(summary.preview.unwrap().starts_with("hello part one"));
    assert_eq!(summary.email_id.len(), 17);
}

#[test]
fn threads_group_replies_by_references() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    mailbox
        .append(
            "INBOX",
            &simple_message("root", "start"),
            &AppendOptions::default(),
        )
        .unwrap();
    let reply = b"Subject: Re: root\r\nMessage-ID: <reply@x>\r\nIn-Reply-To: <root.id@example.com>\r\n\r\nreply\r\n";
    mailbox
        .append("INBOX", reply, &AppendOptions::default())
        .unwrap();
    mailbox
        .append(
            "INBOX",
            &simple_message("other", "unrelated"),
            &AppendOptions::default(),
        )
        .unwrap();
    let summaries = mailbox.summaries("INBOX", &UidSet::all()).unwrap();
    assert_eq!(summaries[0].thread_id, summaries[1].thread_id);
    assert_ne!(summaries[0].thread_id, summaries[2].thread_id);
    let hits = mailbox
        .search(
            "INBOX",
            &SearchKey::ThreadId(summaries[0].thread_id.clone()),
        )
        .unwrap();
    assert_eq!(hits, vec![1, 2]);
}

#[test]
fn sealed_items_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    let raw = simple_message("sealed", "x");
    assert!(
        mailbox
            .append_delivered("item-1", "INBOX", &raw, 1_795_000_000)
            .unwrap()
            .is_some()
    );
    assert!(
        mailbox
            .append_delivered("item-1", "INBOX", &raw, 1_795_000_000)
            .unwrap()
            .is_none()
    );
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 1);
    let summary = mailbox
        .summaries("INBOX", &UidSet::all())
        .unwrap()
        .remove(0);
    assert_eq!(summary.internal_date, "2026-11-18T11:06:40Z");
}

#[test]
fn key_rotation_survives_a_crash_at_every_step() {
    let steps = [
        RotationStep::Checkpointed,
        RotationStep::Exported,
        RotationStep::Verified,
        RotationStep::Swapped,
    ];
    for crash_at in steps {
        let dir = tempfile::tempdir().unwrap();
        let (mut mailbox, old_key, path) = new_mailbox(dir.path());
        let raw = message_with_attachment("rotate", "keep me", &pseudo_random_bytes(10_000, 5));
        mailbox
            .append("INBOX", &raw, &AppendOptions::default())
            .unwrap();
        let new_key = MailboxKey::generate();
        let result = mailbox.rotate_key(&new_key, |step| {
            if step == crash_at {
                Err(Error::Io(std::io::Error::other("simulated crash")))
            } else {
                Ok(())
            }
        });
        assert!(result.is_err(), "{crash_at:?}");
        let (reopened, used) = Mailbox::open_with_keys(&path, &old_key, Some(&new_key)).unwrap();
        let expected = if crash_at == RotationStep::Swapped {
            KeyUsed::Pending
        } else {
            KeyUsed::Current
        };
        assert_eq!(used, expected, "{crash_at:?}");
        assert_eq!(reopened.fetch_raw("INBOX", 1).unwrap(), raw, "{crash_at:?}");
        // A second, uninterrupted rotation then completes.
        let current = if used == KeyUsed::Current {
            old_key.clone()
        } else {
            new_key.clone()
        };
        let newest = MailboxKey::generate();
        let rotated = reopened.rotate_key(&newest, |_| Ok(())).unwrap();
        assert_eq!(rotated.fetch_raw("INBOX", 1).unwrap(), raw);
        drop(rotated);
        assert!(
            matches!(Mailbox::open(&path, &current), Err(Error::Corrupt { .. })),
            "old key no longer opens"
        );
        assert!(Mailbox::open(&path, &newest).is_ok());
    }
}

//! Import from .eml, mbox and Maildir through the public API.

use sealmail_core::MailboxKey;
use sealmail_core::import::{ImportSource, import};
use sealmail_core::store::{Mailbox, SearchKey, UidSet};

fn mailbox(dir: &std::path::Path) -> Mailbox {
    Mailbox::create(&dir.join("m.sqlite"), &MailboxKey::generate()).unwrap()
}

#[test]
fn mbox_is_split_on_from_lines_and_unquoted() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailbox = mailbox(dir.path());
    let mbox = dir.path().join("mail.mbox");
    std::fs::write(
        &mbox,
        "From alice@example.org Sat Nov 28 20:21:38 2026\n\
         Subject: one\n\n\
         >From the start of a line\n\
         >>From twice quoted\n\
         body one\n\n\
         From broken-line-without-date\n\
         Subject: two\n\n\
         body two\n\
         From inside a paragraph is not a separator\n\n\
         From bob@example.org Sun Nov 29 08:00:00 2026\n\
         Subject: three\n\nbody three\n",
    )
    .unwrap();
    let source = ImportSource::detect(&mbox).unwrap();
    assert_eq!(source, ImportSource::Mbox(mbox.clone()));
    let mut calls = 0;
    let report = import(&mut mailbox, &source, "INBOX", |_| calls += 1).unwrap();
    assert_eq!(report.imported, 3);
    assert!(report.failed.is_empty());
    assert!(calls >= 1);
    assert_eq!(
        mailbox.index_backlog().unwrap(),
        0,
        "an import leaves its mail in the full-text index"
    );
    assert_eq!(
        mailbox.fetch_raw("INBOX", 1).unwrap(),
        b"Subject: one\n\nFrom the start of a line\n>From twice quoted\nbody one\n"
    );
    assert_eq!(
        mailbox.fetch_raw("INBOX", 2).unwrap(),
        b"Subject: two\n\nbody two\nFrom inside a paragraph is not a separator\n"
    );
    let summaries = mailbox.summaries("INBOX", &UidSet::all()).unwrap();
    assert_eq!(
        summaries[0].internal_date, "2026-11-28T20:21:38Z",
        "date from the From_ line"
    );
    assert_eq!(summaries[2].internal_date, "2026-11-29T08:00:00Z");
}

#[test]
fn maildir_keeps_flags_and_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailbox = mailbox(dir.path());
    let root = dir.path().join("Maildir");
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Work.2026/cur",
        ".Work.2026/new",
        ".Sent/cur",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(
        root.join("new/1700000001.A.host"),
        "Subject: unread\r\n\r\nx\r\n",
    )
    .unwrap();
    std::fs::write(
        root.join("cur/1700000000.B.host:2,RS"),
        "Subject: read\r\n\r\ny\r\n",
    )
    .unwrap();
    std::fs::write(
        root.join(".Work.2026/cur/1700000002.C.host:2,F"),
        "Subject: work\r\n\r\nz\r\n",
    )
    .unwrap();
    std::fs::write(
        root.join(".Sent/cur/1700000003.D.host:2,S"),
        "Subject: sent\r\n\r\nw\r\n",
    )
    .unwrap();
    let report = import(
        &mut mailbox,
        &ImportSource::detect(&root).unwrap(),
        "INBOX",
        |_| {},
    )
    .unwrap();
    assert_eq!(report.imported, 4);
    assert_eq!(
        mailbox
            .search("INBOX", &SearchKey::Seen(true))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        mailbox
            .search("INBOX", &SearchKey::Answered(true))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        mailbox
            .search("INBOX", &SearchKey::Seen(false))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(mailbox.folder("Work/2026").unwrap().messages, 1);
    assert_eq!(
        mailbox
            .search("Work/2026", &SearchKey::Flagged(true))
            .unwrap(),
        vec![1]
    );
    assert_eq!(
        mailbox.folder("Sent").unwrap().messages,
        1,
        "existing folders are reused"
    );
}

#[test]
fn oversized_messages_are_reported_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailbox = mailbox(dir.path());
    mailbox.set_max_message_size(200);
    let mbox = dir.path().join("mixed.mbox");
    let big = "x".repeat(500);
    std::fs::write(
        &mbox,
        format!("From a Sat Nov 28 20:21:38 2026\nSubject: ok\n\nsmall\n\nFrom b Sat Nov 28 20:21:38 2026\nSubject: big\n\n{big}\n\nFrom c Sat Nov 28 20:21:38 2026\nSubject: ok2\n\nsmall\n"),
    )
    .unwrap();
    let report = import(
        &mut mailbox,
        &ImportSource::detect(&mbox).unwrap(),
        "INBOX",
        |_| {},
    )
    .unwrap();
    assert_eq!(report.imported, 2);
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].0.ends_with(":6"),
        "origin names the line: {:?}",
        report.failed
    );
    assert!(report.failed[0].1.contains("too large"));
    assert_eq!(mailbox.folder("INBOX").unwrap().messages, 2);
}

#[test]
fn a_single_eml_file_and_a_non_maildir_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailbox = mailbox(dir.path());
    let eml = dir.path().join("one.eml");
    std::fs::write(&eml, "Subject: eml\r\n\r\nhello\r\n").unwrap();
    let report = import(
        &mut mailbox,
        &ImportSource::detect(&eml).unwrap(),
        "Archive",
        |_| {},
    )
    .unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(
        mailbox.fetch_raw("Archive", 1).unwrap(),
        b"Subject: eml\r\n\r\nhello\r\n"
    );
    assert!(ImportSource::detect(dir.path()).is_err());
    assert!(
        import(
            &mut mailbox,
            &ImportSource::Eml(eml),
            "No Such Folder",
            |_| {}
        )
        .is_err()
    );
}

//! Backups, restore, retention and export through the public API, on real files.

use sealmail_core::Error;
use sealmail_core::account::{open_mailbox, rotate_mailbox_key};
use sealmail_core::backup::{
    BackupOptions, BackupOutcome, BackupTarget, ExportFormat, RestoreRequest, RestoreStep,
    RetentionPolicy, VersionSelector, apply_retention, backup_account, export, purge_backups,
    restore,
};
use sealmail_core::import::{ImportSource, import};
use sealmail_core::registry::{AccountOptions, KdfParams, MailboxId, Registry};
use sealmail_core::store::{AppendOptions, Flags, Mailbox, UidSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const MARKER: &str = "zq7BACKUPmarker9x";
const ADDRESS: &str = "alice@example.org";
const PASSWORD: &str = "correct horse battery staple";

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    target: BackupTarget,
    target_dir: PathBuf,
    registry: Registry,
    mailbox_id: MailboxId,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target_dir = dir.path().join("backups");
    let registry = Registry::open_or_create(&data).unwrap();
    let account = registry
        .add_account(
            ADDRESS,
            Some(PASSWORD),
            &AccountOptions {
                kdf: KdfParams::INSECURE_FOR_TESTS,
                with_recovery_code: true,
                ..AccountOptions::default()
            },
        )
        .unwrap();
    Setup {
        _dir: dir,
        data,
        target: BackupTarget::Directory(target_dir.clone()),
        target_dir,
        registry,
        mailbox_id: account.mailbox_id,
    }
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@example.com>\r\nTo: Alice <alice@example.org>\r\n\
         Subject: {subject} {MARKER}\r\nDate: Fri, 27 Nov 2026 09:30:00 +0100\r\n\
         Message-ID: <{subject}@example.com>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn append(setup: &Setup, folder: &str, subject: &str, flags: Flags) {
    let mut open = open_mailbox(&setup.registry, ADDRESS, PASSWORD).unwrap();
    let mailbox = open.mailbox_mut();
    if mailbox.folder(folder).is_err() {
        mailbox.create_folder(folder, None).unwrap();
    }
    let options = AppendOptions {
        flags,
        internal_date: Some(1_795_897_298),
    };
    mailbox
        .append(
            folder,
            &message(subject, &format!("{MARKER} {subject}")),
            &options,
        )
        .unwrap();
}

/// Every message of every folder: (folder, raw bytes, flags), in folder and UID order.
fn contents(mailbox: &Mailbox) -> Vec<(String, Vec<u8>, Flags)> {
    let mut out = Vec::new();
    for folder in mailbox.list_folders().unwrap() {
        for summary in mailbox.summaries(&folder.path, &UidSet::all()).unwrap() {
            let raw = mailbox.fetch_raw(&folder.path, summary.uid).unwrap();
            out.push((folder.path.clone(), raw, summary.flags));
        }
    }
    out
}

fn account_contents(registry: &Registry) -> Vec<(String, Vec<u8>, Flags)> {
    contents(open_mailbox(registry, ADDRESS, PASSWORD).unwrap().mailbox())
}

fn backup(setup: &Setup) -> BackupOutcome {
    backup_account(
        &setup.registry,
        ADDRESS,
        PASSWORD,
        &setup.target,
        &BackupOptions::default(),
    )
    .unwrap()
}

fn stored(outcome: BackupOutcome) -> sealmail_core::backup::BackupManifest {
    match outcome {
        BackupOutcome::Stored { manifest, .. } => manifest,
        other => panic!("expected a stored backup, got {other:?}"),
    }
}

fn request(version: VersionSelector) -> RestoreRequest<'static> {
    RestoreRequest {
        address: ADDRESS,
        password: PASSWORD,
        version,
        mailbox_id: None,
        session_open: false,
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn backup_is_encrypted_verified_and_opens_only_with_the_key() {
    let setup = setup();
    append(&setup, "INBOX", "first", Flags::default());
    let manifest = stored(backup(&setup));

    let version_dir = setup.target_dir.join(setup.mailbox_id.as_str());
    let snapshot = version_dir.join(format!("{}.sqlite", manifest.version));
    let manifest_file = version_dir.join(format!("{}.json", manifest.version));
    assert_eq!(
        files_under(&setup.target_dir),
        vec![manifest_file.clone(), snapshot.clone()]
    );

    let bytes = std::fs::read(&snapshot).unwrap();
    assert!(!contains(&bytes, MARKER), "snapshot holds plaintext");
    // Control: the same message in an unencrypted mailbox file does show the marker, so the
    // check above can fail.
    let plain_path = setup.data.join("plain.sqlite");
    let mut plain = Mailbox::create_plaintext_for_benchmark(&plain_path).unwrap();
    plain
        .append(
            "INBOX",
            &message("first", MARKER),
            &AppendOptions::default(),
        )
        .unwrap();
    plain.checkpoint().unwrap();
    drop(plain);
    assert!(contains(&std::fs::read(&plain_path).unwrap(), MARKER));
    assert!(!bytes.starts_with(b"SQLite format 3"));
    assert!(!contains(&std::fs::read(&manifest_file).unwrap(), MARKER));
    assert!(!contains(&std::fs::read(&manifest_file).unwrap(), ADDRESS));
    assert_eq!(manifest.size, bytes.len() as u64);
    assert_eq!(manifest.rows.messages, 1);
    assert_eq!(manifest.mailbox_id, setup.mailbox_id);

    // The snapshot is keyed with the mailbox key: it opens with it (on a scratch copy, since
    // opening may write) and with nothing else.
    let login = setup.registry.login(ADDRESS, PASSWORD).unwrap();
    let scratch = setup.data.join("scratch.sqlite");
    std::fs::copy(&snapshot, &scratch).unwrap();
    let copy = Mailbox::open(&scratch, &login.key).unwrap();
    assert_eq!(contents(&copy), account_contents(&setup.registry));
    drop(copy);
    std::fs::copy(&snapshot, &scratch).unwrap();
    assert!(matches!(
        Mailbox::open(&scratch, &sealmail_core::MailboxKey::generate()),
        Err(Error::Corrupt { .. })
    ));
    // The manifest alone unwraps the key with the password, and not without it.
    assert_eq!(
        manifest.unwrap_key(PASSWORD).unwrap().as_bytes(),
        login.key.as_bytes()
    );
    assert!(matches!(
        manifest.unwrap_key("wrong"),
        Err(Error::WrongPassword)
    ));
}

#[test]
fn unchanged_mailbox_is_skipped_and_a_change_stores_a_new_version() {
    let setup = setup();
    append(&setup, "INBOX", "first", Flags::default());
    let first = stored(backup(&setup));
    match backup(&setup) {
        BackupOutcome::Unchanged { latest } => assert_eq!(latest, first),
        other => panic!("expected no new version, got {other:?}"),
    }
    // A flag change alone is a change.
    let mut open = open_mailbox(&setup.registry, ADDRESS, PASSWORD).unwrap();
    open.mailbox_mut()
        .set_flags(
            "INBOX",
            &UidSet::all(),
            sealmail_core::store::FlagMode::Add,
            &Flags {
                seen: true,
                ..Flags::default()
            },
            None,
        )
        .unwrap();
    drop(open);
    let second = stored(backup(&setup));
    assert!(second.version > first.version);
    assert_ne!(second.sha256, first.sha256);
    append(&setup, "INBOX", "second", Flags::default());
    let third = stored(backup(&setup));
    assert_eq!(third.rows.messages, 2);
    let versions = setup.target.list_versions(&setup.mailbox_id).unwrap();
    assert_eq!(versions, vec![first, second, third]);
    // No temporary files are left behind.
    assert_eq!(files_under(&setup.target_dir).len(), 6);
}

#[test]
fn restore_into_a_fresh_data_dir_with_only_the_password() {
    let setup = setup();
    append(&setup, "INBOX", "one", Flags::default());
    append(
        &setup,
        "Work/2026",
        "two",
        Flags {
            flagged: true,
            keywords: vec!["$Forwarded".into()],
            ..Flags::default()
        },
    );
    let expected = account_contents(&setup.registry);
    let manifest = stored(backup(&setup));

    let fresh = setup.data.parent().unwrap().join("fresh");
    let registry = Registry::open_or_create(&fresh).unwrap();
    let outcome = restore(
        &registry,
        &setup.target,
        &request(VersionSelector::Latest),
        |_| Ok(()),
    )
    .unwrap();
    assert!(outcome.account_created);
    assert_eq!(outcome.mailbox_id, setup.mailbox_id);
    assert_eq!(outcome.manifest, manifest);
    assert_eq!(account_contents(&registry), expected);
    assert!(expected.len() == 2 && contains(&expected[1].1, "two"));
    // Nothing but the mailbox (and its lock file) is left in the mailbox directory.
    let mailbox_path = registry.mailbox_path(&setup.mailbox_id);
    for leftover in [".restoring", ".previous", ".previous-wal"] {
        let mut name = mailbox_path.clone().into_os_string();
        name.push(leftover);
        assert!(!PathBuf::from(name).exists(), "{leftover} left behind");
    }
}

#[test]
fn wrong_password_fails_and_leaves_the_live_mailbox_alone() {
    let setup = setup();
    append(&setup, "INBOX", "backed-up", Flags::default());
    backup(&setup);
    append(&setup, "INBOX", "after-backup", Flags::default());
    let before = account_contents(&setup.registry);
    let live = setup.registry.mailbox_path(&setup.mailbox_id);
    let live_bytes = std::fs::read(&live).unwrap();

    let wrong = RestoreRequest {
        password: "not the password",
        ..request(VersionSelector::Latest)
    };
    let result = restore(&setup.registry, &setup.target, &wrong, |_| Ok(()));
    assert!(matches!(result, Err(Error::WrongPassword)), "{result:?}");
    assert_eq!(std::fs::read(&live).unwrap(), live_bytes);
    assert_eq!(account_contents(&setup.registry), before);

    // Into a fresh data dir: no account and no file appear.
    let fresh = setup.data.parent().unwrap().join("fresh");
    let registry = Registry::open_or_create(&fresh).unwrap();
    let result = restore(&registry, &setup.target, &wrong, |_| Ok(()));
    assert!(matches!(result, Err(Error::WrongPassword)), "{result:?}");
    assert!(registry.lookup(ADDRESS).unwrap().is_none());
    assert!(!registry.mailbox_path(&setup.mailbox_id).exists());
}

#[test]
fn restore_brings_back_the_backed_up_state_and_refuses_an_open_session() {
    let setup = setup();
    append(&setup, "INBOX", "kept", Flags::default());
    let expected = account_contents(&setup.registry);
    let first = stored(backup(&setup));
    append(&setup, "INBOX", "later", Flags::default());
    stored(backup(&setup));
    assert_ne!(account_contents(&setup.registry), expected);

    let busy = RestoreRequest {
        session_open: true,
        ..request(VersionSelector::Latest)
    };
    assert!(matches!(
        restore(&setup.registry, &setup.target, &busy, |_| Ok(())),
        Err(Error::MailboxInUse(_))
    ));
    let missing = request(VersionSelector::Named("20000101T000000.000Z".into()));
    assert!(matches!(
        restore(&setup.registry, &setup.target, &missing, |_| Ok(())),
        Err(Error::NoSuchBackup { .. })
    ));

    let outcome = restore(
        &setup.registry,
        &setup.target,
        &request(VersionSelector::Named(first.version.clone())),
        |_| Ok(()),
    )
    .unwrap();
    assert!(!outcome.account_created);
    assert!(outcome.new_recovery_code.is_none());
    assert_eq!(account_contents(&setup.registry), expected);
}

/// A connection that has the mailbox open (a server's session, idle between commands) and
/// that the caller did not declare: the restore must notice it and refuse, leaving the live
/// file as it was; once that connection is gone the same restore succeeds.
#[test]
fn restore_refuses_a_mailbox_another_connection_has_open_even_when_idle() {
    let setup = setup();
    append(&setup, "INBOX", "kept", Flags::default());
    let expected = account_contents(&setup.registry);
    let first = stored(backup(&setup));
    append(&setup, "INBOX", "later", Flags::default());
    let later = account_contents(&setup.registry);

    let session = open_mailbox(&setup.registry, ADDRESS, PASSWORD).unwrap();
    let named = request(VersionSelector::Named(first.version.clone()));
    let result = restore(&setup.registry, &setup.target, &named, |_| Ok(()));
    assert!(matches!(result, Err(Error::MailboxInUse(_))), "{result:?}");
    // The session still works on the untouched file, and so does a fresh open.
    assert_eq!(contents(session.mailbox()), later);
    assert_eq!(account_contents(&setup.registry), later);
    drop(session);

    restore(&setup.registry, &setup.target, &named, |_| Ok(())).unwrap();
    assert_eq!(account_contents(&setup.registry), expected);
}

#[test]
fn damaged_backup_is_refused_before_the_swap() {
    let setup = setup();
    append(&setup, "INBOX", "one", Flags::default());
    let manifest = stored(backup(&setup));
    let before = account_contents(&setup.registry);
    let snapshot = setup
        .target_dir
        .join(setup.mailbox_id.as_str())
        .join(format!("{}.sqlite", manifest.version));
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshot, &bytes).unwrap();
    let result = restore(
        &setup.registry,
        &setup.target,
        &request(VersionSelector::Latest),
        |_| Ok(()),
    );
    assert!(
        matches!(result, Err(Error::BackupDamaged { .. })),
        "{result:?}"
    );
    assert_eq!(account_contents(&setup.registry), before);
}

const ALL_STEPS: [RestoreStep; 6] = [
    RestoreStep::Downloaded,
    RestoreStep::Verified,
    RestoreStep::PendingKeyRecorded,
    RestoreStep::PreviousKeptAside,
    RestoreStep::Swapped,
    RestoreStep::Registered,
];

fn crash_at(step: RestoreStep) -> impl FnMut(RestoreStep) -> sealmail_core::Result<()> {
    move |reached| {
        if reached == step {
            Err(Error::InvalidArgument(format!(
                "simulated crash after {reached:?}"
            )))
        } else {
            Ok(())
        }
    }
}

/// A crash at any point of a restore over an existing mailbox leaves a mailbox that opens,
/// holding either the old or the restored content; running the restore again finishes it.
/// With `rotate` the account's key changed after the backup, which takes the pending-key path.
fn crash_during_restore_over_existing_mailbox(rotate: bool) -> Vec<RestoreStep> {
    let mut crashed_at = Vec::new();
    for step in ALL_STEPS {
        let setup = setup();
        append(&setup, "INBOX", "backed-up", Flags::default());
        let expected = account_contents(&setup.registry);
        backup(&setup);
        append(&setup, "INBOX", "newer", Flags::default());
        if rotate {
            rotate_mailbox_key(&setup.registry, ADDRESS, PASSWORD).unwrap();
        }
        let newer = account_contents(&setup.registry);

        let result = restore(
            &setup.registry,
            &setup.target,
            &request(VersionSelector::Latest),
            crash_at(step),
        );
        let crashed = result.is_err();
        let now = account_contents(&setup.registry);
        assert!(
            now == expected || now == newer,
            "step {step:?}: neither state"
        );
        if !crashed {
            // The step is not on this path (no key change): the restore simply finished.
            assert_eq!(now, expected, "step {step:?}");
            continue;
        }
        crashed_at.push(step);
        restore(
            &setup.registry,
            &setup.target,
            &request(VersionSelector::Latest),
            |_| Ok(()),
        )
        .unwrap_or_else(|e| panic!("rerun after a crash at {step:?}: {e}"));
        assert_eq!(account_contents(&setup.registry), expected, "step {step:?}");
        let info = setup.registry.lookup(ADDRESS).unwrap().unwrap();
        assert!(!info.has_pending_key, "step {step:?}");
    }
    crashed_at
}

#[test]
fn crash_at_every_restore_step_leaves_an_openable_mailbox() {
    let crashed_at = crash_during_restore_over_existing_mailbox(false);
    // Same key: no pending key is recorded.
    let expected: Vec<_> = ALL_STEPS
        .into_iter()
        .filter(|step| *step != RestoreStep::PendingKeyRecorded)
        .collect();
    assert_eq!(crashed_at, expected);
}

#[test]
fn crash_at_every_restore_step_after_a_key_rotation_leaves_an_openable_mailbox() {
    let crashed_at = crash_during_restore_over_existing_mailbox(true);
    assert_eq!(crashed_at, ALL_STEPS.to_vec());
}

#[test]
fn crash_during_restore_into_a_fresh_data_dir_can_be_rerun() {
    let setup = setup();
    append(&setup, "INBOX", "one", Flags::default());
    let expected = account_contents(&setup.registry);
    backup(&setup);
    for step in ALL_STEPS {
        let fresh = setup.data.parent().unwrap().join(format!("fresh-{step:?}"));
        let registry = Registry::open_or_create(&fresh).unwrap();
        let _ = restore(
            &registry,
            &setup.target,
            &request(VersionSelector::Latest),
            crash_at(step),
        );
        if registry.lookup(ADDRESS).unwrap().is_some() {
            assert_eq!(account_contents(&registry), expected, "step {step:?}");
        }
        restore(
            &registry,
            &setup.target,
            &request(VersionSelector::Latest),
            |_| Ok(()),
        )
        .unwrap_or_else(|e| panic!("rerun after a crash at {step:?}: {e}"));
        assert_eq!(account_contents(&registry), expected, "step {step:?}");
    }
}

#[test]
fn retention_keeps_the_newest_per_day_and_month() {
    let setup = setup();
    let day = 86_400u64;
    let start = 1_790_000_000u64; // 2026-09-21
    // Two backups a day on days 0, 1, 2 (September) and 45, 46 (November), a change before each.
    let offsets = [0, 1, 2, 45, 46]
        .iter()
        .flat_map(|d| [d * day + 3600, d * day + 7200])
        .collect::<Vec<_>>();
    let mut names = Vec::new();
    for (index, offset) in offsets.iter().enumerate() {
        append(&setup, "INBOX", &format!("m{index}"), Flags::default());
        let options = BackupOptions {
            retention: None,
            now: Some(UNIX_EPOCH + Duration::from_secs(start + offset)),
        };
        let outcome =
            backup_account(&setup.registry, ADDRESS, PASSWORD, &setup.target, &options).unwrap();
        names.push(stored(outcome).version);
    }
    let deleted = apply_retention(
        &setup.target,
        &setup.mailbox_id,
        &RetentionPolicy {
            keep_daily: 2,
            keep_monthly: 2,
        },
    )
    .unwrap();
    let kept: Vec<String> = setup
        .target
        .list_versions(&setup.mailbox_id)
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect();
    // Newest of days 46 and 45 (daily; November), newest of September (day 2) for the second
    // month that has backups.
    assert_eq!(
        kept,
        vec![names[5].clone(), names[7].clone(), names[9].clone()]
    );
    assert_eq!(deleted.len(), 7);
    assert_eq!(files_under(&setup.target_dir).len(), 6);
}

#[test]
fn purge_deletes_every_version() {
    let setup = setup();
    append(&setup, "INBOX", "one", Flags::default());
    backup(&setup);
    append(&setup, "INBOX", "two", Flags::default());
    backup(&setup);
    assert_eq!(purge_backups(&setup.target, &setup.mailbox_id).unwrap(), 2);
    assert!(
        setup
            .target
            .list_versions(&setup.mailbox_id)
            .unwrap()
            .is_empty()
    );
    assert!(!setup.target_dir.join(setup.mailbox_id.as_str()).exists());
}

/// Messages that exercise mbox quoting and Maildir flags.
fn fill_for_export(mailbox: &mut Mailbox) {
    mailbox.create_folder("Work/2026", None).unwrap();
    let tricky = b"Subject: quoting\n\nFrom the start of a line\n>From quoted once\n\
                   >>From quoted twice\nFrom \nend\n"
        .to_vec();
    let items: Vec<(&str, Vec<u8>, Flags)> = vec![
        ("INBOX", message("plain", "hello"), Flags::default()),
        (
            "INBOX",
            tricky,
            Flags {
                seen: true,
                answered: true,
                ..Flags::default()
            },
        ),
        (
            "Sent",
            message("sent", "bye"),
            Flags {
                seen: true,
                keywords: vec!["$Forwarded".into()],
                ..Flags::default()
            },
        ),
        (
            "Work/2026",
            message("work", "From here on\r\nthe body"),
            Flags {
                flagged: true,
                draft: true,
                deleted: true,
                ..Flags::default()
            },
        ),
    ];
    for (folder, raw, flags) in items {
        let options = AppendOptions {
            flags,
            internal_date: Some(1_795_897_298),
        };
        mailbox.append(folder, &raw, &options).unwrap();
    }
}

#[test]
fn maildir_export_then_import_gives_identical_messages_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let key = sealmail_core::MailboxKey::generate();
    let mut original = Mailbox::create(&dir.path().join("a.sqlite"), &key).unwrap();
    fill_for_export(&mut original);
    let out = dir.path().join("maildir");
    let report = export(&original, ExportFormat::Maildir, &out, |_| {}).unwrap();
    assert_eq!(report.messages, 4);
    assert!(report.renamed_folders.is_empty());
    assert!(out.join(".Work.2026/cur").is_dir());

    let mut copy = Mailbox::create(&dir.path().join("b.sqlite"), &key).unwrap();
    let source = ImportSource::detect(&out).unwrap();
    let imported = import(&mut copy, &source, "INBOX", |_| {}).unwrap();
    assert_eq!(imported.imported, 4);
    assert_eq!(contents(&copy), contents(&original));
    // Internal dates survive as file times.
    let summary = &copy.summaries("INBOX", &UidSet::all()).unwrap()[0];
    assert_eq!(summary.internal_date, "2026-11-28T20:21:38Z");
    // A second export into a non-empty directory is refused.
    assert!(export(&original, ExportFormat::Maildir, &out, |_| {}).is_err());
}

#[test]
fn mbox_export_then_import_gives_identical_messages() {
    let dir = tempfile::tempdir().unwrap();
    let key = sealmail_core::MailboxKey::generate();
    let mut original = Mailbox::create(&dir.path().join("a.sqlite"), &key).unwrap();
    fill_for_export(&mut original);
    let out = dir.path().join("mbox");
    let report = export(&original, ExportFormat::Mbox, &out, |_| {}).unwrap();
    assert_eq!(report.messages, 4);
    let inbox = std::fs::read(out.join("INBOX.mbox")).unwrap();
    assert!(contains(&inbox, "\n>From the start"));
    assert!(contains(&inbox, "\n>>>From quoted twice"));
    assert!(inbox.starts_with(b"From MAILER-DAEMON Sat Nov 28 20:21:38 2026\n"));

    let mut copy = Mailbox::create(&dir.path().join("b.sqlite"), &key).unwrap();
    for folder in original.list_folders().unwrap() {
        let file = out.join(format!("{}.mbox", folder.path));
        if copy.folder(&folder.path).is_err() {
            copy.create_folder(&folder.path, None).unwrap();
        }
        import(&mut copy, &ImportSource::Mbox(file), &folder.path, |_| {}).unwrap();
    }
    let without_flags = |mailbox: &Mailbox| {
        contents(mailbox)
            .into_iter()
            .map(|(folder, raw, _)| (folder, raw))
            .collect::<Vec<_>>()
    };
    assert_eq!(without_flags(&copy), without_flags(&original));
    let summary = &copy.summaries("Sent", &UidSet::all()).unwrap()[0];
    assert_eq!(summary.internal_date, "2026-11-28T20:21:38Z");
}

#[test]
fn eml_zip_export_then_import_gives_identical_messages_flags_and_folders() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let key = sealmail_core::MailboxKey::generate();
    let mut original = Mailbox::create(&dir.path().join("a.sqlite"), &key).unwrap();
    fill_for_export(&mut original);
    // A folder whose name is not a safe file path, and an empty unsubscribed one.
    original.create_folder("Q1: plans", None).unwrap();
    let options = AppendOptions {
        flags: Flags {
            keywords: vec!["$Junk".into(), "project-x".into()],
            ..Flags::default()
        },
        internal_date: Some(1_000_000_000),
    };
    original
        .append("Q1: plans", &message("plans", "body"), &options)
        .unwrap();
    original.create_folder("Empty", None).unwrap();
    original.set_subscribed("Empty", false).unwrap();

    let out = dir.path().join("mail.zip");
    let mut calls = 0;
    let report = export(&original, ExportFormat::EmlZip, &out, |_| calls += 1).unwrap();
    assert_eq!((report.messages, report.total_messages), (5, 5));
    assert!(calls >= 5, "progress after every message");
    // Any unzip tool sees one .eml per message, byte for byte, under its folder's path.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut work = Vec::new();
    archive
        .by_name("Work/2026/0000000001.eml")
        .unwrap()
        .read_to_end(&mut work)
        .unwrap();
    assert_eq!(work, original.fetch_raw("Work/2026", 1).unwrap());
    assert!(archive.by_name("Q1_ plans/0000000001.eml").is_ok());
    assert!(
        archive
            .file_names()
            .all(|name| !name.contains("..") && !name.contains(':')),
        "entry names are safe to extract"
    );
    drop(archive);

    let mut copy = Mailbox::create(&dir.path().join("b.sqlite"), &key).unwrap();
    let source = ImportSource::detect(&out).unwrap();
    assert_eq!(source, ImportSource::EmlZip(out.clone()));
    let imported = import(&mut copy, &source, "INBOX", |_| {}).unwrap();
    assert_eq!(imported.imported, 5);
    assert!(imported.failed.is_empty(), "{:?}", imported.failed);
    assert_eq!(contents(&copy), contents(&original));
    let summary = &copy.summaries("Q1: plans", &UidSet::all()).unwrap()[0];
    assert_eq!(summary.internal_date, "2001-09-09T01:46:40Z");
    let empty = copy.folder("Empty").unwrap();
    assert!(!empty.subscribed, "subscription comes from the manifest");
    // An export never overwrites a file.
    assert!(export(&original, ExportFormat::EmlZip, &out, |_| {}).is_err());
}

#[test]
fn eml_zip_streamed_to_a_pipe_and_a_zip_without_manifest_both_import() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let key = sealmail_core::MailboxKey::generate();
    let mut original = Mailbox::create(&dir.path().join("a.sqlite"), &key).unwrap();
    fill_for_export(&mut original);
    // Not seekable: the writer must not seek back to patch entry headers.
    struct PipeLike(Vec<u8>);
    impl std::io::Write for PipeLike {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (report, streamed) =
        sealmail_core::backup::write_eml_zip_to_stream(&original, PipeLike(Vec::new()), |_| {})
            .unwrap();
    assert_eq!(report.messages, 4);
    let streamed_path = dir.path().join("streamed.zip");
    std::fs::write(&streamed_path, &streamed.0).unwrap();
    let mut copy = Mailbox::create(&dir.path().join("b.sqlite"), &key).unwrap();
    import(
        &mut copy,
        &ImportSource::detect(&streamed_path).unwrap(),
        "INBOX",
        |_| {},
    )
    .unwrap();
    assert_eq!(contents(&copy), contents(&original));

    // A zip made by hand: folders from directories, no flags.
    let hand_made = dir.path().join("hand.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&hand_made).unwrap());
    for (name, subject) in [("a.eml", "root"), ("Lists/rust/b.eml", "nested")] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&message(subject, "hand made")).unwrap();
    }
    zip.start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"not a message").unwrap();
    zip.finish().unwrap();
    let mut third = Mailbox::create(&dir.path().join("c.sqlite"), &key).unwrap();
    let imported = import(
        &mut third,
        &ImportSource::EmlZip(hand_made),
        "Archive",
        |_| {},
    )
    .unwrap();
    assert_eq!(imported.imported, 2);
    let folders: Vec<(String, Vec<u8>, Flags)> = contents(&third);
    assert_eq!(folders.len(), 2);
    assert_eq!(folders[0].0, "Archive");
    assert_eq!(folders[1].0, "Archive/Lists/rust");
    assert_eq!(folders[1].1, message("nested", "hand made"));
    assert_eq!(folders[1].2, Flags::default());
}

#[test]
fn removing_an_account_after_a_backup_leaves_no_file_named_after_its_mailbox() {
    let setup = setup();
    append(&setup, "INBOX", "one", Flags::default());
    stored(backup(&setup));
    let mailbox_path = setup.registry.mailbox_path(&setup.mailbox_id);
    let mailbox_dir = mailbox_path.parent().unwrap().to_path_buf();
    let named_after_it = || -> Vec<String> {
        std::fs::read_dir(&mailbox_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(setup.mailbox_id.as_str()))
            .collect()
    };
    assert!(
        named_after_it()
            .iter()
            .any(|name| name.ends_with(".backup-lock")),
        "the backup took its lock file: {:?}",
        named_after_it()
    );
    setup.registry.remove_account(ADDRESS).unwrap();
    assert_eq!(named_after_it(), Vec::<String>::new());
}

#[test]
fn a_backup_on_its_own_connection_sees_what_an_open_session_wrote() {
    use sealmail_core::backup::{OpenMailboxSource, backup_open_mailbox};
    let setup = setup();
    let mut session = open_mailbox(&setup.registry, ADDRESS, PASSWORD).unwrap();
    let source = OpenMailboxSource {
        mailbox_id: session.mailbox_id().clone(),
        path: session.mailbox().path().to_path_buf(),
        key: session.key().clone(),
    };
    let write = |session: &mut sealmail_core::account::OpenMailbox, subject: &str| {
        session
            .mailbox_mut()
            .append(
                "INBOX",
                &message(subject, "body"),
                &AppendOptions::default(),
            )
            .unwrap();
    };
    let run = || {
        backup_open_mailbox(
            &setup.registry,
            &source,
            &setup.target,
            &BackupOptions::default(),
        )
        .unwrap()
    };
    write(&mut session, "one");
    let first = stored(run());
    assert_eq!(first.rows.messages, 1);
    assert!(matches!(run(), BackupOutcome::Unchanged { .. }));
    // The session writes on: the next backup sees it, while the session stays open.
    write(&mut session, "two");
    let second = stored(run());
    assert_eq!(second.rows.messages, 2);
    assert_ne!(second.sha256, first.sha256);
}

#[cfg(feature = "s3")]
#[path = "../../server/tests/support/moto.rs"]
mod moto;

/// The same backup and restore against a real S3-compatible server (moto, started here).
#[cfg(feature = "s3")]
mod s3 {
    use super::moto::Moto;
    use super::*;
    use sealmail_core::backup::{S3Credentials, S3Options, S3Target};

    fn target(moto: &Moto, bucket: &str, prefix: &str, part_size: Option<usize>) -> BackupTarget {
        BackupTarget::S3(
            S3Target::from_environment(
                bucket,
                prefix,
                S3Options {
                    endpoint_url: Some(moto.endpoint()),
                    region: Some("us-east-1".into()),
                    force_path_style: true,
                    credentials: Some(S3Credentials {
                        access_key_id: "testing".into(),
                        secret_access_key: "testing".to_string().into(),
                    }),
                    part_size,
                },
            )
            .unwrap(),
        )
    }

    /// Pseudo-random bytes (xorshift), incompressible so the mailbox file really grows.
    fn noise(len: usize, seed: u64) -> String {
        let mut state = seed | 1;
        let mut out = String::with_capacity(len + len / 76 * 2);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for index in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(ALPHABET[(state % 64) as usize] as char);
            if index % 76 == 75 {
                out.push_str("\r\n");
            }
        }
        out
    }

    #[test]
    fn backup_restore_and_purge_through_s3() {
        let moto = Moto::start();
        moto.create_bucket("sealmail-backups");
        let mut setup = setup();
        setup.target = target(&moto, "sealmail-backups", "prod/mail", None);
        append(&setup, "INBOX", "first", Flags::default());

        let first = stored(backup(&setup));
        let versions = setup.target.list_versions(&setup.mailbox_id).unwrap();
        assert_eq!(versions, vec![first.clone()]);
        assert_eq!(
            setup.target.list_mailboxes().unwrap(),
            vec![setup.mailbox_id.clone()]
        );
        // The stored object is the encrypted snapshot: same hash, no plaintext.
        let downloaded = setup.data.join("downloaded.sqlite");
        setup.target.fetch_version(&first, &downloaded).unwrap();
        let bytes = std::fs::read(&downloaded).unwrap();
        assert!(!contains(&bytes, MARKER));
        assert_eq!(bytes.len() as u64, first.size);
        // A different prefix in the same bucket sees nothing.
        let other = target(&moto, "sealmail-backups", "staging", None);
        assert!(other.list_versions(&setup.mailbox_id).unwrap().is_empty());

        assert!(matches!(backup(&setup), BackupOutcome::Unchanged { .. }));
        append(&setup, "INBOX", "second", Flags::default());
        let second = stored(backup(&setup));
        assert_eq!(
            setup.target.list_versions(&setup.mailbox_id).unwrap().len(),
            2
        );

        let expected = account_contents(&setup.registry);
        let fresh = setup.data.parent().unwrap().join("fresh");
        let registry = Registry::open_or_create(&fresh).unwrap();
        let outcome = restore(
            &registry,
            &setup.target,
            &request(VersionSelector::Latest),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(outcome.manifest, second);
        assert_eq!(account_contents(&registry), expected);

        assert_eq!(purge_backups(&setup.target, &setup.mailbox_id).unwrap(), 2);
        assert!(
            setup
                .target
                .list_versions(&setup.mailbox_id)
                .unwrap()
                .is_empty()
        );
        assert!(setup.target.list_mailboxes().unwrap().is_empty());
    }

    #[test]
    fn large_mailbox_goes_up_in_parts_and_comes_back_whole() {
        let moto = Moto::start();
        moto.create_bucket("big");
        let mut setup = setup();
        let part_size = 5 << 20;
        setup.target = target(&moto, "big", "", Some(part_size));
        let mut open = open_mailbox(&setup.registry, ADDRESS, PASSWORD).unwrap();
        // Four 4 MiB texts of base64-like noise: about 12 MiB once compressed, whether or not
        // the full-text index has taken them yet.
        for index in 0..4u64 {
            let raw = message(&format!("big{index}"), &noise(4 << 20, index + 1));
            open.mailbox_mut()
                .append("INBOX", &raw, &AppendOptions::default())
                .unwrap();
        }
        drop(open);
        let manifest = stored(backup(&setup));
        assert!(
            manifest.size > 2 * part_size as u64,
            "{} bytes is not enough to need three parts",
            manifest.size
        );
        let expected = account_contents(&setup.registry);
        let fresh = setup.data.parent().unwrap().join("fresh");
        let registry = Registry::open_or_create(&fresh).unwrap();
        restore(
            &registry,
            &setup.target,
            &request(VersionSelector::Latest),
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(account_contents(&registry), expected);
    }
}

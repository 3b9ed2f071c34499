//! sealmail-core used directly from Rust: create a registry and an account, store a message,
//! find it with IMAP-style and Mongo-style searches, and back the mailbox up, encrypted, to a
//! directory.
//!
//! `cargo run -p sealmail-core --example quickstart [DATA_DIR]` (a temporary directory when
//! none is given). The integration test `tests/examples.rs` runs the same `run` function, so
//! this example cannot silently rot.

use sealmail_core::backup::{BackupOptions, BackupOutcome, BackupTarget, backup_account};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry};
use sealmail_core::store::{AppendOptions, Flags, SearchKey};
use serde_json::json;
use std::path::Path;

/// What the walk-through found, for the caller to print or check.
#[derive(Debug)]
pub struct QuickstartReport {
    /// UIDs an IMAP `SEARCH TEXT "invoice"` finds in INBOX.
    pub imap_search_hits: Vec<u32>,
    /// Subjects of the unseen messages, newest first, from a Mongo-style query.
    pub unseen_subjects: Vec<String>,
    /// The file the encrypted backup was stored in.
    pub backup_file: String,
    pub backup_sha256: String,
}

pub fn run(data_dir: &Path, backup_dir: &Path) -> sealmail_core::Result<QuickstartReport> {
    // 1. The registry: addresses, password verifiers and each mailbox's wrapped key.
    let registry = Registry::open_or_create(data_dir)?;
    let options = AccountOptions {
        // A cheap KDF keeps the example fast; real accounts keep the secure default.
        kdf: KdfParams::INSECURE_FOR_TESTS,
        ..AccountOptions::default()
    };
    let password = "correct horse battery staple";
    registry.add_account("alice@example.org", Some(password), &options)?;

    // 2. Log in: the password unwraps the mailbox key, which opens the encrypted file.
    let mut opened =
        sealmail_core::account::open_mailbox(&registry, "alice@example.org", password)?;
    let mailbox = opened.mailbox_mut();
    for (subject, seen) in [
        ("Your invoice", false),
        ("Lunch?", true),
        ("Invoice paid", false),
    ] {
        let raw = format!(
            "From: Bob <bob@example.com>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
             Date: Sat, 28 Nov 2026 20:00:00 +0000\r\n\r\nHello Alice, see the invoice.\r\n"
        );
        let flags = Flags {
            seen,
            ..Flags::default()
        };
        mailbox.append(
            "INBOX",
            raw.as_bytes(),
            &AppendOptions {
                flags,
                internal_date: None,
            },
        )?;
    }

    // 3. Search: the IMAP way (full-text index) and the Mongo-style way.
    let imap_search_hits = mailbox.search("INBOX", &SearchKey::Text("invoice".into()))?;
    let found = mailbox.query(&json!({
        "collection": "messages",
        "op": "find",
        "filter": { "folder": "INBOX", "seen": false },
        "projection": { "subject": 1 },
        "sort": { "uid": -1 },
    }))?;
    let unseen_subjects = found
        .into_lines()
        .iter()
        .filter_map(|document| document["subject"].as_str().map(str::to_owned))
        .collect();
    drop(opened);

    // 4. Back up: an encrypted, verified snapshot; nothing readable leaves the mailbox.
    let target = BackupTarget::parse(&format!("file://{}", backup_dir.display()))?;
    let outcome = backup_account(
        &registry,
        "alice@example.org",
        password,
        &target,
        &BackupOptions::default(),
    )?;
    let manifest = match outcome {
        BackupOutcome::Stored { manifest, .. } => manifest,
        // Only when the directory already held this mailbox's latest state.
        BackupOutcome::Unchanged { latest } => latest,
    };
    Ok(QuickstartReport {
        imap_search_hits,
        unseen_subjects,
        backup_file: target.snapshot_location(&manifest),
        backup_sha256: manifest.sha256,
    })
}

#[allow(dead_code)] // The integration test includes this file for `run` only.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let data_dir = match std::env::args_os().nth(1) {
        Some(dir) => dir.into(),
        None => scratch.path().join("data"),
    };
    let report = run(&data_dir, &scratch.path().join("backups"))?;
    println!(
        "IMAP SEARCH TEXT invoice -> UIDs {:?}",
        report.imap_search_hits
    );
    println!("unseen, newest first     -> {:?}", report.unseen_subjects);
    println!(
        "encrypted backup         -> {} (sha256 {})",
        report.backup_file, report.backup_sha256
    );
    Ok(())
}

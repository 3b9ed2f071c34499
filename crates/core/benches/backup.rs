//! Backup of a large mailbox against the physical floor: a plain copy (synced) plus SHA-256 of
//! the same file, in the same run, with the file equally hot in the page cache for both.
//!
//! `cargo bench -p sealmail-core --bench backup --no-default-features`
//! Size: `SEALMAIL_BENCH_BACKUP_MB` (default 1024).
//!
//! After the backups it times the candidate steps one by one on the same file (the profile
//! behind the choices in `backup::snapshot`): both ways to copy an encrypted database and the
//! checks a copy could get.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sealmail_core::backup::{BackupOptions, BackupOutcome, BackupTarget, run};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry};
use sealmail_core::store::{AppendOptions, Mailbox};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

/// The mailbox cipher settings (`key::cipher_settings`), for the step profile.
const CIPHER_SETTINGS: &str =
    "PRAGMA cipher_page_size = 4096; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;";

fn main() {
    let megabytes: u64 = std::env::var("SEALMAIL_BENCH_BACKUP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let registry = Registry::open_or_create(&dir.path().join("data")).unwrap();
    let account = registry
        .add_account(
            "bench@example.org",
            Some("bench password"),
            &AccountOptions {
                kdf: KdfParams::INSECURE_FOR_TESTS,
                ..AccountOptions::default()
            },
        )
        .unwrap();
    let path = registry.mailbox_path(&account.mailbox_id);

    let started = Instant::now();
    let mut mailbox = Mailbox::open(&path, &account.key).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while mailbox.used_bytes().unwrap() < megabytes << 20 {
        let batch: Vec<Vec<u8>> = (0..16).map(|_| message(&mut seed)).collect();
        let items: Vec<(&[u8], AppendOptions)> = batch
            .iter()
            .map(|raw| (raw.as_slice(), AppendOptions::default()))
            .collect();
        mailbox.append_many("INBOX", &items).unwrap();
    }
    mailbox.checkpoint().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "mailbox: {:.0} MiB, filled in {:.1} s",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    // The floor: copy the file, sync it, hash it.
    let copy = dir.path().join("floor-copy");
    let started = Instant::now();
    let cpu = cpu_seconds();
    std::fs::copy(&path, &copy).unwrap();
    std::fs::File::open(&copy).unwrap().sync_all().unwrap();
    let digest = sha256_file(&copy);
    let floor = started.elapsed().as_secs_f64();
    let floor_cpu = cpu_seconds() - cpu;
    std::fs::remove_file(&copy).unwrap();
    println!("floor (copy + fsync + sha256): {floor:.2} s, {floor_cpu:.2} s CPU ({digest:.8}..)");

    let target = BackupTarget::Directory(dir.path().join("backups"));
    let credential = registry.wrapped_credential(&account.mailbox_id).unwrap();
    reset_peak_rss();
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let outcome = run(
        &mailbox,
        &account.key,
        &credential,
        &target,
        &BackupOptions::default(),
    )
    .unwrap();
    let backup = started.elapsed().as_secs_f64();
    let backup_cpu = cpu_seconds() - cpu;
    assert!(matches!(outcome, BackupOutcome::Stored { .. }));
    println!(
        "backup (snapshot + sha256 + verify + store): {backup:.2} s = {:.2}x floor; \
         {backup_cpu:.2} s CPU = {:.2}x floor's; peak RSS {} MiB (was {} MiB before)",
        backup / floor,
        backup_cpu / floor_cpu,
        peak_rss_kib() / 1024,
        rss_before / 1024
    );

    let started = Instant::now();
    let cpu = cpu_seconds();
    let outcome = run(
        &mailbox,
        &account.key,
        &credential,
        &target,
        &BackupOptions::default(),
    )
    .unwrap();
    assert!(matches!(outcome, BackupOutcome::Unchanged { .. }));
    println!(
        "unchanged backup (snapshot + sha256, skipped): {:.2} s, {:.2} s CPU",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );

    // The daily case: one new message since the last version, so the hash differs and the
    // snapshot is verified and stored.
    mailbox
        .append("INBOX", &message(&mut seed), &AppendOptions::default())
        .unwrap();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let outcome = run(
        &mailbox,
        &account.key,
        &credential,
        &target,
        &BackupOptions::default(),
    )
    .unwrap();
    let changed = started.elapsed().as_secs_f64();
    let changed_cpu = cpu_seconds() - cpu;
    assert!(matches!(outcome, BackupOutcome::Stored { .. }));
    println!(
        "changed backup (snapshot + sha256 + verify + store): {changed:.2} s = {:.2}x \
         floor; {changed_cpu:.2} s CPU = {:.2}x floor's",
        changed / floor,
        changed_cpu / floor_cpu
    );
    mailbox.checkpoint().unwrap();
    profile_steps(&path, &hex::encode(account.key.as_bytes()), dir.path());
}

/// Time each candidate step of a backup on the mailbox file at `path`, keyed with `key_hex`.
fn profile_steps(path: &Path, key_hex: &str, scratch: &Path) {
    let keyed = |conn: &Connection| {
        conn.execute_batch(&format!(
            "PRAGMA cipher_log_level = NONE; PRAGMA key = \"x'{key_hex}'\"; {CIPHER_SETTINGS}"
        ))
        .unwrap();
    };
    let open = || {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        keyed(&conn);
        conn
    };
    let timed = |label: &str, step: &mut dyn FnMut()| {
        let started = Instant::now();
        let cpu = cpu_seconds();
        step();
        println!(
            "  {label:<44} {:6.2} s, {:6.2} s CPU",
            started.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    };
    println!("steps, one at a time:");
    let copy = scratch.join("profile-copy.sqlite");
    timed("copy: file bytes + sha256 in one pass", &mut || {
        let mut input = std::fs::File::open(path).unwrap();
        let mut output = std::fs::File::create(&copy).unwrap();
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = input.read(&mut buffer).unwrap();
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            std::io::Write::write_all(&mut output, &buffer[..read]).unwrap();
        }
        output.sync_all().unwrap();
    });
    std::fs::remove_file(&copy).unwrap();
    timed("copy: sqlcipher_export (row by row)", &mut || {
        // Read-write: a read-only connection would attach the copy read-only too.
        let conn = Connection::open(path).unwrap();
        keyed(&conn);
        conn.execute(
            "ATTACH DATABASE ?1 AS export_copy KEY ?2",
            [copy.to_string_lossy().as_ref(), &format!("x'{key_hex}'")],
        )
        .unwrap();
        conn.execute_batch(&CIPHER_SETTINGS.replace("PRAGMA ", "PRAGMA export_copy."))
            .unwrap();
        conn.execute_batch(
            "PRAGMA export_copy.journal_mode = OFF; PRAGMA export_copy.synchronous = OFF;
             PRAGMA export_copy.cache_size = -16384;",
        )
        .unwrap();
        conn.query_row("SELECT sqlcipher_export('export_copy')", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch("DETACH DATABASE export_copy").unwrap();
    });
    std::fs::remove_file(&copy).unwrap();
    timed("copy: online backup API (page by page)", &mut || {
        let source = open();
        let mut destination = Connection::open(&copy).unwrap();
        keyed(&destination);
        destination
            .execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
            .unwrap();
        let backup = rusqlite::backup::Backup::new(&source, &mut destination).unwrap();
        backup.step(-1).unwrap();
    });
    std::fs::remove_file(&copy).unwrap();
    for check in ["integrity_check", "quick_check", "cipher_integrity_check"] {
        timed(&format!("check: PRAGMA {check}"), &mut || {
            let conn = open();
            let mut statement = conn.prepare(&format!("PRAGMA {check}")).unwrap();
            let rows: Vec<String> = statement
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(rows.iter().all(|row| row == "ok") || check == "cipher_integrity_check");
        });
    }
    timed(
        "read every row (what the former content MAC read)",
        &mut || {
            let conn = open();
            let tables: Vec<String> = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'",
                )
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut bytes = 0usize;
            for table in tables {
                let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
                let columns = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                while let Some(row) = rows.next().unwrap() {
                    for index in 0..columns {
                        bytes += match row.get_ref(index).unwrap() {
                            ValueRef::Text(v) | ValueRef::Blob(v) => v.len(),
                            _ => 8,
                        };
                    }
                }
            }
            assert!(bytes > 0);
        },
    );
    timed("sha256 of the file", &mut || {
        sha256_file(path);
    });
}

/// A message with a 1 MiB random (incompressible) attachment, base64-encoded.
fn message(seed: &mut u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench {seed}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n\
         Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for index in 0..(1 << 20) / 3 * 4 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.push(ALPHABET[(*seed % 64) as usize]);
        if index % 76 == 75 {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n--b--\r\n");
    out
}

fn sha256_file(path: &std::path::Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    hex::encode(hasher.finalize())
}

/// CPU seconds (user + system, all threads) this process has used. On a shared machine the
/// wall times above stretch with everyone else's load; CPU time much less so.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
}

/// Reset the kernel's peak-RSS counter (VmHWM) so it covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

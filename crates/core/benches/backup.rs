//! Backup of a large mailbox against the physical floor: a plain copy (synced) plus SHA-256 of
//! the same file, in the same run, with the file equally hot in the page cache for both.
//!
//! `cargo bench -p sealmail-core --bench backup --no-default-features`
//! Size: `SEALMAIL_BENCH_BACKUP_MB` (default 1024).

use sealmail_core::backup::{BackupOptions, BackupOutcome, BackupTarget, run};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry};
use sealmail_core::store::{AppendOptions, Mailbox};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::time::Instant;

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
    std::fs::copy(&path, &copy).unwrap();
    std::fs::File::open(&copy).unwrap().sync_all().unwrap();
    let digest = sha256_file(&copy);
    let floor = started.elapsed().as_secs_f64();
    std::fs::remove_file(&copy).unwrap();
    println!("floor (copy + fsync + sha256): {floor:.2} s ({digest:.8}..)");

    let target = BackupTarget::Directory(dir.path().join("backups"));
    let credential = registry.wrapped_credential(&account.mailbox_id).unwrap();
    reset_peak_rss();
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let outcome = run(
        &mailbox,
        &account.key,
        &credential,
        &target,
        &BackupOptions::default(),
    )
    .unwrap();
    let backup = started.elapsed().as_secs_f64();
    assert!(matches!(outcome, BackupOutcome::Stored { .. }));
    println!(
        "backup (MAC + snapshot + verify + sha256 + store): {backup:.2} s = {:.2}x floor; \
         peak RSS {} MiB (was {} MiB before)",
        backup / floor,
        peak_rss_kib() / 1024,
        rss_before / 1024
    );

    let started = Instant::now();
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
        "unchanged backup (MAC only, skipped): {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The daily case: one new message since the last version, so the live MAC differs and
    // the whole snapshot is written again.
    mailbox
        .append("INBOX", &message(&mut seed), &AppendOptions::default())
        .unwrap();
    let started = Instant::now();
    let outcome = run(
        &mailbox,
        &account.key,
        &credential,
        &target,
        &BackupOptions::default(),
    )
    .unwrap();
    let changed = started.elapsed().as_secs_f64();
    assert!(matches!(outcome, BackupOutcome::Stored { .. }));
    println!(
        "changed backup (MAC + snapshot + verify + sha256 + store): {changed:.2} s = {:.2}x floor",
        changed / floor
    );
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

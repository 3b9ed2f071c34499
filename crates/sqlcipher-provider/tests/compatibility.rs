//! Files written through this provider and through SQLCipher's OpenSSL provider are the same
//! format: each reads and verifies what the other wrote, for the settings sealmail uses and for
//! SQLCipher's defaults (passphrase KDF, HMAC-SHA512), and tampering is still caught.
//!
//! The default provider is process-wide, so every test takes `PROVIDER_SWITCH` while it picks
//! one and keys its connections.

use rusqlite::Connection;
use sealmail_sqlcipher_provider::{PROVIDER_NAME, install, is_active, testing};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

static PROVIDER_SWITCH: Mutex<()> = Mutex::new(());

fn use_provider(name: &str) -> MutexGuard<'static, ()> {
    let guard = PROVIDER_SWITCH.lock().unwrap_or_else(|p| p.into_inner());
    install().expect("the provider installs on the pinned SQLCipher");
    assert!(testing::make_default(name), "provider {name} is registered");
    guard
}

/// sealmail's settings: a raw 256-bit key, 4 KiB pages, HMAC-SHA256.
const RAW_KEY: &str =
    "PRAGMA key = \"x'000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'\";
     PRAGMA cipher_page_size = 4096; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;";

/// SQLCipher 4's defaults with a passphrase (PBKDF2-HMAC-SHA512, HMAC-SHA512), with fewer KDF
/// iterations to keep the test fast.
const PASSPHRASE: &str = "PRAGMA key = 'correct horse battery staple'; PRAGMA kdf_iter = 1000;";

/// SQLCipher 3's settings: PBKDF2-HMAC-SHA1 and HMAC-SHA1, 1 KiB pages.
const SHA1_SETTINGS: &str = "PRAGMA key = 'legacy passphrase'; PRAGMA kdf_iter = 1000;
     PRAGMA cipher_page_size = 1024; PRAGMA cipher_hmac_algorithm = HMAC_SHA1;
     PRAGMA cipher_kdf_algorithm = PBKDF2_HMAC_SHA1;";

const TABLE: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);";

fn keyed(path: &Path, settings: &str) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(settings).unwrap();
    conn
}

fn write_rows(conn: &Connection, from: i64, count: i64) {
    let tx = conn.unchecked_transaction().unwrap();
    for i in from..from + count {
        // Rows of a few hundred bytes over many pages, some in overflow pages.
        let body = format!("row {i} ").repeat(40 + (i as usize % 7) * 100);
        tx.execute("INSERT INTO t (id, body) VALUES (?1, ?2)", (i, body))
            .unwrap();
    }
    tx.commit().unwrap();
}

fn check_rows(conn: &Connection, count: i64) {
    let (rows, checksum): (i64, i64) = conn
        .query_row("SELECT count(*), sum(length(body) * id) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let expected: i64 = (0..count)
        .map(|i| {
            format!("row {i} ")
                .repeat(40 + (i as usize % 7) * 100)
                .len() as i64
                * i
        })
        .sum();
    assert_eq!((rows, checksum), (count, expected));
    let mut check = conn.prepare("PRAGMA cipher_integrity_check").unwrap();
    let problems: Vec<String> = check
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(problems.is_empty(), "integrity: {problems:?}");
    let quick: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(quick, "ok");
}

/// A file at `path` with sealmail's settings and `rows` rows, written by the current provider.
fn written_with_raw_key(path: &Path, rows: i64) {
    let conn = keyed(path, RAW_KEY);
    conn.execute_batch(TABLE).unwrap();
    write_rows(&conn, 0, rows);
}

fn provider_name(conn: &Connection) -> String {
    conn.query_row("PRAGMA cipher_provider", [], |r| r.get(0))
        .unwrap()
}

fn round_trip(settings: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let _openssl = use_provider("openssl");
        let conn = keyed(&path, settings);
        assert_eq!(provider_name(&conn), "openssl");
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(TABLE).unwrap();
        write_rows(&conn, 0, 300);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        write_rows(&conn, 300, 100); // these stay in the WAL
    }
    {
        let _ours = use_provider(PROVIDER_NAME);
        let conn = keyed(&path, settings);
        assert!(is_active(&conn).unwrap());
        check_rows(&conn, 400);
        write_rows(&conn, 400, 200);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        write_rows(&conn, 600, 100);
        check_rows(&conn, 700);
    }
    {
        let _openssl = use_provider("openssl");
        let conn = keyed(&path, settings);
        assert_eq!(provider_name(&conn), "openssl");
        check_rows(&conn, 700);
    }
}

#[test]
fn raw_key_files_move_between_providers_both_ways() {
    round_trip(RAW_KEY);
}

#[test]
fn passphrase_files_with_sqlcipher_defaults_move_between_providers_both_ways() {
    round_trip(PASSPHRASE);
}

#[test]
fn sha1_settings_move_between_providers_both_ways() {
    round_trip(SHA1_SETTINGS);
}

#[test]
fn a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let _ours = use_provider(PROVIDER_NAME);
    written_with_raw_key(&path, 10);
    let wrong = Connection::open(&path).unwrap();
    wrong
        .execute_batch(&RAW_KEY.replace("1e1f'", "1e1e'"))
        .unwrap();
    assert!(
        wrong
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r
                .get::<_, i64>(0))
            .is_err()
    );
}

#[test]
fn a_flipped_byte_in_a_page_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let _ours = use_provider(PROVIDER_NAME);
    written_with_raw_key(&path, 100);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 3 * 4096);
    bytes[2 * 4096 + 100] ^= 0x01; // inside page 3's ciphertext
    std::fs::write(&path, &bytes).unwrap();
    let conn = keyed(&path, RAW_KEY);
    let read = conn.query_row("SELECT sum(length(body)) FROM t", [], |r| {
        r.get::<_, i64>(0)
    });
    assert!(read.is_err(), "a tampered page must not read back");
}

#[test]
fn the_same_page_written_twice_gets_a_fresh_iv() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let _ours = use_provider(PROVIDER_NAME);
    for path in [&first, &second] {
        let conn = keyed(path, RAW_KEY);
        conn.execute_batch("CREATE TABLE t (x);").unwrap();
    }
    // Same key, same content, same salt position: only the random IVs (and the salt) differ,
    // so no page of one file equals the matching page of the other.
    let (a, b) = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (page_a, page_b) in a.chunks(4096).zip(b.chunks(4096)) {
        assert_ne!(page_a[16..], page_b[16..]);
    }
}

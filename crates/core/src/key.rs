//! Key material: the per-mailbox data key and helpers that keep it out of logs and memory dumps.

use std::fmt;
use std::sync::Once;
use std::time::{Duration, Instant};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length in bytes of every symmetric key sealmail uses.
pub const KEY_LEN: usize = 32;

/// A mailbox data key (DEK): 256 random bits that SQLCipher uses as its raw key.
///
/// It is wiped from memory on drop and never printed: `Debug` shows `[REDACTED]`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MailboxKey([u8; KEY_LEN]);

impl MailboxKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).expect("operating system random source failed");
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The statements that open a SQLCipher file with this raw key (skipping SQLCipher's own
    /// passphrase KDF: the key is already uniformly random), followed by the cipher settings
    /// of a file with `page_size`. Returns only once SQLCipher is initialized in this process,
    /// so the statements can run.
    pub(crate) fn sqlcipher_key_pragma(&self, page_size: u32) -> Zeroizing<String> {
        wait_for_sqlcipher_initialization();
        let mut hex_key = Zeroizing::new(hex::encode(self.0));
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\"; {}",
            hex_key.as_str(),
            cipher_settings("main", page_size)
        ));
        hex_key.zeroize();
        pragma
    }
}

/// The page size of mailbox files created now: SQLCipher encrypts, authenticates and writes
/// whole pages, and most writes of a mail store are small (a flag change, one appended
/// message, an expunge) yet dirty a page in each of several indexes. With 4 KiB pages such a
/// commit encrypts a quarter of the bytes it did with 16 KiB pages: one message per
/// transaction appends 2.75 times as fast (store bench), for batches the two sizes are within
/// noise. Files created before schema 8 have [`LEGACY_PAGE_SIZE`] and keep it until their key
/// is rotated, which rewrites them with this one.
pub(crate) const MAILBOX_PAGE_SIZE: u32 = 4096;

/// The page size of mailbox files created before schema 8.
pub(crate) const LEGACY_PAGE_SIZE: u32 = 16384;

/// SQLCipher settings of a mailbox file with `page_size`, for the database `schema` (`main`,
/// or the name of an attached copy). They are not stored in the file, so every connection must
/// set them before its first read; [`open_keyed`] finds them for an existing file.
/// HMAC-SHA256 runs on the SHA extensions of current x86 and ARM CPUs.
pub(crate) fn cipher_settings(schema: &str, page_size: u32) -> String {
    format!(
        "PRAGMA {schema}.cipher_page_size = {page_size}; \
         PRAGMA {schema}.cipher_hmac_algorithm = HMAC_SHA256;"
    )
}

/// Open the mailbox file at `path` with `key`: keyed, read once, ready for use.
///
/// The page size is not recorded in plaintext anywhere (the whole file is encrypted), so each
/// page size mailbox files have had is tried, the current one first: with the wrong size the
/// HMAC of page 1 does not verify and SQLite reports "not a database", exactly as for a wrong
/// key, and the file is opened again with the next size. A missing or empty file opens with
/// [`MAILBOX_PAGE_SIZE`]. `before_first_read` runs on each attempt after keying (locking mode,
/// busy timeout). The error is the last attempt's.
pub(crate) fn open_keyed(
    path: &std::path::Path,
    flags: rusqlite::OpenFlags,
    key: &MailboxKey,
    before_first_read: impl Fn(&rusqlite::Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<rusqlite::Connection> {
    let attempt = |page_size| {
        let conn = open_keyed_with_page_size(path, flags, key, page_size)?;
        before_first_read(&conn)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(conn)
    };
    match attempt(MAILBOX_PAGE_SIZE) {
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::NotADatabase =>
        {
            attempt(LEGACY_PAGE_SIZE)
        }
        other => other,
    }
}

/// The page size of the database open on `conn` (the file at `path`, named in the error).
/// SQLCipher answers `PRAGMA page_size` as text (its own pragma handler sees it first).
pub(crate) fn page_size(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
) -> crate::error::Result<u32> {
    let answer: String = conn.query_row("PRAGMA main.page_size", [], |r| r.get(0))?;
    answer.parse().map_err(|_| crate::error::Error::Corrupt {
        path: path.into(),
        reason: format!("page size {answer:?}"),
    })
}

/// A connection to `path` keyed for a file with `page_size`, not yet read: for new files that
/// must match another file's page size (a page-by-page copy), and for [`open_keyed`].
pub(crate) fn open_keyed_with_page_size(
    path: &std::path::Path,
    flags: rusqlite::OpenFlags,
    key: &MailboxKey,
    page_size: u32,
) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    // Silence SQLCipher before keying so a wrong key prints nothing to stderr.
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&key.sqlcipher_key_pragma(page_size))?;
    Ok(conn)
}

/// How long the first keyed connection of a process waits for SQLCipher's initialization.
const SQLCIPHER_INITIALIZATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait until SQLCipher accepts keys in this process.
///
/// SQLite marks itself initialized *before* it runs SQLCipher's initialization step (the
/// `SQLITE_EXTRA_INIT` hook runs outside SQLite's init mutex), so a thread opening its first
/// connection while another thread is still inside that step finds SQLCipher "not
/// initialized" and its `PRAGMA key` fails. Threads that open connections concurrently at
/// startup (a test harness, a server accepting its first logins) hit this. The first keyed
/// connection of the process probes an in-memory database until a key is accepted; the others
/// wait for it on the `Once`. After the timeout the real `PRAGMA key` reports the error.
fn wait_for_sqlcipher_initialization() {
    static INITIALIZED: Once = Once::new();
    INITIALIZED.call_once(|| {
        let deadline = Instant::now() + SQLCIPHER_INITIALIZATION_TIMEOUT;
        loop {
            let accepted = rusqlite::Connection::open_in_memory()
                .and_then(|probe| probe.execute_batch("PRAGMA key = 'initialization probe';"))
                .is_ok();
            if accepted {
                // SQLCipher is initialized: put the RustCrypto provider on top of OpenSSL's for
                // every connection keyed from now on. If it refuses (another SQLCipher release
                // is linked), OpenSSL's stays, which reads and writes the same files;
                // `page_crypto_provider` reports why.
                let _ = sealmail_sqlcipher_provider::install();
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Whether mailbox pages are encrypted through sealmail's RustCrypto provider (`Ok`) or, if it
/// could not be installed, through SQLCipher's OpenSSL provider (the reason). Both write the
/// same format; the RustCrypto one skips OpenSSL's per-page lookups and locks.
pub fn page_crypto_provider() -> Result<(), sealmail_sqlcipher_provider::InstallError> {
    wait_for_sqlcipher_initialization();
    sealmail_sqlcipher_provider::install()
}

impl fmt::Debug for MailboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxKey([REDACTED])")
    }
}

/// Random bytes from the operating system, for salts, ids and nonces.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("operating system random source failed");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = MailboxKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "MailboxKey([REDACTED])");
        assert!(!shown.contains("ab"));
    }

    #[test]
    fn mailbox_connections_encrypt_pages_through_the_rustcrypto_provider() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox =
            crate::store::Mailbox::create(&dir.path().join("m.sqlite"), &MailboxKey::generate())
                .unwrap();
        assert_eq!(page_crypto_provider(), Ok(()));
        assert!(sealmail_sqlcipher_provider::is_active(mailbox.conn()).unwrap());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            MailboxKey::generate().as_bytes(),
            MailboxKey::generate().as_bytes()
        );
    }
}

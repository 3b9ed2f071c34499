//! The account registry: one plain SQLite file, `<data_dir>/registry.sqlite`, mapping addresses
//! to mailbox ids and holding each mailbox's data key (DEK) wrapped by a key derived from the
//! owner's password (and optionally from a recovery code). It holds nothing that opens a mailbox
//! without the password.
//!
//! [`Registry`] is synchronous and `Send + Sync`: one instance is shared by every protocol
//! server, which call it from blocking threads. Argon2id runs outside the database lock, so a
//! slow login never holds up lookups; writes that depend on what was read check the account's
//! credential generation and retry or fail with [`Error::ConcurrentUpdate`] instead of
//! overwriting a concurrent change.

mod address;
mod forwarding;
mod kdf_memory;
mod mailbox_id;
mod schema;
mod secrets;
mod wrap;

#[cfg(test)]
mod tests;

pub use address::{Address, MAX_ADDRESS_LEN, MAX_LOCAL_PART_LEN};
pub use forwarding::{ForwardMode, Forwarding, MAX_WEBHOOK_URL_LEN, Webhook, WebhookSecret};
pub use mailbox_id::{MAILBOX_ID_LEN, MailboxId, mailbox_path};
pub use schema::REGISTRY_SCHEMA_VERSION;
pub use secrets::GENERATED_PASSWORD_LEN;
pub use wrap::{KdfParams, SALT_LEN, unwrap_with_password};

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::login_cache::{CachedKeys, LoginCache, LoginCacheConfig, LoginCacheStats};
use crate::store::Mailbox;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use wrap::{Kek, derive_kek, new_salt, unwrap_key, wrap_key};
use zeroize::Zeroizing;

/// File name of the registry inside the data directory.
pub const REGISTRY_FILE_NAME: &str = "registry.sqlite";
/// Longest password accepted when setting one; Argon2id would take more, but nobody types it.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// How many times a read-derive-write operation retries after losing a race.
const WRITE_ATTEMPTS: usize = 3;

/// `<data_dir>/registry.sqlite`.
pub fn registry_path(data_dir: &Path) -> PathBuf {
    data_dir.join(REGISTRY_FILE_NAME)
}

/// How to open a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Create the data directory and an empty registry when none exists.
    pub create_if_missing: bool,
    /// Keep recently unwrapped keys in memory (see [`crate::login_cache`]); `None` disables it.
    pub login_cache: Option<LoginCacheConfig>,
    /// Cost of the stand-in Argon2id run for a login to an unknown address. Set it to the
    /// parameters accounts are created with, so that both failures take the same time.
    pub unknown_address_kdf: KdfParams,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            create_if_missing: false,
            login_cache: Some(LoginCacheConfig::default()),
            unknown_address_kdf: KdfParams::default(),
        }
    }
}

/// Choices made when an account is created.
#[derive(Debug, Clone, Default)]
pub struct AccountOptions {
    /// Storage limit in bytes; `None` for unlimited.
    pub quota: Option<u64>,
    /// Also wrap the key with a generated recovery code, shown once in [`NewAccount`].
    pub with_recovery_code: bool,
    pub kdf: KdfParams,
}

/// A freshly created account. The password (if generated) and recovery code are shown to the
/// person once and exist nowhere else afterwards.
pub struct NewAccount {
    pub address: Address,
    pub mailbox_id: MailboxId,
    /// Set when the account was created without a password.
    pub generated_password: Option<Zeroizing<String>>,
    pub recovery_code: Option<Zeroizing<String>>,
    pub key: MailboxKey,
}

/// A successful login: the mailbox and the key that opens it.
#[derive(Debug)]
pub struct Login {
    pub address: Address,
    pub mailbox_id: MailboxId,
    pub key: MailboxKey,
    /// During a DEK rotation: the new key. If the mailbox file does not open with `key`, the
    /// rotation got as far as swapping the file and this key opens it.
    pub pending_key: Option<MailboxKey>,
    pub quota: Option<u64>,
}

/// What anyone may know about an account without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub address: Address,
    pub mailbox_id: MailboxId,
    pub quota: Option<u64>,
    pub used_bytes: u64,
    /// ISO-8601 UTC, e.g. `2026-11-28T20:25:50Z`.
    pub created_at: String,
    pub kdf: KdfParams,
    pub has_recovery_code: bool,
    pub has_pending_key: bool,
}

/// How an account's key is wrapped under its password: what a backup manifest carries so a
/// backup restores with only the password. Without the password it opens nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedCredential {
    pub mailbox_id: MailboxId,
    pub kdf_salt: Vec<u8>,
    pub kdf: KdfParams,
    pub wrapped_key: Vec<u8>,
    /// A DEK rotation is unresolved: the file may be keyed with the pending key instead.
    pub has_pending_key: bool,
}

/// The account registry. See the module documentation.
pub struct Registry {
    data_dir: PathBuf,
    /// One connection for the whole process: registry work is short (Argon2id runs outside
    /// the lock), and a std mutex is right because callers are blocking threads.
    conn: Mutex<Connection>,
    login_cache: Option<Mutex<LoginCache>>,
    unknown_address_kdf: KdfParams,
    /// Salt of the stand-in derivation; random per process so it cannot be precomputed.
    unknown_address_salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What a login needs from an account row.
struct CredentialRow {
    address: Address,
    mailbox_id: MailboxId,
    kdf_salt: Vec<u8>,
    kdf: KdfParams,
    wrapped_key: Vec<u8>,
    pending_wrapped_key: Option<Vec<u8>>,
    recovery_salt: Option<Vec<u8>>,
    recovery_wrapped_key: Option<Vec<u8>>,
    generation: i64,
    quota: Option<u64>,
}

const CREDENTIAL_COLUMNS: &str = "address, mailbox_id, kdf_salt, kdf_m_cost_kib, kdf_t_cost, \
     kdf_p_cost, wrapped_key, pending_wrapped_key, recovery_salt, recovery_wrapped_key, \
     credential_generation, quota_bytes";

const INFO_COLUMNS: &str = "address, mailbox_id, quota_bytes, used_bytes, created_at, \
     kdf_m_cost_kib, kdf_t_cost, kdf_p_cost, recovery_wrapped_key IS NOT NULL, \
     pending_wrapped_key IS NOT NULL";

/// The keys an authenticated request unwrapped, with the row they came from.
struct Unlocked {
    row: CredentialRow,
    key: MailboxKey,
    pending_key: Option<MailboxKey>,
}

impl Registry {
    /// Open the registry in `data_dir`; [`Error::RegistryMissing`] if there is none.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, RegistryOptions::default())
    }

    /// Open the registry in `data_dir`, creating the directory and registry if needed.
    pub fn open_or_create(data_dir: &Path) -> Result<Self> {
        Self::open_with(
            data_dir,
            RegistryOptions {
                create_if_missing: true,
                ..RegistryOptions::default()
            },
        )
    }

    pub fn open_with(data_dir: &Path, options: RegistryOptions) -> Result<Self> {
        options.unknown_address_kdf.validate()?;
        let path = registry_path(data_dir);
        let creating = !path.exists();
        if creating && !options.create_if_missing {
            return Err(Error::RegistryMissing(path));
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if creating {
            std::fs::create_dir_all(data_dir)?;
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut conn = Connection::open_with_flags(&path, flags)?;
        if creating {
            restrict_to_owner(&path)?;
        }
        // No key: the registry is plain SQLite. Registry writes are rare and each one matters
        // (a password change), so they are synced fully.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;",
        )?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            conn: Mutex::new(conn),
            login_cache: options
                .login_cache
                .map(|config| Mutex::new(LoginCache::new(config))),
            unknown_address_kdf: options.unknown_address_kdf,
            unknown_address_salt: new_salt(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the mailbox with this id lives.
    pub fn mailbox_path(&self, mailbox_id: &MailboxId) -> PathBuf {
        mailbox_path(&self.data_dir, mailbox_id)
    }

    /// Create an account and its empty mailbox file. Without a password one is generated and
    /// returned. If the mailbox file cannot be created no account row is written, and if the
    /// row cannot be written the new file is removed again.
    pub fn add_account(
        &self,
        address: &str,
        password: Option<&str>,
        options: &AccountOptions,
    ) -> Result<NewAccount> {
        let address = Address::parse(address)?;
        options.kdf.validate()?;
        let quota = options.quota.map(to_sql_integer).transpose()?;
        if let Some(password) = password {
            check_new_password(password)?;
        }
        let generated_password = password.is_none().then(secrets::generate_password);
        let password = password
            .or(generated_password.as_deref().map(String::as_str))
            .expect("a password was given or generated");
        // Cheap early answer before spending Argon2id; the insert below re-checks.
        if self.lookup_normalized(&address)?.is_some() {
            return Err(Error::AddressExists(address.to_string()));
        }

        let mailbox_id = MailboxId::generate();
        let key = MailboxKey::generate();
        let kdf_salt = new_salt();
        let wrapped_key = wrap_key(
            &derive_kek(password.as_bytes(), &kdf_salt, &options.kdf)?,
            &mailbox_id,
            &key,
        );
        let recovery = if options.with_recovery_code {
            Some(RecoveryWrap::new(&mailbox_id, &key, &options.kdf)?)
        } else {
            None
        };

        let path = self.mailbox_path(&mailbox_id);
        // The mailbox keeps its sealing secret key inside; the registry gets the public half
        // so mail for an offline owner can be sealed to it.
        let sealing_public_key = Mailbox::create(&path, &key)?.sealing_public_key()?;
        let inserted = self
            .insert_account(&NewAccountRow {
                address: &address,
                mailbox_id: &mailbox_id,
                kdf_salt: &kdf_salt,
                kdf: &options.kdf,
                wrapped_key: &wrapped_key,
                recovery: recovery.as_ref(),
                quota,
            })
            .and_then(|()| {
                self.set_sealing_public_key(&mailbox_id, &sealing_public_key.to_bytes())
            });
        if let Err(error) = inserted {
            // Best effort: the error that matters is the insert's, and an orphaned file
            // without a row reveals nothing and opens with nothing stored.
            let _ = remove_mailbox_files(&self.data_dir, &mailbox_id);
            return Err(error);
        }
        Ok(NewAccount {
            address,
            mailbox_id,
            generated_password,
            recovery_code: recovery.map(|wrap| wrap.code),
            key,
        })
    }

    /// Check `password` and return the mailbox key. A wrong password, an unknown address and a
    /// malformed address all give [`Error::WrongPassword`] after the same Argon2id work; a
    /// damaged or tampered wrapped key gives it too.
    pub fn login(&self, address: &str, password: &str) -> Result<Login> {
        let unlocked = self.authenticate(address, password)?;
        Ok(Login {
            address: unlocked.row.address,
            mailbox_id: unlocked.row.mailbox_id,
            key: unlocked.key,
            pending_key: unlocked.pending_key,
            quota: unlocked.row.quota,
        })
    }

    /// Re-wrap the key under `new_password`. The mailbox file is not touched; a pending
    /// rotation key is carried over.
    pub fn change_password(
        &self,
        address: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        check_new_password(new_password)?;
        self.retry_on_conflict(address, || {
            let unlocked = self.authenticate(address, old_password)?;
            let row = &unlocked.row;
            let kdf_salt = new_salt();
            let kek = derive_kek(new_password.as_bytes(), &kdf_salt, &row.kdf)?;
            let wrapped_key = wrap_key(&kek, &row.mailbox_id, &unlocked.key);
            let pending_wrapped_key = unlocked
                .pending_key
                .as_ref()
                .map(|pending| wrap_key(&kek, &row.mailbox_id, pending));
            self.update_credentials(
                row,
                "kdf_salt = ?3, wrapped_key = ?4, pending_wrapped_key = ?5",
                params![kdf_salt.as_slice(), wrapped_key, pending_wrapped_key],
            )
        })
    }

    /// Set a new password with the recovery code. Unknown addresses, accounts without a
    /// recovery code and wrong codes all give [`Error::WrongRecoveryCode`]. The code stays
    /// valid. A pending rotation key is dropped: it was wrapped under the forgotten password.
    pub fn reset_password_with_recovery_code(
        &self,
        address: &str,
        recovery_code: &str,
        new_password: &str,
    ) -> Result<()> {
        check_new_password(new_password)?;
        let canonical_code = secrets::canonical_recovery_code(recovery_code);
        self.retry_on_conflict(address, || {
            let Some(row) = self.credential_row_for_login(address)? else {
                self.spend_unknown_address_kdf(canonical_code.as_bytes());
                return Err(Error::WrongRecoveryCode);
            };
            let (Some(recovery_salt), Some(recovery_wrapped_key)) =
                (&row.recovery_salt, &row.recovery_wrapped_key)
            else {
                self.spend_unknown_address_kdf(canonical_code.as_bytes());
                return Err(Error::WrongRecoveryCode);
            };
            let recovery_kek = derive_kek(canonical_code.as_bytes(), recovery_salt, &row.kdf)?;
            let key = unwrap_key(&recovery_kek, &row.mailbox_id, recovery_wrapped_key)
                .ok_or(Error::WrongRecoveryCode)?;
            let kdf_salt = new_salt();
            let kek = derive_kek(new_password.as_bytes(), &kdf_salt, &row.kdf)?;
            let wrapped_key = wrap_key(&kek, &row.mailbox_id, &key);
            self.update_credentials(
                &row,
                "kdf_salt = ?3, wrapped_key = ?4, pending_wrapped_key = NULL",
                params![kdf_salt.as_slice(), wrapped_key],
            )
        })
    }

    /// Start a DEK rotation: store `new_key` wrapped under the same password, next to the
    /// current key. Logins then return both until [`Self::promote_pending_key`] or
    /// [`Self::clear_pending_key`]. Refused with [`Error::KeyRotationPending`] while another
    /// rotation is unresolved, because its key might be the one the file is keyed with.
    pub fn set_pending_key(
        &self,
        address: &str,
        password: &str,
        new_key: &MailboxKey,
    ) -> Result<()> {
        self.retry_on_conflict(address, || {
            // The password-derived key itself is needed to wrap, so the cache cannot help.
            let (unlocked, kek) = self.authenticate_cold(address, password)?;
            let row = &unlocked.row;
            if row.pending_wrapped_key.is_some() {
                return Err(Error::KeyRotationPending(row.mailbox_id.to_string()));
            }
            let pending_wrapped_key = wrap_key(&kek, &row.mailbox_id, new_key);
            self.update_credentials(
                row,
                "pending_wrapped_key = ?3",
                params![pending_wrapped_key],
            )
        })
    }

    /// Finish a DEK rotation: the pending key becomes the current key. `new_key` must be the
    /// key given to [`Self::set_pending_key`], and the mailbox file must already be keyed with
    /// it: this is checked by opening the file, so a rotation that did not reach the swap
    /// cannot be promoted into a registry whose current key no longer opens the mailbox.
    ///
    /// The old recovery code wrapped the old key, so if the account had one it is replaced:
    /// the fresh code is returned and must be shown to the owner.
    pub fn promote_pending_key(
        &self,
        mailbox_id: &MailboxId,
        new_key: &MailboxKey,
    ) -> Result<Option<Zeroizing<String>>> {
        let row = self
            .credential_row_by_id(mailbox_id)?
            .ok_or_else(|| Error::NoSuchAccount(mailbox_id.to_string()))?;
        if row.pending_wrapped_key.is_none() {
            return Err(Error::NoPendingKey(mailbox_id.to_string()));
        }
        drop(Mailbox::open(&self.mailbox_path(mailbox_id), new_key)?);
        let recovery = if row.recovery_wrapped_key.is_some() {
            Some(RecoveryWrap::new(mailbox_id, new_key, &row.kdf)?)
        } else {
            None
        };
        self.update_credentials(
            &row,
            "wrapped_key = pending_wrapped_key, pending_wrapped_key = NULL, \
             recovery_salt = ?3, recovery_wrapped_key = ?4",
            params![
                recovery.as_ref().map(|wrap| wrap.salt.as_slice()),
                recovery.as_ref().map(|wrap| wrap.wrapped_key.as_slice()),
            ],
        )?;
        Ok(recovery.map(|wrap| wrap.code))
    }

    /// Abandon a DEK rotation (the file was never swapped): forget the pending key.
    pub fn clear_pending_key(&self, mailbox_id: &MailboxId) -> Result<()> {
        let cleared: Option<String> = self
            .lock_conn()
            .query_row(
                "UPDATE accounts SET pending_wrapped_key = NULL,
                     credential_generation = credential_generation + 1
                 WHERE mailbox_id = ?1 AND pending_wrapped_key IS NOT NULL
                 RETURNING address",
                params![mailbox_id.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        match cleared {
            Some(address) => {
                self.forget_cached_login(&address);
                Ok(())
            }
            None if self.account_by_mailbox_id(mailbox_id)?.is_some() => {
                Err(Error::NoPendingKey(mailbox_id.to_string()))
            }
            None => Err(Error::NoSuchAccount(mailbox_id.to_string())),
        }
    }

    /// Delete the account and its mailbox files (`.sqlite`, `-wal`, `-shm`). The row goes
    /// first, so no login can succeed while the files are being removed. The domain stays.
    pub fn remove_account(&self, address: &str) -> Result<()> {
        let address = Address::parse(address)?;
        let mailbox_id: Option<String> = self
            .lock_conn()
            .query_row(
                "DELETE FROM accounts WHERE address = ?1 RETURNING mailbox_id",
                params![address.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        let mailbox_id: MailboxId = mailbox_id
            .ok_or_else(|| Error::NoSuchAccount(address.to_string()))?
            .parse()?;
        self.forget_cached_login(address.as_str());
        remove_mailbox_files(&self.data_dir, &mailbox_id)
    }

    /// The password wrapping of a mailbox's key, for backup manifests.
    pub fn wrapped_credential(&self, mailbox_id: &MailboxId) -> Result<WrappedCredential> {
        let row = self
            .credential_row_by_id(mailbox_id)?
            .ok_or_else(|| Error::NoSuchAccount(mailbox_id.to_string()))?;
        Ok(WrappedCredential {
            mailbox_id: row.mailbox_id,
            kdf_salt: row.kdf_salt,
            kdf: row.kdf,
            wrapped_key: row.wrapped_key,
            has_pending_key: row.pending_wrapped_key.is_some(),
        })
    }

    /// Register `address` for a mailbox restored from a backup into a data directory that has
    /// no account for it, with the wrapping the backup carried (so the password current at the
    /// backup logs in). The mailbox file must already be in place. No recovery code.
    pub fn add_restored_account(
        &self,
        address: &str,
        credential: &WrappedCredential,
    ) -> Result<()> {
        let address = Address::parse(address)?;
        credential.kdf.validate()?;
        let kdf_salt: [u8; SALT_LEN] =
            credential.kdf_salt.as_slice().try_into().map_err(|_| {
                Error::InvalidArgument(format!("a KDF salt must be {SALT_LEN} bytes"))
            })?;
        self.insert_account(&NewAccountRow {
            address: &address,
            mailbox_id: &credential.mailbox_id,
            kdf_salt: &kdf_salt,
            kdf: &credential.kdf,
            wrapped_key: &credential.wrapped_key,
            recovery: None,
            quota: None,
        })
    }

    /// Every account, ordered by address.
    pub fn list_accounts(&self) -> Result<Vec<AccountInfo>> {
        let conn = self.lock_conn();
        let mut statement = conn.prepare(&format!(
            "SELECT {INFO_COLUMNS} FROM accounts ORDER BY address"
        ))?;
        let rows = statement.query_map([], account_info_from_row)?;
        rows.map(|row| row?).collect()
    }

    /// Every domain that has or had an address, ordered by name (ASCII form).
    pub fn list_domains(&self) -> Result<Vec<String>> {
        let conn = self.lock_conn();
        let mut statement = conn.prepare("SELECT name FROM domains ORDER BY name")?;
        let names = statement.query_map([], |row| row.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// The account for `address`, without a password (for RCPT TO checks and the CLI).
    /// A malformed address is [`Error::InvalidAddress`]; a well-formed unknown one is `None`.
    pub fn lookup(&self, address: &str) -> Result<Option<AccountInfo>> {
        self.lookup_normalized(&Address::parse(address)?)
    }

    pub fn account_by_mailbox_id(&self, mailbox_id: &MailboxId) -> Result<Option<AccountInfo>> {
        // Cached statements: every delivery looks accounts up, and parsing the SQL each time
        // cost more than the lookup.
        self.lock_conn()
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS} FROM accounts WHERE mailbox_id = ?1"
            ))?
            .query_row(params![mailbox_id.as_str()], account_info_from_row)
            .optional()?
            .transpose()
    }

    /// Record the mailbox's storage use (the store reports it after writes).
    pub fn set_used_bytes(&self, mailbox_id: &MailboxId, used_bytes: u64) -> Result<()> {
        self.update_by_mailbox_id(
            mailbox_id,
            "used_bytes = ?2",
            params![mailbox_id.as_str(), to_sql_integer(used_bytes)?],
        )
    }

    /// Set or lift (`None`) the storage limit of `address`.
    pub fn set_quota(&self, address: &str, quota: Option<u64>) -> Result<()> {
        let address = Address::parse(address)?;
        let quota = quota.map(to_sql_integer).transpose()?;
        let changed = self.lock_conn().execute(
            "UPDATE accounts SET quota_bytes = ?2 WHERE address = ?1",
            params![address.as_str(), quota],
        )?;
        if changed == 0 {
            return Err(Error::NoSuchAccount(address.to_string()));
        }
        Ok(())
    }

    /// The public key mail for this mailbox is sealed to while nobody is logged in.
    pub fn sealing_public_key(&self, mailbox_id: &MailboxId) -> Result<Option<Vec<u8>>> {
        self.lock_conn()
            .prepare_cached("SELECT sealing_public_key FROM accounts WHERE mailbox_id = ?1")?
            .query_row(params![mailbox_id.as_str()], |row| row.get(0))
            .optional()?
            .ok_or_else(|| Error::NoSuchAccount(mailbox_id.to_string()))
    }

    pub fn set_sealing_public_key(&self, mailbox_id: &MailboxId, public_key: &[u8]) -> Result<()> {
        self.update_by_mailbox_id(
            mailbox_id,
            "sealing_public_key = ?2",
            params![mailbox_id.as_str(), public_key],
        )
    }

    /// Hit and miss counters of the login cache, `None` when it is disabled.
    pub fn login_cache_stats(&self) -> Option<LoginCacheStats> {
        self.login_cache.as_ref().map(|cache| lock(cache).stats())
    }

    /// Wipe login-cache entries that have been idle too long. Lookups ignore them anyway;
    /// calling this from a timer takes their keys out of memory promptly.
    pub fn purge_expired_logins(&self) {
        if let Some(cache) = &self.login_cache {
            lock(cache).purge_expired();
        }
    }

    // ----- helpers -----

    fn lock_conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// The row for a login-style request, or `None` for a malformed or unknown address (which
    /// callers answer exactly like a wrong secret).
    fn credential_row_for_login(&self, address: &str) -> Result<Option<CredentialRow>> {
        let Ok(address) = Address::parse(address) else {
            return Ok(None);
        };
        // Cached: every login prepares it otherwise.
        self.lock_conn()
            .prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM accounts WHERE address = ?1"
            ))?
            .query_row(params![address.as_str()], credential_row_from_row)
            .optional()?
            .transpose()
    }

    fn credential_row_by_id(&self, mailbox_id: &MailboxId) -> Result<Option<CredentialRow>> {
        // Cached, as the login query above.
        self.lock_conn()
            .prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM accounts WHERE mailbox_id = ?1"
            ))?
            .query_row(params![mailbox_id.as_str()], credential_row_from_row)
            .optional()?
            .transpose()
    }

    fn lookup_normalized(&self, address: &Address) -> Result<Option<AccountInfo>> {
        self.lock_conn()
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS} FROM accounts WHERE address = ?1"
            ))?
            .query_row(params![address.as_str()], account_info_from_row)
            .optional()?
            .transpose()
    }

    /// Password check, answered from the login cache when allowed and possible.
    fn authenticate(&self, address: &str, password: &str) -> Result<Unlocked> {
        let Some(row) = self.credential_row_for_login(address)? else {
            self.spend_unknown_address_kdf(password.as_bytes());
            return Err(Error::WrongPassword);
        };
        if let Some(login_cache) = &self.login_cache {
            let hit = lock(login_cache).get(
                row.address.as_str(),
                password,
                &row.mailbox_id,
                row.generation,
            );
            if let Some(hit) = hit {
                return Ok(Unlocked {
                    row,
                    key: hit.key,
                    pending_key: hit.pending_key,
                });
            }
        }
        let (unlocked, _kek) = self.unwrap_with_password(row, password)?;
        Ok(unlocked)
    }

    /// Password check that always derives the key-encryption key, and returns it.
    fn authenticate_cold(&self, address: &str, password: &str) -> Result<(Unlocked, Kek)> {
        let Some(row) = self.credential_row_for_login(address)? else {
            self.spend_unknown_address_kdf(password.as_bytes());
            return Err(Error::WrongPassword);
        };
        self.unwrap_with_password(row, password)
    }

    /// Argon2id, then unwrap; on success the login cache learns the keys.
    fn unwrap_with_password(&self, row: CredentialRow, password: &str) -> Result<(Unlocked, Kek)> {
        let kek = derive_kek(password.as_bytes(), &row.kdf_salt, &row.kdf)?;
        let key =
            unwrap_key(&kek, &row.mailbox_id, &row.wrapped_key).ok_or(Error::WrongPassword)?;
        let pending_key = match &row.pending_wrapped_key {
            None => None,
            // The password is right (the current key unwrapped), so this is damage, not a
            // wrong guess.
            Some(wrapped) => Some(
                unwrap_key(&kek, &row.mailbox_id, wrapped)
                    .ok_or(Error::Crypto("the pending mailbox key does not unwrap"))?,
            ),
        };
        if let Some(login_cache) = &self.login_cache {
            lock(login_cache).insert(
                row.address.as_str(),
                password,
                CachedKeys {
                    mailbox_id: row.mailbox_id.clone(),
                    generation: row.generation,
                    key: key.clone(),
                    pending_key: pending_key.clone(),
                },
            );
        }
        Ok((
            Unlocked {
                row,
                key,
                pending_key,
            },
            kek,
        ))
    }

    /// The Argon2id work a real account would cost, so an unknown address answers no faster.
    fn spend_unknown_address_kdf(&self, secret: &[u8]) {
        let kek = derive_kek(
            secret,
            &self.unknown_address_salt,
            &self.unknown_address_kdf,
        );
        std::hint::black_box(kek.is_ok());
    }

    /// Write new credential columns if the account is still at the generation `row` was read
    /// at, bumping the generation and dropping the cached login. `assignments` refers to its
    /// own parameters from `?3` on (`?1` is the mailbox id, `?2` the expected generation).
    fn update_credentials(
        &self,
        row: &CredentialRow,
        assignments: &str,
        extra: &[&dyn rusqlite::ToSql],
    ) -> Result<()> {
        let sql = format!(
            "UPDATE accounts SET {assignments}, credential_generation = credential_generation + 1
             WHERE mailbox_id = ?1 AND credential_generation = ?2"
        );
        let mailbox_id = row.mailbox_id.as_str();
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&mailbox_id, &row.generation];
        all.extend_from_slice(extra);
        let changed = self.lock_conn().execute(&sql, all.as_slice())?;
        self.forget_cached_login(row.address.as_str());
        if changed == 0 {
            return Err(Error::ConcurrentUpdate(row.address.to_string()));
        }
        Ok(())
    }

    /// Run a read-derive-write operation again when a concurrent change beat it.
    fn retry_on_conflict(
        &self,
        address: &str,
        mut operation: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        for _ in 1..WRITE_ATTEMPTS {
            match operation() {
                Err(Error::ConcurrentUpdate(_)) => continue,
                done => return done,
            }
        }
        operation().map_err(|error| match error {
            Error::ConcurrentUpdate(_) => Error::ConcurrentUpdate(address.to_owned()),
            other => other,
        })
    }

    fn update_by_mailbox_id(
        &self,
        mailbox_id: &MailboxId,
        assignment: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<()> {
        let changed = self.lock_conn().execute(
            &format!("UPDATE accounts SET {assignment} WHERE mailbox_id = ?1"),
            values,
        )?;
        if changed == 0 {
            return Err(Error::NoSuchAccount(mailbox_id.to_string()));
        }
        Ok(())
    }

    fn forget_cached_login(&self, address: &str) {
        if let Some(cache) = &self.login_cache {
            lock(cache).remove(address);
        }
    }

    fn insert_account(&self, new: &NewAccountRow<'_>) -> Result<()> {
        let mut conn = self.lock_conn();
        // IMMEDIATE takes the write lock up front, so the existence check and the insert are
        // atomic even against another process (the CLI next to a running server).
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE address = ?1)",
            params![new.address.as_str()],
            |row| row.get(0),
        )?;
        if exists {
            return Err(Error::AddressExists(new.address.to_string()));
        }
        tx.execute(
            "INSERT INTO domains (name, created_at)
             VALUES (?1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
             ON CONFLICT (name) DO NOTHING",
            params![new.address.domain()],
        )?;
        tx.execute(
            "INSERT INTO accounts (address, domain_id, mailbox_id, kdf_salt, kdf_m_cost_kib,
                 kdf_t_cost, kdf_p_cost, wrapped_key, recovery_salt, recovery_wrapped_key,
                 quota_bytes, created_at)
             VALUES (?1, (SELECT id FROM domains WHERE name = ?2), ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 ?10, ?11, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            params![
                new.address.as_str(),
                new.address.domain(),
                new.mailbox_id.as_str(),
                new.kdf_salt.as_slice(),
                new.kdf.m_cost_kib,
                new.kdf.t_cost,
                new.kdf.p_cost,
                new.wrapped_key,
                new.recovery.map(|wrap| wrap.salt.as_slice()),
                new.recovery.map(|wrap| wrap.wrapped_key.as_slice()),
                new.quota,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Columns of a new account row.
struct NewAccountRow<'a> {
    address: &'a Address,
    mailbox_id: &'a MailboxId,
    kdf_salt: &'a [u8; SALT_LEN],
    kdf: &'a KdfParams,
    wrapped_key: &'a [u8],
    recovery: Option<&'a RecoveryWrap>,
    quota: Option<i64>,
}

/// A fresh recovery code and the key wrapped under it.
struct RecoveryWrap {
    code: Zeroizing<String>,
    salt: [u8; SALT_LEN],
    wrapped_key: Vec<u8>,
}

impl RecoveryWrap {
    fn new(mailbox_id: &MailboxId, key: &MailboxKey, kdf: &KdfParams) -> Result<Self> {
        let code = secrets::generate_recovery_code();
        let salt = new_salt();
        let canonical = secrets::canonical_recovery_code(&code);
        let kek = derive_kek(canonical.as_bytes(), &salt, kdf)?;
        Ok(Self {
            wrapped_key: wrap_key(&kek, mailbox_id, key),
            code,
            salt,
        })
    }
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<Zeroizing<String>>| secret.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("NewAccount")
            .field("address", &self.address)
            .field("mailbox_id", &self.mailbox_id)
            .field("generated_password", &redacted(&self.generated_password))
            .field("recovery_code", &redacted(&self.recovery_code))
            .field("key", &self.key)
            .finish()
    }
}

/// Lock a mutex, recovering from poisoning: a panic elsewhere cannot leave the connection or
/// cache half-updated (SQLite transactions roll back when dropped during unwinding).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_new_password(password: &str) -> Result<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::InvalidArgument(format!(
            "a password must be 1 to {MAX_PASSWORD_LEN} bytes long"
        )));
    }
    Ok(())
}

/// SQLite integers are signed 64-bit.
fn to_sql_integer(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::InvalidArgument(format!("{value} exceeds the largest storable size")))
}

/// SQLite integers are signed; sizes are not. A negative value is damage, reported as such.
fn u64_column(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

fn optional_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<u64>> {
    let value: Option<i64> = row.get(index)?;
    value
        .map(|value| {
            u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
        })
        .transpose()
}

fn credential_row_from_row(row: &Row<'_>) -> rusqlite::Result<Result<CredentialRow>> {
    let address: String = row.get(0)?;
    let mailbox_id: String = row.get(1)?;
    let parsed = (|| -> Result<CredentialRow> {
        Ok(CredentialRow {
            address: Address::parse(&address)?,
            mailbox_id: mailbox_id.parse()?,
            kdf_salt: row.get(2)?,
            kdf: KdfParams {
                m_cost_kib: row.get(3)?,
                t_cost: row.get(4)?,
                p_cost: row.get(5)?,
            },
            wrapped_key: row.get(6)?,
            pending_wrapped_key: row.get(7)?,
            recovery_salt: row.get(8)?,
            recovery_wrapped_key: row.get(9)?,
            generation: row.get(10)?,
            quota: optional_u64(row, 11)?,
        })
    })();
    Ok(parsed)
}

fn account_info_from_row(row: &Row<'_>) -> rusqlite::Result<Result<AccountInfo>> {
    let address: String = row.get(0)?;
    let mailbox_id: String = row.get(1)?;
    let parsed = (|| -> Result<AccountInfo> {
        Ok(AccountInfo {
            address: Address::parse(&address)?,
            mailbox_id: mailbox_id.parse()?,
            quota: optional_u64(row, 2)?,
            used_bytes: u64_column(row, 3)?,
            created_at: row.get(4)?,
            kdf: KdfParams {
                m_cost_kib: row.get(5)?,
                t_cost: row.get(6)?,
                p_cost: row.get(7)?,
            },
            has_recovery_code: row.get(8)?,
            has_pending_key: row.get(9)?,
        })
    })();
    Ok(parsed)
}

/// Delete a mailbox file and its side files; files already gone are fine.
/// Delete the mailbox file, its SQLite side files, and every other file named after it: the
/// backup lock (`.backup-lock`), leftovers of an interrupted restore or key rotation
/// (`.restoring`, `.previous`, `.rotating`, ...) and snapshots an S3 backup staged beside it
/// (`.snapshot-<id>-...`). The main file goes last, so a crash midway leaves a file to retry on.
fn remove_mailbox_files(data_dir: &Path, mailbox_id: &MailboxId) -> Result<()> {
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::from(error)),
    };
    let main = mailbox_id::mailbox_path(data_dir, mailbox_id);
    let main_name = format!("{}.sqlite", mailbox_id.as_str());
    let staged_prefix = format!(".snapshot-{}-", mailbox_id.as_str());
    if let Some(dir) = main.parent()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let side_file = name.starts_with(&main_name) && name != main_name;
            if side_file || name.starts_with(&staged_prefix) {
                remove(&entry.path())?;
            }
        }
    }
    for path in mailbox_id::mailbox_files(data_dir, mailbox_id) {
        remove(&path)?;
    }
    Ok(())
}

/// The registry holds wrapped keys and salts: keep other local users out (umask may not).
#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> Result<()> {
    Ok(())
}

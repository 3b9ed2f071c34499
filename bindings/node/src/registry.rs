//! `Registry` (accounts) and `deliver()` (sealed delivery for an MX without keys).

use crate::error::Failure;
use crate::task::{Blocking, blocking};
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi_derive::napi;
use sealmail_core::account::deliver_sealed;
use sealmail_core::registry::{AccountInfo, AccountOptions, KdfParams, Registry as CoreRegistry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use zeroize::Zeroizing;

/// One core registry per data directory for the whole process, shared by `Registry`,
/// `Mailbox` and `deliver()`: the registry keeps a single connection and the login cache, so
/// a second one for the same directory would only compete for its lock and miss the cache.
static REGISTRIES: Mutex<Option<HashMap<PathBuf, Weak<CoreRegistry>>>> = Mutex::new(None);

/// The registry of `data_dir`, opened (and created when `create` is set) on first use.
pub(crate) fn shared_registry(data_dir: &str, create: bool) -> Result<Arc<CoreRegistry>, Failure> {
    let dir = Path::new(data_dir);
    let mut cache = REGISTRIES.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Ok(canonical) = std::fs::canonicalize(dir)
        && let Some(registry) = cache.get(&canonical).and_then(Weak::upgrade)
    {
        return Ok(registry);
    }
    let registry = Arc::new(if create {
        CoreRegistry::open_or_create(dir)?
    } else {
        CoreRegistry::open(dir)?
    });
    let canonical = std::fs::canonicalize(dir).map_err(sealmail_core::Error::from)?;
    cache.retain(|_, registry| registry.strong_count() > 0);
    cache.insert(canonical, Arc::downgrade(&registry));
    Ok(registry)
}

/// The accounts of one data directory: addresses, passwords, quotas. Holds no mailbox key.
#[napi]
pub struct Registry {
    registry: Arc<CoreRegistry>,
}

/// Argon2id cost of a new account's password. The defaults (OWASP's minimum: 19 MiB, 2 passes,
/// 1 lane) are what production accounts should use; lower values are for tests only.
#[napi(object)]
pub struct KdfOptions {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Options of `Registry.addAccount`.
#[napi(object)]
pub struct AddAccountOptions {
    /// The account's password; when absent a strong one is generated and returned once.
    pub password: Option<String>,
    /// Storage limit in bytes; unlimited when absent.
    pub quota: Option<i64>,
    /// Also generate a recovery code (returned once) that can reset the password.
    pub recovery_code: Option<bool>,
    /// Argon2id cost. Leave unset in production: the default is the secure one. Tests may pass
    /// a tiny cost to keep logins fast.
    pub kdf: Option<KdfOptions>,
}

/// A new account. `password` is set only when it was generated; both secrets are shown here
/// once and stored nowhere in readable form.
#[napi(object)]
pub struct NewAccount {
    pub address: String,
    pub mailbox_id: String,
    pub password: Option<String>,
    pub recovery_code: Option<String>,
}

/// What anyone may know about an account without its password.
#[napi(object)]
pub struct Account {
    pub address: String,
    pub mailbox_id: String,
    /// Storage limit in bytes; absent when unlimited.
    pub quota: Option<i64>,
    /// Bytes used, as last recorded (on login, `quota()` and `close()`).
    pub used_bytes: i64,
    /// ISO-8601 UTC.
    pub created_at: String,
    pub has_recovery_code: bool,
}

#[napi]
impl Registry {
    /// Open the registry in `dataDir`, creating the directory and an empty registry if needed.
    #[napi(ts_return_type = "Promise<Registry>")]
    pub fn open(data_dir: String) -> AsyncTask<Blocking<Registry>> {
        blocking(move || {
            Ok(Registry {
                registry: shared_registry(&data_dir, true)?,
            })
        })
    }

    /// Create an account and its empty encrypted mailbox.
    #[napi(ts_return_type = "Promise<NewAccount>")]
    pub fn add_account(
        &self,
        address: String,
        options: Option<AddAccountOptions>,
    ) -> AsyncTask<Blocking<NewAccount>> {
        let registry = self.registry.clone();
        let options = options.unwrap_or(AddAccountOptions {
            password: None,
            quota: None,
            recovery_code: None,
            kdf: None,
        });
        let password = options.password.map(Zeroizing::new);
        let quota = options.quota.map(u64::try_from).transpose();
        let with_recovery_code = options.recovery_code.unwrap_or(false);
        let kdf = options
            .kdf
            .map_or_else(KdfParams::default, |kdf| KdfParams {
                m_cost_kib: kdf.memory_kib,
                t_cost: kdf.iterations,
                p_cost: kdf.parallelism,
            });
        blocking(move || {
            let quota = quota.map_err(|_| {
                Failure::invalid_argument("quota must be a non-negative number of bytes")
            })?;
            let account_options = AccountOptions {
                quota,
                with_recovery_code,
                kdf,
            };
            let account = registry.add_account(
                &address,
                password.as_ref().map(|p| p.as_str()),
                &account_options,
            )?;
            Ok(NewAccount {
                address: account.address.to_string(),
                mailbox_id: account.mailbox_id.as_str().to_string(),
                password: account.generated_password.as_ref().map(|p| p.to_string()),
                recovery_code: account.recovery_code.as_ref().map(|c| c.to_string()),
            })
        })
    }

    /// Whether `password` opens `address`. Resolves `false` for a wrong password and for an
    /// unknown address alike (after the same Argon2id work); rejects only on other failures.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn verify(&self, address: String, password: String) -> AsyncTask<Blocking<bool>> {
        let registry = self.registry.clone();
        let password = Zeroizing::new(password);
        blocking(move || match registry.login(&address, &password) {
            Ok(_) => Ok(true),
            Err(sealmail_core::Error::WrongPassword) => Ok(false),
            Err(error) => Err(error.into()),
        })
    }

    /// Re-wrap the mailbox key under `newPassword` (the mailbox file is not rewritten). Rejects
    /// with `WRONG_PASSWORD` when `oldPassword` does not open the account.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn change_password(
        &self,
        address: String,
        old_password: String,
        new_password: String,
    ) -> AsyncTask<Blocking<()>> {
        let registry = self.registry.clone();
        let old_password = Zeroizing::new(old_password);
        let new_password = Zeroizing::new(new_password);
        blocking(move || Ok(registry.change_password(&address, &old_password, &new_password)?))
    }

    /// Delete the account and its mailbox files. Irreversible. With `purgeBackups` (a backup
    /// target such as `file:///var/backups/sealmail`), every backup of the mailbox stored
    /// there is deleted first (`s3://BUCKET/PREFIX` too, configured like `Mailbox.backup`); a
    /// target that cannot be used rejects before anything is deleted.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn remove_account(
        &self,
        address: String,
        options: Option<RemoveAccountOptions>,
    ) -> AsyncTask<Blocking<()>> {
        let registry = self.registry.clone();
        let purge = options.and_then(|options| options.purge_backups);
        blocking(move || {
            if let Some(target) = purge {
                let target = sealmail_core::backup::BackupTarget::parse(&target)?;
                let account = registry
                    .lookup(&address)?
                    .ok_or_else(|| sealmail_core::Error::NoSuchAccount(address.clone()))?;
                sealmail_core::backup::purge_backups(&target, &account.mailbox_id)?;
            }
            Ok(registry.remove_account(&address)?)
        })
    }

    /// The account of `address`, or `null` (what an MX asks at `RCPT TO`).
    #[napi(ts_return_type = "Promise<Account | null>")]
    pub fn lookup(&self, address: String) -> AsyncTask<Blocking<Option<Account>>> {
        let registry = self.registry.clone();
        blocking(move || Ok(registry.lookup(&address)?.map(Account::from)))
    }

    /// Every account, ordered by address.
    #[napi(ts_return_type = "Promise<Account[]>")]
    pub fn list_accounts(&self) -> AsyncTask<Blocking<Vec<Account>>> {
        let registry = self.registry.clone();
        blocking(move || {
            Ok(registry
                .list_accounts()?
                .into_iter()
                .map(Account::from)
                .collect())
        })
    }
}

/// Options of `Registry.removeAccount`.
#[napi(object)]
pub struct RemoveAccountOptions {
    /// A backup target (`file:///DIR`) whose backups of this mailbox are deleted too.
    pub purge_backups: Option<String>,
}

impl From<AccountInfo> for Account {
    fn from(info: AccountInfo) -> Self {
        Account {
            address: info.address.to_string(),
            mailbox_id: info.mailbox_id.as_str().to_string(),
            quota: info.quota.map(to_js_integer),
            used_bytes: to_js_integer(info.used_bytes),
            created_at: info.created_at,
            has_recovery_code: info.has_recovery_code,
        }
    }
}

/// A byte count or counter as a JS number (exact below 2^53, far beyond any mailbox).
pub(crate) fn to_js_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Deliver `raw` to `address` without its key: the message is sealed to the mailbox's public
/// key and queued durably, and lands in INBOX at the owner's next login. Resolves with the
/// queue item id once the message survives a crash (an MX may answer `250` then). Rejects with
/// `NO_SUCH_ACCOUNT` for an unknown address.
#[napi(ts_return_type = "Promise<string>")]
pub fn deliver(data_dir: String, address: String, raw: Buffer) -> AsyncTask<Blocking<String>> {
    blocking(move || {
        let registry = shared_registry(&data_dir, false)?;
        Ok(deliver_sealed(&registry, &address, &raw)?
            .as_str()
            .to_string())
    })
}

//! Registry behaviour end to end, against real files in a temporary directory.

use super::*;
use crate::login_cache::LoginCacheConfig;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const FAST: KdfParams = KdfParams::INSECURE_FOR_TESTS;

fn options(login_cache: Option<LoginCacheConfig>) -> RegistryOptions {
    RegistryOptions {
        create_if_missing: true,
        login_cache,
        unknown_address_kdf: FAST,
    }
}

fn registry_with(login_cache: Option<LoginCacheConfig>) -> (TempDir, Registry) {
    let dir = TempDir::new().unwrap();
    let registry = Registry::open_with(dir.path(), options(login_cache)).unwrap();
    (dir, registry)
}

/// A registry without the login cache, so every login runs the full check.
fn registry() -> (TempDir, Registry) {
    registry_with(None)
}

fn account_options(with_recovery_code: bool) -> AccountOptions {
    AccountOptions {
        quota: None,
        with_recovery_code,
        kdf: FAST,
    }
}

fn add(registry: &Registry, address: &str, password: &str) -> NewAccount {
    registry
        .add_account(address, Some(password), &account_options(false))
        .unwrap()
}

/// A second connection to the registry file, for inspecting or damaging rows.
fn raw(dir: &TempDir) -> Connection {
    Connection::open(registry_path(dir.path())).unwrap()
}

fn assert_wrong_password(result: Result<Login>) {
    match result {
        Err(Error::WrongPassword) => {}
        other => panic!("expected WrongPassword, got {other:?}"),
    }
}

#[test]
fn registry_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Registry>();
}

#[test]
fn missing_registry_is_reported_not_created() {
    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("data");
    match Registry::open(&data_dir) {
        Err(Error::RegistryMissing(path)) => assert_eq!(path, registry_path(&data_dir)),
        other => panic!("expected RegistryMissing, got {other:?}"),
    }
    assert!(!data_dir.exists());
    Registry::open_with(&data_dir, options(None)).unwrap();
    assert!(registry_path(&data_dir).is_file());
    Registry::open(&data_dir).unwrap();
}

#[cfg(unix)]
#[test]
fn new_registry_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _registry) = registry();
    let mode = std::fs::metadata(registry_path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn newer_registry_schema_is_refused() {
    let (dir, registry) = registry();
    drop(registry);
    raw(&dir)
        .execute_batch(&format!(
            "PRAGMA user_version = {}",
            REGISTRY_SCHEMA_VERSION + 1
        ))
        .unwrap();
    match Registry::open_with(dir.path(), options(None)) {
        Err(Error::RegistryTooNew { found, supported }) => {
            assert_eq!(found, REGISTRY_SCHEMA_VERSION + 1);
            assert_eq!(supported, REGISTRY_SCHEMA_VERSION);
        }
        other => panic!("expected RegistryTooNew, got {other:?}"),
    }
}

#[test]
fn add_account_normalizes_and_the_key_opens_the_mailbox() {
    let (dir, registry) = registry();
    let created = add(&registry, "Alice@BÜCHER.example", "correct horse");
    assert_eq!(created.address.as_str(), "alice@xn--bcher-kva.example");
    assert!(created.generated_password.is_none());
    assert!(created.recovery_code.is_none());
    let path = mailbox_path(dir.path(), &created.mailbox_id);
    assert!(path.is_file());
    // The file name is the random id, never the address.
    assert!(!path.to_string_lossy().contains("alice"));

    let login = registry
        .login("ALICE@bücher.example", "correct horse")
        .unwrap();
    assert_eq!(login.address, created.address);
    assert_eq!(login.mailbox_id, created.mailbox_id);
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert!(login.pending_key.is_none());
    Mailbox::open(&path, &login.key).unwrap();

    assert_eq!(registry.list_domains().unwrap(), ["xn--bcher-kva.example"]);
}

#[test]
fn the_registry_never_stores_the_password_or_key() {
    let (dir, registry) = registry();
    let created = add(&registry, "a@example.com", "a-memorable-password");
    drop(registry);
    let bytes = std::fs::read(registry_path(dir.path())).unwrap();
    let wal =
        std::fs::read(registry_path(dir.path()).with_extension("sqlite-wal")).unwrap_or_default();
    for haystack in [&bytes, &wal] {
        assert!(
            !haystack
                .windows(20)
                .any(|w| w == &b"a-memorable-password"[..])
        );
        assert!(!haystack.windows(32).any(|w| w == created.key.as_bytes()));
    }
}

#[test]
fn duplicate_address_in_any_case_is_refused() {
    let (_dir, registry) = registry();
    add(&registry, "bob@example.com", "pw1");
    match registry.add_account("BOB@Example.Com", Some("pw2"), &account_options(false)) {
        Err(Error::AddressExists(address)) => assert_eq!(address, "bob@example.com"),
        other => panic!("expected AddressExists, got {other:?}"),
    }
    assert_eq!(registry.list_accounts().unwrap().len(), 1);
}

#[test]
fn invalid_address_or_password_is_refused_at_creation() {
    let (_dir, registry) = registry();
    assert!(matches!(
        registry.add_account("not an address", Some("pw"), &account_options(false)),
        Err(Error::InvalidAddress(..))
    ));
    assert!(matches!(
        registry.add_account("a@example.com", Some(""), &account_options(false)),
        Err(Error::InvalidArgument(_))
    ));
    let too_long = "p".repeat(MAX_PASSWORD_LEN + 1);
    assert!(matches!(
        registry.add_account("a@example.com", Some(&too_long), &account_options(false)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(registry.list_accounts().unwrap().is_empty());
}

#[test]
fn generated_password_and_recovery_code_work() {
    let (_dir, registry) = registry();
    let created = registry
        .add_account("c@example.com", None, &account_options(true))
        .unwrap();
    let password = created.generated_password.as_ref().unwrap();
    assert_eq!(password.len(), GENERATED_PASSWORD_LEN);
    let shown = format!("{created:?}");
    assert!(!shown.contains(password.as_str()));
    assert!(!shown.contains(created.recovery_code.as_ref().unwrap().as_str()));
    let login = registry.login("c@example.com", password).unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert!(
        registry
            .lookup("c@example.com")
            .unwrap()
            .unwrap()
            .has_recovery_code
    );
}

#[test]
fn failed_mailbox_creation_leaves_no_account() {
    let (dir, registry) = registry();
    // A plain file where the mailboxes directory should be makes Mailbox::create fail.
    std::fs::write(dir.path().join("mailboxes"), b"in the way").unwrap();
    let result = registry.add_account("d@example.com", Some("pw"), &account_options(false));
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
    assert!(registry.lookup("d@example.com").unwrap().is_none());
    assert!(registry.list_accounts().unwrap().is_empty());
}

#[test]
fn wrong_password_and_unknown_address_give_the_same_error() {
    let (_dir, registry) = registry();
    add(&registry, "e@example.com", "right");
    let wrong = registry.login("e@example.com", "wrong").unwrap_err();
    let unknown = registry.login("nobody@example.com", "right").unwrap_err();
    let malformed = registry.login("no at sign", "right").unwrap_err();
    assert!(matches!(wrong, Error::WrongPassword));
    assert!(matches!(unknown, Error::WrongPassword));
    assert!(matches!(malformed, Error::WrongPassword));
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.to_string(), malformed.to_string());
}

#[test]
fn unknown_address_still_pays_for_a_key_derivation() {
    let dir = TempDir::new().unwrap();
    let slow = KdfParams {
        m_cost_kib: 32 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    let registry = Registry::open_with(
        dir.path(),
        RegistryOptions {
            unknown_address_kdf: slow,
            ..options(None)
        },
    )
    .unwrap();
    let started = Instant::now();
    wrap::derive_kek(b"pw", &[0; SALT_LEN], &slow).unwrap();
    let one_derivation = started.elapsed();
    let started = Instant::now();
    assert_wrong_password(registry.login("nobody@example.com", "pw"));
    let unknown_login = started.elapsed();
    // A lower bound only, so a loaded machine cannot make it fail: without the stand-in
    // derivation the lookup takes well under a millisecond.
    assert!(
        unknown_login >= one_derivation / 4,
        "unknown address answered in {unknown_login:?}, one derivation takes {one_derivation:?}"
    );
}

#[test]
fn tampered_wrapped_key_is_a_wrong_password_not_a_panic() {
    let (dir, registry) = registry();
    let created = add(&registry, "f@example.com", "pw");
    let conn = raw(&dir);
    // Flip one bit of the encrypted key (after the version byte and the 24-byte nonce).
    let mut wrapped: Vec<u8> = conn
        .query_row("SELECT wrapped_key FROM accounts", [], |row| row.get(0))
        .unwrap();
    wrapped[30] ^= 0x40;
    conn.execute("UPDATE accounts SET wrapped_key = ?1", params![wrapped])
        .unwrap();
    assert_wrong_password(registry.login("f@example.com", "pw"));

    for damaged in [vec![], vec![0u8; 3], vec![0xff; wrap::WRAPPED_LEN]] {
        conn.execute("UPDATE accounts SET wrapped_key = ?1", params![damaged])
            .unwrap();
        assert_wrong_password(registry.login("f@example.com", "pw"));
    }
    // A wrap moved over from another account does not unwrap either (the AAD binds the id).
    let other = add(&registry, "g@example.com", "pw");
    conn.execute(
        "UPDATE accounts SET wrapped_key =
             (SELECT wrapped_key FROM accounts WHERE mailbox_id = ?2),
             kdf_salt = (SELECT kdf_salt FROM accounts WHERE mailbox_id = ?2)
         WHERE mailbox_id = ?1",
        params![created.mailbox_id.as_str(), other.mailbox_id.as_str()],
    )
    .unwrap();
    assert_wrong_password(registry.login("f@example.com", "pw"));
}

#[test]
fn damaged_kdf_parameters_are_an_error_not_a_huge_allocation() {
    let (dir, registry) = registry();
    add(&registry, "h@example.com", "pw");
    raw(&dir)
        .execute("UPDATE accounts SET kdf_m_cost_kib = 4294967295", [])
        .unwrap();
    assert!(matches!(
        registry.login("h@example.com", "pw"),
        Err(Error::InvalidArgument(_))
    ));
}

#[cfg(unix)]
#[test]
fn change_password_rewraps_without_touching_the_mailbox_file() {
    use std::os::unix::fs::MetadataExt;
    let (dir, registry) = registry();
    let created = add(&registry, "i@example.com", "old password");
    let path = mailbox_path(dir.path(), &created.mailbox_id);
    let inode_before = std::fs::metadata(&path).unwrap().ino();
    let bytes_before = std::fs::read(&path).unwrap();
    let salt_before: Vec<u8> = raw(&dir)
        .query_row("SELECT kdf_salt FROM accounts", [], |row| row.get(0))
        .unwrap();

    registry
        .change_password("i@example.com", "old password", "new password")
        .unwrap();

    assert_wrong_password(registry.login("i@example.com", "old password"));
    let login = registry.login("i@example.com", "new password").unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode_before);
    assert_eq!(std::fs::read(&path).unwrap(), bytes_before);
    let salt_after: Vec<u8> = raw(&dir)
        .query_row("SELECT kdf_salt FROM accounts", [], |row| row.get(0))
        .unwrap();
    assert_ne!(salt_before, salt_after);
}

#[test]
fn change_password_needs_the_old_password() {
    let (_dir, registry) = registry();
    add(&registry, "j@example.com", "pw");
    assert!(matches!(
        registry.change_password("j@example.com", "guess", "new"),
        Err(Error::WrongPassword)
    ));
    assert!(matches!(
        registry.change_password("nobody@example.com", "pw", "new"),
        Err(Error::WrongPassword)
    ));
    registry.login("j@example.com", "pw").unwrap();
}

#[test]
fn recovery_code_resets_a_forgotten_password() {
    let (_dir, registry) = registry();
    let created = registry
        .add_account("k@example.com", Some("forgotten"), &account_options(true))
        .unwrap();
    let code = created.recovery_code.clone().unwrap();

    assert!(matches!(
        registry.reset_password_with_recovery_code("k@example.com", "AAAAA-BBBBB", "new"),
        Err(Error::WrongRecoveryCode)
    ));
    assert!(matches!(
        registry.reset_password_with_recovery_code("nobody@example.com", &code, "new"),
        Err(Error::WrongRecoveryCode)
    ));
    // Typed in lowercase without dashes: still the same code.
    let typed = code.to_lowercase().replace('-', "");
    registry
        .reset_password_with_recovery_code("k@example.com", &typed, "remembered")
        .unwrap();
    assert_wrong_password(registry.login("k@example.com", "forgotten"));
    let login = registry.login("k@example.com", "remembered").unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
}

#[test]
fn account_without_recovery_code_cannot_be_reset() {
    let (_dir, registry) = registry();
    add(&registry, "l@example.com", "pw");
    assert!(matches!(
        registry.reset_password_with_recovery_code("l@example.com", "00000-00000", "new"),
        Err(Error::WrongRecoveryCode)
    ));
    registry.login("l@example.com", "pw").unwrap();
}

/// What the lead's rotation does between set and promote: the file is now keyed with `key`.
fn swap_mailbox_file_to(registry: &Registry, mailbox_id: &MailboxId, key: &MailboxKey) {
    remove_mailbox_files(registry.data_dir(), mailbox_id).unwrap();
    drop(Mailbox::create(&registry.mailbox_path(mailbox_id), key).unwrap());
}

#[test]
fn pending_key_is_returned_then_promoted() {
    let (_dir, registry) = registry();
    let created = add(&registry, "m@example.com", "pw");
    let new_key = MailboxKey::generate();
    registry
        .set_pending_key("m@example.com", "pw", &new_key)
        .unwrap();
    assert!(matches!(
        registry.set_pending_key("m@example.com", "pw", &MailboxKey::generate()),
        Err(Error::KeyRotationPending(_))
    ));
    assert!(matches!(
        registry.set_pending_key("m@example.com", "wrong", &MailboxKey::generate()),
        Err(Error::WrongPassword)
    ));

    let login = registry.login("m@example.com", "pw").unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert_eq!(login.pending_key.unwrap().as_bytes(), new_key.as_bytes());
    assert!(
        registry
            .lookup("m@example.com")
            .unwrap()
            .unwrap()
            .has_pending_key
    );

    // The file still has the old key: promoting now would strand the mailbox.
    assert!(matches!(
        registry.promote_pending_key(&created.mailbox_id, &new_key),
        Err(Error::Corrupt { .. })
    ));
    swap_mailbox_file_to(&registry, &created.mailbox_id, &new_key);
    let new_code = registry
        .promote_pending_key(&created.mailbox_id, &new_key)
        .unwrap();
    assert!(new_code.is_none(), "the account had no recovery code");

    let login = registry.login("m@example.com", "pw").unwrap();
    assert_eq!(login.key.as_bytes(), new_key.as_bytes());
    assert!(login.pending_key.is_none());
    assert!(matches!(
        registry.promote_pending_key(&created.mailbox_id, &new_key),
        Err(Error::NoPendingKey(_))
    ));
}

#[test]
fn promoting_replaces_the_recovery_code() {
    let (_dir, registry) = registry();
    let created = registry
        .add_account("n@example.com", Some("pw"), &account_options(true))
        .unwrap();
    let old_code = created.recovery_code.clone().unwrap();
    let new_key = MailboxKey::generate();
    registry
        .set_pending_key("n@example.com", "pw", &new_key)
        .unwrap();
    swap_mailbox_file_to(&registry, &created.mailbox_id, &new_key);
    let new_code = registry
        .promote_pending_key(&created.mailbox_id, &new_key)
        .unwrap()
        .expect("the account had a recovery code, so it gets a new one");
    assert_ne!(*new_code, *old_code);

    assert!(matches!(
        registry.reset_password_with_recovery_code("n@example.com", &old_code, "x"),
        Err(Error::WrongRecoveryCode)
    ));
    registry
        .reset_password_with_recovery_code("n@example.com", &new_code, "fresh")
        .unwrap();
    let login = registry.login("n@example.com", "fresh").unwrap();
    assert_eq!(login.key.as_bytes(), new_key.as_bytes());
}

#[test]
fn clearing_the_pending_key_keeps_the_current_one() {
    let (_dir, registry) = registry();
    let created = add(&registry, "o@example.com", "pw");
    registry
        .set_pending_key("o@example.com", "pw", &MailboxKey::generate())
        .unwrap();
    registry.clear_pending_key(&created.mailbox_id).unwrap();
    let login = registry.login("o@example.com", "pw").unwrap();
    assert!(login.pending_key.is_none());
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert!(matches!(
        registry.clear_pending_key(&created.mailbox_id),
        Err(Error::NoPendingKey(_))
    ));
    assert!(matches!(
        registry.clear_pending_key(&MailboxId::generate()),
        Err(Error::NoSuchAccount(_))
    ));
}

#[test]
fn change_password_carries_the_pending_key_over() {
    let (_dir, registry) = registry();
    add(&registry, "p@example.com", "pw");
    let new_key = MailboxKey::generate();
    registry
        .set_pending_key("p@example.com", "pw", &new_key)
        .unwrap();
    registry
        .change_password("p@example.com", "pw", "pw2")
        .unwrap();
    let login = registry.login("p@example.com", "pw2").unwrap();
    assert_eq!(login.pending_key.unwrap().as_bytes(), new_key.as_bytes());
}

#[test]
fn remove_account_deletes_row_and_files() {
    let (dir, registry) = registry();
    let created = add(&registry, "q@example.com", "pw");
    let keep = add(&registry, "r@example.com", "pw");
    let path = mailbox_path(dir.path(), &created.mailbox_id);
    // Leave side files behind as a crashed session would.
    let side_files = mailbox_id::mailbox_files(dir.path(), &created.mailbox_id);
    for side in &side_files[..3] {
        std::fs::write(side, b"side").unwrap();
    }
    // And what backups, restores and rotations leave beside it.
    let dir_of_mailbox = path.parent().unwrap();
    let id = created.mailbox_id.as_str();
    let named_after_it: Vec<PathBuf> = [
        format!("{id}.sqlite.backup-lock"),
        format!("{id}.sqlite.previous"),
        format!("{id}.sqlite.rotating-wal"),
        format!(".snapshot-{id}-0123456789abcdef"),
    ]
    .iter()
    .map(|name| dir_of_mailbox.join(name))
    .collect();
    for side in &named_after_it {
        std::fs::write(side, b"side").unwrap();
    }
    // Another mailbox's lock in the same fan-out directory stays.
    let neighbour = dir_of_mailbox.join(format!("{}.sqlite.backup-lock", keep.mailbox_id.as_str()));
    std::fs::write(&neighbour, b"").unwrap();
    registry.remove_account("Q@example.com").unwrap();
    assert!(!path.exists());
    for side in side_files.iter().chain(&named_after_it) {
        assert!(!side.exists(), "{}", side.display());
    }
    assert!(neighbour.exists());
    assert!(registry.lookup("q@example.com").unwrap().is_none());
    assert_wrong_password(registry.login("q@example.com", "pw"));
    assert!(matches!(
        registry.remove_account("q@example.com"),
        Err(Error::NoSuchAccount(_))
    ));
    assert!(mailbox_path(dir.path(), &keep.mailbox_id).is_file());
    // The address can be created again, with a new mailbox.
    let again = add(&registry, "q@example.com", "pw");
    assert_ne!(again.mailbox_id, created.mailbox_id);
}

#[test]
fn lookup_list_quota_usage_and_sealing_key() {
    let (_dir, registry) = registry();
    let s = registry
        .add_account(
            "s@example.org",
            Some("pw"),
            &AccountOptions {
                quota: Some(1_000_000),
                ..account_options(false)
            },
        )
        .unwrap();
    add(&registry, "a@example.com", "pw");

    let listed = registry.list_accounts().unwrap();
    let addresses: Vec<&str> = listed.iter().map(|info| info.address.as_str()).collect();
    assert_eq!(addresses, ["a@example.com", "s@example.org"]);
    let info = registry.lookup("S@EXAMPLE.ORG").unwrap().unwrap();
    assert_eq!(info.mailbox_id, s.mailbox_id);
    assert_eq!(info.quota, Some(1_000_000));
    assert_eq!(info.used_bytes, 0);
    assert_eq!(info.kdf, FAST);
    assert!(info.created_at.ends_with('Z') && info.created_at.len() == 20);
    assert!(registry.lookup("t@example.org").unwrap().is_none());
    assert!(matches!(
        registry.lookup("bad address"),
        Err(Error::InvalidAddress(..))
    ));

    registry.set_used_bytes(&s.mailbox_id, 4096).unwrap();
    registry.set_quota("s@example.org", None).unwrap();
    let info = registry
        .account_by_mailbox_id(&s.mailbox_id)
        .unwrap()
        .unwrap();
    assert_eq!((info.used_bytes, info.quota), (4096, None));
    registry.set_quota("s@example.org", Some(5)).unwrap();
    assert_eq!(
        registry.login("s@example.org", "pw").unwrap().quota,
        Some(5)
    );
    assert!(matches!(
        registry.set_quota("s@example.org", Some(u64::MAX)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        registry.set_used_bytes(&MailboxId::generate(), 1),
        Err(Error::NoSuchAccount(_))
    ));

    // Every new account gets the public half of its mailbox's sealing key pair.
    let published = registry.sealing_public_key(&s.mailbox_id).unwrap().unwrap();
    assert!(crate::seal::SealingPublicKey::from_bytes(&published).is_ok());
    registry
        .set_sealing_public_key(&s.mailbox_id, &[7; 1216])
        .unwrap();
    assert_eq!(
        registry.sealing_public_key(&s.mailbox_id).unwrap(),
        Some(vec![7; 1216])
    );
    assert!(matches!(
        registry.sealing_public_key(&MailboxId::generate()),
        Err(Error::NoSuchAccount(_))
    ));
}

#[test]
fn accounts_survive_reopening() {
    let (dir, registry) = registry();
    let created = add(&registry, "u@example.com", "pw");
    drop(registry);
    let reopened = Registry::open_with(dir.path(), options(None)).unwrap();
    let login = reopened.login("u@example.com", "pw").unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
}

// ----- login cache through the registry -----

fn cached_registry(capacity: usize, idle_expiry: Duration) -> (TempDir, Registry) {
    registry_with(Some(LoginCacheConfig {
        capacity,
        idle_expiry,
    }))
}

fn stats(registry: &Registry) -> LoginCacheStats {
    registry.login_cache_stats().unwrap()
}

#[test]
fn second_login_is_a_cache_hit_with_the_same_key() {
    let (_dir, registry) = cached_registry(10, Duration::from_secs(60));
    let created = add(&registry, "v@example.com", "pw");
    let cold = registry.login("v@example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 0);
    let warm = registry.login("V@Example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 1);
    assert_eq!(warm.key.as_bytes(), cold.key.as_bytes());
    assert_eq!(warm.key.as_bytes(), created.key.as_bytes());
    assert_eq!(warm.mailbox_id, created.mailbox_id);
}

#[test]
fn wrong_password_misses_the_cache_and_leaves_it_alone() {
    let (_dir, registry) = cached_registry(10, Duration::from_secs(60));
    add(&registry, "w@example.com", "pw");
    registry.login("w@example.com", "pw").unwrap();
    assert_wrong_password(registry.login("w@example.com", "pW"));
    assert_wrong_password(registry.login("w@example.com", ""));
    let after_failures = stats(&registry);
    assert_eq!(after_failures.hits, 0);
    assert_eq!(after_failures.entries, 1);
    registry.login("w@example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 1);
}

#[test]
fn password_change_invalidates_the_cached_login() {
    let (_dir, registry) = cached_registry(10, Duration::from_secs(60));
    add(&registry, "x@example.com", "old");
    registry.login("x@example.com", "old").unwrap();
    registry.login("x@example.com", "old").unwrap();
    assert_eq!(stats(&registry).hits, 1);
    registry
        .change_password("x@example.com", "old", "new")
        .unwrap();
    assert_eq!(stats(&registry).entries, 0);
    assert_wrong_password(registry.login("x@example.com", "old"));
    let hits_before = stats(&registry).hits;
    registry.login("x@example.com", "new").unwrap();
    assert_eq!(
        stats(&registry).hits,
        hits_before,
        "first login after the change is cold"
    );
    registry.login("x@example.com", "new").unwrap();
    assert_eq!(stats(&registry).hits, hits_before + 1);
}

#[test]
fn a_cached_login_made_before_a_change_is_never_trusted() {
    // Even if the cache entry survived (e.g. another process changed the password), the
    // generation bump makes it stale.
    let (dir, registry) = cached_registry(10, Duration::from_secs(60));
    add(&registry, "y@example.com", "pw");
    registry.login("y@example.com", "pw").unwrap();
    raw(&dir)
        .execute(
            "UPDATE accounts SET credential_generation = credential_generation + 1",
            [],
        )
        .unwrap();
    registry.login("y@example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 0);
}

#[test]
fn rotation_recovery_and_removal_invalidate_the_cached_login() {
    let (_dir, registry) = cached_registry(10, Duration::from_secs(60));
    let created = registry
        .add_account("z@example.com", Some("pw"), &account_options(true))
        .unwrap();
    let code = created.recovery_code.clone().unwrap();

    registry.login("z@example.com", "pw").unwrap();
    let new_key = MailboxKey::generate();
    registry
        .set_pending_key("z@example.com", "pw", &new_key)
        .unwrap();
    assert_eq!(stats(&registry).entries, 0);
    let login = registry.login("z@example.com", "pw").unwrap();
    assert!(login.pending_key.is_some());

    registry.clear_pending_key(&created.mailbox_id).unwrap();
    assert_eq!(stats(&registry).entries, 0);
    assert!(
        registry
            .login("z@example.com", "pw")
            .unwrap()
            .pending_key
            .is_none()
    );

    registry
        .reset_password_with_recovery_code("z@example.com", &code, "pw2")
        .unwrap();
    assert_eq!(stats(&registry).entries, 0);
    assert_wrong_password(registry.login("z@example.com", "pw"));
    registry.login("z@example.com", "pw2").unwrap();

    registry.remove_account("z@example.com").unwrap();
    assert_eq!(stats(&registry).entries, 0);
    assert_wrong_password(registry.login("z@example.com", "pw2"));
}

#[test]
fn cached_logins_expire_after_idle_time() {
    let (_dir, registry) = cached_registry(10, Duration::from_millis(50));
    add(&registry, "idle@example.com", "pw");
    registry.login("idle@example.com", "pw").unwrap();
    std::thread::sleep(Duration::from_millis(120));
    registry.login("idle@example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 0);
    std::thread::sleep(Duration::from_millis(120));
    registry.purge_expired_logins();
    assert_eq!(stats(&registry).entries, 0);
}

#[test]
fn the_cache_never_exceeds_its_capacity() {
    let (_dir, registry) = cached_registry(2, Duration::from_secs(60));
    for n in 0..5 {
        let address = format!("user{n}@example.com");
        add(&registry, &address, "pw");
        registry.login(&address, "pw").unwrap();
        assert!(stats(&registry).entries <= 2);
    }
    // The two most recent logins are the ones kept.
    registry.login("user4@example.com", "pw").unwrap();
    registry.login("user3@example.com", "pw").unwrap();
    registry.login("user0@example.com", "pw").unwrap();
    assert_eq!(stats(&registry).hits, 2);
}

#[test]
fn logins_from_many_threads_share_one_registry() {
    let (_dir, registry) = cached_registry(100, Duration::from_secs(60));
    let created = add(&registry, "shared@example.com", "pw");
    let registry = std::sync::Arc::new(registry);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let login = registry.login("shared@example.com", "pw").unwrap();
                    assert_eq!(login.mailbox_id.as_str().len(), MAILBOX_ID_LEN);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let login = registry.login("shared@example.com", "pw").unwrap();
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
    assert!(stats(&registry).hits >= 70);
}

#[test]
fn a_write_based_on_a_stale_read_is_not_applied() {
    let (dir, registry) = registry();
    let created = add(&registry, "race@example.com", "pw");
    let stale = registry
        .credential_row_for_login("race@example.com")
        .unwrap()
        .unwrap();
    // Another writer (say, a password change in the CLI process) gets there first.
    raw(&dir)
        .execute(
            "UPDATE accounts SET credential_generation = credential_generation + 1",
            [],
        )
        .unwrap();
    let result =
        registry.update_credentials(&stale, "pending_wrapped_key = ?3", params![vec![0u8; 73]]);
    assert!(
        matches!(result, Err(Error::ConcurrentUpdate(_))),
        "{result:?}"
    );
    let login = registry.login("race@example.com", "pw").unwrap();
    assert!(login.pending_key.is_none());
    assert_eq!(login.key.as_bytes(), created.key.as_bytes());
}

//! The registry schema: an append-only list of migrations versioned by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: append a new one. Connection pragmas are set on
//! open (see `mod.rs`), not here.

use crate::error::{Error, Result};
use rusqlite::Connection;

/// Each entry takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2];

/// The registry schema version this build writes and understands.
pub const REGISTRY_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: domains and accounts with their wrapped keys.
const MIGRATION_1: &str = r#"
-- Every domain that has (or had) an address. Names are ASCII (punycode), lowercase.
CREATE TABLE domains (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- One row per address. Nothing here opens a mailbox without the password: the data key
-- (DEK) is stored only wrapped by keys derived from the password or the recovery code.
CREATE TABLE accounts (
    id                      INTEGER PRIMARY KEY,
    -- Normalized: lowercase local part, punycode domain.
    address                 TEXT NOT NULL UNIQUE,
    domain_id               INTEGER NOT NULL REFERENCES domains(id),
    -- 24 lowercase hex characters; names the mailbox file.
    mailbox_id              TEXT NOT NULL UNIQUE,
    kdf_salt                BLOB NOT NULL,
    kdf_m_cost_kib          INTEGER NOT NULL,
    kdf_t_cost              INTEGER NOT NULL,
    kdf_p_cost              INTEGER NOT NULL,
    -- The DEK wrapped by Argon2id(password, kdf_salt).
    wrapped_key             BLOB NOT NULL,
    -- During a DEK rotation: the new DEK wrapped by the same password-derived key.
    pending_wrapped_key     BLOB,
    -- The DEK wrapped by Argon2id(recovery code, recovery_salt), same cost parameters.
    recovery_salt           BLOB,
    recovery_wrapped_key    BLOB,
    -- Bumped on every change to the wraps; the login cache only trusts entries made at the
    -- current generation.
    credential_generation   INTEGER NOT NULL DEFAULT 0,
    quota_bytes             INTEGER,
    used_bytes              INTEGER NOT NULL DEFAULT 0,
    sealing_public_key      BLOB,
    created_at              TEXT NOT NULL,
    CHECK ((recovery_salt IS NULL) = (recovery_wrapped_key IS NULL))
);

CREATE INDEX accounts_domain ON accounts(domain_id);
"#;

/// Version 2: forwarding per address (other addresses, webhooks) and whether a local copy is
/// kept.
const MIGRATION_2: &str = r#"
-- One row per address that forwards; no row means plain local delivery.
CREATE TABLE forwarding (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    -- 'store-and-forward' keeps a copy in the mailbox; 'forward-only' does not.
    mode        TEXT NOT NULL DEFAULT 'store-and-forward'
                CHECK (mode IN ('store-and-forward', 'forward-only'))
);

-- Where an address's mail goes besides (or instead of) its mailbox.
CREATE TABLE forward_targets (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES forwarding(account_id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('address', 'webhook')),
    -- A normalized address, or an http(s) URL.
    target      TEXT NOT NULL,
    -- Webhooks: the HMAC-SHA256 key that signs each request body. It must be readable by the
    -- server without any password, like the TLS key; it opens no mail.
    secret      BLOB,
    CHECK ((kind = 'webhook') = (secret IS NOT NULL)),
    UNIQUE (account_id, kind, target)
);
"#;

/// Bring `conn` up to [`REGISTRY_SCHEMA_VERSION`] in one transaction; refuse a newer file.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > REGISTRY_SCHEMA_VERSION {
        return Err(Error::RegistryTooNew {
            found,
            supported: REGISTRY_SCHEMA_VERSION,
        });
    }
    if found == REGISTRY_SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let start = usize::try_from(found).map_err(|_| {
        Error::InvalidArgument(format!("registry has a negative schema version {found}"))
    })?;
    for migration in &MIGRATIONS[start..] {
        tx.execute_batch(migration)?;
    }
    // PRAGMA takes no bound parameters; the value is our own constant.
    tx.execute_batch(&format!("PRAGMA user_version = {REGISTRY_SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_to_an_empty_database_with_sound_foreign_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, REGISTRY_SCHEMA_VERSION);
        let violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(violations, 0);
        // Running again is a no-op, not a second CREATE TABLE.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_version_1_registry_upgrades_and_keeps_its_accounts() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        conn.execute_batch(MIGRATION_1).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO domains (id, name, created_at) VALUES (1, 'example.test', 'now');
             INSERT INTO accounts (id, address, domain_id, mailbox_id, kdf_salt, kdf_m_cost_kib,
                 kdf_t_cost, kdf_p_cost, wrapped_key, created_at)
             VALUES (7, 'a@example.test', 1, 'aaaaaaaaaaaaaaaaaaaaaaaa', x'00', 8, 1, 1, x'00',
                 'now');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, REGISTRY_SCHEMA_VERSION);
        conn.execute_batch(
            "INSERT INTO forwarding (account_id) VALUES (7);
             INSERT INTO forward_targets (account_id, kind, target)
             VALUES (7, 'address', 'b@example.test');",
        )
        .unwrap();
        // A webhook without its secret violates the CHECK.
        assert!(
            conn.execute_batch(
                "INSERT INTO forward_targets (account_id, kind, target)
                 VALUES (7, 'webhook', 'https://hook.test/')"
            )
            .is_err()
        );
        // Removing the account removes its forwarding.
        conn.execute_batch("DELETE FROM accounts WHERE id = 7")
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM forward_targets", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "PRAGMA user_version = {}",
            REGISTRY_SCHEMA_VERSION + 1
        ))
        .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(Error::RegistryTooNew { found, supported })
                if found == REGISTRY_SCHEMA_VERSION + 1 && supported == REGISTRY_SCHEMA_VERSION
        ));
    }
}

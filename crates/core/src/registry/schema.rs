//! The registry schema: an append-only list of migrations versioned by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: append a new one. Connection pragmas are set on
//! open (see `mod.rs`), not here.

use crate::error::{Error, Result};
use rusqlite::Connection;

/// Each entry takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

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

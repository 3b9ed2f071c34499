//! Forwarding per address: other addresses and HTTP(S) webhooks that receive a copy of each
//! inbound message, and whether the mailbox keeps one too. Read by the MX on every delivery,
//! written by `sealmail account forward`.

use super::{Address, Registry};
use crate::error::{Error, Result};
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// Whether forwarded mail is also kept in the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardMode {
    /// Deliver to the mailbox and forward.
    #[default]
    StoreAndForward,
    /// Forward only; the mailbox gets a copy only when no forward could be accepted durably
    /// (so nothing acknowledged is ever lost).
    ForwardOnly,
}

impl ForwardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::StoreAndForward => "store-and-forward",
            ForwardMode::ForwardOnly => "forward-only",
        }
    }
}

impl std::str::FromStr for ForwardMode {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "store-and-forward" => Ok(ForwardMode::StoreAndForward),
            "forward-only" => Ok(ForwardMode::ForwardOnly),
            other => Err(Error::InvalidArgument(format!(
                "unknown forwarding mode {other:?} (expected store-and-forward or forward-only)"
            ))),
        }
    }
}

/// The HMAC key that signs a webhook's request bodies: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::InvalidArgument(
                "a webhook secret cannot be empty".into(),
            ));
        }
        Ok(WebhookSecret(Zeroizing::new(bytes)))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// One webhook: where to POST and the key that signs the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: WebhookSecret,
}

/// An address's forwarding settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarding {
    pub mode: ForwardMode,
    pub addresses: Vec<Address>,
    pub webhooks: Vec<Webhook>,
}

impl Forwarding {
    /// True when mail to this address goes nowhere but its mailbox.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.webhooks.is_empty()
    }
}

impl Registry {
    /// The forwarding settings of `address`; `None` for an address without any (or unknown).
    pub fn forwarding(&self, address: &str) -> Result<Option<Forwarding>> {
        let address = Address::parse(address)?;
        let conn = self.lock_conn();
        let Some((account_id, mode)) = conn
            .query_row(
                "SELECT f.account_id, f.mode FROM forwarding f
                 JOIN accounts a ON a.id = f.account_id WHERE a.address = ?1",
                params![address.as_str()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut forwarding = Forwarding {
            mode: mode.parse()?,
            ..Forwarding::default()
        };
        let mut statement = conn.prepare(
            "SELECT kind, target, secret FROM forward_targets WHERE account_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map(params![account_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?;
        for row in rows {
            match row? {
                (kind, target, _) if kind == "address" => {
                    forwarding.addresses.push(Address::parse(&target)?)
                }
                (_, url, Some(secret)) => forwarding.webhooks.push(Webhook {
                    url,
                    secret: WebhookSecret::new(secret)?,
                }),
                (_, url, None) => {
                    return Err(Error::InvalidArgument(format!(
                        "webhook {url} has no secret in the registry"
                    )));
                }
            }
        }
        Ok(Some(forwarding))
    }

    /// Forward mail for `address` to `target` as well.
    pub fn add_forward_address(&self, address: &str, target: &str) -> Result<()> {
        let target = Address::parse(target)?;
        if target == Address::parse(address)? {
            return Err(Error::InvalidArgument(
                "an address cannot forward to itself".into(),
            ));
        }
        self.add_target(address, "address", target.as_str(), None)
    }

    /// POST mail for `address` to `url`, signed with `secret`. Adding a URL again replaces its
    /// secret.
    pub fn add_forward_webhook(
        &self,
        address: &str,
        url: &str,
        secret: &WebhookSecret,
    ) -> Result<()> {
        validate_webhook_url(url)?;
        self.add_target(address, "webhook", url, Some(secret.expose()))
    }

    /// Stop forwarding to an address or webhook URL; false when it was not a target.
    pub fn remove_forward_target(&self, address: &str, target: &str) -> Result<bool> {
        let account_id = self.account_id(address)?;
        let normalized = Address::parse(target)
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|_| target.to_string());
        let removed = self.lock_conn().execute(
            "DELETE FROM forward_targets WHERE account_id = ?1 AND target = ?2",
            params![account_id, normalized],
        )?;
        Ok(removed > 0)
    }

    pub fn set_forward_mode(&self, address: &str, mode: ForwardMode) -> Result<()> {
        let account_id = self.account_id(address)?;
        self.lock_conn().execute(
            "INSERT INTO forwarding (account_id, mode) VALUES (?1, ?2)
             ON CONFLICT (account_id) DO UPDATE SET mode = excluded.mode",
            params![account_id, mode.as_str()],
        )?;
        Ok(())
    }

    /// Remove every forwarding setting of `address`: plain local delivery again.
    pub fn clear_forwarding(&self, address: &str) -> Result<()> {
        let account_id = self.account_id(address)?;
        self.lock_conn().execute(
            "DELETE FROM forwarding WHERE account_id = ?1",
            params![account_id],
        )?;
        Ok(())
    }

    fn add_target(
        &self,
        address: &str,
        kind: &str,
        target: &str,
        secret: Option<&[u8]>,
    ) -> Result<()> {
        let account_id = self.account_id(address)?;
        let mut conn = self.lock_conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO forwarding (account_id) VALUES (?1) ON CONFLICT (account_id) DO NOTHING",
            params![account_id],
        )?;
        tx.execute(
            "INSERT INTO forward_targets (account_id, kind, target, secret) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, kind, target) DO UPDATE SET secret = excluded.secret",
            params![account_id, kind, target, secret],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn account_id(&self, address: &str) -> Result<i64> {
        let address = Address::parse(address)?;
        self.lock_conn()
            .query_row(
                "SELECT id FROM accounts WHERE address = ?1",
                params![address.as_str()],
                |row| row.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::NoSuchAccount(address.to_string()))
    }
}

/// `http://` or `https://`, a host, no whitespace or control characters, bounded length.
fn validate_webhook_url(url: &str) -> Result<()> {
    let invalid = |why: &str| Err(Error::InvalidArgument(format!("webhook URL {why}")));
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return invalid("is too long");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("contains whitespace or control characters");
    }
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return invalid("must start with http:// or https://");
    };
    if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
        return invalid("has no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AccountOptions, KdfParams, RegistryOptions};

    fn registry(dir: &std::path::Path) -> Registry {
        let cheap = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let registry = Registry::open_with(
            dir,
            RegistryOptions {
                create_if_missing: true,
                unknown_address_kdf: cheap,
                ..RegistryOptions::default()
            },
        )
        .unwrap();
        let options = AccountOptions {
            quota: None,
            with_recovery_code: false,
            kdf: cheap,
        };
        registry
            .add_account("a@example.test", Some("pw"), &options)
            .unwrap();
        registry
    }

    #[test]
    fn forwarding_round_trips_and_is_removed_with_the_account() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(dir.path());
        assert_eq!(registry.forwarding("a@example.test").unwrap(), None);
        registry
            .add_forward_address("A@example.test", "B@Example.Test")
            .unwrap();
        let secret = WebhookSecret::new(b"s3cret".to_vec()).unwrap();
        registry
            .add_forward_webhook("a@example.test", "https://hook.test/in", &secret)
            .unwrap();
        registry
            .set_forward_mode("a@example.test", ForwardMode::ForwardOnly)
            .unwrap();
        let forwarding = registry.forwarding("a@example.test").unwrap().unwrap();
        assert_eq!(forwarding.mode, ForwardMode::ForwardOnly);
        assert_eq!(forwarding.addresses[0].as_str(), "b@example.test");
        assert_eq!(forwarding.webhooks[0].url, "https://hook.test/in");
        assert_eq!(forwarding.webhooks[0].secret.expose(), b"s3cret");
        assert!(
            !format!("{forwarding:?}").contains("s3cret"),
            "secret redacted"
        );

        assert!(
            registry
                .remove_forward_target("a@example.test", "b@EXAMPLE.test")
                .unwrap()
        );
        assert!(
            !registry
                .remove_forward_target("a@example.test", "b@example.test")
                .unwrap()
        );
        registry.remove_account("a@example.test").unwrap();
        assert_eq!(registry.forwarding("a@example.test").unwrap(), None);
    }

    #[test]
    fn bad_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(dir.path());
        let secret = WebhookSecret::new(b"k".to_vec()).unwrap();
        for url in [
            "ftp://x.test/",
            "https://",
            "https://a b.test/",
            "hook.test",
        ] {
            assert!(
                registry
                    .add_forward_webhook("a@example.test", url, &secret)
                    .is_err(),
                "{url}"
            );
        }
        assert!(
            registry
                .add_forward_address("a@example.test", "a@example.test")
                .is_err()
        );
        assert!(matches!(
            registry.add_forward_address("nobody@example.test", "b@example.test"),
            Err(Error::NoSuchAccount(_))
        ));
        assert!(WebhookSecret::new(Vec::new()).is_err());
    }
}

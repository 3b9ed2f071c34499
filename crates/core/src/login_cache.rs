//! A bounded in-memory cache of recently unwrapped mailbox keys, so that a client reconnecting
//! every few seconds (IMAP clients open several connections; phones reconnect constantly) does
//! not pay Argon2id each time.
//!
//! An entry is found by normalized address and trusted only if
//! HMAC-SHA256(per-process secret, address || 0 || password) matches the tag stored when the
//! password last succeeded, compared in constant time. The secret is random per process and
//! never leaves memory, so the tags are useless to anyone who reads them elsewhere. Entries also
//! remember the account's credential generation and mailbox id: an entry made before a password
//! change, recovery reset, key rotation or account re-creation never matches again, even if an
//! explicit invalidation were missed.
//!
//! Not thread-safe by itself: the registry keeps it behind a mutex.

use crate::key::{KEY_LEN, MailboxKey, random_bytes};
use crate::registry::MailboxId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Size and lifetime limits of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginCacheConfig {
    /// Most entries held at once; the least recently used one makes room for a new one.
    pub capacity: usize,
    /// An entry not used for this long is dropped (and its keys wiped).
    pub idle_expiry: Duration,
}

impl Default for LoginCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            idle_expiry: Duration::from_secs(15 * 60),
        }
    }
}

/// The keys a successful login produced, as cached.
#[derive(Debug, Clone)]
pub struct CachedKeys {
    pub mailbox_id: MailboxId,
    /// The account's credential generation when these keys were unwrapped.
    pub generation: i64,
    pub key: MailboxKey,
    pub pending_key: Option<MailboxKey>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCacheStats {
    /// Logins answered from the cache.
    pub hits: u64,
    /// Lookups that found no usable entry (absent, expired, stale, or wrong password).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// See the module documentation.
pub struct LoginCache {
    config: LoginCacheConfig,
    secret: Zeroizing<[u8; KEY_LEN]>,
    entries: HashMap<String, Entry>,
    hits: u64,
    misses: u64,
}

struct Entry {
    password_tag: Zeroizing<[u8; 32]>,
    keys: CachedKeys,
    last_used: Instant,
}

impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCache")
            .field("config", &self.config)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl LoginCache {
    pub fn new(config: LoginCacheConfig) -> Self {
        Self {
            config,
            secret: Zeroizing::new(random_bytes()),
            entries: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The cached keys for `address` if `password` is the one that unwrapped them and the
    /// account is still at `generation` with `mailbox_id`. A stale or expired entry is dropped;
    /// an entry that merely does not match `password` is left alone (a failed guess must not
    /// evict a real user's entry, nor refresh it).
    pub fn get(
        &mut self,
        address: &str,
        password: &str,
        mailbox_id: &MailboxId,
        generation: i64,
    ) -> Option<CachedKeys> {
        self.get_at(address, password, mailbox_id, generation, Instant::now())
    }

    pub(crate) fn get_at(
        &mut self,
        address: &str,
        password: &str,
        mailbox_id: &MailboxId,
        generation: i64,
        now: Instant,
    ) -> Option<CachedKeys> {
        let tag = self.password_tag(address, password);
        let Some(entry) = self.entries.get_mut(address) else {
            self.misses += 1;
            return None;
        };
        let expired = now.saturating_duration_since(entry.last_used) >= self.config.idle_expiry;
        let stale = entry.keys.generation != generation || entry.keys.mailbox_id != *mailbox_id;
        if expired || stale {
            self.entries.remove(address);
            self.misses += 1;
            return None;
        }
        if !bool::from(entry.password_tag[..].ct_eq(&tag[..])) {
            self.misses += 1;
            return None;
        }
        entry.last_used = now;
        self.hits += 1;
        Some(entry.keys.clone())
    }

    /// Remember `keys` for `address`, unlocked by `password`, replacing any older entry.
    pub fn insert(&mut self, address: &str, password: &str, keys: CachedKeys) {
        self.insert_at(address, password, keys, Instant::now());
    }

    pub(crate) fn insert_at(
        &mut self,
        address: &str,
        password: &str,
        keys: CachedKeys,
        now: Instant,
    ) {
        if self.config.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(address) && self.entries.len() >= self.config.capacity {
            self.purge_expired_at(now);
            if self.entries.len() >= self.config.capacity {
                self.evict_least_recently_used();
            }
        }
        let entry = Entry {
            password_tag: self.password_tag(address, password),
            keys,
            last_used: now,
        };
        self.entries.insert(address.to_owned(), entry);
    }

    /// Forget `address` (its keys are wiped as the entry drops).
    pub fn remove(&mut self, address: &str) {
        self.entries.remove(address);
    }

    /// Drop every entry idle for longer than the configured expiry. Lookups already ignore
    /// such entries; calling this periodically also wipes their keys from memory promptly.
    pub fn purge_expired(&mut self) {
        self.purge_expired_at(Instant::now());
    }

    pub(crate) fn purge_expired_at(&mut self, now: Instant) {
        let idle_expiry = self.config.idle_expiry;
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.last_used) < idle_expiry);
    }

    pub fn stats(&self) -> LoginCacheStats {
        LoginCacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A linear scan, but only when inserting into a full cache, which happens right after an
    /// Argon2id derivation that costs orders of magnitude more.
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(address, _)| address.clone());
        if let Some(address) = oldest {
            self.entries.remove(&address);
        }
    }

    fn password_tag(&self, address: &str, password: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret[..])
            .expect("HMAC accepts keys of any length");
        // Addresses never contain NUL (validation refuses control characters), so the separator
        // keeps (address, password) pairs from colliding.
        mac.update(address.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MailboxId {
        format!("{:024x}", n).parse().unwrap()
    }

    fn keys(n: u8, generation: i64) -> CachedKeys {
        CachedKeys {
            mailbox_id: id(n),
            generation,
            key: MailboxKey::from_bytes([n; KEY_LEN]),
            pending_key: None,
        }
    }

    fn cache(capacity: usize) -> LoginCache {
        LoginCache::new(LoginCacheConfig {
            capacity,
            idle_expiry: Duration::from_secs(60),
        })
    }

    #[test]
    fn hit_needs_the_same_password() {
        let mut cache = cache(10);
        let now = Instant::now();
        cache.insert_at("a@example.com", "right", keys(1, 0), now);
        let hit = cache
            .get_at("a@example.com", "right", &id(1), 0, now)
            .unwrap();
        assert_eq!(hit.key.as_bytes(), &[1; KEY_LEN]);
        assert!(
            cache
                .get_at("a@example.com", "wrong", &id(1), 0, now)
                .is_none()
        );
        assert!(
            cache
                .get_at("a@example.com", "righ", &id(1), 0, now)
                .is_none()
        );
        // A failed guess leaves the entry in place for its owner.
        assert_eq!(cache.len(), 1);
        assert!(
            cache
                .get_at("a@example.com", "right", &id(1), 0, now)
                .is_some()
        );
        assert_eq!(
            cache.stats(),
            LoginCacheStats {
                hits: 2,
                misses: 2,
                entries: 1
            }
        );
    }

    #[test]
    fn tag_binds_the_address() {
        let mut cache = cache(10);
        let now = Instant::now();
        cache.insert_at("a@example.com", "pw", keys(1, 0), now);
        // Same password, different address: no entry to find.
        assert!(
            cache
                .get_at("b@example.com", "pw", &id(1), 0, now)
                .is_none()
        );
        // Moving the boundary between address and password changes the tag.
        assert_ne!(
            *cache.password_tag("a@example.com", "pw"),
            *cache.password_tag("a@example.comp", "w")
        );
    }

    #[test]
    fn stale_generation_or_mailbox_is_dropped() {
        let mut cache = cache(10);
        let now = Instant::now();
        cache.insert_at("a@example.com", "pw", keys(1, 3), now);
        assert!(
            cache
                .get_at("a@example.com", "pw", &id(1), 4, now)
                .is_none()
        );
        assert!(cache.is_empty());
        cache.insert_at("a@example.com", "pw", keys(1, 3), now);
        assert!(
            cache
                .get_at("a@example.com", "pw", &id(2), 3, now)
                .is_none()
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn idle_entries_expire_and_use_extends_them() {
        let mut cache = cache(10);
        let start = Instant::now();
        cache.insert_at("a@example.com", "pw", keys(1, 0), start);
        cache.insert_at("b@example.com", "pw", keys(2, 0), start);
        let later = start + Duration::from_secs(40);
        assert!(
            cache
                .get_at("a@example.com", "pw", &id(1), 0, later)
                .is_some()
        );
        // 70 s after insertion: b idled 70 s (expired), a only 30 s since its last use.
        let much_later = start + Duration::from_secs(70);
        assert!(
            cache
                .get_at("b@example.com", "pw", &id(2), 0, much_later)
                .is_none()
        );
        assert!(
            cache
                .get_at("a@example.com", "pw", &id(1), 0, much_later)
                .is_some()
        );
        cache.purge_expired_at(much_later + Duration::from_secs(60));
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_is_a_hard_bound_evicting_the_least_recently_used() {
        let mut cache = cache(3);
        let start = Instant::now();
        for n in 0..3u8 {
            let at = start + Duration::from_secs(u64::from(n));
            cache.insert_at(&format!("{n}@example.com"), "pw", keys(n, 0), at);
        }
        // Touch the oldest so the second-oldest becomes least recently used.
        let touch = start + Duration::from_secs(5);
        assert!(
            cache
                .get_at("0@example.com", "pw", &id(0), 0, touch)
                .is_some()
        );
        let insert = start + Duration::from_secs(6);
        cache.insert_at("3@example.com", "pw", keys(3, 0), insert);
        assert_eq!(cache.len(), 3);
        assert!(
            cache
                .get_at("1@example.com", "pw", &id(1), 0, insert)
                .is_none()
        );
        for n in [0u8, 2, 3] {
            let address = format!("{n}@example.com");
            assert!(
                cache.get_at(&address, "pw", &id(n), 0, insert).is_some(),
                "{n}"
            );
        }
        for n in 10..100u8 {
            cache.insert_at(&format!("{n}@example.com"), "pw", keys(n, 0), insert);
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = cache(0);
        let now = Instant::now();
        cache.insert_at("a@example.com", "pw", keys(1, 0), now);
        assert!(cache.is_empty());
    }

    #[test]
    fn debug_shows_no_keys_or_addresses() {
        let mut cache = cache(3);
        cache.insert("secret-user@example.com", "pw", keys(0xab, 0));
        let shown = format!("{cache:?}");
        assert!(!shown.contains("secret-user"));
        assert!(!shown.contains("ab"), "{shown}");
    }
}

//! Rate limits for the MX: connections per client IP (`421 4.7.0`) and messages per recipient
//! (`450 4.7.1`). Token buckets in a bounded map: a key whose bucket has refilled is the same
//! as a key never seen, so idle entries are pruned without changing any answer.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked per limiter at most. When full after pruning, new keys are let through
/// untracked: memory stays bounded under a spraying attack, and the connection limits still
/// apply.
const MAX_KEYS: usize = 100_000;

/// `count` events per `per`, with bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// The limits of one MX listener; `None` disables a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// New connections from one IP address (IPv6: its /64).
    pub connections_per_ip: Option<Rate>,
    /// Messages accepted for one recipient address (counted at RCPT TO).
    pub messages_per_recipient: Option<Rate>,
}

/// A token-bucket limiter per key.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    /// std mutex: held for one map operation, never across an await.
    buckets: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    last_prune: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        RateLimiter::with_capacity(rate, MAX_KEYS)
    }

    fn with_capacity(rate: Rate, max_keys: usize) -> Self {
        RateLimiter {
            rate,
            max_keys,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_prune: Instant::now(),
            }),
        }
    }

    /// Take one token for `key`; false when its bucket is empty (over the limit).
    pub fn try_acquire(&self, key: &K) -> bool {
        self.try_acquire_at(key, Instant::now())
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().map.len()
    }

    fn try_acquire_at(&self, key: &K, now: Instant) -> bool {
        let capacity = f64::from(self.rate.count.max(1));
        let refill_per_sec = capacity / self.rate.per.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut buckets = self.lock();
        // Prune once per period, and whenever full: a bucket idle for a whole period is full
        // again, which is what an absent key means.
        // When full, at most once a second: a scan per event would be its own denial of service.
        let since_prune = now.duration_since(buckets.last_prune);
        let full = buckets.map.len() >= self.max_keys;
        if since_prune >= self.rate.per
            || (full && since_prune >= self.rate.per.min(Duration::from_secs(1)))
        {
            let per = self.rate.per;
            buckets
                .map
                .retain(|_, bucket| now.duration_since(bucket.updated) < per);
            buckets.last_prune = now;
        }
        if !buckets.map.contains_key(key) && buckets.map.len() >= self.max_keys {
            tracing::warn!("rate limiter full; letting a new client through untracked");
            return true;
        }
        let bucket = buckets.map.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill_per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key an IP address is limited under: IPv4 as is, IPv6 by its /64 (one subscriber's
/// allocation), so a client cannot escape the limit by rotating addresses within its prefix.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn bursts_up_to_count_then_refills_over_time() {
        let limiter = RateLimiter::new(rate(3, 60));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.try_acquire_at(&"a", start));
        }
        assert!(!limiter.try_acquire_at(&"a", start));
        // Another key has its own bucket.
        assert!(limiter.try_acquire_at(&"b", start));
        // One token back after a third of the period.
        assert!(limiter.try_acquire_at(&"a", start + Duration::from_secs(21)));
        assert!(!limiter.try_acquire_at(&"a", start + Duration::from_secs(22)));
    }

    #[test]
    fn idle_keys_are_pruned_and_memory_stays_bounded() {
        let limiter = RateLimiter::with_capacity(rate(1, 10), 100);
        let start = Instant::now();
        for i in 0..100 {
            assert!(limiter.try_acquire_at(&i, start));
        }
        assert_eq!(limiter.tracked(), 100);
        // Full: a new key is let through without being tracked.
        assert!(limiter.try_acquire_at(&1000, start));
        assert_eq!(limiter.tracked(), 100);
        // A key still limited stays limited.
        assert!(!limiter.try_acquire_at(&5, start));
        // After a period every bucket is full again, so all are pruned.
        assert!(limiter.try_acquire_at(&2000, start + Duration::from_secs(11)));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}

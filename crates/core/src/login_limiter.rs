//! Failed-login rate limiting per client IP and per address, shared by every protocol server
//! (IMAP, POP3, submission) so that guessing is limited whatever the door: after
//! `max_failures` failures within `window`, further attempts are refused without checking the
//! password until the window has passed. A success clears the address's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept per map at most; expired ones are purged first when full, and if the map is
/// still full new keys are not tracked (memory stays bounded under an address-spraying attack;
/// the other map still applies).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    /// std mutexes: held for a map operation only, never across an await.
    by_ip: Mutex<HashMap<IpAddr, Window>>,
    by_address: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            by_ip: Mutex::default(),
            by_address: Mutex::default(),
        }
    }

    /// Whether a login attempt may proceed to the password check.
    pub fn allows(&self, ip: Option<IpAddr>, address: &str) -> bool {
        let now = Instant::now();
        let open = |w: Option<&Window>| {
            w.is_none_or(|w| {
                now.duration_since(w.started) >= self.window || w.failures < self.max_failures
            })
        };
        let ip_ok = ip.is_none_or(|ip| open(lock(&self.by_ip).get(&ip)));
        ip_ok && open(lock(&self.by_address).get(&address.to_ascii_lowercase()))
    }

    pub fn record_failure(&self, ip: Option<IpAddr>, address: &str) {
        let now = Instant::now();
        if let Some(ip) = ip {
            bump(&mut lock(&self.by_ip), ip, now, self.window);
        }
        bump(
            &mut lock(&self.by_address),
            address.to_ascii_lowercase(),
            now,
            self.window,
        );
    }

    pub fn record_success(&self, address: &str) {
        lock(&self.by_address).remove(&address.to_ascii_lowercase());
    }
}

impl Default for LoginLimiter {
    /// 10 failures per 5 minutes, per IP and per address.
    fn default() -> Self {
        LoginLimiter::new(10, Duration::from_secs(300))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn bump<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: Instant,
    window: Duration,
) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        map.retain(|_, w| now.duration_since(w.started) < window);
        if map.len() >= MAX_ENTRIES {
            return;
        }
    }
    let entry = map.entry(key).or_insert(Window {
        started: now,
        failures: 0,
    });
    if now.duration_since(entry.started) >= window {
        *entry = Window {
            started: now,
            failures: 0,
        };
    }
    entry.failures += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_per_address_and_success_clears_address() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.allows(Some(ip), "a@x"));
        limiter.record_failure(Some(ip), "a@x");
        limiter.record_failure(Some(ip), "b@x");
        // The IP is over its limit for any address.
        assert!(!limiter.allows(Some(ip), "c@x"));
        // Another IP may still try b@x (one failure) ...
        assert!(limiter.allows(Some(other), "B@X"));
        limiter.record_failure(Some(other), "b@x");
        // ... but not after the address reached its limit, from anywhere.
        assert!(!limiter.allows(Some("192.0.2.3".parse().unwrap()), "b@x"));
        limiter.record_success("b@x");
        assert!(limiter.allows(Some("192.0.2.3".parse().unwrap()), "b@x"));
    }

    #[test]
    fn window_expiry_resets() {
        let limiter = LoginLimiter::new(1, Duration::from_millis(1));
        limiter.record_failure(None, "a@x");
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.allows(None, "a@x"));
    }
}

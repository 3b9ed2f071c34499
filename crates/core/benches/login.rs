//! Login throughput with the default Argon2id parameters: cold (full key derivation) versus
//! warm (answered by the login cache), plus the failure paths, which must cost as much as a
//! cold login so they do not reveal whether an address exists.
//!
//! Run: `cargo bench -p sealmail-core --bench login`. Prints figures; asserts nothing.

use sealmail_core::login_cache::LoginCacheConfig;
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADDRESS: &str = "bench@example.com";
const PASSWORD: &str = "a reasonably long benchmark password";
const COLD_LOGINS: u32 = 30;
const WARM_LOGINS: u32 = 200_000;

fn main() {
    let kdf = KdfParams::default();
    println!(
        "login bench: Argon2id m={} KiB, t={}, p={}",
        kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
    );
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let registry = Registry::open_with(
        dir.path(),
        RegistryOptions {
            create_if_missing: true,
            login_cache: None,
            unknown_address_kdf: kdf,
        },
    )
    .expect("registry");
    registry
        .add_account(
            ADDRESS,
            Some(PASSWORD),
            &AccountOptions {
                kdf,
                ..AccountOptions::default()
            },
        )
        .expect("account");

    let cold = time(COLD_LOGINS, || {
        black_box(registry.login(ADDRESS, PASSWORD).expect("login"));
    });
    report("cold login (1 thread)", COLD_LOGINS, cold);

    let wrong = time(COLD_LOGINS, || {
        black_box(registry.login(ADDRESS, "wrong password").unwrap_err());
    });
    report("wrong password", COLD_LOGINS, wrong);

    let unknown = time(COLD_LOGINS, || {
        black_box(registry.login("nobody@example.com", PASSWORD).unwrap_err());
    });
    report("unknown address", COLD_LOGINS, unknown);

    let registry = Arc::new(registry);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                for _ in 0..COLD_LOGINS {
                    black_box(registry.login(ADDRESS, PASSWORD).expect("login"));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    report(
        &format!("cold login ({threads} threads)"),
        COLD_LOGINS * threads as u32,
        started.elapsed(),
    );
    drop(registry);

    let cached = Registry::open_with(
        dir.path(),
        RegistryOptions {
            create_if_missing: false,
            login_cache: Some(LoginCacheConfig::default()),
            unknown_address_kdf: kdf,
        },
    )
    .expect("registry");
    cached.login(ADDRESS, PASSWORD).expect("first, cold login");
    let warm = time(WARM_LOGINS, || {
        black_box(cached.login(ADDRESS, PASSWORD).expect("login"));
    });
    report("warm login (cache hit)", WARM_LOGINS, warm);
    let stats = cached.login_cache_stats().expect("cache enabled");
    println!(
        "cache: {} hits, {} misses, {} entries",
        stats.hits, stats.misses, stats.entries
    );
    println!(
        "warm/cold speed-up: {:.0}x",
        per_login(cold, COLD_LOGINS).as_secs_f64() / per_login(warm, WARM_LOGINS).as_secs_f64()
    );
}

fn time(iterations: u32, mut body: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        body();
    }
    started.elapsed()
}

fn per_login(total: Duration, iterations: u32) -> Duration {
    total / iterations
}

fn report(label: &str, iterations: u32, total: Duration) {
    let each = per_login(total, iterations);
    println!(
        "{label:<28} {:>12.1} logins/s   {:>10.3} ms/login   ({iterations} in {:.2} s)",
        f64::from(iterations) / total.as_secs_f64(),
        each.as_secs_f64() * 1e3,
        total.as_secs_f64()
    );
}

//! Login cost, cold (Argon2id) and warm (login cache), split into its steps:
//! the registry's password check, opening the mailbox (account::open_mailbox) and the whole
//! `MailStore::login` an IMAP LOGIN performs.
//!
//!     cargo run --release -p sealmail-imap --example login_bench

use sealmail_core::account;
use sealmail_core::mailstore::{LocalMailStore, MailStore};
use sealmail_core::registry::{AccountOptions, Registry, RegistryOptions};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 200;

fn per_second(total: Duration, rounds: u32) -> String {
    format!(
        "{:>9.3} ms each, {:>8.0}/s",
        total.as_secs_f64() * 1e3 / f64::from(rounds),
        f64::from(rounds) / total.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let options = RegistryOptions {
        create_if_missing: true,
        ..RegistryOptions::default()
    };
    let registry = Registry::open_with(dir.path(), options.clone()).unwrap();
    registry
        .add_account(
            "a@example.org",
            Some("a-long-password"),
            &AccountOptions::default(),
        )
        .unwrap();

    let started = Instant::now();
    registry.login("a@example.org", "a-long-password").unwrap();
    println!(
        "cold registry login (Argon2id):  {}",
        per_second(started.elapsed(), 1)
    );

    let started = Instant::now();
    for _ in 0..ROUNDS {
        registry.login("a@example.org", "a-long-password").unwrap();
    }
    println!(
        "warm registry login (cache):     {}",
        per_second(started.elapsed(), ROUNDS)
    );

    let started = Instant::now();
    for _ in 0..ROUNDS {
        drop(account::open_mailbox(&registry, "a@example.org", "a-long-password").unwrap());
    }
    println!(
        "warm login + open mailbox:       {}",
        per_second(started.elapsed(), ROUNDS)
    );

    let store = LocalMailStore::new(registry);
    let first = store
        .login("a@example.org", "a-long-password")
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        drop(
            store
                .login("a@example.org", "a-long-password")
                .await
                .unwrap(),
        );
    }
    println!(
        "warm MailStore::login (shared):  {}",
        per_second(started.elapsed(), ROUNDS)
    );
    drop(first);
}

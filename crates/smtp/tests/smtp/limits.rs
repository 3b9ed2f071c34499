//! Rate limits (per client IP, per recipient) and the shared failed-login limiter on
//! submission AUTH, over raw sockets.

use crate::common::{ALICE, BOB, PASSWORD, RawClient, TestServer};
use base64ct::{Base64, Encoding};
use sealmail_core::login_limiter::LoginLimiter;
use sealmail_smtp::{Mode, Rate, RateLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_rate_get_421() {
    let server = TestServer::start(|config| {
        config.rate_limits = RateLimits {
            connections_per_ip: Some(Rate {
                count: 2,
                per: Duration::from_secs(60),
            }),
            messages_per_recipient: None,
        };
    })
    .await;
    let (_first, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (_second, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    // Even after the first two have left, the rate (not the concurrency) is what counts.
    drop((_first, _second));
    let (mut third, greeting) = RawClient::connect(server.addr).await;
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    assert!(third.is_closed().await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_per_recipient_rate_get_450_for_that_recipient_only() {
    let server = TestServer::start(|config| {
        config.rate_limits = RateLimits {
            connections_per_ip: None,
            messages_per_recipient: Some(Rate {
                count: 2,
                per: Duration::from_secs(60),
            }),
        };
    })
    .await;
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.codes(b"EHLO c.test\r\n", 1).await;
    let transaction =
        format!("MAIL FROM:<s@remote.test>\r\nRCPT TO:<{ALICE}>\r\nRSET\r\n").into_bytes();
    for _ in 0..2 {
        let codes = client.codes(&transaction, 3).await;
        assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "250 2.0.0"]);
    }
    let codes = client
        .codes(
            format!("MAIL FROM:<s@remote.test>\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n")
                .as_bytes(),
            3,
        )
        .await;
    assert_eq!(codes, ["250 2.1.0", "450 4.7.1", "250 2.1.5"]);
    server.shutdown().await;
}

fn plain(user: &str, password: &str) -> String {
    Base64::encode_string(format!("\0{user}\0{password}").as_bytes())
}

/// Submission over plain TCP from loopback (allowed there), with `limiter`.
async fn submission(limiter: Arc<LoginLimiter>, delay: Duration) -> TestServer {
    TestServer::start(move |config| {
        config.session.mode = Mode::Submission;
        config.loopback_plaintext_auth = true;
        config.tls = None;
        config.failed_auth_delay = delay;
        config.login_limiter = limiter;
    })
    .await
}

async fn auth(server: &TestServer, user: &str, password: &str) -> String {
    let (mut client, _) = RawClient::connect(server.addr).await;
    client.codes(b"EHLO c.test\r\n", 1).await;
    let reply = client
        .codes(
            format!("AUTH PLAIN {}\r\n", plain(user, password)).as_bytes(),
            1,
        )
        .await
        .remove(0);
    client.send(b"QUIT\r\n").await;
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_is_delayed_and_locks_out_the_ip() {
    let limiter = Arc::new(LoginLimiter::new(3, Duration::from_secs(60)));
    let delay = Duration::from_millis(200);
    let server = submission(Arc::clone(&limiter), delay).await;
    for user in ["x1@example.test", "x2@example.test", ALICE] {
        let started = Instant::now();
        assert_eq!(auth(&server, user, "wrong").await, "535 5.7.8");
        assert!(
            started.elapsed() >= delay,
            "a failure is answered after the delay"
        );
    }
    // Three failures from this IP: even the right password is not checked now.
    assert_eq!(auth(&server, ALICE, PASSWORD).await, "454 4.7.0");
    assert!(!limiter.allows(Some("127.0.0.1".parse().unwrap()), BOB));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_for_an_address_from_elsewhere_lock_that_address_only() {
    let limiter = Arc::new(LoginLimiter::new(3, Duration::from_secs(60)));
    let server = submission(Arc::clone(&limiter), Duration::from_millis(10)).await;
    // Guessing at Bob's password from other addresses (IMAP, POP3 or submission alike).
    for last in 1..=3u8 {
        limiter.record_failure(Some(std::net::IpAddr::from([192, 0, 2, last])), BOB);
    }
    assert_eq!(auth(&server, BOB, PASSWORD).await, "454 4.7.0");
    // Alice, from the same client, is not affected; her success clears nothing of Bob's.
    assert_eq!(auth(&server, ALICE, PASSWORD).await, "235 2.7.0");
    assert_eq!(auth(&server, BOB, PASSWORD).await, "454 4.7.0");
    server.shutdown().await;
}

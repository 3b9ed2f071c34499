//! `sealmail serve`: the embedded default, one process holding the mailbox files and running
//! the protocol listeners on top of the local `MailStore`.

use crate::config::Config;
use crate::metrics::{ServerMetrics, serve_metrics};
use crate::scheduled_backup::{self, ScheduledBackups};
use crate::tls;
use anyhow::{Context, Result};
use sealmail_core::login_limiter::LoginLimiter;
use sealmail_core::mailstore::{IndexSchedule, LocalMailStore};
use sealmail_core::registry::Registry;
use sealmail_imap::server::{ServerConfig as ImapConfig, TlsSettings};
use sealmail_imap::session::SessionConfig;
use sealmail_pop3::server::{ServerConfig as Pop3Config, TlsSettings as Pop3Tls};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often idle entries of the login cache are wiped from memory.
const LOGIN_CACHE_SWEEP: Duration = Duration::from_secs(60);
/// How often mail sealed by other processes (`sealmail deliver`, a Node MX calling the
/// binding's `deliver()`) is looked for and folded into the mailboxes sessions hold open.
const SEALED_QUEUE_SWEEP: Duration = Duration::from_secs(2);

/// The relay's settings from the `[outbound]` section (also used by `sealmail queue`).
pub fn outbound_config(config: &Config) -> sealmail_smtp::OutboundConfig {
    let outbound = &config.outbound;
    sealmail_smtp::OutboundConfig {
        hostname: config.smtp_settings.hostname.clone(),
        port: outbound.port,
        require_tls: outbound.require_tls,
        extra_ca_file: outbound.extra_ca_file.clone(),
        nameservers: outbound.nameservers.clone(),
        max_lifetime: Duration::from_secs(outbound.max_lifetime_secs),
        first_retry: Duration::from_secs(outbound.first_retry_secs),
        max_retry_interval: Duration::from_secs(outbound.max_retry_interval_secs),
        timeout: Duration::from_secs(outbound.timeout_secs),
        delay_notice_after: (outbound.delay_notice_secs > 0)
            .then(|| Duration::from_secs(outbound.delay_notice_secs)),
        ..sealmail_smtp::OutboundConfig::default()
    }
}

pub fn serve(data_dir: &Path, config_path: Option<&Path>) -> Result<()> {
    let config = Config::load(config_path, |name| std::env::var(name).ok())?;
    init_logging();
    let registry = Arc::new(
        Registry::open_or_create(data_dir)
            .with_context(|| format!("opening the registry in {}", data_dir.display()))?,
    );
    if let Err(reason) = sealmail_core::key::page_crypto_provider() {
        // Same file format either way; only slower.
        tracing::warn!(%reason, "mailbox pages are encrypted through OpenSSL's SQLCipher provider");
    }
    let tls_config = tls::server_config(data_dir, &config.tls)?;
    let store = Arc::new(LocalMailStore::new(Arc::clone(&registry)));
    let metrics = Arc::new(ServerMetrics::default());
    metrics.watch_queues(data_dir);
    // Built before the runtime (an S3 client brings its own), and kept here so its last
    // handle is dropped outside the runtime too.
    let backup_target = config
        .backup
        .as_ref()
        .map(|settings| scheduled_backup::target_from_settings(settings).map(Arc::new))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let scheduler_target = backup_target.clone();
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        // One failed-login budget per client and address across every listener, IMAP,
        // POP3 and submission alike (an attacker gets no extra tries on another port or protocol).
        let login_limiter = Arc::new(LoginLimiter::default());
        let session_config = SessionConfig {
            metrics: metrics.clone(),
            login_limiter: Arc::clone(&login_limiter),
            ..SessionConfig::default()
        };
        let imap_config = |implicit: bool| ImapConfig {
            max_connections: config.imap_limits.max_connections,
            max_connections_per_ip: config.imap_limits.max_connections_per_ip,
            idle_timeout: Duration::from_secs(config.imap_limits.idle_timeout_secs),
            loopback_plaintext_auth: config.imap_limits.allow_plaintext_auth_from_loopback,
            tls: Some(TlsSettings {
                config: Arc::clone(&tls_config),
                implicit,
            }),
            session: session_config.clone(),
            ..ImapConfig::default()
        };
        for (name, addr, implicit) in [("IMAP", config.imap, false), ("IMAPS", config.imaps, true)]
        {
            let Some(addr) = addr else { continue };
            let listener = bind(name, addr).await?;
            let stop = stopped(stop_rx.clone());
            let store = Arc::clone(&store);
            let server_config = imap_config(implicit);
            servers.spawn(async move {
                sealmail_imap::server::run(listener, store, server_config, stop).await
            });
        }
        let limits = &config.pop3_limits;
        for (name, addr, implicit) in [("POP3", config.pop3, false), ("POP3S", config.pop3s, true)]
        {
            let Some(addr) = addr else { continue };
            let listener = bind(name, addr).await?;
            let stop = stopped(stop_rx.clone());
            let store = Arc::clone(&store);
            let server_config = Pop3Config {
                max_connections: limits.max_connections,
                max_connections_per_ip: limits.max_connections_per_ip,
                idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
                loopback_plaintext_auth: limits.allow_plaintext_auth_from_loopback,
                tls: Some(Pop3Tls {
                    config: Arc::clone(&tls_config),
                    implicit,
                }),
                session: sealmail_pop3::session::SessionConfig {
                    login_limiter: Arc::clone(&login_limiter),
                    metrics: metrics.clone(),
                    ..Default::default()
                },
                ..Pop3Config::default()
            };
            servers.spawn(async move {
                sealmail_pop3::server::run(listener, store, server_config, stop).await
            });
        }
        // SMTP: MX (inbound mail sealed for offline recipients) with STARTTLS, and submission
        // (AUTH, Sent copies, relay to other domains) with STARTTLS and over implicit TLS.
        let inbound = &config.smtp_settings.inbound;
        let mut smtp_delivery =
            sealmail_smtp::LocalDelivery::new(Arc::clone(&registry), Arc::clone(&store));
        if inbound.verify {
            let authenticator = sealmail_smtp::InboundAuthenticator::new(
                &sealmail_smtp::InboundAuthConfig {
                    resolver: inbound.resolver()?,
                    honor_dmarc_reject: inbound.dmarc_reject,
                    ..sealmail_smtp::InboundAuthConfig::default()
                },
                &config.smtp_settings.hostname,
            )?;
            smtp_delivery = smtp_delivery.with_inbound_auth(authenticator);
        }
        // Webhook forwards: queued durably by the MX, sent by this worker with retries.
        let webhooks = sealmail_smtp::WebhookQueue::open(
            data_dir,
            sealmail_smtp::WebhookConfig {
                initial_backoff: Duration::from_secs(inbound.webhook_initial_backoff_secs),
                max_attempts: inbound.webhook_max_attempts,
                ..sealmail_smtp::WebhookConfig::default()
            },
        )?;
        tokio::spawn(Arc::clone(&webhooks).run(stopped(stop_rx.clone())));
        if config.outbound.relay {
            let queue = Arc::new(
                sealmail_smtp::OutboundQueue::new(Arc::clone(&registry), outbound_config(&config))
                    .context("starting the outbound queue")?,
            );
            metrics.watch_outbound(Arc::clone(&queue));
            tokio::spawn(Arc::clone(&queue).run(stopped(stop_rx.clone())));
            smtp_delivery = smtp_delivery.with_outbound(queue);
        }
        let smtp_delivery = Arc::new(smtp_delivery.with_webhook_queue(webhooks));
        for (name, addr, mode, implicit) in [
            ("SMTP", config.smtp, sealmail_smtp::Mode::Mx, false),
            (
                "SUBMISSION",
                config.submission,
                sealmail_smtp::Mode::Submission,
                false,
            ),
            (
                "SUBMISSIONS",
                config.submissions,
                sealmail_smtp::Mode::Submission,
                true,
            ),
        ] {
            let Some(addr) = addr else { continue };
            let listener = bind(name, addr).await?;
            let smtp_config = sealmail_smtp::ServerConfig {
                session: sealmail_smtp::SessionConfig {
                    mode,
                    hostname: config.smtp_settings.hostname.clone(),
                    max_message_size: config.smtp_settings.max_message_size,
                    ..sealmail_smtp::SessionConfig::default()
                },
                loopback_plaintext_auth: config.smtp_settings.allow_plaintext_auth_from_loopback,
                login_limiter: Arc::clone(&login_limiter),
                rate_limits: match mode {
                    sealmail_smtp::Mode::Mx => inbound.rate_limits(),
                    sealmail_smtp::Mode::Submission => sealmail_smtp::RateLimits::default(),
                },
                tls: Some(sealmail_smtp::TlsSettings {
                    config: Arc::clone(&tls_config),
                    implicit,
                }),
                ..sealmail_smtp::ServerConfig::default()
            };
            let delivery = Arc::clone(&smtp_delivery);
            let stop = stopped(stop_rx.clone());
            servers.spawn(async move {
                sealmail_smtp::run(listener, delivery, smtp_config, stop).await
            });
        }
        if let Some(addr) = config.metrics {
            let listener = bind("metrics", addr).await?;
            let stop = stopped(stop_rx.clone());
            tokio::spawn(serve_metrics(listener, Arc::clone(&metrics), stop));
        }
        let scheduled_backups = match (&config.backup, &scheduler_target) {
            (Some(settings), Some(target)) => {
                let backups = ScheduledBackups::new(
                    settings,
                    Arc::clone(target),
                    Arc::clone(&registry),
                    Arc::clone(&store),
                    Arc::clone(&metrics),
                );
                eprintln!("scheduled backups to {}", settings.target);
                Some(tokio::spawn(backups.run(stop_rx.clone())))
            }
            _ => None,
        };
        let sweeper_registry = Arc::clone(&registry);
        let mut sweeper_stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOGIN_CACHE_SWEEP);
            loop {
                tokio::select! {
                    _ = tick.tick() => sweeper_registry.purge_expired_logins(),
                    _ = sweeper_stop.changed() => break,
                }
            }
        });
        let drain_store = Arc::clone(&store);
        let mut drain_stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SEALED_QUEUE_SWEEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = drain_stop.changed() => break,
                }
                let store = Arc::clone(&drain_store);
                let drained = tokio::task::spawn_blocking(move || {
                    let drained = store.drain_sealed_for_open_mailboxes();
                    // Mail that arrived since the last tick (appends, deliveries, what was
                    // just drained) goes into the full-text index once it stops arriving,
                    // rather than at the first search.
                    if let Err(error) = store.index_open_mailboxes(&IndexSchedule::BACKGROUND) {
                        tracing::warn!(%error, "full-text indexing of open mailboxes failed");
                    }
                    drained
                })
                .await;
                match drained {
                    Ok(Ok(0)) => {}
                    Ok(Ok(items)) => {
                        tracing::info!(items, "folded mail sealed elsewhere into open mailboxes")
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "folding sealed mail into open mailboxes failed")
                    }
                    Err(error) => tracing::error!(%error, "the sealed-queue sweep panicked"),
                }
            }
        });
        eprintln!(
            "sealmail is running; data in {} (Ctrl-C to stop)",
            data_dir.display()
        );
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections, letting commands finish");
        let _ = stop_tx.send(true);
        while let Some(result) = servers.join_next().await {
            result
                .context("listener task panicked")?
                .context("listener failed")?;
        }
        if let Some(backups) = scheduled_backups {
            // A backup in progress finishes (and removes its temporary file) before exit.
            backups.await.context("scheduled backups panicked")?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    drop(backup_target);
    Ok(())
}

async fn bind(name: &str, addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{name}: cannot listen on {addr}"))?;
    eprintln!("{name} listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// Completes once the stop flag is raised.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `info`). Nothing logged anywhere
/// carries a password, a key or message content.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

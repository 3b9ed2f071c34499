//! Daily backups inside `sealmail serve`. The server holds a mailbox's key only while its
//! owner has a session (or it lingers after one), so that is when a mailbox is backed up: a
//! timer looks at the open mailboxes and backs up each that is due, one at a time, on a
//! blocking thread with a connection of its own — never inside a client's command. The
//! per-mailbox backup lock keeps it from running beside a `sealmail backup` of the same
//! mailbox; such a collision is retried at the next tick.

use crate::config::BackupSettings;
use crate::metrics::ServerMetrics;
use anyhow::{Context, Result};
use sealmail_core::Error as CoreError;
use sealmail_core::backup::{
    BackupOptions, BackupOutcome, BackupSchedule, BackupTarget, OpenMailboxSource, RetentionPolicy,
    backup_open_mailbox,
};
use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{MailboxId, Registry};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How long a failed backup waits before it is tried again (capped by the interval).
const RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// How often the timer looks for due mailboxes (at most; short intervals look more often).
const MAX_TICK: Duration = Duration::from_secs(60);

/// Everything the timer needs; cheap to clone into a blocking task.
#[derive(Clone)]
pub struct ScheduledBackups {
    registry: Arc<Registry>,
    store: Arc<LocalMailStore<Arc<Registry>>>,
    target: Arc<BackupTarget>,
    schedule: BackupSchedule,
    retention: RetentionPolicy,
    metrics: Arc<ServerMetrics>,
}

/// What the timer remembers between ticks, per mailbox.
#[derive(Default)]
struct History {
    /// The last backup stored, or found unchanged (first read from the target's manifests).
    last_done: HashMap<MailboxId, SystemTime>,
    /// Do not try before this (after a failure).
    retry_at: HashMap<MailboxId, SystemTime>,
}

/// Build the backup target from the `[backup]` settings: before the async runtime starts,
/// because an S3 client sets itself up with a runtime of its own.
pub fn target_from_settings(settings: &BackupSettings) -> Result<BackupTarget> {
    if let Some(rest) = settings.target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let credentials = match (&settings.s3_access_key_id, &settings.s3_secret_access_key) {
            (Some(id), Some(secret)) => Some(sealmail_core::backup::S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: zeroize::Zeroizing::new(secret.clone()),
            }),
            (None, None) => None,
            _ => anyhow::bail!(
                "[backup] s3_access_key_id and s3_secret_access_key go together: set both or neither"
            ),
        };
        let options = sealmail_core::backup::S3Options {
            endpoint_url: settings.s3_endpoint.clone(),
            region: settings.s3_region.clone(),
            credentials,
            ..Default::default()
        };
        return Ok(BackupTarget::S3(
            sealmail_core::backup::S3Target::from_environment(bucket, prefix, options)
                .context("[backup] target")?,
        ));
    }
    BackupTarget::parse(&settings.target).context("[backup] target")
}

impl ScheduledBackups {
    pub fn new(
        settings: &BackupSettings,
        target: Arc<BackupTarget>,
        registry: Arc<Registry>,
        store: Arc<LocalMailStore<Arc<Registry>>>,
        metrics: Arc<ServerMetrics>,
    ) -> Self {
        let schedule = match settings.hour {
            Some(hour) => BackupSchedule::DailyAt { hour },
            None => BackupSchedule::Every(Duration::from_secs(settings.interval_secs)),
        };
        Self {
            registry,
            store,
            target,
            schedule,
            retention: RetentionPolicy {
                keep_daily: settings.keep_daily,
                keep_monthly: settings.keep_monthly,
            },
            metrics,
        }
    }

    /// Look for due mailboxes every tick until `stop` is raised; a pass that is running when
    /// it is raised finishes first (a backup is never cut off halfway).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let tick_every = match self.schedule {
            BackupSchedule::Every(interval) => {
                (interval / 4).clamp(Duration::from_millis(100), MAX_TICK)
            }
            BackupSchedule::DailyAt { .. } => MAX_TICK,
        };
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut history = History::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || {
                this.pass(&mut history);
                history
            })
            .await
            {
                Ok(kept) => history = kept,
                Err(error) => {
                    tracing::error!(%error, "scheduled backup pass panicked");
                    history = History::default();
                }
            }
        }
    }

    /// One look at the open mailboxes: back up each that is due, one after another.
    fn pass(&self, history: &mut History) {
        for source in self.store.open_mailboxes_for_backup() {
            let now = SystemTime::now();
            if history
                .retry_at
                .get(&source.mailbox_id)
                .is_some_and(|at| now < *at)
            {
                continue;
            }
            let last = match history.last_done.get(&source.mailbox_id) {
                Some(last) => Some(*last),
                None => match self.latest_stored(&source.mailbox_id) {
                    Ok(last) => last,
                    Err(error) => {
                        self.failed(history, &source, &error, now);
                        continue;
                    }
                },
            };
            if !self.schedule.is_due(last, now) {
                if let Some(last) = last {
                    history.last_done.insert(source.mailbox_id.clone(), last);
                }
                continue;
            }
            self.back_up(history, &source, now);
        }
    }

    fn back_up(&self, history: &mut History, source: &OpenMailboxSource, now: SystemTime) {
        let options = BackupOptions {
            retention: Some(self.retention),
            now: None,
        };
        match backup_open_mailbox(&self.registry, source, &self.target, &options) {
            Ok(outcome) => {
                self.metrics.backup(true);
                history.retry_at.remove(&source.mailbox_id);
                history
                    .last_done
                    .insert(source.mailbox_id.clone(), SystemTime::now());
                match outcome {
                    BackupOutcome::Stored { manifest, pruned } => tracing::info!(
                        mailbox = %source.mailbox_id,
                        version = %manifest.version,
                        bytes = manifest.size,
                        pruned = pruned.len(),
                        "scheduled backup stored"
                    ),
                    BackupOutcome::Unchanged { .. } => tracing::debug!(
                        mailbox = %source.mailbox_id,
                        "scheduled backup: unchanged since the last version"
                    ),
                }
            }
            // A `sealmail backup` of this mailbox is running: it does the work; look again
            // at the next tick.
            Err(CoreError::BackupInProgress(_)) => {}
            Err(error) => self.failed(history, source, &error, now),
        }
    }

    fn failed(
        &self,
        history: &mut History,
        source: &OpenMailboxSource,
        error: &CoreError,
        now: SystemTime,
    ) {
        self.metrics.backup(false);
        let wait = match self.schedule {
            BackupSchedule::Every(interval) => interval.min(RETRY_AFTER),
            BackupSchedule::DailyAt { .. } => RETRY_AFTER,
        };
        history
            .retry_at
            .insert(source.mailbox_id.clone(), now + wait);
        tracing::warn!(mailbox = %source.mailbox_id, %error, "scheduled backup failed");
    }

    /// When the newest version at the target was made, if there is one.
    fn latest_stored(&self, mailbox_id: &MailboxId) -> sealmail_core::Result<Option<SystemTime>> {
        let versions = self.target.list_versions(mailbox_id)?;
        Ok(versions.last().and_then(|latest| {
            let unix = sealmail_core::time::parse_iso8601_utc(&latest.created_at)?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).ok()?))
        }))
    }
}

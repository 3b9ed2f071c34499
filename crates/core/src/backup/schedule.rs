//! Scheduled backups of the mailboxes whose owners are logged in: the server has keys only
//! for those, so that is when it can back a mailbox up ("daily while a session holds the
//! key"). This module decides when a mailbox is due and runs one backup on its own
//! connection; the server's timer and threads live in the binary.

use super::{BackupOptions, BackupOutcome, BackupTarget, run};
use crate::error::Result;
use crate::key::MailboxKey;
use crate::registry::{MailboxId, Registry};
use crate::store::Mailbox;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What a backup of a mailbox that sessions hold open needs: which mailbox, its file, and
/// the key it is open with. Handed out only while a session holds the key; `Debug` redacts it.
#[derive(Clone)]
pub struct OpenMailboxSource {
    pub mailbox_id: MailboxId,
    pub path: PathBuf,
    pub key: MailboxKey,
}

impl std::fmt::Debug for OpenMailboxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenMailboxSource")
            .field("mailbox_id", &self.mailbox_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// When a mailbox is due for its next scheduled backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSchedule {
    /// Once a day from this UTC hour (0-23) on: due when the last backup is older than the
    /// latest `HH:00` UTC that has passed.
    DailyAt { hour: u8 },
    /// At most once per interval: due when the last backup is at least this old. The default
    /// is one day; tests use seconds.
    Every(Duration),
}

impl Default for BackupSchedule {
    fn default() -> Self {
        Self::Every(Duration::from_secs(86_400))
    }
}

impl BackupSchedule {
    /// Whether a mailbox last backed up (or found unchanged) at `last` is due at `now`.
    pub fn is_due(&self, last: Option<SystemTime>, now: SystemTime) -> bool {
        let Some(last) = last else {
            return true;
        };
        match *self {
            Self::Every(interval) => now.duration_since(last).is_ok_and(|age| age >= interval),
            Self::DailyAt { hour } => {
                let unix = |t: SystemTime| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0)
                };
                let now = unix(now);
                let offset = i64::from(hour.min(23)) * 3600;
                // The latest HH:00 UTC at or before now.
                let slot = (now - offset).div_euclid(86_400) * 86_400 + offset;
                unix(last) < slot
            }
        }
    }
}

/// Back up a mailbox that a session holds open, on a connection of its own: the snapshot's
/// read transaction does not stop the session's writers (WAL), and nothing waits on the
/// session's connection. Guarded by the per-mailbox backup lock like every backup.
pub fn backup_open_mailbox(
    registry: &Registry,
    source: &OpenMailboxSource,
    target: &BackupTarget,
    options: &BackupOptions,
) -> Result<BackupOutcome> {
    let credential = registry.wrapped_credential(&source.mailbox_id)?;
    let mailbox = Mailbox::open(&source.path, &source.key)?;
    run(&mailbox, &source.key, &credential, target, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn every_interval_waits_the_whole_interval() {
        let schedule = BackupSchedule::Every(Duration::from_secs(10));
        assert!(schedule.is_due(None, at(100)));
        assert!(!schedule.is_due(Some(at(100)), at(109)));
        assert!(schedule.is_due(Some(at(100)), at(110)));
        // A clock set back never triggers a burst.
        assert!(!schedule.is_due(Some(at(100)), at(50)));
    }

    #[test]
    fn daily_at_an_hour_runs_once_after_that_hour() {
        let schedule = BackupSchedule::DailyAt { hour: 3 };
        let day = 20_000 * 86_400;
        let three = day + 3 * 3600;
        // Backed up yesterday at 03:05: not due at 02:59, due from 03:00.
        assert!(!schedule.is_due(Some(at(three - 86_400 + 300)), at(three - 60)));
        assert!(schedule.is_due(Some(at(three - 86_400 + 300)), at(three)));
        // Backed up today at 03:01: not due again until tomorrow 03:00.
        assert!(!schedule.is_due(Some(at(three + 60)), at(day + 86_399)));
        assert!(schedule.is_due(Some(at(three + 60)), at(three + 86_400)));
        // Before the hour, the slot is yesterday's.
        assert!(!schedule.is_due(Some(at(day - 3600)), at(day + 3600)));
    }
}

//! Which backup versions to keep: the newest version of each of the last N days that have a
//! backup, and of each of the last M months that have one (like restic's `--keep-daily` and
//! `--keep-monthly`). The newest version is always kept. Days and months are UTC.

use super::target::BackupTarget;
use crate::error::Result;
use crate::registry::MailboxId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub keep_daily: u32,
    pub keep_monthly: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_daily: 7,
            keep_monthly: 12,
        }
    }
}

/// The versions `policy` does not keep. `versions` are version names (sortable timestamps).
pub fn versions_to_delete(versions: &[String], policy: &RetentionPolicy) -> Vec<String> {
    let mut newest_first: Vec<&String> = versions.iter().collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    let mut keep = vec![false; newest_first.len()];
    if let Some(first) = keep.first_mut() {
        *first = true;
    }
    // A version name starts with YYYYMMDD: the first 8 characters are its day, 6 its month.
    for (period_len, limit) in [(8, policy.keep_daily), (6, policy.keep_monthly)] {
        let mut periods_seen = 0u32;
        let mut last_period: Option<&str> = None;
        for (index, name) in newest_first.iter().enumerate() {
            let period = &name[..period_len.min(name.len())];
            if last_period != Some(period) {
                last_period = Some(period);
                if periods_seen == limit {
                    break;
                }
                periods_seen += 1;
                keep[index] = true;
            }
        }
    }
    newest_first
        .into_iter()
        .zip(keep)
        .filter(|(_, kept)| !kept)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Delete the versions of `mailbox_id` that `policy` does not keep; returns their names.
pub fn apply_retention(
    target: &BackupTarget,
    mailbox_id: &MailboxId,
    policy: &RetentionPolicy,
) -> Result<Vec<String>> {
    let names: Vec<String> = target
        .list_versions(mailbox_id)?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let doomed = versions_to_delete(&names, policy);
    for name in &doomed {
        target.delete_version(mailbox_id, name)?;
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_newest_per_day_and_month() {
        let versions = names(&[
            "20260901T100000.000Z", // September: a third month, beyond keep_monthly
            "20261015T080000.000Z",
            "20261015T200000.000Z", // October: the newest of its month, kept
            "20261126T090000.000Z",
            "20261127T090000.000Z", // day kept
            "20261128T080000.000Z",
            "20261128T200000.000Z", // newest: day and month
        ]);
        let policy = RetentionPolicy {
            keep_daily: 2,
            keep_monthly: 2,
        };
        let mut deleted = versions_to_delete(&versions, &policy);
        deleted.sort();
        assert_eq!(
            deleted,
            names(&[
                "20260901T100000.000Z",
                "20261015T080000.000Z",
                "20261126T090000.000Z",
                "20261128T080000.000Z",
            ])
        );
    }

    #[test]
    fn zero_keeps_only_the_newest() {
        let versions = names(&["20261127T090000.000Z", "20261128T090000.000Z"]);
        let policy = RetentionPolicy {
            keep_daily: 0,
            keep_monthly: 0,
        };
        assert_eq!(
            versions_to_delete(&versions, &policy),
            names(&["20261127T090000.000Z"])
        );
        assert!(versions_to_delete(&[], &policy).is_empty());
    }
}

//! Where backups are kept, and the versions stored there.
//!
//! Layout (the same for every target): `<root>/<mailbox_id>/<version>.sqlite` is the encrypted
//! snapshot and `<root>/<mailbox_id>/<version>.json` its [`BackupManifest`]. The manifest is
//! written last, so a version without one is incomplete and ignored. Names carry only the
//! random mailbox id, never an address.

use super::manifest::BackupManifest;
use super::snapshot::{sync_dir, sync_file, write_file_atomically};
use crate::error::{Error, Result};
use crate::registry::MailboxId;
use crate::store::ignore_missing;
use std::path::{Path, PathBuf};

/// A place backups are written to and restored from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupTarget {
    /// A local (or mounted) directory, for operators without S3: `file:///DIR`.
    Directory(PathBuf),
}

/// Which version to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    /// A version name as listed, e.g. `20261128T203656.123Z`.
    Named(String),
}

impl std::str::FromStr for VersionSelector {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        if text == "latest" {
            return Ok(Self::Latest);
        }
        if !is_version_name(text) {
            return Err(Error::InvalidArgument(format!(
                "{text:?} is not a backup version (expected `latest` or a name such as \
                 20261128T203656.123Z)"
            )));
        }
        Ok(Self::Named(text.to_owned()))
    }
}

const SNAPSHOT_SUFFIX: &str = ".sqlite";
const MANIFEST_SUFFIX: &str = ".json";

impl BackupTarget {
    /// `file:///DIR` (or a plain absolute path). `s3://` URLs are not supported by this build.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "{url:?}: a file target needs an absolute path, as in file:///var/backups"
                )));
            }
            return Ok(Self::Directory(PathBuf::from(path)));
        }
        if url.starts_with('/') {
            return Ok(Self::Directory(PathBuf::from(url)));
        }
        Err(Error::InvalidArgument(format!(
            "{url:?}: unsupported backup target (use file:///DIR)"
        )))
    }

    /// A directory on the same file system as the final location, where a snapshot can be
    /// written and then renamed into place.
    pub(crate) fn staging_dir(&self, mailbox_id: &MailboxId) -> Result<PathBuf> {
        let Self::Directory(root) = self;
        let dir = root.join(mailbox_id.as_str());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Move a verified snapshot into place as `manifest.version`, then write its manifest. Both
    /// are synced before the manifest appears, so a listed version is always complete.
    pub(crate) fn store_version(&self, snapshot: &Path, manifest: &BackupManifest) -> Result<()> {
        let dir = self.staging_dir(&manifest.mailbox_id)?;
        let data = dir.join(format!("{}{SNAPSHOT_SUFFIX}", manifest.version));
        sync_file(snapshot)?;
        std::fs::rename(snapshot, &data)?;
        sync_dir(&dir)?;
        write_file_atomically(
            &dir.join(format!("{}{MANIFEST_SUFFIX}", manifest.version)),
            &manifest.to_json(),
        )
    }

    /// Every complete version of a mailbox, oldest first.
    pub fn list_versions(&self, mailbox_id: &MailboxId) -> Result<Vec<BackupManifest>> {
        let Self::Directory(root) = self;
        let dir = root.join(mailbox_id.as_str());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_suffix(MANIFEST_SUFFIX)
                && is_version_name(version)
                && dir.join(format!("{version}{SNAPSHOT_SUFFIX}")).is_file()
            {
                names.push(version.to_owned());
            }
        }
        names.sort();
        let mut manifests = Vec::with_capacity(names.len());
        for name in names {
            let manifest = BackupManifest::from_json(&std::fs::read(
                dir.join(format!("{name}{MANIFEST_SUFFIX}")),
            )?)?;
            if manifest.mailbox_id != *mailbox_id || manifest.version != name {
                return Err(Error::BackupDamaged {
                    mailbox_id: mailbox_id.to_string(),
                    version: name,
                    reason: "the manifest names another mailbox or version".into(),
                });
            }
            manifests.push(manifest);
        }
        Ok(manifests)
    }

    /// The manifest of the requested version.
    pub fn select_version(
        &self,
        mailbox_id: &MailboxId,
        selector: &VersionSelector,
    ) -> Result<BackupManifest> {
        let versions = self.list_versions(mailbox_id)?;
        let found = match selector {
            VersionSelector::Latest => versions.into_iter().next_back(),
            VersionSelector::Named(name) => versions.into_iter().find(|m| &m.version == name),
        };
        found.ok_or_else(|| Error::NoSuchBackup {
            mailbox_id: mailbox_id.to_string(),
            wanted: match selector {
                VersionSelector::Latest => "latest".into(),
                VersionSelector::Named(name) => name.clone(),
            },
        })
    }

    /// Every mailbox id that has a directory at the target.
    pub fn list_mailboxes(&self) -> Result<Vec<MailboxId>> {
        let Self::Directory(root) = self;
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            if let Ok(id) = entry?.file_name().to_string_lossy().parse::<MailboxId>() {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Copy a version's snapshot to `destination` (synced), for a restore.
    pub(crate) fn fetch_version(
        &self,
        manifest: &BackupManifest,
        destination: &Path,
    ) -> Result<()> {
        let Self::Directory(root) = self;
        let source = root
            .join(manifest.mailbox_id.as_str())
            .join(format!("{}{SNAPSHOT_SUFFIX}", manifest.version));
        std::fs::copy(&source, destination)?;
        sync_file(destination)
    }

    /// Delete one version: the manifest first, so a half-deleted version is never listed.
    pub fn delete_version(&self, mailbox_id: &MailboxId, version: &str) -> Result<()> {
        if !is_version_name(version) {
            return Err(Error::InvalidArgument(format!(
                "{version:?} is not a backup version"
            )));
        }
        let Self::Directory(root) = self;
        let dir = root.join(mailbox_id.as_str());
        std::fs::remove_file(dir.join(format!("{version}{MANIFEST_SUFFIX}")))
            .or_else(ignore_missing)?;
        std::fs::remove_file(dir.join(format!("{version}{SNAPSHOT_SUFFIX}")))
            .or_else(ignore_missing)?;
        Ok(())
    }

    /// Delete every backup of a mailbox (account purge). Returns how many versions went.
    pub fn delete_all(&self, mailbox_id: &MailboxId) -> Result<usize> {
        let Self::Directory(root) = self;
        let dir = root.join(mailbox_id.as_str());
        let versions = self.list_versions(mailbox_id)?.len();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        sync_dir(root).or_else(|e| match e {
            Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => Err(other),
        })?;
        Ok(versions)
    }

    /// Remove leftovers of interrupted backups of this mailbox (temporary snapshots and
    /// snapshots whose manifest was never written). Call only while holding the mailbox lock.
    pub(crate) fn remove_incomplete(&self, mailbox_id: &MailboxId) -> Result<()> {
        let Self::Directory(root) = self;
        let dir = root.join(mailbox_id.as_str());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let orphan = name
                .strip_suffix(SNAPSHOT_SUFFIX)
                .is_some_and(|version| !dir.join(format!("{version}{MANIFEST_SUFFIX}")).exists());
            if name.starts_with(TEMPORARY_PREFIX) || name.ends_with(".tmp") || orphan {
                std::fs::remove_file(&path).or_else(ignore_missing)?;
            }
        }
        Ok(())
    }
}

/// Prefix of snapshot files still being written and checked.
pub(crate) const TEMPORARY_PREFIX: &str = ".snapshot-";

/// Version names: `YYYYMMDDTHHMMSS.mmmZ`, UTC, so names sort chronologically.
pub(crate) fn version_name(unix_millis: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::time::civil_from_unix(unix_millis.div_euclid(1000));
    let millis = unix_millis.rem_euclid(1000);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{millis:03}Z")
}

pub(crate) fn is_version_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_sort_and_parse() {
        let name = version_name(1_795_897_298_123);
        assert_eq!(name, "20261128T202138.123Z");
        assert!(is_version_name(&name));
        assert!(version_name(1_795_897_298_999) < version_name(1_795_897_299_000));
        for bad in ["", "latest", "20261128T202138Z", "../../etc/passwd.1234Z"] {
            assert!(!is_version_name(bad), "{bad}");
        }
        assert_eq!(
            "latest".parse::<VersionSelector>().unwrap(),
            VersionSelector::Latest
        );
        assert!("2026".parse::<VersionSelector>().is_err());
    }

    #[test]
    fn target_urls() {
        assert_eq!(
            BackupTarget::parse("file:///var/backups").unwrap(),
            BackupTarget::Directory("/var/backups".into())
        );
        assert!(BackupTarget::parse("file://relative").is_err());
        assert!(BackupTarget::parse("ftp://host/x").is_err());
    }
}

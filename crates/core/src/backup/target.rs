//! Where backups are kept, and the versions stored there.
//!
//! Layout (the same for every target; `<root>` is a directory or a bucket and key prefix):
//! `<root>/<mailbox_id>/<version>.sqlite` is the encrypted
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
    /// An S3-compatible bucket (AWS, R2, MinIO, Garage): `s3://BUCKET/PREFIX`.
    #[cfg(feature = "s3")]
    S3(super::s3::S3Target),
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

pub(crate) const SNAPSHOT_SUFFIX: &str = ".sqlite";
pub(crate) const MANIFEST_SUFFIX: &str = ".json";

impl BackupTarget {
    /// `file:///DIR` (or a plain absolute path), or `s3://BUCKET[/PREFIX]`. For S3 the
    /// endpoint, region and credentials come from the standard AWS environment variables and
    /// files (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...); with a custom
    /// endpoint, path-style addressing is used (what MinIO, Garage and moto expect).
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
        #[cfg(feature = "s3")]
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Self::S3(super::s3::S3Target::from_environment(
                bucket,
                prefix,
                super::s3::S3Options::default(),
            )?));
        }
        #[cfg(not(feature = "s3"))]
        if url.starts_with("s3://") {
            return Err(Error::UnsupportedBackupTarget(
                url.to_owned(),
                "file:///DIR targets only (built without the `s3` feature)",
            ));
        }
        Err(Error::InvalidArgument(format!(
            "{url:?}: unsupported backup target (use file:///DIR or s3://BUCKET/PREFIX)"
        )))
    }

    /// A local directory where a snapshot is written and checked before it is stored: for a
    /// directory target the version directory itself (so storing is a rename), for S3 the
    /// mailbox's own directory.
    pub(crate) fn staging_dir(
        &self,
        mailbox_id: &MailboxId,
        mailbox_dir: &Path,
    ) -> Result<PathBuf> {
        let dir = match self {
            Self::Directory(root) => root.join(mailbox_id.as_str()),
            #[cfg(feature = "s3")]
            Self::S3(_) => mailbox_dir.to_path_buf(),
        };
        let _ = mailbox_dir;
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Store a verified snapshot as `manifest.version`, then its manifest. The manifest
    /// appears only once the snapshot is durably stored, so a listed version is complete.
    pub(crate) fn store_version(&self, snapshot: &Path, manifest: &BackupManifest) -> Result<()> {
        let snapshot_name = format!("{}{SNAPSHOT_SUFFIX}", manifest.version);
        let manifest_name = format!("{}{MANIFEST_SUFFIX}", manifest.version);
        match self {
            Self::Directory(root) => {
                let dir = root.join(manifest.mailbox_id.as_str());
                sync_file(snapshot)?;
                std::fs::rename(snapshot, dir.join(snapshot_name))?;
                sync_dir(&dir)?;
                write_file_atomically(&dir.join(manifest_name), &manifest.to_json())
            }
            #[cfg(feature = "s3")]
            Self::S3(s3) => {
                s3.upload_file(
                    &manifest.mailbox_id,
                    &snapshot_name,
                    snapshot,
                    &manifest.sha256,
                )?;
                s3.put_bytes(&manifest.mailbox_id, &manifest_name, manifest.to_json())
            }
        }
    }

    /// Every complete version of a mailbox, oldest first.
    pub fn list_versions(&self, mailbox_id: &MailboxId) -> Result<Vec<BackupManifest>> {
        let names = self.list_names(mailbox_id)?;
        let mut versions: Vec<&str> = names
            .iter()
            .filter_map(|name| name.strip_suffix(MANIFEST_SUFFIX))
            .filter(|version| {
                is_version_name(version) && names.contains(&format!("{version}{SNAPSHOT_SUFFIX}"))
            })
            .collect();
        versions.sort();
        let mut manifests = Vec::with_capacity(versions.len());
        for version in versions {
            let bytes = self.read_object(mailbox_id, &format!("{version}{MANIFEST_SUFFIX}"))?;
            let manifest = BackupManifest::from_json(&bytes)?;
            if manifest.mailbox_id != *mailbox_id || manifest.version != version {
                return Err(Error::BackupDamaged {
                    mailbox_id: mailbox_id.to_string(),
                    version: version.to_owned(),
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

    /// Every mailbox id that has backups (or leftovers of them) at the target.
    pub fn list_mailboxes(&self) -> Result<Vec<MailboxId>> {
        let mut ids = match self {
            Self::Directory(root) => {
                let mut ids = Vec::new();
                for name in directory_entries(root)? {
                    if let Ok(id) = name.parse::<MailboxId>() {
                        ids.push(id);
                    }
                }
                ids
            }
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.list_mailbox_ids()?,
        };
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Copy a version's snapshot (still encrypted) to `destination`, synced.
    pub fn fetch_version(&self, manifest: &BackupManifest, destination: &Path) -> Result<()> {
        let name = format!("{}{SNAPSHOT_SUFFIX}", manifest.version);
        match self {
            Self::Directory(root) => {
                std::fs::copy(
                    root.join(manifest.mailbox_id.as_str()).join(name),
                    destination,
                )?;
            }
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.download_file(&manifest.mailbox_id, &name, destination)?,
        }
        sync_file(destination)
    }

    /// Delete one version: the manifest first, so a half-deleted version is never listed.
    pub fn delete_version(&self, mailbox_id: &MailboxId, version: &str) -> Result<()> {
        if !is_version_name(version) {
            return Err(Error::InvalidArgument(format!(
                "{version:?} is not a backup version"
            )));
        }
        self.delete_object(mailbox_id, &format!("{version}{MANIFEST_SUFFIX}"))?;
        self.delete_object(mailbox_id, &format!("{version}{SNAPSHOT_SUFFIX}"))
    }

    /// Delete every backup of a mailbox (account purge). Returns how many versions went.
    pub fn delete_all(&self, mailbox_id: &MailboxId) -> Result<usize> {
        let versions = self.list_versions(mailbox_id)?.len();
        // Manifests first: an interrupted purge leaves no listed version behind.
        let mut names = self.list_names(mailbox_id)?;
        names.sort_by_key(|name| !name.ends_with(MANIFEST_SUFFIX));
        for name in names {
            self.delete_object(mailbox_id, &name)?;
        }
        match self {
            Self::Directory(root) => match std::fs::remove_dir(root.join(mailbox_id.as_str())) {
                Ok(()) => sync_dir(root)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
            // Object stores have no directories to remove.
            #[cfg(feature = "s3")]
            Self::S3(_) => {}
        }
        Ok(versions)
    }

    /// Remove leftovers of interrupted backups of this mailbox (temporary snapshots and
    /// snapshots whose manifest was never written). Call only while holding the mailbox lock.
    pub(crate) fn remove_incomplete(&self, mailbox_id: &MailboxId) -> Result<()> {
        let names = self.list_names(mailbox_id)?;
        for name in &names {
            let orphan = name
                .strip_suffix(SNAPSHOT_SUFFIX)
                .is_some_and(|version| !names.contains(&format!("{version}{MANIFEST_SUFFIX}")));
            if name.starts_with(TEMPORARY_PREFIX) || name.ends_with(".tmp") || orphan {
                self.delete_object(mailbox_id, name)?;
            }
        }
        Ok(())
    }

    /// Where a version's encrypted snapshot is stored: a file path for a directory target,
    /// the object key (prefix included) in the bucket for S3.
    pub fn snapshot_location(&self, manifest: &BackupManifest) -> String {
        let name = format!("{}{SNAPSHOT_SUFFIX}", manifest.version);
        match self {
            Self::Directory(root) => root
                .join(manifest.mailbox_id.as_str())
                .join(name)
                .display()
                .to_string(),
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.key(&manifest.mailbox_id, &name),
        }
    }

    /// Names of the objects stored for a mailbox.
    fn list_names(&self, mailbox_id: &MailboxId) -> Result<Vec<String>> {
        match self {
            Self::Directory(root) => directory_entries(&root.join(mailbox_id.as_str())),
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.list_names(mailbox_id),
        }
    }

    fn read_object(&self, mailbox_id: &MailboxId, name: &str) -> Result<Vec<u8>> {
        match self {
            Self::Directory(root) => Ok(std::fs::read(root.join(mailbox_id.as_str()).join(name))?),
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.get_bytes(mailbox_id, name),
        }
    }

    fn delete_object(&self, mailbox_id: &MailboxId, name: &str) -> Result<()> {
        match self {
            Self::Directory(root) => {
                std::fs::remove_file(root.join(mailbox_id.as_str()).join(name))
                    .or_else(ignore_missing)?;
                Ok(())
            }
            #[cfg(feature = "s3")]
            Self::S3(s3) => s3.delete(mailbox_id, name),
        }
    }
}

/// File names in `dir`; none when it does not exist.
fn directory_entries(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
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

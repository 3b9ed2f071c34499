//! The outbound queue on disk: `<data>/outbound/<id>.eml` (the message as it will be sent,
//! DKIM signature included) and `<id>.json` (the envelope and each recipient's state).
//!
//! Both are written temp -> fsync -> rename, then the directory is fsynced, message first:
//! an envelope on disk means a complete item. A message without an envelope is what a crash
//! between the two renames leaves; it was never acknowledged and is removed at startup.
//!
//! Mail here is not sealed: it is on its way to another server in clear anyway, and the
//! worker must read it without anyone's password (see docs/design-notes.md).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One queued message's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// The reverse-path; empty for bounces (which are never bounced themselves).
    pub sender: String,
    /// Unix seconds when the message was accepted.
    pub created: i64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt.
    pub next_attempt_ms: i64,
    pub recipients: Vec<RecipientState>,
    /// The sender's ENVID, echoed in DSNs (RFC 3461 4.4).
    #[serde(default)]
    pub envelope_id: Option<String>,
    /// RET=FULL: a failure DSN returns the whole message, not only its headers.
    #[serde(default)]
    pub return_full: bool,
    /// The last STARTTLS failure that made an attempt go in the clear (opportunistic TLS),
    /// or that stopped it (required TLS).
    #[serde(default)]
    pub tls_failure: Option<String>,
}

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub address: String,
    pub status: RecipientStatus,
    /// The last reply or error seen for this recipient (for the DSN's Diagnostic-Code).
    pub last_reply: Option<String>,
    /// The remote host that gave `last_reply`.
    pub remote_host: Option<String>,
    /// DSN NOTIFY=SUCCESS was asked for (RFC 3461).
    #[serde(default)]
    pub notify_success: bool,
    /// A failure is reported to the sender: true unless NOTIFY was given without FAILURE
    /// (NOTIFY=NEVER, say).
    #[serde(default = "reported_by_default")]
    pub notify_failure: bool,
    /// The sender's ORCPT, echoed in DSNs (RFC 3461 4.2).
    #[serde(default)]
    pub original_recipient: Option<String>,
    /// A delay is reported to the sender (once): true unless NOTIFY was given without DELAY.
    #[serde(default = "reported_by_default")]
    pub notify_delay: bool,
    /// The delay report was sent.
    #[serde(default)]
    pub delay_reported: bool,
    /// The NOTIFY value the sender gave (`NEVER` or a list), passed on to a remote server
    /// that offers DSN; `None` when absent.
    #[serde(default)]
    pub notify: Option<String>,
}

fn reported_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Failed,
}

impl Envelope {
    pub fn pending(&self) -> impl Iterator<Item = &RecipientState> {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Pending)
    }
}

/// The queue directory.
#[derive(Debug, Clone)]
pub struct QueueDir {
    dir: PathBuf,
}

impl QueueDir {
    pub fn new(data_dir: &Path) -> Self {
        QueueDir {
            dir: data_dir.join("outbound"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Store a new item durably; returns only once both files and the directory entry are
    /// on disk.
    pub fn insert(&self, envelope: &Envelope, message: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_synced(&self.dir, &self.message_path(&envelope.id), message)?;
        write_synced(
            &self.dir,
            &self.envelope_path(&envelope.id),
            &serde_json::to_vec(envelope).expect("plain data"),
        )?;
        sync_dir(&self.dir)
    }

    /// Replace an item's envelope (after an attempt), durably. An item removed meanwhile (an
    /// operator bounced it) is not brought back.
    pub fn update(&self, envelope: &Envelope) -> std::io::Result<()> {
        if !self.envelope_path(&envelope.id).exists() {
            return Ok(());
        }
        write_synced(
            &self.dir,
            &self.envelope_path(&envelope.id),
            &serde_json::to_vec(envelope).expect("plain data"),
        )?;
        sync_dir(&self.dir)
    }

    /// Remove a finished item: envelope first, so a crash in between leaves an orphan
    /// message (cleaned up at startup) and never an envelope without its message.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        remove_if_present(&self.envelope_path(id))?;
        remove_if_present(&self.message_path(id))?;
        sync_dir(&self.dir)
    }

    /// One item's envelope as it is on disk now; `None` once the item is gone.
    pub fn read_envelope(&self, id: &str) -> std::io::Result<Option<Envelope>> {
        match std::fs::read(self.envelope_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn read_message(&self, id: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.message_path(id))
    }

    /// Every complete item's envelope. Unreadable envelopes are logged and skipped.
    pub fn envelopes(&self) -> std::io::Result<Vec<Envelope>> {
        let mut envelopes = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(envelopes),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Envelope>(&b).map_err(|e| e.to_string()))
            {
                Ok(envelope) => envelopes.push(envelope),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "unreadable outbound envelope")
                }
            }
        }
        Ok(envelopes)
    }

    /// Remove what a crash left: temp files and messages whose envelope never landed.
    pub fn clean_incomplete(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let orphan = path.extension().and_then(|e| e.to_str()) == Some("eml")
                && !path.with_extension("json").exists();
            if name.ends_with(".tmp") || orphan {
                remove_if_present(&path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

/// A fresh item id: time-ordered (listing order is roughly arrival order) and random.
pub fn new_id() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random source works");
    format!(
        "{:012x}{}",
        sealmail_core::time::now_unix(),
        hex::encode(random)
    )
}

fn write_synced(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("item");
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            sender: "a@example.test".into(),
            created: 1,
            attempts: 0,
            next_attempt_ms: 1,
            recipients: vec![RecipientState {
                address: "b@remote.test".into(),
                status: RecipientStatus::Pending,
                last_reply: None,
                remote_host: None,
                notify_success: false,
                notify_failure: true,
                original_recipient: None,
                notify_delay: true,
                delay_reported: false,
                notify: None,
            }],
            envelope_id: None,
            return_full: false,
            tls_failure: None,
        }
    }

    #[test]
    fn items_round_trip_and_crash_leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let queue = QueueDir::new(dir.path());
        assert!(queue.envelopes().unwrap().is_empty(), "no directory yet");
        let id = new_id();
        queue.insert(&envelope(&id), b"message").unwrap();
        assert_eq!(queue.envelopes().unwrap(), vec![envelope(&id)]);
        assert_eq!(queue.read_message(&id).unwrap(), b"message");
        assert_eq!(queue.read_envelope(&id).unwrap(), Some(envelope(&id)));
        // What a crash leaves: a temp file and a message without its envelope.
        std::fs::write(queue.path().join(".x.json.tmp"), b"partial").unwrap();
        std::fs::write(queue.path().join("orphan.eml"), b"never acknowledged").unwrap();
        assert_eq!(queue.clean_incomplete().unwrap(), 2);
        assert!(queue.read_message(&id).is_ok(), "complete items stay");
        let mut updated = envelope(&id);
        updated.attempts = 3;
        queue.update(&updated).unwrap();
        assert_eq!(queue.envelopes().unwrap()[0].attempts, 3);
        queue.remove(&id).unwrap();
        assert_eq!(queue.read_envelope(&id).unwrap(), None);
        assert!(queue.envelopes().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(queue.path()).unwrap().count(), 0);
    }
}

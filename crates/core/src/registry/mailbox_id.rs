//! Mailbox ids and where their files live.

use crate::error::{Error, Result};
use crate::key::random_bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Bytes of randomness in a mailbox id (96 bits, like a BSON ObjectId, but all random).
const MAILBOX_ID_BYTES: usize = 12;
/// Length of the hex form.
pub const MAILBOX_ID_LEN: usize = MAILBOX_ID_BYTES * 2;

/// The random name of a mailbox: 24 lowercase hex characters. File names use it instead of
/// the address, so a directory listing reveals nothing about who has an account.
///
/// Only ever holds a validated id, so it is always safe to put in a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxId(String);

impl MailboxId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(hex::encode(random_bytes::<MAILBOX_ID_BYTES>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MailboxId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let valid = text.len() == MAILBOX_ID_LEN
            && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "mailbox id must be {MAILBOX_ID_LEN} lowercase hex characters"
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

impl TryFrom<String> for MailboxId {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<MailboxId> for String {
    fn from(id: MailboxId) -> Self {
        id.0
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxId({})", self.0)
    }
}

/// `<data_dir>/mailboxes/<id[0..2]>/<id>.sqlite`: a two-character fan-out keeps directories
/// small with many mailboxes.
pub fn mailbox_path(data_dir: &Path, id: &MailboxId) -> PathBuf {
    data_dir
        .join("mailboxes")
        .join(&id.as_str()[..2])
        .join(format!("{}.sqlite", id.as_str()))
}

/// The mailbox file and the SQLite side files that may sit next to it.
pub(crate) fn mailbox_files(data_dir: &Path, id: &MailboxId) -> [PathBuf; 4] {
    let main = mailbox_path(data_dir, id);
    let with_suffix = |suffix: &str| {
        let mut name = main.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        with_suffix("-wal"),
        with_suffix("-shm"),
        with_suffix("-journal"),
        main,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_24_lowercase_hex_and_distinct() {
        let id = MailboxId::generate();
        assert_eq!(id.as_str().len(), MAILBOX_ID_LEN);
        assert!(id.as_str().parse::<MailboxId>().is_ok());
        assert_ne!(id, MailboxId::generate());
    }

    #[test]
    fn only_well_formed_ids_parse() {
        for bad in [
            "",
            "0123456789abcdef0123456",
            "0123456789abcdef012345678",
            "0123456789ABCDEF01234567",
            "../../../../etc/passwd/xx",
            "0123456789abcdef0123456g",
        ] {
            assert!(bad.parse::<MailboxId>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&MailboxId::generate()).unwrap();
        assert!(serde_json::from_str::<MailboxId>(&json).is_ok());
        assert!(serde_json::from_str::<MailboxId>("\"../x\"").is_err());
    }

    #[test]
    fn path_fans_out_on_the_first_two_characters() {
        let id: MailboxId = "ab23456789abcdef01234567".parse().unwrap();
        assert_eq!(
            mailbox_path(Path::new("/data"), &id),
            Path::new("/data/mailboxes/ab/ab23456789abcdef01234567.sqlite")
        );
        let files = mailbox_files(Path::new("/data"), &id);
        assert!(files[0].ends_with("ab23456789abcdef01234567.sqlite-wal"));
    }
}

//! Opening an account's mailbox: the steps every front end (CLI, IMAP, POP3, submission, the
//! Node binding) takes after a password arrives, kept in one place.

use crate::error::{Error, Result};
use crate::key::MailboxKey;
use crate::registry::{Address, Login, MailboxId, Registry};
use crate::seal::{DrainReport, ItemId, SealedQueue, SealingPublicKey};
use crate::store::{KeyUsed, Mailbox};
use zeroize::Zeroizing;

/// Folder that sealed (and directly delivered) mail lands in.
pub const DELIVERY_FOLDER: &str = "INBOX";

/// A mailbox opened for its owner, with who it belongs to.
#[derive(Debug)]
pub struct OpenMailbox {
    mailbox: Mailbox,
    address: Address,
    mailbox_id: MailboxId,
    /// The key the file opened with (redacted in `Debug`, wiped on drop): a background backup
    /// opens its own connection with it while the owner's session is open.
    key: MailboxKey,
}

/// Verify `password`, then open the mailbox with the unwrapped key and fold in the mail sealed
/// for it while its owner was away. If a key rotation was
/// interrupted after the file swap, the pending key opens it; the rotation is finished by
/// running it again, never silently here (finishing replaces the recovery code, which only the
/// owner may be shown).
pub fn open_mailbox(registry: &Registry, address: &str, password: &str) -> Result<OpenMailbox> {
    open_mailbox_after_login(registry, registry.login(address, password)?)
}

/// [`open_mailbox`] once the password check is done: `login` proves it.
pub fn open_mailbox_after_login(registry: &Registry, login: Login) -> Result<OpenMailbox> {
    let path = registry.mailbox_path(&login.mailbox_id);
    let (mut mailbox, used) =
        Mailbox::open_with_keys(&path, &login.key, login.pending_key.as_ref())?;
    mailbox.set_quota_limit(login.quota);
    let key = match (used, login.pending_key) {
        (KeyUsed::Pending, Some(pending)) => pending,
        _ => login.key,
    };
    let mut open = OpenMailbox {
        mailbox,
        address: login.address,
        mailbox_id: login.mailbox_id,
        key,
    };
    open.drain_sealed(registry)?;
    Ok(open)
}

/// Append the sealed items waiting for mailbox `mailbox_id` to INBOX of `mailbox` (that
/// mailbox's open file), oldest first, as [`OpenMailbox::drain_sealed`] does; for a mailbox
/// another session already holds open.
pub fn drain_sealed_into(
    registry: &Registry,
    mailbox_id: &MailboxId,
    mailbox: &mut Mailbox,
) -> Result<DrainReport> {
    let queue = SealedQueue::new(registry.data_dir());
    if queue.pending_count(mailbox_id.as_str())? == 0 {
        return Ok(DrainReport::default());
    }
    let secret = mailbox.sealing_secret_key()?;
    let report = queue.drain(mailbox_id.as_str(), &secret, |id, raw| {
        let arrived = (id.arrived_at_unix_nanos() / 1_000_000_000) as i64;
        mailbox
            .append_delivered(id.as_str(), DELIVERY_FOLDER, &raw, arrived)
            .map(|_| ())
    })?;
    registry.set_used_bytes(mailbox_id, mailbox.used_bytes()?)?;
    Ok(report)
}

/// Deliver mail to an address whose owner may be offline: seal it to the mailbox's public key
/// and queue it durably. When this returns, the message survives a crash (SMTP may answer 250),
/// and nothing on the server can read it until its owner logs in.
pub fn deliver_sealed(registry: &Registry, address: &str, raw: &[u8]) -> Result<ItemId> {
    let account = registry
        .lookup(address)?
        .ok_or_else(|| Error::NoSuchAccount(address.into()))?;
    deliver_sealed_to(registry, &account.mailbox_id, raw)
}

/// [`deliver_sealed`] for a mailbox already looked up (MX has, to route the message).
pub fn deliver_sealed_to(
    registry: &Registry,
    mailbox_id: &MailboxId,
    raw: &[u8],
) -> Result<ItemId> {
    let public_key = registry
        .sealing_public_key(mailbox_id)?
        .ok_or_else(|| Error::NoSuchAccount(format!("mailbox {mailbox_id} has no sealing key")))?;
    let public_key = SealingPublicKey::from_bytes(&public_key)?;
    SealedQueue::new(registry.data_dir()).enqueue(mailbox_id.as_str(), &public_key, raw)
}

impl OpenMailbox {
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    pub fn mailbox_mut(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn mailbox_id(&self) -> &MailboxId {
        &self.mailbox_id
    }

    /// The key the mailbox file is open with.
    pub fn key(&self) -> &MailboxKey {
        &self.key
    }

    /// Append the sealed items waiting for this mailbox to INBOX, oldest first. Each item's id is
    /// recorded in the same transaction as its message, so a crash before the queue file is
    /// removed never delivers it twice.
    pub fn drain_sealed(&mut self, registry: &Registry) -> Result<DrainReport> {
        drain_sealed_into(registry, &self.mailbox_id, &mut self.mailbox)
    }

    /// Write the mailbox's current disk usage to the registry (for quota reports and listing).
    pub fn record_usage(&self, registry: &Registry) -> Result<()> {
        registry.set_used_bytes(&self.mailbox_id, self.mailbox.used_bytes()?)
    }
}

/// Re-encrypt a mailbox under a fresh data key (after a suspected leak). Crash-safe: the new
/// key is recorded as pending first, the file is swapped, then the key is promoted. Returns the
/// account's new recovery code when it had one (the old one wrapped the old key).
pub fn rotate_mailbox_key(
    registry: &Registry,
    address: &str,
    password: &str,
) -> Result<Option<Zeroizing<String>>> {
    let login = registry.login(address, password)?;
    let path = registry.mailbox_path(&login.mailbox_id);
    let (mailbox, used) = Mailbox::open_with_keys(&path, &login.key, login.pending_key.as_ref())?;
    let new_key = match (used, login.pending_key) {
        // An earlier rotation got as far as the swap: only the promotion is left.
        (KeyUsed::Pending, Some(pending)) => {
            drop(mailbox);
            return registry.promote_pending_key(&login.mailbox_id, &pending);
        }
        // An earlier rotation stopped before the swap: its key never took effect.
        (KeyUsed::Current, Some(_)) => {
            registry.clear_pending_key(&login.mailbox_id)?;
            MailboxKey::generate()
        }
        _ => MailboxKey::generate(),
    };
    registry.set_pending_key(address, password, &new_key)?;
    drop(mailbox.rotate_key(&new_key, |_| Ok(()))?);
    registry.promote_pending_key(&login.mailbox_id, &new_key)
}

//! Sealed delivery and login through `account`: mail for an offline owner is unreadable on
//! disk until the owner logs in, and is then folded in exactly once.

use sealmail_core::account::{deliver_sealed, open_mailbox};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::{SearchKey, UidSet};

const MARKER: &str = "offlineMARKERq81z";

fn registry(dir: &std::path::Path) -> Registry {
    let options = RegistryOptions {
        create_if_missing: true,
        unknown_address_kdf: KdfParams::INSECURE_FOR_TESTS,
        ..Default::default()
    };
    Registry::open_with(dir, options).unwrap()
}

fn add(registry: &Registry, address: &str, password: &str) {
    let options = AccountOptions {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        ..Default::default()
    };
    registry
        .add_account(address, Some(password), &options)
        .unwrap();
}

fn grep_tree(dir: &std::path::Path, needle: &[u8]) -> usize {
    let mut hits = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits += grep_tree(&path, needle);
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits += 1;
        }
    }
    hits
}

#[test]
fn sealed_mail_is_unreadable_until_login_then_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    add(&registry, "owner@example.org", "owner password");
    let messages: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("Subject: {MARKER} {i}\r\n\r\nbody {MARKER} {i}\r\n").into_bytes())
        .collect();
    for raw in &messages {
        deliver_sealed(&registry, "Owner@Example.org", raw).unwrap();
    }
    assert_eq!(
        grep_tree(dir.path(), MARKER.as_bytes()),
        0,
        "sealed mail is not readable at rest"
    );
    let account = registry.lookup("owner@example.org").unwrap().unwrap();
    let queue = SealedQueue::new(dir.path());
    assert_eq!(queue.pending_count(account.mailbox_id.as_str()).unwrap(), 3);

    let opened = open_mailbox(&registry, "owner@example.org", "owner password").unwrap();
    assert_eq!(queue.pending_count(account.mailbox_id.as_str()).unwrap(), 0);
    let mailbox = opened.mailbox();
    for (i, raw) in messages.iter().enumerate() {
        assert_eq!(&mailbox.fetch_raw("INBOX", i as u32 + 1).unwrap(), raw);
    }
    assert_eq!(
        mailbox.search("INBOX", &SearchKey::Seen(false)).unwrap(),
        vec![1, 2, 3]
    );
    mailbox.checkpoint().unwrap();
    assert_eq!(
        grep_tree(dir.path(), MARKER.as_bytes()),
        0,
        "still nothing in plaintext"
    );
}

#[test]
fn unknown_recipients_and_wrong_passwords_deliver_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    add(&registry, "owner@example.org", "owner password");
    assert!(deliver_sealed(&registry, "nobody@example.org", b"Subject: x\r\n\r\ny").is_err());
    deliver_sealed(&registry, "owner@example.org", b"Subject: x\r\n\r\ny\r\n").unwrap();
    assert!(open_mailbox(&registry, "owner@example.org", "wrong").is_err());
    let account = registry.lookup("owner@example.org").unwrap().unwrap();
    assert_eq!(
        SealedQueue::new(dir.path())
            .pending_count(account.mailbox_id.as_str())
            .unwrap(),
        1,
        "a failed login drains nothing"
    );
}

#[test]
fn an_item_delivered_but_not_removed_before_a_crash_is_not_delivered_twice() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    add(&registry, "owner@example.org", "pw");
    let raw = b"Subject: once\r\n\r\nonly once\r\n";
    deliver_sealed(&registry, "owner@example.org", raw).unwrap();
    let account = registry.lookup("owner@example.org").unwrap().unwrap();
    let id = account.mailbox_id.as_str();
    let queue_dir = dir.path().join("queue").join(id);
    // Keep a copy of the queue item, drain, then put the copy back: exactly the state after a
    // crash between the append and the removal of the queue file.
    let item = std::fs::read_dir(&queue_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let saved = std::fs::read(&item).unwrap();
    drop(open_mailbox(&registry, "owner@example.org", "pw").unwrap());
    std::fs::write(&item, saved).unwrap();
    let opened = open_mailbox(&registry, "owner@example.org", "pw").unwrap();
    assert_eq!(
        opened
            .mailbox()
            .summaries("INBOX", &UidSet::all())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(SealedQueue::new(dir.path()).pending_count(id).unwrap(), 0);
}

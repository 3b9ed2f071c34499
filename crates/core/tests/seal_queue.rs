//! The sealed queue on a real file system: durability layout, ordering, crash-safe draining,
//! quarantine, and refusal of ids that could escape the queue directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sealmail_core::Error;
use sealmail_core::seal::{ItemId, SealedQueue, SealingKeyPair};

const MAILBOX: &str = "0123456789abcdef01234567";
const OTHER_MAILBOX: &str = "fedcba9876543210fedcba98";

fn queue_in(dir: &tempfile::TempDir) -> SealedQueue {
    SealedQueue::new(dir.path())
}

fn mailbox_dir(dir: &tempfile::TempDir, mailbox: &str) -> PathBuf {
    dir.path().join("queue").join(mailbox)
}

/// Every regular file under `root`, recursively.
fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// How many times `needle` occurs in file contents and names under `root`.
fn occurrences(root: &Path, needle: &[u8]) -> usize {
    all_files(root)
        .iter()
        .map(|path| {
            let contents = fs::read(path).unwrap();
            let in_contents = contents
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count();
            let name = path.to_string_lossy();
            let in_name = name.matches(std::str::from_utf8(needle).unwrap()).count();
            in_contents + in_name
        })
        .sum()
}

/// The store side of a drain, as the lead's mailbox implements it: deliveries keyed by item id,
/// so an item offered twice is stored once.
#[derive(Default)]
struct DedupingStore {
    messages: BTreeMap<ItemId, Vec<u8>>,
    deliveries_offered: usize,
}

impl DedupingStore {
    fn deliver(&mut self, id: &ItemId, message: &[u8]) {
        self.deliveries_offered += 1;
        self.messages
            .entry(id.clone())
            .or_insert_with(|| message.to_vec());
    }
}

#[test]
fn marker_never_appears_under_the_queue_directory() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let marker = b"MARKER-7f3a9c-plaintext-must-not-leak";

    // The search must be able to find a plaintext marker, or a pass would mean nothing.
    let control = tempfile::tempdir().unwrap();
    fs::write(control.path().join("plain.eml"), marker).unwrap();
    assert_eq!(occurrences(control.path(), marker), 1);

    let mut bodies = Vec::new();
    for size in [0usize, 4 * 1024, 50 * 1024] {
        let mut body =
            format!("Subject: {}\r\n\r\n", std::str::from_utf8(marker).unwrap()).into_bytes();
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend_from_slice(marker);
        queue.enqueue(MAILBOX, &pair.public, &body).unwrap();
        bodies.push(body);
    }
    assert_eq!(all_files(&dir.path().join("queue")).len(), 3);
    assert_eq!(occurrences(&dir.path().join("queue"), marker), 0);

    // And the sealed items still hold the messages.
    let mut delivered = Vec::new();
    queue
        .drain(MAILBOX, &pair.secret, |_, message| {
            delivered.push(message.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, bodies);
}

#[test]
fn enqueue_leaves_exactly_one_final_file_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let id = queue.enqueue(MAILBOX, &pair.public, b"hello").unwrap();

    let files = all_files(&mailbox_dir(&dir, MAILBOX));
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        format!("{id}.sealed")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        queue.read(MAILBOX, &id).unwrap(),
        fs::read(&files[0]).unwrap()
    );
    assert_eq!(
        queue
            .open_item(MAILBOX, &pair.secret, &id)
            .unwrap()
            .as_slice(),
        b"hello"
    );
}

#[test]
fn drain_delivers_in_arrival_order_then_empties_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut enqueued = Vec::new();
    for n in 0..20 {
        let body = format!("message number {n}").into_bytes();
        enqueued.push((queue.enqueue(MAILBOX, &pair.public, &body).unwrap(), body));
    }
    let after = SystemTime::now() + Duration::from_secs(1);
    // Another mailbox's queue is separate.
    queue
        .enqueue(OTHER_MAILBOX, &pair.public, b"elsewhere")
        .unwrap();

    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 20);
    let listed = queue.list(MAILBOX).unwrap();
    let ids: Vec<ItemId> = enqueued.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, ids);

    let mut delivered = Vec::new();
    let report = queue
        .drain(MAILBOX, &pair.secret, |id, message| {
            assert!(id.arrived_at() > before && id.arrived_at() < after);
            delivered.push((id.clone(), message.to_vec()));
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, enqueued);
    assert_eq!(report.delivered, ids);
    assert!(report.quarantined.is_empty());
    assert!(report.sealed_to_other_key.is_empty());
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 0);
    assert_eq!(queue.pending_count(OTHER_MAILBOX).unwrap(), 1);

    // A second drain finds nothing.
    let report = queue
        .drain(MAILBOX, &pair.secret, |_, _| {
            panic!("nothing should be left")
        })
        .unwrap();
    assert!(report.delivered.is_empty());
}

#[test]
fn crash_between_deliver_and_remove_reoffers_the_same_item_id() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let first = queue.enqueue(MAILBOX, &pair.public, b"first").unwrap();
    let second = queue.enqueue(MAILBOX, &pair.public, b"second").unwrap();

    let mut store = DedupingStore::default();
    // The store commits the first item, then the process dies before the queue removes it.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        queue.drain(MAILBOX, &pair.secret, |id, message| {
            store.deliver(id, &message);
            panic!("simulated crash after the store committed {id}");
        })
    }));
    assert!(crashed.is_err());
    assert_eq!(
        queue.list(MAILBOX).unwrap(),
        vec![first.clone(), second.clone()]
    );

    // After restart the same item comes back under the same id; the store's id check keeps one.
    let mut offered = Vec::new();
    let report = queue
        .drain(MAILBOX, &pair.secret, |id, message| {
            offered.push(id.clone());
            store.deliver(id, &message);
            Ok(())
        })
        .unwrap();
    assert_eq!(offered, vec![first.clone(), second.clone()]);
    assert_eq!(report.delivered, vec![first.clone(), second.clone()]);
    assert_eq!(store.deliveries_offered, 3);
    assert_eq!(store.messages.len(), 2);
    assert_eq!(store.messages[&first], b"first");
    assert_eq!(store.messages[&second], b"second");
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 0);
}

#[test]
fn deliver_error_stops_the_drain_and_keeps_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let ids: Vec<ItemId> = (0..3)
        .map(|n| {
            queue
                .enqueue(MAILBOX, &pair.public, format!("m{n}").as_bytes())
                .unwrap()
        })
        .collect();

    let mut calls = 0;
    let result = queue.drain(MAILBOX, &pair.secret, |id, _| {
        calls += 1;
        if id == &ids[1] {
            Err(Error::QuotaExceeded {
                used: 10,
                limit: 10,
                needed: 2,
            })
        } else {
            Ok(())
        }
    });
    assert!(matches!(result, Err(Error::QuotaExceeded { .. })));
    assert_eq!(calls, 2, "the drain must stop at the failing item");
    assert_eq!(queue.list(MAILBOX).unwrap(), ids[1..].to_vec());

    let report = queue.drain(MAILBOX, &pair.secret, |_, _| Ok(())).unwrap();
    assert_eq!(report.delivered, ids[1..].to_vec());
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 0);
}

#[test]
fn corrupt_item_is_quarantined_and_does_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let ids: Vec<ItemId> = (0..3)
        .map(|n| {
            queue
                .enqueue(MAILBOX, &pair.public, format!("m{n}").as_bytes())
                .unwrap()
        })
        .collect();
    let damaged_path = mailbox_dir(&dir, MAILBOX).join(format!("{}.sealed", ids[1]));
    let mut bytes = fs::read(&damaged_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&damaged_path, &bytes).unwrap();

    let mut delivered = Vec::new();
    let report = queue
        .drain(MAILBOX, &pair.secret, |_, message| {
            delivered.push(message.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, vec![b"m0".to_vec(), b"m2".to_vec()]);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].id, ids[1]);
    assert!(!report.quarantined[0].reason.is_empty());
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 0);
    assert_eq!(
        queue.list_quarantined(MAILBOX).unwrap(),
        vec![ids[1].clone()]
    );
    let kept = mailbox_dir(&dir, MAILBOX)
        .join("quarantine")
        .join(format!("{}.sealed", ids[1]));
    assert_eq!(
        fs::read(kept).unwrap(),
        bytes,
        "quarantine keeps the evidence"
    );
}

#[test]
fn item_renamed_to_another_id_is_not_delivered() {
    // A replay under a fresh id would slip past the store's de-duplication; the seal binds the
    // id, so the renamed copy fails to open.
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let original = queue.enqueue(MAILBOX, &pair.public, b"once").unwrap();
    let later = queue.enqueue(MAILBOX, &pair.public, b"later").unwrap();
    let forged = ItemId::parse(&format!("{}-0000000000000000", &later.as_str()[..20])).unwrap();
    let dir_path = mailbox_dir(&dir, MAILBOX);
    fs::copy(
        dir_path.join(format!("{original}.sealed")),
        dir_path.join(format!("{forged}.sealed")),
    )
    .unwrap();

    let mut delivered = Vec::new();
    let report = queue
        .drain(MAILBOX, &pair.secret, |id, message| {
            delivered.push((id.clone(), message.to_vec()));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        delivered,
        vec![(original, b"once".to_vec()), (later, b"later".to_vec())]
    );
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].id, forged);
}

#[test]
fn drain_with_wrong_key_leaves_items_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let owner = SealingKeyPair::generate();
    let stranger = SealingKeyPair::generate();
    let id = queue.enqueue(MAILBOX, &owner.public, b"private").unwrap();

    assert!(matches!(
        queue.open_item(MAILBOX, &stranger.secret, &id),
        Err(Error::SealedItemCorrupt(_))
    ));
    let report = queue
        .drain(MAILBOX, &stranger.secret, |_, _| {
            panic!("the stranger must not receive anything")
        })
        .unwrap();
    assert_eq!(report.sealed_to_other_key, vec![id.clone()]);
    assert!(report.quarantined.is_empty());
    assert_eq!(queue.list(MAILBOX).unwrap(), vec![id.clone()]);

    let report = queue.drain(MAILBOX, &owner.secret, |_, _| Ok(())).unwrap();
    assert_eq!(report.delivered, vec![id]);
}

#[test]
fn truncated_item_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let id = queue.enqueue(MAILBOX, &pair.public, b"to be cut").unwrap();
    let path = mailbox_dir(&dir, MAILBOX).join(format!("{id}.sealed"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();

    let report = queue
        .drain(MAILBOX, &pair.secret, |_, _| panic!("must not deliver"))
        .unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].id, id);
}

#[test]
fn temp_files_are_ignored_and_stale_ones_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let id = queue.enqueue(MAILBOX, &pair.public, b"real").unwrap();
    let dir_path = mailbox_dir(&dir, MAILBOX);

    let fresh_temp = dir_path.join(".tmp-00000000000000000001-aaaaaaaaaaaaaaaa");
    let stale_temp = dir_path.join(".tmp-00000000000000000002-bbbbbbbbbbbbbbbb");
    fs::write(&fresh_temp, b"half written").unwrap();
    fs::write(&stale_temp, b"left by a crash").unwrap();
    fs::File::options()
        .write(true)
        .open(&stale_temp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    // Files that merely look similar are not items either.
    fs::write(dir_path.join("notes.txt"), b"x").unwrap();
    fs::write(
        dir_path.join("00000000000000000003-cccccccccccccccc"),
        b"no suffix",
    )
    .unwrap();

    assert_eq!(queue.list(MAILBOX).unwrap(), vec![id.clone()]);
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 1);

    let report = queue.drain(MAILBOX, &pair.secret, |_, _| Ok(())).unwrap();
    assert_eq!(report.delivered, vec![id]);
    assert!(report.quarantined.is_empty());
    assert!(
        fresh_temp.exists(),
        "a write in progress must be left alone"
    );
    assert!(!stale_temp.exists(), "a crashed writer's temp file must go");

    fs::File::options()
        .write(true)
        .open(&fresh_temp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(61 + 5))
        .unwrap();
    assert_eq!(queue.clean_stale_temp_files(MAILBOX).unwrap(), 1);
    assert!(!fresh_temp.exists());
}

#[test]
fn bad_mailbox_ids_are_rejected_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let id = queue.enqueue(MAILBOX, &pair.public, b"m").unwrap();
    let bad_ids = [
        "",
        "..",
        "../../../../etc/passwd",
        "0123456789ABCDEF01234567",
        "0123456789abcdef0123456",
        "0123456789abcdef012345678",
        "0123456789abcdef0123456/",
        "0123456789abcdef0123456g",
        "0123456789abcdef0123456\0",
    ];
    for bad in bad_ids {
        let is_invalid =
            |result: Result<(), Error>| matches!(result, Err(Error::InvalidMailboxId(_)));
        assert!(
            is_invalid(queue.enqueue(bad, &pair.public, b"m").map(drop)),
            "{bad:?}"
        );
        assert!(is_invalid(queue.list(bad).map(drop)), "{bad:?}");
        assert!(is_invalid(queue.pending_count(bad).map(drop)), "{bad:?}");
        assert!(is_invalid(queue.read(bad, &id).map(drop)), "{bad:?}");
        assert!(is_invalid(queue.remove(bad, &id)), "{bad:?}");
        assert!(is_invalid(queue.purge(bad)), "{bad:?}");
        assert!(
            is_invalid(queue.drain(bad, &pair.secret, |_, _| Ok(())).map(drop)),
            "{bad:?}"
        );
    }
    // Nothing was created outside the one valid mailbox directory.
    let entries: Vec<_> = fs::read_dir(dir.path().join("queue"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from(MAILBOX)]);
}

#[test]
fn bad_item_ids_are_rejected() {
    let valid = "01764361578123456789-0123456789abcdef";
    assert_eq!(ItemId::parse(valid).unwrap().as_str(), valid);
    let bad_ids = [
        "",
        "../01764361578123456789-0123456789abc",
        "01764361578123456789-0123456789abcde/",
        "01764361578123456789-0123456789ABCDEF",
        "01764361578123456789_0123456789abcdef",
        "0176436157812345678a-0123456789abcdef",
        "99999999999999999999-0123456789abcdef",
        "01764361578123456789-0123456789abcdef0",
        "1764361578123456789-0123456789abcdef",
        "+1764361578123456789-0123456789abcdef",
    ];
    for bad in bad_ids {
        assert!(
            matches!(ItemId::parse(bad), Err(Error::InvalidItemId(_))),
            "{bad:?} was accepted"
        );
        assert!(bad.parse::<ItemId>().is_err());
    }
}

#[test]
fn purge_removes_everything_for_one_mailbox_only() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    queue.enqueue(MAILBOX, &pair.public, b"a").unwrap();
    let id = queue.enqueue(MAILBOX, &pair.public, b"b").unwrap();
    queue.enqueue(OTHER_MAILBOX, &pair.public, b"c").unwrap();
    // Put one in quarantine too.
    let path = mailbox_dir(&dir, MAILBOX).join(format!("{id}.sealed"));
    fs::write(&path, b"damaged").unwrap();
    queue.drain(MAILBOX, &pair.secret, |_, _| Ok(())).unwrap();
    assert_eq!(queue.list_quarantined(MAILBOX).unwrap().len(), 1);

    queue.purge(MAILBOX).unwrap();
    assert!(!mailbox_dir(&dir, MAILBOX).exists());
    assert_eq!(queue.pending_count(MAILBOX).unwrap(), 0);
    assert_eq!(queue.pending_count(OTHER_MAILBOX).unwrap(), 1);
    // Purging an empty or absent queue is fine.
    queue.purge(MAILBOX).unwrap();
}

#[test]
fn concurrent_enqueues_get_distinct_ordered_ids() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let mut all_ids: Vec<ItemId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                let queue = &queue;
                let public = &pair.public;
                scope.spawn(move || {
                    (0..10)
                        .map(|n| {
                            queue
                                .enqueue(MAILBOX, public, format!("t{thread} m{n}").as_bytes())
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    all_ids.sort();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 40);
    assert_eq!(queue.list(MAILBOX).unwrap(), all_ids);
    let report = queue.drain(MAILBOX, &pair.secret, |_, _| Ok(())).unwrap();
    assert_eq!(report.delivered.len(), 40);
}

#[test]
fn summaries_count_sizes_and_ages_without_opening_anything() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    assert!(queue.mailbox_ids().unwrap().is_empty(), "no queue root yet");
    let pair = SealingKeyPair::generate();
    let first = queue.enqueue(MAILBOX, &pair.public, b"first").unwrap();
    queue
        .enqueue(MAILBOX, &pair.public, b"second message")
        .unwrap();
    queue
        .enqueue(OTHER_MAILBOX, &pair.public, b"other")
        .unwrap();
    // Not a mailbox directory: ignored.
    fs::create_dir_all(dir.path().join("queue").join("not-a-mailbox")).unwrap();
    assert_eq!(
        queue.mailbox_ids().unwrap(),
        vec![MAILBOX.to_string(), OTHER_MAILBOX.to_string()]
    );
    let summary = queue.summary(MAILBOX).unwrap();
    assert_eq!(summary.pending, 2);
    assert_eq!(summary.oldest, Some(first));
    assert_eq!(summary.quarantined, 0);
    let on_disk: u64 = queue
        .list(MAILBOX)
        .unwrap()
        .iter()
        .map(|id| queue.read(MAILBOX, id).unwrap().len() as u64)
        .sum();
    assert_eq!(summary.bytes, on_disk);
    assert!(summary.bytes > b"firstsecond message".len() as u64);
    let drained = queue.drain(MAILBOX, &pair.secret, |_, _| Ok(())).unwrap();
    assert_eq!(drained.delivered.len(), 2);
    let empty = queue.summary(MAILBOX).unwrap();
    assert_eq!((empty.pending, empty.bytes, empty.oldest), (0, 0, None));
}

/// Concurrent enqueues to one mailbox share directory fsyncs (group commit); each still gets
/// its own durable item, none lost or doubled, and a second mailbox's queue is unaffected.
#[test]
fn concurrent_enqueues_to_one_mailbox_each_land_once() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let pair = SealingKeyPair::generate();
    let mut enqueued: Vec<(ItemId, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (queue, pair) = (&queue, &pair);
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|n| {
                            let mailbox = if n % 5 == 0 { OTHER_MAILBOX } else { MAILBOX };
                            let body = format!("thread {thread} message {n}").into_bytes();
                            let id = queue.enqueue(mailbox, &pair.public, &body).unwrap();
                            (id, body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    enqueued.sort();
    let mut drained = Vec::new();
    for mailbox in [MAILBOX, OTHER_MAILBOX] {
        let report = queue
            .drain(mailbox, &pair.secret, |id, message| {
                drained.push((id.clone(), message.to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(report.quarantined.is_empty());
    }
    drained.sort();
    assert_eq!(drained.len(), THREADS * PER_THREAD);
    assert_eq!(
        drained, enqueued,
        "every item exactly once, with its own text"
    );
}

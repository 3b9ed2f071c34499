//! The race between an MX delivery and a login (issue #6): MX finds no open session, a login
//! opens and drains the mailbox, and only then is the sealed item written. The item must reach
//! the open mailbox at once, exactly once, whichever side looks last.
//!
//! The interleavings are forced with an opener that stops inside `open` (after the login's
//! own drain, before the mailbox is registered as open) until the test lets it go: no sleeps.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealmail_core::account;
use sealmail_core::mailstore::{
    ChangeEvent, DELIVERY_ORIGIN, LocalMailStore, MailSession, MailStore, MailboxOpener,
    OpenedMailbox,
};
use sealmail_core::registry::{
    AccountOptions, KdfParams, Login, MailboxId, Registry, RegistryOptions,
};
use sealmail_core::seal::SealedQueue;
use sealmail_core::store::{AppendOptions, Mailbox};

const ADDRESS: &str = "owner@example.org";
const PASSWORD: &str = "pw-long-enough";
/// Bound on every wait, so a broken ordering fails with a message instead of hanging.
const WAIT: Duration = Duration::from_secs(30);

fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

/// The registry's opener, with a gate in `open`: once the mailbox file is open and its queue
/// drained, it reports on `opened` and waits for `release` before handing the file over.
struct GatedOpener {
    registry: Registry,
    gate: Mutex<Option<Gate>>,
}

struct Gate {
    opened: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl MailboxOpener for GatedOpener {
    fn authenticate(&self, address: &str, password: &str) -> sealmail_core::Result<Login> {
        MailboxOpener::authenticate(&self.registry, address, password)
    }

    fn open(&self, login: Login) -> sealmail_core::Result<OpenedMailbox> {
        let opened = MailboxOpener::open(&self.registry, login)?;
        if let Some(gate) = self.gate.lock().unwrap().take() {
            gate.opened.send(()).unwrap();
            gate.release
                .recv_timeout(WAIT)
                .expect("the test releases the gated login");
        }
        Ok(opened)
    }

    fn drain_sealed(
        &self,
        mailbox_id: &MailboxId,
        mailbox: &mut Mailbox,
    ) -> sealmail_core::Result<usize> {
        MailboxOpener::drain_sealed(&self.registry, mailbox_id, mailbox)
    }

    fn mailbox_path(&self, mailbox_id: &MailboxId) -> Option<PathBuf> {
        MailboxOpener::mailbox_path(&self.registry, mailbox_id)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<LocalMailStore<GatedOpener>>,
    mailbox_id: MailboxId,
    queue: SealedQueue,
    /// A second handle on the registry file: what the MX side holds.
    mx_registry: Registry,
    /// Signalled when the gated login has opened and drained the file.
    opened: mpsc::Receiver<()>,
    /// Lets the gated login go on.
    release: mpsc::Sender<()>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open_with(
        dir.path(),
        RegistryOptions {
            create_if_missing: true,
            unknown_address_kdf: cheap_kdf(),
            ..RegistryOptions::default()
        },
    )
    .unwrap();
    registry
        .add_account(
            ADDRESS,
            Some(PASSWORD),
            &AccountOptions {
                quota: None,
                with_recovery_code: false,
                kdf: cheap_kdf(),
            },
        )
        .unwrap();
    let mailbox_id = registry.lookup(ADDRESS).unwrap().unwrap().mailbox_id;
    let queue = SealedQueue::new(dir.path());
    let mx_registry = Registry::open_with(
        dir.path(),
        RegistryOptions {
            unknown_address_kdf: cheap_kdf(),
            ..RegistryOptions::default()
        },
    )
    .unwrap();
    let (opened_tx, opened) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let opener = GatedOpener {
        registry,
        gate: Mutex::new(Some(Gate {
            opened: opened_tx,
            release: release_rx,
        })),
    };
    Fixture {
        _dir: dir,
        store: Arc::new(LocalMailStore::new(opener).with_linger(Duration::ZERO)),
        mailbox_id,
        queue,
        mx_registry,
        opened,
        release,
    }
}

impl Fixture {
    /// Start a login that stops at the gate; returns once it has opened and drained the file.
    async fn login_up_to_the_gate(
        &self,
    ) -> tokio::task::JoinHandle<sealmail_core::Result<sealmail_core::mailstore::LocalSession>>
    {
        let store = Arc::clone(&self.store);
        let login = tokio::spawn(async move { store.login(ADDRESS, PASSWORD).await });
        let opened = &self.opened;
        tokio::task::block_in_place(|| opened.recv_timeout(WAIT))
            .expect("the login reaches the gate");
        login
    }

    /// What MX does for an offline recipient: seal the message into the queue.
    fn seal(&self, marker: &str) {
        let raw = format!("Subject: {marker}\r\n\r\nbody {marker}\r\n");
        account::deliver_sealed(&self.mx_registry, ADDRESS, raw.as_bytes()).unwrap();
    }
}

async fn inbox_subjects(session: &impl MailSession) -> Vec<String> {
    let states = session.message_states("INBOX").await.unwrap();
    let uids = sealmail_core::store::UidSet::from_uids(states.iter().map(|s| s.uid));
    let raw = session.fetch_raw("INBOX", uids).await.unwrap();
    raw.iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.bytes);
            text.lines().next().unwrap_or_default().to_string()
        })
        .collect()
}

/// MX looked (closed), the login opened and drained, MX sealed and looked for an open mailbox
/// before the login registered it: the login's own second drain must pick the item up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_sealed_while_the_login_opens_is_drained_by_the_login() {
    let f = fixture();
    let raw = b"Subject: probe\r\n\r\nx\r\n".to_vec();
    let offline = f
        .store
        .deliver_if_open(&f.mailbox_id, raw, AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(offline, None, "no session yet: MX seals");
    let login = f.login_up_to_the_gate().await;
    f.seal("late");
    assert_eq!(
        f.store.drain_sealed_if_open(&f.mailbox_id).await.unwrap(),
        None,
        "the login has not registered the mailbox yet"
    );
    assert_eq!(f.queue.pending_count(f.mailbox_id.as_str()).unwrap(), 1);
    f.release.send(()).unwrap();
    let session = login.await.unwrap().unwrap();
    assert_eq!(inbox_subjects(&session).await, vec!["Subject: late"]);
    assert_eq!(
        f.queue.pending_count(f.mailbox_id.as_str()).unwrap(),
        0,
        "nothing waits for the next login"
    );
    // Another look from MX finds nothing left, and delivers nothing twice.
    assert_eq!(
        f.store.drain_sealed_if_open(&f.mailbox_id).await.unwrap(),
        Some(0)
    );
    assert_eq!(inbox_subjects(&session).await.len(), 1);
}

/// MX looked (closed), the login finished opening, then MX sealed: MX's look after the write
/// finds the open mailbox and folds the item in, announcing it to the sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_sealed_after_the_login_is_folded_in_by_the_deliverer() {
    let f = fixture();
    let login = f.login_up_to_the_gate().await;
    f.release.send(()).unwrap();
    let session = login.await.unwrap().unwrap();
    let mut changes = session.subscribe();
    f.seal("after login");
    assert_eq!(f.queue.pending_count(f.mailbox_id.as_str()).unwrap(), 1);
    assert_eq!(
        f.store.drain_sealed_if_open(&f.mailbox_id).await.unwrap(),
        Some(1)
    );
    let change = tokio::time::timeout(WAIT, changes.recv())
        .await
        .expect("the fold-in is announced")
        .unwrap();
    assert_eq!(change.origin, DELIVERY_ORIGIN);
    assert_eq!(change.event, ChangeEvent::MessagesAdded);
    assert_eq!(change.folder, "INBOX");
    assert_eq!(inbox_subjects(&session).await, vec!["Subject: after login"]);
    assert_eq!(f.queue.pending_count(f.mailbox_id.as_str()).unwrap(), 0);
}

/// Both sides see the item: the login's second drain takes it and MX's look finds the mailbox
/// open too. The item ids recorded in the mailbox keep it to one copy, even when the queue
/// file survives the first drain (a crash before its removal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_drains_see_the_item_and_it_is_delivered_once() {
    let f = fixture();
    let login = f.login_up_to_the_gate().await;
    f.seal("twice seen");
    let id = f.queue.list(f.mailbox_id.as_str()).unwrap().remove(0);
    let sealed = f.queue.read(f.mailbox_id.as_str(), &id).unwrap();
    f.release.send(()).unwrap();
    let session = login.await.unwrap().unwrap();
    // Put the drained file back, as a crash between append and removal would leave it.
    let item = f
        .queue
        .root()
        .join(f.mailbox_id.as_str())
        .join(format!("{id}.sealed"));
    std::fs::write(&item, &sealed).unwrap();
    assert_eq!(
        f.store.drain_sealed_if_open(&f.mailbox_id).await.unwrap(),
        Some(1),
        "the leftover file is taken from the queue"
    );
    assert_eq!(
        inbox_subjects(&session).await,
        vec!["Subject: twice seen"],
        "an item already recorded is not delivered again"
    );
    assert_eq!(f.queue.pending_count(f.mailbox_id.as_str()).unwrap(), 0);
}

/// Without a session nothing is drained by MX: the item waits sealed for the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_the_item_stays_sealed() {
    let f = fixture();
    f.seal("offline");
    assert_eq!(
        f.store.drain_sealed_if_open(&f.mailbox_id).await.unwrap(),
        None
    );
    assert_eq!(f.queue.pending_count(f.mailbox_id.as_str()).unwrap(), 1);
    let login = f.login_up_to_the_gate().await;
    f.release.send(()).unwrap();
    let session = login.await.unwrap().unwrap();
    assert_eq!(inbox_subjects(&session).await, vec!["Subject: offline"]);
}

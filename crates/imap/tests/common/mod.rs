//! Test harness: a real server on 127.0.0.1 over a real encrypted mailbox, with a one-account
//! authenticator standing in for the registry.

use sealmail_core::mailstore::{Authenticator, LocalMailStore, UnlockedMailbox};
use sealmail_core::store::Mailbox;
use sealmail_core::{Error, MailboxKey};
use sealmail_imap::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub const ADDRESS: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse";

pub struct OneAccount {
    path: PathBuf,
    key: [u8; 32],
}

impl Authenticator for OneAccount {
    fn unlock(&self, address: &str, password: &str) -> sealmail_core::Result<UnlockedMailbox> {
        let ok: bool = password.as_bytes().ct_eq(PASSWORD.as_bytes()).into();
        if !address.eq_ignore_ascii_case(ADDRESS) || !ok {
            return Err(Error::WrongPassword);
        }
        Ok(UnlockedMailbox {
            path: self.path.clone(),
            key: MailboxKey::from_bytes(self.key),
            quota: Some(100 << 20),
        })
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let key = sealmail_core::key::random_bytes::<32>();
        let path = dir.path().join("alice.sqlite");
        Mailbox::create(&path, &MailboxKey::from_bytes(key)).unwrap();
        let store = Arc::new(LocalMailStore::new(OneAccount { path, key }));
        let mut config = ServerConfig::default();
        config.session.failed_login_delay = Duration::from_millis(10);
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, store, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stop the server and wait until every connection has finished.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

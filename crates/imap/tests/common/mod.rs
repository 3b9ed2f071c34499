//! Test harness: a real server on 127.0.0.1 over a real registry and encrypted mailbox.

use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_imap::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const ADDRESS: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse";

/// Argon2id parameters small enough for tests (the real cost is measured in benchmarks).
fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
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
                    quota: Some(100 << 20),
                    with_recovery_code: false,
                    kdf: cheap_kdf(),
                },
            )
            .unwrap();
        let store = Arc::new(LocalMailStore::new(registry));
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

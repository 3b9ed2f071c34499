//! The metrics hooks: every answered command, every password check and every connection is
//! reported to the binary's [`Metrics`], with `+OK`/`-ERR` told apart.

use crate::common::{ADDRESS, PASSWORD, RawClient, TestServer};
use sealmail_pop3::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
struct Recorded {
    /// (command, ok) -> count.
    commands: BTreeMap<(&'static str, bool), u32>,
    logins: Vec<bool>,
    connections_opened: u32,
    connections_closed: u32,
}

#[derive(Debug, Default)]
struct RecordingMetrics(Mutex<Recorded>);

impl Metrics for RecordingMetrics {
    fn command(&self, name: &'static str, ok: bool, _elapsed: Duration) {
        *self
            .0
            .lock()
            .unwrap()
            .commands
            .entry((name, ok))
            .or_default() += 1;
    }
    fn login(&self, succeeded: bool) {
        self.0.lock().unwrap().logins.push(succeeded);
    }
    fn connection(&self, opened: bool) {
        let mut recorded = self.0.lock().unwrap();
        if opened {
            recorded.connections_opened += 1;
        } else {
            recorded.connections_closed += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_logins_and_connections_reach_the_metrics_hooks() {
    let metrics = Arc::new(RecordingMetrics::default());
    let hooks: Arc<dyn Metrics> = metrics.clone();
    let server = TestServer::start(move |config| config.session.metrics = hooks).await;
    server.seed(&[b"Subject: one\r\n\r\nbody\r\n"]).await;

    let (mut client, _) = RawClient::connect(server.addr).await;
    assert!(
        client
            .command(&format!("USER {ADDRESS}"))
            .await
            .starts_with("+OK")
    );
    assert!(client.command("PASS wrong").await.starts_with("-ERR"));
    assert_eq!(client.command("XYZZY").await, "-ERR unknown command");
    assert!(
        client
            .command("RETR")
            .await
            .starts_with("-ERR syntax error")
    );
    assert!(
        client
            .command(&format!("USER {ADDRESS}"))
            .await
            .starts_with("+OK")
    );
    assert!(
        client
            .command(&format!("PASS {PASSWORD}"))
            .await
            .starts_with("+OK")
    );
    assert!(client.command("STAT").await.starts_with("+OK"));
    assert!(client.command("RETR 1").await.starts_with("+OK"));
    client.multiline().await;
    assert!(client.command("RETR 9").await.starts_with("-ERR"));
    assert!(client.command("QUIT").await.starts_with("+OK"));
    assert!(client.is_closed().await);
    server.shutdown().await;

    let recorded = metrics.0.lock().unwrap();
    let count = |name, ok| recorded.commands.get(&(name, ok)).copied().unwrap_or(0);
    assert_eq!(count("USER", true), 2);
    assert_eq!(count("PASS", false), 1);
    assert_eq!(count("PASS", true), 1);
    assert_eq!(count("UNKNOWN", false), 1);
    assert_eq!(count("RETR", false), 2, "syntax error and missing message");
    assert_eq!(count("RETR", true), 1);
    assert_eq!(count("STAT", true), 1);
    assert_eq!(count("QUIT", true), 1);
    assert_eq!(recorded.logins, vec![false, true]);
    assert_eq!(recorded.connections_opened, 1);
    assert_eq!(recorded.connections_closed, 1);
}

//! SQLite marks itself initialized before SQLCipher's own initialization step has finished,
//! so threads that key their first connections at the same moment in a fresh process could
//! see `PRAGMA key` fail with "sqlcipher not initialized" (it failed CI once). The race only
//! exists at process start: the test re-runs its own binary as a child process, many times,
//! and each child keys connections from many threads at once as its very first SQLite use.

use sealmail_core::MailboxKey;
use sealmail_core::store::Mailbox;
use std::process::Command;
use std::sync::{Arc, Barrier};

/// Set in the child processes' environment.
const CHILD_ENV: &str = "SEALMAIL_SQLCIPHER_INIT_RACE_CHILD";
/// Without the fix about one child in a hundred failed on a loaded 2-core machine.
const CHILDREN: usize = 300;
const THREADS_PER_CHILD: usize = 16;

#[test]
fn first_keyed_connections_of_a_process_all_succeed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        key_connections_from_many_threads_at_once();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for child in 0..CHILDREN {
        let output = Command::new(&exe)
            .args([
                "--exact",
                "first_keyed_connections_of_a_process_all_succeed",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "child process {child} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn key_connections_from_many_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = Arc::new(Barrier::new(THREADS_PER_CHILD));
    let threads: Vec<_> = (0..THREADS_PER_CHILD)
        .map(|thread| {
            let path = dir.path().join(format!("{thread}.sqlite"));
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let key = MailboxKey::generate();
                start.wait();
                let conn = Mailbox::raw_connection(&path, &key)
                    .unwrap_or_else(|e| panic!("thread {thread}: keying failed: {e}"));
                let tables: i64 = conn
                    .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                    .unwrap_or_else(|e| panic!("thread {thread}: first read failed: {e}"));
                assert_eq!(tables, 0);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

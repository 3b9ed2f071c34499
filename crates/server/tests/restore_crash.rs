//! `sealmail restore` killed with SIGKILL at points spread over its whole run: afterwards the
//! mailbox always opens with the password and holds either its state before the restore or the
//! backed-up state, and running the restore again finishes it. A real kill, not an injected
//! error: no destructor, no cleanup code runs in the killed process.

mod support;

use sealmail_core::account;
use sealmail_core::registry::Registry;
use sealmail_core::store::AppendOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Instant;
use support::{ok, run, sealmail};

const ADDRESS: &str = "restore-crash@example.test";
const PASSWORD: &str = "restore crash password";
/// Kill points per run, spread evenly over the time an uninterrupted restore takes.
const KILL_POINTS: u32 = 10;

fn restore_command(data_dir: &Path, target: &str) -> Child {
    let mut child = sealmail(data_dir)
        .args(["restore", ADDRESS, "--target", target, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sealmail restore");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    child
}

/// The subjects in INBOX, opened through the registry with the password as a login would.
fn subjects(data_dir: &Path) -> Vec<String> {
    let registry = Registry::open(data_dir).unwrap();
    let opened = account::open_mailbox(&registry, ADDRESS, PASSWORD)
        .unwrap_or_else(|e| panic!("the mailbox does not open: {e}"));
    let mailbox = opened.mailbox();
    let mut subjects: Vec<String> = mailbox
        .message_states("INBOX")
        .unwrap()
        .into_iter()
        .map(|state| {
            let raw = mailbox.fetch_raw("INBOX", state.uid).unwrap();
            String::from_utf8_lossy(&raw)
                .lines()
                .find_map(|line| line.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap()
        })
        .collect();
    subjects.sort();
    subjects
}

fn append(data_dir: &Path, subjects: impl IntoIterator<Item = String>) {
    let registry = Registry::open(data_dir).unwrap();
    let mut opened = account::open_mailbox(&registry, ADDRESS, PASSWORD).unwrap();
    // Some bulk, so the file copy and its checks take a measurable part of the run.
    let filler = "restore crash filler line, long enough to fill pages quickly\r\n".repeat(150);
    for subject in subjects {
        let raw = format!("Subject: {subject}\r\n\r\n{filler}");
        opened
            .mailbox_mut()
            .append("INBOX", raw.as_bytes(), &AppendOptions::default())
            .unwrap();
    }
}

#[test]
fn a_restore_killed_anywhere_leaves_an_openable_mailbox_and_can_be_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = format!("file://{}", dir.path().join("backups").display());
    support::add_account_with_cheap_kdf(&data, ADDRESS, PASSWORD);
    append(&data, (0..300).map(|i| format!("backed-up {i:03}")));
    let backed_up = subjects(&data);
    let backup = run(
        sealmail(&data).args(["backup", ADDRESS, "--target", &target, "--password-stdin"]),
        &format!("{PASSWORD}\n"),
    );
    assert!(ok(&backup).starts_with("stored "));

    // How long an uninterrupted restore takes here, to spread the kills over it.
    append(&data, ["newer".to_owned()]);
    let started = Instant::now();
    ok(&restore_command(&data, &target).wait_with_output().unwrap());
    let full_run = started.elapsed();
    assert_eq!(subjects(&data), backed_up);

    let mut killed_mid_run = 0;
    for point in 1..=KILL_POINTS {
        append(&data, [format!("newer {point}")]);
        let before = subjects(&data);
        let delay = full_run * point / (KILL_POINTS + 1);
        let mut child = restore_command(&data, &target);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();

        let now = subjects(&data);
        assert!(
            now == before || now == backed_up,
            "killed after {delay:?}: neither the old nor the restored state ({} messages)",
            now.len()
        );
        ok(&restore_command(&data, &target).wait_with_output().unwrap());
        assert_eq!(
            subjects(&data),
            backed_up,
            "rerun after a kill at {delay:?}"
        );
    }
    eprintln!("{killed_mid_run} of {KILL_POINTS} kills inside a {full_run:?} restore");
    // The early kill points land inside a run whatever the machine's load (the later ones may
    // come after a faster run ended); without any, the test would prove nothing.
    assert!(
        killed_mid_run >= 1,
        "only {killed_mid_run} of {KILL_POINTS} kills landed inside a restore ({full_run:?})"
    );
}

//! npm `imapflow` over implicit TLS: list, append, fetch, search, flags, move, IDLE, QRESYNC
//! (SELECT with QRESYNC, FETCH with CHANGEDSINCE and VANISHED) and part 1 of a forwarded
//! message/rfc822. The steps and their assertions are in node/imapflow.mjs; each prints
//! "ok <step>" once it has passed.

use super::{Server, interop_dir, run_bounded};
use std::process::Command;
use std::time::Duration;

#[test]
fn imapflow_session_over_tls() {
    let node_dir = interop_dir().join("node");
    assert!(
        node_dir.join("node_modules/imapflow").is_dir(),
        "imapflow is required: npm ci --prefix crates/server/tests/interop/node"
    );
    let server = Server::start();
    let mut command = Command::new("node");
    command.arg("imapflow.mjs").current_dir(&node_dir);
    server.client_env(&mut command);
    let finished = run_bounded(command, Duration::from_secs(90));
    let report = finished.report();
    let stdout = finished.success_stdout();
    for step in [
        "connect",
        "list",
        "append",
        "fetch",
        "search",
        "flag",
        "move",
        "idle",
        "idle-done",
        "qresync-select",
        "changedsince",
        "forwarded",
        "logout",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {step}")),
            "step {step} did not pass: {report}"
        );
    }
}

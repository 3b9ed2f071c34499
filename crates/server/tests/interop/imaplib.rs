//! Python's imaplib over STARTTLS: CONDSTORE/QRESYNC resynchronization after a second
//! connection's changes (live VANISHED, SELECT ... (QRESYNC ...), FETCH CHANGEDSINCE with
//! VANISHED, STORE UNCHANGEDSINCE) and ESEARCH. The checks are in qresync.py.

use super::Server;

#[test]
fn imaplib_condstore_qresync_and_esearch() {
    let server = Server::start();
    let stdout = server.python("qresync.py", &[], &[]);
    for step in [
        "setup",
        "second-connection",
        "live-vanished",
        "qresync-select",
        "changedsince",
        "unchangedsince",
        "esearch",
        "logout",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {step}")),
            "step {step} did not pass:\n{stdout}"
        );
    }
}

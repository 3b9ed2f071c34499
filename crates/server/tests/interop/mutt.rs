//! Debian's `mutt`, driven in batch: its keystrokes are queued with `push` in the muttrc, it
//! runs on a pseudo-terminal made by `script` (mutt's index needs a terminal), and the queue
//! ends with `<quit>`. It trusts the server's certificate through `certificate_file`. One run
//! over imaps:// reads a message (display, then pipe it to a file); one over imap:// with
//! STARTTLS required deletes a message and syncs. The server is then read back with imaplib.

use super::{Server, run_bounded, write_private};
use std::process::Command;
use std::time::Duration;

/// Run mutt once on INBOX at `url` with `keys` pushed, on a pseudo-terminal. Returns its
/// protocol trace (mutt's debug log, `~/.muttdebug0`).
fn mutt(server: &Server, url: &str, keys: &str) -> String {
    let muttrc = server.path("muttrc");
    write_private(
        &muttrc,
        &format!(
            "set spoolfile=\"{url}INBOX\"\n\
             set folder=\"{url}\"\n\
             set imap_user=\"{user}\"\n\
             set imap_pass=\"{password}\"\n\
             set certificate_file=\"{cert}\"\n\
             set ssl_starttls=yes\n\
             set ssl_force_tls=yes\n\
             set header_cache=\"\"\n\
             set message_cachedir=\"\"\n\
             set imap_keepalive=30 timeout=5\n\
             set quit=yes delete=yes move=no confirmappend=no wait_key=no mark_old=no\n\
             set pipe_decode=no sort=date-sent\n\
             push \"{keys}<quit>\"\n",
            user = super::ADDRESS,
            password = super::PASSWORD,
            cert = server.cert.display(),
        ),
    );
    let mut command = Command::new("script");
    command
        .arg("--quiet")
        .arg("--return")
        .arg("--command")
        .arg(format!("mutt -n -d 2 -F {}", muttrc.display()))
        .arg("/dev/null")
        .env("TERM", "vt100")
        .env("HOME", server.dir.path());
    let finished = run_bounded(command, Duration::from_secs(60));
    let trace = std::fs::read_to_string(server.path(".muttdebug0")).unwrap_or_default();
    assert!(
        finished.status.success(),
        "mutt failed: {}\n--- trace\n{trace}",
        finished.report()
    );
    trace
}

#[test]
fn mutt_reads_over_imaps_and_deletes_over_starttls() {
    let server = Server::start();
    server.mailbox(&[
        "append:INBOX:mutt first",
        "append:INBOX:mutt second",
        "append:INBOX:mutt third",
    ]);
    let piped = server.path("piped.eml");

    // Read the first message (marks it \Seen on the server) and pipe it out.
    let imaps = format!("imaps://127.0.0.1:{}/", server.imaps);
    let trace = mutt(
        &server,
        &imaps,
        &format!(
            "<display-message><exit><pipe-message>cat > {}<enter>",
            piped.display()
        ),
    );
    let message = std::fs::read_to_string(&piped)
        .unwrap_or_else(|e| panic!("mutt piped nothing ({e}): {trace}"));
    assert!(message.contains("Subject: mutt first"), "{message}");
    assert!(message.contains("The body of mutt first."), "{message}");
    let dump = server.dump();
    assert_eq!(dump.flags("INBOX", "mutt first"), ["\\Seen"], "{trace}");
    assert!(dump.flags("INBOX", "mutt second").is_empty());

    // Delete the second message and sync (expunge), over STARTTLS.
    let starttls = format!("imap://127.0.0.1:{}/", server.imap);
    let trace = mutt(
        &server,
        &starttls,
        "<first-entry><next-entry><delete-message><sync-mailbox>",
    );
    assert!(trace.contains("a0000 STARTTLS"), "upgraded first: {trace}");
    let dump = server.dump();
    assert_eq!(
        dump.subjects("INBOX"),
        ["mutt first", "mutt third"],
        "{trace}"
    );
}

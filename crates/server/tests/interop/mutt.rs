//! Debian's `mutt`, driven in batch: its keystrokes are queued with `push` in the muttrc, it
//! runs on a pseudo-terminal made by `script` (mutt's index needs a terminal), and the queue
//! ends with `<quit>`. It trusts the server's certificate through `certificate_file`. One run
//! over imaps:// reads a message (display, then pipe it to a file); one over imap:// with
//! STARTTLS required deletes a message and syncs. A third run over imaps:// starts from its
//! header cache and resynchronizes with QRESYNC. The server is read back with imaplib.

use super::{Server, run_bounded, write_private};
use std::process::Command;
use std::time::Duration;

/// Run mutt once on INBOX at `url` with `keys` pushed, on a pseudo-terminal. Returns its
/// protocol trace (mutt's debug log, `~/.muttdebug0`).
fn mutt(server: &Server, url: &str, keys: &str) -> String {
    std::fs::create_dir_all(server.path("mutt-cache")).unwrap();
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
             set header_cache=\"{cache}/\"\n\
             set imap_qresync=yes\n\
             set message_cachedir=\"\"\n\
             set imap_keepalive=30 timeout=5\n\
             set quit=yes delete=yes move=no confirmappend=no wait_key=no mark_old=no\n\
             set pipe_decode=no sort=date-sent\n\
             push \"{keys}<quit>\"\n",
            user = super::ADDRESS,
            password = super::PASSWORD,
            cert = server.cert.display(),
            cache = server.path("mutt-cache").display(),
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

    // Back over imaps:// with the header cache of the first run: mutt asks only for what
    // changed since (CHANGEDSINCE ... VANISHED), and its index must match the server.
    server.mailbox(&["flag:INBOX:mutt third:+\\Flagged"]);
    let (all, flagged) = (server.path("all.eml"), server.path("flagged.eml"));
    let trace = mutt(
        &server,
        &imaps,
        &format!(
            "<tag-pattern>~A<enter><tag-prefix><pipe-message>cat >> {all}<enter>\
             <untag-pattern>~A<enter><tag-pattern>~F<enter><tag-prefix><pipe-message>cat >> {flagged}<enter>",
            all = all.display(),
            flagged = flagged.display(),
        ),
    );
    assert!(
        trace.contains("VANISHED)"),
        "resynced with QRESYNC: {trace}"
    );
    assert!(
        trace.contains("* VANISHED (EARLIER) 2"),
        "the deleted message vanished: {trace}"
    );
    let subjects = |path: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.strip_prefix("Subject: "))
            .map(String::from)
            .collect()
    };
    assert_eq!(subjects(&all), ["mutt first", "mutt third"], "{trace}");
    assert_eq!(subjects(&flagged), ["mutt third"], "{trace}");
}

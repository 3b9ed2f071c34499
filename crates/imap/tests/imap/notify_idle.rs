//! NOTIFY honours the client's event list for the selected mailbox (RFC 5465 sections 3.1, 4
//! and 5.1), and the autologout timer counts only the client's own activity: pushes (IDLE,
//! NOTIFY, keepalives) do not keep a silent client logged in.

use crate::common::{RawClient, TestServer, append, message};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Read lines until one matches `pred`; all lines read, the match last.
async fn until_line(c: &mut RawClient, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), c.line())
            .await
            .unwrap_or_else(|_| panic!("expected line never came; saw {seen:?}"));
        let done = pred(&line);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Send IDLE and wait for its continuation.
async fn start_idle(c: &mut RawClient, tag: &str) {
    c.send(format!("{tag} IDLE\r\n").as_bytes()).await;
    let seen = until_line(c, |l| l.starts_with("+ ")).await;
    no_fetch(&seen);
}

fn no_fetch(lines: &[String]) {
    assert!(
        !lines.iter().any(|l| l.contains(" FETCH ")),
        "no FETCH expected: {lines:?}"
    );
}

/// Another session's flag change in the selected mailbox becomes a FETCH only when the
/// SELECTED group asks for FlagChange: not pushed, not reported after a command, not during
/// IDLE. New messages (EXISTS) serve as the barrier: they are reported after the flag change,
/// so a FETCH for it would have come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reports_flag_changes_only_when_asked() {
    let server = TestServer::start(|_| {}).await;
    let mut a = RawClient::login(server.addr).await;
    let mut b = RawClient::login(server.addr).await;
    for n in 1..=2 {
        append(
            &mut b,
            &format!("b{n}"),
            "INBOX",
            &message(&format!("m{n}"), "x"),
        )
        .await;
    }
    a.command("s SELECT INBOX").await;
    b.command("bs SELECT INBOX").await;

    // SELECTED without FlagChange: between commands.
    a.command("n1 NOTIFY SET (SELECTED (MessageNew MessageExpunge))")
        .await;
    b.command("b3 STORE 1 +FLAGS.SILENT (\\Flagged)").await;
    append(&mut b, "b4", "INBOX", &message("m3", "x")).await;
    no_fetch(&until_line(&mut a, |l| l == "* 3 EXISTS").await);
    // ... and after a command.
    b.command("b5 STORE 2 +FLAGS.SILENT (\\Answered)").await;
    let reply = a.command("a1 NOOP").await;
    assert_eq!(reply, ["a1 OK NOOP completed"]);
    // ... and during IDLE, which sends exactly what NOTIFY asked for (RFC 5465 section 4).
    start_idle(&mut a, "i1").await;
    b.command("b6 STORE 3 +FLAGS.SILENT (\\Seen)").await;
    append(&mut b, "b7", "INBOX", &message("m4", "x")).await;
    no_fetch(&until_line(&mut a, |l| l == "* 4 EXISTS").await);
    a.send(b"DONE\r\n").await;
    let reply = a.until_tagged("i1").await;
    assert_eq!(reply, ["i1 OK IDLE terminated"]);
    // The flags were not announced, but they are current when asked for.
    let reply = a.command("f1 FETCH 1:3 (FLAGS)").await;
    assert_eq!(
        reply,
        [
            "* 1 FETCH (FLAGS (\\Flagged))",
            "* 2 FETCH (FLAGS (\\Answered))",
            "* 3 FETCH (FLAGS (\\Seen))",
            "f1 OK FETCH completed"
        ]
    );

    // The selected mailbox left out means SELECTED NONE (RFC 5465 section 3.1): new
    // messages still get their EXISTS at the next command, flag changes no FETCH.
    a.command("n2 NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange))")
        .await;
    b.command("b8 STORE 1 -FLAGS.SILENT (\\Flagged)").await;
    append(&mut b, "b9", "INBOX", &message("m5", "x")).await;
    let reply = a.command("a2 NOOP").await;
    assert_eq!(reply, ["* 5 EXISTS", "a2 OK NOOP completed"]);

    // With FlagChange the change is pushed, UID and FLAGS included (section 5.1).
    a.command("n3 NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange))")
        .await;
    b.command("b10 STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    let seen = until_line(&mut a, |l| l.contains(" FETCH ")).await;
    assert_eq!(
        seen.last().unwrap(),
        "* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged))",
        "{seen:?}"
    );
    // Without NOTIFY, flag changes are reported after commands as before.
    a.command("n4 NOTIFY NONE").await;
    b.command("b11 STORE 2 -FLAGS.SILENT (\\Flagged)").await;
    let reply = a.command("a3 NOOP").await;
    assert_eq!(
        reply,
        [
            "* 2 FETCH (UID 2 FLAGS (\\Answered))",
            "a3 OK NOOP completed"
        ]
    );
    server.shutdown().await;
}

/// A second session that appends to INBOX every 200 ms until told to stop (at most 30 s), so
/// the watched session gets a steady stream of pushes.
fn keep_appending(addr: std::net::SocketAddr) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let mut b = RawClient::login(addr).await;
        for n in 0..150 {
            if stopping.load(Ordering::Acquire) {
                break;
            }
            append(
                &mut b,
                &format!("p{n}"),
                "INBOX",
                &message(&format!("push{n}"), "x"),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (stop, task)
}

/// Read until the autologout BYE; returns the lines before it. The BYE must come while the
/// appender still pushes (it gives up after 30 s): pushes must not postpone it.
async fn until_autologout(
    a: &mut RawClient,
    appender: &tokio::task::JoinHandle<()>,
) -> Vec<String> {
    let mut seen = tokio::time::timeout(
        Duration::from_secs(40),
        until_line(a, |l| l.starts_with("* BYE")),
    )
    .await
    .expect("autologout within 40 s");
    assert!(
        !appender.is_finished(),
        "logged out only once the pushes stopped: {seen:?}"
    );
    let bye = seen.pop().unwrap();
    assert!(bye.contains("autologout"), "{bye}");
    seen
}

/// IDLE: pushed EXISTS and keepalives do not reset the timer; re-issuing IDLE (client
/// activity) does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pushes_do_not_postpone_autologout() {
    let timeout = Duration::from_secs(3);
    let server = TestServer::start(|config| {
        config.idle_timeout = timeout;
        config.idle_keepalive = Duration::from_millis(100);
    })
    .await;
    let mut a = RawClient::login(server.addr).await;
    a.command("s SELECT INBOX").await;
    start_idle(&mut a, "i1").await;
    let (stop, appender) = keep_appending(server.addr);
    // Re-issue IDLE once, a second in: the timer starts over from there.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reissued = Instant::now();
    a.send(b"DONE\r\n").await;
    let reply = a.until_tagged("i1").await;
    assert_eq!(reply.last().unwrap(), "i1 OK IDLE terminated");
    start_idle(&mut a, "i2").await;
    let seen = until_autologout(&mut a, &appender).await;
    let logged_out = reissued.elapsed();
    stop.store(true, Ordering::Release);
    appender.await.unwrap();
    assert!(
        seen.iter().any(|l| l.ends_with(" EXISTS")),
        "pushes arrived while idling: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l == "* OK still here"),
        "keepalives were sent: {seen:?}"
    );
    assert!(
        logged_out >= timeout,
        "logged out {logged_out:?} after the client's last activity, before the {timeout:?} timeout"
    );
    server.shutdown().await;
}

/// NOTIFY without IDLE: pushed EXISTS do not reset the timer; a command does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_pushes_do_not_postpone_autologout() {
    let timeout = Duration::from_secs(3);
    let server = TestServer::start(|config| config.idle_timeout = timeout).await;
    let mut a = RawClient::login(server.addr).await;
    a.command("s SELECT INBOX").await;
    a.command("n NOTIFY SET (SELECTED (MessageNew MessageExpunge))")
        .await;
    let (stop, appender) = keep_appending(server.addr);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_command = Instant::now();
    let reply = a.command("a1 NOOP").await;
    assert_eq!(reply.last().unwrap(), "a1 OK NOOP completed");
    let seen = until_autologout(&mut a, &appender).await;
    let logged_out = last_command.elapsed();
    stop.store(true, Ordering::Release);
    appender.await.unwrap();
    assert!(
        seen.iter().any(|l| l.ends_with(" EXISTS")),
        "pushes arrived: {seen:?}"
    );
    assert!(
        logged_out >= timeout,
        "logged out {logged_out:?} after the last command, before the {timeout:?} timeout"
    );
    server.shutdown().await;
}

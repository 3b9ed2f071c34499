//! SORT, THREAD (RFC 5256, RFC 5957 DISPLAYFROM, RFC 5267 ESORT) and OBJECTID (RFC 8474) over a
//! real socket.

use crate::common::{RawClient, TestServer, append};

fn tagged<'a>(lines: &'a [String], tag: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no tagged {tag} reply in {lines:?}"))
}

fn untagged<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
}

fn mail(from: &str, subject: &str, date: &str, id: &str, refs: &str, body: &str) -> String {
    let refs = if refs.is_empty() {
        String::new()
    } else {
        format!("References: {refs}\r\n")
    };
    format!(
        "From: {from}\r\nTo: alice@example.org\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{id}>\r\n{refs}\r\n{body}\r\n"
    )
}

/// Six messages in INBOX, sequence numbers 1..=6.
async fn fill(client: &mut RawClient) {
    let messages = [
        mail(
            "Zoe <zoe@example.org>",
            "Release 2.0",
            "Mon, 4 Mar 2024 09:00:00 +0000",
            "r1@x",
            "",
            "first",
        ),
        mail(
            "adam@example.org",
            "Re: Release 2.0",
            "Tue, 5 Mar 2024 09:00:00 +0000",
            "r2@x",
            "<r1@x>",
            "second, a longer body than most",
        ),
        mail(
            "\"Beth\" <yvonne@example.org>",
            "[dev] Build broken",
            "Sun, 3 Mar 2024 09:00:00 +0000",
            "b1@x",
            "",
            "third",
        ),
        mail(
            "carl@example.org",
            "Re: Release 2.0",
            "Wed, 6 Mar 2024 09:00:00 +0000",
            "r3@x",
            "<r1@x> <missing@x>",
            "fourth",
        ),
        mail(
            "dora@example.org",
            "Re: Build broken",
            "Thu, 7 Mar 2024 09:00:00 +0000",
            "b2@x",
            "<gone@x>",
            "fifth",
        ),
        mail(
            "eve@example.org",
            "Fwd: build broken (fwd)",
            "Fri, 8 Mar 2024 09:00:00 +0000",
            "b3@x",
            "<gone@x>",
            "sixth",
        ),
    ];
    for (i, raw) in messages.iter().enumerate() {
        let line = append(client, &format!("A{i}"), "INBOX", raw).await;
        assert!(line.contains("OK"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_keys_reverse_uid_sort_and_esort() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let caps = c.command("c1 CAPABILITY").await;
    for cap in [" SORT ", " SORT=DISPLAY ", " ESORT ", " THREAD=REFERENCES "] {
        assert!(caps[0].contains(cap), "{cap} in {caps:?}");
    }
    fill(&mut c).await;
    c.command("s0 SELECT INBOX").await;

    let r = c.command("s1 SORT (DATE) UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 3 1 2 4 5 6");
    assert!(tagged(&r, "s1").starts_with("s1 OK"), "{r:?}");
    // Appended within a second or two: arrival order, ties in mailbox order.
    let r = c.command("s2 SORT (ARRIVAL) US-ASCII ALL").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 1 2 3 4 5 6");
    // Base subjects: "build broken" (3, 5, 6) before "release 2.0" (1, 2, 4).
    let r = c.command("s3 SORT (SUBJECT REVERSE DATE) UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 6 5 3 4 2 1");
    // addr-mailbox: adam carl dora eve yvonne zoe; display: adam@ beth carl@ dora@ eve@ zoe.
    let r = c.command("s4 SORT (FROM) UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 2 4 5 6 3 1");
    let r = c.command("s5 SORT (DISPLAYFROM) UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 2 3 4 5 6 1");
    let r = c.command("s6 SORT (REVERSE SIZE) UTF-8 ALL").await;
    assert!(untagged(&r, "* SORT").starts_with("* SORT 2 "), "{r:?}");
    // Combined with search keys.
    let r = c
        .command("s7 SORT (DATE) UTF-8 SUBJECT release NOT FROM zoe")
        .await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 2 4");
    let r = c.command("s8 UID SORT (REVERSE DATE) UTF-8 2:4").await;
    assert_eq!(untagged(&r, "* SORT"), "* SORT 4 2 3");
    // ESORT: MIN/MAX are first/last in sort order; ALL keeps the sort order.
    let r = c
        .command("s9 SORT RETURN (MIN MAX COUNT ALL) (REVERSE DATE) UTF-8 ALL")
        .await;
    assert_eq!(
        untagged(&r, "* ESEARCH"),
        "* ESEARCH (TAG \"s9\") MIN 6 MAX 3 COUNT 6 ALL 6,5,4,2,1,3"
    );
    let r = c.command("s10 SORT (DATE) KOI8-R ALL").await;
    assert!(tagged(&r, "s10").contains("NO [BADCHARSET"), "{r:?}");
    let r = c.command("s11 SORT (NONSENSE) UTF-8 ALL").await;
    assert!(tagged(&r, "s11").starts_with("s11 BAD"), "{r:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_references_and_orderedsubject() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    fill(&mut c).await;
    c.command("t0 SELECT INBOX").await;
    // 1 <- 2 and 1 <- (missing) <- 4: the dummy is pruned and 4 hangs below 1. 5 and 6 share
    // the missing parent gone@x: a dummy root holds them, and 3 ("Build broken", not a reply)
    // joins by subject as a child of that dummy.
    let r = c.command("t1 THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* THREAD"), "* THREAD ((3)(5)(6))(1 (2)(4))");
    let r = c.command("t2 THREAD ORDEREDSUBJECT UTF-8 ALL").await;
    assert_eq!(untagged(&r, "* THREAD"), "* THREAD (3 (5)(6))(1 (2)(4))");
    let r = c
        .command("t3 THREAD REFERENCES UTF-8 NOT SUBJECT build")
        .await;
    assert_eq!(untagged(&r, "* THREAD"), "* THREAD (1 (2)(4))");
    let r = c.command("t4 UID THREAD REFERENCES UTF-8 5:6").await;
    assert_eq!(untagged(&r, "* THREAD"), "* THREAD ((5)(6))");
    let r = c
        .command("t5 THREAD REFERENCES UTF-8 SUBJECT nothing-matches")
        .await;
    assert_eq!(untagged(&r, "* THREAD"), "* THREAD");
    let r = c.command("t6 THREAD SPAGHETTI UTF-8 ALL").await;
    assert!(tagged(&r, "t6").starts_with("t6 BAD"), "{r:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectid_mailboxid_emailid_threadid() {
    let server = TestServer::start(|_| {}).await;
    let mut c = RawClient::login(server.addr).await;
    let caps = c.command("o0 CAPABILITY").await;
    assert!(caps[0].contains(" OBJECTID"), "{caps:?}");
    let r = c.command("o1 CREATE Work").await;
    let created = tagged(&r, "o1");
    assert!(created.starts_with("o1 OK [MAILBOXID (F"), "{created}");
    let work_id = created
        .split_once("MAILBOXID (")
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0
        .to_string();
    let r = c.command("o2 STATUS Work (MESSAGES MAILBOXID)").await;
    assert_eq!(
        untagged(&r, "* STATUS"),
        format!("* STATUS Work (MESSAGES 0 MAILBOXID ({work_id}))")
    );
    c.command("o3 RENAME Work Play").await;
    let r = c.command("o4 EXAMINE Play").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with(&format!("* OK [MAILBOXID ({work_id})]"))),
        "MAILBOXID survives RENAME: {r:?}"
    );
    fill(&mut c).await;
    let r = c.command("o5 SELECT INBOX").await;
    let inbox_id = untagged(&r, "* OK [MAILBOXID (");
    assert!(!inbox_id.contains(&work_id), "{inbox_id}");

    let r = c.command("o6 FETCH 1:2 (EMAILID THREADID)").await;
    let ids: Vec<(String, String)> = r
        .iter()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH "))
        .map(|l| {
            let part = |name: &str| {
                l.split_once(&format!("{name} ("))
                    .unwrap()
                    .1
                    .split_once(')')
                    .unwrap()
                    .0
                    .to_string()
            };
            (part("EMAILID"), part("THREADID"))
        })
        .collect();
    assert_eq!(ids.len(), 2, "{r:?}");
    assert_ne!(ids[0].0, ids[1].0, "different messages, different EMAILIDs");
    assert_eq!(ids[0].1, ids[1].1, "a reply shares its parent's THREADID");
    let r = c.command(&format!("o7 SEARCH THREADID {}", ids[0].1)).await;
    assert_eq!(untagged(&r, "* SEARCH"), "* SEARCH 1 2 4");
    let r = c.command(&format!("o8 SEARCH EMAILID {}", ids[1].0)).await;
    assert_eq!(untagged(&r, "* SEARCH"), "* SEARCH 2");
    // COPY and MOVE keep EMAILID and THREADID.
    c.command("o9 COPY 1 Play").await;
    c.command("o10 MOVE 2 Play").await;
    c.command("o11 SELECT Play").await;
    let r = c.command("o12 FETCH 1:2 (EMAILID THREADID)").await;
    let fetched = r.join("\n");
    assert!(
        fetched.contains(&ids[0].0) && fetched.contains(&ids[1].0),
        "{r:?}"
    );
    let r = c.command(&format!("o13 SEARCH EMAILID {}", ids[1].0)).await;
    assert_eq!(untagged(&r, "* SEARCH"), "* SEARCH 2");
    server.shutdown().await;
}

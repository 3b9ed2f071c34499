//! SORT, THREAD and OBJECTID through the store: keys stored at append time, the schema upgrade
//! that back-fills them, and ids that survive COPY/MOVE/RENAME.

use sealmail_core::MailboxKey;
use sealmail_core::store::{
    AppendOptions, FlagMode, Flags, Mailbox, SearchKey, SortCriterion, SortKey, ThreadAlgorithm,
    ThreadNode, Threads, UidSet, thread_key,
};

fn message(
    from: &str,
    to: &str,
    subject: &str,
    date: &str,
    id: &str,
    refs: &str,
    body: &str,
) -> Vec<u8> {
    let mut out = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n"
    );
    if !refs.is_empty() {
        out.push_str(&format!("References: {refs}\r\n"));
    }
    out.push_str(&format!("\r\n{body}\r\n"));
    out.into_bytes()
}

/// Five messages: uid 1..=5.
fn fixture(mailbox: &mut Mailbox) {
    let messages = [
        message(
            "Zed <zed@example.org>",
            "amy@example.org",
            "Project plan",
            "Mon, 1 Jan 2024 10:00:00 +0000",
            "p1@x",
            "",
            "first draft",
        ),
        message(
            "\"Anna B\" <anna@example.org>",
            "zed@example.org",
            "Re: Project plan",
            "Tue, 2 Jan 2024 10:00:00 +0000",
            "p2@x",
            "<p1@x>",
            "comments attached",
        ),
        message(
            "bob@example.org",
            "Carl <carl@example.org>",
            "[team] Lunch",
            "Sun, 31 Dec 2023 12:00:00 +0000",
            "l1@x",
            "",
            "pizza?",
        ),
        message(
            "carl@example.org",
            "bob@example.org",
            "Re: Re: Project plan",
            "Wed, 3 Jan 2024 10:00:00 +0100",
            "p3@x",
            "<p1@x> <p2@x>",
            "zebrafish appear here only",
        ),
        message(
            "Amy <amy@example.org>",
            "anna@example.org",
            "Fwd: lunch",
            "Thu, 4 Jan 2024 09:00:00 +0000",
            "l2@x",
            "",
            "see below, and a long padding text to be the largest message of all, by a wide margin: lorem ipsum dolor sit amet, consectetur adipiscing elit",
        ),
    ];
    for (i, raw) in messages.iter().enumerate() {
        mailbox
            .append(
                "INBOX",
                raw,
                &AppendOptions {
                    internal_date: Some(1_700_000_000 - i as i64 * 60),
                    ..AppendOptions::default()
                },
            )
            .unwrap();
    }
}

fn by(key: SortKey) -> SortCriterion {
    SortCriterion {
        key,
        reverse: false,
    }
}

fn reverse(key: SortKey) -> SortCriterion {
    SortCriterion { key, reverse: true }
}

fn sort(mailbox: &Mailbox, criteria: &[SortCriterion]) -> Vec<u32> {
    mailbox.sort("INBOX", criteria, &SearchKey::All).unwrap()
}

fn assert_sorts(mailbox: &Mailbox) {
    assert_eq!(sort(mailbox, &[by(SortKey::Date)]), vec![3, 1, 2, 4, 5]);
    assert_eq!(
        sort(mailbox, &[reverse(SortKey::Date)]),
        vec![5, 4, 2, 1, 3]
    );
    // Internal dates go down as UIDs go up.
    assert_eq!(sort(mailbox, &[by(SortKey::Arrival)]), vec![5, 4, 3, 2, 1]);
    // Base subjects: "lunch" x2 (3, 5), "project plan" x3 (1, 2, 4); ties in UID order.
    assert_eq!(sort(mailbox, &[by(SortKey::Subject)]), vec![3, 5, 1, 2, 4]);
    assert_eq!(
        sort(mailbox, &[by(SortKey::Subject), reverse(SortKey::Date)]),
        vec![5, 3, 4, 2, 1]
    );
    // addr-mailbox: amy, anna, bob, carl, zed.
    assert_eq!(sort(mailbox, &[by(SortKey::From)]), vec![5, 2, 3, 4, 1]);
    assert_eq!(sort(mailbox, &[by(SortKey::To)]), vec![1, 5, 4, 3, 2]);
    // Display names: "amy", "anna b", bob@..., carl@..., "zed".
    assert_eq!(
        sort(mailbox, &[by(SortKey::DisplayFrom)]),
        vec![5, 2, 3, 4, 1]
    );
    // Display To: amy@, anna@, bob@, "carl", zed@.
    assert_eq!(
        sort(mailbox, &[by(SortKey::DisplayTo)]),
        vec![1, 5, 4, 3, 2]
    );
    // No Cc anywhere: all equal, mailbox order.
    assert_eq!(sort(mailbox, &[by(SortKey::Cc)]), vec![1, 2, 3, 4, 5]);
    let by_size = sort(mailbox, &[reverse(SortKey::Size)]);
    assert_eq!(by_size[0], 5, "the padded message is the largest");
    // Combined with search criteria.
    assert_eq!(
        mailbox
            .sort(
                "INBOX",
                &[reverse(SortKey::Date)],
                &SearchKey::Subject("plan".into())
            )
            .unwrap(),
        vec![4, 2, 1]
    );
}

fn show(threads: &Threads) -> String {
    show_nodes(&threads.to_nodes())
}

fn show_nodes(threads: &[ThreadNode]) -> String {
    fn chain(node: &ThreadNode, out: &mut String) {
        out.push_str(&node.uid.to_string());
        for child in &node.children {
            out.push('(');
            chain(child, out);
            out.push(')');
        }
    }
    let mut out = String::new();
    for t in threads {
        out.push('[');
        chain(t, &mut out);
        out.push(']');
    }
    out
}

fn assert_threads(mailbox: &Mailbox) {
    let references = mailbox
        .thread("INBOX", ThreadAlgorithm::References, &SearchKey::All)
        .unwrap();
    // 1 <- 2 <- 4 by References; 5 ("Fwd: lunch") merges under 3 ("[team] Lunch") by subject.
    assert_eq!(show(&references), "[3(5)][1(2(4))]");
    let ordered = mailbox
        .thread("INBOX", ThreadAlgorithm::OrderedSubject, &SearchKey::All)
        .unwrap();
    assert_eq!(show(&ordered), "[3(5)][1(2)(4)]");
}

fn new_mailbox(dir: &std::path::Path) -> (Mailbox, MailboxKey, std::path::PathBuf) {
    let key = MailboxKey::generate();
    let path = dir.join("m.sqlite");
    let mailbox = Mailbox::create(&path, &key).unwrap();
    (mailbox, key, path)
}

#[test]
fn sort_orders_by_every_key_with_uid_tiebreak() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    assert_sorts(&mailbox);
}

#[test]
fn thread_references_and_ordered_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    assert_threads(&mailbox);
    let only_plan = mailbox
        .thread(
            "INBOX",
            ThreadAlgorithm::References,
            &SearchKey::Not(Box::new(SearchKey::Uids(UidSet::from_uids([2])))),
        )
        .unwrap();
    // Without 2, 4 still hangs below 1 through its References chain (p1 -> p2 -> p3), with the
    // missing p2 pruned.
    assert_eq!(show(&only_plan), "[3(5)][1(4)]");
}

/// Version 6's address table and its triggers, so a file can be turned back into an older
/// version (the triggers name `messages`, whose columns those versions lack).
const DROP_VERSION_6: &str = "DROP TRIGGER message_addresses_insert;
     DROP TRIGGER message_addresses_delete;
     DROP TABLE message_addresses;";

#[test]
fn upgrading_a_version_2_file_back_fills_the_sort_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    drop(mailbox);
    // Turn the file back into schema version 2: no sort columns, no sort indexes.
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    conn.execute_batch(DROP_VERSION_6).unwrap();
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index'
             AND (name LIKE 'messages_sort_%' OR name = 'messages_thread_projection')",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Version 6 merged most per-key indexes into one projection: arrival, date, projection,
    // thread.
    assert_eq!(indexes.len(), 4);
    for index in indexes {
        conn.execute_batch(&format!("DROP INDEX {index}")).unwrap();
    }
    for column in [
        "sort_subject",
        "subject_is_reply",
        "sort_from",
        "sort_to",
        "sort_cc",
        "display_from",
        "display_to",
        "sort_date",
        "thread_refs",
        // Later versions' columns go too: the file must look like version 2.
        "crlf_size",
        "thread_key",
        "subject_key",
        "thread_parents",
    ] {
        conn.execute_batch(&format!("ALTER TABLE messages DROP COLUMN {column}"))
            .unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 2").unwrap();
    drop(conn);

    let mailbox = Mailbox::open(&path, &key).unwrap();
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, sealmail_core::store::SCHEMA_VERSION);
    let (subject, reply): (String, bool) = conn
        .query_row(
            "SELECT sort_subject, subject_is_reply FROM messages WHERE uid = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((subject.as_str(), reply), ("project plan", true));
    assert_sorts(&mailbox);
    assert_threads(&mailbox);
}

#[test]
fn upgrading_a_version_4_file_back_fills_the_thread_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    drop(mailbox);
    // Turn the file back into schema version 4: the thread index over strings, no digests.
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    conn.execute_batch(DROP_VERSION_6).unwrap();
    conn.execute_batch(
        "DROP INDEX messages_thread_projection;
         ALTER TABLE messages DROP COLUMN thread_key;
         ALTER TABLE messages DROP COLUMN subject_key;
         ALTER TABLE messages DROP COLUMN thread_parents;
         CREATE INDEX messages_thread_projection ON messages(
             folder_id, uid, sort_date, subject_is_reply, sort_subject, message_id, thread_refs);
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);

    let mailbox = Mailbox::open(&path, &key).unwrap();
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, sealmail_core::store::SCHEMA_VERSION);
    let (id_key, subject_key, parents): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT thread_key, subject_key, thread_parents FROM messages WHERE uid = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(id_key as u64, thread_key("p3@x"));
    assert_eq!(subject_key as u64, thread_key("project plan"));
    // Message 4's parent chain is p1, p2.
    let expected: Vec<u8> = [thread_key("p1@x"), thread_key("p2@x")]
        .iter()
        .flat_map(|k| k.to_le_bytes())
        .collect();
    assert_eq!(parents, expected);
    // The index THREAD reads holds the digests, not the strings.
    let indexed: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'messages_thread_projection'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(indexed.contains("thread_parents") && !indexed.contains("thread_refs"));
    assert_threads(&mailbox);
}

#[test]
fn object_ids_survive_copy_move_and_rename() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    let original = mailbox.summaries("INBOX", &UidSet::all()).unwrap();
    // 2 and 4 reply to 1: one thread; 3 starts another.
    assert_eq!(original[0].thread_id, original[1].thread_id);
    assert_eq!(original[0].thread_id, original[3].thread_id);
    assert_ne!(original[0].thread_id, original[2].thread_id);
    let email_ids: std::collections::HashSet<_> = original.iter().map(|s| &s.email_id).collect();
    assert_eq!(email_ids.len(), 5, "distinct messages, distinct EMAILIDs");

    mailbox.create_folder("Work", None).unwrap();
    let copied = mailbox
        .copy_messages("INBOX", &UidSet::from_uids([1]), "Work")
        .unwrap();
    let moved = mailbox
        .move_messages("INBOX", &UidSet::from_uids([2]), "Work")
        .unwrap();
    let work = mailbox.summaries("Work", &UidSet::all()).unwrap();
    let find = |uid| work.iter().find(|s| s.uid == uid).unwrap();
    assert_eq!(find(copied.pairs[0].1).email_id, original[0].email_id);
    assert_eq!(find(moved.pairs[0].1).email_id, original[1].email_id);
    assert_eq!(find(moved.pairs[0].1).thread_id, original[1].thread_id);
    // EMAILID and THREADID are search keys.
    assert_eq!(
        mailbox
            .search("INBOX", &SearchKey::EmailId(original[3].email_id.clone()))
            .unwrap(),
        vec![4]
    );
    assert_eq!(
        mailbox
            .search("INBOX", &SearchKey::ThreadId(original[0].thread_id.clone()))
            .unwrap(),
        vec![1, 4]
    );
    // MAILBOXID survives RENAME and differs between folders.
    let before = mailbox.folder("Work").unwrap().mailbox_id();
    assert_ne!(before, mailbox.folder("INBOX").unwrap().mailbox_id());
    mailbox.rename_folder("Work", "Projects").unwrap();
    assert_eq!(mailbox.folder("Projects").unwrap().mailbox_id(), before);
    // Sort keys travel with copies too.
    assert_eq!(
        mailbox
            .sort("Projects", &[by(SortKey::Subject)], &SearchKey::All)
            .unwrap()
            .len(),
        2
    );
}

/// The threads of a whole folder, computed afresh: a key that matches every message but is
/// not "the whole folder" keeps the cache out of it.
fn fresh(mailbox: &Mailbox, folder: &str, algorithm: ThreadAlgorithm) -> Threads {
    let everything = SearchKey::Not(Box::new(SearchKey::Uids(UidSet::from_uids([u32::MAX]))));
    mailbox.thread(folder, algorithm, &everything).unwrap()
}

/// The whole-folder result (cached after the first call) equals a fresh computation, for
/// both algorithms; returns the REFERENCES result.
fn cached_matches_fresh(mailbox: &Mailbox, folder: &str) -> String {
    for algorithm in [ThreadAlgorithm::References, ThreadAlgorithm::OrderedSubject] {
        // Through the session's "UIDs I know" restriction too, which covers the folder.
        let known = SearchKey::And(vec![
            SearchKey::All,
            SearchKey::Uids(UidSet::from_ranges([(1, 1_000)])),
        ]);
        for key in [SearchKey::All, known] {
            assert_eq!(
                show(&mailbox.thread(folder, algorithm, &key).unwrap()),
                show(&fresh(mailbox, folder, algorithm)),
                "{algorithm:?} {key:?}"
            );
        }
    }
    show(
        &mailbox
            .thread(folder, ThreadAlgorithm::References, &SearchKey::All)
            .unwrap(),
    )
}

fn flag(mailbox: &mut Mailbox, folder: &str, uid: u32, flags: Flags) {
    mailbox
        .set_flags(
            folder,
            &UidSet::from_uids([uid]),
            FlagMode::Add,
            &flags,
            None,
        )
        .unwrap();
}

/// Every change of a folder's messages shows in the next THREAD: appends (to a thread and a
/// new one), expunges, moves out and in, copies in, a folder re-created under its name. Flag
/// changes leave the result as it is.
#[test]
fn thread_results_follow_every_change_of_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, _, _) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    mailbox.create_folder("Projects", None).unwrap();
    let append = |mailbox: &mut Mailbox, folder: &str, subject: &str, id: &str, refs: &str| {
        let raw = message(
            "bob@example.org",
            "amy@example.org",
            subject,
            "Fri, 5 Jan 2024 10:00:00 +0000",
            id,
            refs,
            "more",
        );
        mailbox
            .append(folder, &raw, &AppendOptions::default())
            .unwrap()
    };
    assert_eq!(cached_matches_fresh(&mailbox, "INBOX"), "[3(5)][1(2(4))]");

    let seen = Flags {
        seen: true,
        ..Flags::default()
    };
    flag(&mut mailbox, "INBOX", 2, seen.clone());
    assert_eq!(cached_matches_fresh(&mailbox, "INBOX"), "[3(5)][1(2(4))]");

    // A reply to the lunch thread (uid 6), then a new thread (uid 7).
    append(&mut mailbox, "INBOX", "Re: [team] Lunch", "l3@x", "<l1@x>");
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(2(4))]"
    );
    append(&mut mailbox, "INBOX", "Budget", "b1@x", "");
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(2(4))][7]"
    );

    // Expunge 2: 4 still hangs below 1 through its References.
    flag(
        &mut mailbox,
        "INBOX",
        2,
        Flags {
            deleted: true,
            ..Flags::default()
        },
    );
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(2(4))][7]",
        "\\Deleted alone changes nothing"
    );
    assert_eq!(mailbox.expunge("INBOX", None).unwrap(), vec![2]);
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(4)][7]"
    );

    // Move the budget thread out: both folders change.
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "");
    mailbox
        .move_messages("INBOX", &UidSet::from_uids([7]), "Projects")
        .unwrap();
    assert_eq!(cached_matches_fresh(&mailbox, "INBOX"), "[3(5)(6)][1(4)]");
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "[1]");
    // ... and back in (uid 8), and copied in again (uid 9): same subject, a duplicate id.
    mailbox
        .move_messages("Projects", &UidSet::from_uids([1]), "INBOX")
        .unwrap();
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "");
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(4)][8]"
    );
    append(&mut mailbox, "Projects", "Re: Budget", "b2@x", "<b1@x>");
    mailbox
        .copy_messages("Projects", &UidSet::from_uids([2]), "INBOX")
        .unwrap();
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)(6)][1(4)][8(9)]"
    );

    // Expunge one and append another: the count is back where it was, UIDNEXT is not.
    flag(
        &mut mailbox,
        "INBOX",
        6,
        Flags {
            deleted: true,
            ..Flags::default()
        },
    );
    mailbox.expunge("INBOX", None).unwrap();
    append(&mut mailbox, "INBOX", "Re: Project plan", "p4@x", "<p1@x>");
    assert_eq!(
        cached_matches_fresh(&mailbox, "INBOX"),
        "[3(5)][1(4)(10)][8(9)]"
    );

    // A folder deleted and created again under the same name starts over.
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "[2]");
    mailbox.delete_folder("Projects").unwrap();
    mailbox.create_folder("Projects", None).unwrap();
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "");
    append(&mut mailbox, "Projects", "Other", "o1@x", "");
    assert_eq!(cached_matches_fresh(&mailbox, "Projects"), "[1]");
}

/// The per-key SORT indexes of version 5, as that version created them.
const VERSION_5_SORT_INDEXES: &str = "
    CREATE INDEX messages_sort_size ON messages(folder_id, size, uid);
    CREATE INDEX messages_sort_subject ON messages(folder_id, sort_subject, uid);
    CREATE INDEX messages_sort_from ON messages(folder_id, sort_from, uid);
    CREATE INDEX messages_sort_to ON messages(folder_id, sort_to, uid);
    CREATE INDEX messages_sort_cc ON messages(folder_id, sort_cc, uid);
    CREATE INDEX messages_sort_display_from ON messages(folder_id, display_from, uid);
    CREATE INDEX messages_sort_display_to ON messages(folder_id, display_to, uid);";

fn sort_index_names(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'
         AND name LIKE 'messages_sort_%' ORDER BY name",
    )
    .unwrap()
    .query_map([], |r| r.get(0))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn upgrading_a_version_5_file_merges_the_sort_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mailbox, key, path) = new_mailbox(dir.path());
    fixture(&mut mailbox);
    drop(mailbox);
    // Turn the file back into schema version 5: one index per sort key.
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    conn.execute_batch(&format!(
        "DROP INDEX messages_sort_projection; {DROP_VERSION_6} {VERSION_5_SORT_INDEXES}
         PRAGMA user_version = 5;"
    ))
    .unwrap();
    assert_eq!(sort_index_names(&conn).len(), 9);
    drop(conn);

    let mailbox = Mailbox::open(&path, &key).unwrap();
    let conn = Mailbox::raw_connection(&path, &key).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, sealmail_core::store::SCHEMA_VERSION);
    assert_eq!(
        sort_index_names(&conn),
        [
            "messages_sort_arrival",
            "messages_sort_date",
            "messages_sort_projection"
        ]
    );
    assert_sorts(&mailbox);
    // Every sort reads a compact covering index (its own ordered one for DATE and ARRIVAL, the
    // projection, or the state index that holds the size), never the wide message rows.
    for order in [
        "sort_subject",
        "sort_from DESC",
        "size",
        "internal_date",
        "sort_date DESC",
        "display_to",
        "sort_cc, sort_date DESC",
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT m.uid FROM messages m WHERE m.folder_id = ?1 AND 1
                 ORDER BY {order}, m.uid"
            ))
            .unwrap()
            .query_map([1], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING COVERING INDEX messages_")),
            "{order}: {plan:?}"
        );
    }
}

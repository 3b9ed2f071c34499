//! Injection suite: hostile field names, values, regexes, operators, collection names and
//! nesting. Each request either works with the hostile text as plain data or is refused with a
//! specific error (never a database error); afterwards the database is byte-for-byte the same.

mod query_support;

use query_support::TestMailbox;
use sealmail_core::query::{QueryError, QueryOutput};
use serde_json::{Value, json};

const HOSTILE: &[&str] = &[
    "'; DROP TABLE messages; --",
    "\" OR 1=1 --",
    "x') OR ('1'='1",
    "*/ SELECT * FROM settings /*",
    "a\u{0}b",
    "1; ATTACH DATABASE '/tmp/x' AS x",
    "?1",
    "$1",
    "%",
];

fn setup() -> TestMailbox {
    let t = TestMailbox::new();
    let inbox = t.add_folder("INBOX");
    t.add_message(inbox, 1, json!({"subject": "hello"}));
    t.add_message(inbox, 2, json!({"subject": "'; DROP TABLE messages; --"}));
    t.query(json!({"collection": "notes", "op": "define_collection",
                   "fields": {"title": "text", "n": "integer", "meta": "json"}}))
        .unwrap();
    t.query(json!({"collection": "notes", "op": "insert_one",
                   "document": {"_id": "n1", "title": "plain", "n": 1, "meta": {"a": "x"}}}))
        .unwrap();
    t
}

/// Run `request`; a refusal must be one of the query layer's own errors, not SQLite's.
fn run(t: &TestMailbox, request: Value) -> Result<QueryOutput, QueryError> {
    let result = t.query(request.clone());
    if let Err(QueryError::Sqlite(e)) = &result {
        panic!("{request} reached SQLite as an error: {e}");
    }
    result
}

fn refused(t: &TestMailbox, request: Value) -> QueryError {
    match run(t, request.clone()) {
        Err(e) => e,
        Ok(out) => panic!("{request} should be refused, gave {out:?}"),
    }
}

#[test]
fn hostile_reads_work_as_data_or_are_refused_and_change_nothing() {
    let t = setup();
    let before = t.dump();
    for text in HOSTILE {
        // as a value: plain data, compared literally
        let found = run(
            &t,
            json!({"collection": "messages", "op": "find",
                                    "filter": {"subject": text}}),
        )
        .unwrap();
        let QueryOutput::Documents(docs) = found else {
            panic!()
        };
        let expected = usize::from(*text == "'; DROP TABLE messages; --");
        assert_eq!(docs.len(), expected, "value {text:?}");
        for filter in [
            json!({"subject": {"$in": [text, text]}}),
            json!({"subject": {"$like": text}}),
            json!({"subject": {"$ilike": text}}),
            json!({"from.address": text}),
            json!({"from.address": {"$nin": [text]}}),
            json!({"keywords": {"$all": [text]}}),
            json!({"keywords": {"$elemMatch": {"$eq": text}}}),
            json!({"message_id": {"$gt": text}}),
        ] {
            run(
                &t,
                json!({"collection": "messages", "op": "find", "filter": filter}),
            )
            .unwrap();
        }
        // as a field name, sort key, projection, distinct field or collection name: refused
        for request in [
            json!({"collection": "messages", "op": "find", "filter": {*text: 1}}),
            json!({"collection": "messages", "op": "find", "filter": {format!("from.{text}"): 1}}),
            json!({"collection": "messages", "op": "find", "sort": {*text: 1}}),
            json!({"collection": "messages", "op": "find", "projection": {*text: 1}}),
            json!({"collection": "messages", "op": "distinct", "field": text}),
            json!({"collection": text, "op": "find"}),
            json!({"collection": "messages", "op": text}),
        ] {
            let error = refused(&t, request.clone());
            assert!(
                matches!(
                    error,
                    QueryError::UnknownField(_)
                        | QueryError::UnknownCollection(_)
                        | QueryError::InvalidValue { .. }
                        | QueryError::InvalidRequest(_)
                        | QueryError::UnknownOperator(_)
                ),
                "{request}: {error:?}"
            );
        }
        // as a regex: a valid pattern matches as a regex, an invalid one is refused clearly
        match run(
            &t,
            json!({"collection": "messages", "op": "count",
                             "filter": {"subject": {"$regex": text}}}),
        ) {
            Ok(QueryOutput::Count(_)) => {}
            Err(QueryError::InvalidValue { .. }) => {}
            other => panic!("regex {text:?}: {other:?}"),
        }
    }
    let unknown: Vec<Value> = vec![
        json!({"expression": "1=1"}),
        json!({"$expression": "1=1"}),
        json!({"$where": "sleep(1)"}),
        json!({"$expr": {"$eq": ["$uid", 1]}}),
        json!({"subject": {"expression": "1=1"}}),
        json!({"subject": {"$eq; DROP TABLE messages": 1}}),
        json!({"subject": {"$regex": "a", "$options": "'; --"}}),
        json!({"$or": "1=1"}),
        json!({"$and": [{"$where": "1"}]}),
        json!({"uid": {"$in": "1,2,3) OR (1=1"}}),
        json!({"envelope": {"$exists": true}}),
        json!({"body_id": 1}),
        json!({"rowid": 1}),
        json!({"folders.path": "INBOX"}),
        json!({"subject": {"$regex": "x{99999}{99999}"}}),
        json!({"subject": {"$regex": "a".repeat(5000)}}),
        json!({"uid": {"$in": vec![1; 10_001]}}),
        json!({"uid": "1 OR 1=1"}),
        json!({"seen": "true"}),
        json!({"subject": 1}),
        json!({"internal_date": "2026-01-01' OR '1'='1"}),
    ];
    for filter in unknown {
        refused(
            &t,
            json!({"collection": "messages", "op": "find", "filter": filter}),
        );
    }
    // numbers of every size are bound, never inlined
    for number in [
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.1),
    ] {
        let out = run(
            &t,
            json!({"collection": "messages", "op": "count",
                                 "filter": {"uid": {"$gte": number}}}),
        )
        .unwrap();
        assert!(matches!(out, QueryOutput::Count(_)), "{number}");
    }
    // deep nesting of every kind is refused before it costs anything
    for wrap in [
        |inner: Value| json!({"$and": [inner]}),
        |inner: Value| json!({"$nor": [inner]}),
    ] {
        let mut deep = json!({"uid": 1});
        for _ in 0..100 {
            deep = wrap(deep);
        }
        assert!(matches!(
            refused(
                &t,
                json!({"collection": "messages", "op": "find", "filter": deep})
            ),
            QueryError::TooComplex(_)
        ));
    }
    let mut not = json!({"$gt": 1});
    for _ in 0..100 {
        not = json!({"$not": not});
    }
    assert!(matches!(
        refused(
            &t,
            json!({"collection": "messages", "op": "find", "filter": {"uid": not}})
        ),
        QueryError::TooComplex(_)
    ));
    let mut elem = json!({"$eq": "x"});
    for _ in 0..100 {
        elem = json!({"$elemMatch": elem});
    }
    assert!(matches!(
        refused(
            &t,
            json!({"collection": "messages", "op": "find", "filter": {"keywords": elem}})
        ),
        QueryError::TooComplex(_)
    ));
    // internal tables are not collections
    for name in [
        "sqlite_master",
        "settings",
        "bodies",
        "app_notes",
        "query_collections",
    ] {
        assert!(matches!(
            refused(&t, json!({"collection": name, "op": "find"})),
            QueryError::UnknownCollection(_)
        ));
    }
    refused(
        &t,
        json!({"collection": "messages", "op": "find", "sql": "SELECT 1"}),
    );
    assert_eq!(t.dump(), before, "a read request changed the database");
}

#[test]
fn hostile_writes_store_plain_data_or_are_refused() {
    let t = setup();
    let before = t.dump();
    for text in HOSTILE {
        let QueryOutput::Inserted(ids) = run(
            &t,
            json!({"collection": "notes", "op": "insert_one",
            "document": {"title": text, "meta": {"k": text, "list": [text]}}}),
        )
        .unwrap() else {
            panic!()
        };
        let doc = &t.find("notes", json!({"_id": ids[0].clone()}))[0];
        assert_eq!(doc["title"], json!(text));
        assert_eq!(doc["meta"]["list"][0], json!(text));
        assert_eq!(t.ids("notes", json!({"meta.k": text})).len(), 1);
        run(
            &t,
            json!({"collection": "notes", "op": "update_one", "filter": {"_id": ids[0].clone()},
                       "update": {"$set": {"meta.k": text}, "$push": {"meta.list": text}}}),
        )
        .unwrap();
        run(
            &t,
            json!({"collection": "notes", "op": "delete_one", "filter": {"_id": ids[0].clone()}}),
        )
        .unwrap();
        // text as an identifier: refused
        for request in [
            json!({"collection": "notes", "op": "insert_one", "document": {*text: 1}}),
            json!({"collection": "notes", "op": "update_many", "filter": {},
                   "update": {"$set": {*text: 1}}}),
            json!({"collection": "notes", "op": "update_many", "filter": {},
                   "update": {"$rename": {"title": text}}}),
            json!({"collection": "notes", "op": "define_collection", "fields": {*text: "text"}}),
            json!({"collection": "notes", "op": "define_collection",
                   "fields": {"title": "text", "n": "integer", "meta": "json"},
                   "indexes": [[text]]}),
            json!({"collection": text, "op": "define_collection", "fields": {"a": "text"}}),
            json!({"collection": "notes", "op": "define_collection", "fields": {"x": text}}),
        ] {
            refused(&t, request);
        }
    }
    for update in [
        json!({"$set": {"meta": {"$gt": 1}}}),
        json!({"$set": {"meta.a": {"expression": 1, "$where": 2}}}),
        json!({"$where": {"title": 1}}),
        json!({"title": "replace"}),
        json!({"$inc": {"n": "1; DROP TABLE notes"}}),
        json!({"$set": {"_id": "other"}}),
    ] {
        refused(
            &t,
            json!({"collection": "notes", "op": "update_many", "filter": {}, "update": update}),
        );
    }
    for write in [
        json!({"collection": "messages", "op": "insert_one", "document": {"subject": "x"}}),
        json!({"collection": "folders", "op": "delete_many", "filter": {}}),
        json!({"collection": "threads", "op": "update_many", "filter": {}, "update": {"$set": {"message_count": 0}}}),
    ] {
        assert!(matches!(
            refused(&t, write),
            QueryError::ReadOnlyCollection(_)
        ));
    }
    assert_eq!(t.dump(), before, "hostile writes left something behind");
}

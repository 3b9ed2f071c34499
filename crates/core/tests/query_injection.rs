//! Injection suite: hostile field names, values, regexes, operators, collection names and
//! nesting. Each request either works with the hostile text as plain data or is refused with a
//! specific error (never a database error); afterwards the database is byte-for-byte the same.

mod query_support;

use proptest::prelude::*;
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
    assert!(t.dump() == before, "a read request changed the database");
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
    assert!(t.dump() == before, "hostile writes left something behind");
}

const KEYS: &[&str] = &[
    "$and",
    "$or",
    "$nor",
    "$not",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$regex",
    "$options",
    "$like",
    "$ilike",
    "$elemMatch",
    "$size",
    "$all",
    "$where",
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$currentDate",
    "$push",
    "$each",
    "$slice",
    "$addToSet",
    "$pull",
    "$pop",
    "$date",
    "$binary",
    "subject",
    "uid",
    "seen",
    "from",
    "from.address",
    "keywords",
    "keywords.0",
    "folder",
    "internal_date",
    "title",
    "n",
    "meta",
    "meta.a",
    "meta.a.0",
    "_id",
    "id",
    "nope",
    "a'b",
    "",
];

fn grammar_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(&[0i64, 1, -1, 2, i64::MAX, i64::MIN][..]).prop_map(Value::from),
        Just(json!(1.5)),
        prop::sample::select(
            &[
                "x",
                "INBOX",
                "^a",
                "i",
                "imsx",
                "2026-01-01",
                "string",
                "array",
                "'; --",
                "AAEC",
                "a%",
                "(",
                "date"
            ][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn grammar_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), grammar_value()), 0..4).prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

/// The arguments each operation takes (and, rarely, one it does not).
const OPS: &[(&str, &[&str])] = &[
    ("find", &["filter", "projection", "sort", "skip", "limit"]),
    ("find_one", &["filter", "projection", "sort"]),
    ("count", &["filter"]),
    ("distinct", &["filter", "field"]),
    ("insert_one", &["document"]),
    ("insert_many", &["documents"]),
    ("update_one", &["filter", "update", "upsert"]),
    ("update_many", &["filter", "update", "upsert"]),
    ("delete_one", &["filter"]),
    ("delete_many", &["filter"]),
    ("define_collection", &["fields", "indexes"]),
    ("find", &["filter", "bogus"]),
];

fn grammar_request() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(
            &[
                "messages",
                "notes",
                "folders",
                "threads",
                "attachments",
                "nope",
            ][..],
        ),
        prop::sample::select(OPS),
    )
        .prop_flat_map(|(collection, (op, args))| {
            let values: Vec<_> = args
                .iter()
                .map(|arg| {
                    let value = match *arg {
                        "field" => prop::sample::select(KEYS).prop_map(Value::from).boxed(),
                        "documents" => prop::collection::vec(grammar_object(), 0..3)
                            .prop_map(Value::Array)
                            .boxed(),
                        "skip" | "limit" => (0u64..3).prop_map(Value::from).boxed(),
                        "upsert" => any::<bool>().prop_map(Value::Bool).boxed(),
                        "indexes" => grammar_value().boxed(),
                        _ => grammar_object().boxed(),
                    };
                    (Just(*arg), prop::option::weighted(0.7, value))
                })
                .collect();
            (Just(collection), Just(op), values)
        })
        .prop_map(|(collection, op, args)| {
            let mut request = serde_json::Map::new();
            request.insert("collection".into(), json!(collection));
            request.insert("op".into(), json!(op));
            for (key, value) in args {
                if let Some(value) = value {
                    request.insert(key.into(), value);
                }
            }
            Value::Object(request)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Structured fuzzing in the ordinary test run (the libFuzzer target needs nightly):
    /// requests assembled from operators, field names and values. None may reach SQLite as an
    /// error, and the built-in tables never change.
    #[test]
    fn grammar_fuzz_never_errs_in_sqlite_nor_touches_builtin_tables(request in grammar_request()) {
        thread_local!(static MAILBOX: (TestMailbox, String) = {
            let t = setup();
            let builtin = t.dump_tables(builtin_table);
            (t, builtin)
        });
        MAILBOX.with(|(t, builtin)| {
            let _ = run(t, request.clone());
            // compared without printing: the dump holds the mailbox's sealing key
            assert!(&t.dump_tables(builtin_table) == builtin, "{request} changed a built-in table");
        });
    }
}

/// Everything but application collections (`app_*`, with their automatic indexes) and their
/// definitions (`query_*`).
fn builtin_table(name: &str) -> bool {
    let name = name.strip_prefix("sqlite_autoindex_").unwrap_or(name);
    !name.starts_with("app_") && !name.starts_with("query_")
}

//! Known-answer tests: each operator against hand-written expectations, on an application
//! collection and on the built-in mailbox collections; plus every operation and the schema
//! evolution rules.

mod query_support;

use query_support::{TestMailbox, set};
use sealmail_core::query::{QueryError, QueryOutput};
use sealmail_core::store::Mailbox;
use serde_json::{Value, json};

fn items() -> TestMailbox {
    let t = TestMailbox::new();
    t.query(json!({
        "collection": "items", "op": "define_collection",
        "fields": {"n": "integer", "r": "real", "s": "text", "b": "boolean", "d": "date",
                   "bin": "binary", "j": "json", "tags": {"type": "json"}},
        "indexes": ["n", {"fields": ["s", "d"]}]
    }))
    .unwrap();
    let inserted = t
        .query(json!({"collection": "items", "op": "insert_many", "documents": [
            {"_id": "1", "n": 1, "s": "apple", "b": true, "d": "2026-01-01",
             "tags": ["red", "green"], "j": {"a": 1, "list": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}},
            {"_id": "2", "n": 5, "s": "Banana", "b": false, "d": "2026-06-01T12:00:00Z",
             "tags": ["yellow"], "j": {"a": "1", "b": null}},
            {"_id": "3", "n": 10, "r": 2.5, "s": "cherry", "tags": [], "j": {"a": [1, 2, 3]}},
            {"_id": "4", "s": "a%b_c", "bin": {"$binary": "AAEC"},
             "j": {"list": [{"k": "x", "v": 5}], "x_1": true}, "tags": ["red", ["nested"]]},
            {"_id": "5", "n": -3, "s": "ünïcode\nline two", "b": true, "tags": "red"}
        ]}))
        .unwrap();
    assert_eq!(
        inserted,
        QueryOutput::Inserted(vec![
            json!("1"),
            json!("2"),
            json!("3"),
            json!("4"),
            json!("5")
        ])
    );
    t
}

#[test]
fn filter_operators_known_answers() {
    let t = items();
    let all = set(&["1", "2", "3", "4", "5"]);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["1", "2", "3", "4", "5"]),
        // comparisons on typed fields
        (json!({"n": 5}), vec!["2"]),
        (json!({"n": {"$eq": 5}}), vec!["2"]),
        (json!({"n": {"$gt": 1}}), vec!["2", "3"]),
        (json!({"n": {"$gte": 1, "$lt": 10}}), vec!["1", "2"]),
        (json!({"n": {"$lte": -3}}), vec!["5"]),
        (json!({"n": {"$gt": 4.5}}), vec!["2", "3"]),
        (json!({"n": {"$ne": 5}}), vec!["1", "3", "4", "5"]),
        (json!({"n": null}), vec!["4"]),
        (json!({"n": {"$gte": null}}), vec!["4"]),
        (json!({"n": {"$gt": null}}), vec![]),
        (json!({"n": {"$exists": false}}), vec!["4"]),
        (json!({"n": {"$exists": true}}), vec!["1", "2", "3", "5"]),
        (json!({"n": {"$in": [1, 10]}}), vec!["1", "3"]),
        (
            json!({"n": {"$in": (10..30).collect::<Vec<i64>>()}}),
            vec!["3"],
        ),
        (
            json!({"n": {"$nin": (-5..2).chain(10..30).collect::<Vec<i64>>()}}),
            vec!["2", "4"],
        ),
        (json!({"n": {"$in": []}}), vec![]),
        (json!({"n": {"$nin": []}}), vec!["1", "2", "3", "4", "5"]),
        (json!({"n": {"$in": [null, 5]}}), vec!["2", "4"]),
        (json!({"n": {"$nin": [1, null]}}), vec!["2", "3", "5"]),
        (json!({"n": {"$type": "int"}}), vec!["1", "2", "3", "5"]),
        (json!({"n": {"$type": "string"}}), vec![]),
        (json!({"n": {"$not": {"$gt": 1}}}), vec!["1", "4", "5"]),
        (json!({"r": {"$gt": 2.4, "$lt": 3}}), vec!["3"]),
        (json!({"r": 2.5}), vec!["3"]),
        (json!({"b": true}), vec!["1", "5"]),
        (json!({"b": false}), vec!["2"]),
        (json!({"b": {"$ne": true}}), vec!["2", "3", "4"]),
        (json!({"d": {"$gte": "2026-03-01"}}), vec!["2"]),
        (
            json!({"d": {"$lt": {"$date": "2026-06-01T14:00:00+02:00"}}}),
            vec!["1"],
        ),
        (
            json!({"d": {"$lte": "2026-06-01T14:00:00+02:00"}}),
            vec!["1", "2"],
        ),
        (json!({"bin": {"$binary": "AAEC"}}), vec!["4"]),
        (
            json!({"bin": {"$in": [{"$binary": "AAEC"}, {"$binary": "AA=="}]}}),
            vec!["4"],
        ),
        (json!({"_id": "3"}), vec!["3"]),
        (json!({"_id": {"$in": ["1", "2", "nope"]}}), vec!["1", "2"]),
        // patterns
        (json!({"s": {"$regex": "^a"}}), vec!["1", "4"]),
        (json!({"s": {"$regex": "^b", "$options": "i"}}), vec!["2"]),
        (json!({"s": {"$regex": "^b"}}), vec![]),
        (json!({"s": {"$regex": "^a.*b_c$"}}), vec!["4"]),
        (
            json!({"s": {"$regex": "^line", "$options": "m"}}),
            vec!["5"],
        ),
        (json!({"s": {"$regex": "^line"}}), vec![]),
        (
            json!({"s": {"$regex": "code.line", "$options": "s"}}),
            vec!["5"],
        ),
        (json!({"s": {"$regex": "code.line"}}), vec![]),
        (
            json!({"s": {"$regex": "^ c h e r r y $  # spaced out", "$options": "x"}}),
            vec!["3"],
        ),
        (
            json!({"s": {"$not": {"$regex": "^a"}}}),
            vec!["2", "3", "5"],
        ),
        (json!({"s": {"$like": "a%"}}), vec!["1", "4"]),
        (json!({"s": {"$like": "A%"}}), vec![]),
        (json!({"s": {"$ilike": "A%"}}), vec!["1", "4"]),
        (json!({"s": {"$like": "a\\%b\\_c"}}), vec!["4"]),
        (json!({"s": {"$like": "a_b%"}}), vec!["4"]),
        (json!({"s": {"$like": "_pple"}}), vec!["1"]),
        (json!({"s": {"$ilike": "ÜNÏ%"}}), vec!["5"]),
        // arrays in a JSON field
        (json!({"tags": "red"}), vec!["1", "4", "5"]),
        (json!({"tags": ["yellow"]}), vec!["2"]),
        (json!({"tags": ["nested"]}), vec!["4"]),
        (json!({"tags": {"$all": ["red", "green"]}}), vec!["1"]),
        (json!({"tags": {"$all": []}}), vec![]),
        (json!({"tags": {"$size": 0}}), vec!["3"]),
        (json!({"tags": {"$size": 2}}), vec!["1", "4"]),
        (
            json!({"tags": {"$in": ["yellow", "green"]}}),
            vec!["1", "2"],
        ),
        (json!({"tags": {"$nin": ["red"]}}), vec!["2", "3"]),
        (json!({"tags": {"$ne": "red"}}), vec!["2", "3"]),
        (
            json!({"tags": {"$type": "array"}}),
            vec!["1", "2", "3", "4"],
        ),
        (
            json!({"tags": {"$type": "string"}}),
            vec!["1", "2", "4", "5"],
        ),
        (
            json!({"tags": {"$elemMatch": {"$regex": "^gr"}}}),
            vec!["1"],
        ),
        (
            json!({"tags": {"$elemMatch": {"$eq": "red"}}}),
            vec!["1", "4"],
        ),
        (json!({"tags": {"$gt": "x"}}), vec!["2"]),
        // dotted paths
        (json!({"j.a": 1}), vec!["1", "3"]),
        (json!({"j.a": "1"}), vec!["2"]),
        (json!({"j.a": {"$gt": 1}}), vec!["3"]),
        (json!({"j.a": {"$type": "string"}}), vec!["2"]),
        (json!({"j.a": [1, 2, 3]}), vec!["3"]),
        (json!({"j.a.1": 2}), vec!["3"]),
        (json!({"j.b": null}), vec!["1", "2", "3", "4", "5"]),
        (json!({"j.b": {"$exists": true}}), vec!["2"]),
        (json!({"j.b": {"$type": "null"}}), vec!["2"]),
        (json!({"j.a": {"$exists": false}}), vec!["4", "5"]),
        (json!({"j.x_1": true}), vec!["4"]),
        (json!({"j.list.k": "x"}), vec!["1", "4"]),
        (json!({"j.list.0.k": "y"}), vec![]),
        (json!({"j.list.1.k": "y"}), vec!["1"]),
        (
            json!({"j.list": {"$elemMatch": {"k": "x", "v": {"$gt": 2}}}}),
            vec!["4"],
        ),
        (
            json!({"j.list": {"$elemMatch": {"k": "y", "v": 1}}}),
            vec![],
        ),
        (json!({"j.list.k": "y", "j.list.v": 1}), vec!["1"]),
        (json!({"j.list.v": {"$gte": 2, "$lte": 2}}), vec!["1"]),
        (json!({"j": {"$type": "object"}}), vec!["1", "2", "3", "4"]),
        (json!({"j": {"$exists": false}}), vec!["5"]),
        (json!({"j.a": {"$in": [3, "1"]}}), vec!["2", "3"]),
        // logic
        (json!({"$or": [{"n": 1}, {"s": "cherry"}]}), vec!["1", "3"]),
        (
            json!({"$nor": [{"n": 1}, {"s": "cherry"}]}),
            vec!["2", "4", "5"],
        ),
        (json!({"$and": [{"n": {"$gt": 0}}, {"b": true}]}), vec!["1"]),
        (
            json!({"$or": [{"n": {"$in": []}}, {"j.a": {"$size": 3}}]}),
            vec!["3"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            t.ids("items", filter.clone()),
            set(&expected),
            "filter {filter}"
        );
    }
    assert_eq!(t.ids("items", json!({})), all);
}

#[test]
fn typed_fields_refuse_mismatched_values() {
    let t = items();
    let find =
        |filter: Value| t.query(json!({"collection": "items", "op": "find", "filter": filter}));
    assert!(matches!(
        find(json!({"n": "5"})),
        Err(QueryError::InvalidValue { .. })
    ));
    assert!(matches!(
        find(json!({"s": {"$size": 1}})),
        Err(QueryError::InvalidValue { .. })
    ));
    assert!(matches!(
        find(json!({"b": {"$regex": "x"}})),
        Err(QueryError::InvalidValue { .. })
    ));
    assert!(matches!(
        find(json!({"d": "tomorrow"})),
        Err(QueryError::InvalidValue { .. })
    ));
    assert!(
        matches!(find(json!({"n": {"$foo": 1}})), Err(QueryError::UnknownOperator(op)) if op == "$foo")
    );
    assert!(matches!(find(json!({"nope": 1})), Err(QueryError::UnknownField(f)) if f == "nope"));
    assert!(matches!(find(json!({"s.x": 1})), Err(QueryError::UnknownField(f)) if f == "s.x"));
    assert!(matches!(
        t.query(json!({"collection": "nope", "op": "find"})),
        Err(QueryError::UnknownCollection(c)) if c == "nope"
    ));
}

#[test]
fn find_options_projection_sort_skip_limit() {
    let t = items();
    let docs = match t
        .query(
            json!({"collection": "items", "op": "find", "filter": {"n": {"$exists": true}},
                      "projection": {"n": 1, "s": 1}, "sort": {"n": -1}, "skip": 1, "limit": 2}),
        )
        .unwrap()
    {
        QueryOutput::Documents(docs) => docs,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        docs,
        vec![
            json!({"_id": "2", "n": 5, "s": "Banana"}),
            json!({"_id": "1", "n": 1, "s": "apple"})
        ]
    );
    let one = t
        .query(
            json!({"collection": "items", "op": "find_one", "filter": {"_id": "4"},
                      "projection": {"bin": 1, "_id": 0}}),
        )
        .unwrap();
    assert_eq!(
        one,
        QueryOutput::Documents(vec![
            json!({"bin": {"$binary": {"base64": "AAEC", "subType": "00"}}})
        ])
    );
    let excluded = t
        .query(
            json!({"collection": "items", "op": "find", "filter": {"_id": "3"},
                      "projection": {"j": 0, "tags": 0, "s": 0}}),
        )
        .unwrap();
    assert_eq!(
        excluded,
        QueryOutput::Documents(vec![json!({"_id": "3", "n": 10, "r": 2.5})])
    );
    let sorted = t
        .query(
            json!({"collection": "items", "op": "find", "projection": {"_id": 1},
                      "sort": [{"b": -1}, ["n", 1]]}),
        )
        .unwrap();
    assert_eq!(
        sorted,
        QueryOutput::Documents(
            ["5", "1", "2", "4", "3"]
                .iter()
                .map(|id| json!({"_id": id}))
                .collect()
        )
    );
    assert!(
        t.query(json!({"collection": "items", "op": "find", "sort": {"b": 1, "n": 1}}))
            .is_err()
    );
    assert!(
        t.query(json!({"collection": "items", "op": "find", "projection": {"n": 1, "s": 0}}))
            .is_err()
    );
    assert!(
        t.query(json!({"collection": "items", "op": "find", "filters": {}}))
            .is_err()
    );
}

#[test]
fn count_and_distinct() {
    let t = items();
    assert_eq!(
        t.query(json!({"collection": "items", "op": "count", "filter": {"tags": "red"}}))
            .unwrap(),
        QueryOutput::Count(3)
    );
    let QueryOutput::Values(mut tags) = t
        .query(json!({"collection": "items", "op": "distinct", "field": "tags"}))
        .unwrap()
    else {
        panic!()
    };
    tags.sort_by_key(|v| v.to_string());
    assert_eq!(
        tags,
        vec![
            json!("green"),
            json!("red"),
            json!("yellow"),
            json!(["nested"])
        ]
    );
    assert_eq!(
        t.query(json!({"collection": "items", "op": "distinct", "field": "j.list.k"}))
            .unwrap(),
        QueryOutput::Values(vec![json!("x"), json!("y")])
    );
    assert_eq!(
        t.query(
            json!({"collection": "items", "op": "distinct", "field": "b",
                       "filter": {"n": {"$gt": 0}}})
        )
        .unwrap(),
        QueryOutput::Values(vec![json!(false), json!(true)])
    );
}

#[test]
fn writes_insert_update_upsert_delete() {
    let t = items();
    let QueryOutput::Inserted(ids) = t
        .query(json!({"collection": "items", "op": "insert_one", "document": {"n": 7}}))
        .unwrap()
    else {
        panic!()
    };
    let id = ids[0].as_str().unwrap().to_owned();
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(matches!(
        t.query(json!({"collection": "items", "op": "insert_one", "document": {"_id": "1"}})),
        Err(QueryError::DuplicateKey(_))
    ));
    assert!(matches!(
        t.query(json!({"collection": "items", "op": "insert_one", "document": {"zzz": 1}})),
        Err(QueryError::UnknownField(f)) if f == "zzz"
    ));
    // insert_many is atomic: a bad document leaves nothing behind
    let before = t.dump();
    assert!(
        t.query(json!({"collection": "items", "op": "insert_many",
                      "documents": [{"_id": "new"}, {"n": "bad"}]}))
            .is_err()
    );
    assert!(t.dump() == before, "a refused write changed the database");

    let updated = t
        .query(
            json!({"collection": "items", "op": "update_many", "filter": {"tags": "red"},
                      "update": {"$inc": {"n": 1}, "$push": {"j.log": "seen"},
                                 "$currentDate": {"d": true}}}),
        )
        .unwrap();
    assert_eq!(
        updated,
        QueryOutput::Updated(sealmail_core::query::UpdateResult {
            matched: 3,
            modified: 3,
            upserted_id: None
        })
    );
    assert_eq!(t.ids("items", json!({"n": 2})), set(&["1"]));
    assert_eq!(t.ids("items", json!({"n": 1})), set(&["4"]));
    assert_eq!(
        t.ids("items", json!({"j.log": "seen"})),
        set(&["1", "4", "5"])
    );
    assert_eq!(
        t.ids("items", json!({"d": {"$gte": "2026-11-01"}})),
        set(&["1", "4", "5"])
    );

    let one = t
        .query(
            json!({"collection": "items", "op": "update_one", "filter": {"s": "cherry"},
                      "update": {"$set": {"s": "Cherry"}, "$unset": {"r": ""}}}),
        )
        .unwrap();
    assert!(matches!(one, QueryOutput::Updated(r) if r.matched == 1 && r.modified == 1));
    assert_eq!(
        t.find("items", json!({"_id": "3"}))[0]["s"],
        json!("Cherry")
    );
    assert_eq!(t.find("items", json!({"_id": "3"}))[0].get("r"), None);

    let upserted = t
        .query(
            json!({"collection": "items", "op": "update_one", "upsert": true,
                      "filter": {"s": "kiwi", "n": 3}, "update": {"$set": {"b": true}}}),
        )
        .unwrap();
    let QueryOutput::Updated(result) = upserted else {
        panic!()
    };
    assert_eq!(result.matched, 0);
    let new_id = result.upserted_id.unwrap();
    let doc = &t.find("items", json!({"_id": new_id.clone()}))[0];
    assert_eq!(doc, &json!({"_id": new_id, "s": "kiwi", "n": 3, "b": true}));

    assert!(matches!(
        t.query(
            json!({"collection": "items", "op": "update_one", "filter": {},
                       "update": {"$set": {"n": "x"}}})
        ),
        Err(QueryError::InvalidValue { .. })
    ));
    assert_eq!(
        t.query(json!({"collection": "items", "op": "delete_one", "filter": {"tags": "red"}}))
            .unwrap(),
        QueryOutput::Deleted(1)
    );
    assert_eq!(
        t.query(json!({"collection": "items", "op": "delete_many", "filter": {"tags": "red"}}))
            .unwrap(),
        QueryOutput::Deleted(2)
    );
    assert_eq!(
        t.query(json!({"collection": "items", "op": "count"}))
            .unwrap(),
        // 5 seeded + 1 inserted + 1 upserted - 3 deleted
        QueryOutput::Count(4)
    );
}

#[test]
fn schema_evolution_is_additive_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    let key = sealmail_core::MailboxKey::generate();
    let mailbox = Mailbox::create(&path, &key).unwrap();
    let define = |mailbox: &Mailbox, fields: Value, indexes: Value| {
        mailbox.query(&json!({"collection": "notes", "op": "define_collection",
                              "fields": fields, "indexes": indexes}))
    };
    let created = define(&mailbox, json!({"title": "text"}), json!([])).unwrap();
    assert!(matches!(&created, QueryOutput::Defined(o) if o.created && o.version == 1));
    mailbox
        .query(&json!({"collection": "notes", "op": "insert_one", "document": {"title": "a"}}))
        .unwrap();
    drop(mailbox);

    let mailbox = Mailbox::open(&path, &key).unwrap();
    let same = define(&mailbox, json!({"title": "text"}), json!([])).unwrap();
    assert!(
        matches!(&same, QueryOutput::Defined(o) if !o.created && o.version == 1
        && o.added_fields.is_empty())
    );
    let grown = define(
        &mailbox,
        json!({"title": "text", "pinned": "boolean"}),
        json!([{"fields": {"title": 1}, "unique": true}]),
    )
    .unwrap();
    let QueryOutput::Defined(outcome) = grown else {
        panic!()
    };
    assert_eq!(outcome.version, 2);
    assert_eq!(outcome.added_fields, vec!["pinned"]);
    assert_eq!(outcome.added_indexes, vec!["app_notes__title__unique"]);
    // the old row is still there and the new field is usable
    mailbox
        .query(
            &json!({"collection": "notes", "op": "update_many", "filter": {},
                       "update": {"$set": {"pinned": true}}}),
        )
        .unwrap();
    assert_eq!(
        mailbox
            .query(&json!({"collection": "notes", "op": "find", "projection": {"_id": 0}}))
            .unwrap(),
        QueryOutput::Documents(vec![json!({"title": "a", "pinned": true})])
    );
    // the unique index holds
    assert!(matches!(
        mailbox
            .query(&json!({"collection": "notes", "op": "insert_one", "document": {"title": "a"}})),
        Err(QueryError::DuplicateKey(_))
    ));
    for (fields, indexes) in [
        (
            json!({"title": "text"}),
            json!([{"fields": ["title"], "unique": true}]),
        ),
        (
            json!({"title": "integer", "pinned": "boolean"}),
            json!([{"fields": ["title"], "unique": true}]),
        ),
        (json!({"title": "text", "pinned": "boolean"}), json!([])),
    ] {
        assert!(matches!(
            define(&mailbox, fields, indexes),
            Err(QueryError::DestructiveSchemaChange { .. })
        ));
    }
    for bad in ["messages", "bad-name", "", "x\"y"] {
        assert!(
            mailbox
                .query(&json!({"collection": bad, "op": "define_collection", "fields": {}}))
                .is_err()
        );
    }
    let changes: Vec<i64> = {
        let raw = sealmail_core::store::Mailbox::raw_connection(&path, &key).unwrap();
        raw.prepare(
            "SELECT version FROM query_collection_changes WHERE name = 'notes' ORDER BY version",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(changes, vec![1, 2]);
}

fn mailbox_with_messages() -> TestMailbox {
    let t = TestMailbox::new();
    let inbox = t.add_folder("INBOX");
    let archive = t.add_folder("Archive");
    t.add_message(
        inbox,
        1,
        json!({"seen": 1, "subject": "Re: lunch", "thread_id": 1}),
    );
    t.add_message(
        inbox,
        2,
        json!({"subject": "Invoice 42", "keywords": r#"["$label1","work"]"#,
        "internal_date": "2026-11-20T08:00:00Z", "size": 50000, "thread_id": 2}),
    );
    t.add_message(
        inbox,
        3,
        json!({"flagged": 1, "subject": null, "thread_id": 1,
        "from": r#"[{"name":"Carol","address":"carol@other.net"}]"#}),
    );
    t.add_message(
        archive,
        1,
        json!({"deleted": 1, "subject": "old", "date": null}),
    );
    t
}

#[test]
fn builtin_messages_collection() {
    let t = mailbox_with_messages();
    let uids = |filter: Value| -> Vec<i64> {
        let mut uids: Vec<i64> = t
            .find("messages", filter)
            .iter()
            .map(|doc| doc["uid"].as_i64().unwrap())
            .collect();
        uids.sort();
        uids
    };
    assert_eq!(uids(json!({"folder": "INBOX", "seen": false})), vec![2, 3]);
    assert_eq!(uids(json!({"folder": "Archive"})), vec![1]);
    // `folder` is looked up through folder_id; negations and null keep their meaning
    assert_eq!(uids(json!({"folder": {"$ne": "INBOX"}})), vec![1]);
    assert_eq!(
        uids(json!({"folder": {"$in": ["Archive", "Nope"]}})),
        vec![1]
    );
    assert_eq!(
        uids(json!({"folder": {"$regex": "^arch", "$options": "i"}})),
        vec![1]
    );
    assert_eq!(
        uids(json!({"folder": {"$not": {"$regex": "^arch", "$options": "i"}}})),
        vec![1, 2, 3]
    );
    assert_eq!(uids(json!({"folder": null})), Vec::<i64>::new());
    // an equality on `folder` is a scalar lookup; a missing folder matches nothing, and its
    // negation everything, as with an empty list
    assert_eq!(uids(json!({"folder": "Nope"})), Vec::<i64>::new());
    assert_eq!(
        uids(json!({"$nor": [{"folder": "Nope"}]})),
        vec![1, 1, 2, 3]
    );
    assert_eq!(uids(json!({"$nor": [{"folder": "INBOX"}]})), vec![1]);
    assert_eq!(
        uids(json!({"$or": [{"folder": "Archive"}, {"folder": "Nope", "uid": 2}]})),
        vec![1]
    );
    assert_eq!(uids(json!({"folder": {"$exists": true}})), vec![1, 1, 2, 3]);
    assert_eq!(
        uids(json!({"from.address": {"$regex": "@example\\.com$"}})),
        vec![1, 1, 2]
    );
    assert_eq!(uids(json!({"from.name": "Carol"})), vec![3]);
    assert_eq!(
        uids(json!({"to.name": null, "folder": "INBOX"})),
        vec![1, 2, 3]
    );
    assert_eq!(uids(json!({"keywords": "$label1"})), vec![2]);
    assert_eq!(
        uids(json!({"internal_date": {"$gt": "2026-11-10"}})),
        vec![2]
    );
    assert_eq!(uids(json!({"subject": null})), vec![3]);
    assert_eq!(uids(json!({"date": {"$exists": false}})), vec![1]);
    assert_eq!(uids(json!({"flagged": true, "deleted": false})), vec![3]);
    assert_eq!(uids(json!({"size": {"$gte": 10000}})), vec![2]);
    assert_eq!(
        uids(json!({"subject": {"$regex": "^re:", "$options": "i"}})),
        vec![1]
    );
    let doc = &t.find("messages", json!({"uid": 2, "folder": "INBOX"}))[0];
    assert_eq!(doc["folder"], json!("INBOX"));
    assert_eq!(doc["keywords"], json!(["$label1", "work"]));
    assert_eq!(doc["from"][0]["address"], json!("alice@example.com"));
    assert_eq!(doc["seen"], json!(false));
    assert_eq!(doc["internal_date"], json!("2026-11-20T08:00:00Z"));
    assert!(doc.get("envelope").is_none() && doc.get("body_structure").is_none());

    let page = t
        .query(
            json!({"collection": "messages", "op": "find", "filter": {"folder_id": 1},
                      "projection": {"uid": 1, "subject": 1}, "sort": {"uid": -1}, "limit": 2}),
        )
        .unwrap();
    let QueryOutput::Documents(page) = page else {
        panic!()
    };
    assert_eq!(
        page,
        vec![
            json!({"id": 3, "uid": 3}),
            json!({"id": 2, "uid": 2, "subject": "Invoice 42"})
        ]
    );

    assert_eq!(
        t.query(
            json!({"collection": "threads", "op": "find", "filter": {"message_count": 2},
                       "projection": {"unseen_count": 1}})
        )
        .unwrap(),
        QueryOutput::Documents(vec![json!({"id": 1, "unseen_count": 1})])
    );
    assert_eq!(
        t.query(
            json!({"collection": "folders", "op": "distinct", "field": "path",
                       "filter": {"path": {"$regex": "^(INBOX|Archive)$"}}})
        )
        .unwrap(),
        QueryOutput::Values(vec![json!("Archive"), json!("INBOX")])
    );
    assert_eq!(
        t.query(json!({"collection": "attachments", "op": "count"}))
            .unwrap(),
        QueryOutput::Count(0)
    );
    let before = t.dump();
    for write in [
        json!({"collection": "messages", "op": "delete_many", "filter": {}}),
        json!({"collection": "messages", "op": "update_many", "filter": {}, "update": {"$set": {"seen": true}}}),
        json!({"collection": "folders", "op": "insert_one", "document": {"path": "x"}}),
        json!({"collection": "messages", "op": "define_collection", "fields": {}}),
    ] {
        assert!(t.query(write.clone()).is_err(), "{write}");
    }
    assert!(matches!(
        t.query(json!({"collection": "messages", "op": "delete_one", "filter": {}})),
        Err(QueryError::ReadOnlyCollection(c)) if c == "messages"
    ));
    assert!(t.dump() == before, "a refused write changed the database");
}

/// The text form of `find`/`find_one` answers with the documents of the value form, for the
/// built-in messages (JSON columns written by the store, folder looked up, NULLs left out).
#[test]
fn find_text_answers_with_the_documents_of_find() {
    let t = mailbox_with_messages();
    for request in [
        json!({"collection": "messages", "op": "find"}),
        json!({"collection": "messages", "op": "find", "filter": {"folder": "INBOX", "seen": false},
               "projection": {"uid": 1, "subject": 1, "from": 1, "date": 1, "size": 1,
                              "seen": 1, "flagged": 1}, "sort": {"uid": -1}, "limit": 50}),
        json!({"collection": "messages", "op": "find", "filter": {"from.address": "alice@example.com"},
               "projection": {"id": 0, "uid": 1, "keywords": 1}, "sort": {"date": -1}}),
        json!({"collection": "messages", "op": "find", "projection": {"subject": 0, "to": 0},
               "skip": 1, "limit": 2}),
        json!({"collection": "messages", "op": "find", "filter": {"uid": 999}}),
        json!({"collection": "messages", "op": "find_one", "sort": {"uid": -1}}),
        json!({"collection": "messages", "op": "find_one", "filter": {"uid": 999}}),
        json!({"collection": "threads", "op": "find"}),
    ] {
        let text = t.mailbox.query_find_text(&request).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let expected = match t.query(request.clone()).unwrap() {
            QueryOutput::Documents(docs) if request["op"] == "find_one" => {
                docs.into_iter().next().unwrap_or(Value::Null)
            }
            QueryOutput::Documents(docs) => Value::Array(docs),
            other => panic!("{request} gave {other:?}"),
        };
        assert_eq!(parsed, expected, "{request}");
    }
    let first: Value = serde_json::from_str(
        &t.mailbox
            .query_find_text(&json!({"collection": "messages", "op": "find_one",
                                     "filter": {"uid": 2, "folder": "INBOX"}}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["keywords"], json!(["$label1", "work"]));
    assert_eq!(first["from"][0]["address"], json!("alice@example.com"));
    // Only finds answer with documents; errors are those of the value form.
    assert!(matches!(
        t.mailbox
            .query_find_text(&json!({"collection": "messages", "op": "count"})),
        Err(QueryError::InvalidRequest(_))
    ));
    assert!(matches!(
        t.mailbox.query_find_text(&json!({"collection": "messages", "op": "find", "filter": {"nope": 1}})),
        Err(QueryError::UnknownField(f)) if f == "nope"
    ));
}

/// The store's own JSON columns (addresses, keywords) reach text answers as stored, without
/// being parsed and printed again, and still answer with the documents of the value form;
/// bytes that are not UTF-8 fail both forms as before, and text columns get the same
/// replacement characters in both.
#[test]
fn find_text_copies_the_stores_json_columns_as_stored() {
    let t = mailbox_with_messages();
    // Spacing and key order serde_json would not print: only a verbatim copy keeps them.
    let stored = r#"[ {"name": "Carol", "address": "carol@other.net"} ]"#;
    t.raw
        .execute(
            "UPDATE messages SET from_addr = ?1, keywords = '[ \"a\" ]', \
             subject = CAST(x'61ff62' AS TEXT) WHERE uid = 3",
            [stored],
        )
        .unwrap();
    let request = json!({"collection": "messages", "op": "find",
        "filter": {"uid": 3, "folder": "INBOX"},
        "projection": {"from": 1, "keywords": 1, "subject": 1, "id": 0}});
    let text = t.mailbox.query_find_text(&request).unwrap();
    assert_eq!(
        text,
        format!(
            r#"[{{"from":{stored},"keywords":[ "a" ],"subject":"a{}b"}}]"#,
            char::REPLACEMENT_CHARACTER
        )
    );
    let QueryOutput::Documents(docs) = t.query(request.clone()).unwrap() else {
        panic!("find answered with something else");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        Value::Array(docs)
    );

    t.raw
        .execute(
            "UPDATE messages SET from_addr = CAST(x'5b22ff225d' AS TEXT) WHERE uid = 3",
            [],
        )
        .unwrap();
    assert!(t.mailbox.query_find_text(&request).is_err());
    assert!(t.query(request).is_err());
}

/// An answer in pieces: arrays of whole documents, closed once they reach the size asked for,
/// that concatenate to the answer of `find`; `find_one` and empty answers are one piece.
#[test]
fn find_text_pieces_concatenate_to_the_answer() {
    let t = mailbox_with_messages();
    let all = json!({"collection": "messages", "op": "find", "sort": {"uid": 1}});
    let QueryOutput::Documents(expected) = t.query(all.clone()).unwrap() else {
        panic!("find answered with something else");
    };
    assert_eq!(expected.len(), 4);
    let whole = t.mailbox.query_find_text(&all).unwrap();
    for (piece_bytes, pieces_expected) in [(1, 4), (whole.len() / 2, 2), (usize::MAX, 1)] {
        let pieces = t.mailbox.query_find_text_pieces(&all, piece_bytes).unwrap();
        assert_eq!(
            pieces.len(),
            pieces_expected,
            "pieces of {piece_bytes} bytes"
        );
        let mut documents = Vec::new();
        for piece in &pieces {
            match serde_json::from_str::<Value>(piece).unwrap() {
                Value::Array(part) if !part.is_empty() => documents.extend(part),
                other => panic!("piece {other}"),
            }
        }
        assert_eq!(documents, expected, "pieces of {piece_bytes} bytes");
    }
    assert_eq!(
        t.mailbox
            .query_find_text_pieces(
                &json!({"collection": "messages", "op": "find",
                                             "filter": {"uid": 999}}),
                1
            )
            .unwrap(),
        vec!["[]".to_owned()]
    );
    let one = json!({"collection": "messages", "op": "find_one", "sort": {"uid": -1}});
    assert_eq!(
        t.mailbox.query_find_text_pieces(&one, 1).unwrap(),
        vec![t.mailbox.query_find_text(&one).unwrap()]
    );
}

/// A JSON column whose stored text is not one well-formed JSON value fails the query in both
/// forms: the text form never copies it into the answer.
#[test]
fn malformed_stored_json_fails_find_text() {
    let t = TestMailbox::new();
    t.query(json!({"collection": "notes", "op": "define_collection",
                   "fields": {"meta": "json", "title": "text"}}))
        .unwrap();
    t.query(json!({"collection": "notes", "op": "insert_one",
                   "document": {"_id": "good", "meta": {"a": [1, 2]}, "title": "x\"y"}}))
        .unwrap();
    let all = json!({"collection": "notes", "op": "find", "sort": {"_id": 1}});
    assert_eq!(
        t.mailbox.query_find_text(&all).unwrap(),
        r#"[{"_id":"good","meta":{"a":[1,2]},"title":"x\"y"}]"#
    );
    for bad in [r#"{"a": 1}], {"b": 2"#, r#"{"a": "#, "[1] 2", ""] {
        t.raw
            .execute(
                "INSERT OR REPLACE INTO app_notes (_id, meta) VALUES ('bad', ?1)",
                [bad],
            )
            .unwrap();
        assert!(t.mailbox.query_find_text(&all).is_err(), "{bad:?}");
        assert!(t.query(all.clone()).is_err(), "{bad:?}");
    }
}

#[test]
fn compiled_filter_is_reusable_sql() {
    let messages = sealmail_core::query::builtin_collection("messages").unwrap();
    let filter = sealmail_core::query::Filter::from_json(&json!({
        "folder_id": 7, "seen": false, "uid": {"$in": (1..=9).collect::<Vec<i64>>()},
        "flagged": {"$ne": true}
    }))
    .unwrap();
    let compiled = sealmail_core::query::compile_filter(&messages, &filter).unwrap();
    // no value appears in the SQL text; every one is a parameter (a long list is one)
    assert!(
        !compiled.sql.contains('7') && !compiled.sql.contains("[1"),
        "{}",
        compiled.sql
    );
    assert_eq!(compiled.params.len(), 4);
    let same_shape = sealmail_core::query::compile_filter(
        &messages,
        &sealmail_core::query::Filter::from_json(&json!({
            "folder_id": 9, "seen": true, "uid": {"$in": (100..400).collect::<Vec<i64>>()},
            "flagged": {"$ne": false}
        }))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(compiled.sql, same_shape.sql);
}

/// A mail client's page (a folder by path, sorted by UID, limited) walks the (folder, uid)
/// index instead of scanning and sorting the table: the folder equality is a scalar lookup.
#[test]
fn folder_page_walks_the_index_in_order() {
    let t = mailbox_with_messages();
    let messages = sealmail_core::query::builtin_collection("messages").unwrap();
    for (filter, order) in [
        (
            json!({"folder": "INBOX", "seen": false}),
            "t.uid DESC, t.id LIMIT 50",
        ),
        (json!({"folder": "INBOX"}), "t.uid ASC, t.id"),
    ] {
        let compiled = sealmail_core::query::compile_filter(
            &messages,
            &sealmail_core::query::Filter::from_json(&filter).unwrap(),
        )
        .unwrap();
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT t.uid FROM messages AS t WHERE {} ORDER BY {order}",
            compiled.sql
        );
        let mut statement = t.raw.prepare(&sql).unwrap();
        let plan: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(compiled.params.iter()), |row| {
                row.get(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH t USING") && step.contains("(folder_id=?)"))
                && !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{filter}: {plan:?}"
        );
    }
}

#[test]
fn writes_join_a_transaction_the_caller_holds() {
    let t = items();
    t.raw.execute_batch("BEGIN").unwrap();
    sealmail_core::query::insert_one(&t.raw, "items", &json!({"_id": "tx", "n": 1})).unwrap();
    let updated = sealmail_core::query::update(
        &t.raw,
        "items",
        &sealmail_core::query::Filter::eq("_id", json!("tx")),
        &sealmail_core::query::Update::from_json(&json!({"$inc": {"n": 1}})).unwrap(),
        sealmail_core::query::UpdateOptions::default(),
    )
    .unwrap();
    assert_eq!(updated.modified, 1);
    // a refused write inside the transaction undoes only itself
    assert!(
        sealmail_core::query::insert_many(
            &t.raw,
            "items",
            &[json!({"_id": "tx2"}), json!({"n": "x"})]
        )
        .is_err()
    );
    assert!(!t.raw.is_autocommit());
    t.raw.execute_batch("ROLLBACK").unwrap();
    assert!(
        t.ids("items", json!({"_id": {"$in": ["tx", "tx2"]}}))
            .is_empty()
    );
}

/// `from.address` / `to.address` compared with strings go through the `message_addresses`
/// index; they must find exactly what the JSON path finds (an anchored `$regex`, which still
/// reads the JSON), negations, long lists, several addresses per field and copies included.
#[test]
fn address_equality_uses_the_address_table_and_matches_the_json_path() {
    let t = mailbox_with_messages();
    let inbox = 1;
    t.add_message(
        inbox,
        4,
        json!({"from": r#"[{"name":"Dan","address":"Dan@Example.com"},{"name":null,"address":"alice@example.com"}]"#,
        "to": r#"[{"name":"Group","address":null},{"name":"Eve","address":"eve@example.org"}]"#}),
    );
    // A copy of uid 4 (what COPY does): the trigger indexes the new row too.
    t.raw
        .execute_batch(
            "INSERT INTO messages (folder_id, uid, modseq, body_id, internal_date, saved_at,
                size, from_addr, to_addr, envelope, body_structure)
             SELECT 2, 9, 9, body_id, internal_date, saved_at, size, from_addr, to_addr,
                envelope, body_structure FROM messages WHERE uid = 4",
        )
        .unwrap();
    let uids = |filter: Value| -> Vec<i64> {
        let mut uids: Vec<i64> = t
            .find("messages", filter)
            .iter()
            .map(|doc| doc["uid"].as_i64().unwrap())
            .collect();
        uids.sort();
        uids
    };
    let messages = sealmail_core::query::builtin_collection("messages").unwrap();
    let sql = |filter: Value| {
        sealmail_core::query::compile_filter(
            &messages,
            &sealmail_core::query::Filter::from_json(&filter).unwrap(),
        )
        .unwrap()
        .sql
    };
    let many: Vec<String> = (0..20)
        .map(|i| format!("nobody{i}@example.net"))
        .chain(["carol@other.net".to_owned()])
        .collect();
    let cases = [
        (
            json!({"from.address": "alice@example.com"}),
            "^alice@example\\.com$",
            false,
            vec![1, 1, 2, 4, 9],
        ),
        (
            json!({"from.address": "dan@example.com"}),
            "^dan@example\\.com$",
            false,
            vec![],
        ),
        (
            json!({"from.address": {"$ne": "alice@example.com"}}),
            "^alice@example\\.com$",
            true,
            vec![3],
        ),
        (
            json!({"from.address": {"$in": ["carol@other.net", "Dan@Example.com"]}}),
            "^(carol@other\\.net|Dan@Example\\.com)$",
            false,
            vec![3, 4, 9],
        ),
        (
            json!({"from.address": {"$in": many}}),
            "^carol@other\\.net$",
            false,
            vec![3],
        ),
        (
            json!({"from.address": {"$nin": ["alice@example.com", "carol@other.net"]}}),
            "^(alice@example\\.com|carol@other\\.net)$",
            true,
            vec![],
        ),
        (
            json!({"to.address": "eve@example.org"}),
            "^eve@example\\.org$",
            false,
            vec![4, 9],
        ),
    ];
    for (filter, pattern, negated, expected) in cases {
        assert!(
            sql(filter.clone()).contains("message_addresses"),
            "{filter}"
        );
        assert_eq!(uids(filter.clone()), expected, "{filter}");
        let field = filter.as_object().unwrap().keys().next().unwrap().clone();
        let by_json = if negated {
            json!({ field: {"$not": {"$regex": pattern}} })
        } else {
            json!({ field: {"$regex": pattern} })
        };
        assert!(!sql(by_json.clone()).contains("message_addresses"));
        assert_eq!(uids(by_json), expected, "{filter} against the JSON path");
    }
    // Conditions the table cannot answer keep the JSON path.
    for filter in [
        json!({"from.address": null}),
        json!({"from.address": {"$in": ["alice@example.com", null]}}),
        json!({"from.address": 5}),
        json!({"from.name": "Alice"}),
    ] {
        assert!(
            !sql(filter.clone()).contains("message_addresses"),
            "{filter}"
        );
    }
    assert_eq!(
        uids(json!({"to.address": null})),
        vec![4, 9],
        "a group has no address"
    );

    // Deleting a message takes its addresses along.
    let indexed = |t: &TestMailbox| -> i64 {
        t.raw
            .query_row("SELECT count(*) FROM message_addresses", [], |r| r.get(0))
            .unwrap()
    };
    let before = indexed(&t);
    t.raw
        .execute("DELETE FROM messages WHERE uid = 9", [])
        .unwrap();
    assert_eq!(indexed(&t), before - 3);
    assert_eq!(uids(json!({"to.address": "eve@example.org"})), vec![4]);
}

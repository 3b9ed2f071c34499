//! Differential property tests: random documents, random filters (and sorts, and updates),
//! run through the SQL compiler on a real mailbox and through the reference evaluator in
//! `query_support::reference`; the answers must be equal.

mod query_support;

use proptest::prelude::*;
use query_support::TestMailbox;
use query_support::reference::{Schema, matches, order};
use sealmail_core::query::update::PullCondition;
use sealmail_core::query::{
    Condition, ElemMatch, FieldType, Filter, FindOptions, Projection, QueryOutput, SortOrder,
    TypeName, Update, UpdateOp, UpdateOptions,
};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

const STRINGS: &[&str] = &["", "a", "ab", "B", "é", "a%", "b_", "x y", "Ab"];
const DATES: &[&str] = &[
    "2025-12-31T23:59:59Z",
    "2026-01-01T00:00:00Z",
    "2026-06-15T12:30:00Z",
];
const TYPED: &[(&str, FieldType)] = &[
    ("n", FieldType::Integer),
    ("r", FieldType::Real),
    ("s", FieldType::Text),
    ("b", FieldType::Boolean),
    ("d", FieldType::Date),
];
const JSON_PATHS: &[&str] = &[
    "j", "j.a", "j.b", "j.a.b", "j.a.0", "j.c_1", "tags", "tags.0", "tags.a", "tags.1.a",
];

fn schema() -> Schema {
    let mut fields: Vec<(&'static str, FieldType)> = TYPED.to_vec();
    fields.push(("j", FieldType::Json));
    fields.push(("tags", FieldType::Json));
    Schema(fields)
}

fn string() -> impl Strategy<Value = String> {
    prop::sample::select(STRINGS).prop_map(str::to_owned)
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..=2).prop_map(Value::from),
        string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(&["a", "b", "c_1"][..]), inner, 0..3)
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    (
        prop::option::of(-3i64..=3),
        prop::option::of(prop::sample::select(&[-1.5f64, 0.0, 0.5, 2.25][..])),
        prop::option::of(string()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(DATES)),
        prop::option::of(prop::collection::btree_map(
            prop::sample::select(&["a", "b", "c_1"][..]),
            json_value(),
            0..3,
        )),
        prop::option::of(json_value()),
    )
        .prop_map(|(n, r, s, b, d, j, tags)| {
            let mut doc = Map::new();
            if let Some(n) = n {
                doc.insert("n".into(), json!(n));
            }
            if let Some(r) = r {
                doc.insert("r".into(), json!(r));
            }
            if let Some(s) = s {
                doc.insert("s".into(), json!(s));
            }
            if let Some(b) = b {
                doc.insert("b".into(), json!(b));
            }
            if let Some(d) = d {
                doc.insert("d".into(), json!(d));
            }
            if let Some(j) = j {
                doc.insert(
                    "j".into(),
                    Value::Object(j.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                );
            }
            if let Some(tags) = tags.filter(|t| !t.is_null()) {
                doc.insert("tags".into(), tags);
            }
            Value::Object(doc)
        })
}

/// A value of the right type for a typed field (or null).
fn typed_value(ty: FieldType) -> BoxedStrategy<Value> {
    let value: BoxedStrategy<Value> = match ty {
        FieldType::Integer => (-4i64..=4).prop_map(Value::from).boxed(),
        FieldType::Real => prop_oneof![
            prop::sample::select(&[-1.5f64, 0.0, 0.5, 1.0, 2.25][..]).prop_map(Value::from),
            (-2i64..=2).prop_map(Value::from)
        ]
        .boxed(),
        FieldType::Text => string().prop_map(Value::String).boxed(),
        FieldType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        FieldType::Date => prop_oneof![
            prop::sample::select(DATES).prop_map(Value::from),
            Just(json!("2026-01-01")),
            Just(json!({"$date": "2026-06-15T14:30:00+02:00"})),
        ]
        .boxed(),
        _ => unreachable!(),
    };
    prop_oneof![1 => Just(Value::Null), 6 => value].boxed()
}

fn type_names() -> impl Strategy<Value = Vec<TypeName>> {
    prop::collection::vec(
        prop::sample::select(
            &[
                TypeName::Null,
                TypeName::Bool,
                TypeName::Number,
                TypeName::Int,
                TypeName::Double,
                TypeName::String,
                TypeName::Array,
                TypeName::Object,
                TypeName::Date,
            ][..],
        ),
        1..3,
    )
}

fn pattern() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(&["^a", "b", "^$", "A", "é$", "^x y$", "[_%]"][..]),
        prop::sample::select(&["", "i", "s", "im"][..]),
    )
        .prop_map(|(p, o)| (p.to_owned(), o.to_owned()))
}

fn like_pattern() -> impl Strategy<Value = String> {
    prop::sample::select(&["a%", "%b", "_", "A_", "%\\%", "b\\_", "%"][..]).prop_map(str::to_owned)
}

fn typed_condition(ty: FieldType) -> BoxedStrategy<Condition> {
    let v = || typed_value(ty);
    let mut options: Vec<BoxedStrategy<Condition>> = vec![
        v().prop_map(Condition::Eq).boxed(),
        v().prop_map(Condition::Ne).boxed(),
        v().prop_map(Condition::Gt).boxed(),
        v().prop_map(Condition::Gte).boxed(),
        v().prop_map(Condition::Lt).boxed(),
        v().prop_map(Condition::Lte).boxed(),
        // up to 11 values: both the short (placeholder) and long (json_each) list forms
        prop::collection::vec(v(), 0..12)
            .prop_map(Condition::In)
            .boxed(),
        prop::collection::vec(v(), 0..12)
            .prop_map(Condition::Nin)
            .boxed(),
        any::<bool>().prop_map(Condition::Exists).boxed(),
        type_names().prop_map(Condition::Type).boxed(),
        v().prop_map(|x| Condition::Not(Box::new(Condition::Gt(x))))
            .boxed(),
        (v(), v())
            .prop_map(|(a, b)| Condition::AllOf(vec![Condition::Gte(a), Condition::Lt(b)]))
            .boxed(),
    ];
    if matches!(ty, FieldType::Text | FieldType::Date) {
        options.push(
            pattern()
                .prop_map(|(pattern, options)| Condition::Regex { pattern, options })
                .boxed(),
        );
    }
    if ty == FieldType::Text {
        options.push(like_pattern().prop_map(Condition::Like).boxed());
        options.push(like_pattern().prop_map(Condition::Ilike).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-2i64..=2).prop_map(Value::from),
        string().prop_map(Value::String),
    ]
}

/// Conditions for JSON paths; `depth` bounds nested `$elemMatch`.
fn json_condition(depth: u32) -> BoxedStrategy<Condition> {
    let literal = || json_value();
    let mut options: Vec<BoxedStrategy<Condition>> = vec![
        literal().prop_map(Condition::Eq).boxed(),
        literal().prop_map(Condition::Ne).boxed(),
        scalar().prop_map(Condition::Gt).boxed(),
        scalar().prop_map(Condition::Gte).boxed(),
        scalar().prop_map(Condition::Lt).boxed(),
        prop_oneof![Just(Value::Null), scalar()]
            .prop_map(Condition::Lte)
            .boxed(),
        prop::collection::vec(literal(), 0..4)
            .prop_map(Condition::In)
            .boxed(),
        prop::collection::vec(json_leaf(), 0..4)
            .prop_map(Condition::Nin)
            .boxed(),
        any::<bool>().prop_map(Condition::Exists).boxed(),
        type_names().prop_map(Condition::Type).boxed(),
        pattern()
            .prop_map(|(pattern, options)| Condition::Regex { pattern, options })
            .boxed(),
        like_pattern().prop_map(Condition::Ilike).boxed(),
        (0u64..4).prop_map(Condition::Size).boxed(),
        prop::collection::vec(json_leaf(), 0..3)
            .prop_map(Condition::All)
            .boxed(),
        scalar()
            .prop_map(|x| Condition::Not(Box::new(Condition::Lt(x))))
            .boxed(),
        (scalar(), scalar())
            .prop_map(|(a, b)| Condition::AllOf(vec![Condition::Gt(a), Condition::Lte(b)]))
            .boxed(),
    ];
    if depth > 0 {
        options.push(
            json_condition(depth - 1)
                .prop_map(|c| Condition::ElemMatch(Box::new(ElemMatch::Element(c))))
                .boxed(),
        );
        options.push(
            prop::collection::vec(
                (
                    prop::sample::select(&["a", "b", "a.b", "c_1"][..]),
                    json_condition(depth - 1),
                ),
                1..3,
            )
            .prop_map(|fields| {
                let parts = fields
                    .into_iter()
                    .map(|(path, condition)| Filter::field(path, condition))
                    .collect();
                Condition::ElemMatch(Box::new(ElemMatch::Document(Filter::And(parts))))
            })
            .boxed(),
        );
    }
    prop::strategy::Union::new(options).boxed()
}

fn field_filter() -> impl Strategy<Value = Filter> {
    let typed = prop::sample::select(TYPED)
        .prop_flat_map(|(name, ty)| typed_condition(ty).prop_map(move |c| Filter::field(name, c)));
    let json = (prop::sample::select(JSON_PATHS), json_condition(1))
        .prop_map(|(path, c)| Filter::field(path, c));
    prop_oneof![typed, json]
}

fn filter() -> impl Strategy<Value = Filter> {
    field_filter().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 1..3).prop_map(Filter::Or),
            prop::collection::vec(inner, 1..3).prop_map(Filter::Nor),
        ]
    })
}

fn load(t: &TestMailbox, docs: &[Value]) -> Vec<Map<String, Value>> {
    t.query(json!({"collection": "docs", "op": "delete_many", "filter": {}}))
        .unwrap();
    let documents: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let mut doc = doc.as_object().unwrap().clone();
            doc.insert("_id".into(), json!(format!("d{i:02}")));
            Value::Object(doc)
        })
        .collect();
    t.query(json!({"collection": "docs", "op": "insert_many", "documents": documents}))
        .unwrap();
    let QueryOutput::Documents(stored) = t
        .query(json!({"collection": "docs", "op": "find", "sort": {"_id": 1}}))
        .unwrap()
    else {
        panic!()
    };
    stored
        .into_iter()
        .map(|d| d.as_object().unwrap().clone())
        .collect()
}

fn collection() -> TestMailbox {
    let t = TestMailbox::new();
    t.query(
        json!({"collection": "docs", "op": "define_collection", "fields": {
        "n": "integer", "r": "real", "s": "text", "b": "boolean", "d": "date",
        "j": "json", "tags": "json"}}),
    )
    .unwrap();
    t
}

fn key(doc: &Map<String, Value>) -> String {
    doc["_id"].as_str().unwrap().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// 1,000 cases of up to 10 documents and 16 filters each: about 8,000 filters per run.
    #[test]
    fn filters_agree_with_reference(
        docs in prop::collection::vec(document(), 0..10),
        filters in prop::collection::vec(filter(), 1..16),
    ) {
        thread_local!(static MAILBOX: TestMailbox = collection());
        MAILBOX.with(|t| {
            let stored = load(t, &docs);
            let conn_schema = schema();
            for filter in &filters {
                let found = sealmail_core::query::find(
                    &t.raw, "docs", filter, &FindOptions::default(),
                );
                let found = match found {
                    Ok(found) => found,
                    Err(error) => panic!("filter {filter:?} failed: {error}"),
                };
                let mut got: Vec<String> = found
                    .iter()
                    .map(|d| d["_id"].as_str().unwrap().to_owned())
                    .collect();
                got.sort();
                let expected: Vec<String> = stored
                    .iter()
                    .filter(|doc| matches(&conn_schema, doc, filter))
                    .map(key)
                    .collect();
                assert_eq!(got, expected, "filter {:?}\ndocs {:?}", filter, stored);
            }
        });
    }

    /// `find_text` is `find` written as text: the same documents in the same order and, since
    /// the query layer stored the JSON fields itself, the very text `serde_json` prints.
    #[test]
    fn find_text_is_find_as_text(
        docs in prop::collection::vec(document(), 0..10),
        filter in filter(),
        projected in prop::collection::btree_set(
            prop::sample::select(&["n", "r", "s", "b", "d", "j", "tags"][..]), 0..4),
        exclude in any::<bool>(),
        key in any::<bool>(),
        descending in any::<bool>(),
        one in any::<bool>(),
    ) {
        thread_local!(static MAILBOX: TestMailbox = collection());
        MAILBOX.with(|t| {
            load(t, &docs);
            let fields: Vec<String> = projected.iter().map(|f| (*f).to_owned()).collect();
            let projection = match (fields.is_empty(), exclude) {
                (true, _) => Projection::All,
                (false, true) => Projection::Exclude(fields),
                (false, false) => Projection::Include { fields, key },
            };
            let order_by = if descending { SortOrder::Descending } else { SortOrder::Ascending };
            let options = FindOptions {
                projection,
                sort: vec![("s".to_owned(), order_by)],
                ..FindOptions::default()
            };
            let found = sealmail_core::query::find(&t.raw, "docs", &filter, &options).unwrap();
            let text =
                sealmail_core::query::find_text(&t.raw, "docs", &filter, &options, one).unwrap();
            let expected = if one {
                found.into_iter().next().unwrap_or(Value::Null)
            } else {
                Value::Array(found)
            };
            assert_eq!(text, expected.to_string(), "filter {:?}", filter);
        });
    }

    #[test]
    fn sorts_agree_with_reference(
        docs in prop::collection::vec(document(), 0..10),
        field in prop::sample::select(TYPED),
        descending in any::<bool>(),
        skip in 0u64..4,
        limit in prop::option::of(0u64..5),
    ) {
        thread_local!(static MAILBOX: TestMailbox = collection());
        MAILBOX.with(|t| {
            let stored = load(t, &docs);
            let order_by = if descending { SortOrder::Descending } else { SortOrder::Ascending };
            let options = FindOptions {
                sort: vec![(field.0.to_owned(), order_by)],
                skip,
                limit,
                ..FindOptions::default()
            };
            let found = sealmail_core::query::find(
                &t.raw, "docs", &Filter::all(), &options,
            ).unwrap();
            let got: Vec<String> = found.iter().map(|d| d["_id"].as_str().unwrap().to_owned()).collect();
            let mut expected = stored.clone();
            expected.sort_by(|a, b| {
                // NULL (absent) sorts first ascending, last descending; ties by key.
                let by_field = match (a.get(field.0), b.get(field.0)) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => order(x, y).unwrap(),
                };
                let by_field = if descending { by_field.reverse() } else { by_field };
                by_field.then_with(|| key(a).cmp(&key(b)))
            });
            let expected: Vec<String> = expected
                .iter()
                .skip(skip as usize)
                .take(limit.map_or(usize::MAX, |l| l as usize))
                .map(key)
                .collect();
            assert_eq!(got, expected);
        });
    }
}

/// One candidate operation per path, so a random subset never conflicts.
fn update_ops() -> impl Strategy<Value = Vec<UpdateOp>> {
    let n = prop_oneof![
        prop_oneof![Just(Value::Null), (-3i64..=3).prop_map(Value::from)].prop_map(|value| {
            UpdateOp::Set {
                path: "n".into(),
                value,
            }
        }),
        (-2i64..=2).prop_map(|by| UpdateOp::Inc {
            path: "n".into(),
            by: by.into()
        }),
        (-3i64..=3).prop_map(|v| UpdateOp::Min {
            path: "n".into(),
            value: v.into()
        }),
        (-3i64..=3).prop_map(|v| UpdateOp::Max {
            path: "n".into(),
            value: v.into()
        }),
    ];
    let r = prop_oneof![
        Just(UpdateOp::Mul {
            path: "r".into(),
            by: 2.into()
        }),
        Just(UpdateOp::Unset { path: "r".into() }),
    ];
    let s = prop_oneof![
        string().prop_map(|v| UpdateOp::Set {
            path: "s".into(),
            value: v.into()
        }),
        string().prop_map(|v| UpdateOp::Max {
            path: "s".into(),
            value: v.into()
        }),
        Just(UpdateOp::Unset { path: "s".into() }),
    ];
    let j = prop_oneof![
        json_leaf().prop_map(|value| UpdateOp::Set {
            path: "j.a".into(),
            value
        }),
        Just(UpdateOp::Rename {
            from: "j.a".into(),
            to: "j.c_1".into()
        }),
        Just(UpdateOp::Unset { path: "j.a".into() }),
    ];
    let tags = prop_oneof![
        (
            prop::collection::vec(json_leaf(), 0..3),
            prop::option::of(-3i64..=3)
        )
            .prop_map(|(values, slice)| UpdateOp::Push {
                path: "tags".into(),
                values,
                slice
            }),
        prop::collection::vec(json_leaf(), 1..3).prop_map(|values| UpdateOp::AddToSet {
            path: "tags".into(),
            values
        }),
        json_leaf().prop_map(|v| UpdateOp::Pull {
            path: "tags".into(),
            condition: PullCondition::Equals(v)
        }),
        any::<bool>().prop_map(|last| UpdateOp::Pop {
            path: "tags".into(),
            last
        }),
    ];
    (
        prop::option::of(n),
        prop::option::of(r),
        prop::option::of(s),
        prop::option::of(j),
        prop::option::of(tags),
    )
        .prop_map(|(n, r, s, j, tags)| [n, r, s, j, tags].into_iter().flatten().collect::<Vec<_>>())
        .prop_filter("at least one operation", |ops| !ops.is_empty())
}

/// The reference's own application of an operation, or `Err` where the store must refuse.
fn reference_apply(doc: &mut Map<String, Value>, op: &UpdateOp) -> Result<(), ()> {
    match op {
        UpdateOp::Set { path, value } if path == "j.a" => {
            doc.entry("j")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap()
                .insert("a".into(), value.clone());
        }
        UpdateOp::Set { path, value } => {
            if value.is_null() {
                doc.remove(path);
            } else {
                doc.insert(path.clone(), value.clone());
            }
        }
        UpdateOp::Unset { path } if path == "j.a" => {
            if let Some(Value::Object(j)) = doc.get_mut("j") {
                j.remove("a");
            }
        }
        UpdateOp::Unset { path } => {
            doc.remove(path);
        }
        UpdateOp::Inc { by, .. } => {
            let n = doc.get("n").and_then(Value::as_i64).unwrap_or(0) + by.as_i64().unwrap();
            doc.insert("n".into(), n.into());
        }
        UpdateOp::Mul { .. } => {
            let r = doc.get("r").and_then(Value::as_f64).unwrap_or(0.0) * 2.0;
            doc.insert("r".into(), json!(r));
        }
        UpdateOp::Min { path, value } | UpdateOp::Max { path, value } => {
            let replace = match doc.get(path) {
                None => true,
                Some(current) => {
                    let o = order(value, current).unwrap();
                    if matches!(op, UpdateOp::Min { .. }) {
                        o.is_lt()
                    } else {
                        o.is_gt()
                    }
                }
            };
            if replace {
                doc.insert(path.clone(), value.clone());
            }
        }
        UpdateOp::Rename { .. } => {
            if let Some(Value::Object(j)) = doc.get_mut("j")
                && let Some(a) = j.remove("a")
            {
                j.insert("c_1".into(), a);
            }
        }
        UpdateOp::Push { values, slice, .. } => {
            let mut tags = match doc.get("tags") {
                None => Vec::new(),
                Some(Value::Array(tags)) => tags.clone(),
                Some(_) => return Err(()),
            };
            tags.extend(values.iter().cloned());
            if let Some(slice) = *slice {
                let keep = slice.unsigned_abs() as usize;
                if slice >= 0 {
                    tags.truncate(keep);
                } else {
                    tags = tags[tags.len().saturating_sub(keep)..].to_vec();
                }
            }
            doc.insert("tags".into(), Value::Array(tags));
        }
        UpdateOp::AddToSet { values, .. } => {
            let mut tags = match doc.get("tags") {
                None => Vec::new(),
                Some(Value::Array(tags)) => tags.clone(),
                Some(_) => return Err(()),
            };
            for value in values {
                if !tags.contains(value) {
                    tags.push(value.clone());
                }
            }
            doc.insert("tags".into(), Value::Array(tags));
        }
        UpdateOp::Pull {
            condition: PullCondition::Equals(value),
            ..
        } => match doc.get_mut("tags") {
            None => {}
            Some(Value::Array(tags)) => tags.retain(|t| t != value),
            Some(_) => return Err(()),
        },
        UpdateOp::Pop { last, .. } => match doc.get_mut("tags") {
            None => {}
            Some(Value::Array(tags)) if !tags.is_empty() => {
                if *last {
                    tags.pop();
                } else {
                    tags.remove(0);
                }
            }
            Some(Value::Array(_)) => {}
            Some(_) => return Err(()),
        },
        other => panic!("not generated: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn updates_agree_with_reference(
        docs in prop::collection::vec(document(), 0..8),
        filter in filter(),
        ops in update_ops(),
        many in any::<bool>(),
    ) {
        thread_local!(static MAILBOX: TestMailbox = collection());
        MAILBOX.with(|t| {
            let stored = load(t, &docs);
            let conn_schema = schema();
            let update = Update { ops: ops.clone() };
            let result = sealmail_core::query::update(
                &t.raw, "docs", &filter, &update, UpdateOptions { many, upsert: false },
            );
            let mut expected = stored.clone();
            let mut matched = 0u64;
            let mut modified = 0u64;
            let mut refused = false;
            for doc in expected.iter_mut() {
                if !matches(&conn_schema, doc, &filter) || (!many && matched == 1) {
                    continue;
                }
                matched += 1;
                let before = doc.clone();
                for op in &ops {
                    if reference_apply(doc, op).is_err() {
                        refused = true;
                    }
                }
                if *doc != before {
                    modified += 1;
                }
            }
            let QueryOutput::Documents(after) = t
                .query(json!({"collection": "docs", "op": "find", "sort": {"_id": 1}}))
                .unwrap()
            else {
                panic!()
            };
            let after: Vec<Map<String, Value>> =
                after.into_iter().map(|d| d.as_object().unwrap().clone()).collect();
            if refused {
                assert!(result.is_err(), "expected a refusal for {ops:?}");
                assert_eq!(after, stored, "a refused update changed the data");
            } else {
                let result = result.unwrap_or_else(|e| panic!("{ops:?} failed: {e}"));
                assert_eq!((result.matched, result.modified), (matched, modified), "{ops:?}");
                assert_eq!(after, expected, "ops {ops:?} filter {filter:?}");
            }
        });
    }
}

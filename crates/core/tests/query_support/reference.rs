//! A reference evaluator of the query semantics over in-memory JSON documents, written
//! independently of the SQL compiler: the differential tests check the two agree.
//!
//! Documents are as read back from the store: typed fields in canonical form, absent when null.

use regex::Regex;
use sealmail_core::query::{Condition, ElemMatch, FieldType, Filter, TypeName};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The field types of the collection under test (top-level names).
pub struct Schema(pub Vec<(&'static str, FieldType)>);

impl Schema {
    fn type_of(&self, name: &str) -> Option<FieldType> {
        if name == "_id" {
            return Some(FieldType::Text);
        }
        self.0.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }
}

pub fn matches(schema: &Schema, doc: &Map<String, Value>, filter: &Filter) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|f| matches(schema, doc, f)),
        Filter::Or(parts) => parts.iter().any(|f| matches(schema, doc, f)),
        Filter::Nor(parts) => !parts.iter().any(|f| matches(schema, doc, f)),
        Filter::Field { path, condition } => {
            let mut segments = path.split('.');
            let first = segments.next().unwrap();
            let rest: Vec<&str> = segments.collect();
            match schema.type_of(first).expect("filters use declared fields") {
                FieldType::Json => field_matches(doc.get(first), &rest, condition),
                ty => typed_matches(ty, doc.get(first).filter(|v| !v.is_null()), condition),
            }
        }
    }
}

/// Matching inside an `$elemMatch` document: every path is a JSON path from the element.
fn element_doc_matches(element: &Value, filter: &Filter) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|f| element_doc_matches(element, f)),
        Filter::Or(parts) => parts.iter().any(|f| element_doc_matches(element, f)),
        Filter::Nor(parts) => !parts.iter().any(|f| element_doc_matches(element, f)),
        Filter::Field { path, condition } => {
            let segments: Vec<&str> = path.split('.').collect();
            // The element is the document: its first key is reached like any other.
            let mut found = Vec::new();
            walk(element, &segments, &mut found);
            field_on_values(&found, condition)
        }
    }
}

fn typed_matches(ty: FieldType, value: Option<&Value>, condition: &Condition) -> bool {
    let canon = |v: &Value| -> Value {
        match (ty, v) {
            (FieldType::Date, Value::String(s)) => {
                Value::String(sealmail_core::query::value::normalize_date(s).unwrap())
            }
            (FieldType::Date, Value::Object(m)) => Value::String(
                sealmail_core::query::value::normalize_date(m["$date"].as_str().unwrap()).unwrap(),
            ),
            _ => v.clone(),
        }
    };
    match condition {
        Condition::Eq(Value::Null) | Condition::Gte(Value::Null) | Condition::Lte(Value::Null) => {
            value.is_none()
        }
        Condition::Gt(Value::Null) | Condition::Lt(Value::Null) => false,
        Condition::Eq(x) => value.is_some_and(|v| order(v, &canon(x)) == Some(Ordering::Equal)),
        Condition::Gt(x) => value.is_some_and(|v| order(v, &canon(x)) == Some(Ordering::Greater)),
        Condition::Gte(x) => value.is_some_and(|v| {
            matches!(
                order(v, &canon(x)),
                Some(Ordering::Greater | Ordering::Equal)
            )
        }),
        Condition::Lt(x) => value.is_some_and(|v| order(v, &canon(x)) == Some(Ordering::Less)),
        Condition::Lte(x) => value
            .is_some_and(|v| matches!(order(v, &canon(x)), Some(Ordering::Less | Ordering::Equal))),
        Condition::Ne(x) => !typed_matches(ty, value, &Condition::Eq(x.clone())),
        Condition::In(list) => list
            .iter()
            .any(|x| typed_matches(ty, value, &Condition::Eq(x.clone()))),
        Condition::Nin(list) => !typed_matches(ty, value, &Condition::In(list.clone())),
        Condition::Exists(exists) => value.is_some() == *exists,
        Condition::Type(types) => types.iter().any(|t| match t {
            TypeName::Null => value.is_none(),
            TypeName::String => value.is_some() && matches!(ty, FieldType::Text | FieldType::Date),
            TypeName::Number => {
                value.is_some() && matches!(ty, FieldType::Integer | FieldType::Real)
            }
            TypeName::Int => value.is_some() && ty == FieldType::Integer,
            TypeName::Double => value.is_some() && ty == FieldType::Real,
            TypeName::Bool => value.is_some() && ty == FieldType::Boolean,
            TypeName::Date => value.is_some() && ty == FieldType::Date,
            TypeName::BinData => value.is_some() && ty == FieldType::Binary,
            TypeName::Array | TypeName::Object => false,
        }),
        Condition::Regex { pattern, options } => value
            .and_then(Value::as_str)
            .is_some_and(|s| regex(pattern, options).is_match(s)),
        Condition::Like(pattern) => value
            .and_then(Value::as_str)
            .is_some_and(|s| like(pattern, s, false)),
        Condition::Ilike(pattern) => value
            .and_then(Value::as_str)
            .is_some_and(|s| like(pattern, s, true)),
        Condition::Not(inner) => !typed_matches(ty, value, inner),
        Condition::AllOf(all) => all.iter().all(|c| typed_matches(ty, value, c)),
        Condition::ElemMatch(_) | Condition::Size(_) | Condition::All(_) => {
            panic!("array operators on typed fields are refused, not evaluated")
        }
    }
}

/// The nodes a path reaches from `node`: names fan out over the elements of an array.
fn walk<'v>(node: &'v Value, segments: &[&str], found: &mut Vec<&'v Value>) {
    let Some((segment, rest)) = segments.split_first() else {
        found.push(node);
        return;
    };
    let is_index = segment.bytes().all(|b| b.is_ascii_digit());
    match node {
        Value::Object(map) if !is_index => {
            if let Some(child) = map.get(*segment) {
                walk(child, rest, found);
            }
        }
        Value::Array(items) if is_index => {
            if let Some(child) = items.get(segment.parse::<usize>().unwrap()) {
                walk(child, rest, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::Object(map) = item
                    && let Some(child) = map.get(*segment)
                {
                    walk(child, rest, found);
                }
            }
        }
        _ => {}
    }
}

fn field_matches(root: Option<&Value>, segments: &[&str], condition: &Condition) -> bool {
    let mut found = Vec::new();
    if let Some(root) = root.filter(|v| !v.is_null()) {
        walk(root, segments, &mut found);
    }
    field_on_values(&found, condition)
}

/// Field-level semantics over the values found at a path (before leaf expansion).
fn field_on_values(found: &[&Value], condition: &Condition) -> bool {
    let expanded: Vec<&Value> = found
        .iter()
        .flat_map(|v| {
            let mut all = vec![*v];
            if let Value::Array(items) = v {
                all.extend(items.iter());
            }
            all
        })
        .collect();
    match condition {
        Condition::Eq(Value::Null) | Condition::Gte(Value::Null) | Condition::Lte(Value::Null) => {
            found.is_empty() || expanded.iter().any(|v| v.is_null())
        }
        Condition::Ne(x) => !field_on_values(found, &Condition::Eq(x.clone())),
        Condition::Nin(list) => !field_on_values(found, &Condition::In(list.clone())),
        Condition::Not(inner) => !field_on_values(found, inner),
        Condition::In(list) => {
            (list.iter().any(Value::is_null) && field_on_values(found, &Condition::Eq(Value::Null)))
                || expanded.iter().any(|v| node_matches(v, condition))
        }
        Condition::Exists(exists) => found.is_empty() != *exists,
        Condition::All(list) => {
            !list.is_empty()
                && list
                    .iter()
                    .all(|x| field_on_values(found, &Condition::Eq(x.clone())))
        }
        Condition::AllOf(all) => all.iter().all(|c| field_on_values(found, c)),
        Condition::Size(_) | Condition::ElemMatch(_) => {
            found.iter().any(|v| node_matches(v, condition))
        }
        _ => expanded.iter().any(|v| node_matches(v, condition)),
    }
}

fn node_matches(node: &Value, condition: &Condition) -> bool {
    let cmp = |x: &Value| order(node, &literal(x));
    match condition {
        Condition::Eq(Value::Null) | Condition::Gte(Value::Null) | Condition::Lte(Value::Null) => {
            node.is_null()
        }
        Condition::Gt(Value::Null) | Condition::Lt(Value::Null) => false,
        Condition::Eq(x) => same(node, &literal(x)),
        Condition::Ne(x) => !same(node, &literal(x)),
        Condition::Gt(x) => cmp(x) == Some(Ordering::Greater),
        Condition::Gte(x) => matches!(cmp(x), Some(Ordering::Greater | Ordering::Equal)),
        Condition::Lt(x) => cmp(x) == Some(Ordering::Less),
        Condition::Lte(x) => matches!(cmp(x), Some(Ordering::Less | Ordering::Equal)),
        Condition::In(list) => list.iter().any(|x| {
            if x.is_null() {
                node.is_null()
            } else {
                same(node, &literal(x))
            }
        }),
        Condition::Nin(list) => !node_matches(node, &Condition::In(list.clone())),
        Condition::Exists(exists) => *exists,
        Condition::Type(types) => types.iter().any(|t| match (t, node) {
            (TypeName::Null, Value::Null) => true,
            (TypeName::Bool, Value::Bool(_)) => true,
            (TypeName::Number, Value::Number(_)) => true,
            (TypeName::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (TypeName::Double, Value::Number(n)) => n.is_f64(),
            (TypeName::String, Value::String(_)) => true,
            (TypeName::Array, Value::Array(_)) => true,
            (TypeName::Object, Value::Object(_)) => true,
            _ => false,
        }),
        Condition::Regex { pattern, options } => node
            .as_str()
            .is_some_and(|s| regex(pattern, options).is_match(s)),
        Condition::Like(pattern) => node.as_str().is_some_and(|s| like(pattern, s, false)),
        Condition::Ilike(pattern) => node.as_str().is_some_and(|s| like(pattern, s, true)),
        Condition::Not(inner) => !node_matches(node, inner),
        Condition::Size(size) => node.as_array().is_some_and(|a| a.len() as u64 == *size),
        Condition::ElemMatch(elem) => node.as_array().is_some_and(|items| {
            items.iter().any(|item| match elem.as_ref() {
                ElemMatch::Element(inner) => node_matches(item, inner),
                ElemMatch::Document(filter) => {
                    item.is_object() && element_doc_matches(item, filter)
                }
            })
        }),
        Condition::All(list) => {
            !list.is_empty()
                && list.iter().all(|x| {
                    same(node, &literal(x))
                        || node
                            .as_array()
                            .is_some_and(|items| items.iter().any(|i| same(i, &literal(x))))
                })
        }
        Condition::AllOf(all) => all.iter().all(|c| node_matches(node, c)),
    }
}

fn literal(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$date") => Value::String(
            sealmail_core::query::value::normalize_date(map["$date"].as_str().unwrap()).unwrap(),
        ),
        other => other.clone(),
    }
}

/// Equality of same-kind values; numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => order(a, b) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// Order of two values of the same kind (numbers, strings, booleans); `None` across kinds.
pub fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn regex(pattern: &str, options: &str) -> Regex {
    let full = if options.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{options}){pattern}")
    };
    Regex::new(&full).unwrap()
}

/// SQL LIKE by direct recursive matching (no regex), `\` escaping the next character.
fn like(pattern: &str, text: &str, fold: bool) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) => match rest.split_first() {
                Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
                None => false,
            },
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let prepare = |s: &str| -> Vec<char> {
        if fold {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.chars().collect()
        }
    };
    go(&prepare(pattern), &prepare(text))
}

//! Update documents (`$set`, `$inc`, `$push`, ...): parsed into an [`Update`], then applied to
//! each matching document inside the write transaction.

use super::error::QueryError;
use super::filter::{MAX_LIST_LEN, MAX_OPERATORS, check_path};
use super::schema::{Collection, FieldType};
use super::value::{Use, describe, from_sql, to_sql};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// A parsed update: operations applied in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub ops: Vec<UpdateOp>,
}

/// One update operation on one path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOp {
    Set {
        path: String,
        value: Value,
    },
    Unset {
        path: String,
    },
    Inc {
        path: String,
        by: Number,
    },
    Mul {
        path: String,
        by: Number,
    },
    Min {
        path: String,
        value: Value,
    },
    Max {
        path: String,
        value: Value,
    },
    Rename {
        from: String,
        to: String,
    },
    CurrentDate {
        path: String,
    },
    Push {
        path: String,
        values: Vec<Value>,
        slice: Option<i64>,
    },
    AddToSet {
        path: String,
        values: Vec<Value>,
    },
    Pull {
        path: String,
        condition: PullCondition,
    },
    /// Remove the last element (`$pop: 1`) or the first (`$pop: -1`).
    Pop {
        path: String,
        last: bool,
    },
}

/// Which elements `$pull` removes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullCondition {
    /// Elements equal to this value.
    Equals(Value),
    /// Elements satisfying all of these comparisons (`$eq $ne $gt $gte $lt $lte $in $nin`).
    Compare(Vec<(String, Value)>),
}

impl UpdateOp {
    fn paths(&self) -> Vec<&str> {
        match self {
            UpdateOp::Rename { from, to } => vec![from, to],
            UpdateOp::Set { path, .. }
            | UpdateOp::Unset { path }
            | UpdateOp::Inc { path, .. }
            | UpdateOp::Mul { path, .. }
            | UpdateOp::Min { path, .. }
            | UpdateOp::Max { path, .. }
            | UpdateOp::CurrentDate { path }
            | UpdateOp::Push { path, .. }
            | UpdateOp::AddToSet { path, .. }
            | UpdateOp::Pull { path, .. }
            | UpdateOp::Pop { path, .. } => vec![path],
        }
    }
}

impl Update {
    /// Parse a Mongo update document such as `{"$set": {"a": 1}, "$inc": {"n": 2}}`.
    pub fn from_json(value: &Value) -> Result<Self, QueryError> {
        let Value::Object(map) = value else {
            return Err(QueryError::InvalidRequest(
                "update must be an object".into(),
            ));
        };
        if map.is_empty() {
            return Err(QueryError::InvalidRequest("update is empty".into()));
        }
        let mut ops = Vec::new();
        for (operator, fields) in map {
            if !operator.starts_with('$') {
                return Err(QueryError::InvalidRequest(format!(
                    "update must use operators such as $set, found field {operator:?}"
                )));
            }
            let Value::Object(fields) = fields else {
                return Err(QueryError::invalid(operator, "expected an object"));
            };
            for (path, arg) in fields {
                check_path(path)?;
                ops.push(parse_op(operator, path, arg)?);
                if ops.len() > MAX_OPERATORS {
                    return Err(QueryError::TooComplex(format!(
                        "more than {MAX_OPERATORS} update operations"
                    )));
                }
            }
        }
        let update = Update { ops };
        update.check_conflicts()?;
        Ok(update)
    }

    /// Two operations on the same path, or on a path and its prefix, are ambiguous.
    fn check_conflicts(&self) -> Result<(), QueryError> {
        let paths: Vec<&str> = self.ops.iter().flat_map(UpdateOp::paths).collect();
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                let overlaps = a == b
                    || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('.'))
                    || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('.'));
                if overlaps {
                    return Err(QueryError::InvalidRequest(format!(
                        "update paths {a:?} and {b:?} conflict"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Apply to `doc` (a document of `collection` as read back). Returns whether it changed.
    pub(crate) fn apply(
        &self,
        collection: &Collection,
        doc: &mut Map<String, Value>,
        now: &str,
    ) -> Result<bool, QueryError> {
        let before = doc.clone();
        for op in &self.ops {
            for path in op.paths() {
                check_target(collection, path, op)?;
            }
            apply_op(collection, doc, op, now)?;
        }
        Ok(*doc != before)
    }
}

fn parse_op(operator: &str, path: &str, arg: &Value) -> Result<UpdateOp, QueryError> {
    let path = path.to_owned();
    let number = |arg: &Value| match arg {
        Value::Number(n) => Ok(n.clone()),
        other => Err(QueryError::invalid(
            format!("{operator} {path}"),
            format!("expected a number, got {}", describe(other)),
        )),
    };
    let each = |arg: &Value, allowed: &[&str]| -> Result<(Vec<Value>, Option<i64>), QueryError> {
        match arg {
            Value::Object(map) if map.contains_key("$each") => {
                if let Some(bad) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
                    return Err(QueryError::UnknownOperator(format!("{bad} in {operator}")));
                }
                let values = map["$each"]
                    .as_array()
                    .ok_or_else(|| QueryError::invalid("$each", "expected an array"))?;
                if values.len() > MAX_LIST_LEN {
                    return Err(QueryError::TooComplex(format!(
                        "$each lists at most {MAX_LIST_LEN} values"
                    )));
                }
                let slice = match map.get("$slice") {
                    None => None,
                    Some(v) => Some(
                        v.as_i64()
                            .ok_or_else(|| QueryError::invalid("$slice", "expected an integer"))?,
                    ),
                };
                Ok((values.clone(), slice))
            }
            single => Ok((vec![single.clone()], None)),
        }
    };
    Ok(match operator {
        "$set" => UpdateOp::Set {
            path,
            value: arg.clone(),
        },
        "$unset" => UpdateOp::Unset { path },
        "$inc" => UpdateOp::Inc {
            by: number(arg)?,
            path,
        },
        "$mul" => UpdateOp::Mul {
            by: number(arg)?,
            path,
        },
        "$min" => UpdateOp::Min {
            path,
            value: arg.clone(),
        },
        "$max" => UpdateOp::Max {
            path,
            value: arg.clone(),
        },
        "$rename" => {
            let to = arg
                .as_str()
                .ok_or_else(|| QueryError::invalid("$rename", "expected the new name"))?;
            check_path(to)?;
            UpdateOp::Rename {
                from: path,
                to: to.to_owned(),
            }
        }
        "$currentDate" => match arg {
            Value::Bool(true) => UpdateOp::CurrentDate { path },
            Value::Object(map) if map.get("$type") == Some(&Value::from("date")) => {
                UpdateOp::CurrentDate { path }
            }
            _ => {
                return Err(QueryError::invalid(
                    "$currentDate",
                    "expected true or {\"$type\": \"date\"}",
                ));
            }
        },
        "$push" => {
            let (values, slice) = each(arg, &["$each", "$slice"])?;
            UpdateOp::Push {
                path,
                values,
                slice,
            }
        }
        "$addToSet" => {
            let (values, _) = each(arg, &["$each"])?;
            UpdateOp::AddToSet { path, values }
        }
        "$pull" => UpdateOp::Pull {
            path,
            condition: match arg {
                Value::Object(map) if map.keys().all(|k| k.starts_with('$')) && !map.is_empty() => {
                    let mut comparisons = Vec::new();
                    for (op, operand) in map {
                        if !["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
                            .contains(&op.as_str())
                        {
                            return Err(QueryError::UnknownOperator(format!("{op} in $pull")));
                        }
                        if op.ends_with("in") && !operand.is_array() {
                            return Err(QueryError::invalid(op, "expected an array"));
                        }
                        comparisons.push((op.clone(), operand.clone()));
                    }
                    PullCondition::Compare(comparisons)
                }
                Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
                    return Err(QueryError::invalid("$pull", "mixes operators and fields"));
                }
                Value::Object(_) => {
                    return Err(QueryError::invalid(
                        "$pull",
                        "conditions on element fields are not supported; give a value or \
                         comparison operators",
                    ));
                }
                value => PullCondition::Equals(value.clone()),
            },
        },
        "$pop" => UpdateOp::Pop {
            path,
            last: match arg.as_i64() {
                Some(1) => true,
                Some(-1) => false,
                _ => return Err(QueryError::invalid("$pop", "expected 1 or -1")),
            },
        },
        other => return Err(QueryError::UnknownOperator(other.to_owned())),
    })
}

/// The declared type at `path`: a typed top-level field, or a place inside a JSON field
/// (`None`). The key cannot be changed.
fn check_target(
    collection: &Collection,
    path: &str,
    op: &UpdateOp,
) -> Result<Option<FieldType>, QueryError> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let field = collection
        .field(first)
        .ok_or_else(|| QueryError::UnknownField(path.to_owned()))?;
    if field.name == collection.key {
        return Err(QueryError::invalid(path, "the key field cannot be updated"));
    }
    match (field.ty, rest) {
        (FieldType::Json, Some(_)) => Ok(None),
        (_, Some(_)) => Err(QueryError::UnknownField(path.to_owned())),
        (FieldType::Json, None) => Ok(None),
        (ty, None) => {
            let array_op = matches!(
                op,
                UpdateOp::Push { .. }
                    | UpdateOp::AddToSet { .. }
                    | UpdateOp::Pull { .. }
                    | UpdateOp::Pop { .. }
            );
            let number_op = matches!(op, UpdateOp::Inc { .. } | UpdateOp::Mul { .. });
            if array_op {
                return Err(QueryError::invalid(
                    path,
                    format!("is a {} field, not an array", ty.name()),
                ));
            }
            if number_op && !matches!(ty, FieldType::Integer | FieldType::Real) {
                return Err(QueryError::invalid(
                    path,
                    format!("is a {} field, not a number", ty.name()),
                ));
            }
            Ok(Some(ty))
        }
    }
}

/// `value` checked against the type of `path` and put in its canonical JSON form (normalized
/// dates, extended JSON bytes); values inside JSON fields are taken as they are.
fn canonical(collection: &Collection, path: &str, value: &Value) -> Result<Value, QueryError> {
    if value.is_null() || path.contains('.') {
        if !value.is_null() {
            super::value::check_no_operator_keys(value, path)?;
        }
        return Ok(value.clone());
    }
    let Some(field) = collection.field(path) else {
        return Err(QueryError::UnknownField(path.to_owned()));
    };
    if field.ty == FieldType::Json {
        super::value::check_no_operator_keys(value, path)?;
        return Ok(value.clone());
    }
    let stored = to_sql(field.ty, value, path, Use::Storage)?;
    Ok(from_sql(field.ty, (&stored).into())?.unwrap_or(Value::Null))
}

fn apply_op(
    collection: &Collection,
    doc: &mut Map<String, Value>,
    op: &UpdateOp,
    now: &str,
) -> Result<(), QueryError> {
    match op {
        UpdateOp::Set { path, value } => {
            let value = canonical(collection, path, value)?;
            set(doc, path, value)?;
        }
        UpdateOp::Unset { path } => {
            unset(doc, path);
        }
        UpdateOp::Inc { path, by } | UpdateOp::Mul { path, by } => {
            let multiply = matches!(op, UpdateOp::Mul { .. });
            let current = get(doc, path).cloned();
            let result = match current {
                None | Some(Value::Null) if multiply => zero_like(by),
                None | Some(Value::Null) => Value::Number(by.clone()),
                Some(Value::Number(n)) => arithmetic(&n, by, multiply, path)?,
                Some(other) => {
                    return Err(QueryError::invalid(
                        path,
                        format!("cannot do arithmetic on {}", describe(&other)),
                    ));
                }
            };
            let result = canonical(collection, path, &result)?;
            set(doc, path, result)?;
        }
        UpdateOp::Min { path, value } | UpdateOp::Max { path, value } => {
            let value = canonical(collection, path, value)?;
            let replace = match get(doc, path) {
                None | Some(Value::Null) => true,
                Some(current) => {
                    let order = compare(&value, current).ok_or_else(|| {
                        QueryError::invalid(
                            path,
                            format!(
                                "cannot compare {} with {}",
                                describe(&value),
                                describe(current)
                            ),
                        )
                    })?;
                    if matches!(op, UpdateOp::Min { .. }) {
                        order == Ordering::Less
                    } else {
                        order == Ordering::Greater
                    }
                }
            };
            if replace {
                set(doc, path, value)?;
            }
        }
        UpdateOp::Rename { from, to } => {
            if let Some(value) = unset(doc, from) {
                let value = canonical(collection, to, &value)?;
                set(doc, to, value)?;
            }
        }
        UpdateOp::CurrentDate { path } => {
            let value = canonical(collection, path, &Value::String(now.to_owned()))?;
            set(doc, path, value)?;
        }
        UpdateOp::Push {
            path,
            values,
            slice,
        } => {
            let array = array_at(doc, path)?;
            array.extend(values.iter().cloned());
            if let Some(slice) = slice {
                let keep = usize::try_from(slice.unsigned_abs()).unwrap_or(usize::MAX);
                if *slice >= 0 {
                    array.truncate(keep);
                } else if array.len() > keep {
                    array.drain(..array.len() - keep);
                }
            }
            check_pushed(path, values)?;
        }
        UpdateOp::AddToSet { path, values } => {
            let array = array_at(doc, path)?;
            for value in values {
                if !array.contains(value) {
                    array.push(value.clone());
                }
            }
            check_pushed(path, values)?;
        }
        UpdateOp::Pull { path, condition } => {
            if let Some(current) = get_mut(doc, path) {
                let Value::Array(array) = current else {
                    return Err(QueryError::invalid(path, "is not an array"));
                };
                array.retain(|element| !pull_matches(condition, element));
            }
        }
        UpdateOp::Pop { path, last } => {
            if let Some(current) = get_mut(doc, path) {
                let Value::Array(array) = current else {
                    return Err(QueryError::invalid(path, "is not an array"));
                };
                if !array.is_empty() {
                    if *last {
                        array.pop();
                    } else {
                        array.remove(0);
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_pushed(path: &str, values: &[Value]) -> Result<(), QueryError> {
    values
        .iter()
        .try_for_each(|value| super::value::check_no_operator_keys(value, path))
}

fn zero_like(number: &Number) -> Value {
    if number.is_f64() {
        Value::from(0.0)
    } else {
        Value::from(0)
    }
}

fn arithmetic(a: &Number, b: &Number, multiply: bool, path: &str) -> Result<Value, QueryError> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let result = if multiply {
            x.checked_mul(y)
        } else {
            x.checked_add(y)
        };
        return result
            .map(Value::from)
            .ok_or_else(|| QueryError::invalid(path, "integer overflow"));
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    let result = if multiply { x * y } else { x + y };
    Number::from_f64(result)
        .map(Value::Number)
        .ok_or_else(|| QueryError::invalid(path, "result is not a finite number"))
}

/// Order of two values of the same kind; `None` across kinds.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b).map_or(a == b, Ordering::is_eq)
}

fn pull_matches(condition: &PullCondition, element: &Value) -> bool {
    match condition {
        PullCondition::Equals(value) => equal(value, element),
        PullCondition::Compare(comparisons) => comparisons.iter().all(|(op, operand)| {
            let order = compare(element, operand);
            let listed = || {
                operand
                    .as_array()
                    .is_some_and(|items| items.iter().any(|item| equal(item, element)))
            };
            match op.as_str() {
                "$eq" => equal(element, operand),
                "$ne" => !equal(element, operand),
                "$gt" => order == Some(Ordering::Greater),
                "$gte" => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
                "$lt" => order == Some(Ordering::Less),
                "$lte" => matches!(order, Some(Ordering::Less | Ordering::Equal)),
                "$in" => listed(),
                "$nin" => !listed(),
                _ => false,
            }
        }),
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.')
}

fn get<'d>(doc: &'d Map<String, Value>, path: &str) -> Option<&'d Value> {
    let mut parts = segments(path);
    let mut node = doc.get(parts.next()?)?;
    for part in parts {
        node = match node {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn get_mut<'d>(doc: &'d mut Map<String, Value>, path: &str) -> Option<&'d mut Value> {
    let mut parts = segments(path);
    let mut node = doc.get_mut(parts.next()?)?;
    for part in parts {
        node = match node {
            Value::Object(map) => map.get_mut(part)?,
            Value::Array(items) => items.get_mut(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Longest array Mongo-style padding may create through `$set` on an index.
const MAX_PAD: usize = 10_000;

/// Set `path` to `value`, creating missing objects on the way (and padding arrays with nulls
/// up to an index).
fn set(doc: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), QueryError> {
    let parts: Vec<&str> = segments(path).collect();
    let (last, parents) = parts.split_last().unwrap_or((&"", &[]));
    if parents.is_empty() {
        if value.is_null() {
            doc.remove(*last);
        } else {
            doc.insert((*last).to_owned(), value);
        }
        return Ok(());
    }
    let mut node = doc
        .entry(parents[0].to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    for part in &parents[1..] {
        node = child_slot(node, part, path)?;
    }
    *child_slot(node, last, path)? = value;
    Ok(())
}

fn child_slot<'v>(
    node: &'v mut Value,
    part: &str,
    path: &str,
) -> Result<&'v mut Value, QueryError> {
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    match node {
        Value::Object(map) => Ok(map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))),
        Value::Array(items) => {
            let index: usize = part.parse().map_err(|_| {
                QueryError::invalid(path, format!("{part:?} is not an index into an array"))
            })?;
            if index >= MAX_PAD {
                return Err(QueryError::invalid(path, "array index too large"));
            }
            if items.len() <= index {
                items.resize(index + 1, Value::Null);
            }
            Ok(&mut items[index])
        }
        other => Err(QueryError::invalid(
            path,
            format!("cannot create a field inside {}", describe(other)),
        )),
    }
}

/// Remove `path`; an array element is set to null rather than shifting the others (as Mongo).
fn unset(doc: &mut Map<String, Value>, path: &str) -> Option<Value> {
    let Some((parent, last)) = path.rsplit_once('.') else {
        return doc.remove(path);
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let slot = items.get_mut(last.parse::<usize>().ok()?)?;
            Some(std::mem::replace(slot, Value::Null))
        }
        _ => None,
    }
}

/// The array at `path`, created empty when missing.
fn array_at<'d>(
    doc: &'d mut Map<String, Value>,
    path: &str,
) -> Result<&'d mut Vec<Value>, QueryError> {
    if get(doc, path).is_none_or(Value::is_null) {
        set(doc, path, Value::Array(Vec::new()))?;
    }
    match get_mut(doc, path) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(QueryError::invalid(path, "is not an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::schema::app_collection;
    use serde_json::json;

    fn notes() -> Collection {
        app_collection(
            "notes",
            &[
                ("n".into(), FieldType::Integer),
                ("title".into(), FieldType::Text),
                ("when".into(), FieldType::Date),
                ("meta".into(), FieldType::Json),
            ],
        )
    }

    fn apply(update: Value, doc: Value) -> Result<Value, QueryError> {
        let mut doc = doc.as_object().cloned().unwrap();
        Update::from_json(&update)?.apply(&notes(), &mut doc, "2026-01-01T00:00:00Z")?;
        Ok(Value::Object(doc))
    }

    #[test]
    fn operators_known_answers() {
        let doc = json!({"_id": "a", "n": 2, "meta": {"tags": ["x", "y", "x"], "c": 1}});
        assert_eq!(
            apply(json!({"$inc": {"n": 3, "meta.c": 1.5}}), doc.clone()).unwrap(),
            json!({"_id": "a", "n": 5, "meta": {"tags": ["x", "y", "x"], "c": 2.5}})
        );
        assert_eq!(
            apply(
                json!({"$pull": {"meta.tags": "x"}, "$mul": {"n": 4}}),
                doc.clone()
            )
            .unwrap(),
            json!({"_id": "a", "n": 8, "meta": {"tags": ["y"], "c": 1}})
        );
        assert_eq!(
            apply(
                json!({"$push": {"meta.tags": {"$each": ["z", "w"], "$slice": -2}}}),
                doc.clone()
            )
            .unwrap()["meta"]["tags"],
            json!(["z", "w"])
        );
        assert_eq!(
            apply(
                json!({"$set": {"when": "2026-05-01T02:00:00+02:00"}}),
                doc.clone()
            )
            .unwrap()["when"],
            json!("2026-05-01T00:00:00Z")
        );
        assert_eq!(
            apply(
                json!({"$rename": {"meta.c": "meta.d"}, "$pop": {"meta.tags": -1}}),
                doc
            )
            .unwrap()["meta"],
            json!({"tags": ["y", "x"], "d": 1})
        );
    }

    #[test]
    fn type_errors_and_conflicts() {
        let doc = json!({"_id": "a", "title": "t"});
        assert!(apply(json!({"$inc": {"title": 1}}), doc.clone()).is_err());
        assert!(apply(json!({"$set": {"n": "one"}}), doc.clone()).is_err());
        assert!(apply(json!({"$set": {"_id": "b"}}), doc.clone()).is_err());
        assert!(apply(json!({"$set": {"title.x": 1}}), doc.clone()).is_err());
        assert!(apply(json!({"$set": {"nope": 1}}), doc.clone()).is_err());
        assert!(
            apply(
                json!({"$set": {"meta.a": 1}, "$unset": {"meta": 1}}),
                doc.clone()
            )
            .is_err()
        );
        assert!(apply(json!({"title": "replacement"}), doc).is_err());
    }
}

//! The filter AST and its parser from Mongo-style JSON.
//!
//! The AST is plain serializable data, so it can cross the `MailStore` boundary and be built
//! directly by Rust code (IMAP SEARCH) without going through JSON text.

use super::error::QueryError;
use super::value::{describe, single_entry};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Nesting depth accepted for filters (logical operators, `$not`, `$elemMatch`).
pub const MAX_DEPTH: usize = 24;
/// Operators accepted in one filter, counting every node.
pub const MAX_OPERATORS: usize = 512;
/// Elements accepted in one `$in`, `$nin` or `$all` list.
pub const MAX_LIST_LEN: usize = 10_000;
/// Dotted path segments accepted in one field path.
pub const MAX_PATH_SEGMENTS: usize = 16;

/// A filter over the documents of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// All must match; an empty list matches everything (the empty filter `{}`).
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    /// A condition on the value at a (possibly dotted) path.
    Field {
        path: String,
        condition: Condition,
    },
}

/// A condition on the value(s) found at a path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(Vec<TypeName>),
    Regex {
        pattern: String,
        options: String,
    },
    /// SQL `LIKE` pattern (`%`, `_`, `\` escapes), case-sensitive.
    Like(String),
    /// As [`Condition::Like`], case-insensitive (Unicode simple case folding).
    Ilike(String),
    Not(Box<Condition>),
    ElemMatch(Box<ElemMatch>),
    Size(u64),
    All(Vec<Value>),
    /// Several operators on one field (`{"$gt": 1, "$lt": 5}`): all must hold.
    AllOf(Vec<Condition>),
}

/// What `$elemMatch` applies to each array element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElemMatch {
    /// Operators on the element itself: `{"$elemMatch": {"$gt": 1, "$lt": 5}}`.
    Element(Condition),
    /// A filter over object elements: `{"$elemMatch": {"name": "x", "qty": {"$gt": 2}}}`.
    Document(Filter),
}

/// Type names of `$type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeName {
    Null,
    Bool,
    /// Any number.
    Number,
    /// An integer number (`int`, `long`).
    Int,
    /// A non-integer number (`double`).
    Double,
    String,
    Array,
    Object,
    Date,
    BinData,
}

impl TypeName {
    fn parse(value: &Value) -> Result<Self, QueryError> {
        let name = match value {
            Value::String(s) => s.as_str(),
            Value::Number(n) => match n.as_i64() {
                Some(1) => "double",
                Some(2) => "string",
                Some(3) => "object",
                Some(4) => "array",
                Some(5) => "binData",
                Some(8) => "bool",
                Some(9) => "date",
                Some(10) => "null",
                Some(16 | 18) => "int",
                _ => "",
            },
            _ => "",
        };
        Ok(match name {
            "null" => TypeName::Null,
            "bool" | "boolean" => TypeName::Bool,
            "number" => TypeName::Number,
            "int" | "long" => TypeName::Int,
            "double" | "decimal" => TypeName::Double,
            "string" => TypeName::String,
            "array" => TypeName::Array,
            "object" => TypeName::Object,
            "date" => TypeName::Date,
            "binData" => TypeName::BinData,
            _ => {
                return Err(QueryError::invalid(
                    "$type",
                    format!("unknown type {value}"),
                ));
            }
        })
    }
}

impl Filter {
    /// The filter that matches every document.
    pub fn all() -> Self {
        Filter::And(Vec::new())
    }

    /// `path == value`.
    pub fn eq(path: impl Into<String>, value: Value) -> Self {
        Filter::Field {
            path: path.into(),
            condition: Condition::Eq(value),
        }
    }

    /// `condition` on `path`.
    pub fn field(path: impl Into<String>, condition: Condition) -> Self {
        Filter::Field {
            path: path.into(),
            condition,
        }
    }

    /// Parse a Mongo-style filter document. Limits on depth, operator count and list sizes
    /// are enforced here and again by the compiler (for ASTs built in Rust).
    pub fn from_json(value: &Value) -> Result<Self, QueryError> {
        let mut parser = Parser { operators: 0 };
        parser.filter(value, 0)
    }
}

struct Parser {
    operators: usize,
}

impl Parser {
    fn count(&mut self, depth: usize) -> Result<(), QueryError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(QueryError::TooComplex(format!(
                "more than {MAX_OPERATORS} operators"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(QueryError::TooComplex(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn filter(&mut self, value: &Value, depth: usize) -> Result<Filter, QueryError> {
        self.count(depth)?;
        let Value::Object(map) = value else {
            return Err(QueryError::InvalidRequest(format!(
                "a filter must be an object, got {}",
                describe(value)
            )));
        };
        let mut parts = Vec::with_capacity(map.len());
        for (key, value) in map {
            parts.push(match key.as_str() {
                "$and" | "$or" | "$nor" => {
                    let items = value
                        .as_array()
                        .filter(|items| !items.is_empty())
                        .ok_or_else(|| {
                            QueryError::invalid(key, "expected a non-empty array of filters")
                        })?;
                    let filters = items
                        .iter()
                        .map(|item| self.filter(item, depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    match key.as_str() {
                        "$and" => Filter::And(filters),
                        "$or" => Filter::Or(filters),
                        _ => Filter::Nor(filters),
                    }
                }
                operator if operator.starts_with('$') => {
                    return Err(QueryError::UnknownOperator(operator.to_owned()));
                }
                path => {
                    check_path(path)?;
                    Filter::Field {
                        path: path.to_owned(),
                        condition: self.field_value(value, depth + 1)?,
                    }
                }
            });
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap_or_else(Filter::all)
        } else {
            Filter::And(parts)
        })
    }

    /// The value of `{path: value}`: an operator object, or a literal to compare for equality.
    fn field_value(&mut self, value: &Value, depth: usize) -> Result<Condition, QueryError> {
        match value {
            Value::Object(map) if is_operator_object(map) => self.operators(map, depth),
            literal => {
                self.count(depth)?;
                check_literal(literal, "equality")?;
                Ok(Condition::Eq(literal.clone()))
            }
        }
    }

    fn operators(
        &mut self,
        map: &Map<String, Value>,
        depth: usize,
    ) -> Result<Condition, QueryError> {
        let mut conditions = Vec::with_capacity(map.len());
        let regex_options = map.get("$options");
        for (operator, operand) in map {
            self.count(depth)?;
            let literal = |operand: &Value| -> Result<Value, QueryError> {
                check_literal(operand, operator)?;
                Ok(operand.clone())
            };
            conditions.push(match operator.as_str() {
                "$eq" => Condition::Eq(literal(operand)?),
                "$ne" => Condition::Ne(literal(operand)?),
                "$gt" => Condition::Gt(literal(operand)?),
                "$gte" => Condition::Gte(literal(operand)?),
                "$lt" => Condition::Lt(literal(operand)?),
                "$lte" => Condition::Lte(literal(operand)?),
                "$in" => Condition::In(list(operand, operator)?),
                "$nin" => Condition::Nin(list(operand, operator)?),
                "$all" => Condition::All(list(operand, operator)?),
                "$exists" => Condition::Exists(truthy(operand, operator)?),
                "$type" => Condition::Type(match operand {
                    Value::Array(items) => items
                        .iter()
                        .map(TypeName::parse)
                        .collect::<Result<_, _>>()?,
                    single => vec![TypeName::parse(single)?],
                }),
                "$regex" => {
                    let pattern = operand
                        .as_str()
                        .ok_or_else(|| QueryError::invalid("$regex", "expected a string"))?;
                    let options = match regex_options {
                        None => "",
                        Some(Value::String(options)) => options.as_str(),
                        Some(_) => {
                            return Err(QueryError::invalid("$options", "expected a string"));
                        }
                    };
                    super::regex::check_options(options)?;
                    Condition::Regex {
                        pattern: pattern.to_owned(),
                        options: options.to_owned(),
                    }
                }
                "$options" if map.contains_key("$regex") => continue,
                "$options" => {
                    return Err(QueryError::invalid("$options", "only valid with $regex"));
                }
                "$like" | "$ilike" => {
                    let pattern = operand
                        .as_str()
                        .ok_or_else(|| QueryError::invalid(operator, "expected a string"))?
                        .to_owned();
                    if operator == "$like" {
                        Condition::Like(pattern)
                    } else {
                        Condition::Ilike(pattern)
                    }
                }
                "$not" => match operand {
                    Value::Object(inner) if is_operator_object(inner) => {
                        Condition::Not(Box::new(self.operators(inner, depth + 1)?))
                    }
                    _ => {
                        return Err(QueryError::invalid(
                            "$not",
                            "expected an operator object such as {\"$regex\": ...}",
                        ));
                    }
                },
                "$elemMatch" => {
                    let Value::Object(inner) = operand else {
                        return Err(QueryError::invalid("$elemMatch", "expected an object"));
                    };
                    let elem = if is_operator_object(inner) {
                        ElemMatch::Element(self.operators(inner, depth + 1)?)
                    } else {
                        ElemMatch::Document(self.filter(operand, depth + 1)?)
                    };
                    Condition::ElemMatch(Box::new(elem))
                }
                "$size" => Condition::Size(operand.as_u64().ok_or_else(|| {
                    QueryError::invalid("$size", "expected a non-negative integer")
                })?),
                other => return Err(QueryError::UnknownOperator(other.to_owned())),
            });
        }
        Ok(if conditions.len() == 1 {
            conditions.pop().unwrap_or(Condition::AllOf(Vec::new()))
        } else {
            Condition::AllOf(conditions)
        })
    }
}

/// An object whose keys are operators (`{"$gt": 1}`). Extended JSON literals (`$date`,
/// `$binary`) are values, not operators. Mixing operators and plain keys is an error reported
/// by [`check_literal`] when the object is then taken as a literal.
pub(crate) fn is_operator_object(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|key| key.starts_with('$')) && !is_extended_json(map)
}

pub(crate) fn is_extended_json(map: &Map<String, Value>) -> bool {
    matches!(single_entry(map), Some(("$date" | "$binary", _)))
}

/// A literal may contain `$` keys only as extended JSON; anything else is a misplaced operator.
fn check_literal(value: &Value, context: &str) -> Result<(), QueryError> {
    match value {
        Value::Object(map) if is_extended_json(map) => Ok(()),
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|key| key.starts_with('$')) {
                return Err(QueryError::UnknownOperator(format!("{key} (in {context})")));
            }
            map.values()
                .try_for_each(|inner| check_literal(inner, context))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|inner| check_literal(inner, context)),
        _ => Ok(()),
    }
}

fn list(operand: &Value, operator: &str) -> Result<Vec<Value>, QueryError> {
    let items = operand
        .as_array()
        .ok_or_else(|| QueryError::invalid(operator, "expected an array"))?;
    if items.len() > MAX_LIST_LEN {
        return Err(QueryError::TooComplex(format!(
            "{operator} lists at most {MAX_LIST_LEN} values, got {}",
            items.len()
        )));
    }
    for item in items {
        check_literal(item, operator)?;
    }
    Ok(items.clone())
}

fn truthy(operand: &Value, operator: &str) -> Result<bool, QueryError> {
    match operand {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64() != Some(0.0)),
        _ => Err(QueryError::invalid(operator, "expected a boolean")),
    }
}

/// A field path: dot-separated names (`[A-Za-z_][A-Za-z0-9_]*`) or array indexes (digits).
pub(crate) fn check_path(path: &str) -> Result<(), QueryError> {
    let unknown = || QueryError::UnknownField(path.to_owned());
    if path.is_empty() || path.len() > 512 {
        return Err(unknown());
    }
    let mut segments = 0;
    for (index, segment) in path.split('.').enumerate() {
        segments += 1;
        let is_name = super::value::validate_identifier(segment, 128).is_ok();
        let is_index = !segment.is_empty()
            && segment.len() <= 9
            && segment.bytes().all(|b| b.is_ascii_digit());
        if !(is_name || (is_index && index > 0)) {
            return Err(unknown());
        }
    }
    if segments > MAX_PATH_SEGMENTS {
        return Err(QueryError::TooComplex(format!(
            "field path has more than {MAX_PATH_SEGMENTS} segments"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_operators_and_literals() {
        let filter = Filter::from_json(&json!({
            "seen": false,
            "size": {"$gt": 10, "$lte": 20},
            "$or": [{"subject": {"$regex": "^re:", "$options": "i"}}, {"flagged": true}]
        }))
        .unwrap();
        let Filter::And(parts) = filter else {
            panic!("expected an $and")
        };
        assert_eq!(parts.len(), 3);
        assert!(parts.contains(&Filter::eq("seen", json!(false))));
        assert!(parts.contains(&Filter::field(
            "size",
            Condition::AllOf(vec![Condition::Gt(json!(10)), Condition::Lte(json!(20))])
        )));
    }

    #[test]
    fn refuses_unknown_operators_and_bad_paths() {
        for bad in [
            json!({"$where": "1"}),
            json!({"a": {"$expr": 1}}),
            json!({"a": {"$gt": 1, "b": 2}}),
            json!({"a;DROP": 1}),
            json!({"a..b": 1}),
            json!({"0": 1}),
            json!({"$and": []}),
            json!({"a": {"$options": "i"}}),
            json!({"a": {"$regex": "x", "$options": "g"}}),
        ] {
            assert!(Filter::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_and_operator_limits() {
        let mut deep = json!({"a": 1});
        for _ in 0..MAX_DEPTH + 1 {
            deep = json!({"$and": [deep]});
        }
        assert!(matches!(
            Filter::from_json(&deep),
            Err(QueryError::TooComplex(_))
        ));
        let wide: Map<String, Value> = (0..MAX_OPERATORS + 1)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        assert!(matches!(
            Filter::from_json(&Value::Object(wide)),
            Err(QueryError::TooComplex(_))
        ));
        let big_in = json!({"a": {"$in": vec![1; MAX_LIST_LEN + 1]}});
        assert!(matches!(
            Filter::from_json(&big_in),
            Err(QueryError::TooComplex(_))
        ));
    }
}

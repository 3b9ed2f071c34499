//! Compile a [`Filter`] (and sort orders) into SQL text and bound parameters.
//!
//! Guarantees, by construction:
//! - every value from the query is a numbered parameter (`?N`), numbers and booleans included;
//! - every identifier comes from the [`Collection`] description; paths into JSON fields are
//!   checked to be plain names or indexes and bound as parameters too;
//! - the SQL text depends only on the shape of the query, so statements cache well.
//!
//! Semantics follow MongoDB: a condition on a path matches when any value found there matches,
//! where a path fans out through arrays (`from.address` looks at every address of `from`) and a
//! final array also offers its elements (`{"keywords": "x"}` matches `["x", "y"]`). Negations
//! (`$ne`, `$nin`, `$not`, `$nor`) match when the positive condition does not, missing fields
//! included. `{f: null}` matches null and missing. Comparisons only match values of the same
//! kind (numbers with numbers, strings with strings); typed fields refuse mismatched values.

use super::error::QueryError;
use super::filter::{
    Condition, ElemMatch, Filter, MAX_DEPTH, MAX_LIST_LEN, MAX_OPERATORS, TypeName, check_path,
};
use super::regex::{like_to_regex, with_options};
use super::schema::{Collection, FieldType};
use super::value::{Use, date_from_json, describe, to_sql};
use rusqlite::types::Value as SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;

/// Lists up to this long are bound value by value (`IN (?1, ?2)`), longer ones as one JSON
/// array (`IN (SELECT value FROM json_each(?1))`) so that any size shares one statement.
const SMALL_LIST: usize = 8;

/// SQLite's default limit on parameters in one statement.
const MAX_PARAMS: usize = 32_766;

/// SQL text and its parameters. The text refers to the row as `t` and to parameters as `?N`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledSql {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Ascending,
    Descending,
}

/// Compile `filter` over `collection` into a boolean SQL expression on the row alias `t`
/// (`FROM <table> AS t`). For `messages` the table is `messages`; IMAP SEARCH can use this as
/// its `WHERE` clause and add its own parameters after the returned ones (`?N` numbering).
pub fn compile_filter(collection: &Collection, filter: &Filter) -> Result<CompiledSql, QueryError> {
    let mut compiler = Compiler::new(collection);
    let sql = compiler.filter(filter, &Scope::Collection, 0)?;
    Ok(CompiledSql {
        sql,
        params: compiler.params,
    })
}

/// Where field paths are resolved: the collection's fields, or (inside `$elemMatch`) the
/// object element given by an SQL expression yielding its JSON text.
pub(crate) enum Scope {
    Collection,
    Element(String),
}

/// What a path designates.
enum Target {
    /// A typed column (or computed expression), possibly reached through a lookup.
    Typed {
        expr: String,
        ty: FieldType,
        lookup: Option<&'static super::schema::Lookup>,
    },
    /// A place inside JSON text: `doc` is the SQL expression of the JSON, `segments` the path;
    /// `address_field` is the field's tag in `message_addresses` when it has one.
    Json {
        doc: String,
        segments: Vec<Segment>,
        address_field: Option<&'static str>,
    },
}

enum Segment {
    Key(String),
    Index(u32),
}

pub(crate) struct Compiler<'c> {
    collection: &'c Collection,
    pub(crate) params: Vec<SqlValue>,
    aliases: usize,
    operators: usize,
}

impl<'c> Compiler<'c> {
    pub(crate) fn new(collection: &'c Collection) -> Self {
        Self {
            collection,
            params: Vec::new(),
            aliases: 0,
            operators: 0,
        }
    }

    /// Bind `value` and return its placeholder.
    pub(crate) fn bind(&mut self, value: SqlValue) -> Result<String, QueryError> {
        if self.params.len() >= MAX_PARAMS {
            return Err(QueryError::TooComplex(format!(
                "more than {MAX_PARAMS} parameters"
            )));
        }
        self.params.push(value);
        Ok(format!("?{}", self.params.len()))
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    fn tick(&mut self, depth: usize) -> Result<(), QueryError> {
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

    pub(crate) fn filter(
        &mut self,
        filter: &Filter,
        scope: &Scope,
        depth: usize,
    ) -> Result<String, QueryError> {
        self.tick(depth)?;
        match filter {
            Filter::And(parts) if parts.is_empty() => Ok("1".into()),
            Filter::And(parts) => self.join(parts, " AND ", scope, depth),
            Filter::Or(parts) if parts.is_empty() => Ok("0".into()),
            Filter::Or(parts) => self.join(parts, " OR ", scope, depth),
            Filter::Nor(parts) if parts.is_empty() => Ok("1".into()),
            Filter::Nor(parts) => Ok(negate(&self.join(parts, " OR ", scope, depth)?)),
            Filter::Field { path, condition } => match self.resolve(path, scope)? {
                Target::Typed {
                    expr,
                    ty,
                    lookup: None,
                } => self.typed(&expr, ty, path, condition, depth),
                Target::Typed {
                    ty,
                    lookup: Some(lookup),
                    ..
                } => {
                    let inner = self.typed(lookup.expr, ty, path, condition, depth)?;
                    if lookup.unique
                        && matches!(condition, Condition::Eq(value) if !value.is_null())
                    {
                        // At most one id matches: as a scalar, the equality can pick an index
                        // on the key and keep its order (an `IN` list cannot promise one
                        // value, so `ORDER BY` would sort every match). Without a match the
                        // id is `NO_ID`, which no row holds, so under a negation the row
                        // matches exactly as it would with an empty `IN` list.
                        return Ok(format!(
                            "{} = coalesce((SELECT {} FROM {} WHERE {inner}), {})",
                            lookup.key,
                            lookup.id,
                            lookup.source,
                            super::schema::NO_ID
                        ));
                    }
                    Ok(format!(
                        "{} IN (SELECT {} FROM {} WHERE {inner})",
                        lookup.key, lookup.id, lookup.source
                    ))
                }
                Target::Json {
                    doc,
                    segments,
                    address_field,
                } => {
                    if let (Some(tag), [Segment::Key(key)]) = (address_field, segments.as_slice())
                        && key == "address"
                        && let Some(sql) = self.address_lookup(tag, path, condition, depth)?
                    {
                        return Ok(sql);
                    }
                    self.json_field(&doc, &segments, path, condition, depth)
                }
            },
        }
    }

    fn join(
        &mut self,
        parts: &[Filter],
        separator: &str,
        scope: &Scope,
        depth: usize,
    ) -> Result<String, QueryError> {
        let mut sql = String::from("(");
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                sql.push_str(separator);
            }
            sql.push_str(&self.filter(part, scope, depth + 1)?);
        }
        sql.push(')');
        Ok(sql)
    }

    fn resolve(&self, path: &str, scope: &Scope) -> Result<Target, QueryError> {
        check_path(path)?;
        let mut parts = path.split('.');
        let segments = segments_of;
        match scope {
            Scope::Element(doc) => Ok(Target::Json {
                doc: doc.clone(),
                segments: segments(path.split('.')),
                address_field: None,
            }),
            Scope::Collection => {
                let first = parts.next().unwrap_or_default();
                let field = self
                    .collection
                    .field(first)
                    .ok_or_else(|| QueryError::UnknownField(path.to_owned()))?;
                let rest = segments(parts);
                match field.ty {
                    FieldType::Json => Ok(Target::Json {
                        doc: field.expr.to_string(),
                        segments: rest,
                        address_field: field.address_field,
                    }),
                    ty if rest.is_empty() => Ok(Target::Typed {
                        expr: field.expr.to_string(),
                        ty,
                        lookup: field.lookup,
                    }),
                    _ => Err(QueryError::UnknownField(path.to_owned())),
                }
            }
        }
    }

    /// A condition on a typed column.
    fn typed(
        &mut self,
        expr: &str,
        ty: FieldType,
        name: &str,
        condition: &Condition,
        depth: usize,
    ) -> Result<String, QueryError> {
        self.tick(depth)?;
        let not_array =
            || QueryError::invalid(name, format!("is a {} field, not an array", ty.name()));
        Ok(match condition {
            Condition::Eq(Value::Null)
            | Condition::Gte(Value::Null)
            | Condition::Lte(Value::Null) => format!("{expr} IS NULL"),
            Condition::Gt(Value::Null) | Condition::Lt(Value::Null) => "0".into(),
            Condition::Eq(value) => self.typed_compare(expr, ty, name, "=", value)?,
            Condition::Gt(value) => self.typed_compare(expr, ty, name, ">", value)?,
            Condition::Gte(value) => self.typed_compare(expr, ty, name, ">=", value)?,
            Condition::Lt(value) => self.typed_compare(expr, ty, name, "<", value)?,
            Condition::Lte(value) => self.typed_compare(expr, ty, name, "<=", value)?,
            Condition::Ne(value) => {
                negate(&self.typed(expr, ty, name, &Condition::Eq(value.clone()), depth)?)
            }
            Condition::In(values) => self.typed_in(expr, ty, name, values)?,
            Condition::Nin(values) => negate(&self.typed_in(expr, ty, name, values)?),
            Condition::Exists(true) => format!("{expr} IS NOT NULL"),
            Condition::Exists(false) => format!("{expr} IS NULL"),
            Condition::Type(types) => {
                let mut parts = Vec::new();
                if types.contains(&TypeName::Null) {
                    parts.push(format!("{expr} IS NULL"));
                }
                if types.iter().any(|t| typed_field_has_type(ty, *t)) {
                    parts.push(format!("{expr} IS NOT NULL"));
                }
                or_all(parts)
            }
            Condition::Regex { pattern, options } => {
                let pattern = with_options(pattern, options)?;
                self.typed_regex(expr, ty, name, pattern)?
            }
            Condition::Like(pattern) => {
                let pattern = like_to_regex(pattern, false)?;
                self.typed_regex(expr, ty, name, pattern)?
            }
            Condition::Ilike(pattern) => {
                let pattern = like_to_regex(pattern, true)?;
                self.typed_regex(expr, ty, name, pattern)?
            }
            Condition::Not(inner) => negate(&self.typed(expr, ty, name, inner, depth + 1)?),
            Condition::ElemMatch(_) | Condition::Size(_) | Condition::All(_) => {
                return Err(not_array());
            }
            Condition::AllOf(conditions) => {
                let mut parts = Vec::with_capacity(conditions.len());
                for inner in conditions {
                    parts.push(self.typed(expr, ty, name, inner, depth + 1)?);
                }
                and_all(parts)
            }
        })
    }

    fn typed_compare(
        &mut self,
        expr: &str,
        ty: FieldType,
        name: &str,
        operator: &str,
        value: &Value,
    ) -> Result<String, QueryError> {
        let bound = to_sql(ty, value, name, Use::Filter)?;
        let placeholder = self.bind(bound)?;
        Ok(format!("{expr} {operator} {placeholder}"))
    }

    fn typed_in(
        &mut self,
        expr: &str,
        ty: FieldType,
        name: &str,
        values: &[Value],
    ) -> Result<String, QueryError> {
        check_list_len(values, "$in")?;
        let mut parts = Vec::new();
        if values.iter().any(Value::is_null) {
            parts.push(format!("{expr} IS NULL"));
        }
        let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
        if present.is_empty() {
            return Ok(or_all(parts));
        }
        if ty == FieldType::Binary || present.len() <= SMALL_LIST {
            // Short lists (the common case) plan and run fastest as plain placeholders; bytes
            // have no JSON form for json_each, so they always take this path.
            let mut placeholders = Vec::with_capacity(present.len());
            for value in present {
                let bound = to_sql(ty, value, name, Use::Filter)?;
                placeholders.push(self.bind(bound)?);
            }
            parts.push(format!("{expr} IN ({})", placeholders.join(", ")));
        } else {
            // One parameter whatever the list size, so every size shares one cached statement.
            let mut list = Vec::with_capacity(present.len());
            for value in present {
                list.push(match to_sql(ty, value, name, Use::Filter)? {
                    SqlValue::Integer(i) => Value::from(i),
                    SqlValue::Real(r) => Value::from(r),
                    SqlValue::Text(s) => Value::String(s),
                    SqlValue::Null | SqlValue::Blob(_) => Value::Null,
                });
            }
            let placeholder = self.bind(SqlValue::Text(Value::Array(list).to_string()))?;
            parts.push(format!(
                "{expr} IN (SELECT value FROM json_each({placeholder}))"
            ));
        }
        Ok(or_all(parts))
    }

    fn typed_regex(
        &mut self,
        expr: &str,
        ty: FieldType,
        name: &str,
        pattern: String,
    ) -> Result<String, QueryError> {
        if !matches!(ty, FieldType::Text | FieldType::Date) {
            return Err(QueryError::invalid(
                name,
                format!(
                    "patterns apply to text fields, this is a {} field",
                    ty.name()
                ),
            ));
        }
        let placeholder = self.bind(SqlValue::Text(pattern))?;
        Ok(format!("{expr} REGEXP {placeholder}"))
    }

    /// `<field>.address` compared with strings (`$eq`, `$in`, their negations), through the
    /// `message_addresses` index instead of reading every message's JSON. Exactly the rows the
    /// JSON path would match: that table holds every text `address` of the field's list as
    /// stored, and a string only ever equals text. `None` for any other condition (a pattern,
    /// a null, a non-string value), which then takes the general JSON path.
    fn address_lookup(
        &mut self,
        tag: &'static str,
        name: &str,
        condition: &Condition,
        depth: usize,
    ) -> Result<Option<String>, QueryError> {
        let strings = |values: &[Value]| -> Result<Option<Vec<String>>, QueryError> {
            let mut strings = Vec::with_capacity(values.len());
            for value in values {
                match json_literal(value, name)? {
                    Value::String(text) => strings.push(text),
                    _ => return Ok(None),
                }
            }
            Ok(Some(strings))
        };
        let (wanted, negated) = match condition {
            Condition::Eq(value) => (strings(std::slice::from_ref(value))?, false),
            Condition::Ne(value) => (strings(std::slice::from_ref(value))?, true),
            Condition::In(values) => {
                check_list_len(values, "$in")?;
                (strings(values)?, false)
            }
            Condition::Nin(values) => {
                check_list_len(values, "$nin")?;
                (strings(values)?, true)
            }
            _ => (None, false),
        };
        let Some(wanted) = wanted.filter(|wanted| !wanted.is_empty()) else {
            return Ok(None);
        };
        self.tick(depth)?;
        // `tag` is one of the schema's static names, never text from the query.
        let matches = if wanted.len() <= SMALL_LIST {
            let mut placeholders = Vec::with_capacity(wanted.len());
            for address in wanted {
                placeholders.push(self.bind(SqlValue::Text(address))?);
            }
            format!("a.address IN ({})", placeholders.join(", "))
        } else {
            let list = Value::Array(wanted.into_iter().map(Value::String).collect());
            let placeholder = self.bind(SqlValue::Text(list.to_string()))?;
            format!("a.address IN (SELECT value FROM json_each({placeholder}))")
        };
        let found = format!(
            "t.id IN (SELECT a.message_id FROM message_addresses AS a \
             WHERE a.field = '{tag}' AND {matches})"
        );
        Ok(Some(if negated { negate(&found) } else { found }))
    }

    /// A condition on a path inside JSON, at field level (where negation and null semantics
    /// consider all the values found at the path).
    fn json_field(
        &mut self,
        doc: &str,
        segments: &[Segment],
        name: &str,
        condition: &Condition,
        depth: usize,
    ) -> Result<String, QueryError> {
        self.tick(depth)?;
        Ok(match condition {
            Condition::Eq(Value::Null)
            | Condition::Gte(Value::Null)
            | Condition::Lte(Value::Null) => {
                let missing = negate(&self.candidates(doc, segments, false, |_, c| {
                    Ok(format!("{c}.type IS NOT NULL"))
                })?);
                let null =
                    self.candidates(doc, segments, true, |_, c| Ok(format!("{c}.type = 'null'")))?;
                format!("({missing} OR {null})")
            }
            Condition::Ne(value) => negate(&self.json_field(
                doc,
                segments,
                name,
                &Condition::Eq(value.clone()),
                depth + 1,
            )?),
            Condition::In(values) => {
                check_list_len(values, "$in")?;
                let mut parts = Vec::new();
                if values.iter().any(Value::is_null) {
                    parts.push(self.json_field(
                        doc,
                        segments,
                        name,
                        &Condition::Eq(Value::Null),
                        depth + 1,
                    )?);
                }
                if values.iter().any(|v| !v.is_null()) {
                    parts.push(self.candidates(doc, segments, true, |compiler, c| {
                        compiler.node(c, name, condition, depth + 1)
                    })?);
                }
                or_all(parts)
            }
            Condition::Nin(values) => negate(&self.json_field(
                doc,
                segments,
                name,
                &Condition::In(values.clone()),
                depth + 1,
            )?),
            Condition::Exists(exists) => {
                let found = self.candidates(doc, segments, false, |_, c| {
                    Ok(format!("{c}.type IS NOT NULL"))
                })?;
                if *exists { found } else { negate(&found) }
            }
            Condition::Not(inner) => {
                negate(&self.json_field(doc, segments, name, inner, depth + 1)?)
            }
            Condition::All(values) => {
                check_list_len(values, "$all")?;
                let mut parts = Vec::with_capacity(values.len().max(1));
                for value in values {
                    parts.push(self.json_field(
                        doc,
                        segments,
                        name,
                        &Condition::Eq(value.clone()),
                        depth + 1,
                    )?);
                }
                if parts.is_empty() {
                    "0".into()
                } else {
                    and_all(parts)
                }
            }
            Condition::AllOf(conditions) => {
                let mut parts = Vec::with_capacity(conditions.len());
                for inner in conditions {
                    parts.push(self.json_field(doc, segments, name, inner, depth + 1)?);
                }
                and_all(parts)
            }
            // `$size` and `$elemMatch` look at arrays themselves, never at their elements.
            Condition::Size(_) | Condition::ElemMatch(_) => {
                self.candidates(doc, segments, false, |compiler, c| {
                    compiler.node(c, name, condition, depth + 1)
                })?
            }
            _ => self.candidates(doc, segments, true, |compiler, c| {
                compiler.node(c, name, condition, depth + 1)
            })?,
        })
    }

    /// `EXISTS` a value at the path (`expand_leaf`: an array there also offers its elements)
    /// for which `condition` (given the row alias with columns `type` and `value`) holds.
    fn candidates(
        &mut self,
        doc: &str,
        segments: &[Segment],
        expand_leaf: bool,
        condition: impl FnOnce(&mut Self, &str) -> Result<String, QueryError>,
    ) -> Result<String, QueryError> {
        let alias = self.alias("c");
        let condition = condition(self, &alias)?;
        let mut pattern = path_pattern(segments);
        if expand_leaf {
            pattern.push_str("(?:\\[[0-9]+\\])?");
        }
        pattern.push('$');
        let placeholder = self.bind(SqlValue::Text(pattern))?;
        Ok(format!(
            "EXISTS (SELECT 1 FROM json_tree({doc}) AS {alias} WHERE {condition} \
             AND {alias}.fullkey REGEXP {placeholder})"
        ))
    }

    /// A condition on one JSON node (`alias.type`, `alias.value`), as inside `$elemMatch`.
    fn node(
        &mut self,
        c: &str,
        name: &str,
        condition: &Condition,
        depth: usize,
    ) -> Result<String, QueryError> {
        self.tick(depth)?;
        Ok(match condition {
            Condition::Eq(Value::Null)
            | Condition::Gte(Value::Null)
            | Condition::Lte(Value::Null) => format!("{c}.type = 'null'"),
            Condition::Gt(Value::Null) | Condition::Lt(Value::Null) => "0".into(),
            Condition::Eq(value) => self.node_eq(c, name, value)?,
            Condition::Ne(value) => {
                negate(&self.node(c, name, &Condition::Eq(value.clone()), depth + 1)?)
            }
            Condition::Gt(value) => self.node_compare(c, name, ">", value)?,
            Condition::Gte(value) => self.node_compare(c, name, ">=", value)?,
            Condition::Lt(value) => self.node_compare(c, name, "<", value)?,
            Condition::Lte(value) => self.node_compare(c, name, "<=", value)?,
            Condition::In(values) => {
                check_list_len(values, "$in")?;
                let mut parts = Vec::new();
                if values.iter().any(Value::is_null) {
                    parts.push(format!("{c}.type = 'null'"));
                }
                let present: Vec<Value> = values
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| json_literal(v, name))
                    .collect::<Result<_, _>>()?;
                if !present.is_empty() {
                    let placeholder =
                        self.bind(SqlValue::Text(Value::Array(present).to_string()))?;
                    let v = self.alias("v");
                    parts.push(format!(
                        "EXISTS (SELECT 1 FROM json_each({placeholder}) AS {v} WHERE \
                         ({v}.type = {c}.type OR ({v}.type IN ('integer', 'real') \
                         AND {c}.type IN ('integer', 'real'))) AND {v}.value = {c}.value)"
                    ));
                }
                or_all(parts)
            }
            Condition::Nin(values) => {
                negate(&self.node(c, name, &Condition::In(values.clone()), depth + 1)?)
            }
            Condition::Exists(exists) => if *exists { "1" } else { "0" }.into(),
            Condition::Type(types) => {
                let mut names: Vec<Value> = Vec::new();
                for type_name in types {
                    for json_type in json_types(*type_name) {
                        names.push(Value::from(*json_type));
                    }
                }
                if names.is_empty() {
                    "0".into()
                } else {
                    let placeholder = self.bind(SqlValue::Text(Value::Array(names).to_string()))?;
                    format!("{c}.type IN (SELECT value FROM json_each({placeholder}))")
                }
            }
            Condition::Regex { pattern, options } => {
                let pattern = with_options(pattern, options)?;
                self.node_regex(c, pattern)?
            }
            Condition::Like(pattern) => self.node_regex(c, like_to_regex(pattern, false)?)?,
            Condition::Ilike(pattern) => self.node_regex(c, like_to_regex(pattern, true)?)?,
            Condition::Not(inner) => negate(&self.node(c, name, inner, depth + 1)?),
            Condition::Size(size) => {
                let size = i64::try_from(*size)
                    .map_err(|_| QueryError::invalid("$size", "out of range"))?;
                let placeholder = self.bind(SqlValue::Integer(size))?;
                format!("({c}.type = 'array' AND json_array_length({c}.value) = {placeholder})")
            }
            Condition::ElemMatch(elem) => {
                let e = self.alias("e");
                let inner = match elem.as_ref() {
                    ElemMatch::Element(inner) => self.node(&e, name, inner, depth + 1)?,
                    ElemMatch::Document(filter) => {
                        // Only object elements are documents; others give NULL, which
                        // json_tree reads as no values at all.
                        let doc = format!("CASE WHEN {e}.type = 'object' THEN {e}.value END");
                        let inner = self.filter(filter, &Scope::Element(doc), depth + 1)?;
                        format!("{e}.type = 'object' AND {inner}")
                    }
                };
                format!(
                    "({c}.type = 'array' AND EXISTS (SELECT 1 FROM json_each({c}.value) AS {e} \
                     WHERE {inner}))"
                )
            }
            Condition::All(values) => {
                check_list_len(values, "$all")?;
                if values.is_empty() {
                    return Ok("0".into());
                }
                let mut parts = Vec::with_capacity(values.len());
                for value in values {
                    let direct = self.node(c, name, &Condition::Eq(value.clone()), depth + 1)?;
                    let e = self.alias("e");
                    let element = self.node(&e, name, &Condition::Eq(value.clone()), depth + 1)?;
                    parts.push(format!(
                        "({direct} OR ({c}.type = 'array' AND EXISTS (SELECT 1 FROM \
                         json_each({c}.value) AS {e} WHERE {element})))"
                    ));
                }
                and_all(parts)
            }
            Condition::AllOf(conditions) => {
                let mut parts = Vec::with_capacity(conditions.len());
                for inner in conditions {
                    parts.push(self.node(c, name, inner, depth + 1)?);
                }
                and_all(parts)
            }
        })
    }

    fn node_eq(&mut self, c: &str, name: &str, value: &Value) -> Result<String, QueryError> {
        let literal = json_literal(value, name)?;
        Ok(match &literal {
            Value::Null => format!("{c}.type = 'null'"),
            Value::Bool(b) => {
                let placeholder =
                    self.bind(SqlValue::Text(if *b { "true" } else { "false" }.into()))?;
                format!("{c}.type = {placeholder}")
            }
            Value::Number(_) => {
                let placeholder = self.bind(number_param(&literal))?;
                format!("({c}.type IN ('integer', 'real') AND {c}.value = {placeholder})")
            }
            Value::String(s) => {
                let placeholder = self.bind(SqlValue::Text(s.clone()))?;
                format!("({c}.type = 'text' AND {c}.value = {placeholder})")
            }
            Value::Array(_) | Value::Object(_) => {
                let kind = if literal.is_array() {
                    "array"
                } else {
                    "object"
                };
                let type_placeholder = self.bind(SqlValue::Text(kind.into()))?;
                let placeholder = self.bind(SqlValue::Text(literal.to_string()))?;
                format!("({c}.type = {type_placeholder} AND {c}.value = json({placeholder}))")
            }
        })
    }

    fn node_compare(
        &mut self,
        c: &str,
        name: &str,
        operator: &str,
        value: &Value,
    ) -> Result<String, QueryError> {
        let literal = json_literal(value, name)?;
        let (types, bound) = match &literal {
            Value::Number(_) => ("'integer', 'real'", number_param(&literal)),
            Value::String(s) => ("'text'", SqlValue::Text(s.clone())),
            Value::Bool(b) => ("'true', 'false'", SqlValue::Integer(i64::from(*b))),
            other => {
                return Err(QueryError::invalid(
                    name,
                    format!("cannot order-compare with {}", describe(other)),
                ));
            }
        };
        let placeholder = self.bind(bound)?;
        Ok(format!(
            "({c}.type IN ({types}) AND {c}.value {operator} {placeholder})"
        ))
    }

    fn node_regex(&mut self, c: &str, pattern: String) -> Result<String, QueryError> {
        let placeholder = self.bind(SqlValue::Text(pattern))?;
        Ok(format!(
            "({c}.type = 'text' AND {c}.value REGEXP {placeholder})"
        ))
    }

    /// `ORDER BY` terms for `sort`, ending with the key so the order is total.
    pub(crate) fn order_by(&mut self, sort: &[(String, SortOrder)]) -> Result<String, QueryError> {
        let mut terms = Vec::with_capacity(sort.len() + 1);
        for (path, order) in sort {
            let expr = match self.resolve(path, &Scope::Collection)? {
                Target::Typed { expr, .. } => expr,
                Target::Json { doc, segments, .. } if segments.is_empty() => doc,
                Target::Json { doc, segments, .. } => {
                    let mut json_path = String::from("$");
                    for segment in &segments {
                        match segment {
                            Segment::Key(key) => {
                                let _ = write!(json_path, ".{key}");
                            }
                            Segment::Index(index) => {
                                let _ = write!(json_path, "[{index}]");
                            }
                        }
                    }
                    let placeholder = self.bind(SqlValue::Text(json_path))?;
                    format!("json_extract({doc}, {placeholder})")
                }
            };
            let direction = match order {
                SortOrder::Ascending => "ASC",
                SortOrder::Descending => "DESC",
            };
            terms.push(format!("{expr} {direction}"));
        }
        terms.push(format!("{} ASC", self.collection.key_field().expr));
        Ok(terms.join(", "))
    }
}

/// The start of a regex over `json_tree`'s `fullkey` matching the nodes a path reaches:
/// anchored at the root, each name optionally preceded by an array index (an array fans out:
/// `a.b` also reaches `a[0].b`). SQLite writes keys with characters other than letters and
/// digits in double quotes (`$."x_1"`), so both spellings are accepted.
fn path_pattern(segments: &[Segment]) -> String {
    let mut pattern = String::from("^\\$");
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                let _ = write!(pattern, "(?:\\[[0-9]+\\])?\\.(?:{key}|\"{key}\")");
            }
            Segment::Index(index) => {
                let _ = write!(pattern, "\\[{index}\\]");
            }
        }
    }
    pattern
}

/// [`path_pattern`] for a dotted path.
pub(crate) fn dotted_path_pattern(path: &str) -> String {
    path_pattern(&segments_of(path.split('.')))
}

fn segments_of<'p>(parts: impl Iterator<Item = &'p str>) -> Vec<Segment> {
    parts
        .map(|segment| match segment.parse::<u32>() {
            Ok(index) if segment.bytes().all(|b| b.is_ascii_digit()) => Segment::Index(index),
            _ => Segment::Key(segment.to_owned()),
        })
        .collect()
}

/// A JSON filter literal as it is stored inside JSON fields: dates stay strings (normalized
/// when written as `{"$date": ...}`); bytes have no place in JSON.
fn json_literal(value: &Value, name: &str) -> Result<Value, QueryError> {
    match value {
        Value::Object(map) if super::filter::is_extended_json(map) => {
            if map.contains_key("$date") {
                Ok(Value::String(date_from_json(value, name)?))
            } else {
                Err(QueryError::invalid(
                    name,
                    "JSON fields hold no binary values",
                ))
            }
        }
        other => Ok(other.clone()),
    }
}

fn number_param(number: &Value) -> SqlValue {
    match number.as_i64() {
        Some(i) => SqlValue::Integer(i),
        None => SqlValue::Real(number.as_f64().unwrap_or(f64::NAN)),
    }
}

/// The SQLite `json_type` names a `$type` name covers.
fn json_types(type_name: TypeName) -> &'static [&'static str] {
    match type_name {
        TypeName::Null => &["null"],
        TypeName::Bool => &["true", "false"],
        TypeName::Number => &["integer", "real"],
        TypeName::Int => &["integer"],
        TypeName::Double => &["real"],
        TypeName::String => &["text"],
        TypeName::Array => &["array"],
        TypeName::Object => &["object"],
        TypeName::Date | TypeName::BinData => &[],
    }
}

fn typed_field_has_type(ty: FieldType, type_name: TypeName) -> bool {
    matches!(
        (ty, type_name),
        (FieldType::Text, TypeName::String)
            | (FieldType::Integer, TypeName::Number | TypeName::Int)
            | (FieldType::Real, TypeName::Number | TypeName::Double)
            | (FieldType::Boolean, TypeName::Bool)
            | (FieldType::Date, TypeName::Date | TypeName::String)
            | (FieldType::Binary, TypeName::BinData)
    )
}

fn check_list_len(values: &[Value], operator: &str) -> Result<(), QueryError> {
    if values.len() > MAX_LIST_LEN {
        return Err(QueryError::TooComplex(format!(
            "{operator} lists at most {MAX_LIST_LEN} values"
        )));
    }
    Ok(())
}

/// Match when `positive` does not hold, NULL (unknown) included.
fn negate(positive: &str) -> String {
    format!("({positive}) IS NOT 1")
}

fn or_all(parts: Vec<String>) -> String {
    match parts.len() {
        0 => "0".into(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(" OR ")),
    }
}

fn and_all(parts: Vec<String>) -> String {
    match parts.len() {
        0 => "1".into(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(" AND ")),
    }
}

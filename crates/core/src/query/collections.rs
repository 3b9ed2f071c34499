//! Application collections: declared through [`define_collection`], stored in their own tables,
//! their definitions and the history of their additive changes kept in the mailbox file.

use super::error::QueryError;
use super::schema::{
    APP_KEY, APP_TABLE_PREFIX, Collection, FieldType, app_collection, builtin_collection,
    validate_collection_name, validate_field_name,
};
use super::value::now_date;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Fields and indexes of an application collection. `_id` is implicit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionDefinition {
    /// Field names with their types, in declaration order.
    pub fields: Vec<(String, FieldType)>,
    pub indexes: Vec<IndexDefinition>,
}

/// An index over one or more fields of a collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefinition {
    pub fields: Vec<String>,
    #[serde(default)]
    pub unique: bool,
}

impl IndexDefinition {
    /// The SQL name: derived from the collection and field names, all validated identifiers.
    fn sql_name(&self, collection: &str) -> String {
        let mut name = format!("{APP_TABLE_PREFIX}{collection}__{}", self.fields.join("__"));
        if self.unique {
            name.push_str("__unique");
        }
        name
    }
}

/// What [`define_collection`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefineOutcome {
    pub created: bool,
    pub added_fields: Vec<String>,
    pub added_indexes: Vec<String>,
    /// The definition's version: 1 when created, +1 for each change applied.
    pub version: i64,
}

impl CollectionDefinition {
    /// Parse `{"fields": {"title": "text", "n": {"type": "integer"}}, "indexes": [...]}` where
    /// an index is a field name, a list of names, or `{"fields": [...] | {name: 1, ...},
    /// "unique": bool}`.
    pub fn from_json(fields: &Value, indexes: Option<&Value>) -> Result<Self, QueryError> {
        let Value::Object(field_map) = fields else {
            return Err(QueryError::invalid(
                "fields",
                "expected an object of name: type",
            ));
        };
        let mut definition = CollectionDefinition::default();
        for (name, spec) in field_map {
            let type_value = match spec {
                Value::Object(map) => map.get("type").unwrap_or(&Value::Null),
                other => other,
            };
            let ty: FieldType = serde_json::from_value(type_value.clone()).map_err(|_| {
                QueryError::invalid(
                    format!("type of field {name:?}"),
                    "expected one of text, integer, real, boolean, date, binary, json",
                )
            })?;
            definition.fields.push((name.clone(), ty));
        }
        for index in indexes.and_then(Value::as_array).into_iter().flatten() {
            definition.indexes.push(parse_index(index)?);
        }
        if let Some(other) = indexes.filter(|v| !v.is_array() && !v.is_null()) {
            return Err(QueryError::invalid(
                "indexes",
                format!("expected an array, got {}", super::value::describe(other)),
            ));
        }
        Ok(definition)
    }

    fn validate(&self) -> Result<(), QueryError> {
        let mut seen: Vec<String> = Vec::new();
        for (name, _) in &self.fields {
            validate_field_name(name)?;
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(QueryError::invalid(
                    "fields",
                    format!("{name:?} is declared twice (names are case-insensitive)"),
                ));
            }
            seen.push(lower);
        }
        if self.fields.len() > 500 {
            return Err(QueryError::TooComplex("more than 500 fields".into()));
        }
        for index in &self.indexes {
            if index.fields.is_empty() {
                return Err(QueryError::invalid("indexes", "an index needs fields"));
            }
            for field in &index.fields {
                if field != APP_KEY && !self.fields.iter().any(|(name, _)| name == field) {
                    return Err(QueryError::UnknownField(field.clone()));
                }
            }
        }
        Ok(())
    }
}

fn parse_index(index: &Value) -> Result<IndexDefinition, QueryError> {
    let names = |value: &Value| -> Result<Vec<String>, QueryError> {
        match value {
            Value::String(name) => Ok(vec![name.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| QueryError::invalid("indexes", "field names are strings"))
                })
                .collect(),
            Value::Object(map) => Ok(map.keys().cloned().collect()),
            _ => Err(QueryError::invalid("indexes", "expected field names")),
        }
    };
    match index {
        Value::Object(map) if map.contains_key("fields") => {
            let unique = match map.get("unique") {
                None => false,
                Some(Value::Bool(unique)) => *unique,
                Some(_) => return Err(QueryError::invalid("indexes", "unique is a boolean")),
            };
            if let Some(key) = map.keys().find(|k| *k != "fields" && *k != "unique") {
                return Err(QueryError::invalid(
                    "indexes",
                    format!("unknown key {key:?}"),
                ));
            }
            Ok(IndexDefinition {
                fields: names(&map["fields"])?,
                unique,
            })
        }
        other => Ok(IndexDefinition {
            fields: names(other)?,
            unique: false,
        }),
    }
}

/// Look up a collection by name: built-in, or declared in this mailbox.
pub fn collection(conn: &Connection, name: &str) -> Result<Arc<Collection>, QueryError> {
    if let Some(builtin) = builtin_collection(name) {
        return Ok(builtin);
    }
    let definition = load_definition(conn, name)?
        .ok_or_else(|| QueryError::UnknownCollection(name.to_owned()))?;
    Ok(Arc::new(app_collection(name, &definition.fields)))
}

fn load_definition(
    conn: &Connection,
    name: &str,
) -> Result<Option<CollectionDefinition>, QueryError> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT definition FROM query_collections WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    stored
        .map(|text: String| {
            serde_json::from_str(&text).map_err(|e| {
                QueryError::invalid(format!("stored definition of {name:?}"), e.to_string())
            })
        })
        .transpose()
}

/// Create collection `name`, or bring it up to `definition` by adding the missing fields and
/// indexes. Removing or retyping a field, or dropping an index, is refused: the earlier
/// definition stays in force and nothing is changed.
pub fn define_collection(
    conn: &Connection,
    name: &str,
    definition: &CollectionDefinition,
) -> Result<DefineOutcome, QueryError> {
    validate_collection_name(name)?;
    definition.validate()?;
    let tx = super::write_scope::WriteScope::begin(conn)?;
    let table = format!("\"{APP_TABLE_PREFIX}{name}\"");
    let now = now_date();
    let outcome = match load_definition(&tx, name)? {
        None => {
            let mut columns = format!("\"{APP_KEY}\" TEXT PRIMARY KEY NOT NULL");
            for (field, ty) in &definition.fields {
                columns.push_str(&format!(", \"{field}\" {}", ty.column_type()));
            }
            tx.execute_batch(&format!("CREATE TABLE {table} ({columns})"))?;
            DefineOutcome {
                created: true,
                added_fields: definition.fields.iter().map(|(f, _)| f.clone()).collect(),
                added_indexes: Vec::new(),
                version: 1,
            }
        }
        Some(old) => {
            let destructive = |reason: String| QueryError::DestructiveSchemaChange {
                collection: name.to_owned(),
                reason,
            };
            for (field, old_type) in &old.fields {
                match definition.fields.iter().find(|(f, _)| f == field) {
                    None => return Err(destructive(format!("field {field:?} would be removed"))),
                    Some((_, new_type)) if new_type != old_type => {
                        return Err(destructive(format!(
                            "field {field:?} would change type from {} to {}",
                            old_type.name(),
                            new_type.name()
                        )));
                    }
                    Some(_) => {}
                }
            }
            for index in &old.indexes {
                if !definition.indexes.contains(index) {
                    return Err(destructive(format!(
                        "index on {:?} would be removed",
                        index.fields
                    )));
                }
            }
            let mut added_fields = Vec::new();
            for (field, ty) in &definition.fields {
                if !old.fields.iter().any(|(f, _)| f == field) {
                    tx.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN \"{field}\" {}",
                        ty.column_type()
                    ))?;
                    added_fields.push(field.clone());
                }
            }
            let version: i64 = tx.query_row(
                "SELECT version FROM query_collections WHERE name = ?1",
                [name],
                |row| row.get(0),
            )?;
            DefineOutcome {
                created: false,
                added_fields,
                added_indexes: Vec::new(),
                version,
            }
        }
    };
    let old_indexes = load_definition(&tx, name)?
        .map(|old| old.indexes)
        .unwrap_or_default();
    let mut outcome = outcome;
    for index in &definition.indexes {
        if old_indexes.contains(index) {
            continue;
        }
        let columns: Vec<String> = index.fields.iter().map(|f| format!("\"{f}\"")).collect();
        let unique = if index.unique { "UNIQUE " } else { "" };
        tx.execute_batch(&format!(
            "CREATE {unique}INDEX IF NOT EXISTS \"{}\" ON {table} ({})",
            index.sql_name(name),
            columns.join(", ")
        ))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                QueryError::DuplicateKey(name.to_owned())
            }
            _ => QueryError::Sqlite(e),
        })?;
        outcome.added_indexes.push(index.sql_name(name));
    }
    let changed =
        outcome.created || !outcome.added_fields.is_empty() || !outcome.added_indexes.is_empty();
    if changed {
        if !outcome.created {
            outcome.version += 1;
        }
        let stored = serde_json::to_string(definition)
            .map_err(|e| QueryError::invalid("definition", e.to_string()))?;
        tx.execute(
            "INSERT INTO query_collections (name, definition, version, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition,
                 version = excluded.version, updated_at = excluded.updated_at",
            params![name, stored, outcome.version, now],
        )?;
        let changes = json!({
            "created": outcome.created,
            "added_fields": outcome.added_fields,
            "added_indexes": outcome.added_indexes,
        });
        tx.execute(
            "INSERT INTO query_collection_changes (name, version, applied_at, changes)
             VALUES (?1, ?2, ?3, ?4)",
            params![name, outcome.version, now, changes.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(outcome)
}

//! Running queries: typed functions over a connection, and the JSON request entry point.

use super::collections::{CollectionDefinition, DefineOutcome, collection, define_collection};
use super::compile::{Compiler, Scope, SortOrder};
use super::error::QueryError;
use super::filter::{Condition, Filter};
use super::schema::{APP_KEY, Collection, Field};
use super::text::DocumentWriter;
use super::update::Update;
use super::value::{Use, from_sql, now_date, to_sql};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Which fields a `find` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Projection {
    #[default]
    All,
    /// These fields, plus the key unless it is listed in the exclusions of `{key: 0}`.
    Include { fields: Vec<String>, key: bool },
    /// Every field but these.
    Exclude(Vec<String>),
}

/// Options of `find`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindOptions {
    pub projection: Projection,
    /// Sort keys in order; ties are broken by the key field, ascending.
    pub sort: Vec<(String, SortOrder)>,
    pub skip: u64,
    pub limit: Option<u64>,
}

/// Options of `update`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Update every match rather than the first.
    pub many: bool,
    /// Insert a document built from the filter's equalities and the update when none matches.
    pub upsert: bool,
}

/// What `update` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpdateResult {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Value>,
}

/// The result of a JSON request.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryOutput {
    /// `find`, and `find_one` (zero or one document).
    Documents(Vec<Value>),
    Count(u64),
    /// `distinct`.
    Values(Vec<Value>),
    Inserted(Vec<Value>),
    Updated(UpdateResult),
    Deleted(u64),
    Defined(DefineOutcome),
}

impl QueryOutput {
    /// One JSON value per output line, as `sealmail query` prints them: each document or
    /// distinct value, or a single summary object for counts and writes.
    pub fn into_lines(self) -> Vec<Value> {
        match self {
            QueryOutput::Documents(docs) | QueryOutput::Values(docs) => docs,
            QueryOutput::Count(count) => vec![json!({"count": count})],
            QueryOutput::Inserted(ids) => vec![json!({"inserted_ids": ids})],
            QueryOutput::Updated(result) => vec![json!({
                "matched": result.matched,
                "modified": result.modified,
                "upserted_id": result.upserted_id,
            })],
            QueryOutput::Deleted(count) => vec![json!({"deleted": count})],
            QueryOutput::Defined(outcome) => {
                vec![serde_json::to_value(outcome).unwrap_or(Value::Null)]
            }
        }
    }
}

/// Documents of `collection_name` matching `filter`.
pub fn find(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    options: &FindOptions,
) -> Result<Vec<Value>, QueryError> {
    let collection = collection(conn, collection_name)?;
    find_in(conn, &collection, filter, options)
}

/// The first document matching `filter` (in `options.sort` order), if any.
pub fn find_one(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    options: &FindOptions,
) -> Result<Option<Value>, QueryError> {
    let options = FindOptions {
        limit: Some(1),
        ..options.clone()
    };
    Ok(find(conn, collection_name, filter, &options)?
        .into_iter()
        .next())
}

fn find_in(
    conn: &Connection,
    collection: &Collection,
    filter: &Filter,
    options: &FindOptions,
) -> Result<Vec<Value>, QueryError> {
    let query = FindQuery::compile(collection, filter, options)?;
    let mut statement = conn.prepare_cached(&query.sql)?;
    let mut rows = statement.query(params_from_iter(query.params.iter()))?;
    let mut docs = Vec::new();
    while let Some(row) = rows.next()? {
        let mut doc = Map::new();
        for (index, field) in query.fields.iter().enumerate() {
            if let Some(value) = from_sql(field.ty, row.get_ref(index)?)? {
                doc.insert(field.name.to_string(), value);
            }
        }
        docs.push(Value::Object(doc));
    }
    Ok(docs)
}

/// The JSON text of the documents of `collection_name` matching `filter`: an array, or with
/// `one` the first document or `null`. The same documents as [`find`] in the same text
/// `serde_json` prints, written straight from the rows.
pub fn find_text(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    options: &FindOptions,
    one: bool,
) -> Result<String, QueryError> {
    let pieces = find_text_pieces(conn, collection_name, filter, options, one, usize::MAX)?;
    Ok(only_piece(pieces))
}

/// The single piece of an answer written with no size limit on its pieces.
fn only_piece(mut pieces: Vec<String>) -> String {
    debug_assert_eq!(pieces.len(), 1, "an unlimited piece holds the whole answer");
    pieces.pop().unwrap_or_default()
}

/// [`find_text`] in pieces of about `piece_bytes`: without `one`, JSON arrays of consecutive
/// documents, each closed once it holds `piece_bytes` or more, whose concatenation is the
/// answer (there is always at least one piece, `[]` when nothing matches); with `one`, a
/// single piece. A large answer then never needs one large string: V8 allocates strings over
/// 128 KiB apart from the others, several times slower per byte than smaller ones.
pub fn find_text_pieces(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    options: &FindOptions,
    one: bool,
    piece_bytes: usize,
) -> Result<Vec<String>, QueryError> {
    let collection = collection(conn, collection_name)?;
    let query = FindQuery::compile(&collection, filter, options)?;
    let writer = DocumentWriter::new(&query.fields);
    let mut statement = conn.prepare_cached(&query.sql)?;
    let mut rows = statement.query(params_from_iter(query.params.iter()))?;
    let mut pieces = Vec::new();
    let mut out = Vec::with_capacity(4096);
    if one {
        match rows.next()? {
            Some(row) => writer.write_row(row, &mut out)?,
            None => out.extend_from_slice(b"null"),
        }
    } else {
        out.push(b'[');
        let mut empty = true;
        while let Some(row) = rows.next()? {
            if out.len() >= piece_bytes && !empty {
                out.push(b']');
                let capacity = out.len();
                pieces.push(utf8_text(std::mem::replace(
                    &mut out,
                    Vec::with_capacity(capacity),
                ))?);
                out.push(b'[');
                empty = true;
            }
            if !empty {
                out.push(b',');
            }
            empty = false;
            writer.write_row(row, &mut out)?;
        }
        out.push(b']');
    }
    pieces.push(utf8_text(out)?);
    Ok(pieces)
}

/// Every piece written is UTF-8 (checked JSON text, the store's own JSON, or serde_json's
/// output); checked once more for the whole answer, so that no byte sequence in a column can
/// make it anything else.
fn utf8_text(bytes: Vec<u8>) -> Result<String, QueryError> {
    String::from_utf8(bytes).map_err(|_| {
        QueryError::Sqlite(rusqlite::Error::InvalidColumnType(
            0,
            "a document that is not UTF-8".into(),
            rusqlite::types::Type::Text,
        ))
    })
}

/// A `find` compiled to SQL: the statement text, its parameters, and the field each result
/// column holds.
struct FindQuery<'c> {
    sql: String,
    params: Vec<SqlValue>,
    fields: Vec<&'c Field>,
}

impl<'c> FindQuery<'c> {
    fn compile(
        collection: &'c Collection,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Self, QueryError> {
        let fields = projected_fields(collection, &options.projection)?;
        let mut compiler = Compiler::new(collection);
        let condition = compiler.filter(filter, &Scope::Collection, 0)?;
        let mut sql = String::with_capacity(256);
        sql.push_str("SELECT ");
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&field.expr);
        }
        if fields.is_empty() {
            sql.push('1');
        }
        sql.push_str(" FROM ");
        sql.push_str(&collection.source);
        sql.push_str(" AS t WHERE ");
        sql.push_str(&condition);
        if !options.sort.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&compiler.order_by(&options.sort)?);
        }
        if options.limit.is_some() || options.skip > 0 {
            let limit = options
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let skip = i64::try_from(options.skip).unwrap_or(i64::MAX);
            let limit = compiler.bind(SqlValue::Integer(limit))?;
            let skip = compiler.bind(SqlValue::Integer(skip))?;
            sql.push_str(&format!(" LIMIT {limit} OFFSET {skip}"));
        }
        Ok(Self {
            sql,
            params: compiler.params,
            fields,
        })
    }
}

fn projected_fields<'c>(
    collection: &'c Collection,
    projection: &Projection,
) -> Result<Vec<&'c Field>, QueryError> {
    let lookup = |name: &String| {
        collection
            .field(name)
            .ok_or_else(|| QueryError::UnknownField(name.clone()))
    };
    Ok(match projection {
        Projection::All => collection.fields.iter().collect(),
        Projection::Include { fields, key } => {
            for name in fields {
                lookup(name)?;
            }
            collection
                .fields
                .iter()
                .filter(|f| {
                    fields.iter().any(|name| *name == f.name) || (*key && f.name == collection.key)
                })
                .collect()
        }
        Projection::Exclude(excluded) => {
            for name in excluded {
                lookup(name)?;
            }
            collection
                .fields
                .iter()
                .filter(|f| !excluded.iter().any(|name| *name == f.name))
                .collect()
        }
    })
}

/// Number of documents matching `filter`.
pub fn count(conn: &Connection, collection_name: &str, filter: &Filter) -> Result<u64, QueryError> {
    let collection = collection(conn, collection_name)?;
    let mut compiler = Compiler::new(&collection);
    let condition = compiler.filter(filter, &Scope::Collection, 0)?;
    let sql = format!(
        "SELECT count(*) FROM {} AS t WHERE {condition}",
        collection.source
    );
    let count: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(compiler.params.iter()), |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// Distinct values of `field` among documents matching `filter`. Arrays (in JSON fields)
/// contribute their elements, as in MongoDB. Values come in SQLite's order.
pub fn distinct(
    conn: &Connection,
    collection_name: &str,
    field: &str,
    filter: &Filter,
) -> Result<Vec<Value>, QueryError> {
    let collection = collection(conn, collection_name)?;
    let mut compiler = Compiler::new(&collection);
    let condition = compiler.filter(filter, &Scope::Collection, 0)?;
    super::filter::check_path(field)?;
    let (first, rest) = match field.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (field, None),
    };
    let declared = collection
        .field(first)
        .ok_or_else(|| QueryError::UnknownField(field.to_owned()))?;
    let mut values = Vec::new();
    if declared.ty != super::schema::FieldType::Json {
        if rest.is_some() {
            return Err(QueryError::UnknownField(field.to_owned()));
        }
        let sql = format!(
            "SELECT DISTINCT {expr} FROM {source} AS t WHERE {condition} AND {expr} IS NOT NULL \
             ORDER BY 1",
            expr = declared.expr,
            source = collection.source
        );
        let mut statement = conn.prepare_cached(&sql)?;
        let mut rows = statement.query(params_from_iter(compiler.params.iter()))?;
        while let Some(row) = rows.next()? {
            if let Some(value) = from_sql(declared.ty, row.get_ref(0)?)? {
                values.push(value);
            }
        }
        return Ok(values);
    }
    // JSON: the values at the path (fanning out through arrays), and the elements of the
    // arrays found there instead of the arrays themselves.
    let pattern = match rest {
        Some(rest) => super::compile::dotted_path_pattern(rest),
        None => String::from("^\\$"),
    };
    let whole = compiler.bind(SqlValue::Text(format!("{pattern}$")))?;
    let element = compiler.bind(SqlValue::Text(format!("{pattern}\\[[0-9]+\\]$")))?;
    let sql = format!(
        "SELECT DISTINCT d.type, d.value FROM {source} AS t, json_tree({expr}) AS d \
         WHERE {condition} AND d.type <> 'null' AND ((d.type <> 'array' AND d.fullkey REGEXP \
         {whole}) OR d.fullkey REGEXP {element}) ORDER BY 1, 2",
        source = collection.source,
        expr = declared.expr,
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(compiler.params.iter()))?;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let value = match kind.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "array" | "object" => {
                let text: String = row.get(1)?;
                serde_json::from_str(&text).unwrap_or(Value::Null)
            }
            _ => from_sql(super::schema::FieldType::Text, row.get_ref(1)?)?.unwrap_or_default(),
        };
        if !values.contains(&value) {
            values.push(value);
        }
    }
    Ok(values)
}

/// Insert one document into an application collection; returns its `_id`.
pub fn insert_one(
    conn: &Connection,
    collection_name: &str,
    document: &Value,
) -> Result<Value, QueryError> {
    Ok(
        insert_many(conn, collection_name, std::slice::from_ref(document))?
            .pop()
            .unwrap_or_default(),
    )
}

/// Insert documents atomically (all or none); returns their `_id`s in order.
pub fn insert_many(
    conn: &Connection,
    collection_name: &str,
    documents: &[Value],
) -> Result<Vec<Value>, QueryError> {
    let collection = collection(conn, collection_name)?;
    let table = collection.table()?;
    let tx = super::write_scope::WriteScope::begin(conn)?;
    let mut ids = Vec::with_capacity(documents.len());
    for document in documents {
        let Value::Object(map) = document else {
            return Err(QueryError::InvalidRequest(
                "a document must be an object".into(),
            ));
        };
        let mut map = map.clone();
        let id = match map.get(APP_KEY) {
            None | Some(Value::Null) => {
                let id = Value::String(hex::encode(crate::key::random_bytes::<12>()));
                map.insert(APP_KEY.to_owned(), id.clone());
                id
            }
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => {
                Value::String(id.clone())
            }
            Some(_) => {
                return Err(QueryError::invalid(
                    APP_KEY,
                    "expected a non-empty string of at most 256 bytes",
                ));
            }
        };
        write_row(&tx, &collection, table, &map, false)?;
        ids.push(id);
    }
    tx.commit()?;
    Ok(ids)
}

/// Store `doc` as a row: every declared column is written, so the statement has one shape.
fn write_row(
    conn: &Connection,
    collection: &Collection,
    table: &str,
    doc: &Map<String, Value>,
    replace: bool,
) -> Result<(), QueryError> {
    if let Some(unknown) = doc.keys().find(|k| collection.field(k).is_none()) {
        return Err(QueryError::UnknownField(unknown.clone()));
    }
    let mut values = Vec::with_capacity(collection.fields.len());
    for field in &collection.fields {
        values.push(match doc.get(field.name.as_ref()) {
            None | Some(Value::Null) => SqlValue::Null,
            Some(value) => to_sql(field.ty, value, &field.name, Use::Storage)?,
        });
    }
    let columns: Vec<String> = collection
        .fields
        .iter()
        .map(|f| format!("\"{}\"", f.name))
        .collect();
    let sql = if replace {
        let assignments: Vec<String> = columns
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, column)| format!("{column} = ?{}", i + 1))
            .collect();
        format!(
            "UPDATE {table} SET {} WHERE \"{APP_KEY}\" = ?1",
            assignments.join(", ")
        )
    } else {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        )
    };
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(values.iter()))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => {
                QueryError::DuplicateKey(collection.name.to_string())
            }
            _ => QueryError::Sqlite(e),
        })?;
    Ok(())
}

/// Apply `update` to the first (or every) document matching `filter`.
pub fn update(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    update: &Update,
    options: UpdateOptions,
) -> Result<UpdateResult, QueryError> {
    let collection = collection(conn, collection_name)?;
    let table = collection.table()?;
    let tx = super::write_scope::WriteScope::begin(conn)?;
    let find_options = FindOptions {
        limit: (!options.many).then_some(1),
        ..FindOptions::default()
    };
    let matches = find_in(&tx, &collection, filter, &find_options)?;
    let now = now_date();
    let mut result = UpdateResult {
        matched: matches.len() as u64,
        ..UpdateResult::default()
    };
    for document in matches {
        let Value::Object(mut doc) = document else {
            continue;
        };
        if update.apply(&collection, &mut doc, &now)? {
            write_row(&tx, &collection, table, &doc, true)?;
            result.modified += 1;
        }
    }
    if result.matched == 0 && options.upsert {
        let mut doc = Map::new();
        seed_from_filter(&collection, filter, &mut doc)?;
        update.apply(&collection, &mut doc, &now)?;
        let id = match doc.get(APP_KEY) {
            Some(id) => id.clone(),
            None => {
                let id = Value::String(hex::encode(crate::key::random_bytes::<12>()));
                doc.insert(APP_KEY.to_owned(), id.clone());
                id
            }
        };
        write_row(&tx, &collection, table, &doc, false)?;
        result.upserted_id = Some(id);
    }
    tx.commit()?;
    Ok(result)
}

/// The equalities of an upsert's filter become the new document's fields.
fn seed_from_filter(
    collection: &Collection,
    filter: &Filter,
    doc: &mut Map<String, Value>,
) -> Result<(), QueryError> {
    match filter {
        Filter::And(parts) => {
            for part in parts {
                seed_from_filter(collection, part, doc)?;
            }
        }
        Filter::Field {
            path,
            condition: Condition::Eq(value),
        } if !value.is_null() && !path.contains('.') => {
            let field = collection
                .field(path)
                .ok_or_else(|| QueryError::UnknownField(path.clone()))?;
            let stored = to_sql(field.ty, value, path, Use::Storage)?;
            if let Some(value) = from_sql(field.ty, (&stored).into())? {
                doc.insert(path.clone(), value);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Delete the first (or every) document matching `filter`; returns how many were deleted.
pub fn delete(
    conn: &Connection,
    collection_name: &str,
    filter: &Filter,
    many: bool,
) -> Result<u64, QueryError> {
    let collection = collection(conn, collection_name)?;
    let table = collection.table()?;
    let mut compiler = Compiler::new(&collection);
    let condition = compiler.filter(filter, &Scope::Collection, 0)?;
    let limit = if many { "" } else { " LIMIT 1" };
    let sql = format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT t.rowid FROM {table} AS t WHERE {condition}{limit})"
    );
    let deleted = conn
        .prepare_cached(&sql)?
        .execute(params_from_iter(compiler.params.iter()))?;
    Ok(deleted as u64)
}

/// A JSON request checked for its shape: the collection, a known operation with only its own
/// arguments, and the parsed filter.
struct Request<'r> {
    arguments: &'r Map<String, Value>,
    collection_name: &'r str,
    op: &'r str,
    filter: Filter,
}

impl<'r> Request<'r> {
    fn parse(request: &'r Value) -> Result<Self, QueryError> {
        let Value::Object(arguments) = request else {
            return Err(QueryError::InvalidRequest(
                "a request must be an object".into(),
            ));
        };
        let text = |key: &str| -> Result<&'r str, QueryError> {
            arguments
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| QueryError::InvalidRequest(format!("{key:?} must be a string")))
        };
        let collection_name = text("collection")?;
        let op = text("op")?;
        let allowed: &[&str] = match op {
            "find" => &["filter", "projection", "sort", "skip", "limit"],
            "find_one" => &["filter", "projection", "sort", "skip"],
            "count" => &["filter"],
            "distinct" => &["filter", "field"],
            "insert_one" => &["document"],
            "insert_many" => &["documents"],
            "update_one" | "update_many" => &["filter", "update", "upsert"],
            "delete_one" | "delete_many" => &["filter"],
            "define_collection" => &["fields", "indexes"],
            other => return Err(QueryError::InvalidRequest(format!("unknown op {other:?}"))),
        };
        if let Some(unknown) = arguments
            .keys()
            .find(|k| *k != "collection" && *k != "op" && !allowed.contains(&k.as_str()))
        {
            return Err(QueryError::InvalidRequest(format!(
                "{unknown:?} is not an argument of {op}"
            )));
        }
        let filter = match arguments.get("filter") {
            None | Some(Value::Null) => Filter::all(),
            Some(value) => Filter::from_json(value)?,
        };
        Ok(Self {
            arguments,
            collection_name,
            op,
            filter,
        })
    }

    fn text(&self, key: &str) -> Result<&'r str, QueryError> {
        self.arguments
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| QueryError::InvalidRequest(format!("{key:?} must be a string")))
    }

    fn number(&self, key: &str) -> Result<Option<u64>, QueryError> {
        match self.arguments.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                QueryError::InvalidRequest(format!("{key:?} must be a non-negative integer"))
            }),
        }
    }

    /// The options of a `find` or `find_one`.
    fn find_options(&self) -> Result<FindOptions, QueryError> {
        Ok(FindOptions {
            projection: parse_projection(self.arguments.get("projection"))?,
            sort: parse_sort(self.arguments.get("sort"))?,
            skip: self.number("skip")?.unwrap_or(0),
            limit: if self.op == "find_one" {
                Some(1)
            } else {
                self.number("limit")?
            },
        })
    }
}

/// Run a JSON request `{"collection": ..., "op": ..., ...}` (see the module documentation).
pub fn execute(conn: &Connection, request: &Value) -> Result<QueryOutput, QueryError> {
    let parsed = Request::parse(request)?;
    let (collection_name, op, filter) = (parsed.collection_name, parsed.op, &parsed.filter);
    let request = parsed.arguments;
    Ok(match op {
        "find" | "find_one" => {
            let options = parsed.find_options()?;
            QueryOutput::Documents(find(conn, collection_name, filter, &options)?)
        }
        "count" => QueryOutput::Count(count(conn, collection_name, filter)?),
        "distinct" => QueryOutput::Values(distinct(
            conn,
            collection_name,
            parsed.text("field")?,
            filter,
        )?),
        "insert_one" => {
            let document = request
                .get("document")
                .ok_or_else(|| QueryError::InvalidRequest("\"document\" is missing".into()))?;
            QueryOutput::Inserted(vec![insert_one(conn, collection_name, document)?])
        }
        "insert_many" => {
            let documents = request
                .get("documents")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    QueryError::InvalidRequest("\"documents\" must be an array".into())
                })?;
            QueryOutput::Inserted(insert_many(conn, collection_name, documents)?)
        }
        "update_one" | "update_many" => {
            let update_doc = request
                .get("update")
                .ok_or_else(|| QueryError::InvalidRequest("\"update\" is missing".into()))?;
            let upsert = match request.get("upsert") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(upsert)) => *upsert,
                Some(_) => {
                    return Err(QueryError::InvalidRequest(
                        "\"upsert\" must be a boolean".into(),
                    ));
                }
            };
            let options = UpdateOptions {
                many: op == "update_many",
                upsert,
            };
            QueryOutput::Updated(update(
                conn,
                collection_name,
                filter,
                &Update::from_json(update_doc)?,
                options,
            )?)
        }
        "delete_one" | "delete_many" => {
            QueryOutput::Deleted(delete(conn, collection_name, filter, op == "delete_many")?)
        }
        _ => {
            let fields = request
                .get("fields")
                .ok_or_else(|| QueryError::InvalidRequest("\"fields\" is missing".into()))?;
            let definition = CollectionDefinition::from_json(fields, request.get("indexes"))?;
            QueryOutput::Defined(define_collection(conn, collection_name, &definition)?)
        }
    })
}

/// Run a `find` or `find_one` JSON request and answer with its result as JSON text: an array of
/// documents, or one document or `null` (see [`find_text`]). Any other operation is refused.
pub fn execute_find_text(conn: &Connection, request: &Value) -> Result<String, QueryError> {
    Ok(only_piece(execute_find_text_pieces(
        conn,
        request,
        usize::MAX,
    )?))
}

/// [`execute_find_text`] in pieces of about `piece_bytes` (see [`find_text_pieces`]): for
/// `find` arrays to concatenate, for `find_one` a single piece.
pub fn execute_find_text_pieces(
    conn: &Connection,
    request: &Value,
    piece_bytes: usize,
) -> Result<Vec<String>, QueryError> {
    let parsed = Request::parse(request)?;
    let one = match parsed.op {
        "find" => false,
        "find_one" => true,
        other => {
            return Err(QueryError::InvalidRequest(format!(
                "{other:?} does not answer with documents"
            )));
        }
    };
    let options = parsed.find_options()?;
    find_text_pieces(
        conn,
        parsed.collection_name,
        &parsed.filter,
        &options,
        one,
        piece_bytes,
    )
}

/// `{field: 1|0|true|false}`: all inclusions or all exclusions; the key may be excluded from
/// an inclusion.
pub fn parse_projection(value: Option<&Value>) -> Result<Projection, QueryError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Projection::All);
    };
    let Value::Object(map) = value else {
        return Err(QueryError::invalid("projection", "expected an object"));
    };
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (field, flag) in map {
        if field.contains('.') || field.starts_with('$') {
            return Err(QueryError::invalid(
                "projection",
                format!("{field:?}: only top-level fields can be projected"),
            ));
        }
        let included = match flag {
            Value::Bool(b) => *b,
            Value::Number(n) if n.as_i64() == Some(0) => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            _ => return Err(QueryError::invalid("projection", "values are 1 or 0")),
        };
        if included {
            include.push(field.clone());
        } else {
            exclude.push(field.clone());
        }
    }
    if include.is_empty() {
        return Ok(Projection::Exclude(exclude));
    }
    // Only the key may be excluded from an inclusion; both `_id` and `id` key names qualify.
    match exclude.as_slice() {
        [] => Ok(Projection::Include {
            fields: include,
            key: true,
        }),
        [key] if key == APP_KEY || key == "id" => Ok(Projection::Include {
            fields: include,
            key: false,
        }),
        _ => Err(QueryError::invalid(
            "projection",
            "cannot mix inclusion and exclusion",
        )),
    }
}

/// `{"field": 1}` or `[{"a": -1}, {"b": 1}]` / `[["a", -1], ["b", 1]]` for several keys
/// (JSON objects do not keep key order here, so a several-key object is refused).
pub fn parse_sort(value: Option<&Value>) -> Result<Vec<(String, SortOrder)>, QueryError> {
    let direction = |field: &str, value: &Value| match value.as_i64() {
        Some(1) => Ok((field.to_owned(), SortOrder::Ascending)),
        Some(-1) => Ok((field.to_owned(), SortOrder::Descending)),
        _ => Err(QueryError::invalid("sort", "directions are 1 or -1")),
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) if map.len() <= 1 => {
            map.iter().map(|(k, v)| direction(k, v)).collect()
        }
        Some(Value::Object(_)) => Err(QueryError::invalid(
            "sort",
            "several sort keys must be given as an array, e.g. [{\"date\": -1}, {\"uid\": 1}]",
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(map) if map.len() == 1 => {
                    let (k, v) = map.iter().next().ok_or_else(|| {
                        QueryError::invalid("sort", "expected {field: direction}")
                    })?;
                    direction(k, v)
                }
                Value::Array(pair) if pair.len() == 2 && pair[0].is_string() => {
                    direction(pair[0].as_str().unwrap_or_default(), &pair[1])
                }
                _ => Err(QueryError::invalid("sort", "expected {field: direction}")),
            })
            .collect(),
        Some(_) => Err(QueryError::invalid(
            "sort",
            "expected an object or an array",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AppendOptions, Flags, Mailbox};

    /// A mailbox with 40 messages from four senders in INBOX, every third one seen.
    fn mailbox() -> (tempfile::TempDir, Mailbox) {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::MailboxKey::generate();
        let mut mailbox = Mailbox::create(&dir.path().join("plans.sqlite"), &key).unwrap();
        let raws: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                format!(
                    "From: Sender <sender{}@example.org>\r\nSubject: report {i}\r\n\
                     Date: Thu, 01 Jan 2026 {:02}:00:00 +0000\r\n\r\nbody\r\n",
                    i % 4,
                    i % 24
                )
                .into_bytes()
            })
            .collect();
        let batch: Vec<(&[u8], AppendOptions)> = raws
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let flags = if i % 3 == 0 {
                    Flags::from_imap(["\\Seen"]).unwrap()
                } else {
                    Flags::default()
                };
                let options = AppendOptions {
                    flags,
                    internal_date: None,
                };
                (raw.as_slice(), options)
            })
            .collect();
        mailbox.append_many("INBOX", &batch).unwrap();
        (dir, mailbox)
    }

    /// SQLite's plan for a `find` request, one line per step.
    fn plan(conn: &Connection, request: Value) -> Vec<String> {
        let parsed = Request::parse(&request).unwrap();
        let options = parsed.find_options().unwrap();
        let collection = collection(conn, parsed.collection_name).unwrap();
        let query = FindQuery::compile(&collection, &parsed.filter, &options).unwrap();
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", query.sql))
            .unwrap();
        statement
            .query_map(params_from_iter(query.params.iter()), |row| row.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn projection() -> Value {
        json!({"uid": 1, "subject": 1, "from": 1, "date": 1, "size": 1, "seen": 1, "flagged": 1})
    }

    /// A mail client's page (a folder's newest unseen messages) walks the folder's UID index
    /// in order and stops at the limit: no step sorts the folder's matches.
    #[test]
    fn newest_unseen_page_walks_the_uid_index_without_sorting() {
        let (_dir, mailbox) = mailbox();
        let steps = plan(
            mailbox.conn(),
            json!({"collection": "messages", "op": "find",
                   "filter": {"folder": "INBOX", "seen": false}, "projection": projection(),
                   "sort": {"uid": -1}, "limit": 50}),
        );
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH t USING INDEX")
                    && step.ends_with("(folder_id=?)")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.contains("TEMP B-TREE")),
            "{steps:?}"
        );
    }

    /// Messages of one sender are found through the address table's key (field, address),
    /// each message row is read by its key, and only those matches are sorted.
    #[test]
    fn sender_query_reads_only_the_senders_messages() {
        let (_dir, mailbox) = mailbox();
        let steps = plan(
            mailbox.conn(),
            json!({"collection": "messages", "op": "find",
                   "filter": {"from.address": "sender1@example.org"}, "projection": projection(),
                   "sort": {"date": -1}, "limit": 50}),
        );
        assert!(
            steps
                .iter()
                .any(|step| step == "SEARCH a USING PRIMARY KEY (field=? AND address=?)"),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step == "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)"),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN")),
            "{steps:?}"
        );
        let found = find(
            mailbox.conn(),
            "messages",
            &Filter::from_json(&json!({"from.address": "sender1@example.org"})).unwrap(),
            &FindOptions::default(),
        )
        .unwrap();
        assert_eq!(found.len(), 10);
    }
}

//! Query results written straight to JSON text, for callers that hand the text on (the Node
//! binding gives it to V8's `JSON.parse`): no `serde_json::Value` is built per document, and
//! JSON columns are copied as stored (checked first unless the store wrote them) instead of
//! being parsed and printed again.

use super::error::QueryError;
use super::schema::{Field, FieldType};
use super::value::binary_to_json;
use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde::de::IgnoredAny;

/// Writes the documents of one query: the projected fields with their keys pre-encoded, in the
/// order [`super::execute::find`]'s documents list them (by name, as `serde_json::Map` keeps
/// keys), so both forms of a result print the same text.
pub(crate) struct DocumentWriter {
    columns: Vec<Column>,
}

/// How one result column is written.
struct Column {
    /// Its index in the row.
    index: usize,
    ty: FieldType,
    /// `"name":`, encoded once per query.
    key: String,
    /// Stored JSON text that must be checked before it is copied (see
    /// [`Field::json_written_by_store`]).
    check_json: bool,
}

impl DocumentWriter {
    /// A writer for rows whose column `i` holds `fields[i]`.
    pub(crate) fn new(fields: &[&Field]) -> Self {
        let mut columns: Vec<Column> = fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let mut key = serde_json::to_string(field.name.as_ref())
                    .unwrap_or_else(|_| String::from("\"\""));
                key.push(':');
                Column {
                    index,
                    ty: field.ty,
                    key,
                    check_json: !field.json_written_by_store,
                }
            })
            .collect();
        columns.sort_by(|a, b| fields[a.index].name.cmp(&fields[b.index].name));
        Self { columns }
    }

    /// Append `row` as a JSON object to `out`. SQL NULLs leave their field out, as in
    /// [`super::value::from_sql`].
    pub(crate) fn write_row(&self, row: &Row<'_>, out: &mut Vec<u8>) -> Result<(), QueryError> {
        out.push(b'{');
        let mut first = true;
        for column in &self.columns {
            let value = row.get_ref(column.index)?;
            if value == ValueRef::Null {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(column.key.as_bytes());
            write_value(column.ty, column.check_json, value, out)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// One non-null column value as JSON, exactly as `from_sql` would give it.
fn write_value(
    ty: FieldType,
    check_json: bool,
    value: ValueRef<'_>,
    out: &mut Vec<u8>,
) -> Result<(), QueryError> {
    let bad = |what: &str| {
        QueryError::Sqlite(rusqlite::Error::InvalidColumnType(
            0,
            format!("{} column holding {what}", ty.name()),
            value.data_type(),
        ))
    };
    match (ty, value) {
        (_, ValueRef::Null) => {
            out.extend_from_slice(b"null");
            Ok(())
        }
        (FieldType::Boolean, ValueRef::Integer(i)) => {
            out.extend_from_slice(if i != 0 { b"true" } else { b"false" });
            Ok(())
        }
        (FieldType::Json, ValueRef::Text(text)) => {
            // Stored JSON is copied as is, once it is known to be one well-formed JSON value
            // in UTF-8 (checked without building it), so a damaged value cannot break or
            // extend the surrounding document. The store's own columns need no check: it
            // writes them with serde_json only (and `find_text` checks the whole answer is
            // UTF-8).
            if check_json
                && (std::str::from_utf8(text).is_err()
                    || serde_json::from_slice::<IgnoredAny>(text).is_err())
            {
                return Err(bad("malformed JSON"));
            }
            out.extend_from_slice(text);
            Ok(())
        }
        (_, ValueRef::Blob(bytes)) => write_json(out, &binary_to_json(bytes)),
        (_, ValueRef::Integer(i)) => write_json(out, &i),
        (_, ValueRef::Real(r)) if !r.is_finite() => return Err(bad("a non-finite number")),
        (_, ValueRef::Real(r)) => write_json(out, &r),
        // Valid UTF-8 (always, for text the store and the query layer wrote) is checked in
        // one pass; only other bytes take the slower replacement path of `from_sql`.
        (_, ValueRef::Text(text)) => match std::str::from_utf8(text) {
            Ok(text) => write_json(out, text),
            Err(_) => write_json(out, String::from_utf8_lossy(text).as_ref()),
        },
    }
    .map_err(|_| bad("a value JSON cannot hold"))
}

/// Serialize `value` onto `out` (into memory: only a value JSON cannot represent fails).
fn write_json<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, value)
}

//! Query results written straight to JSON text, for callers that hand the text on (the Node
//! binding gives it to V8's `JSON.parse`): no `serde_json::Value` is built per document, and
//! JSON columns are copied as stored once checked, instead of being parsed and printed again.

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
    /// (column index in the row, field type, `"name":`)
    columns: Vec<(usize, FieldType, String)>,
}

impl DocumentWriter {
    /// A writer for rows whose column `i` holds `fields[i]`.
    pub(crate) fn new(fields: &[&Field]) -> Self {
        let mut columns: Vec<(usize, FieldType, String)> = fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let mut key = serde_json::to_string(field.name.as_ref())
                    .unwrap_or_else(|_| String::from("\"\""));
                key.push(':');
                (index, field.ty, key)
            })
            .collect();
        columns.sort_by(|a, b| fields[a.0].name.cmp(&fields[b.0].name));
        Self { columns }
    }

    /// Append `row` as a JSON object to `out`. SQL NULLs leave their field out, as in
    /// [`super::value::from_sql`].
    pub(crate) fn write_row(&self, row: &Row<'_>, out: &mut Vec<u8>) -> Result<(), QueryError> {
        out.push(b'{');
        let mut first = true;
        for (index, ty, key) in &self.columns {
            let value = row.get_ref(*index)?;
            if value == ValueRef::Null {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key.as_bytes());
            write_value(*ty, value, out)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// One non-null column value as JSON, exactly as `from_sql` would give it.
fn write_value(ty: FieldType, value: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), QueryError> {
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
            // extend the surrounding document.
            if std::str::from_utf8(text).is_err()
                || serde_json::from_slice::<IgnoredAny>(text).is_err()
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
        (_, ValueRef::Text(text)) => write_json(out, String::from_utf8_lossy(text).as_ref()),
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

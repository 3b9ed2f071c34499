//! The schema description: which collections exist, which fields they have, and how each field
//! maps to SQL. Every identifier that ever reaches SQL text comes from here.

use super::error::QueryError;
use super::value::validate_identifier;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// The type of a field, which fixes how JSON values are checked, stored and read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Integer,
    Real,
    Boolean,
    /// ISO-8601 UTC text `YYYY-MM-DDTHH:MM:SSZ`, so text order is time order.
    Date,
    /// Bytes; in JSON as extended JSON `{"$binary": {"base64": ..., "subType": "00"}}`.
    Binary,
    /// Any JSON value, stored as JSON text; dotted paths reach inside it.
    Json,
}

impl FieldType {
    /// The SQLite column type used when an application collection declares this field.
    pub(crate) fn column_type(self) -> &'static str {
        match self {
            FieldType::Text | FieldType::Date | FieldType::Json => "TEXT",
            FieldType::Integer | FieldType::Boolean => "INTEGER",
            FieldType::Real => "REAL",
            FieldType::Binary => "BLOB",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Real => "real",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Binary => "binary",
            FieldType::Json => "json",
        }
    }
}

/// One field of a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name used in queries and documents.
    pub name: Cow<'static, str>,
    pub ty: FieldType,
    /// The SQL expression that yields the value, over the row alias `t`.
    pub(crate) expr: Cow<'static, str>,
    /// For a value looked up in another table: how filters reach it through an index instead
    /// of evaluating `expr` (a correlated subquery) on every row.
    pub(crate) lookup: Option<&'static Lookup>,
    /// For a JSON list of addresses (`messages.from`, `to`, ...): the tag of its rows in the
    /// `message_addresses` side table, so conditions on `<field>.address` can use its index.
    pub(crate) address_field: Option<&'static str>,
    /// A JSON column that only the store writes, always with `serde_json`: its text is known
    /// to be well-formed, so answers written as text copy it without checking it again.
    /// Application collections' columns are checked, since SQL outside the query layer (or
    /// an older version) may have written them.
    pub(crate) json_written_by_store: bool,
}

/// `key IN (SELECT id FROM source WHERE <condition on expr>)`: the filter form of a field whose
/// value lives in another table, always present for each row (so negations stay equivalent).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub key: &'static str,
    pub id: &'static str,
    pub source: &'static str,
    pub expr: &'static str,
    /// `expr` is unique in `source` (and `id` never NULL): an equality finds at most one id.
    pub unique: bool,
}

/// An id no looked-up row has: ids are SQLite row ids, which are assigned from 1 up.
pub(crate) const NO_ID: i64 = 0;

/// `messages.folder`: the folder path, reached through `folder_id`.
static FOLDER_LOOKUP: Lookup = Lookup {
    key: "t.folder_id",
    id: "f.id",
    source: "folders AS f",
    expr: "f.path",
    // `folders.path` is UNIQUE.
    unique: true,
};

/// A collection: a table (or a read-only view of one) and its declared fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub name: Cow<'static, str>,
    /// What follows `FROM` (aliased `t` by the compiler): a quoted table name or a subquery.
    pub(crate) source: Cow<'static, str>,
    /// The unique key field, always present in every document unless projected away.
    pub key: Cow<'static, str>,
    pub fields: Vec<Field>,
    /// Application collections are writable; built-in ones only through the mailbox API.
    pub writable: bool,
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }

    pub(crate) fn key_field(&self) -> &Field {
        self.field(&self.key)
            .expect("every collection declares its key field")
    }

    /// The table name a write goes to (application collections only).
    pub(crate) fn table(&self) -> Result<&str, QueryError> {
        if self.writable {
            Ok(&self.source)
        } else {
            Err(QueryError::ReadOnlyCollection(self.name.to_string()))
        }
    }
}

/// The prefix of the table that holds application collection `name`.
pub(crate) const APP_TABLE_PREFIX: &str = "app_";

/// The key field of application collections.
pub const APP_KEY: &str = "_id";

/// Build the description of an application collection from its declared fields.
pub(crate) fn app_collection(name: &str, fields: &[(String, FieldType)]) -> Collection {
    let mut all = Vec::with_capacity(fields.len() + 1);
    all.push(Field {
        name: Cow::Borrowed(APP_KEY),
        ty: FieldType::Text,
        expr: Cow::Owned(format!("t.\"{APP_KEY}\"")),
        lookup: None,
        address_field: None,
        json_written_by_store: false,
    });
    for (field_name, ty) in fields {
        all.push(Field {
            name: Cow::Owned(field_name.clone()),
            ty: *ty,
            expr: Cow::Owned(format!("t.\"{field_name}\"")),
            lookup: None,
            address_field: None,
            json_written_by_store: false,
        });
    }
    Collection {
        name: Cow::Owned(name.to_owned()),
        source: Cow::Owned(format!("\"{APP_TABLE_PREFIX}{name}\"")),
        key: Cow::Borrowed(APP_KEY),
        fields: all,
        writable: true,
    }
}

/// The built-in collection `name`, if there is one.
pub fn builtin_collection(name: &str) -> Option<Arc<Collection>> {
    builtins().iter().find(|c| c.name == name).cloned()
}

/// Names of the built-in collections, which application collections may not reuse.
pub fn builtin_collection_names() -> impl Iterator<Item = &'static str> {
    builtins().iter().map(|c| match &c.name {
        Cow::Borrowed(name) => *name,
        Cow::Owned(_) => unreachable!("built-in names are static"),
    })
}

fn builtins() -> &'static [Arc<Collection>] {
    static BUILTINS: OnceLock<Vec<Arc<Collection>>> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        vec![
            Arc::new(builtin("messages", "messages", MESSAGE_FIELDS)),
            Arc::new(builtin("folders", "folders", FOLDER_FIELDS)),
            Arc::new(builtin("attachments", "attachments", ATTACHMENT_FIELDS)),
            Arc::new(builtin("threads", THREADS_SOURCE, THREAD_FIELDS)),
        ]
    })
}

fn builtin(
    name: &'static str,
    source: &'static str,
    fields: &'static [(&'static str, FieldType, &'static str)],
) -> Collection {
    Collection {
        name: Cow::Borrowed(name),
        source: Cow::Borrowed(source),
        key: Cow::Borrowed("id"),
        fields: fields
            .iter()
            .map(|(field_name, ty, expr)| Field {
                name: Cow::Borrowed(field_name),
                ty: *ty,
                expr: Cow::Borrowed(expr),
                lookup: (name == "messages" && *field_name == "folder").then_some(&FOLDER_LOOKUP),
                address_field: (name == "messages")
                    .then(|| {
                        ADDRESS_FIELDS
                            .iter()
                            .find(|tag| *tag == field_name)
                            .copied()
                    })
                    .flatten(),
                // Built-in JSON columns (addresses, keywords, references) are written by the
                // store's append and flag paths through `serde_json` only.
                json_written_by_store: *ty == Json,
            })
            .collect(),
        writable: false,
    }
}

use FieldType::{Binary, Boolean, Date, Integer, Json, Text};

/// `messages`: readable names over the stored columns. `envelope` and `body_structure` are
/// internal and deliberately absent.
const MESSAGE_FIELDS: &[(&str, FieldType, &str)] = &[
    ("id", Integer, "t.id"),
    ("uid", Integer, "t.uid"),
    ("folder_id", Integer, "t.folder_id"),
    (
        "folder",
        Text,
        "(SELECT f.path FROM folders AS f WHERE f.id = t.folder_id)",
    ),
    ("modseq", Integer, "t.modseq"),
    ("seen", Boolean, "t.seen"),
    ("answered", Boolean, "t.answered"),
    ("flagged", Boolean, "t.flagged"),
    ("deleted", Boolean, "t.deleted"),
    ("draft", Boolean, "t.draft"),
    ("keywords", Json, "t.keywords"),
    ("internal_date", Date, "t.internal_date"),
    ("saved_at", Date, "t.saved_at"),
    ("date", Date, "t.header_date"),
    ("size", Integer, "t.size"),
    ("subject", Text, "t.subject"),
    ("from", Json, "t.from_addr"),
    ("sender", Json, "t.sender_addr"),
    ("reply_to", Json, "t.reply_to_addr"),
    ("to", Json, "t.to_addr"),
    ("cc", Json, "t.cc_addr"),
    ("bcc", Json, "t.bcc_addr"),
    ("message_id", Text, "t.message_id"),
    ("in_reply_to", Text, "t.in_reply_to"),
    ("references", Json, "t.refs_header"),
    ("thread_id", Integer, "t.thread_id"),
    ("has_attachment", Boolean, "t.has_attachment"),
    ("preview", Text, "t.preview"),
];

/// The `messages` fields whose addresses the `message_addresses` table indexes (schema
/// version 6); each field's rows there carry its name as their `field` tag.
const ADDRESS_FIELDS: &[&str] = &["from", "sender", "reply_to", "to", "cc", "bcc"];

const FOLDER_FIELDS: &[(&str, FieldType, &str)] = &[
    ("id", Integer, "t.id"),
    ("path", Text, "t.path"),
    ("special_use", Text, "t.special_use"),
    ("uidvalidity", Integer, "t.uidvalidity"),
    ("uidnext", Integer, "t.uidnext"),
    ("highestmodseq", Integer, "t.highestmodseq"),
    ("subscribed", Boolean, "t.subscribed"),
    ("created_at", Date, "t.created_at"),
];

/// Attachment metadata only: the content stays behind the mailbox API.
const ATTACHMENT_FIELDS: &[(&str, FieldType, &str)] = &[
    ("id", Integer, "t.id"),
    ("sha256", Binary, "t.sha256"),
    ("size", Integer, "t.size"),
    ("refs", Integer, "t.refs"),
];

/// Threads are derived from `messages.thread_id`; one row per thread.
const THREADS_SOURCE: &str = "(SELECT thread_id AS id, count(*) AS message_count, \
     sum(seen = 0) AS unseen_count, min(internal_date) AS first_date, \
     max(internal_date) AS last_date FROM messages WHERE thread_id IS NOT NULL \
     GROUP BY thread_id)";

const THREAD_FIELDS: &[(&str, FieldType, &str)] = &[
    ("id", Integer, "t.id"),
    ("message_count", Integer, "t.message_count"),
    ("unseen_count", Integer, "t.unseen_count"),
    ("first_date", Date, "t.first_date"),
    ("last_date", Date, "t.last_date"),
];

/// Check a declared application field name: a plain identifier that SQL never needs escaped,
/// that does not shadow the key or SQLite's implicit row id.
pub(crate) fn validate_field_name(name: &str) -> Result<(), QueryError> {
    validate_identifier(name, 64).map_err(|reason| QueryError::invalid("field name", reason))?;
    let lower = name.to_ascii_lowercase();
    if name.starts_with('_') || ["rowid", "oid", "_rowid_"].contains(&lower.as_str()) {
        return Err(QueryError::invalid(
            "field name",
            format!("{name:?} is reserved"),
        ));
    }
    Ok(())
}

/// Check an application collection name.
pub(crate) fn validate_collection_name(name: &str) -> Result<(), QueryError> {
    validate_identifier(name, 48)
        .map_err(|reason| QueryError::invalid("collection name", reason))?;
    if builtin_collection_names().any(|builtin| builtin.eq_ignore_ascii_case(name)) {
        return Err(QueryError::invalid(
            "collection name",
            format!("{name:?} is a built-in collection"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_their_key_field() {
        for name in builtin_collection_names() {
            let collection = builtin_collection(name).unwrap();
            assert_eq!(collection.key_field().name, "id");
            assert!(!collection.writable);
        }
    }

    #[test]
    fn reserved_field_names_are_refused() {
        for bad in ["_id", "rowid", "OID", "a-b", "", "1a", "a\"b"] {
            assert!(validate_field_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_field_name("title_2").is_ok());
    }
}

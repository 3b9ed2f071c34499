//! Mongo-style JSON queries over a declared schema, compiled to parameterized SQL.
//!
//! A request names a collection and an operation:
//!
//! ```json
//! {"collection": "messages", "op": "find",
//!  "filter": {"folder": "INBOX", "seen": false, "from.address": {"$regex": "@example\\.com$"}},
//!  "projection": {"uid": 1, "subject": 1}, "sort": {"uid": -1}, "skip": 0, "limit": 50}
//! ```
//!
//! Operations: `find`, `find_one`, `count`, `distinct` (`field`), `insert_one` (`document`),
//! `insert_many` (`documents`), `update_one`/`update_many` (`update`, `upsert`),
//! `delete_one`/`delete_many`, `define_collection` (`fields`, `indexes`).
//!
//! Collections: the built-in `messages`, `folders`, `attachments` (metadata) and `threads`,
//! read-only here because writes must go through the mailbox API (which bumps MODSEQ); and
//! application collections declared with `define_collection`, read-write, each in its own
//! table with a 24-hex-digit `_id`.
//!
//! Safety: values are always bound parameters, identifiers only ever come from [`schema`],
//! and there is no way to pass SQL through. See [`compile`] for the exact semantics.

pub mod collections;
pub mod compile;
pub mod error;
pub mod execute;
pub mod filter;
pub mod regex;
pub mod schema;
mod text;
pub mod update;
pub mod value;
mod write_scope;

pub use collections::{
    CollectionDefinition, DefineOutcome, IndexDefinition, collection, define_collection,
};
pub use compile::{CompiledSql, SortOrder, compile_filter};
pub use error::QueryError;
pub use execute::{
    FindOptions, Projection, QueryOutput, UpdateOptions, UpdateResult, count, delete, distinct,
    execute, execute_find_text, execute_find_text_pieces, find, find_one, find_text,
    find_text_pieces, insert_many, insert_one, parse_projection, parse_sort, update,
};
pub use filter::{Condition, ElemMatch, Filter, TypeName};
pub use schema::{Collection, Field, FieldType, builtin_collection};
pub use update::{Update, UpdateOp};

use rusqlite::Connection;

/// Statements kept prepared per connection. Queries of one shape share one statement, so this
/// bounds the number of distinct shapes in active use, not the number of queries.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Prepare a connection for queries: the `REGEXP` function and a statement cache sized for
/// query shapes. Called on every mailbox connection when it is opened.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    regex::register(conn)
}

impl crate::store::Mailbox {
    /// Run a JSON query request against this mailbox (see the module documentation).
    pub fn query(&self, request: &serde_json::Value) -> Result<QueryOutput, QueryError> {
        execute(self.conn(), request)
    }

    /// Run a `find` or `find_one` JSON request and answer with the result's JSON text, written
    /// straight from the rows (for callers that hand it on as text, like the Node binding).
    pub fn query_find_text(&self, request: &serde_json::Value) -> Result<String, QueryError> {
        execute_find_text(self.conn(), request)
    }

    /// [`Self::query_find_text`] in pieces of about `piece_bytes`: for `find`, JSON arrays whose
    /// concatenation is the answer; for `find_one`, one piece (see [`find_text_pieces`]).
    pub fn query_find_text_pieces(
        &self,
        request: &serde_json::Value,
        piece_bytes: usize,
    ) -> Result<Vec<String>, QueryError> {
        execute_find_text_pieces(self.conn(), request, piece_bytes)
    }
}

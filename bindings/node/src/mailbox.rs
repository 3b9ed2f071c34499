//! `Mailbox`: an open, decrypted mailbox and the Mongo-style query layer over it.

use crate::error::Failure;
use crate::registry::{shared_registry, to_js_integer};
use crate::task::{Blocking, IntoJs, JsonArrays, JsonText, blocking};
use chrono::{DateTime, Utc};
use napi::bindgen_prelude::{AsyncTask, Buffer, Either};
use napi_derive::napi;
use sealmail_core::account::{DELIVERY_FOLDER, OpenMailbox, open_mailbox};
use sealmail_core::backup;
use sealmail_core::query::{DefineOutcome, QueryOutput, UpdateResult};
use sealmail_core::registry::Registry as CoreRegistry;
use sealmail_core::store::{AppendOptions as CoreAppendOptions, Flags, FolderInfo};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// An open mailbox. The decryption key lives only inside the native addon (in SQLCipher's
/// memory) and is wiped when the handle is closed with `close()` or garbage-collected.
///
/// Calls on one handle run one at a time, in no guaranteed order (await a call when the next
/// depends on it); calls on different handles run in parallel. Waiting calls occupy threads of
/// libuv's pool (`UV_THREADPOOL_SIZE`, 4 by default), so a server with many busy mailboxes
/// should raise it.
#[napi]
pub struct Mailbox {
    /// `None` once closed. A std mutex because only blocking pool threads lock it; the JS
    /// thread never waits on it.
    session: Arc<Mutex<Option<OpenMailbox>>>,
    registry: Arc<CoreRegistry>,
    address: String,
}

/// Options of `Mailbox.append`.
#[napi(object)]
pub struct AppendOptions {
    /// IMAP flags: system flags such as `\\Seen` and keywords such as `$Forwarded`.
    pub flags: Option<Vec<String>>,
    /// The message's internal (arrival) date; now when absent. A `Date` or milliseconds since
    /// the epoch; stored with one-second precision.
    #[napi(ts_type = "Date | number")]
    pub internal_date: Option<Either<DateTime<Utc>, f64>>,
}

/// One message of `Mailbox.appendMany`.
#[napi(object)]
pub struct MessageToAppend {
    /// The raw RFC 5322 message, stored byte for byte.
    pub raw: Buffer,
    /// IMAP flags, as in `append`'s options.
    pub flags: Option<Vec<String>>,
    /// The internal date, as in `append`'s options.
    #[napi(ts_type = "Date | number")]
    pub internal_date: Option<Either<DateTime<Utc>, f64>>,
}

/// Where an appended message was stored.
#[napi(object)]
pub struct Appended {
    pub uid: u32,
    pub uidvalidity: u32,
    pub modseq: i64,
}

/// A folder and its counters.
#[napi(object)]
pub struct Folder {
    pub path: String,
    /// RFC 6154 attribute such as `\\Sent`; absent for ordinary folders.
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: i64,
    pub subscribed: bool,
    pub messages: u32,
    pub unseen: u32,
    /// Sum of the messages' sizes in bytes.
    pub size: i64,
}

/// Storage use of the mailbox.
#[napi(object)]
pub struct Quota {
    /// Bytes the encrypted file (with its write-ahead log) occupies.
    pub used_bytes: i64,
    /// The account's limit in bytes; absent when unlimited.
    pub limit_bytes: Option<i64>,
}

/// What `updateOne`/`updateMany` did.
#[napi(object)]
pub struct UpdateSummary {
    pub matched: i64,
    pub modified: i64,
    /// `_id` of the document inserted by an upsert; absent otherwise.
    #[napi(ts_type = "string")]
    pub upserted_id: Option<Value>,
}

/// What `defineCollection` did.
#[napi(object)]
pub struct DefineSummary {
    /// Whether the collection was new.
    pub created: bool,
    pub added_fields: Vec<String>,
    pub added_indexes: Vec<String>,
    /// The definition's version: 1 when created, +1 for each change applied.
    pub version: i64,
}

/// Options of `Mailbox.backup`.
#[napi(object)]
pub struct BackupOptions {
    /// Retention after storing a version: keep the newest version of each of the last N days
    /// (default 7)...
    pub keep_daily: Option<u32>,
    /// ...and of each of the last M months (default 12). Without either option, nothing is
    /// deleted.
    pub keep_monthly: Option<u32>,
}

/// What `Mailbox.backup` did.
#[napi(object)]
pub struct BackupResult {
    /// `true` when nothing changed since the latest stored version, which is described below.
    pub skipped: bool,
    /// The version name, e.g. `20261128T203656.123Z`.
    pub version: String,
    /// SHA-256 (hex) of the encrypted snapshot.
    pub hash: String,
    /// Size in bytes of the encrypted snapshot.
    pub size: i64,
    /// Where the snapshot is: a file path for `file://` targets, the object key in the bucket
    /// (`PREFIX/MAILBOX_ID/VERSION.sqlite`) for `s3://` targets.
    pub object_key: String,
    /// Versions deleted by retention.
    pub pruned: Vec<String>,
}

#[napi]
impl Mailbox {
    /// Verify `password`, unlock the mailbox of `address` and move the mail sealed for it while
    /// its owner was away into INBOX. Rejects with `WRONG_PASSWORD` for a wrong password or an
    /// unknown address (deliberately the same), `REGISTRY_MISSING` for a data directory without
    /// accounts.
    #[napi(ts_return_type = "Promise<Mailbox>")]
    pub fn open(
        data_dir: String,
        address: String,
        password: String,
    ) -> AsyncTask<Blocking<Mailbox>> {
        let password = Zeroizing::new(password);
        blocking(move || {
            let registry = shared_registry(&data_dir, false)?;
            let open = open_mailbox(&registry, &address, &password)?;
            Ok(Mailbox {
                address: open.address().to_string(),
                session: Arc::new(Mutex::new(Some(open))),
                registry,
            })
        })
    }

    /// The mailbox's address as the registry normalized it (lowercase).
    #[napi(getter)]
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Store a raw RFC 5322 message in `folder`, byte for byte. Rejects with `NO_SUCH_FOLDER`,
    /// `QUOTA_EXCEEDED` or `MESSAGE_TOO_LARGE` (64 MiB).
    #[napi(ts_return_type = "Promise<Appended>")]
    pub fn append(
        &self,
        folder: String,
        raw: Buffer,
        options: Option<AppendOptions>,
    ) -> AsyncTask<Blocking<Appended>> {
        let options = options.map(append_options).transpose();
        self.with_session(move |open, _| {
            let appended =
                open.mailbox_mut()
                    .append(&folder, &raw, &options?.unwrap_or_default())?;
            Ok(Appended {
                uid: appended.uid,
                uidvalidity: appended.uidvalidity,
                modseq: to_js_integer(appended.modseq),
            })
        })
    }

    /// Store several raw messages in `folder` in one transaction: all are stored or, on any
    /// error, none. Much faster than one `append` per message for imports and batched
    /// delivery (one commit and one thread-pool hop for the batch). Resolves to their places,
    /// in order; rejects like `append`.
    #[napi(ts_return_type = "Promise<Appended[]>")]
    pub fn append_many(
        &self,
        folder: String,
        messages: Vec<MessageToAppend>,
    ) -> AsyncTask<Blocking<Vec<Appended>>> {
        let prepared: Result<Vec<(Buffer, CoreAppendOptions)>, Failure> = messages
            .into_iter()
            .map(|message| {
                let options = append_options(AppendOptions {
                    flags: message.flags,
                    internal_date: message.internal_date,
                })?;
                Ok((message.raw, options))
            })
            .collect();
        self.with_session(move |open, _| {
            let prepared = prepared?;
            let items: Vec<(&[u8], CoreAppendOptions)> = prepared
                .iter()
                .map(|(raw, options)| (&raw[..], options.clone()))
                .collect();
            let appended = open.mailbox_mut().append_many(&folder, &items)?;
            Ok(appended
                .into_iter()
                .map(|appended| Appended {
                    uid: appended.uid,
                    uidvalidity: appended.uidvalidity,
                    modseq: to_js_integer(appended.modseq),
                })
                .collect())
        })
    }

    /// The raw message with `uid` in `folder` (INBOX when omitted), exactly as appended.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn fetch_raw(&self, uid: u32, folder: Option<String>) -> AsyncTask<Blocking<Buffer>> {
        let folder = folder.unwrap_or_else(|| DELIVERY_FOLDER.to_string());
        self.with_session(move |open, _| Ok(open.mailbox().fetch_raw(&folder, uid)?.into()))
    }

    /// Every folder with its counters, ordered by path.
    #[napi(ts_return_type = "Promise<Folder[]>")]
    pub fn folders(&self) -> AsyncTask<Blocking<Vec<Folder>>> {
        self.with_session(|open, _| {
            Ok(open
                .mailbox()
                .list_folders()?
                .into_iter()
                .map(Folder::from)
                .collect())
        })
    }

    /// Create a folder (and any missing parents; `/` separates levels), optionally with an
    /// RFC 6154 special use such as `\\Archive`.
    #[napi(ts_return_type = "Promise<Folder>")]
    pub fn create_folder(
        &self,
        path: String,
        special_use: Option<String>,
    ) -> AsyncTask<Blocking<Folder>> {
        self.with_session(move |open, _| {
            let folder = open
                .mailbox_mut()
                .create_folder(&path, special_use.as_deref())?;
            Ok(folder.into())
        })
    }

    /// Put the messages waiting for the full-text index into it, up to `limit` (all when
    /// omitted); resolves to how many were indexed. Appends leave their text to be indexed
    /// in batches: before IMAP's next text search, by the append that brings the backlog to
    /// 256 messages, or by this call (a service's idle time, the end of an import).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn index_pending(&self, limit: Option<u32>) -> AsyncTask<Blocking<u32>> {
        let limit = limit.map_or(usize::MAX, |limit| limit as usize);
        self.with_session(move |open, _| Ok(open.mailbox().index_pending_in_batches(limit)? as u32))
    }

    /// Bytes used and the account's limit. Also records the usage in the registry, where
    /// `Registry.lookup` reads it.
    #[napi(ts_return_type = "Promise<Quota>")]
    pub fn quota(&self) -> AsyncTask<Blocking<Quota>> {
        let address = self.address.clone();
        self.with_session(move |open, registry| {
            open.record_usage(registry)?;
            let limit = registry
                .lookup(&address)?
                .ok_or_else(|| sealmail_core::Error::NoSuchAccount(address.clone()))?
                .quota;
            Ok(Quota {
                used_bytes: to_js_integer(open.mailbox().used_bytes()?),
                limit_bytes: limit.map(to_js_integer),
            })
        })
    }

    /// Back up the mailbox, encrypted exactly as it is at rest and verified, to `target`
    /// (`file:///DIR` or `s3://BUCKET/PREFIX`), unless nothing changed since the latest
    /// version there. An S3 target takes its endpoint, region and credentials from the
    /// standard AWS environment variables and files (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...), read at each call; a custom endpoint
    /// is addressed path-style. Rejects with `BACKUP_STORAGE` when the store fails, with
    /// `BACKUP_IN_PROGRESS` while another backup of this mailbox runs, `INSUFFICIENT_SPACE`
    /// when the snapshot would not fit.
    #[napi(ts_return_type = "Promise<BackupResult>")]
    pub fn backup(
        &self,
        target: String,
        options: Option<BackupOptions>,
    ) -> AsyncTask<Blocking<BackupResult>> {
        let retention = options.and_then(|options| {
            (options.keep_daily.is_some() || options.keep_monthly.is_some()).then(|| {
                let defaults = backup::RetentionPolicy::default();
                backup::RetentionPolicy {
                    keep_daily: options.keep_daily.unwrap_or(defaults.keep_daily),
                    keep_monthly: options.keep_monthly.unwrap_or(defaults.keep_monthly),
                }
            })
        });
        self.with_session(move |open, registry| {
            let target = backup::BackupTarget::parse(&target)?;
            let credential = registry.wrapped_credential(open.mailbox_id())?;
            let options = backup::BackupOptions {
                retention,
                now: None,
            };
            let outcome = backup::run(open.mailbox(), open.key(), &credential, &target, &options)?;
            let (manifest, skipped, pruned) = match outcome {
                backup::BackupOutcome::Stored { manifest, pruned } => (manifest, false, pruned),
                backup::BackupOutcome::Unchanged { latest } => (latest, true, Vec::new()),
            };
            Ok(BackupResult {
                skipped,
                object_key: target.snapshot_location(&manifest),
                version: manifest.version,
                hash: manifest.sha256,
                size: to_js_integer(manifest.size),
                pruned,
            })
        })
    }

    /// Documents of `collection` matching `filter` (every document when omitted).
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter?: Filter<NoInfer<T>> | null, options?: FindOptions<NoInfer<T>>",
        ts_return_type = "Promise<T[]>"
    )]
    pub fn find(
        &self,
        collection: String,
        filter: Option<Value>,
        options: Option<Value>,
    ) -> AsyncTask<Blocking<JsonArrays>> {
        let request = request(collection, "find", [("filter", filter)], options);
        self.run_find(request)
    }

    /// The first document matching `filter` (after `sort` and `skip`), or `null`.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter?: Filter<NoInfer<T>> | null, options?: FindOneOptions<NoInfer<T>>",
        ts_return_type = "Promise<T | null>"
    )]
    pub fn find_one(
        &self,
        collection: String,
        filter: Option<Value>,
        options: Option<Value>,
    ) -> AsyncTask<Blocking<JsonText>> {
        let request = request(collection, "find_one", [("filter", filter)], options);
        self.run_find_one(request)
    }

    /// How many documents match `filter`.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter?: Filter<NoInfer<T>> | null",
        ts_return_type = "Promise<number>"
    )]
    pub fn count(&self, collection: String, filter: Option<Value>) -> AsyncTask<Blocking<i64>> {
        let request = request(collection, "count", [("filter", filter)], None);
        self.run_query(request, |output| match output {
            QueryOutput::Count(count) => Ok(to_js_integer(count)),
            other => Err(unexpected(&other)),
        })
    }

    /// The distinct values of `field` among the documents matching `filter`.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, field: string, filter?: Filter<NoInfer<T>> | null",
        ts_return_type = "Promise<JsonValue[]>"
    )]
    pub fn distinct(
        &self,
        collection: String,
        field: String,
        filter: Option<Value>,
    ) -> AsyncTask<Blocking<Vec<Value>>> {
        let request = request(
            collection,
            "distinct",
            [("field", Some(Value::String(field))), ("filter", filter)],
            None,
        );
        self.run_query(request, |output| match output {
            QueryOutput::Values(values) => Ok(values),
            other => Err(unexpected(&other)),
        })
    }

    /// Insert a document into an application collection; resolves with its `_id` (generated
    /// when the document has none).
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, document: T",
        ts_return_type = "Promise<string>"
    )]
    pub fn insert_one(&self, collection: String, document: Value) -> AsyncTask<Blocking<Value>> {
        let request = request(
            collection,
            "insert_one",
            [("document", Some(document))],
            None,
        );
        self.run_query(request, |output| {
            inserted(output)?
                .into_iter()
                .next()
                .ok_or_else(|| Failure::new("INTERNAL", "insert returned no id"))
        })
    }

    /// Insert documents into an application collection in one transaction (all or none);
    /// resolves with their `_id`s in order.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, documents: T[]",
        ts_return_type = "Promise<string[]>"
    )]
    pub fn insert_many(
        &self,
        collection: String,
        documents: Vec<Value>,
    ) -> AsyncTask<Blocking<Vec<Value>>> {
        let request = request(
            collection,
            "insert_many",
            [("documents", Some(Value::Array(documents)))],
            None,
        );
        self.run_query(request, inserted)
    }

    /// Apply `update` (`$set`, `$inc`, `$push`, ...) to the first document matching `filter`.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter: Filter<NoInfer<T>> | null, update: Update<NoInfer<T>>, options?: UpdateOptions",
        ts_return_type = "Promise<UpdateSummary>"
    )]
    pub fn update_one(
        &self,
        collection: String,
        filter: Option<Value>,
        update: Value,
        options: Option<Value>,
    ) -> AsyncTask<Blocking<UpdateSummary>> {
        let request = request(
            collection,
            "update_one",
            [("filter", filter), ("update", Some(update))],
            options,
        );
        self.run_query(request, updated)
    }

    /// Apply `update` to every document matching `filter`, in one transaction.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter: Filter<NoInfer<T>> | null, update: Update<NoInfer<T>>, options?: UpdateOptions",
        ts_return_type = "Promise<UpdateSummary>"
    )]
    pub fn update_many(
        &self,
        collection: String,
        filter: Option<Value>,
        update: Value,
        options: Option<Value>,
    ) -> AsyncTask<Blocking<UpdateSummary>> {
        let request = request(
            collection,
            "update_many",
            [("filter", filter), ("update", Some(update))],
            options,
        );
        self.run_query(request, updated)
    }

    /// Delete the first document matching `filter`; resolves with the number deleted (0 or 1).
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter: Filter<NoInfer<T>> | null",
        ts_return_type = "Promise<number>"
    )]
    pub fn delete_one(
        &self,
        collection: String,
        filter: Option<Value>,
    ) -> AsyncTask<Blocking<i64>> {
        let request = request(collection, "delete_one", [("filter", filter)], None);
        self.run_query(request, deleted)
    }

    /// Delete every document matching `filter`; resolves with the number deleted.
    #[napi(
        ts_generic_types = "T extends Document = Document",
        ts_args_type = "collection: string, filter: Filter<NoInfer<T>> | null",
        ts_return_type = "Promise<number>"
    )]
    pub fn delete_many(
        &self,
        collection: String,
        filter: Option<Value>,
    ) -> AsyncTask<Blocking<i64>> {
        let request = request(collection, "delete_many", [("filter", filter)], None);
        self.run_query(request, deleted)
    }

    /// Declare an application collection, or extend one (new fields and indexes only: a
    /// change that would lose data is refused with `DESTRUCTIVE_SCHEMA_CHANGE`).
    #[napi(
        ts_args_type = "collection: string, definition: CollectionDefinition",
        ts_return_type = "Promise<DefineSummary>"
    )]
    pub fn define_collection(
        &self,
        collection: String,
        definition: Value,
    ) -> AsyncTask<Blocking<DefineSummary>> {
        let request = match definition {
            Value::Object(definition) => request(
                collection,
                "define_collection",
                [],
                Some(Value::Object(definition)),
            ),
            _ => Err(Failure::new(
                "INVALID_QUERY",
                "a collection definition must be an object {fields, indexes}",
            )),
        };
        self.run_query(request, |output| match output {
            QueryOutput::Defined(outcome) => Ok(DefineSummary::from(outcome)),
            other => Err(unexpected(&other)),
        })
    }

    /// Close the handle: the key is wiped and every later call rejects with `CLOSED`. Records
    /// the mailbox's disk usage in the registry. Closing twice is harmless.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<Blocking<()>> {
        let session = self.session.clone();
        let registry = self.registry.clone();
        blocking(move || {
            let taken = session
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match taken {
                Some(open) => Ok(open.record_usage(&registry)?),
                None => Ok(()),
            }
        })
    }
}

impl Mailbox {
    /// Run `work` on the open mailbox off the JS thread; `CLOSED` after `close()`.
    fn with_session<T, F>(&self, work: F) -> AsyncTask<Blocking<T>>
    where
        F: FnOnce(&mut OpenMailbox, &CoreRegistry) -> Result<T, Failure> + Send + 'static,
        T: IntoJs,
    {
        let session = self.session.clone();
        let registry = self.registry.clone();
        blocking(move || {
            let mut guard = session.lock().unwrap_or_else(PoisonError::into_inner);
            let open = guard.as_mut().ok_or_else(Failure::closed)?;
            work(open, &registry)
        })
    }

    /// Run a `find` request; its documents come back as JSON text written by the core straight
    /// from the rows, in pieces of bounded size, which `JSON.parse` turns into JS values.
    fn run_find(&self, request: Result<Value, Failure>) -> AsyncTask<Blocking<JsonArrays>> {
        self.with_session(move |open, _| {
            let pieces = open
                .mailbox()
                .query_find_text_pieces(&request?, JsonArrays::PIECE_BYTES)?;
            Ok(JsonArrays(pieces))
        })
    }

    /// Run a `find_one` request: one document (or `null`) as JSON text.
    fn run_find_one(&self, request: Result<Value, Failure>) -> AsyncTask<Blocking<JsonText>> {
        self.with_session(move |open, _| Ok(JsonText(open.mailbox().query_find_text(&request?)?)))
    }

    /// Run a query request and shape its output with `convert`.
    fn run_query<T, C>(&self, request: Result<Value, Failure>, convert: C) -> AsyncTask<Blocking<T>>
    where
        C: FnOnce(QueryOutput) -> Result<T, Failure> + Send + 'static,
        T: IntoJs,
    {
        self.with_session(move |open, _| convert(open.mailbox().query(&request?)?))
    }
}

/// Build `{collection, op, ...arguments, ...options}`. Options may not override the arguments;
/// unknown option names are left for the query layer to refuse (`INVALID_QUERY`).
fn request<const N: usize>(
    collection: String,
    op: &str,
    arguments: [(&str, Option<Value>); N],
    options: Option<Value>,
) -> Result<Value, Failure> {
    let mut request = Map::new();
    request.insert("collection".into(), Value::String(collection));
    request.insert("op".into(), Value::String(op.into()));
    for (name, value) in arguments {
        if let Some(value) = value {
            request.insert(name.into(), value);
        }
    }
    match options {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => {
            for (name, value) in options {
                if request.contains_key(&name) {
                    return Err(Failure::new(
                        "INVALID_QUERY",
                        format!("{name:?} is not an option of {op}"),
                    ));
                }
                request.insert(name, value);
            }
        }
        Some(_) => return Err(Failure::new("INVALID_QUERY", "options must be an object")),
    }
    Ok(Value::Object(request))
}

fn inserted(output: QueryOutput) -> Result<Vec<Value>, Failure> {
    match output {
        QueryOutput::Inserted(ids) => Ok(ids),
        other => Err(unexpected(&other)),
    }
}

fn updated(output: QueryOutput) -> Result<UpdateSummary, Failure> {
    match output {
        QueryOutput::Updated(result) => Ok(UpdateSummary::from(result)),
        other => Err(unexpected(&other)),
    }
}

fn deleted(output: QueryOutput) -> Result<i64, Failure> {
    match output {
        QueryOutput::Deleted(count) => Ok(to_js_integer(count)),
        other => Err(unexpected(&other)),
    }
}

/// The query layer answered an operation with the output of another: a bug, not bad input.
fn unexpected(output: &QueryOutput) -> Failure {
    Failure::new(
        "INTERNAL",
        format!("unexpected query output {}", json!(output)),
    )
}

fn append_options(options: AppendOptions) -> Result<CoreAppendOptions, Failure> {
    let flags = match options.flags {
        Some(atoms) => {
            Flags::from_imap(atoms.iter().map(String::as_str)).map_err(Failure::invalid_argument)?
        }
        None => Flags::default(),
    };
    let internal_date = options.internal_date.map(|date| match date {
        Either::A(date) => date.timestamp(),
        Either::B(millis) => (millis / 1000.0).floor() as i64,
    });
    Ok(CoreAppendOptions {
        flags,
        internal_date,
    })
}

impl From<FolderInfo> for Folder {
    fn from(info: FolderInfo) -> Self {
        Folder {
            path: info.path,
            special_use: info.special_use,
            uidvalidity: info.uidvalidity,
            uidnext: info.uidnext,
            highest_modseq: to_js_integer(info.highest_modseq),
            subscribed: info.subscribed,
            messages: info.messages,
            unseen: info.unseen,
            size: to_js_integer(info.size),
        }
    }
}

impl From<UpdateResult> for UpdateSummary {
    fn from(result: UpdateResult) -> Self {
        UpdateSummary {
            matched: to_js_integer(result.matched),
            modified: to_js_integer(result.modified),
            upserted_id: result.upserted_id,
        }
    }
}

impl From<DefineOutcome> for DefineSummary {
    fn from(outcome: DefineOutcome) -> Self {
        DefineSummary {
            created: outcome.created,
            added_fields: outcome.added_fields,
            added_indexes: outcome.added_indexes,
            version: outcome.version,
        }
    }
}

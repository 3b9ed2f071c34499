//! Running core calls off the JS thread.
//!
//! Every call that touches a file or runs Argon2id becomes a [`Blocking`] task on libuv's thread
//! pool and returns a Promise. Its failure is kept as a [`Failure`] until the Promise is
//! rejected on the JS thread, where the JS `Error` with its `code` can be built (napi's own
//! error path only carries napi status names as codes).

use crate::error::Failure;
use napi::JsString;
use napi::bindgen_prelude::{
    AsyncTask, Env, FromNapiValue, Function, JsObjectValue, Object, ToNapiValue, Unknown,
};
use napi::{ScopedTask, Status};

type Work<T> = Box<dyn FnOnce() -> Result<T, Failure> + Send>;

/// How a task's result becomes a JS value, on the JS thread.
pub trait IntoJs: Send + 'static {
    fn into_js(self, env: &Env) -> napi::Result<Unknown<'_>>;
}

impl<T: ToNapiValue + Send + 'static> IntoJs for T {
    fn into_js(self, env: &Env) -> napi::Result<Unknown<'_>> {
        self.into_unknown(env)
    }
}

/// JSON serialized on the worker thread and turned into JS values by V8's `JSON.parse`.
///
/// napi builds objects one property at a time, one native call each; for query results of
/// hundreds of documents that conversion cost more than the query itself. One string and one
/// `JSON.parse` call build the same values several times faster, and the serialization runs
/// off the JS thread.
pub struct JsonText(pub String);

impl IntoJs for JsonText {
    fn into_js(self, env: &Env) -> napi::Result<Unknown<'_>> {
        json_parse::<Unknown>(env)?.call(js_text(env, &self.0)?)
    }
}

/// The documents of a `find` as JSON arrays of consecutive documents, each closed once it
/// holds [`JsonArrays::PIECE_BYTES`]: parsed one by one and concatenated into one array.
///
/// V8 allocates a string of more than 128 KiB in its large-object space, several times slower
/// per byte than smaller strings (a 160 KB answer cost 170 µs to create as one string, 15 µs as
/// three); pieces of 64 KiB and one more document stay below that.
pub struct JsonArrays(pub Vec<String>);

impl JsonArrays {
    /// A piece is closed once it holds this many bytes (so it stays well below 128 KiB unless
    /// one document is larger).
    pub const PIECE_BYTES: usize = 64 * 1024;
}

impl IntoJs for JsonArrays {
    fn into_js(self, env: &Env) -> napi::Result<Unknown<'_>> {
        let parse = json_parse::<Object>(env)?;
        let mut pieces = self.0.iter();
        let first = pieces.next().map_or("[]", String::as_str);
        let mut documents = parse.call(js_text(env, first)?)?;
        for piece in pieces {
            let more = parse.call(js_text(env, piece)?)?;
            // Array.prototype.concat: one native copy of the element references.
            let concat: Function<Object, Object> = documents.get_named_property("concat")?;
            documents = concat.apply(documents, more)?;
        }
        documents.into_unknown(env)
    }
}

/// The global `JSON.parse`, answering with an `R`.
fn json_parse<'env, R: FromNapiValue>(
    env: &'env Env,
) -> napi::Result<Function<'env, JsString<'env>, R>> {
    let json: Object = env.get_global()?.get_named_property("JSON")?;
    json.get_named_property("parse")
}

/// `text` as a JS string. Query answers are mostly ASCII, which as Latin-1 is copied into a
/// one-byte V8 string as is, without the UTF-8 decoder's pass over it.
fn js_text<'env>(env: &'env Env, text: &str) -> napi::Result<JsString<'env>> {
    if text.is_ascii() {
        env.create_string_latin1(text.as_bytes())
    } else {
        env.create_string(text)
    }
}

/// One blocking call whose result `T` becomes the Promise's value.
pub struct Blocking<T> {
    work: Option<Work<T>>,
    failure: Option<Failure>,
}

/// Wrap `work` into a task; napi turns the returned `AsyncTask` into a Promise.
pub fn blocking<T, F>(work: F) -> AsyncTask<Blocking<T>>
where
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
    T: IntoJs,
{
    AsyncTask::new(Blocking {
        work: Some(Box::new(work)),
        failure: None,
    })
}

impl<'task, T> ScopedTask<'task> for Blocking<T>
where
    T: IntoJs,
{
    type Output = T;
    // `Unknown` rather than `T`: napi asks the task's value for a `TypeName`, which plain JSON
    // values lack; the TypeScript signatures are written on each method instead.
    type JsValue = Unknown<'task>;

    fn compute(&mut self) -> napi::Result<T> {
        let work = self
            .work
            .take()
            .ok_or_else(|| napi::Error::new(Status::GenericFailure, "task ran twice"))?;
        work().map_err(|failure| {
            let error = napi::Error::new(Status::GenericFailure, failure.message.clone());
            self.failure = Some(failure);
            error
        })
    }

    fn resolve(&mut self, env: &'task Env, output: T) -> napi::Result<Unknown<'task>> {
        output.into_js(env)
    }

    fn reject(&mut self, env: &'task Env, error: napi::Error) -> napi::Result<Unknown<'task>> {
        Err(match self.failure.take() {
            Some(failure) => failure.into_napi(env),
            None => error,
        })
    }
}

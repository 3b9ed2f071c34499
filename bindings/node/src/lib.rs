//! sealmail-node: the Node.js binding of `sealmail-core` (the npm package `sealmail`).
//!
//! It only converts: JS arguments to core calls, core results to JS values, core errors to JS
//! `Error`s with a stable `code`. Every call that reads or writes a file, or runs Argon2id,
//! runs on libuv's thread pool and returns a Promise. No `unsafe` is written here; napi's
//! generated glue has its own.
#![deny(clippy::all)]

mod error;
mod mailbox;
mod registry;
mod task;

pub use mailbox::Mailbox;
pub use registry::{Registry, deliver};

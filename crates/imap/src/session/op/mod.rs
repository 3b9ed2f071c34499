//! One file per command (or per pair of commands that share their logic, e.g. COPY/MOVE).

pub(crate) mod append;
pub(crate) mod capability;
pub(crate) mod compress;
pub(crate) mod copy;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod enable;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod id;
pub(crate) mod list;
pub(crate) mod login;
pub(crate) mod namespace;
pub(crate) mod notify;
pub(crate) mod quota;
pub(crate) mod rename;
pub(crate) mod search;
pub(crate) mod select;
pub(crate) mod sort;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod subscribe;
pub(crate) mod thread;

//! End-to-end tests of the IMAP server: one test binary (a real server on 127.0.0.1 over a real
//! registry and encrypted mailbox per test), driven by raw sockets and by Python's imaplib.

mod client_regressions;
mod common;
mod conformance;
mod extensions;
mod imaplib;
mod notify_idle;
mod quirks;
mod sort_thread;
mod tls;

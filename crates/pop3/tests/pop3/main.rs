//! End-to-end tests of the POP3 server: one test binary (a real server on 127.0.0.1 over a
//! real registry and encrypted mailbox per test), driven by raw sockets, by an IMAP client on
//! the same mailbox, by Python's poplib and by Debian's fetchmail.

mod common;
mod conformance;
mod external;
mod interleave;
mod metrics;
mod tls;

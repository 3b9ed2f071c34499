//! End-to-end tests of the SMTP listeners: a real server on 127.0.0.1 over a real registry,
//! sealed queue and encrypted mailboxes, driven by raw sockets and by real clients (Python's
//! smtplib, swaks, nodemailer).

mod clients;
mod common;
mod dns_stub;
mod forwarding;
mod inbound_auth;
mod limits;
mod outbound;
mod wire;

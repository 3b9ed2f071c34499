//! The SMTP grammar without I/O: command lines, replies, and message text.

pub mod command;
pub mod data;
pub mod reply;

pub use command::{
    AuthMechanism, Body, Command, CommandError, DsnNotify, DsnReturn, MAX_COMMAND_LINE, MailParams,
    RcptParams,
};
pub use data::{
    ChunkCollector, DataReceiver, Fed, MAX_TEXT_LINE, MessageDefect, check_message_text,
};
pub use reply::Reply;

//! ID (RFC 2971): the server identifies itself; the client's fields are not stored.

use crate::proto::{Data, Response};
use crate::session::{Done, OpResult, Responder};

pub(crate) fn run(out: &mut Responder<'_>) -> OpResult {
    out.push(&Response::Data(Data::Id(Some(vec![
        ("name".into(), Some("sealmail".into())),
        ("version".into(), Some(env!("CARGO_PKG_VERSION").into())),
    ]))));
    Ok(Done::ok("ID completed"))
}

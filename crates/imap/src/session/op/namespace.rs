//! NAMESPACE (RFC 2342): one personal namespace with `/` as delimiter.

use crate::proto::{Data, Response};
use crate::session::{Done, OpResult, Responder};
use sealmail_core::store::DELIMITER;

pub(crate) fn run(out: &mut Responder<'_>) -> OpResult {
    out.push(&Response::Data(Data::Namespace {
        personal: vec![(String::new(), Some(DELIMITER))],
        other: Vec::new(),
        shared: Vec::new(),
    }));
    Ok(Done::ok("NAMESPACE completed"))
}

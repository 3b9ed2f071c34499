//! GETQUOTA / GETQUOTAROOT (RFC 9208): one root, "", with the account's STORAGE in KiB.

use crate::proto::{Code, Data, Response};
use crate::session::{Done, Failure, OpResult, Responder, Session};
use sealmail_core::mailstore::{MailSession, MailStore};

async fn quota_response<M: MailStore>(
    session: &mut Session<M>,
    out: &mut Responder<'_>,
) -> Result<(), Failure> {
    let authed = session.authed()?;
    let usage = authed
        .mail
        .quota()
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    let resources = match usage.limit_bytes {
        Some(limit) => vec![(
            "STORAGE".to_string(),
            usage.used_bytes.div_ceil(1024),
            limit / 1024,
        )],
        None => Vec::new(),
    };
    out.push(&Response::Data(Data::Quota {
        root: String::new(),
        resources,
    }));
    Ok(())
}

pub(crate) async fn get_quota<M: MailStore>(
    session: &mut Session<M>,
    root: String,
    out: &mut Responder<'_>,
) -> OpResult {
    if !root.is_empty() {
        return Err(Failure::no_code(Code::NonExistent, "no such quota root"));
    }
    quota_response(session, out).await?;
    Ok(Done::ok("GETQUOTA completed"))
}

pub(crate) async fn get_quota_root<M: MailStore>(
    session: &mut Session<M>,
    folder: String,
    out: &mut Responder<'_>,
) -> OpResult {
    let authed = session.authed()?;
    authed
        .mail
        .folder(&folder)
        .await
        .map_err(|e| Failure::store(e, Code::NonExistent))?;
    out.push(&Response::Data(Data::QuotaRoot {
        mailbox: folder,
        roots: vec![String::new()],
    }));
    quota_response(session, out).await?;
    Ok(Done::ok("GETQUOTAROOT completed"))
}

//! NOTIFY (RFC 5465) state of one session: which events the client asked for, per mailbox
//! filter, and the events for mailboxes other than the selected one that wait to be reported as
//! untagged STATUS (message events) and LIST (MailboxName) responses.
//!
//! Events come from the mailbox's change feed ([`Change`]), the same one IDLE uses. They are
//! queued as they are read and reported while IDLE, or before the tagged completion of the next
//! command. The queue is bounded: past the bound the session reports `[NOTIFICATIONOVERFLOW]`
//! and behaves as after `NOTIFY NONE` (RFC 5465 section 5.8).

use super::Failure;
use super::responder::Responder;
use crate::proto::{
    Code, Data, FetchAttribute, NotifyEvent, NotifyFilter, NotifyGroup, Response, StatusItem,
    StatusKind, StatusResponse, StatusValue,
};
use sealmail_core::mailstore::{Change, ChangeEvent, MailSession};
use sealmail_core::store::{DELIMITER, FolderInfo};

/// The events this server reports, for `[BADEVENT]`.
const SUPPORTED_EVENTS: [&str; 4] = ["MessageNew", "MessageExpunge", "FlagChange", "MailboxName"];

/// What the client asked for with `NOTIFY SET`.
#[derive(Debug, Clone)]
pub(crate) struct Notify {
    /// The SELECTED or SELECTED-DELAYED group, if any.
    pub selected: Option<SelectedEvents>,
    /// Groups for other mailboxes, in the client's order: the first matching group applies.
    others: Vec<NotifyGroup>,
    /// Events for other mailboxes not yet reported, oldest first.
    queue: Vec<Queued>,
}

/// The selected mailbox's events (MessageNew and MessageExpunge, which come together).
#[derive(Debug, Clone, Default)]
pub(crate) struct SelectedEvents {
    /// SELECTED-DELAYED: expunges wait for a command that may report them.
    pub delayed: bool,
    /// FlagChange: other sessions' flag changes are reported as FETCH (UID FLAGS).
    pub flag_change: bool,
    /// `MessageNew (fetch-att ...)`: FETCH these for every new message, after its EXISTS.
    pub new_message_fetch: Vec<FetchAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Queued {
    /// Message events in a mailbox: one STATUS reports them all.
    Messages {
        folder: String,
        new: bool,
        expunge: bool,
        flags: bool,
    },
    /// A mailbox was created (`old: None, deleted: false`), deleted, or renamed from `old`.
    Name {
        folder: String,
        old: Option<String>,
        deleted: bool,
    },
}

/// Why a queued event could not be kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

impl Notify {
    /// Validate the event groups of `NOTIFY SET` (RFC 5465 sections 3 and 5).
    pub fn new(groups: Vec<NotifyGroup>) -> Result<Notify, Failure> {
        let mut selected = None;
        let mut selected_named = false;
        let mut others = Vec::new();
        let mut unsupported = false;
        for mut group in groups {
            let has = |f: fn(&NotifyEvent) -> bool| group.events.iter().any(f);
            let new = has(|e| matches!(e, NotifyEvent::MessageNew(_)));
            let expunge = has(|e| matches!(e, NotifyEvent::MessageExpunge));
            let flags = has(|e| matches!(e, NotifyEvent::FlagChange));
            if new != expunge {
                return Err(Failure::bad(
                    "MessageNew and MessageExpunge must be requested together",
                ));
            }
            if flags && !new {
                return Err(Failure::bad(
                    "FlagChange needs MessageNew and MessageExpunge",
                ));
            }
            unsupported |= group.events.iter().any(|e| {
                !matches!(
                    e,
                    NotifyEvent::MessageNew(_)
                        | NotifyEvent::MessageExpunge
                        | NotifyEvent::FlagChange
                        | NotifyEvent::MailboxName
                )
            });
            if group.filter.is_selected() {
                if std::mem::replace(&mut selected_named, true) {
                    return Err(Failure::bad("the selected mailbox is named twice"));
                }
                if group.events.iter().any(|e| !e.is_message_event()) {
                    return Err(Failure::bad(
                        "only message events apply to the selected mailbox",
                    ));
                }
                // `(SELECTED NONE)` asks for no events, like leaving SELECTED out (RFC 5465
                // section 3.1).
                if !new {
                    continue;
                }
                let mut events = SelectedEvents {
                    delayed: group.filter == NotifyFilter::SelectedDelayed,
                    flag_change: flags,
                    new_message_fetch: Vec::new(),
                };
                for event in &mut group.events {
                    if let NotifyEvent::MessageNew(attributes) = event {
                        events.new_message_fetch = peek_only(std::mem::take(attributes))?;
                    }
                }
                selected = Some(events);
            } else {
                if group
                    .events
                    .iter()
                    .any(|e| matches!(e, NotifyEvent::MessageNew(a) if !a.is_empty()))
                {
                    return Err(Failure::bad(
                        "fetch attributes apply to the selected mailbox only",
                    ));
                }
                others.push(group);
            }
        }
        if unsupported {
            return Err(Failure::no_code(
                Code::BadEvent(SUPPORTED_EVENTS.map(String::from).to_vec()),
                "unsupported event",
            ));
        }
        Ok(Notify {
            selected,
            others,
            queue: Vec::new(),
        })
    }

    /// Whether other sessions' flag changes in the selected mailbox are reported (FlagChange
    /// in the SELECTED or SELECTED-DELAYED group). Without it the client gets no FETCH for
    /// them, neither between commands nor after one (RFC 5465 sections 3.1 and 5.1).
    pub fn reports_selected_flags(&self) -> bool {
        self.selected.as_ref().is_some_and(|s| s.flag_change)
    }

    /// Whether any change in a mailbox other than the selected one is of interest.
    pub fn watches_others(&self) -> bool {
        self.others.iter().any(|g| !g.events.is_empty())
    }

    /// Queue `change` (for a mailbox other than the selected one) if some group may want it.
    /// Fails once more than `limit` events wait.
    pub fn queue(&mut self, change: &Change, limit: usize) -> Result<(), Overflow> {
        let wanted = |pred: fn(&NotifyEvent) -> bool| {
            self.others
                .iter()
                .any(|group| group.events.iter().any(pred))
        };
        let (new, expunge, flags) = match &change.event {
            ChangeEvent::MessagesAdded => (true, false, false),
            ChangeEvent::MessagesExpunged => (false, true, false),
            ChangeEvent::FlagsChanged => (false, false, true),
            ChangeEvent::FolderCreated
            | ChangeEvent::FolderDeleted
            | ChangeEvent::FolderRenamed { .. } => {
                if !wanted(|e| matches!(e, NotifyEvent::MailboxName)) {
                    return Ok(());
                }
                let (folder, old, deleted) = match &change.event {
                    ChangeEvent::FolderRenamed { to } => {
                        (to.clone(), Some(change.folder.clone()), false)
                    }
                    ChangeEvent::FolderDeleted => (change.folder.clone(), None, true),
                    _ => (change.folder.clone(), None, false),
                };
                return self.push(
                    Queued::Name {
                        folder,
                        old,
                        deleted,
                    },
                    limit,
                );
            }
        };
        if !wanted(|e| e.is_message_event()) {
            return Ok(());
        }
        // One STATUS covers every message event of a mailbox: merge into a waiting entry.
        for queued in &mut self.queue {
            if let Queued::Messages {
                folder,
                new: n,
                expunge: x,
                flags: f,
            } = queued
                && *folder == change.folder
            {
                *n |= new;
                *x |= expunge;
                *f |= flags;
                return Ok(());
            }
        }
        self.push(
            Queued::Messages {
                folder: change.folder.clone(),
                new,
                expunge,
                flags,
            },
            limit,
        )
    }

    fn push(&mut self, queued: Queued, limit: usize) -> Result<(), Overflow> {
        if self.queue.len() >= limit {
            self.queue.clear();
            return Err(Overflow);
        }
        self.queue.push(queued);
        Ok(())
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Report the queued events: STATUS for message events, LIST for MailboxName, each only
    /// when the first group matching the mailbox asked for that event. `selected` is the
    /// selected mailbox, which these reports never cover.
    pub async fn deliver<S: MailSession>(
        &mut self,
        mail: &S,
        selected: Option<&str>,
        condstore: bool,
        out: &mut Responder<'_>,
    ) -> Result<(), Failure> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let queue = std::mem::take(&mut self.queue);
        let folders = mail
            .list_folders()
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?;
        let info = |name: &str| folders.iter().find(|f| f.path == name);
        for queued in queue {
            match queued {
                Queued::Messages {
                    folder,
                    new,
                    expunge,
                    flags,
                } => {
                    if selected == Some(folder.as_str()) {
                        continue;
                    }
                    // A mailbox deleted meanwhile has nothing left to report.
                    let Some(info) = info(&folder) else { continue };
                    let Some(group) = self.group_for(&folder, Some(info)) else {
                        continue;
                    };
                    let asked = |pred: fn(&NotifyEvent) -> bool| group.events.iter().any(pred);
                    if (new && asked(|e| matches!(e, NotifyEvent::MessageNew(_))))
                        || (expunge && asked(|e| matches!(e, NotifyEvent::MessageExpunge)))
                        || (flags && asked(|e| matches!(e, NotifyEvent::FlagChange)))
                    {
                        out.push(&status_response(info, condstore));
                    }
                }
                Queued::Name {
                    folder,
                    old,
                    deleted,
                } => {
                    let current = info(&folder);
                    let matched = [Some(folder.as_str()), old.as_deref()]
                        .into_iter()
                        .flatten()
                        .filter_map(|name| self.group_for(name, current))
                        .any(|g| g.events.contains(&NotifyEvent::MailboxName));
                    if !matched {
                        continue;
                    }
                    let attributes = if deleted {
                        vec!["\\NonExistent".to_string()]
                    } else {
                        Vec::new()
                    };
                    out.push(&Response::Data(Data::List {
                        attributes,
                        delimiter: Some(DELIMITER),
                        mailbox: folder,
                        child_info: Vec::new(),
                        old_name: old,
                    }));
                }
            }
        }
        Ok(())
    }

    /// `NOTIFY SET STATUS`: a STATUS for every existing mailbox, other than the selected one,
    /// whose group asks for message events.
    pub async fn initial_status<S: MailSession>(
        &self,
        mail: &S,
        selected: Option<&str>,
        condstore: bool,
        out: &mut Responder<'_>,
    ) -> Result<(), Failure> {
        let folders = mail
            .list_folders()
            .await
            .map_err(|e| Failure::store(e, Code::NonExistent))?;
        for info in &folders {
            if selected == Some(info.path.as_str()) {
                continue;
            }
            if self
                .group_for(&info.path, Some(info))
                .is_some_and(|g| g.events.iter().any(NotifyEvent::is_message_event))
            {
                out.push(&status_response(info, condstore));
            }
        }
        Ok(())
    }

    /// The first group whose filter covers `folder` (`info` tells whether it is subscribed).
    fn group_for(&self, folder: &str, info: Option<&FolderInfo>) -> Option<&NotifyGroup> {
        self.others.iter().find(|group| match &group.filter {
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed => false,
            // New mail is delivered to INBOX only.
            NotifyFilter::Inboxes => folder == "INBOX",
            NotifyFilter::Personal => true,
            NotifyFilter::Subscribed => info.is_some_and(|i| i.subscribed),
            NotifyFilter::Subtree(roots) => roots.iter().any(|root| {
                let root = root.as_str();
                folder == root
                    || folder
                        .strip_prefix(root)
                        .is_some_and(|rest| rest.starts_with(DELIMITER))
            }),
            NotifyFilter::Mailboxes(names) => names.iter().any(|n| n.as_str() == folder),
        })
    }
}

/// The unsolicited `* OK [NOTIFICATIONOVERFLOW]` (RFC 5465 section 5.8).
pub(crate) fn overflow_response() -> Response {
    Response::Status(StatusResponse::untagged(
        StatusKind::Ok,
        Some(Code::NotificationOverflow),
        "too many events, NOTIFY is now off",
    ))
}

/// The STATUS a message event in another mailbox produces: enough to tell new mail and
/// removals apart (RFC 5465 section 5.2-5.4), HIGHESTMODSEQ for CONDSTORE clients.
fn status_response(info: &FolderInfo, condstore: bool) -> Response {
    let mut items = vec![
        (
            StatusItem::Messages,
            StatusValue::Number(u64::from(info.messages)),
        ),
        (
            StatusItem::UidNext,
            StatusValue::Number(u64::from(info.uidnext)),
        ),
        (
            StatusItem::UidValidity,
            StatusValue::Number(u64::from(info.uidvalidity)),
        ),
        (
            StatusItem::Unseen,
            StatusValue::Number(u64::from(info.unseen)),
        ),
    ];
    if condstore {
        items.push((
            StatusItem::HighestModSeq,
            StatusValue::Number(info.highest_modseq),
        ));
    }
    Response::Data(Data::Status {
        mailbox: info.path.clone(),
        items,
    })
}

/// Notification FETCHes must not set `\Seen`: BODY and BINARY become their PEEK forms; RFC822
/// and RFC822.TEXT, which have none, are refused.
fn peek_only(attributes: Vec<FetchAttribute>) -> Result<Vec<FetchAttribute>, Failure> {
    attributes
        .into_iter()
        .map(|attribute| match attribute {
            FetchAttribute::BodySection {
                section, partial, ..
            } => Ok(FetchAttribute::BodySection {
                peek: true,
                section,
                partial,
            }),
            FetchAttribute::Binary { part, partial, .. } => Ok(FetchAttribute::Binary {
                peek: true,
                part,
                partial,
            }),
            FetchAttribute::Rfc822 | FetchAttribute::Rfc822Text => Err(Failure::bad(
                "RFC822 and RFC822.TEXT would set \\Seen; use BODY.PEEK",
            )),
            other => Ok(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Mailbox;

    fn group(filter: NotifyFilter, events: Vec<NotifyEvent>) -> NotifyGroup {
        NotifyGroup { filter, events }
    }

    fn change(folder: &str, event: ChangeEvent) -> Change {
        Change {
            origin: 1,
            folder: folder.into(),
            modseq: 0,
            event,
        }
    }

    fn message_events() -> Vec<NotifyEvent> {
        vec![
            NotifyEvent::MessageNew(Vec::new()),
            NotifyEvent::MessageExpunge,
        ]
    }

    #[test]
    fn event_rules_give_bad_and_badevent() {
        let bad = |groups| matches!(Notify::new(groups), Err(Failure::Bad(_)));
        assert!(bad(vec![group(
            NotifyFilter::Personal,
            vec![NotifyEvent::MessageNew(Vec::new())]
        )]));
        assert!(bad(vec![group(
            NotifyFilter::Personal,
            vec![NotifyEvent::FlagChange]
        )]));
        assert!(bad(vec![group(
            NotifyFilter::Selected,
            vec![NotifyEvent::MailboxName]
        )]));
        assert!(bad(vec![group(
            NotifyFilter::Inboxes,
            vec![
                NotifyEvent::MessageNew(vec![FetchAttribute::Uid]),
                NotifyEvent::MessageExpunge
            ]
        )]));
        match Notify::new(vec![group(
            NotifyFilter::Personal,
            vec![NotifyEvent::SubscriptionChange],
        )]) {
            Err(Failure::No(Some(Code::BadEvent(events)), _)) => {
                assert_eq!(events, SUPPORTED_EVENTS.map(String::from).to_vec())
            }
            other => panic!("{other:?}"),
        }
        let ok = Notify::new(vec![group(
            NotifyFilter::SelectedDelayed,
            vec![
                NotifyEvent::MessageNew(vec![FetchAttribute::BodySection {
                    peek: false,
                    section: Default::default(),
                    partial: None,
                }]),
                NotifyEvent::MessageExpunge,
            ],
        )])
        .unwrap();
        let selected = ok.selected.unwrap();
        assert!(selected.delayed);
        assert!(matches!(
            selected.new_message_fetch[0],
            FetchAttribute::BodySection { peek: true, .. }
        ));
        assert!(!ok.others.iter().any(|g| !g.events.is_empty()));
    }

    #[test]
    fn first_matching_group_wins_and_queue_is_bounded() {
        let mut notify = Notify::new(vec![
            group(
                NotifyFilter::Mailboxes(vec![Mailbox::new("Quiet".into())]),
                Vec::new(),
            ),
            group(
                NotifyFilter::Subtree(vec![Mailbox::new("Lists".into())]),
                message_events(),
            ),
            group(NotifyFilter::Personal, vec![NotifyEvent::MailboxName]),
        ])
        .unwrap();
        assert!(notify.group_for("Quiet", None).unwrap().events.is_empty());
        assert!(notify.group_for("Lists/rust", None).unwrap().events.len() == 2);
        assert!(notify.group_for("Listsx", None).unwrap().events.len() == 1);
        let subscribed = Notify::new(vec![
            group(NotifyFilter::Subscribed, message_events()),
            group(NotifyFilter::Inboxes, vec![NotifyEvent::MailboxName]),
        ])
        .unwrap();
        let info = |path: &str, subscribed: bool| FolderInfo {
            path: path.into(),
            special_use: None,
            uidvalidity: 1,
            uidnext: 1,
            highest_modseq: 1,
            subscribed,
            messages: 0,
            unseen: 0,
            size: 0,
        };
        let on = info("News", true);
        let off = info("News", false);
        assert_eq!(
            subscribed
                .group_for("News", Some(&on))
                .unwrap()
                .events
                .len(),
            2
        );
        assert!(subscribed.group_for("News", Some(&off)).is_none());
        assert_eq!(
            subscribed
                .group_for("INBOX", Some(&info("INBOX", false)))
                .unwrap()
                .events,
            vec![NotifyEvent::MailboxName]
        );
        notify
            .queue(&change("Lists/a", ChangeEvent::MessagesAdded), 2)
            .unwrap();
        // Merged into the waiting entry for the same mailbox.
        notify
            .queue(&change("Lists/a", ChangeEvent::MessagesExpunged), 2)
            .unwrap();
        notify
            .queue(&change("Lists/b", ChangeEvent::MessagesAdded), 2)
            .unwrap();
        assert_eq!(notify.queue.len(), 2);
        assert_eq!(
            notify.queue(&change("Lists/c", ChangeEvent::MessagesAdded), 2),
            Err(Overflow)
        );
        assert!(!notify.has_queued());
    }
}

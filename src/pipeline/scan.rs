//! One pass over the configured mailbox folder: what is new since the last run (by UID,
//! within `since`, from `senders`), each message sized, fetched, imported and marked in
//! turn, the position recorded with what each message taught.
//!
//! The position never passes a mail whose `after_import` is not applied: a recorded
//! certificate records its mail's mark as pending in the same transaction
//! (`pending_marks`), and the row goes once the mark is applied. A mark the server refuses
//! stays pending with its error and the pass goes on with the other mails; every pass
//! retries what is pending before it looks for new mail. A `move:` folder that does not
//! exist is created (before the first mark of a session, or on `NO [TRYCREATE]`).
//!
//! A run with nothing new and nothing pending costs one SELECT and one UID SEARCH,
//! whatever the size of the mailbox.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::result::{ImportResult, Outcome};
use super::{Checks, Destination, import_message};
use crate::mailbox::{
    AfterImport, Fetched, FolderCheck, FolderStatus, MailboxError, MailboxSettings, Session,
};
use crate::store::{MailboxPosition, Store};

/// What one pass over the mailbox folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Results for every message that held certificate material (ordinary mail is left out).
    pub results: Vec<ImportResult>,
    pub new_messages: usize,
    pub too_large: usize,
    pub uidvalidity_changed: bool,
    /// Mails whose `after_import` failed in this pass, new or retried: each stays pending
    /// and the next pass tries again.
    pub mark_failures: Vec<MarkFailure>,
}

/// A mail whose `after_import` the server refused: recorded, its mark pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkFailure {
    /// The mail's IMAP URL.
    pub source: String,
    /// What failed and why, as logged and recorded.
    pub detail: String,
}

/// Adds `new` to `failures`, one per mail: a wait that scans again and fails again on the
/// same mail keeps the latest failure.
pub fn note_mark_failures(failures: &mut Vec<MarkFailure>, new: Vec<MarkFailure>) {
    for failure in new {
        failures.retain(|f| f.source != failure.source);
        failures.push(failure);
    }
}

/// The folder to scan and whose it is.
pub struct Folder<'a> {
    pub settings: &'a MailboxSettings,
    /// "user@host:port", the `mailbox_state` key.
    pub account: &'a str,
}

impl Folder<'_> {
    fn position(&self, uidvalidity: u32, uid: u32) -> MailboxPosition {
        MailboxPosition {
            account: self.account.to_string(),
            folder: self.settings.folder.to_string(),
            uidvalidity,
            uid,
            mark: None,
        }
    }

    /// The RFC 5092 IMAP URL of a mail: a reviewer can find the mail again from the record.
    fn source(&self, position: &MailboxPosition) -> String {
        format!(
            "imap://{}/{};UIDVALIDITY={};UID={}",
            self.account, self.settings.folder, position.uidvalidity, position.uid
        )
    }
}

pub fn scan_mailbox(
    session: &mut Session,
    folder: &Folder<'_>,
    checks: &Checks,
    destination: &mut Destination<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<Scan> {
    let name = &folder.settings.folder;
    let status = session
        .select(name)
        .with_context(|| format!("opening folder {name} on {}", session.host()))?;
    let mut scan = Scan::default();
    let after_uid = last_uid(folder, &status, destination, &mut scan)?;
    if let Some(store) = destination
        .store
        .as_deref()
        .filter(|_| !destination.dry_run)
    {
        retry_pending_marks(session, folder, &status, store, now, &mut scan)?;
    }
    let since = (now - folder.settings.since).date();
    let uids = session
        .search_new(after_uid, Some(since), &folder.settings.senders)
        .with_context(|| format!("searching {name} for new mail"))?;
    scan.new_messages = uids.len();
    if uids.is_empty() {
        return Ok(scan);
    }
    let sizes: BTreeMap<u32, u32> = session.sizes(&uids)?.into_iter().collect();
    // What a recorded certificate leaves pending until its mail is marked.
    let mark = Some(&folder.settings.after_import)
        .filter(|action| **action != AfterImport::Nothing && !destination.dry_run)
        .map(AfterImport::to_string);
    for uid in uids {
        let position = MailboxPosition {
            mark: mark.clone(),
            ..folder.position(status.uidvalidity, uid)
        };
        let size = sizes.get(&uid).copied();
        let results = import_uid(
            session,
            folder,
            &position,
            size,
            checks,
            destination,
            now,
            &mut scan,
        )?;
        scan.too_large += usize::from(results.is_none());
        scan.results.extend(
            (results.into_iter().flatten()).filter(|r| r.outcome != Outcome::NoCertificate),
        );
    }
    Ok(scan)
}

/// The UID after which mail is new: the recorded one, or 0 when nothing is recorded or
/// the UIDs we remember mean nothing now (a server migration or restore changed
/// UIDVALIDITY): then the whole window is looked at again, and certificates already
/// recorded are known by fingerprint.
fn last_uid(
    folder: &Folder<'_>,
    status: &FolderStatus,
    destination: &Destination<'_>,
    scan: &mut Scan,
) -> anyhow::Result<u32> {
    let state = match destination.store.as_deref() {
        Some(store) => store.mailbox_state(folder.account, folder.settings.folder.as_str())?,
        None => None,
    };
    Ok(match state {
        Some(state) if state.uidvalidity == status.uidvalidity => state.last_uid,
        Some(state) => {
            log::warn!(
                "{}/{}: UIDVALIDITY changed from {} to {}; rescanning mail of the last {}",
                folder.account,
                folder.settings.folder,
                state.uidvalidity,
                status.uidvalidity,
                humantime::format_duration(folder.settings.since)
            );
            scan.uidvalidity_changed = true;
            0
        }
        None => 0,
    })
}

/// Applies the marks left pending by earlier runs, with today's `after_import` (the one
/// recorded with each says what it was then). Marks of another UIDVALIDITY are dropped:
/// their UIDs mean nothing now, and the rescan marks the mail again.
fn retry_pending_marks(
    session: &mut Session,
    folder: &Folder<'_>,
    status: &FolderStatus,
    store: &Store,
    now: OffsetDateTime,
    scan: &mut Scan,
) -> anyhow::Result<()> {
    let pending = store.pending_marks(folder.account, folder.settings.folder.as_str())?;
    for mark in pending {
        let position = folder.position(mark.uidvalidity, mark.uid);
        let source = folder.source(&position);
        let dropped = if mark.uidvalidity != status.uidvalidity {
            Some(format!(
                "UIDVALIDITY is now {}; the rescan marks the mail again if it is there",
                status.uidvalidity
            ))
        } else if folder.settings.after_import == AfterImport::Nothing {
            Some("after_import is now \"none\"".to_string())
        } else {
            None
        };
        if let Some(why) = dropped {
            let detail = format!("{source}: after_import {} not applied: {why}", mark.action);
            log::info!("{detail}");
            store.clear_pending_mark(&position, Some(("mark_dropped", &detail)), now)?;
            continue;
        }
        log::info!(
            "{source}: applying after_import {} left pending{}",
            folder.settings.after_import,
            (mark.last_error.as_deref()).map_or(String::new(), |e| format!(" ({e})"))
        );
        apply_mark(session, folder, &position, &source, store, true, now, scan)?;
    }
    Ok(())
}

/// Fetches, imports and marks one message; `None` when it is over the size limit and was
/// not read (or not past the limit).
#[allow(clippy::too_many_arguments)]
fn import_uid(
    session: &mut Session,
    folder: &Folder<'_>,
    position: &MailboxPosition,
    size: Option<u32>,
    checks: &Checks,
    destination: &mut Destination<'_>,
    now: OffsetDateTime,
    scan: &mut Scan,
) -> anyhow::Result<Option<Vec<ImportResult>>> {
    let settings = folder.settings;
    let source = folder.source(position);
    let store = destination
        .store
        .as_deref()
        .filter(|_| !destination.dry_run);
    let Some(said) = announced_size(&source, size, settings, store, position, now)? else {
        return Ok(None);
    };
    let bytes = match session.fetch(position.uid) {
        Ok(Fetched::Message(bytes)) => bytes,
        Ok(Fetched::TooLarge) => {
            too_large(
                store,
                position,
                now,
                format!(
                    "{source}: longer than max_message_size ({} bytes), although the server said \
                 {said}; not read past the limit",
                    settings.max_message_size
                ),
            )?;
            return Ok(None);
        }
        Ok(Fetched::Gone) => {
            // Expunged between SEARCH and FETCH: nothing to learn, move on.
            if let Some(store) = store {
                store.advance_mailbox(position, now)?;
            }
            return Ok(Some(Vec::new()));
        }
        Err(error) if error.is_too_large() => {
            // The connection is given up; the next run goes on after this mail.
            too_large(store, position, now, format!("{source}: {error}"))?;
            return Err(error).with_context(|| format!("{source}: fetching"));
        }
        Err(error) => return Err(error.into()),
    };
    let results = import_message(&bytes, &source, checks, destination, Some(position), now)?;
    let store = destination
        .store
        .as_deref()
        .filter(|_| !destination.dry_run);
    if let Some(store) = store.filter(|_| position.mark.is_some())
        && results.iter().any(|r| r.outcome.is_recorded())
    {
        apply_mark(session, folder, position, &source, store, false, now, scan)?;
    }
    Ok(Some(results))
}

/// What the server said of a mail's size, for the record; `None` when that is over
/// `max_message_size`, and the mail is recorded as too large and not fetched.
fn announced_size(
    source: &str,
    size: Option<u32>,
    settings: &MailboxSettings,
    store: Option<&Store>,
    position: &MailboxPosition,
    now: OffsetDateTime,
) -> anyhow::Result<Option<String>> {
    Ok(Some(match size {
        Some(size) if u64::from(size) > settings.max_message_size => {
            let detail = format!(
                "{source}: {size} bytes, over max_message_size ({} bytes); not fetched",
                settings.max_message_size
            );
            too_large(store, position, now, detail)?;
            return Ok(None);
        }
        Some(size) => format!("{size} bytes"),
        None => {
            // The fetch reads no more than max_message_size + 1 bytes whatever the size,
            // so the mail is still looked at; the record says the server left it out.
            let detail = format!(
                "{source}: the server gave no RFC822.SIZE; fetched no further than \
                 max_message_size"
            );
            log::warn!("{detail}");
            if let Some(store) = store {
                store.add_event(None, "mail_without_size", &detail, now)?;
            }
            "no size".to_string()
        }
    }))
}

/// Records a mail over `max_message_size`; the position moves past it.
fn too_large(
    store: Option<&Store>,
    position: &MailboxPosition,
    now: OffsetDateTime,
    detail: String,
) -> anyhow::Result<()> {
    log::warn!("{detail}");
    if let Some(store) = store {
        store.add_event_at(None, "mail_too_large", &detail, Some(position), now)?;
    }
    Ok(())
}

/// Applies `after_import` to one mail whose certificate is recorded. Done, its pending
/// row goes; refused by the server, the row keeps the error (a `mark_failed` event the
/// first time) and the pass goes on. A failed connection ends the pass: the row stays for
/// the next run.
#[allow(clippy::too_many_arguments)]
fn apply_mark(
    session: &mut Session,
    folder: &Folder<'_>,
    position: &MailboxPosition,
    source: &str,
    store: &Store,
    retry: bool,
    now: OffsetDateTime,
    scan: &mut Scan,
) -> anyhow::Result<()> {
    let action = &folder.settings.after_import;
    match mark(session, action, position.uid, store, now) {
        Ok(()) => {
            let detail = format!("{source}: after_import {action} applied, left pending before");
            store.clear_pending_mark(position, retry.then_some(("mail_marked", &detail)), now)?;
            Ok(())
        }
        Err(error) if error.downcast_ref().is_some_and(MailboxError::is_refusal) => {
            let error = format!("{error:#}");
            let detail = format!(
                "{source}: after_import {action} failed: {error}; the certificate is recorded, \
                 the mark is pending and retried by the next run"
            );
            log::warn!("{detail}");
            store.pending_mark_failed(position, &action.to_string(), &error, &detail, now)?;
            scan.mark_failures.push(MarkFailure {
                source: source.to_string(),
                detail,
            });
            Ok(())
        }
        Err(error) => Err(error.context(format!("{source}: applying after_import {action}"))),
    }
}

/// `after_import` on one UID. A `move:` folder is made sure of first (once per session),
/// and again if the server still says `NO [TRYCREATE]`: a missing folder is created.
fn mark(
    session: &mut Session,
    action: &AfterImport,
    uid: u32,
    store: &Store,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let AfterImport::Move(target) = action else {
        return Ok(session.after_import(uid, action)?);
    };
    let ensure = |session: &mut Session, forget: bool| -> anyhow::Result<()> {
        if session.ensure_folder(target, forget)? == FolderCheck::Created {
            let detail = format!(
                "after_import = \"{action}\": the folder {target} did not exist on {}; created it",
                session.host()
            );
            log::warn!("{detail}");
            store.add_event(None, "mailbox_folder_created", &detail, now)?;
        }
        Ok(())
    };
    ensure(session, false)?;
    match session.after_import(uid, action) {
        Err(MailboxError::MissingFolder { .. }) => {
            ensure(session, true)?;
            Ok(session.after_import(uid, action)?)
        }
        other => Ok(other?),
    }
}

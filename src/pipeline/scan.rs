//! One pass over the configured mailbox folder: what is new since the last run (by UID,
//! within `since`, from `senders`), each message sized, fetched, imported and marked in
//! turn, the position recorded with what each message taught. A run with nothing new
//! costs one SELECT and one UID SEARCH, whatever the size of the mailbox.

use anyhow::Context;
use time::OffsetDateTime;

use super::result::{ImportResult, Outcome};
use super::{Checks, Destination, import_message};
use crate::mailbox::{Fetched, FolderStatus, MailboxSettings, Session};
use crate::store::MailboxPosition;

/// What one pass over the mailbox folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Results for every message that held certificate material (ordinary mail is left out).
    pub results: Vec<ImportResult>,
    pub new_messages: usize,
    pub too_large: usize,
    pub uidvalidity_changed: bool,
}

/// The folder to scan and whose it is.
pub struct Folder<'a> {
    pub settings: &'a MailboxSettings,
    /// "user@host:port", the `mailbox_state` key.
    pub account: &'a str,
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
    let since = (now - folder.settings.since).date();
    let uids = session
        .search_new(after_uid, Some(since), &folder.settings.senders)
        .with_context(|| format!("searching {name} for new mail"))?;
    scan.new_messages = uids.len();
    if uids.is_empty() {
        return Ok(scan);
    }
    for (uid, size) in session.sizes(&uids)? {
        let position = MailboxPosition {
            account: folder.account.to_string(),
            folder: name.to_string(),
            uidvalidity: status.uidvalidity,
            uid,
        };
        let results = import_uid(session, folder, &position, size, checks, destination, now)?;
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

/// Fetches, imports and marks one message; `None` when it is over the size limit and was
/// left unfetched.
fn import_uid(
    session: &mut Session,
    folder: &Folder<'_>,
    position: &MailboxPosition,
    size: u32,
    checks: &Checks,
    destination: &mut Destination<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Vec<ImportResult>>> {
    let settings = folder.settings;
    // RFC 5092 IMAP URL: a reviewer can find the mail again from the record.
    let source = format!(
        "imap://{}/{};UIDVALIDITY={};UID={}",
        folder.account, settings.folder, position.uidvalidity, position.uid
    );
    let store = destination
        .store
        .as_deref()
        .filter(|_| !destination.dry_run);
    let too_large = |detail: String| -> anyhow::Result<()> {
        log::warn!("{detail}");
        if let Some(store) = store {
            store.add_event_at(None, "mail_too_large", &detail, Some(position), now)?;
        }
        Ok(())
    };
    if u64::from(size) > settings.max_message_size {
        too_large(format!(
            "{source}: {size} bytes, over max_message_size ({} bytes); not fetched",
            settings.max_message_size
        ))?;
        return Ok(None);
    }
    let bytes = match session.fetch(position.uid) {
        Ok(Fetched::Message(bytes)) => bytes,
        Ok(Fetched::TooLarge) => {
            too_large(format!(
                "{source}: longer than max_message_size ({} bytes), although the server said \
                 {size} bytes; not read past the limit",
                settings.max_message_size
            ))?;
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
            too_large(format!("{source}: {error}"))?;
            return Err(error).with_context(|| format!("{source}: fetching"));
        }
        Err(error) => return Err(error.into()),
    };
    let results = import_message(&bytes, &source, checks, destination, Some(position), now)?;
    if results.iter().any(|r| r.outcome.is_recorded()) && !destination.dry_run {
        session
            .after_import(position.uid, &settings.after_import)
            .with_context(|| format!("{source}: applying after_import"))?;
    }
    Ok(Some(results))
}

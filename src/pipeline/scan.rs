//! One pass over the configured mailbox folder: what is new since the last run (by UID,
//! within `since`, from `senders`), in batches of many UIDs per command: each mail's size
//! and structure first, then only the parts that can hold a certificate (or the whole mail
//! when its structure cannot be read), each mail imported and marked, and the position
//! committed once per batch with what the batch taught (docs/imap.md, docs/architecture.md).
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
use super::{Checks, Destination, InBatch, import_in_batch, not_fetched};
use crate::extract::parts::{self, Choice, Plan, Section};
use crate::mailbox::{
    AfterImport, Described, DescribedAhead, Fetched, FolderCheck, FolderName, FolderStatus,
    MailboxError, MailboxSettings, Session, StructureLimits,
};
use crate::store::{MailBatch, MailboxPosition, Store};

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
    /// A mail's position; `mark` is the `after_import` a recorded certificate leaves pending.
    fn position(&self, uidvalidity: u32, uid: u32, mark: Option<String>) -> MailboxPosition {
        MailboxPosition {
            account: self.account.to_string(),
            folder: self.settings.folder.to_string(),
            uidvalidity,
            uid,
            mark,
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
    // What a recorded certificate leaves pending until its mail is marked.
    let mark = Some(&folder.settings.after_import)
        .filter(|action| **action != AfterImport::Nothing && !destination.dry_run)
        .map(AfterImport::to_string);
    let limits = StructureLimits {
        max_depth: checks.limits.max_mime_depth,
        max_parts: checks.limits.max_parts,
    };
    // Past one chunk, the next chunks are described on a second connection while this one
    // imports (docs/imap.md §4); ended when the scan ends (dropped).
    let mut ahead = (uids.len() > STRUCTURES_PER_PASS).then(|| {
        let later = uids
            .chunks(STRUCTURES_PER_PASS)
            .skip(1)
            .map(<[u32]>::to_vec);
        session.describe_ahead(later.collect(), limits)
    });
    for (i, chunk) in uids.chunks(STRUCTURES_PER_PASS).enumerate() {
        let helper = ahead.as_mut().filter(|_| i > 0);
        let described = describe(session, helper, chunk, limits, name)?;
        let planned = plan(folder, status.uidvalidity, chunk, described, &mark);
        for batch in batches(&planned, folder.settings.max_message_size) {
            let mut context = Pass {
                session: &mut *session,
                folder,
                checks,
                destination: &mut *destination,
                now,
                scan: &mut scan,
            };
            context.batch(batch)?;
        }
    }
    Ok(scan)
}

/// A chunk's sizes and structures: the second connection's when it has them (described
/// while this one imported the chunk before), else asked for here.
fn describe(
    session: &mut Session,
    ahead: Option<&mut DescribedAhead>,
    chunk: &[u32],
    limits: StructureLimits,
    name: &FolderName,
) -> anyhow::Result<BTreeMap<u32, Described>> {
    match ahead.and_then(DescribedAhead::next_chunk) {
        Some(described) => Ok(described),
        None => (session.describe(chunk, limits))
            .with_context(|| format!("reading the structure of new mail in {name}")),
    }
}

/// What to fetch of each mail of a chunk, in UID order.
fn plan(
    folder: &Folder<'_>,
    uidvalidity: u32,
    chunk: &[u32],
    mut described: BTreeMap<u32, Described>,
    mark: &Option<String>,
) -> Vec<Planned> {
    (chunk.iter())
        .map(|&uid| {
            let position = folder.position(uidvalidity, uid, mark.clone());
            Planned::new(position, described.remove(&uid), folder.settings)
        })
        .collect()
}

/// UIDs whose structure is read per pass of the loop, and at most per batch. 500, not
/// 2,000: the second connection's first chunk is ready sooner (docs/imap.md §4).
const STRUCTURES_PER_PASS: usize = 500;

/// One new mail, and what to fetch of it.
struct Planned {
    position: MailboxPosition,
    size: Option<u32>,
    choice: Choice,
    /// Why the mail is fetched whole though its structure was asked for, if it was not for
    /// its shape (the server gave none, or it was refused).
    no_structure: Option<String>,
}

impl Planned {
    fn new(
        position: MailboxPosition,
        described: Option<Described>,
        settings: &MailboxSettings,
    ) -> Planned {
        // Not in the answer: expunged since the search, or a server that left it out; the
        // whole fetch finds out which.
        let Described { size, structure } = described.unwrap_or(Described {
            size: None,
            structure: Err("the server sent nothing about it".into()),
        });
        let (choice, no_structure) = match structure {
            // Without a size, what the sections may weigh is unknown: the whole fetch is
            // bounded by max_message_size + 1 bytes instead.
            Ok(_) if size.is_none() => (Choice::Whole, Some("no RFC822.SIZE".into())),
            Ok(part) => (parts::choose(&part, settings.max_message_size), None),
            Err(why) => (Choice::Whole, Some(why)),
        };
        Planned {
            position,
            size,
            choice,
            no_structure,
        }
    }

    /// What to fetch of it in its batch's commands: its chosen sections, or the whole mail
    /// when it is one part that may hold a certificate and its size is known and within
    /// the limit. `None`: read on its own ([`Pass::whole`]), or not at all.
    fn sections(&self, max_message_size: u64) -> Option<Vec<Section>> {
        let fits = self.sections_size() <= max_message_size;
        match &self.choice {
            Choice::Parts(plan) if fits => Some(plan.sections()),
            Choice::Whole if fits && self.no_structure.is_none() && self.size.is_some() => {
                Some(vec![Section::whole()])
            }
            _ => None,
        }
    }

    /// The most bytes its sections can be: all of the mail but the parts left out.
    fn sections_size(&self) -> u64 {
        match (&self.choice, self.size) {
            (Choice::Parts(_), Some(size)) => {
                u64::from(size).saturating_sub(self.choice.skipped_octets())
            }
            (Choice::Whole, Some(size)) if self.no_structure.is_none() => u64::from(size),
            _ => 0,
        }
    }
}

/// Consecutive runs of mails whose chosen sections together stay within
/// `max_message_size`: what one batch holds in memory and one FETCH may answer
/// (`ResponseLimits`). Each batch is committed once.
fn batches(planned: &[Planned], max_message_size: u64) -> Vec<&[Planned]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, mail) in planned.iter().enumerate() {
        let size = mail.sections_size();
        if i > start && bytes.saturating_add(size) > max_message_size {
            out.push(&planned[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < planned.len() {
        out.push(&planned[start..]);
    }
    out
}

/// What a pass over one batch works with.
struct Pass<'p, 'd, 's> {
    session: &'p mut Session,
    folder: &'p Folder<'s>,
    checks: &'p Checks,
    destination: &'p mut Destination<'d>,
    now: OffsetDateTime,
    scan: &'p mut Scan,
}

impl Pass<'_, '_, '_> {
    /// Fetches the chosen sections of a batch (one command per shape of mail), imports each
    /// mail in UID order, and commits what the batch taught once. What was done before an
    /// error is committed too; a run killed before the commit reads the batch again.
    fn batch(&mut self, batch: &[Planned]) -> anyhow::Result<()> {
        let mut fetched = self.fetch_sections(batch)?;
        let mut taught = MailBatch::default();
        let mut outcome = Ok(());
        for mail in batch {
            let sections = fetched.remove(&mail.position.uid);
            outcome = self.mail(mail, sections, &mut taught);
            if outcome.is_err() {
                break;
            }
        }
        super::commit(self.destination, &mut taught, self.now)?;
        outcome
    }

    /// The sections of every mail of the batch read by parts, many UIDs per command:
    /// mails of one shape (the same sections) share a command.
    ///
    /// The batch's sizes add up to at most `max_message_size`, and so do the answers of
    /// an honest server; `ResponseLimits` holds each command, not the batch's several. Once
    /// the answers pass `max_message_size`, the server sent more than its sizes said: that
    /// answer is dropped and no more shapes are asked for, and their mails are read one
    /// by one (whole, within the limit), so the batch holds at most `max_message_size`
    /// plus one command's answer however many shapes it has.
    fn fetch_sections(
        &mut self,
        batch: &[Planned],
    ) -> anyhow::Result<BTreeMap<u32, BTreeMap<Section, Vec<u8>>>> {
        let max = self.folder.settings.max_message_size;
        let mut shapes: BTreeMap<Vec<Section>, Vec<u32>> = BTreeMap::new();
        for mail in batch {
            if let Some(sections) = mail.sections(max) {
                shapes.entry(sections).or_default().push(mail.position.uid);
            }
        }
        let name = &self.folder.settings.folder;
        let (mut fetched, mut received) = (BTreeMap::new(), 0u64);
        for (sections, uids) in shapes {
            let found = (self.session.fetch_sections(&uids, &sections))
                .with_context(|| format!("fetching the parts of new mail in {name}"))?;
            let bytes: usize = (found.values().flat_map(BTreeMap::values))
                .map(Vec::len)
                .sum();
            received = received.saturating_add(bytes as u64);
            if received > max {
                log::warn!(
                    "{}/{name}: the server sent more of the parts of this batch than the \
                     sizes it gave ({received} bytes, over max_message_size, {max} bytes); \
                     reading the rest of the batch's mails one by one",
                    self.folder.account
                );
                break;
            }
            fetched.extend(found);
        }
        Ok(fetched)
    }

    /// One mail of a batch: read whole, by parts, or not at all, then imported and marked.
    fn mail(
        &mut self,
        mail: &Planned,
        sections: Option<BTreeMap<Section, Vec<u8>>>,
        taught: &mut MailBatch,
    ) -> anyhow::Result<()> {
        let position = &mail.position;
        let source = self.folder.source(position);
        let results = match &mail.choice {
            Choice::Nothing { skipped } => {
                let mut result = ImportResult::new(&source, Outcome::NoCertificate, None);
                result.problems.push(not_fetched(skipped));
                let results = vec![result];
                super::finish(&results, self.destination, Some(position), taught);
                Some(results)
            }
            Choice::Parts(plan) => self.by_parts(mail, plan, sections, taught)?,
            Choice::Whole => {
                let fetched = sections.and_then(|mut s| s.remove(&Section::whole()));
                self.whole(mail, fetched, taught)?
            }
        };
        self.scan.too_large += usize::from(results.is_none());
        let results = results.unwrap_or_default();
        let store = (self.destination.store.as_deref()).filter(|_| !self.destination.dry_run);
        if let Some(store) = store.filter(|_| position.mark.is_some())
            && results.iter().any(|r| r.outcome.is_recorded())
        {
            let (session, folder, now) = (&mut *self.session, self.folder, self.now);
            apply_mark(
                session, folder, position, &source, store, false, now, self.scan,
            )?;
        }
        self.scan
            .results
            .extend((results.into_iter()).filter(|r| r.outcome != Outcome::NoCertificate));
        Ok(())
    }

    /// A mail read by its parts: the message rebuilt from them, imported. `None` when it
    /// is over the limit even without the parts left out. A mail whose sections did not
    /// all come is read whole.
    fn by_parts(
        &mut self,
        mail: &Planned,
        plan: &Plan,
        sections: Option<BTreeMap<Section, Vec<u8>>>,
        taught: &mut MailBatch,
    ) -> anyhow::Result<Option<Vec<ImportResult>>> {
        let max = self.folder.settings.max_message_size;
        let source = self.folder.source(&mail.position);
        if mail.sections_size() > max {
            let detail = format!(
                "{source}: {} bytes without the parts left on the server, over \
                 max_message_size ({max} bytes); not fetched",
                mail.sections_size()
            );
            too_large(taught, &mail.position, detail);
            return Ok(None);
        }
        let rebuilt = sections.and_then(|sections| parts::rebuild(plan, &sections));
        let Some(rebuilt) = rebuilt else {
            log::info!("{source}: not every part came; reading the mail whole");
            return self.whole(mail, None, taught);
        };
        let at = InBatch {
            position: Some(&mail.position),
            left_out: &plan.skipped,
            batch: taught,
        };
        let results = import_in_batch(
            &rebuilt,
            &source,
            self.checks,
            self.destination,
            at,
            self.now,
        )?;
        Ok(Some(results))
    }

    /// A mail read whole: fetched with its batch (`fetched`), or on its own as before
    /// structures were read: sized, fetched within the limit. `None` when it is over the
    /// size limit and was not read (or not past the limit).
    fn whole(
        &mut self,
        mail: &Planned,
        fetched: Option<Vec<u8>>,
        taught: &mut MailBatch,
    ) -> anyhow::Result<Option<Vec<ImportResult>>> {
        let settings = self.folder.settings;
        let position = &mail.position;
        let source = self.folder.source(position);
        if let Some(why) = &mail.no_structure {
            log::debug!("{source}: read whole: {why}");
        }
        let Some(said) = announced_size(&source, mail.size, settings, taught, position) else {
            return Ok(None);
        };
        let answer = match fetched {
            Some(bytes) if bytes.len() as u64 > settings.max_message_size => Ok(Fetched::TooLarge),
            Some(bytes) => Ok(Fetched::Message(bytes)),
            None => self.session.fetch(position.uid),
        };
        let bytes = match answer {
            Ok(Fetched::Message(bytes)) => bytes,
            Ok(Fetched::TooLarge) => {
                let detail = format!(
                    "{source}: longer than max_message_size ({} bytes), although the server \
                     said {said}; not read past the limit",
                    settings.max_message_size
                );
                too_large(taught, position, detail);
                return Ok(None);
            }
            Ok(Fetched::Gone) => {
                // Expunged between SEARCH and FETCH: nothing to learn, move on.
                taught.advance(position);
                return Ok(Some(Vec::new()));
            }
            Err(error) if error.is_too_large() => {
                // The connection is given up; the next run goes on after this mail.
                too_large(taught, position, format!("{source}: {error}"));
                return Err(error).with_context(|| format!("{source}: fetching"));
            }
            Err(error) => return Err(error.into()),
        };
        let at = InBatch {
            position: Some(position),
            left_out: &[],
            batch: taught,
        };
        let results =
            import_in_batch(&bytes, &source, self.checks, self.destination, at, self.now)?;
        Ok(Some(results))
    }
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
        let position = folder.position(mark.uidvalidity, mark.uid, None);
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

/// What the server said of a mail's size, for the record; `None` when that is over
/// `max_message_size`, and the mail is recorded as too large and not fetched.
fn announced_size(
    source: &str,
    size: Option<u32>,
    settings: &MailboxSettings,
    taught: &mut MailBatch,
    position: &MailboxPosition,
) -> Option<String> {
    Some(match size {
        Some(size) if u64::from(size) > settings.max_message_size => {
            let detail = format!(
                "{source}: {size} bytes, over max_message_size ({} bytes); not fetched",
                settings.max_message_size
            );
            too_large(taught, position, detail);
            return None;
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
            taught.event(None, "mail_without_size", &detail, None);
            "no size".to_string()
        }
    })
}

/// Records a mail over `max_message_size`; the position moves past it.
fn too_large(taught: &mut MailBatch, position: &MailboxPosition, detail: String) {
    log::warn!("{detail}");
    taught.event(None, "mail_too_large", &detail, Some(position));
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

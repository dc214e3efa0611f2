//! `fulfill poll [--wait 10m] [--dry-run]`: import the fulfillment mails that arrived since
//! the last run, and optionally wait for one.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::import_report::ImportReport;
use super::{
    Context, IntoService, Report, deploy_hook, import_checks, load_known_keys, lock_for_writing,
    open_store, replace_allowance, start_watchdog, write_line,
};
use crate::exit::{Exit, UsageError};
use crate::mailbox::{IDLE_REFRESH, MailboxSettings, Session};
use crate::pipeline::{
    self, Checks, Destination, Folder, ImportResult, MarkFailure, keys_for_orders,
};
use crate::portal::Portal;
use crate::progress;

#[derive(Debug, Args)]
pub struct PollArgs {
    /// After importing what is there, wait this long for a matching mail (e.g. 10m);
    /// exit 3 if none came
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub wait: Option<std::time::Duration>,

    /// Read everything, write nothing: no database change, no mailbox flag, no upload
    #[arg(long)]
    pub dry_run: bool,
}

impl PollArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let _lock = lock_for_writing(settings, self.dry_run)?;
        // Before the mailbox settings: they run password_cmd or oauth2_token_cmd.
        start_watchdog(
            settings.run_timeout() + self.wait.unwrap_or_default() + replace_allowance(settings),
            "[mailbox] run_timeout plus --wait (plus [portal] replace_timeout)",
        );
        let mailbox = settings.mailbox()?.ok_or_else(|| {
            UsageError("poll needs a mailbox: set [mailbox] host, username and password_cmd in the config file".into())
        })?;
        let portal = settings.portal()?.map(Portal::new).transpose()?;
        let checks = import_checks(settings, None, known_keys(context, portal.as_ref())?)?;
        let mut store = open_store(settings, self.dry_run)?;
        let mut destination = Destination::new(store.as_mut(), portal.as_ref(), self.dry_run);
        let hook = deploy_hook(settings, None).filter(|_| !self.dry_run);
        destination.deploy = hook.is_some();
        let mut session = Session::connect(&mailbox).with_context(|| {
            format!(
                "connecting to the mailbox {}:{}",
                mailbox.host, mailbox.port
            )
        })?;
        let mut report = PollReport::new(&mailbox, self.wait, context.now);
        self.scan_until_found(
            &mut session,
            &mailbox,
            &checks,
            &mut destination,
            &mut report,
        )?;
        report.bytes_read = session.traffic().read.load(Ordering::Relaxed);
        report.bytes_written = session.traffic().written.load(Ordering::Relaxed);
        session.logout();
        log::info!(
            "{}/{}: {} new messages, {} bytes read, {} bytes written",
            mailbox.account(),
            mailbox.folder,
            report.new_messages,
            report.bytes_read,
            report.bytes_written
        );
        let store = destination.store.as_deref();
        let into_service = IntoService::run(
            settings,
            hook.as_ref(),
            portal.as_ref(),
            store,
            self.dry_run,
            context.now,
        )?;
        (report.results.iter_mut()).for_each(|r| into_service.attach(r));
        report.into_service = into_service;
        context.output.print(&report)?;
        Ok(report.into_service.exit(report.exit()))
    }

    /// Scans the folder; with `--wait`, goes on waiting for a change and scanning again
    /// until a new certificate comes in or the wait is over.
    fn scan_until_found(
        &self,
        session: &mut Session,
        mailbox: &MailboxSettings,
        checks: &Checks,
        destination: &mut Destination<'_>,
        report: &mut PollReport,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let deadline = self.wait.map(|wait| started + wait);
        let account = mailbox.account();
        let folder = Folder {
            settings: mailbox,
            account: &account,
        };
        loop {
            // The clock moves while we wait: validity and timestamps use each pass's time.
            report.now = report.started_at + started.elapsed();
            let scan = pipeline::scan_mailbox(session, &folder, checks, destination, report.now)?;
            report.new_messages += scan.new_messages;
            report.too_large += scan.too_large;
            report.uidvalidity_changed |= scan.uidvalidity_changed;
            pipeline::note_mark_failures(&mut report.mark_failures, scan.mark_failures);
            // A certificate recorded before (found again after a UIDVALIDITY change) ends
            // no wait.
            let found_new = scan.results.iter().any(|r| r.outcome.is_new());
            report.results.extend(scan.results);
            let Some(deadline) = deadline else { break };
            if found_new {
                break;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                report.timed_out = true;
                break;
            }
            let _status = progress::waiting(
                "waiting for new mail",
                &progress::how(session.has_idle(), mailbox.poll_interval),
                started,
                deadline - started,
            );
            // Re-issue IDLE well before servers drop it; without IDLE, NOOP every
            // poll_interval.
            session
                .wait_for_change(
                    remaining.min(IDLE_REFRESH),
                    mailbox.poll_interval.min(remaining),
                )
                .context("waiting for new mail")?;
        }
        Ok(())
    }
}

/// The portal orders' CSRs tie mails to orders, so they come first; the keys on disk
/// match too.
fn known_keys(
    context: &Context,
    portal: Option<&Portal>,
) -> anyhow::Result<Vec<crate::validate::KnownKey>> {
    let local_keys = load_known_keys(&context.settings, &[])?;
    let orders = match portal {
        Some(portal) => {
            let account = portal.account_id().context("finding the portal account")?;
            portal
                .ssl_orders(account)
                .context("listing the SSL orders")?
        }
        None => Vec::new(),
    };
    Ok(keys_for_orders(&orders, local_keys))
}

#[derive(Serialize)]
struct PollReport {
    results: Vec<ImportResult>,
    new_messages: usize,
    too_large: usize,
    uidvalidity_changed: bool,
    /// Mails whose `after_import` failed: recorded, the mark pending for the next run.
    mark_failures: Vec<MarkFailure>,
    timed_out: bool,
    bytes_read: u64,
    bytes_written: u64,
    /// What was put into service, for this run's certificates and any left from before:
    /// `deployments`, `secrets` and `replacements` in `--json`.
    #[serde(flatten)]
    into_service: IntoService,
    #[serde(skip)]
    folder: String,
    #[serde(skip)]
    wait: Option<Duration>,
    #[serde(skip)]
    started_at: OffsetDateTime,
    /// The time of the last pass.
    #[serde(skip)]
    now: OffsetDateTime,
}

impl PollReport {
    fn new(mailbox: &MailboxSettings, wait: Option<Duration>, now: OffsetDateTime) -> PollReport {
        PollReport {
            results: Vec::new(),
            new_messages: 0,
            too_large: 0,
            uidvalidity_changed: false,
            mark_failures: Vec::new(),
            timed_out: false,
            bytes_read: 0,
            bytes_written: 0,
            into_service: IntoService::default(),
            folder: mailbox.folder.to_string(),
            wait,
            started_at: now,
            now,
        }
    }

    /// 3 when the wait ended without a mail; 0 when anything was imported or nothing was
    /// there; else the worst of what the mails held. A mark that failed makes it 1 (after
    /// the rest of the mail was read): the mail is recorded, but someone should look.
    fn exit(&self) -> Exit {
        let mails = if self.timed_out {
            Exit::TimedOut
        } else if self.results.is_empty() || self.results.iter().any(|r| r.outcome.is_accepted()) {
            Exit::Done
        } else {
            (self.results.iter()).fold(Exit::Done, |exit, r| exit.worst(r.outcome.exit()))
        };
        if self.mark_failures.is_empty() {
            mails
        } else {
            mails.worst(Exit::Failure)
        }
    }
}

impl Report for PollReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.results.is_empty() {
            ImportReport {
                results: &self.results,
                into_service: &self.into_service,
                now: self.now,
            }
            .write_text(out)?;
        } else {
            self.into_service.write_text(out, |_| false)?;
        }
        let imported = (self.results.iter())
            .filter(|r| r.outcome == crate::pipeline::Outcome::Imported)
            .count();
        let timed_out = match self.wait.filter(|_| self.timed_out) {
            Some(wait) => format!(
                "; no matching mail within {}",
                humantime::format_duration(wait)
            ),
            None => String::new(),
        };
        for failure in &self.mark_failures {
            write_line(out, &failure.detail)?;
        }
        let pending = match self.mark_failures.len() {
            0 => String::new(),
            n => format!("; {n} mark{} failed, pending", plural(n)),
        };
        writeln!(
            out,
            "{}: {} new message{}, {imported} certificate{} imported{timed_out}{pending}",
            self.folder,
            self.new_messages,
            plural(self.new_messages),
            plural(imported),
        )
    }

    fn is_routine(&self) -> bool {
        self.results.is_empty()
            && !self.timed_out
            && self.into_service.is_empty()
            && self.mark_failures.is_empty()
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

//! `fulfill poll [--wait 10m] [--dry-run]`: import the fulfillment mails that arrived since
//! the last run, and optionally wait for one.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::import::print_report;
use super::{Exit, UsageError, import_checks, load_known_keys, open_store, print_json};
use crate::cli::PollArgs;
use crate::config::Settings;
use crate::mailbox::{IDLE_REFRESH, Session};
use crate::pipeline::{self, Destination, ImportResult, Outcome, Upload, order_csr_keys};
use crate::portal::Portal;

#[derive(Serialize)]
struct PollReport<'a> {
    results: &'a [ImportResult],
    new_messages: usize,
    too_large: usize,
    uidvalidity_changed: bool,
    timed_out: bool,
    bytes_read: u64,
    bytes_written: u64,
}

pub fn run(
    args: &PollArgs,
    settings: &Settings,
    json: bool,
    quiet: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Exit> {
    let config = settings.mailbox()?.ok_or_else(|| {
        UsageError("poll needs a mailbox: set [mailbox] host, username and password_cmd in the config file".into())
    })?;
    // Never hang a cron slot: whatever blocks, the run ends here.
    let limit = config.run_timeout + args.wait.unwrap_or_default();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "fulfill: error: the run took longer than {} ([mailbox] run_timeout plus --wait) and was stopped",
            humantime::format_duration(limit)
        );
        std::process::exit(Exit::Failure as i32);
    });

    let local_keys = load_known_keys(settings, &[])?;
    let portal = settings.portal()?.map(Portal::new).transpose()?;
    // The portal orders' CSRs tie mails to orders; they come first so that an import is
    // recorded for its order. The keys on disk match too.
    let mut known_keys = Vec::new();
    if let Some(portal) = &portal {
        let account = portal.account_id().context("finding the portal account")?;
        for order in portal
            .ssl_orders(account)
            .context("listing the SSL orders")?
        {
            known_keys.extend(order_csr_keys(&order, &local_keys));
        }
    }
    known_keys.extend(local_keys);
    let checks = import_checks(settings, None, known_keys)?;
    let mut store = open_store(settings, args.dry_run)?;
    let mut destination = Destination {
        store: store.as_mut(),
        upload: Upload {
            portal: portal.as_ref(),
            order: None,
            dry_run: args.dry_run,
        },
        order_id: None,
        dry_run: args.dry_run,
    };

    let mailbox = &config.session;
    let account = format!("{}@{}:{}", mailbox.username, mailbox.host, mailbox.port);
    let mut session = Session::connect(mailbox).with_context(|| {
        format!(
            "connecting to the mailbox {}:{}",
            mailbox.host, mailbox.port
        )
    })?;
    let started = Instant::now();
    let deadline = args.wait.map(|wait| started + wait);
    let mut report = PollReport {
        results: &[],
        new_messages: 0,
        too_large: 0,
        uidvalidity_changed: false,
        timed_out: false,
        bytes_read: 0,
        bytes_written: 0,
    };
    let mut results = Vec::new();
    loop {
        // The clock moves while we wait: validity and timestamps use the time of each pass.
        let pass_time = now + started.elapsed();
        let scan = pipeline::scan_mailbox(
            &mut session,
            &config,
            &account,
            &checks,
            &mut destination,
            pass_time,
        )?;
        report.new_messages += scan.new_messages;
        report.too_large += scan.too_large;
        report.uidvalidity_changed |= scan.uidvalidity_changed;
        // A certificate recorded before (found again after a UIDVALIDITY change) ends no wait.
        let imported = scan
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Imported | Outcome::WouldImport));
        results.extend(scan.results);
        let Some(deadline) = deadline else { break };
        if imported {
            break;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            report.timed_out = true;
            break;
        }
        // Re-issue IDLE well before servers drop it; without IDLE, NOOP every poll_interval.
        session
            .wait_for_change(
                remaining.min(IDLE_REFRESH),
                config.poll_interval.min(remaining),
            )
            .context("waiting for new mail")?;
    }
    report.bytes_read = session
        .traffic()
        .read
        .load(std::sync::atomic::Ordering::Relaxed);
    report.bytes_written = session
        .traffic()
        .written
        .load(std::sync::atomic::Ordering::Relaxed);
    session.logout();
    log::info!(
        "{account}/{}: {} new messages, {} bytes read, {} bytes written",
        mailbox.folder,
        report.new_messages,
        report.bytes_read,
        report.bytes_written
    );

    let exit = if report.timed_out {
        Exit::TimedOut
    } else if results.iter().any(|r| is_import(r.outcome)) || results.is_empty() {
        Exit::Done
    } else {
        results
            .iter()
            .fold(Exit::Done, |exit, r| exit.worst(r.outcome.exit()))
    };
    if json {
        report.results = &results;
        print_json(&report)?;
    } else if !(quiet && results.is_empty() && !report.timed_out) {
        if !results.is_empty() {
            print_report(&results, now + started.elapsed())?;
        }
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "{}: {} new message{}, {} certificate{} imported{}",
            mailbox.folder,
            report.new_messages,
            if report.new_messages == 1 { "" } else { "s" },
            results
                .iter()
                .filter(|r| r.outcome == Outcome::Imported)
                .count(),
            if results
                .iter()
                .filter(|r| r.outcome == Outcome::Imported)
                .count()
                == 1
            {
                ""
            } else {
                "s"
            },
            if report.timed_out {
                format!(
                    "; no matching mail within {}",
                    humantime::format_duration(args.wait.unwrap_or(Duration::ZERO))
                )
            } else {
                String::new()
            }
        )?;
    }
    Ok(exit)
}

fn is_import(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport
    )
}

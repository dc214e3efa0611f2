//! `fulfill import FILE.eml...|-`: extract, validate and record the certificates in saved
//! fulfillment emails (or in a certificate file downloaded from a link-only mail).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context;
use time::OffsetDateTime;

use super::{Exit, Table, days_left, import_checks, load_known_keys, open_store, print_json};
use crate::cli::ImportArgs;
use crate::config::Settings;
use crate::pipeline::{self, Destination, ImportResult, Outcome, Upload, order_csr_keys};
use crate::portal::Portal;

pub fn run(
    args: &ImportArgs,
    settings: &Settings,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Exit> {
    let mut known_keys = load_known_keys(settings, &args.key)?;
    let portal = if args.no_upload {
        None
    } else {
        match settings.portal()? {
            Some(portal) => Some(Portal::new(portal)?),
            None => {
                log::warn!(
                    "no portal credentials ([portal] username and api_key_cmd, or SL_USERNAME and SL_API_KEY): \
                     certificates are recorded locally, not uploaded; --no-upload says that is intended"
                );
                None
            }
        }
    };
    // With --order and a portal, the order's CSR ties the certificate to it and its common
    // name is the name to cover.
    let order = match (args.order, &portal) {
        (Some(id), Some(portal)) => Some(
            portal
                .ssl_order(id)
                .with_context(|| format!("reading order {id} from the portal"))?,
        ),
        _ => None,
    };
    if let Some(order) = &order {
        known_keys.extend(order_csr_keys(order, &known_keys));
    }
    let name = args
        .expect_name
        .clone()
        .or_else(|| order.as_ref().and_then(|o| o.common_name.clone()));
    let checks = import_checks(settings, name, known_keys)?;
    let mut store = open_store(settings, args.dry_run)?;
    let mut destination = Destination {
        store: store.as_mut(),
        upload: Upload {
            portal: portal.as_ref(),
            order: order.as_ref(),
            dry_run: args.dry_run,
        },
        order_id: args.order,
        dry_run: args.dry_run,
    };

    let mut results = Vec::new();
    for path in &args.files {
        let source = path.display().to_string();
        match read_input(path, checks.limits.max_message_size) {
            Ok(bytes) => results.extend(pipeline::import_message(
                &bytes,
                &source,
                &checks,
                &mut destination,
                None,
                now,
            )?),
            Err(e) => {
                log::error!("{source}: {e:#}");
                let mut result = ImportResult::new(&source, Outcome::Unreadable, None);
                result.problems.push(format!("{e:#}"));
                if let Some(store) = destination.store.as_deref().filter(|_| !args.dry_run) {
                    store.add_event(
                        args.order,
                        result.outcome_kind(),
                        &result.event_detail(),
                        now,
                    )?;
                }
                results.push(result);
            }
        }
    }

    let exit = results.iter().fold(Exit::Done, |exit, r| {
        let upload_failed = if r.upload == Some("failed") {
            Exit::Failure
        } else {
            Exit::Done
        };
        exit.worst(r.outcome.exit()).worst(upload_failed)
    });
    if json {
        print_json(&results)?;
    } else {
        print_report(&results, now)?;
    }
    Ok(exit)
}

/// Reads a file, or standard input for `-`, refusing more than `limit` bytes without
/// reading them all.
fn read_input(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        anyhow::bail!(
            "{} is larger than the limit of {limit} bytes ([mailbox] max_message_size); not read",
            path.display()
        );
    }
    Ok(bytes)
}

pub(super) fn print_report(results: &[ImportResult], now: OffsetDateTime) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut table = Table::new(&["RESULT", "NAME", "ID", "PORTAL", "EXPIRES", "FILE"]);
    for r in results {
        let name = match (&r.common_name, r.order_numbers.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(order)) => format!("order number {order}"),
            (None, None) => "-".into(),
        };
        table.row(vec![
            r.outcome.words().into(),
            name,
            r.id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
            match (r.portal_certificate_id, r.upload) {
                (Some(id), _) => id.to_string(),
                (None, Some("failed")) => "failed".into(),
                (None, Some("would_upload")) => "would upload".into(),
                _ => "-".into(),
            },
            r.not_after_time
                .map(|t| days_left(t, now))
                .unwrap_or_else(|| "-".into()),
            r.source.clone(),
        ]);
    }
    table.write(&mut out)?;

    let explained: Vec<&ImportResult> = results
        .iter()
        .filter(|r| {
            !matches!(
                r.outcome,
                Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport
            ) || r.upload_error.is_some()
        })
        .collect();
    if !explained.is_empty() {
        writeln!(out)?;
    }
    for r in explained {
        match r.outcome {
            Outcome::Rejected => {
                writeln!(
                    out,
                    "{}: rejected {}",
                    r.source,
                    r.subject.as_deref().unwrap_or("certificate")
                )?;
                for reason in &r.reasons {
                    writeln!(out, "  {}: {}", reason.rule_name, reason.detail)?;
                }
            }
            Outcome::LinkOnly => {
                writeln!(
                    out,
                    "{}: the mail holds no certificate, only a download link{}:",
                    r.source,
                    match r.order_numbers.first() {
                        Some(order) => format!(" (order number {order})"),
                        None => String::new(),
                    }
                )?;
                for link in &r.links {
                    writeln!(out, "  {link}")?;
                }
                writeln!(
                    out,
                    "  The link is a bearer URL: download the certificate yourself, then `fulfill import` the file."
                )?;
            }
            _ if r.upload_error.is_some() => {
                writeln!(
                    out,
                    "{}: recorded locally but not uploaded: {}",
                    r.source,
                    r.upload_error.as_deref().unwrap_or_default()
                )?;
                writeln!(out, "  Run the same import again to retry the upload.")?;
            }
            _ => {
                writeln!(out, "{}: {}", r.source, r.outcome.words())?;
                for problem in &r.problems {
                    writeln!(out, "  {problem}")?;
                }
            }
        }
    }
    Ok(())
}

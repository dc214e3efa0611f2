//! `fulfill replace --certificate ID [--dry-run]`: move the load balancer listeners that use
//! an older certificate of the same name to a recorded certificate, by hand: what
//! `[portal] replace_in_use` does after every upload (pipeline/replace.rs).

use std::io::{self, Write};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::import_report::write_replacements;
use super::{
    Context, Report, connect_portal, lock_for_writing, open_store, replace_options, start_watchdog,
    with_replacements, write_line,
};
use crate::exit::{Exit, UsageError};
use crate::pipeline::replace::{ListenerMove, MoveOutcome, Replacements, Replacer};
use crate::store::{CertificateRow, Store};

#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// The recorded certificate to put into service: row id or SHA-256 fingerprint (a
    /// unique prefix of 8 or more hex digits), as `list` shows them
    #[arg(long, value_name = "ID|SHA256")]
    pub certificate: String,

    /// Print each listener to move, its load balancer and the old and new certificate ids;
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl ReplaceArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let _lock = lock_for_writing(settings, self.dry_run)?;
        start_watchdog(
            settings.replace_timeout + settings.run_timeout(),
            "[portal] replace_timeout plus [mailbox] run_timeout",
        );
        let store = open_store(settings, self.dry_run)?.ok_or_else(|| self.not_found(context))?;
        let row =
            (store.find_certificate(&self.certificate)?).ok_or_else(|| self.not_found(context))?;
        if row.portal_certificate_id.is_none() {
            return Err(UsageError(format!(
                "certificate #{} ({}) is not in the portal's store yet; `fulfill import` uploads it",
                row.id, row.common_name
            ))
            .into());
        }
        let portal = connect_portal(settings)?;
        let replacer = Replacer {
            portal: &portal,
            options: replace_options(settings),
        };
        let replaced = match self.dry_run {
            true => plan_only(&replacer, &row)?,
            false => replace(&replacer, &store, &row, context)?,
        };
        context.output.print(&ReplaceReport(&replaced))?;
        Ok(with_replacements(Exit::Done, &replaced))
    }

    fn not_found(&self, context: &Context) -> UsageError {
        UsageError(format!(
            "no certificate '{}' in {}; `fulfill list` shows the ids",
            self.certificate,
            context.settings.database.display()
        ))
    }
}

/// The listeners that would move, read from the portal; nothing is written.
fn plan_only(replacer: &Replacer<'_>, row: &CertificateRow) -> anyhow::Result<Replacements> {
    let new_portal_id = row.portal_certificate_id.unwrap_or_default();
    let moves = (replacer.plan(row))
        .with_context(|| format!("certificate #{}: looking for the listeners to move", row.id))?;
    let listeners = (moves.into_iter())
        .map(|m| ListenerMove {
            certificate_id: row.id,
            listener_uuid: m.listener_uuid,
            load_balancer_uuid: m.load_balancer_uuid,
            old_portal_id: m.old_portal_id,
            new_portal_id,
            outcome: MoveOutcome::WouldMove,
            detail: None,
        })
        .collect();
    Ok(Replacements {
        listeners,
        ..Replacements::default()
    })
}

/// Plans again (listeners attached since the last plan are added), then finishes every
/// move of this certificate, then deletes what `delete_replaced` may.
fn replace(
    replacer: &Replacer<'_>,
    store: &Store,
    row: &CertificateRow,
    context: &Context,
) -> anyhow::Result<Replacements> {
    let mut replaced = Replacements::default();
    if let Err(e) = replacer.record_plan(store, row, context.now) {
        replaced.errors.push(e);
    }
    let deadline = Instant::now() + replacer.options.timeout;
    for move_row in store.replacements_for(row.id)? {
        if !move_row.state.is_finished() {
            let done = replacer.settle(store, move_row, deadline, context.now)?;
            replaced.listeners.push(done);
        }
    }
    replaced.retired = replacer.retire(store, context.now)?;
    Ok(replaced)
}

#[derive(Serialize)]
#[serde(transparent)]
struct ReplaceReport<'a>(&'a Replacements);

impl Report for ReplaceReport<'_> {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            return write_line(out, "No listener uses an older certificate of this name.");
        }
        write_replacements(self.0, out)
    }

    fn is_routine(&self) -> bool {
        self.0.is_empty()
    }
}

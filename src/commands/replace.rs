//! `fulfill replace --certificate ID [--dry-run]`: move the load balancer listeners that use
//! an older certificate of the same name to a recorded certificate, by hand: what
//! `[portal] replace_in_use` does after every upload (pipeline/replace.rs).

use std::io::{self, Write};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{
    Context, Report, connect_portal, lock_for_writing, open_store, replace_options, start_watchdog,
    with_replacements, write_line, write_replacements,
};
use crate::exit::{Exit, UsageError};
use crate::pipeline::replace::{Replacements, Replacer};

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
            true => (replacer.dry_run(&row)).with_context(|| {
                format!("certificate #{}: looking for the listeners to move", row.id)
            })?,
            false => replacer.replace_one(&store, &row, context.now)?,
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

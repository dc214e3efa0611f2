//! `fulfill log [--order ID] [--since 1d]`: the `events` audit trail, oldest first.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{Context, Report, Table};
use crate::exit::Exit;
use crate::store::{EventRow, Store};

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only the events of this portal order
    #[arg(long, value_name = "ID")]
    pub order: Option<i64>,

    /// Only the events of this last while (e.g. 1d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub since: Option<std::time::Duration>,
}

impl LogArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let since = self.since.map(|within| context.now - within);
        let (events, recorded) = match Store::open_read_only(&context.settings.database)? {
            Some(store) => (store.events_where(self.order, since)?, true),
            // No database yet: nothing has happened, which is not an error.
            None => (Vec::new(), false),
        };
        context.output.print(&LogReport {
            events,
            recorded,
            database: context.settings.database.clone(),
        })?;
        Ok(Exit::Done)
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct LogReport {
    events: Vec<EventRow>,
    #[serde(skip)]
    recorded: bool,
    #[serde(skip)]
    database: PathBuf,
}

impl Report for LogReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.recorded {
            return writeln!(out, "No events recorded yet ({}).", self.database.display());
        }
        if self.events.is_empty() {
            return writeln!(out, "No events match ({}).", self.database.display());
        }
        let mut table = Table::new(&["AT", "ORDER", "KIND", "DETAIL"]);
        for event in &self.events {
            // `detail` was escaped when it was written; the table keeps it so.
            table.row(vec![
                event.at.clone(),
                (event.order_id.map(|o| o.to_string())).unwrap_or_else(|| "-".into()),
                event.kind.clone(),
                event.detail.clone(),
            ]);
        }
        table.write(out)
    }
}

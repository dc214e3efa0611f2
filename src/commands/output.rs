//! What a person or a script sees. One [`Output`] decides, for every command, whether a
//! result is printed as one JSON document on stdout or as text (himalaya's printer does
//! the same); the text helpers (aligned columns, dates with days left) live beside it.

use std::io::{self, Write};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::text::printable;

/// Writes one line of text from outside, escaped (`text::printable`), so that no field can
/// carry a control sequence or a line break of its own to the terminal.
pub fn write_line(out: &mut dyn Write, line: &str) -> io::Result<()> {
    writeln!(out, "{}", printable(line))
}

/// A command's result: serialisable for `--json`, writable as text for a person.
pub trait Report: Serialize {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Whether this result says only that all is as it was, so that `-q` prints nothing
    /// (cron mails any output).
    fn is_routine(&self) -> bool {
        false
    }
}

/// How results are printed: `--json`, and `-q`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    pub fn print(&self, report: &impl Report) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        } else if !(self.quiet && report.is_routine()) {
            report.write_text(&mut out)?;
        }
        Ok(())
    }
}

/// A table printed with aligned columns, like `slcli ssl list`.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// A row; cells carry text from outside, and are kept printable (`text::printable`).
    pub fn row(&mut self, cells: Vec<String>) {
        (self.rows).push(cells.iter().map(|c| printable(c).into_owned()).collect());
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                if i + 1 == cells.len().min(columns) {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            text.trim_end().to_string()
        };
        writeln!(out, "{}", line(&self.header))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row))?;
        }
        Ok(())
    }
}

/// "2045-06-01 (6758 days)" / "2021-01-01 (expired 2158 days ago)".
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> String {
    let days = (not_after - now).whole_days();
    let date = crate::validate::date(not_after);
    match days {
        d if not_after < now => format!("{date} (expired {} days ago)", -d),
        0 => format!("{date} (today)"),
        1 => format!("{date} (1 day)"),
        d => format!("{date} ({d} days)"),
    }
}

/// A timestamp as the database stores it (RFC 3339).
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

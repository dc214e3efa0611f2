//! What a person sees: aligned columns, dates with days left. JSON goes to stdout as one
//! document; everything else a command reports goes through these helpers.

use std::io::{self, Write};

use time::OffsetDateTime;

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

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
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

/// One JSON document on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

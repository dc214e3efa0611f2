//! `fulfill list [--expiring-within 30d]`: recorded certificates, soonest expiry first.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Context, Report, Table, days_left, parse_time};
use crate::exit::Exit;
use crate::store::{CertificateRow, SecretRow, Store};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only certificates expiring within this time (e.g. 30d, 12h), expired ones included
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub expiring_within: Option<std::time::Duration>,
}

/// `--json` rows: every column but the PEM texts, which `show --json` has.
#[derive(Serialize)]
struct ListedCertificate<'a> {
    id: i64,
    order_id: Option<i64>,
    common_name: &'a str,
    subject_alt_names: &'a [String],
    serial: &'a str,
    sha256: &'a str,
    issuer: &'a str,
    not_before: &'a str,
    not_after: &'a str,
    days_left: Option<i64>,
    key_source: Option<&'a str>,
    portal_certificate_id: Option<i64>,
    source_message_id: Option<&'a str>,
    source: Option<&'a str>,
    imported_at: &'a str,
    /// Its place in Secrets Manager, when it has one (`secrets_manager`'s columns).
    secrets_manager: Option<SecretRow>,
}

impl ListArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let until = self.expiring_within.map(|within| context.now + within);
        let (rows, secrets) = match Store::open_read_only(&context.settings.database)? {
            Some(store) => (store.list_certificates(until)?, store.secret_rows()?),
            // No database yet: nothing has been imported, which is not an error.
            None => (Vec::new(), Vec::new()),
        };
        let secret = |id: i64| secrets.iter().find(|s| s.certificate_id == id).cloned();
        context.output.print(&ListReport {
            rows: (rows.iter())
                .map(|row| listed(row, secret(row.id), context.now))
                .collect(),
            expiring_within: self.expiring_within,
            database: context.settings.database.clone(),
            now: context.now,
        })?;
        Ok(Exit::Done)
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct ListReport<'a> {
    rows: Vec<ListedCertificate<'a>>,
    #[serde(skip)]
    expiring_within: Option<std::time::Duration>,
    #[serde(skip)]
    database: PathBuf,
    #[serde(skip)]
    now: OffsetDateTime,
}

impl Report for ListReport<'_> {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.rows.is_empty() {
            return match self.expiring_within {
                Some(within) => writeln!(
                    out,
                    "No certificate expires within {} ({}).",
                    humantime::format_duration(within),
                    self.database.display()
                ),
                None => writeln!(
                    out,
                    "No certificates recorded yet ({}).",
                    self.database.display()
                ),
            };
        }
        let mut table = Table::new(&[
            "ID",
            "COMMON NAME",
            "EXPIRES",
            "ORDER",
            "PORTAL ID",
            "SHA256",
        ]);
        let dash = || "-".to_string();
        for row in &self.rows {
            table.row(vec![
                row.id.to_string(),
                row.common_name.to_string(),
                parse_time(row.not_after)
                    .map(|t| days_left(t, self.now))
                    .unwrap_or_else(|| row.not_after.to_string()),
                row.order_id.map(|o| o.to_string()).unwrap_or_else(dash),
                (row.portal_certificate_id.map(|p| p.to_string())).unwrap_or_else(dash),
                row.sha256.chars().take(16).collect(),
            ]);
        }
        table.write(out)
    }
}

fn listed(
    row: &CertificateRow,
    secrets_manager: Option<SecretRow>,
    now: OffsetDateTime,
) -> ListedCertificate<'_> {
    ListedCertificate {
        id: row.id,
        order_id: row.order_id,
        common_name: &row.common_name,
        subject_alt_names: &row.subject_alt_names,
        serial: &row.serial,
        sha256: &row.sha256,
        issuer: &row.issuer,
        not_before: &row.not_before,
        not_after: &row.not_after,
        days_left: parse_time(&row.not_after).map(|t| (t - now).whole_days()),
        key_source: row.key_source.as_deref(),
        portal_certificate_id: row.portal_certificate_id,
        source_message_id: row.source_message_id.as_deref(),
        source: row.source.as_deref(),
        imported_at: &row.imported_at,
        secrets_manager,
    }
}

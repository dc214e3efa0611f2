//! `fulfill list [--expiring-within 30d]`: recorded certificates, soonest expiry first.

use std::io::{self, Write};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Exit, Table, days_left, print_json};
use crate::cli::ListArgs;
use crate::config::Settings;
use crate::store::{CertificateRow, Store};

/// `--json` rows: every column but the PEM texts, which `show --json` has.
#[derive(serde::Serialize)]
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
}

pub fn run(
    args: &ListArgs,
    settings: &Settings,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Exit> {
    let until = args.expiring_within.map(|within| now + within);
    let rows = match Store::open_read_only(&settings.database)? {
        Some(store) => store.list_certificates(until)?,
        // No database yet: nothing has been imported, which is not an error.
        None => Vec::new(),
    };
    if json {
        let listed: Vec<ListedCertificate<'_>> = rows.iter().map(|row| listed(row, now)).collect();
        print_json(&listed)?;
        return Ok(Exit::Done);
    }
    let mut out = io::stdout().lock();
    if rows.is_empty() {
        match args.expiring_within {
            Some(within) => writeln!(
                out,
                "No certificate expires within {} ({}).",
                humantime::format_duration(within),
                settings.database.display()
            )?,
            None => writeln!(
                out,
                "No certificates recorded yet ({}).",
                settings.database.display()
            )?,
        }
        return Ok(Exit::Done);
    }
    let mut table = Table::new(&[
        "ID",
        "COMMON NAME",
        "EXPIRES",
        "ORDER",
        "PORTAL ID",
        "SHA256",
    ]);
    for row in &rows {
        table.row(vec![
            row.id.to_string(),
            row.common_name.clone(),
            parse_time(&row.not_after)
                .map(|t| days_left(t, now))
                .unwrap_or_else(|| row.not_after.clone()),
            row.order_id
                .map(|o| o.to_string())
                .unwrap_or_else(|| "-".into()),
            row.portal_certificate_id
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            row.sha256.chars().take(16).collect(),
        ]);
    }
    table.write(&mut out)?;
    Ok(Exit::Done)
}

pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn listed(row: &CertificateRow, now: OffsetDateTime) -> ListedCertificate<'_> {
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
    }
}

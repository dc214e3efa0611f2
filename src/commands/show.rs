//! `fulfill show ID|SHA256 [--pem]`: one recorded certificate.

use std::io::{self, Write};

use time::OffsetDateTime;

use super::list::parse_time;
use super::{Exit, UsageError, days_left, print_json};
use crate::cli::ShowArgs;
use crate::config::Settings;
use crate::store::Store;

pub fn run(
    args: &ShowArgs,
    settings: &Settings,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Exit> {
    let not_found = || {
        UsageError(format!(
            "no certificate '{}' in {}; `fulfill list` shows the ids",
            args.certificate,
            settings.database.display()
        ))
    };
    let store = Store::open_read_only(&settings.database)?.ok_or_else(not_found)?;
    let row = store
        .find_certificate(&args.certificate)?
        .ok_or_else(not_found)?;

    let mut out = io::stdout().lock();
    if args.pem {
        write!(out, "{}{}", row.certificate_pem, row.chain_pem)?;
        return Ok(Exit::Done);
    }
    if json {
        print_json(&row)?;
        return Ok(Exit::Done);
    }
    let expires = parse_time(&row.not_after)
        .map(|t| days_left(t, now))
        .unwrap_or_else(|| row.not_after.clone());
    let chain: Vec<String> = pem::parse_many(&row.chain_pem)
        .unwrap_or_default()
        .iter()
        .map(|block| {
            x509_parser::parse_x509_certificate(block.contents())
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_else(|_| "(unreadable)".into())
        })
        .collect();
    let none = || "-".to_string();
    let fields = [
        ("id", row.id.to_string()),
        ("common name", row.common_name.clone()),
        ("names", row.subject_alt_names.join(", ")),
        ("expires", expires),
        ("valid from", row.not_before.clone()),
        ("serial", row.serial.clone()),
        ("sha256", row.sha256.clone()),
        ("issuer", row.issuer.clone()),
        (
            "chain",
            if chain.is_empty() {
                none()
            } else {
                chain.join("  <  ")
            },
        ),
        (
            "order",
            row.order_id.map(|o| o.to_string()).unwrap_or_else(none),
        ),
        (
            "portal id",
            row.portal_certificate_id
                .map(|p| p.to_string())
                .unwrap_or_else(none),
        ),
        ("key", row.key_source.clone().unwrap_or_else(none)),
        ("source", row.source.clone().unwrap_or_else(none)),
        (
            "message id",
            row.source_message_id.clone().unwrap_or_else(none),
        ),
        ("imported", row.imported_at.clone()),
    ];
    for (name, value) in fields {
        writeln!(out, "{:<12} {value}", format!("{name}:"))?;
    }
    Ok(Exit::Done)
}

//! `fulfill show ID|SHA256|NAME [--pem]`: one recorded certificate.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Context, Report, days_left, parse_time, write_line};
use crate::exit::{Exit, UsageError};
use crate::store::{CertificateRow, ReplacementRow, SecretRow, Store};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Row id, SHA-256 fingerprint (a unique prefix of 8 or more hex digits is enough), or
    /// common name (its newest certificate)
    #[arg(value_name = "ID|SHA256|NAME")]
    pub certificate: String,

    /// Print only the certificate and its chain, in PEM
    #[arg(long)]
    pub pem: bool,
}

impl ShowArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let database = &context.settings.database;
        let not_found = || {
            UsageError(format!(
                "no certificate '{}' in {}; `fulfill list` shows the ids",
                self.certificate,
                database.display()
            ))
        };
        let store = Store::open_read_only(database)?.ok_or_else(not_found)?;
        let row = store
            .find_certificate(&self.certificate)?
            .ok_or_else(not_found)?;
        if self.pem {
            write!(
                io::stdout().lock(),
                "{}{}",
                row.certificate_pem,
                row.chain_pem
            )?;
            return Ok(Exit::Done);
        }
        // A database written by an older fulfill, read without migrating it, has no
        // replacements table: nothing was moved then.
        let listeners = store.replacements_for(row.id).unwrap_or_default();
        context.output.print(&ShowReport {
            days_left: parse_time(&row.not_after).map(|t| (t - context.now).whole_days()),
            secrets_manager: store.secret_of(row.id)?,
            row,
            listeners,
            now: context.now,
        })?;
        Ok(Exit::Done)
    }
}

/// `--json`: every column, and `days_left` as `list --json` has it.
#[derive(Serialize)]
struct ShowReport {
    #[serde(flatten)]
    row: CertificateRow,
    days_left: Option<i64>,
    /// Its place in Secrets Manager (`secrets_manager`'s columns), if it has one.
    secrets_manager: Option<SecretRow>,
    /// The load balancer listeners moved (or being moved) to it (`[portal] replace_in_use`).
    listeners: Vec<ReplacementRow>,
    #[serde(skip)]
    now: OffsetDateTime,
}

impl Report for ShowReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        for (name, value) in self.fields() {
            write_line(out, &format!("{:<12} {value}", format!("{name}:")))?;
        }
        for l in &self.listeners {
            let line = format!(
                "{:<12} {} of load balancer {}: certificate {} -> {}: {}",
                "in use:",
                l.listener_uuid,
                l.load_balancer_uuid,
                l.old_portal_id,
                l.new_portal_id,
                l.state.as_str()
            );
            write_line(out, &line)?;
        }
        Ok(())
    }
}

impl ShowReport {
    /// "NAME (ID) version N, stored", or where the import is.
    fn secret(&self) -> Option<String> {
        let secret = self.secrets_manager.as_ref()?;
        let mut text = secret.secret_name.clone();
        if let Some(id) = &secret.secret_id {
            text.push_str(&format!(" ({id})"));
        }
        if let Some(version) = secret.secret_version {
            text.push_str(&format!(" version {version}"));
        }
        text.push_str(&format!(", {}", secret.state));
        if let Some(error) = &secret.last_error {
            text.push_str(&format!(": {error}"));
        }
        Some(text)
    }

    fn fields(&self) -> [(&'static str, String); 16] {
        let row = &self.row;
        let none = || "-".to_string();
        let expires = parse_time(&row.not_after)
            .map(|t| days_left(t, self.now))
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
        [
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
                (row.portal_certificate_id.map(|p| p.to_string())).unwrap_or_else(none),
            ),
            ("secret", self.secret().unwrap_or_else(none)),
            ("key", row.key_source.clone().unwrap_or_else(none)),
            ("source", row.source.clone().unwrap_or_else(none)),
            (
                "message id",
                row.source_message_id.clone().unwrap_or_else(none),
            ),
            ("imported", row.imported_at.clone()),
        ]
    }
}

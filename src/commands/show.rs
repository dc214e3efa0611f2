//! `fulfill show ID|SHA256|NAME [--pem]`: one recorded certificate.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Context, Report, days_left, parse_time, write_line};
use crate::exit::{Exit, UsageError};
use crate::pipeline::in_use::{Asking, InUse, ListenerLookup, LiveView, where_in_use};
use crate::pipeline::secrets_manager::secret_place;
use crate::portal::Portal;
use crate::store::{CertificateRow, SecretRow, Store};

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
        let in_use = in_use(context, &store, &row);
        context.output.print(&ShowReport {
            days_left: parse_time(&row.not_after).map(|t| (t - context.now).whole_days()),
            secrets_manager: store.secret_of(row.id)?,
            row,
            in_use,
            now: context.now,
        })?;
        Ok(Exit::Done)
    }
}

/// Where the certificate is in use: asked of the portal when it is configured and holds
/// the certificate; a portal that cannot be reached leaves the recorded view (a warning).
fn in_use(context: &Context, store: &Store, row: &CertificateRow) -> InUse {
    let portal = match row.portal_certificate_id {
        Some(_) => (context.settings.portal())
            .map_err(anyhow::Error::from)
            .and_then(|p| Ok(p.map(Portal::new).transpose()?)),
        None => Ok(None),
    };
    let mut lookup = None;
    let asking = match &portal {
        Ok(Some(portal)) => Asking::Portal(lookup.insert(ListenerLookup::new(portal))),
        Ok(None) => Asking::NotConfigured,
        Err(e) => Asking::Unreachable(format!("{e:#}")),
    };
    where_in_use(asking, Some(store), Some(row.id), row.portal_certificate_id)
}

/// `--json`: every column, and `days_left` as `list --json` has it.
#[derive(Serialize)]
struct ShowReport {
    #[serde(flatten)]
    row: CertificateRow,
    days_left: Option<i64>,
    /// Its place in Secrets Manager (`secrets_manager`'s columns), if it has one.
    secrets_manager: Option<SecretRow>,
    /// The listeners that use it: the portal's now, and those fulfill's moves recorded.
    in_use: InUse,
    #[serde(skip)]
    now: OffsetDateTime,
}

impl Report for ShowReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        for (name, value) in self.fields() {
            write_line(out, &format!("{:<12} {value}", format!("{name}:")))?;
        }
        write_in_use(&self.in_use, out)
    }
}

/// One line per listener: "in use:" for those the portal names, "recorded:" for a move
/// fulfill recorded of a listener the portal does not name (or was not asked about).
fn write_in_use(in_use: &InUse, out: &mut dyn Write) -> io::Result<()> {
    let label = |text: &str| format!("{text:<12} ");
    match (in_use.live_view, &in_use.why) {
        (LiveView::Unavailable, Some(why)) => {
            write_line(out, &format!("{}{why}", label("in use:")))?
        }
        (LiveView::Portal, _) if in_use.live_count() == Some(0) => {
            write_line(out, &format!("{}no listener", label("in use:")))?
        }
        _ => {}
    }
    for l in &in_use.listeners {
        let mut line = format!(
            "{}{} of load balancer {}",
            label(if l.live { "in use:" } else { "recorded:" }),
            l.listener_uuid,
            l.load_balancer_uuid.as_deref().unwrap_or("(none found)")
        );
        if let (Some(protocol), Some(port)) = (&l.protocol, l.port) {
            line.push_str(&format!(", {protocol}:{port}"));
        }
        if let Some(m) = &l.recorded_move {
            line.push_str(&format!(
                "; fulfill's move from certificate {} to {}: {}",
                m.old_portal_id, m.new_portal_id, m.progress
            ));
            if let Some(error) = m.last_error.as_ref().filter(|_| m.progress != "moved") {
                line.push_str(&format!(" ({error})"));
            }
        }
        write_line(out, &line)?;
    }
    Ok(())
}

impl ShowReport {
    /// "NAME (ID) version N, stored", or where the import is.
    fn secret(&self) -> Option<String> {
        let secret = self.secrets_manager.as_ref()?;
        let mut text = secret.secret_name.clone();
        text.push_str(&secret_place(
            secret.secret_id.as_deref(),
            secret.secret_version,
            secret.secret_version_id.as_deref(),
        ));
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

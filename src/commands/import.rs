//! `fulfill import FILE.eml...|-`: extract, validate and record the certificates in saved
//! fulfillment emails (or in a certificate file downloaded from a link-only mail).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use time::OffsetDateTime;

use super::import_report::ImportReport;
use super::{
    Context, IntoService, deploy_hook, import_checks, load_known_keys, lock_for_writing, open_store,
};
use crate::exit::Exit;
use crate::pipeline::{self, Destination, ImportResult, Outcome, keys_for_orders};
use crate::portal::Portal;
use crate::portal::types::SslOrder;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Email files (.eml, RFC 5322), or - for standard input
    #[arg(required = true, value_name = "FILE.eml")]
    pub files: Vec<PathBuf>,

    /// The SoftLayer order the certificate belongs to
    #[arg(long, value_name = "ID")]
    pub order: Option<i64>,

    /// Private key (or CSR) of the certificate, in addition to [keys] dirs
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,

    /// DNS name the certificate must cover [default: the name in the key's CSR]
    #[arg(long, value_name = "DNS")]
    pub expect_name: Option<String>,

    /// Record without uploading to the portal
    #[arg(long)]
    pub no_upload: bool,

    /// Validate and report, but write nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl ImportArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let _lock = lock_for_writing(settings, self.dry_run)?;
        let local_keys = load_known_keys(settings, &self.key)?;
        let portal = self.portal(context)?;
        // With --order and a portal, the order's CSR ties the certificate to it and its
        // common name is the name to cover.
        let order = match (self.order, &portal) {
            (Some(id), Some(portal)) => self.read_order(portal, id)?,
            _ => None,
        };
        let known_keys = keys_for_orders(order.as_slice(), local_keys);
        let name = (self.expect_name.clone())
            .or_else(|| order.as_ref().and_then(|o| o.common_name.clone()));
        let checks = import_checks(settings, name, known_keys)?;
        let mut store = open_store(settings, self.dry_run)?;
        let mut destination = Destination::new(store.as_mut(), portal.as_ref(), self.dry_run);
        destination.order_id = self.order;
        destination.upload.order = order.as_ref();
        let hook = deploy_hook(settings, None).filter(|_| !self.dry_run);
        destination.deploy = hook.is_some();

        let mut results = Vec::new();
        for path in &self.files {
            let source = path.display().to_string();
            match read_input(path, checks.limits.max_message_size) {
                Ok(bytes) => results.extend(pipeline::import_message(
                    &bytes,
                    &source,
                    &checks,
                    &mut destination,
                    None,
                    context.now,
                )?),
                Err(e) => results.push(self.unreadable(
                    &source,
                    e,
                    destination.store.as_deref(),
                    context.now,
                )?),
            }
        }
        let store = destination.store.as_deref();
        let into_service = IntoService::run(
            settings,
            hook.as_ref(),
            portal.as_ref(),
            store,
            self.dry_run,
            context.now,
        )?;
        results.iter_mut().for_each(|r| into_service.attach(r));
        let exit = (results.iter()).fold(Exit::Done, |exit, r| exit.worst(r.exit()));
        context.output.print(&ImportReport {
            results: &results,
            into_service: &into_service,
            now: context.now,
        })?;
        Ok(into_service.exit(exit))
    }

    /// The portal to upload to, unless `--no-upload` or none is configured.
    fn portal(&self, context: &Context) -> anyhow::Result<Option<Portal>> {
        if self.no_upload {
            return Ok(None);
        }
        match context.settings.portal()? {
            // A dry run asks the portal once, without retries: when it cannot be reached,
            // the validation is still worth showing at once.
            Some(mut portal) if self.dry_run => {
                portal.retries = 0;
                Ok(Some(Portal::new(portal)?))
            }
            Some(portal) => Ok(Some(Portal::new(portal)?)),
            // A dry run records nothing: there is nothing to say about where it would go.
            None if self.dry_run => Ok(None),
            // Secrets Manager alone is a store of its own: nothing to warn about.
            None if context.settings.secrets_manager_name().is_some() => Ok(None),
            None => {
                log::warn!(
                    "no portal credentials ([portal] username and api_key_cmd, or SL_USERNAME and SL_API_KEY): \
                     certificates are recorded locally, not uploaded; --no-upload says that is intended"
                );
                Ok(None)
            }
        }
    }

    /// The order `--order` names. A dry run goes on without it when the portal cannot be
    /// reached, validating against the local keys and saying so.
    fn read_order(&self, portal: &Portal, id: i64) -> anyhow::Result<Option<SslOrder>> {
        match portal.ssl_order(id) {
            Ok(order) => Ok(Some(order)),
            Err(error) if self.dry_run => {
                log::warn!(
                    "order {id}: the portal cannot be read ({error}); its CSR and name are unknown, \
                     so the mails are judged by the local keys only"
                );
                Ok(None)
            }
            Err(error) => {
                Err(anyhow::Error::new(error)
                    .context(format!("reading order {id} from the portal")))
            }
        }
    }

    /// The result for a file that could not be read, recorded in the audit trail.
    fn unreadable(
        &self,
        source: &str,
        error: anyhow::Error,
        store: Option<&Store>,
        now: OffsetDateTime,
    ) -> anyhow::Result<ImportResult> {
        // The report says it, in the table and below it: not a third time on stderr.
        let mut result = ImportResult::new(source, Outcome::Unreadable, None);
        result.problems.push(format!("{error:#}"));
        if let Some(store) = store.filter(|_| !self.dry_run) {
            store.add_event(
                self.order,
                result.outcome.event_kind(),
                &result.event_detail(),
                now,
            )?;
        }
        Ok(result)
    }
}

/// Reads a file, or standard input for `-`, refusing more than `limit` bytes without
/// reading them all.
fn read_input(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        anyhow::bail!(
            "{} is larger than the limit of {limit} bytes ([mailbox] max_message_size); not read",
            path.display()
        );
    }
    Ok(bytes)
}

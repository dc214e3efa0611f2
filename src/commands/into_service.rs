//! What puts certificates into service once a run's other work is done: the deploy hook
//! (`deploy_hook`, `[deploy] dir`), IBM Cloud Secrets Manager (`[secrets_manager]`) and the
//! load balancer listeners (`[portal] replace_in_use`). `import`, `poll` and
//! `resend-and-import` run the three in one call ([`IntoService::run`]); `deploy` and
//! `replace` run one each. Every step is a sweep over what the database says is not done
//! yet, this run's certificates and any an earlier run left, so a run killed in the middle
//! is finished by the next one.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{load_known_keys, write_line};
use crate::config::Settings;
use crate::exit::Exit;
use crate::pipeline::deploy::{DeployHook, Deployer, Deployment};
use crate::pipeline::replace::{ReplaceOptions, Replacements, Replacer};
use crate::pipeline::resend_loop::OrderResult;
use crate::pipeline::secrets_manager::{SecretImport, SecretOutcome};
use crate::pipeline::{self, ImportResult};
use crate::portal::Portal;
use crate::secrets_manager::SecretsManager;
use crate::store::Store;

/// What the three steps did in one run. `poll --json` shows it whole; `import` and
/// `resend-and-import` show it on each result, and print in text what concerns
/// certificates of earlier runs.
#[derive(Debug, Default, Serialize)]
pub struct IntoService {
    /// What the deploy hook did.
    pub deployments: Vec<Deployment>,
    /// What the import into Secrets Manager did.
    pub secrets: Vec<SecretImport>,
    /// The load balancer listeners moved (`[portal] replace_in_use`).
    pub replacements: Replacements,
}

impl IntoService {
    /// Runs the deploy hook (when there is one), the import into Secrets Manager and the
    /// listener moves (each when configured). A dry run deploys and moves nothing, and
    /// only plans the import.
    pub fn run(
        settings: &Settings,
        hook: Option<&DeployHook>,
        portal: Option<&Portal>,
        store: Option<&Store>,
        dry_run: bool,
        now: OffsetDateTime,
    ) -> anyhow::Result<IntoService> {
        let hook = hook.filter(|_| !dry_run);
        let portal = portal.filter(|_| !dry_run);
        Ok(IntoService {
            deployments: deploy_undeployed(settings, hook, store, now)?,
            secrets: store_in_secrets_manager(settings, store, dry_run, now)?,
            replacements: replace_in_use(settings, portal, store, now)?,
        })
    }

    /// Notes on `result` what was done with its certificate.
    pub fn attach(&self, result: &mut ImportResult) {
        result.attach_deployment(&self.deployments);
        result.attach_secret(&self.secrets);
        result.attach_replacements(&self.replacements);
    }

    /// Notes on an order's result what was done with its certificate.
    pub fn attach_to_order(&self, result: &mut OrderResult) {
        let sha256 = result.sha256.as_ref();
        let deployment = (self.deployments.iter()).find(|d| Some(&d.sha256) == sha256);
        result.deploy_hook = deployment.map(|d| d.summary());
        let secret = (self.secrets.iter()).find(|s| Some(&s.sha256) == sha256);
        result.secrets_manager = secret.map(|s| s.summary());
        result.listeners = self.replacements.for_certificate(result.certificate_id);
    }

    /// 1 when any step failed (its state is kept for the next run), else `exit`.
    pub fn exit(&self, exit: Exit) -> Exit {
        let exit = with_deployments(exit, &self.deployments);
        let exit = with_secrets(exit, &self.secrets);
        with_replacements(exit, &self.replacements)
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty() && self.secrets.is_empty() && self.replacements.is_empty()
    }

    /// Every step's lines, leaving out the deployments and imports of the certificates
    /// `shown` says were printed already (by their SHA-256).
    pub fn write_text(&self, out: &mut dyn Write, shown: impl Fn(&str) -> bool) -> io::Result<()> {
        let deployments = self.deployments.iter().filter(|d| !shown(&d.sha256));
        write_deployments(deployments, out)?;
        write_secrets(self.secrets.iter().filter(|s| !shown(&s.sha256)), out)?;
        write_replacements(&self.replacements, out)
    }
}

/// Runs the deploy hook, when there is one, for every certificate not deployed yet: the
/// ones this run recorded and any an earlier run left pending or failed. Called by every
/// command that records certificates, after the rest of its work (a dry run deploys
/// nothing).
pub fn deploy_undeployed(
    settings: &Settings,
    hook: Option<&DeployHook>,
    store: Option<&Store>,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<Deployment>> {
    let (Some(hook), Some(store)) = (hook, store) else {
        return Ok(Vec::new());
    };
    let keys = load_known_keys(settings, &[])?;
    let deployer = Deployer {
        hook,
        dir: &settings.deploy_dir,
        keys: &keys,
    };
    deployer.deploy_undeployed(store, now)
}

/// 1 when a deploy hook failed (after all other work was done), else `exit`.
pub fn with_deployments(exit: Exit, deployments: &[Deployment]) -> Exit {
    match deployments.iter().any(|d| !d.ok) {
        true => exit.worst(Exit::Failure),
        false => exit,
    }
}

/// Imports into Secrets Manager, when `[secrets_manager]` is configured, every recorded
/// certificate whose private key is known and that is not there yet: this run's and any
/// an earlier run left. Called by every command that records certificates, after the rest
/// of its work; a dry run only plans. The API key is fetched only when there is work.
pub fn store_in_secrets_manager(
    settings: &Settings,
    store: Option<&Store>,
    dry_run: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<SecretImport>> {
    let (Some(template), Some(store)) = (settings.secrets_manager_name(), store) else {
        return Ok(Vec::new());
    };
    let keys = load_known_keys(settings, &[])?;
    let planned = pipeline::secrets_manager::plan(store, &keys, template.as_deref())?;
    if dry_run || planned.is_empty() {
        return Ok(planned);
    }
    let client = match settings.secrets_manager() {
        Ok(None) => return Ok(Vec::new()),
        Ok(Some(connection)) => SecretsManager::new(connection).map_err(anyhow::Error::new),
        Err(e) => Err(anyhow::Error::new(e)),
    };
    match client {
        Ok(client) => pipeline::secrets_manager::import_unsettled(&client, store, &keys, now),
        // The API key or the client could not be had (a failing api_key_cmd, say): the
        // run's imports stand and are reported, each of these failed, and the next run
        // tries again.
        Err(e) => {
            let error = format!("{e:#}");
            log::error!("Secrets Manager: {error}; the next run tries again");
            Ok((planned.into_iter())
                .map(|import| SecretImport {
                    outcome: SecretOutcome::Failed,
                    error: Some(error.clone()),
                    ..import
                })
                .collect())
        }
    }
}

/// 1 when an import into Secrets Manager failed (after all other work was done).
pub fn with_secrets(exit: Exit, secrets: &[SecretImport]) -> Exit {
    match secrets.iter().any(|s| s.outcome == SecretOutcome::Failed) {
        true => exit.worst(Exit::Failure),
        false => exit,
    }
}

/// `[portal] replace_in_use`, `replace_timeout`, `replace_poll_interval` and
/// `delete_replaced` as the pipeline takes them.
pub fn replace_options(settings: &Settings) -> ReplaceOptions {
    ReplaceOptions {
        timeout: settings.replace_timeout,
        poll_interval: settings.replace_poll_interval,
        delete_replaced: settings.delete_replaced,
    }
}

/// With `[portal] replace_in_use`, moves the load balancer listeners of older certificates
/// to the new ones: this run's, and whatever an earlier run left unfinished. Called by
/// every command that uploads, after its uploads (a dry run moves nothing).
pub fn replace_in_use(
    settings: &Settings,
    portal: Option<&Portal>,
    store: Option<&Store>,
    now: OffsetDateTime,
) -> anyhow::Result<Replacements> {
    let (true, Some(portal), Some(store)) = (settings.replace_in_use, portal, store) else {
        return Ok(Replacements::default());
    };
    let options = replace_options(settings);
    Replacer { portal, options }.sweep(store, now)
}

/// 1 when a listener could not be moved (its state is kept for the next run), else `exit`.
pub fn with_replacements(exit: Exit, replacements: &Replacements) -> Exit {
    match replacements.failed() {
        true => exit.worst(Exit::Failure),
        false => exit,
    }
}

/// How long the watchdog lets a run wait for load balancers (none without replace_in_use).
pub fn replace_allowance(settings: &Settings) -> Duration {
    match settings.replace_in_use {
        true => settings.replace_timeout,
        false => Duration::ZERO,
    }
}

/// One line per certificate imported into Secrets Manager, with what to do on failure.
pub fn write_secrets<'a>(
    secrets: impl IntoIterator<Item = &'a SecretImport>,
    out: &mut dyn Write,
) -> io::Result<()> {
    for s in secrets {
        let line = format!(
            "certificate #{} {}: Secrets Manager {}",
            s.certificate_id,
            s.common_name,
            s.summary()
        );
        write_line(out, &line)?;
        if s.outcome == SecretOutcome::Failed {
            writeln!(
                out,
                "  The next import, poll or resend-and-import tries again, searching by name first."
            )?;
        }
    }
    Ok(())
}

/// One line per deploy hook run, with what to do about a failure.
pub fn write_deployments<'a>(
    deployments: impl IntoIterator<Item = &'a Deployment>,
    out: &mut dyn Write,
) -> io::Result<()> {
    for d in deployments {
        let line = format!(
            "certificate #{} {}: deploy hook {}",
            d.certificate_id,
            d.common_name,
            d.summary()
        );
        write_line(out, &line)?;
        if !d.ok {
            writeln!(
                out,
                "  The next run tries again; `fulfill deploy --pending` runs it now."
            )?;
        }
    }
    Ok(())
}

/// One line per listener moved (or not) and per old certificate deleted (or kept), with
/// what to do about a failure.
pub fn write_replacements(replacements: &Replacements, out: &mut dyn Write) -> io::Result<()> {
    for error in &replacements.errors {
        write_line(out, error)?;
    }
    for m in &replacements.listeners {
        let mut line = format!(
            "listener {} of load balancer {}: certificate {} -> {}: {}",
            m.listener_uuid,
            m.load_balancer_uuid,
            m.old_portal_id,
            m.new_portal_id,
            m.outcome.words()
        );
        if let Some(detail) = &m.detail {
            line.push_str(&format!(": {detail}"));
        }
        write_line(out, &line)?;
    }
    if replacements
        .listeners
        .iter()
        .any(|m| m.outcome.is_failure())
    {
        writeln!(
            out,
            "  The state is kept: the next run goes on, or `fulfill replace --certificate ID` now."
        )?;
    }
    for r in &replacements.retired {
        let line = match &r.detail {
            None => format!(
                "portal certificate {}: deleted from the store",
                r.old_portal_id
            ),
            Some(why) => format!("portal certificate {}: not deleted: {why}", r.old_portal_id),
        };
        write_line(out, &line)?;
    }
    Ok(())
}

//! One file per subcommand (as himalaya has them): its arguments, and their `execute`, a
//! short script over the pipeline and the I/O modules. This file holds what they share:
//! the [`Context`] every command runs in, the portal connection, and the watchdog.

pub mod check;
pub mod completions;
pub mod deploy;
pub mod import;
pub mod list;
pub mod log;
pub mod man;
pub mod orders;
pub mod poll;
pub mod replace;
pub mod resend;
pub mod resend_and_import;
pub mod show;

mod import_report;
mod local;
mod output;

use std::time::Duration;

use time::OffsetDateTime;

pub use self::local::{import_checks, load_known_keys, load_trust_anchors, open_store};
pub use self::output::{Output, Report, Table, days_left, parse_time, write_line};
use crate::config::Settings;
use crate::exit::{Exit, UsageError};
use crate::pipeline;
use crate::pipeline::deploy::{DeployHook, Deployer, Deployment};
use crate::pipeline::replace::{ReplaceOptions, Replacements, Replacer};
use crate::pipeline::secrets_manager::{SecretImport, SecretOutcome};
use crate::portal::Portal;
use crate::secrets_manager::SecretsManager;
use crate::store::{RunLock, Store};

/// What every command runs with, resolved once before any work starts.
pub struct Context {
    pub settings: Settings,
    /// The clock, read once: the pure modules take `now` as an argument.
    pub now: OffsetDateTime,
    pub output: Output,
}

/// The run lock every command that writes takes first, so two runs never record or upload
/// the same certificate at once; a second run stops with exit 75. A dry run writes
/// nothing, not even the lock file, and takes none.
pub fn lock_for_writing(settings: &Settings, dry_run: bool) -> anyhow::Result<Option<RunLock>> {
    if dry_run {
        return Ok(None);
    }
    Ok(Some(RunLock::acquire(&settings.database)?))
}

/// The deploy hook of this run: `--deploy-hook` where a command has it, else the config's.
pub fn deploy_hook(settings: &Settings, command_line: Option<&str>) -> Option<DeployHook> {
    let command = command_line
        .map(str::to_string)
        .or_else(|| settings.deploy_hook.clone())?;
    Some(DeployHook {
        command,
        timeout: settings.deploy_hook_timeout,
    })
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
    let Some(connection) = settings.secrets_manager()? else {
        return Ok(Vec::new());
    };
    let client = SecretsManager::new(connection)?;
    pipeline::secrets_manager::import_unsettled(&client, store, &keys, now)
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

/// The portal client, or a usage error saying how to configure it.
pub fn connect_portal(settings: &Settings) -> anyhow::Result<crate::portal::Portal> {
    let portal = settings.portal()?.ok_or_else(|| {
        UsageError(
            "no portal credentials: set [portal] username and api_key_cmd in the config file, \
             or SL_USERNAME and SL_API_KEY, or ~/.softlayer"
                .into(),
        )
    })?;
    Ok(crate::portal::Portal::new(portal)?)
}

/// Never hang a cron slot: whatever blocks (a server that stops answering, a stuck
/// child), the process ends with exit 1 once `limit` has passed, and the child running
/// then is killed with its whole process group. `why` names the settings that make up the
/// limit. State is committed step by step, so the next run goes on. Start it before the
/// config's commands run (`Settings::mailbox`, `connect_portal`).
pub fn start_watchdog(limit: Duration, why: &'static str) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        // Held to the end: the main thread, woken by the kill below with an error of its
        // own, waits here instead of exiting first with that error's code.
        let _exiting = WATCHDOG.lock();
        crate::child::kill_running();
        eprintln!(
            "fulfill: error: the run took longer than {} ({why}) and was stopped; \
             its state is kept and the next run goes on",
            humantime::format_duration(limit)
        );
        std::process::exit(Exit::Failure as i32);
    });
}

/// After a run of a command that uses the database (`Command::recorded_as`): records how
/// it ended in `runs` and writes `[metrics] textfile` from the database. Nothing happens
/// when no textfile is configured, or when the database does not exist (the metrics never
/// create it: `check` must not). A failure is a warning: the run's own exit stands.
pub fn write_metrics(context: &Context, command: &str, exit: Exit) {
    let Some(path) = &context.settings.metrics_textfile else {
        return;
    };
    let written = (|| -> anyhow::Result<bool> {
        if Store::open_read_only(&context.settings.database)?.is_none() {
            return Ok(false);
        }
        let store = Store::open(&context.settings.database)?;
        // When it ended: a `poll --wait` may have run for a while since `now`.
        store.record_run(command, exit as i64, OffsetDateTime::now_utc())?;
        let text = crate::metrics::render(&crate::metrics::Snapshot::read(&store)?);
        crate::metrics::write_textfile(path, &text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(true)
    })();
    match written {
        Ok(true) => ::log::debug!("[metrics] textfile {} written", path.display()),
        Ok(false) => ::log::debug!(
            "[metrics] textfile: no database at {} yet; not written",
            context.settings.database.display()
        ),
        Err(e) => ::log::warn!("[metrics] textfile {}: not written: {e:#}", path.display()),
    }
}

/// Held by a watchdog that is stopping the run.
static WATCHDOG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Returns at once, unless a watchdog is stopping the run: then it never returns, and the
/// run ends with the watchdog's exit code and message.
pub fn unless_stopped_by_watchdog() {
    drop(WATCHDOG.lock());
}

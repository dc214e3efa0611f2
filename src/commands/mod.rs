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
mod into_service;
mod local;
mod output;

use std::time::Duration;

use time::OffsetDateTime;

pub use self::into_service::{
    IntoService, deploy_undeployed, replace_allowance, replace_options, with_deployments,
    with_replacements, write_deployments, write_replacements,
};
pub use self::local::{import_checks, load_known_keys, load_trust_anchors, open_store};
pub use self::output::{Output, Report, Table, days_left, parse_time, write_line};
use crate::config::Settings;
use crate::exit::{Exit, UsageError};
use crate::pipeline::deploy::DeployHook;
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

//! One file per subcommand (as himalaya has them): its arguments, and their `execute`, a
//! short script over the pipeline and the I/O modules. This file holds what they share:
//! the [`Context`] every command runs in, the portal connection, and the watchdog.

pub mod check;
pub mod import;
pub mod list;
pub mod orders;
pub mod poll;
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
use crate::store::RunLock;

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
        crate::child::kill_running();
        eprintln!(
            "fulfill: error: the run took longer than {} ({why}) and was stopped; \
             its state is kept and the next run goes on",
            humantime::format_duration(limit)
        );
        std::process::exit(Exit::Failure as i32);
    });
}

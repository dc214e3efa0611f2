//! One file per subcommand, each a short script over the modules. This file holds what
//! they share: the exit codes, and reading the local keys and trust anchors.

pub mod check;
pub mod import;
pub mod list;
pub mod orders;
pub mod poll;
pub mod resend;
pub mod resend_and_import;
pub mod show;

mod local;
mod output;

pub use self::local::{import_checks, load_known_keys, load_trust_anchors, open_store};
pub use self::output::{Table, days_left, print_json};

/// The exit codes of the design, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Done = 0,
    Failure = 1,
    Usage = 2,
    TimedOut = 3,
    Rejected = 4,
    Locked = 75,
}

impl Exit {
    /// The exit of a run that did several things: a failure outranks a rejection, which
    /// outranks success, so cron mail shows the worst thing that happened.
    pub fn worst(self, other: Exit) -> Exit {
        let rank = |e: Exit| match e {
            Exit::Done => 0,
            Exit::Rejected => 1,
            Exit::TimedOut => 2,
            Exit::Failure => 3,
            Exit::Locked => 4,
            Exit::Usage => 5,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// A mistake in how the command was called or configured: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The portal client, or a usage error saying how to configure it.
pub fn connect_portal(settings: &crate::config::Settings) -> anyhow::Result<crate::portal::Portal> {
    let portal = settings.portal()?.ok_or_else(|| {
        UsageError(
            "no portal credentials: set [portal] username and api_key_cmd in the config file, \
             or SL_USERNAME and SL_API_KEY, or ~/.softlayer"
                .into(),
        )
    })?;
    Ok(crate::portal::Portal::new(portal)?)
}

//! How a run ends: the exit codes every command shares, and the one place an error
//! becomes one (ripgrep decides its exit code in one place too). The codes are in
//! docs/architecture.md and `fulfill --help`.

/// The exit codes, the same for every command.
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

    /// The exit of an error that stopped a command: another run holding the lock is 75
    /// (EX_TEMPFAIL: cron may simply retry), usage and configuration mistakes are 2,
    /// everything else is 1.
    pub fn for_error(err: &anyhow::Error) -> Exit {
        let busy = err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<crate::store::LockError>(),
                Some(crate::store::LockError::Busy { .. })
            )
        });
        let usage = err
            .chain()
            .any(|cause| cause.is::<UsageError>() || cause.is::<crate::config::ConfigError>());
        match (busy, usage) {
            (true, _) => Exit::Locked,
            (false, true) => Exit::Usage,
            (false, false) => Exit::Failure,
        }
    }
}

/// A mistake in how the command was called or configured: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

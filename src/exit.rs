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
    /// Every code, in numeric order: `fulfill man`'s EXIT STATUS lists them.
    pub const ALL: [Exit; 6] = [
        Exit::Done,
        Exit::Failure,
        Exit::Usage,
        Exit::TimedOut,
        Exit::Rejected,
        Exit::Locked,
    ];

    /// What the code tells the caller, in the words of the README's table.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Done => "done, or nothing to do",
            Exit::Failure => {
                "failure: portal, mailbox, store or I/O error, a deploy hook that failed, \
                 or the server refused to mark a mail (the certificate is in, the mark pending)"
            }
            Exit::Usage => "usage or configuration error",
            Exit::TimedOut => "timed out waiting for the fulfillment email (the state is kept)",
            Exit::Rejected => {
                "a certificate was found but rejected, or the mail holds no certificate"
            }
            Exit::Locked => "another run holds the lock (EX_TEMPFAIL: cron may simply retry)",
        }
    }

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
        let usage = err.chain().any(|cause| {
            cause.is::<UsageError>()
                || cause.is::<crate::config::ConfigError>()
                || (cause.downcast_ref::<crate::store::StoreError>()).is_some_and(|e| e.is_usage())
        });
        match (busy, usage) {
            (true, _) => Exit::Locked,
            (false, true) => Exit::Usage,
            (false, false) => Exit::Failure,
        }
    }
}

/// An error and its causes on one line, each said once: many errors (an I/O error's
/// reason, say) put their cause in their own message and also give it as their source, and
/// anyhow's `{:#}` would print it twice ("No such file or directory … : No such file or
/// directory …").
pub fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// A mistake in how the command was called or configured: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(io).context("cannot read x.toml: No such file or directory");
        assert_eq!(
            describe(&error),
            "cannot read x.toml: No such file or directory"
        );
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&error), "outer: inner");
    }
}

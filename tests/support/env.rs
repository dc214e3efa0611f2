//! The environment a test run must not hand down, and the one way tests start a child
//! process: [`command`], `std::process::Command::new` without any of [`FULFILL_ENVIRONMENT`].
//!
//! Declared in `dovecot.rs` (which some tests include on its own, without `support`) and
//! re-exported by `tests/support/mod.rs` as `support::env`: one module, wherever it is used.

use std::ffi::OsStr;
use std::process::Command;

/// The environment variables fulfill reads (or, RUST_LOG, might be thought to): a test
/// run inherits none of them from the developer's shell, so only what the test sets counts.
pub const FULFILL_ENVIRONMENT: [&str; 10] = [
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "FULFILL_CONFIG",
    "FULFILL_DB",
    "SL_USERNAME",
    "SL_API_KEY",
    "SL_ENDPOINT_URL",
    "FULFILL_IMAP_PASSWORD",
    "IBMCLOUD_API_KEY",
    "RUST_LOG",
];

/// `Command::new(program)` with every variable of [`FULFILL_ENVIRONMENT`] removed. Every
/// process a test starts (fulfill, `sh`, `kill`, `dovecot`, `doveadm`) starts from here, so
/// none of them, nor anything they start in turn, sees the developer's settings or secrets.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in FULFILL_ENVIRONMENT {
        command.env_remove(name);
    }
    command
}

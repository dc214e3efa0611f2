//! Shared by the integration tests: the real `fulfill` binary, run as a user runs it, in
//! a private HOME so no test touches the developer's config or database.

#![allow(dead_code)]

pub mod dovecot;
pub mod fake_imap;
pub mod portal;
pub mod secrets_manager;
pub mod shapes;

// The environment tests keep from their children, and `env::command`, the one way they
// start one. The module lives under `dovecot` because some tests include `dovecot.rs` on
// its own; here it is `support::env`.
pub use dovecot::env;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn samples() -> PathBuf {
    repo().join("samples")
}

/// The sample mails, sorted by name.
pub fn sample_mails() -> Vec<PathBuf> {
    let mut mails: Vec<PathBuf> = std::fs::read_dir(samples())
        .expect("samples/ is in the repository")
        .map(|e| e.expect("readable samples/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    mails.sort();
    mails
}

/// A private home: HOME and the XDG folders point into it.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where fulfill puts its database when neither --db nor FULFILL_DB is given.
    pub fn default_db(&self) -> PathBuf {
        self.path().join(".local/share/fulfill/fulfill.db")
    }

    /// `fulfill` with this home and nothing inherited that could change its behaviour.
    pub fn fulfill(&self) -> Command {
        Command::from_std(self.fulfill_process())
    }

    /// [`Home::fulfill`] as a `std::process::Command`, for a test that spawns the run and
    /// watches it (pipes, kill) rather than waiting for its output.
    pub fn fulfill_process(&self) -> std::process::Command {
        self.process(fulfill_binary())
    }

    /// `program` (a build of fulfill) run the same way, as a plain process.
    pub fn process(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        process_in(self.path(), program)
    }

    /// `fulfill --config samples/config.toml`.
    pub fn with_samples(&self) -> Command {
        let mut cmd = self.fulfill();
        cmd.arg("--config").arg(samples().join("config.toml"));
        cmd
    }
}

/// The `fulfill` binary cargo built for the integration tests.
pub fn fulfill_binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fulfill")
}

/// `program` (a build of fulfill) with `home` as its HOME and nothing inherited that could
/// change its behaviour (`env::command`), as a plain process: for a test that waits on the
/// child itself, to read its resource usage.
pub fn process_in(home: &Path, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = env::command(program);
    cmd.env("HOME", home).current_dir(repo());
    cmd
}

/// Opens a database the way a reviewer would, read-only.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("database exists")
}

pub fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs `inner` under a pseudo-terminal (util-linux `script`), as at a person's terminal:
/// stdout and stderr both reach the terminal, and come back together as the output's stdout.
/// `None` when `script` is missing, which fails the test under CI=true instead.
pub fn at_a_terminal(inner: &std::process::Command) -> Option<std::process::Output> {
    if env::command("script").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`script` (util-linux, Debian's bsdutils) is missing; scripts/test installs it"
        );
        eprintln!("skipped: no `script` to run fulfill under a pseudo-terminal");
        return None;
    }
    let quote =
        |arg: &std::ffi::OsStr| format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(quote)
        .collect();
    let mut outer = env::command("script");
    outer.args(["-qfec", &line.join(" "), "/dev/null"]);
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        outer.current_dir(dir);
    }
    Some(
        outer
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script runs"),
    )
}

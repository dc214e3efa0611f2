//! Settings from the command line, the environment and the config file, resolved once
//! before any work starts (as ripgrep turns its arguments into one value): flag > env >
//! config file > defaults. The command line's overrides come in as [`Overrides`]; this
//! module knows nothing of clap. Relative paths in the file are taken from the file's own
//! folder, so a config can be moved together with its keys. Secrets are fetched only when
//! a command asks for the portal or the mailbox (`credentials.rs`).

mod credentials;
mod file;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::credentials::run_secret_command;
use self::file::{ConfigFile, MailboxSection, PortalSection, SecretsManagerSection, duration_or};
pub use self::values::{ByteSize, HumanDuration, TrustRoots, parse_duration};
use self::values::{Parsed, SenderAddress};
use crate::mailbox::{AfterImport, FolderName, MailboxSettings, Security};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{path} holds a literal api_key but is readable by other users (mode {mode:o}); \
         run `chmod 600 {path}`, or use api_key_cmd"
    )]
    SecretFileReadable { path: PathBuf, mode: u32 },
    #[error("{what}: the command failed: {why}")]
    SecretCommand { what: String, why: String },
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} sets {what}, which fulfill runs as a command, but {why}: anyone who can change \
         it can run commands as this user. Run `chmod go-w {path}` (and on its folder), as \
         sshd's StrictModes asks of authorized_keys"
    )]
    UnsafeCommandFile {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("{0}")]
    NoHome(String),
}

/// What the command line (or its environment variables) says before the file does.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `FULFILL_CONFIG`: this file must exist.
    pub config_file: Option<PathBuf>,
    /// `--db` / `FULFILL_DB`.
    pub database: Option<PathBuf>,
}

/// Everything a command needs to know, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    pub database: PathBuf,
    pub key_dirs: Vec<PathBuf>,
    pub trust_roots: Vec<TrustRoots>,
    /// The largest mail (or file) read, `[mailbox] max_message_size`.
    pub max_message_size: usize,
    /// No second resend for an order within this time.
    pub resend_cooldown: Duration,
    /// Run after each import with the certificate PEM on stdin.
    pub deploy_hook: Option<String>,
    pub deploy_hook_timeout: Duration,
    /// `[deploy] dir`: the certificate files for the hook, one folder per common name.
    pub deploy_dir: PathBuf,
    /// `[metrics] textfile`: the Prometheus text file written after every run that uses
    /// the database.
    pub metrics_textfile: Option<PathBuf>,
    /// `[portal] replace_in_use`: move load balancer listeners to each new certificate.
    pub replace_in_use: bool,
    /// `[portal] replace_timeout`: how long one run waits for load balancers to be ACTIVE.
    pub replace_timeout: Duration,
    /// `[portal] replace_poll_interval`: how often a load balancer's status is read.
    pub replace_poll_interval: Duration,
    /// `[portal] delete_replaced`: delete an old certificate once nothing uses it.
    pub delete_replaced: bool,
    /// As written; credentials are resolved from it on demand (`credentials.rs`).
    portal: PortalSection,
    mailbox: MailboxSection,
    secrets_manager: SecretsManagerSection,
}

/// Default size limit for one mail: CA mails with a zip are well under 1 MiB.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;

pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
    let (config_file, file) = match &overrides.config_file {
        // An explicit file must exist; the default one may not.
        Some(path) => (Some(path.clone()), read_file(path)?),
        None => {
            let path = default_config_path()?;
            if path.exists() {
                (Some(path.clone()), read_file(&path)?)
            } else {
                (None, ConfigFile::default())
            }
        }
    };
    // --db / FULFILL_DB, then the file's `database`, then the XDG default.
    let database = match (&overrides.database, &file.database) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => relative_to(config_file.as_deref(), path),
        (None, None) => default_database_path()?,
    };
    let trust_roots = match file.validation.trust_roots {
        Some(roots) => roots.into_iter().map(|Parsed(r)| r).collect(),
        None => vec![TrustRoots::System],
    };
    let mut settings = Settings {
        config_file,
        database,
        key_dirs: file.keys.dirs,
        trust_roots,
        max_message_size: file
            .mailbox
            .max_message_size
            .as_ref()
            .map_or(DEFAULT_MAX_MESSAGE_SIZE, |Parsed(ByteSize(n))| *n),
        resend_cooldown: duration_or(&file.resend_cooldown, Duration::from_secs(3600)),
        deploy_hook: file.deploy_hook,
        deploy_hook_timeout: duration_or(&file.deploy_hook_timeout, Duration::from_secs(60)),
        deploy_dir: file.deploy.dir.unwrap_or_default(),
        metrics_textfile: file.metrics.textfile,
        replace_in_use: file.portal.replace_in_use.unwrap_or(false),
        replace_timeout: duration_or(&file.portal.replace_timeout, Duration::from_secs(600)),
        replace_poll_interval: duration_or(
            &file.portal.replace_poll_interval,
            Duration::from_secs(10),
        ),
        delete_replaced: file.portal.delete_replaced.unwrap_or(false),
        portal: file.portal,
        mailbox: file.mailbox,
        secrets_manager: file.secrets_manager,
    };
    settings.key_dirs = settings
        .key_dirs
        .iter()
        .map(|d| settings.relative(d))
        .collect();
    // Like certbot's live/: beside the database unless the file says where.
    settings.deploy_dir = match settings.deploy_dir.as_os_str().is_empty() {
        true => (settings.database.parent())
            .unwrap_or(Path::new("."))
            .join("live"),
        false => settings.relative(&settings.deploy_dir),
    };
    settings.metrics_textfile =
        (settings.metrics_textfile.as_deref()).map(|p| settings.relative(p));
    settings.trust_roots = (settings.trust_roots.iter())
        .map(|roots| match roots {
            TrustRoots::Bundle(path) => TrustRoots::Bundle(settings.relative(path)),
            TrustRoots::System => TrustRoots::System,
        })
        .collect();
    Ok(settings)
}

impl Settings {
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.config_file.clone().unwrap_or_default(),
            message,
        }
    }

    /// Relative paths in the config file are taken from the file's own folder, so a
    /// config works whatever directory cron starts fulfill in.
    fn relative(&self, path: &Path) -> PathBuf {
        relative_to(self.config_file.as_deref(), path)
    }

    /// `[mailbox] run_timeout`, read without running any `*_cmd`: the watchdog that
    /// bounds a run starts before the commands do.
    pub fn run_timeout(&self) -> Duration {
        duration_or(&self.mailbox.run_timeout, Duration::from_secs(600))
    }

    /// The mailbox connection, or `None` when `[mailbox]` names no host. The password or
    /// token is fetched here, when a command needs it.
    pub fn mailbox(&self) -> Result<Option<MailboxSettings>, ConfigError> {
        let section = &self.mailbox;
        let Some(host) = section.host.clone() else {
            return Ok(None);
        };
        let security = section
            .security
            .clone()
            .map_or(Security::Tls, |Parsed(s)| s);
        let username = section
            .username
            .clone()
            .ok_or_else(|| self.invalid("[mailbox] username is missing".into()))?;
        let credential = credentials::mailbox_credential(
            section.oauth2_token_cmd.as_deref(),
            section.password_cmd.as_deref(),
        )?
        .ok_or_else(|| {
            self.invalid(
                "[mailbox] needs password_cmd or oauth2_token_cmd (or FULFILL_IMAP_PASSWORD in the environment)".into(),
            )
        })?;
        let timeout = duration_or(&section.timeout, Duration::from_secs(30));
        Ok(Some(MailboxSettings {
            host,
            port: section.port.unwrap_or(match security {
                Security::Tls => 993,
                Security::StartTls => 143,
            }),
            security,
            ca_file: section.ca_file.as_deref().map(|p| self.relative(p)),
            tls_server_name: section.tls_server_name.clone(),
            pin_sha256: section.pin_sha256.clone(),
            username,
            credential,
            folder: (section.folder.clone()).map_or_else(
                || FolderName::new("INBOX").expect("a valid name"),
                |Parsed(f)| f,
            ),
            after_import: (section.after_import.clone()).map_or(AfterImport::Flag, |Parsed(a)| a),
            max_message_size: self.max_message_size as u64,
            connect_timeout: timeout,
            io_timeout: timeout,
            senders: (section.senders.iter().flatten())
                .map(|Parsed(SenderAddress(s))| s.clone())
                .collect(),
            since: duration_or(&section.since, Duration::from_secs(30 * 86400)),
            poll_interval: duration_or(&section.poll_interval, Duration::from_secs(60)),
            run_timeout: self.run_timeout(),
        }))
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: toml_error_without_source(&text, &e),
    })?;
    if let Some(what) = file.command_key() {
        refuse_writable_by_others(path, what)?;
    }
    Ok(file)
}

/// A file that names commands fulfill runs must be changeable by its owner only, and the
/// owner must be the user running fulfill or root; so must its folder (sshd's StrictModes).
fn refuse_writable_by_others(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let folder = path.parent().filter(|f| !f.as_os_str().is_empty());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for place in [Some(path), folder].into_iter().flatten() {
        let meta = std::fs::metadata(place).map_err(|source| ConfigError::Read {
            path: place.to_path_buf(),
            source,
        })?;
        let mode = meta.mode() & 0o7777;
        // A sticky folder (/tmp) lets others create files, not replace ours.
        let writable =
            mode & 0o022 != 0 && !(place == folder.unwrap_or(path) && mode & 0o1000 != 0);
        let why = if writable {
            format!(
                "{} is writable by other users (mode {:o})",
                place.display(),
                mode & 0o777
            )
        } else if meta.uid() != me && meta.uid() != 0 {
            format!(
                "{} belongs to another user (uid {})",
                place.display(),
                meta.uid()
            )
        } else {
            continue;
        };
        return Err(ConfigError::UnsafeCommandFile {
            path: path.to_path_buf(),
            what,
            why,
        });
    }
    Ok(())
}

/// Where and what the parse error is, without the line of the file that toml's own
/// message quotes: that line may hold a secret (`api_key = …` with a missing quote, or a
/// `password = …` under a misspelt key), and errors end up in cron mail and logs.
fn toml_error_without_source(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

fn home() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| ConfigError::NoHome("HOME is not set: give --config and --db".into()))
}

/// XDG base directories, as the freedesktop.org spec defines them.
fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf, ConfigError> {
    match std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        Some(dir) if dir.is_absolute() => Ok(dir),
        _ => Ok(home()?.join(fallback)),
    }
}

/// `path` from the folder of `config_file` when it is relative.
fn relative_to(config_file: Option<&Path>, path: &Path) -> PathBuf {
    match config_file.and_then(Path::parent) {
        Some(folder) if path.is_relative() => folder.join(path),
        _ => path.to_path_buf(),
    }
}

pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("fulfill/config.toml"))
}

pub fn default_database_path() -> Result<PathBuf, ConfigError> {
    Ok(xdg_dir("XDG_DATA_HOME", ".local/share")?.join("fulfill/fulfill.db"))
}

#[cfg(test)]
mod tests {
    use super::{ConfigFile, toml_error_without_source};

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        for (text, says) in [
            (
                "[portal]\napi_key = hunter2-secret\n",
                "line 2, column 11: ",
            ),
            (
                "[mailbox]\npassword = \"hunter2-secret\"\n",
                "line 2, column 1: unknown field `password`",
            ),
        ] {
            let error = toml::from_str::<ConfigFile>(text).expect_err("invalid");
            let message = toml_error_without_source(text, &error);
            assert!(message.starts_with(says), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    /// Every typed value is refused when the file is read, with its line and column.
    #[test]
    fn bad_values_are_refused_at_load_with_their_place() {
        for (text, says) in [
            (
                "[mailbox]\nsecurity = \"ssl\"\n",
                "line 2, column 12: security = \"ssl\"",
            ),
            (
                "[mailbox]\ntimeout = \"30 seconds please\"\n",
                "line 2, column 11: '30 seconds",
            ),
            (
                "[mailbox]\nafter_import = \"trash\"\n",
                "line 2, column 16: after_import",
            ),
            (
                "[mailbox]\nafter_import = \"move:Done\\r\\nA1 DELETE INBOX\"\n",
                "line 2, column 16: after_import: the folder name \"Done\\r\\nA1",
            ),
            (
                "[mailbox]\nfolder = \"INBOX\\u0000\"\n",
                "line 2, column 10: folder: the folder name \"INBOX\\x00\"",
            ),
            (
                "[mailbox]\nmax_message_size = \"big\"\n",
                "line 2, column 20: 'big'",
            ),
            (
                "[mailbox]\nsenders = [\"a\\\"b\"]\n",
                "line 2, column 11: senders",
            ),
            ("resend_cooldown = \"soon\"\n", "line 1, column 19: 'soon'"),
            (
                "[portal]\nretry_wait = \"1 parsec\"\n",
                "line 2, column 14: '1 parsec'",
            ),
            (
                "[validation]\ntrust_roots = [\"\"]\n",
                "line 2, column 15: trust_roots",
            ),
        ] {
            let error = toml::from_str::<ConfigFile>(text).expect_err(text);
            let message = toml_error_without_source(text, &error);
            assert!(message.starts_with(says), "{text:?}: {message}");
        }
    }
}

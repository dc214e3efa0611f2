//! Settings from the command line, the environment and the config file, resolved in one
//! place with the precedence of the design: flag > env > config file > defaults.
//! (The environment is read by clap for `--config`/`--db`; `~/.softlayer` joins with the
//! portal.) Relative paths in the file are taken from the file's own folder, so a config
//! can be moved together with its keys.

use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::mailbox::{AfterImport, Credential, MailboxSettings, Security};
use crate::portal::{DEFAULT_ENDPOINT, PortalSettings};
use crate::secret::{SECRET_ENV_VARS, Secret};

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
    #[error("{0}")]
    NoHome(String),
}

/// The config file as written. Every key is optional; commands say which they need.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// No second resend for an order within this time (default "1h").
    pub resend_cooldown: Option<String>,
    /// Run after each import with the certificate PEM on stdin.
    pub deploy_hook: Option<String>,
    /// How long the deploy hook may run (default "60s").
    pub deploy_hook_timeout: Option<String>,
    #[serde(default)]
    pub portal: PortalSection,
    #[serde(default)]
    pub mailbox: MailboxSection,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default)]
    pub validation: ValidationSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    pub endpoint: Option<String>,
    pub username: Option<String>,
    pub api_key_cmd: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Option<String>,
    /// Further attempts after a transient fault (default 3).
    pub retries: Option<u32>,
    /// Wait before the first retry, doubled each time (default "1s").
    pub retry_wait: Option<String>,
    /// PEM certificates trusted for the endpoint besides the system's (a TLS-inspecting
    /// proxy's CA, a private endpoint). Added to the system store, never replacing it.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The name to check the server certificate against (SSH tunnels, aliases).
    pub tls_server_name: Option<String>,
    /// SHA-256 of the server certificate: the safe alternative to turning checks off.
    pub pin_sha256: Option<String>,
    pub username: Option<String>,
    pub password_cmd: Option<String>,
    pub oauth2_token_cmd: Option<String>,
    pub folder: Option<String>,
    pub after_import: Option<String>,
    pub max_message_size: Option<String>,
    /// Only mail from these addresses is looked at.
    pub senders: Option<Vec<String>>,
    /// Only mail received within this time is looked at (default 30d).
    pub since: Option<String>,
    /// Limit on connecting and on every read or write (default 30s).
    pub timeout: Option<String>,
    /// How often to look for new mail on servers without IDLE (default 60s).
    pub poll_interval: Option<String>,
    /// Limit on a whole run without --wait (default 10m): a cron slot is never hung.
    pub run_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    #[serde(default = "system_roots")]
    pub trust_roots: Vec<String>,
}

impl Default for ValidationSection {
    fn default() -> Self {
        ValidationSection {
            trust_roots: system_roots(),
        }
    }
}

fn system_roots() -> Vec<String> {
    vec!["system".into()]
}

/// Where trust anchors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The operating system's bundle.
    System,
    /// A PEM bundle file.
    Bundle(PathBuf),
}

/// Everything a command needs to know, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    pub database: PathBuf,
    pub key_dirs: Vec<PathBuf>,
    pub trust_roots: Vec<TrustRoots>,
    pub max_message_size: usize,
    pub file: ConfigFile,
}

/// Default size limit for one mail: CA mails with a zip are well under 1 MiB.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;

/// Relative paths in the config file are taken from the file's own folder, so a config
/// works whatever directory cron starts fulfill in.
fn relative_to_config(config_file: Option<&Path>, path: &Path) -> PathBuf {
    match config_file.and_then(Path::parent) {
        Some(folder) if path.is_relative() => folder.join(path),
        _ => path.to_path_buf(),
    }
}

pub fn load(global: &GlobalArgs) -> Result<Settings, ConfigError> {
    let (config_file, file) = match &global.config {
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
    let relative = |p: &Path| relative_to_config(config_file.as_deref(), p);

    let database = match &global.db {
        Some(path) => path.clone(),
        None => default_database_path()?,
    };
    let key_dirs = file.keys.dirs.iter().map(|d| relative(d)).collect();
    let trust_roots = file
        .validation
        .trust_roots
        .iter()
        .map(|r| match r.as_str() {
            "system" => TrustRoots::System,
            path => TrustRoots::Bundle(relative(Path::new(path))),
        })
        .collect();
    let invalid = |message: String| ConfigError::Invalid {
        path: config_file.clone().unwrap_or_default(),
        message,
    };
    let max_message_size = match &file.mailbox.max_message_size {
        Some(text) => {
            parse_size(text).map_err(|e| invalid(format!("[mailbox] max_message_size: {e}")))?
        }
        None => DEFAULT_MAX_MESSAGE_SIZE,
    };
    Ok(Settings {
        config_file,
        database,
        key_dirs,
        trust_roots,
        max_message_size,
        file,
    })
}

impl Settings {
    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.config_file.clone().unwrap_or_default(),
            message,
        }
    }

    /// The portal connection, or `None` when no credentials are configured anywhere.
    /// Resolved only when a command needs it, so `list` never runs `api_key_cmd`.
    /// Precedence (design): environment > config file > `~/.softlayer`. There is no flag for
    /// the API key: a secret on a command line is visible in `ps`.
    pub fn portal(&self) -> Result<Option<PortalSettings>, ConfigError> {
        let section = &self.file.portal;
        let softlayer = read_softlayer_file()?;
        let from_softlayer = |key: &str| {
            softlayer
                .as_ref()
                .and_then(|s| s.get(key).cloned())
                .filter(|v| !v.is_empty())
        };

        let username = env_value("SL_USERNAME")
            .or_else(|| section.username.clone())
            .or_else(|| from_softlayer("username"));
        let api_key = if let Some(key) = env_value("SL_API_KEY") {
            Some(Secret::new(key))
        } else if let Some(command) = &section.api_key_cmd {
            Some(run_secret_command(command, "[portal] api_key_cmd")?)
        } else if let Some(key) = &section.api_key {
            if let Some(path) = &self.config_file {
                refuse_readable_secret_file(path)?;
            }
            Some(Secret::new(key.clone()))
        } else if let Some(key) = from_softlayer("api_key") {
            refuse_readable_secret_file(&softlayer_file()?)?;
            Some(Secret::new(key))
        } else {
            None
        };
        let (username, api_key) = match (username, api_key) {
            (None, None) => return Ok(None),
            (Some(username), Some(api_key)) if !api_key.is_empty() => (username, api_key),
            (None, Some(_)) => {
                return Err(self.invalid(
                    "an API key is configured but no username: set [portal] username or SL_USERNAME \
                     (\"apikey\" for an IBM Cloud API key)"
                        .into(),
                ));
            }
            (Some(_), _) => {
                return Err(self.invalid(
                    "a portal username is configured but no API key: set [portal] api_key_cmd or SL_API_KEY".into(),
                ));
            }
        };

        let endpoint = env_value("SL_ENDPOINT_URL")
            .or_else(|| section.endpoint.clone())
            .or_else(|| from_softlayer("endpoint_url"))
            .map(|e| rest_endpoint(&e))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let timeout = match (&section.timeout, from_softlayer("timeout")) {
            (Some(text), _) => {
                parse_duration(text).map_err(|e| self.invalid(format!("[portal] timeout: {e}")))?
            }
            // ~/.softlayer gives seconds, 0 meaning none (softlayer-python); fulfill always has one.
            (None, Some(seconds)) => match seconds.parse::<f64>() {
                Ok(s) if s > 0.0 => Duration::from_secs_f64(s),
                _ => DEFAULT_PORTAL_TIMEOUT,
            },
            (None, None) => DEFAULT_PORTAL_TIMEOUT,
        };
        let retry_wait = match &section.retry_wait {
            Some(text) => parse_duration(text)
                .map_err(|e| self.invalid(format!("[portal] retry_wait: {e}")))?,
            None => Duration::from_secs(1),
        };
        Ok(Some(PortalSettings {
            endpoint,
            username,
            api_key,
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            retries: section.retries.unwrap_or(3),
            retry_wait,
            ca_file: section
                .ca_file
                .as_deref()
                .map(|p| relative_to_config(self.config_file.as_deref(), p)),
        }))
    }
}

impl Settings {
    /// The mailbox connection, or `None` when `[mailbox]` names no host. Secrets are
    /// fetched here, when a command needs them.
    pub fn mailbox(&self) -> Result<Option<MailboxConfig>, ConfigError> {
        let section = &self.file.mailbox;
        let Some(host) = section.host.clone() else {
            return Ok(None);
        };
        let security = match section.security.as_deref().unwrap_or("tls") {
            "tls" => Security::Tls,
            "starttls" => Security::StartTls,
            other => {
                return Err(self.invalid(format!(
                    "[mailbox] security = \"{other}\": use \"tls\" (port 993) or \"starttls\" (port 143)"
                )));
            }
        };
        let port = section.port.unwrap_or(match security {
            Security::Tls => 993,
            Security::StartTls => 143,
        });
        let username = section
            .username
            .clone()
            .ok_or_else(|| self.invalid("[mailbox] username is missing".into()))?;
        let credential = if let Some(password) = env_value("FULFILL_IMAP_PASSWORD") {
            Credential::Password(Secret::new(password))
        } else if let Some(command) = &section.oauth2_token_cmd {
            // Tokens expire: run the command on every connect (getmail6 #60).
            Credential::OAuth2Token(run_secret_command(command, "[mailbox] oauth2_token_cmd")?)
        } else if let Some(command) = &section.password_cmd {
            Credential::Password(run_secret_command(command, "[mailbox] password_cmd")?)
        } else {
            return Err(self.invalid(
                "[mailbox] needs password_cmd or oauth2_token_cmd (or FULFILL_IMAP_PASSWORD in the environment)".into(),
            ));
        };
        let after_import = match section.after_import.as_deref().unwrap_or("flag") {
            "flag" => AfterImport::Flag,
            "seen" => AfterImport::Seen,
            "none" => AfterImport::Nothing,
            other => match other.strip_prefix("move:") {
                Some(folder) if !folder.is_empty() => AfterImport::Move(folder.to_string()),
                _ => {
                    return Err(self.invalid(format!(
                        "[mailbox] after_import = \"{other}\": use \"flag\", \"seen\", \"move:FOLDER\" or \"none\""
                    )));
                }
            },
        };
        let senders = section.senders.clone().unwrap_or_default();
        if let Some(bad) = senders
            .iter()
            .find(|s| s.is_empty() || s.contains(['"', '\\', '\r', '\n']))
        {
            return Err(self.invalid(format!("[mailbox] senders: '{bad}' is not an address")));
        }
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            Some(text) => {
                parse_duration(text).map_err(|e| self.invalid(format!("[mailbox] {key}: {e}")))
            }
            None => Ok(default),
        };
        let timeout = duration("timeout", &section.timeout, Duration::from_secs(30))?;
        let since = duration("since", &section.since, Duration::from_secs(30 * 86400))?;
        let poll_interval = duration(
            "poll_interval",
            &section.poll_interval,
            Duration::from_secs(60),
        )?;
        let run_timeout = duration(
            "run_timeout",
            &section.run_timeout,
            Duration::from_secs(600),
        )?;
        let relative = |p: &Path| relative_to_config(self.config_file.as_deref(), p);
        Ok(Some(MailboxConfig {
            session: MailboxSettings {
                host,
                port,
                security,
                ca_file: section.ca_file.as_deref().map(relative),
                tls_server_name: section.tls_server_name.clone(),
                pin_sha256: section.pin_sha256.clone(),
                username,
                credential,
                folder: section.folder.clone().unwrap_or_else(|| "INBOX".into()),
                after_import,
                max_message_size: self.max_message_size as u64,
                connect_timeout: timeout,
                io_timeout: timeout,
                senders,
            },
            since,
            poll_interval,
            run_timeout,
        }))
    }
}

impl Settings {
    /// `resend_cooldown`, default one hour.
    pub fn resend_cooldown(&self) -> Result<Duration, ConfigError> {
        match &self.file.resend_cooldown {
            Some(text) => {
                parse_duration(text).map_err(|e| self.invalid(format!("resend_cooldown: {e}")))
            }
            None => Ok(Duration::from_secs(3600)),
        }
    }

    /// `deploy_hook_timeout`, default one minute.
    pub fn deploy_hook_timeout(&self) -> Result<Duration, ConfigError> {
        match &self.file.deploy_hook_timeout {
            Some(text) => {
                parse_duration(text).map_err(|e| self.invalid(format!("deploy_hook_timeout: {e}")))
            }
            None => Ok(Duration::from_secs(60)),
        }
    }
}

/// The mailbox settings and how a run uses them.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    pub session: MailboxSettings,
    /// Only mail received within this time is looked at.
    pub since: Duration,
    pub poll_interval: Duration,
    pub run_timeout: Duration,
}

/// A call to the portal that gets no complete answer in this time is abandoned.
const DEFAULT_PORTAL_TIMEOUT: Duration = Duration::from_secs(30);

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// "30s", "15m", "1h": humantime's format.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 30s or 15m: {e}"))
}

/// slcli's default endpoint is XML-RPC, and REST is chosen only when the URL contains
/// `/rest` (softlayer-api.md §4.2): map an XML-RPC URL to its REST twin.
fn rest_endpoint(endpoint: &str) -> String {
    endpoint.replace("/xmlrpc/", "/rest/")
}

fn softlayer_file() -> Result<PathBuf, ConfigError> {
    Ok(home()?.join(".softlayer"))
}

/// The `[softlayer]` section of `~/.softlayer`, as slcli and softlayer-go read it.
fn read_softlayer_file() -> Result<Option<std::collections::HashMap<String, String>>, ConfigError> {
    let Ok(path) = softlayer_file() else {
        return Ok(None);
    };
    if !path.exists() {
        return Ok(None);
    }
    let ini = ini::Ini::load_from_file(&path).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(ini.section(Some("softlayer")).map(|section| {
        section
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }))
}

/// A file holding a literal secret must be readable by its owner only.
fn refuse_readable_secret_file(path: &Path) -> Result<(), ConfigError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileReadable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// How long a `*_cmd` may take (a password manager may ask for a PIN on a terminal).
const SECRET_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` with `sh -c` and returns its first line of output as a secret. The
/// secret comes back through a pipe, never through arguments or the environment; the
/// command's environment holds no secret fulfill was given ([`SECRET_ENV_VARS`]).
pub fn run_secret_command(command: &str, what: &str) -> Result<Secret, ConfigError> {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let fail = |why: String| ConfigError::SecretCommand {
        what: what.to_string(),
        why,
    };
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // One secret's command never sees another secret given in the environment.
    for name in SECRET_ENV_VARS {
        sh.env_remove(name);
    }
    let mut child = sh
        .spawn()
        .map_err(|e| fail(format!("cannot start sh: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| fail("no output pipe".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| fail("no error pipe".into()))?;
    // Read in threads so a chatty command cannot fill a pipe and stall.
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + SECRET_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {} s; it was stopped",
                    SECRET_COMMAND_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let output = out.join().unwrap_or_default();
    let errors = err.join().unwrap_or_default();
    if !status.success() {
        // Its error output is shown (it says what went wrong); its standard output,
        // which may hold part of a secret, is not.
        return Err(fail(format!(
            "{status}: {}",
            String::from_utf8_lossy(&errors).trim()
        )));
    }
    let text = String::from_utf8(output).map_err(|_| fail("its output is not text".into()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(fail("it printed nothing".into()));
    }
    Ok(Secret::new(secret))
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: toml_error_without_source(&text, &e),
    })
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

pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("fulfill/config.toml"))
}

pub fn default_database_path() -> Result<PathBuf, ConfigError> {
    Ok(xdg_dir("XDG_DATA_HOME", ".local/share")?.join("fulfill/fulfill.db"))
}

/// "25MiB", "512 KiB", "1MB", "4096": a byte count.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 25MiB"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::{ConfigFile, parse_size, toml_error_without_source};

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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25MiB"), Ok(25 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_size("3 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
    }
}

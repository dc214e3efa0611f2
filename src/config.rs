//! Settings from the command line, the environment and the config file, resolved in one
//! place with the precedence of the design: flag > env > config file > defaults.
//! (The environment is read by clap for `--config`/`--db`; `~/.softlayer` joins with the
//! portal.) Relative paths in the file are taken from the file's own folder, so a config
//! can be moved together with its keys.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::GlobalArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    NoHome(String),
}

/// The config file as written. Every key is optional; commands say which they need.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_cmd: Option<String>,
    pub folder: Option<String>,
    pub after_import: Option<String>,
    pub max_message_size: Option<String>,
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
    let base = config_file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let relative = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

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
        Some(text) => parse_size(text).map_err(|e| invalid(format!("[mailbox] max_message_size: {e}")))?,
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

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn home() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| ConfigError::NoHome("HOME is not set: give --config and --db".into()))
}

/// XDG base directories, as the freedesktop.org spec defines them.
fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf, ConfigError> {
    match std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from) {
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
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
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
        other => return Err(format!("unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25MiB"), Ok(25 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("unknown size unit"));
    }
}

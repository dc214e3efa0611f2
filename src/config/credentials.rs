//! Credentials and the portal connection, resolved when a command needs them (so `list`
//! never runs `api_key_cmd`). Precedence: environment > config file > `~/.softlayer`
//! (slcli's file). There is no flag for a secret: a command line is visible in `ps`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::file::{PortalSection, duration_or};
use super::values::{EndpointUrl, HumanDuration, Parsed};
use super::{ConfigError, Settings, home};
use crate::child::{self, Ended};
use crate::mailbox::Credential;
use crate::portal::{DEFAULT_ENDPOINT, PortalSettings};
use crate::secret::Secret;
use crate::secrets_manager::SecretsManagerSettings;
use crate::secrets_manager::iam::DEFAULT_IAM_ENDPOINT;

/// A call to the portal that gets no complete answer in this time is abandoned.
const DEFAULT_PORTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `*_cmd` may take (a password manager may ask for a PIN on a terminal).
pub const SECRET_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The most of a `*_cmd`'s output that is kept (its first line is the secret).
const SECRET_COMMAND_OUTPUT: usize = 64 * 1024;

/// The `[softlayer]` section of `~/.softlayer`, keys lowercased, empty values left out.
struct SoftlayerFile(HashMap<String, String>);

impl SoftlayerFile {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

impl Settings {
    /// The portal connection, or `None` when no credentials are configured anywhere.
    pub fn portal(&self) -> Result<Option<PortalSettings>, ConfigError> {
        let section = &self.portal;
        let softlayer = read_softlayer_file()?;
        let from_softlayer = |key: &str| softlayer.as_ref().and_then(|s| s.get(key));
        let username = env_value("SL_USERNAME")
            .or_else(|| section.username.clone())
            .or_else(|| from_softlayer("username"));
        let api_key = self.api_key(section, from_softlayer("api_key"))?;
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
        let timeout = portal_timeout(section, from_softlayer("timeout"));
        Ok(Some(PortalSettings {
            endpoint,
            username,
            api_key,
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            retries: section.retries.unwrap_or(3),
            retry_wait: duration_or(&section.retry_wait, Duration::from_secs(1)),
            ca_file: section.ca_file.as_deref().map(|p| self.relative(p)),
        }))
    }

    /// The API key, from the first place that has one.
    fn api_key(
        &self,
        section: &PortalSection,
        from_softlayer: Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(key) = env_value("SL_API_KEY") {
            return Ok(Some(Secret::new(key)));
        }
        if let Some(command) = &section.api_key_cmd {
            return run_secret_command(command, "[portal] api_key_cmd", SECRET_COMMAND_TIMEOUT)
                .map(Some);
        }
        if let Some(key) = &section.api_key {
            if let Some(path) = &self.config_file {
                refuse_readable_secret_file(path)?;
            }
            return Ok(Some(Secret::new(key.clone())));
        }
        if let Some(key) = from_softlayer {
            refuse_readable_secret_file(&softlayer_file()?)?;
            return Ok(Some(Secret::new(key)));
        }
        Ok(None)
    }
}

impl Settings {
    /// `Some` when `[secrets_manager] url` is set, with its `name` template: what a dry
    /// run plans with, without running `api_key_cmd`.
    pub fn secrets_manager_name(&self) -> Option<Option<String>> {
        let section = &self.secrets_manager;
        section
            .url
            .as_ref()
            .map(|_| section.name.as_ref().map(|Parsed(n)| n.0.clone()))
    }

    /// The Secrets Manager connection, or `None` when `[secrets_manager] url` is not set.
    /// The API key is fetched here: `IBMCLOUD_API_KEY`, else `api_key_cmd`.
    pub fn secrets_manager(&self) -> Result<Option<SecretsManagerSettings>, ConfigError> {
        let section = &self.secrets_manager;
        let Some(Parsed(EndpointUrl(url))) = &section.url else {
            return Ok(None);
        };
        let api_key = match (env_value("IBMCLOUD_API_KEY"), &section.api_key_cmd) {
            (Some(key), _) => Secret::new(key),
            (None, Some(command)) => run_secret_command(
                command,
                "[secrets_manager] api_key_cmd",
                SECRET_COMMAND_TIMEOUT,
            )?,
            (None, None) => {
                return Err(self.invalid(
                    "[secrets_manager] url is set but no API key: set [secrets_manager] api_key_cmd \
                     or IBMCLOUD_API_KEY"
                        .into(),
                ));
            }
        };
        Ok(Some(SecretsManagerSettings {
            url: url.clone(),
            iam_endpoint: (section.iam_endpoint.as_ref())
                .map_or(DEFAULT_IAM_ENDPOINT.to_string(), |Parsed(e)| e.0.clone()),
            api_key,
            secret_group_id: (section.secret_group_id.as_ref())
                .map_or("default".to_string(), |Parsed(g)| g.0.clone()),
            name: section.name.as_ref().map(|Parsed(n)| n.0.clone()),
            timeout: duration_or(&section.timeout, DEFAULT_PORTAL_TIMEOUT),
            ca_file: section.ca_file.as_deref().map(|p| self.relative(p)),
            retries: 3,
            retry_wait: Duration::from_secs(1),
        }))
    }
}

/// `[portal] timeout`, else `~/.softlayer`'s timeout in seconds (0 means none there, as in
/// softlayer-python; fulfill always keeps one), else the default.
fn portal_timeout(section: &PortalSection, from_softlayer: Option<String>) -> Duration {
    match (&section.timeout, from_softlayer) {
        (Some(Parsed(HumanDuration(timeout))), _) => *timeout,
        (None, Some(seconds)) => match seconds.parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
            _ => DEFAULT_PORTAL_TIMEOUT,
        },
        (None, None) => DEFAULT_PORTAL_TIMEOUT,
    }
}

/// The mailbox credential: `FULFILL_IMAP_PASSWORD`, else the token or password command.
pub(super) fn mailbox_credential(
    oauth2_token_cmd: Option<&str>,
    password_cmd: Option<&str>,
) -> Result<Option<Credential>, ConfigError> {
    Ok(Some(
        if let Some(password) = env_value("FULFILL_IMAP_PASSWORD") {
            Credential::Password(Secret::new(password))
        } else if let Some(command) = oauth2_token_cmd {
            // Tokens expire: run the command on every connect (getmail6 issue #60).
            Credential::OAuth2Token(run_secret_command(
                command,
                "[mailbox] oauth2_token_cmd",
                SECRET_COMMAND_TIMEOUT,
            )?)
        } else if let Some(command) = password_cmd {
            Credential::Password(run_secret_command(
                command,
                "[mailbox] password_cmd",
                SECRET_COMMAND_TIMEOUT,
            )?)
        } else {
            return Ok(None);
        },
    ))
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// slcli's default endpoint is XML-RPC, and REST is chosen only when the URL contains
/// `/rest` (docs/softlayer-api.md §4.2): map an XML-RPC URL to its REST twin.
fn rest_endpoint(endpoint: &str) -> String {
    endpoint.replace("/xmlrpc/", "/rest/")
}

fn softlayer_file() -> Result<PathBuf, ConfigError> {
    Ok(home()?.join(".softlayer"))
}

/// The `[softlayer]` section of `~/.softlayer`, as slcli and softlayer-go read it.
fn read_softlayer_file() -> Result<Option<SoftlayerFile>, ConfigError> {
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
        SoftlayerFile(
            section
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
                .collect(),
        )
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

/// Runs `command` with `sh -c` and returns its first line of output as a secret. The
/// secret comes back through a pipe, never through arguments or the environment; the
/// command's environment holds no secret fulfill was given (`child::shell`).
///
/// Everything happens within `timeout`: reading the output too, so a background process
/// that keeps the pipe open cannot hold the run. Once the shell has ended its first line
/// counts and the rest of its process group is killed: `sleep 600 & echo pw` gives "pw"
/// at once and leaves no `sleep` behind. Past `timeout` the whole group is killed and the
/// command fails, naming the limit.
pub fn run_secret_command(
    command: &str,
    what: &str,
    timeout: Duration,
) -> Result<Secret, ConfigError> {
    let fail = |why: String| ConfigError::SecretCommand {
        what: what.to_string(),
        why,
    };
    let mut sh = child::shell(command);
    sh.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let finished = child::run(&mut sh, b"", timeout, SECRET_COMMAND_OUTPUT)
        .map_err(|e| fail(format!("cannot run sh: {e}")))?;
    let status = match finished.ended {
        Ended::Exited(status) => status,
        Ended::Killed => {
            return Err(fail(format!(
                "no answer within {}; it was stopped",
                humantime::format_duration(timeout)
            )));
        }
    };
    if !status.success() {
        // Its error output is shown (it says what went wrong); its standard output,
        // which may hold part of a secret, is not.
        let errors = String::from_utf8_lossy(&finished.stderr);
        let errors: String = errors.trim().chars().take(4096).collect();
        return Err(fail(format!("{status}: {errors}")));
    }
    let text =
        String::from_utf8(finished.stdout).map_err(|_| fail("its output is not text".into()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(fail("it printed nothing".into()));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn group_alive(pgid: i32) -> bool {
        !child::testing::group_ends(pgid)
    }

    /// The shell writes its pid (its process group's id, as the group's leader) here.
    fn pid_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        (dir, path)
    }

    fn read_pid(path: &Path) -> i32 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_background_child_does_not_hold_the_secret_back_and_is_killed() {
        let (_dir, pid) = pid_file();
        let started = Instant::now();
        let secret = run_secret_command(
            &format!("echo $$ > {}; sleep 600 & echo pw", pid.display()),
            "[mailbox] password_cmd",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(secret.expose(), "pw");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "returned when the shell ended: {:?}",
            started.elapsed()
        );
        assert!(!group_alive(read_pid(&pid)), "the sleep was killed");
    }

    #[test]
    fn a_command_past_its_limit_fails_naming_it_and_leaves_nothing() {
        let (_dir, pid) = pid_file();
        let started = Instant::now();
        let error = run_secret_command(
            &format!("echo $$ > {}; sleep 600 & sleep 600", pid.display()),
            "[mailbox] password_cmd",
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            error.contains("password_cmd") && error.contains("no answer within 300ms"),
            "{error}"
        );
        assert!(!group_alive(read_pid(&pid)));
    }

    #[test]
    fn a_failing_command_shows_its_errors_not_its_output() {
        let error = run_secret_command(
            "echo half-a-secret; echo locked >&2; exit 2",
            "[portal] api_key_cmd",
            Duration::from_secs(10),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("locked"), "{error}");
        assert!(!error.contains("half-a-secret"), "{error}");
    }
}

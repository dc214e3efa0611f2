//! The config file as written: every key optional, every value typed when it is read
//! (`values.rs`), unknown keys refused. `Settings` (mod.rs) resolves it with the defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::{
    ByteSize, EndpointUrl, HumanDuration, Parsed, SecretGroupId, SecretNameTemplate, SenderAddress,
    TrustRoots,
};
use crate::mailbox::{AfterImport, FolderName, Security};

/// A duration value, parsed when the file is read.
type DurationValue = Option<Parsed<HumanDuration>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The SQLite database (default `$XDG_DATA_HOME/fulfill/fulfill.db`); `--db` and
    /// `FULFILL_DB` come first. With it, root's `fulfill list --config /etc/…` reads the
    /// service's database, not root's own.
    pub database: Option<PathBuf>,
    /// No second resend for an order within this time (default "1h").
    pub resend_cooldown: DurationValue,
    /// Run after each import with the certificate PEM on stdin.
    pub deploy_hook: Option<String>,
    /// How long the deploy hook may run (default "60s").
    pub deploy_hook_timeout: DurationValue,
    #[serde(default)]
    pub portal: PortalSection,
    #[serde(default)]
    pub mailbox: MailboxSection,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default)]
    pub validation: ValidationSection,
    #[serde(default)]
    pub deploy: DeploySection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub secrets_manager: SecretsManagerSection,
}

/// `[secrets_manager]`: IBM Cloud Secrets Manager, a second certificate store beside the
/// portal's (docs/secrets-manager.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerSection {
    /// The instance's URL; none: Secrets Manager is not used.
    pub url: Option<Parsed<EndpointUrl>>,
    /// The IAM token endpoint (default https://iam.cloud.ibm.com/identity/token).
    pub iam_endpoint: Option<Parsed<EndpointUrl>>,
    /// Prints the IBM Cloud API key; `IBMCLOUD_API_KEY` in the environment wins.
    pub api_key_cmd: Option<String>,
    /// The secret group (default "default").
    pub secret_group_id: Option<Parsed<SecretGroupId>>,
    /// The secret's name, `{common_name}` replaced (default: the common name).
    pub name: Option<Parsed<SecretNameTemplate>>,
    /// Limit on one whole call (default "30s").
    pub timeout: DurationValue,
    /// PEM certificates trusted for the instance and IAM besides the system's (a
    /// TLS-inspecting proxy's CA, a private endpoint). Added, never replacing the store.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// The Prometheus text file written after every run that uses the database (for
    /// node_exporter's textfile collector); none when unset.
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySection {
    /// Where the certificate files for the deploy hook go, one folder per common name
    /// (default: `live/` beside the database).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    pub endpoint: Option<String>,
    pub username: Option<String>,
    pub api_key_cmd: Option<String>,
    pub api_key: Option<String>,
    pub timeout: DurationValue,
    /// Further attempts after a transient fault (default 3).
    pub retries: Option<u32>,
    /// Wait before the first retry, doubled each time (default "1s").
    pub retry_wait: DurationValue,
    /// PEM certificates trusted for the endpoint besides the system's (a TLS-inspecting
    /// proxy's CA, a private endpoint). Added to the system store, never replacing it.
    pub ca_file: Option<PathBuf>,
    /// After an upload, move the load balancer listeners that use an older certificate
    /// of the same name to the new one (default false).
    pub replace_in_use: Option<bool>,
    /// How long a run waits for load balancers to come back to ACTIVE (default "10m").
    pub replace_timeout: DurationValue,
    /// How often a load balancer's status is read while it applies a change (default "10s").
    pub replace_poll_interval: DurationValue,
    /// Delete an old certificate from the store once nothing uses it (default false).
    pub delete_replaced: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Parsed<Security>>,
    pub ca_file: Option<PathBuf>,
    /// The name to check the server certificate against (SSH tunnels, aliases).
    pub tls_server_name: Option<String>,
    /// SHA-256 of the server certificate: the safe alternative to turning checks off.
    pub pin_sha256: Option<String>,
    pub username: Option<String>,
    pub password_cmd: Option<String>,
    pub oauth2_token_cmd: Option<String>,
    pub folder: Option<Parsed<FolderName>>,
    pub after_import: Option<Parsed<AfterImport>>,
    pub max_message_size: Option<Parsed<ByteSize>>,
    /// Only mail from these addresses is looked at.
    pub senders: Option<Vec<Parsed<SenderAddress>>>,
    /// Only mail received within this time is looked at (default 30d).
    pub since: DurationValue,
    /// Limit on connecting and on every read or write (default 30s).
    pub timeout: DurationValue,
    /// How often to look for new mail on servers without IDLE (default 60s).
    pub poll_interval: DurationValue,
    /// Limit on a whole run without --wait (default 10m): a cron slot is never hung.
    pub run_timeout: DurationValue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    /// Default: `["system"]`.
    pub trust_roots: Option<Vec<Parsed<TrustRoots>>>,
}

impl ConfigFile {
    /// The first key that names a command fulfill runs, if any.
    pub fn command_key(&self) -> Option<&'static str> {
        [
            (self.portal.api_key_cmd.is_some(), "[portal] api_key_cmd"),
            (
                self.mailbox.password_cmd.is_some(),
                "[mailbox] password_cmd",
            ),
            (
                self.mailbox.oauth2_token_cmd.is_some(),
                "[mailbox] oauth2_token_cmd",
            ),
            (self.deploy_hook.is_some(), "deploy_hook"),
            (
                self.secrets_manager.api_key_cmd.is_some(),
                "[secrets_manager] api_key_cmd",
            ),
        ]
        .into_iter()
        .find_map(|(set, key)| set.then_some(key))
    }
}

/// The value of an optional duration key, or its default.
pub fn duration_or(value: &DurationValue, default: std::time::Duration) -> std::time::Duration {
    value
        .as_ref()
        .map_or(default, |Parsed(HumanDuration(d))| *d)
}

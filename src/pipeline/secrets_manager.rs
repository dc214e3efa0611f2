//! IBM Cloud Secrets Manager as a second certificate store: every recorded certificate
//! whose private key is known is imported, as a new secret or as a new version of the
//! secret of its name, unless the secret's current version is that certificate already.
//! `import`, `poll` and `resend-and-import` run it after their other work, like the
//! deploy hook; its state per certificate is in `secrets_manager` (store).
//!
//! Crash safety: the row is pending before the first call, and the secret is searched by
//! name before every create (docs/secrets-manager.md §5), and its current certificate
//! compared (§6) before every new version. A lost answer, a 409, a 500 or a run killed
//! after the create leaves one secret and one version per certificate.

use std::thread;

use anyhow::Context as _;
use serde::Serialize;
use time::OffsetDateTime;

use super::certificate_key;
use crate::keys;
use crate::portal::pem_sha256;
use crate::secret::Secret;
use crate::secrets_manager::types::{CertificateData, NewSecret, secret_name};
use crate::secrets_manager::{SecretsManager, SecretsManagerError};
use crate::store::{CertificateRow, SecretPlace, SecretState, Store};
use crate::validate::KnownKey;

/// What was done for one certificate: `--json` prints these.
#[derive(Debug, Clone, Serialize)]
pub struct SecretImport {
    pub certificate_id: i64,
    pub common_name: String,
    pub sha256: String,
    pub secret_name: String,
    pub outcome: SecretOutcome,
    pub secret_id: Option<String>,
    pub secret_version: Option<i64>,
    /// The version's own id (docs/secrets-manager.md §4).
    pub secret_version_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretOutcome {
    Created,
    VersionAdded,
    /// The secret's current version was this certificate already (a lost answer, a run
    /// killed after the call): nothing was sent.
    AlreadyCurrent,
    /// The secret holds a later certificate of this name: this one is left out.
    Superseded,
    /// A dry run: this would be imported.
    WouldImport,
    Failed,
}

impl SecretOutcome {
    pub fn words(self) -> &'static str {
        match self {
            SecretOutcome::Created => "secret created",
            SecretOutcome::VersionAdded => "version added",
            SecretOutcome::AlreadyCurrent => "already the current version",
            SecretOutcome::Superseded => "superseded by a later certificate",
            SecretOutcome::WouldImport => "would be imported",
            SecretOutcome::Failed => "failed",
        }
    }
}

impl SecretImport {
    /// "secret NAME (ID) version N: created", or what failed, for the reports.
    pub fn summary(&self) -> String {
        let mut line = format!("secret '{}'", self.secret_name);
        line.push_str(&secret_place(
            self.secret_id.as_deref(),
            self.secret_version,
            self.secret_version_id.as_deref(),
        ));
        line.push_str(&format!(": {}", self.outcome.words()));
        if let Some(error) = &self.error {
            line.push_str(&format!(": {error}"));
        }
        line
    }

    fn new(row: &CertificateRow, secret_name: String, outcome: SecretOutcome) -> SecretImport {
        SecretImport {
            certificate_id: row.id,
            common_name: row.common_name.clone(),
            sha256: row.sha256.clone(),
            secret_name,
            outcome,
            secret_id: None,
            secret_version: None,
            secret_version_id: None,
            error: None,
        }
    }
}

/// " (ID) version N (VERSION ID)", each part only when known: where a certificate is in
/// Secrets Manager, as reports and `show` print it after the secret's name.
pub fn secret_place(id: Option<&str>, version: Option<i64>, version_id: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(id) = id {
        text.push_str(&format!(" ({id})"));
    }
    if let Some(version) = version {
        text.push_str(&format!(" version {version}"));
    }
    if let Some(version_id) = version_id {
        text.push_str(&format!(" ({version_id})"));
    }
    text
}

/// The certificates with a known private key that are not settled in Secrets Manager,
/// each with its key file. A certificate whose key is not known is left out.
fn candidates<'k>(
    store: &Store,
    keys: &'k [KnownKey],
) -> anyhow::Result<Vec<(CertificateRow, &'k KnownKey)>> {
    let rows = store.certificates_for_secrets_manager()?;
    Ok((rows.into_iter())
        .filter_map(|row| {
            let key = certificate_key(&row)?;
            let known = keys
                .iter()
                .find(|k| k.key == key && k.private_key_file.is_some())?;
            Some((row, known))
        })
        .collect())
}

/// A dry run: what would be imported, without a call.
pub fn plan(
    store: &Store,
    keys: &[KnownKey],
    template: Option<&str>,
) -> anyhow::Result<Vec<SecretImport>> {
    Ok((candidates(store, keys)?.into_iter())
        .map(|(row, _)| {
            let name = secret_name(template, &row.common_name);
            SecretImport::new(&row, name, SecretOutcome::WouldImport)
        })
        .collect())
}

/// Imports every certificate not settled yet. A failure is recorded and reported, and
/// the next run tries again; only the database can fail this.
pub fn import_unsettled(
    client: &SecretsManager,
    store: &Store,
    keys: &[KnownKey],
    now: OffsetDateTime,
) -> anyhow::Result<Vec<SecretImport>> {
    let mut done = Vec::new();
    for (row, known) in candidates(store, keys)? {
        let name = secret_name(client.settings().name.as_deref(), &row.common_name);
        store.secret_pending(row.id, &name, now)?;
        let mut result = SecretImport::new(&row, name, SecretOutcome::Failed);
        let outcome = private_key(&row, known)
            .and_then(|key| Importer { client, store }.import(&row, &result.secret_name, key));
        match outcome {
            Ok(stored) => {
                let state = match stored.outcome {
                    SecretOutcome::Superseded => SecretState::Superseded,
                    _ => SecretState::Stored,
                };
                let place = SecretPlace {
                    secret_id: &stored.id,
                    version: stored.version,
                    version_id: stored.version_id.as_deref(),
                };
                store.secret_settled(row.id, state, &place, stored.outcome.words(), now)?;
                result.outcome = stored.outcome;
                result.secret_id = Some(stored.id);
                result.secret_version = stored.version;
                result.secret_version_id = stored.version_id;
            }
            Err(error) => {
                let error = format!("{error:#}");
                log::error!(
                    "certificate #{} ({}): Secrets Manager secret '{}': {error}; the next import, \
                     poll or resend-and-import tries again",
                    row.id,
                    row.common_name,
                    result.secret_name
                );
                store.secret_failed(row.id, &error, now)?;
                result.error = Some(error);
            }
        }
        done.push(result);
    }
    Ok(done)
}

/// The one private key of the certificate, read from its file now (never stored).
fn private_key(row: &CertificateRow, known: &KnownKey) -> anyhow::Result<Secret> {
    let path = known
        .private_key_file
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no private key file for certificate #{}", row.id))?;
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the private key {}: {e}", path.display()))?;
    let pem = keys::private_key_pem(&bytes, &known.key)
        .map_err(|e| anyhow::anyhow!("the private key file {}: {e}", path.display()))?;
    Ok(Secret::new(pem))
}

/// What the calls left: the secret, its version's number and id, and what was done.
struct Stored {
    id: String,
    version: Option<i64>,
    version_id: Option<String>,
    outcome: SecretOutcome,
}

struct Importer<'a> {
    client: &'a SecretsManager,
    store: &'a Store,
}

impl Importer<'_> {
    /// Looks, then creates what is missing; after a transient fault or a 409 it looks
    /// again before anything else, up to the client's retries.
    fn import(&self, row: &CertificateRow, name: &str, key: Secret) -> anyhow::Result<Stored> {
        let data = CertificateData {
            certificate: row.certificate_pem.clone(),
            intermediate: row.chain_pem.clone(),
            private_key: key,
        };
        let settings = self.client.settings();
        let mut attempt = 0;
        loop {
            match self.look_then_create(row, name, &data) {
                Err(e) if is_worth_another_look(&e) && attempt < settings.retries => {
                    attempt += 1;
                    log::info!("{e}; looking again ({attempt} of {})", settings.retries);
                    thread::sleep(
                        settings
                            .retry_wait
                            .saturating_mul(1 << (attempt - 1).min(10)),
                    );
                }
                other => return other,
            }
        }
    }

    /// One pass: search by name (§5); none → create (§3); one whose current certificate
    /// is this → nothing; one with a later certificate → superseded; else a version (§4).
    /// The version's id comes from the new version's answer, or for a new secret and a
    /// certificate already current, from the `current` alias (§4a).
    fn look_then_create(
        &self,
        row: &CertificateRow,
        name: &str,
        data: &CertificateData,
    ) -> anyhow::Result<Stored> {
        let Some(found) = self.client.find_secret(name)? else {
            let created = self.client.create_secret(&NewSecret {
                name,
                secret_group_id: &self.client.settings().secret_group_id,
                data,
                sha256: &row.sha256,
            })?;
            // A lost answer here leaves the secret made: the next pass finds it current.
            let version = self.client.current_version(&created.id)?;
            return Ok(Stored {
                id: created.id,
                version: Some(created.versions_total.unwrap_or(1)),
                version_id: Some(version.id),
                outcome: SecretOutcome::Created,
            });
        };
        let secret = self.client.imported_certificate(&found.id)?;
        let current = secret.certificate.as_deref().and_then(pem_sha256);
        let versions = secret.versions_total.or(found.versions_total);
        // Read before any version is added: a database error must stop the import, not
        // let an older certificate become the secret's current version.
        let later = match &current {
            Some(sha256) if *sha256 != row.sha256 => self.is_later(sha256, row)?,
            _ => false,
        };
        match current {
            Some(sha256) if sha256 == row.sha256 => Ok(Stored {
                version_id: Some(self.client.current_version(&secret.id)?.id),
                id: secret.id,
                version: versions,
                outcome: SecretOutcome::AlreadyCurrent,
            }),
            Some(_) if later => Ok(Stored {
                id: secret.id,
                version: None,
                version_id: None,
                outcome: SecretOutcome::Superseded,
            }),
            _ => {
                let added = self.client.create_version(&secret.id, data)?;
                Ok(Stored {
                    id: secret.id,
                    version: versions.map(|v| v + 1),
                    version_id: Some(added.id),
                    outcome: SecretOutcome::VersionAdded,
                })
            }
        }
    }

    /// Whether `sha256` is a recorded certificate that expires after `row`.
    fn is_later(&self, sha256: &str, row: &CertificateRow) -> anyhow::Result<bool> {
        let other = (self.store.certificate_by_sha256(sha256))
            .with_context(|| format!("looking up certificate {sha256} in the database"))?;
        Ok(other.is_some_and(|other| other.not_after > row.not_after))
    }
}

/// A transient fault or a 409 (a name taken meanwhile): search again before anything else.
fn is_worth_another_look(error: &anyhow::Error) -> bool {
    (error.downcast_ref::<SecretsManagerError>())
        .is_some_and(|e| e.is_transient() || e.is_conflict())
}

//! The deploy hook: the user's command that puts a new certificate into service, and the
//! certificate files it reads, like certbot's `live/` folder. Its state is kept per
//! certificate (`deployments`): recorded pending with the certificate, then done or
//! failed, so a crash, a failure or a run of another command never leaves a certificate
//! undeployed; every run retries what is not done.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::certificate_key;
use crate::child::{self, Ended, Finished};
use crate::store::{CertificateRow, Store};
use crate::validate::KnownKey;

#[derive(Debug, Clone)]
pub struct DeployHook {
    pub command: String,
    pub timeout: Duration,
}

/// Everything a deployment needs: the hook, where the certificate files go, and the keys
/// (to name the private key file of each certificate).
pub struct Deployer<'a> {
    pub hook: &'a DeployHook,
    /// `[deploy] dir`: one folder per certificate's common name below it.
    pub dir: &'a Path,
    pub keys: &'a [KnownKey],
}

/// What the hook did with one certificate: `--json` prints these.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub certificate_id: i64,
    pub common_name: String,
    pub sha256: String,
    pub ok: bool,
    pub error: Option<String>,
}

impl Deployment {
    /// "ok" or "failed: why", as the order and import reports show it.
    pub fn summary(&self) -> String {
        match &self.error {
            None => "ok".into(),
            Some(error) => format!("failed: {error}"),
        }
    }
}

impl Deployer<'_> {
    /// Runs the hook for every certificate whose deployment is pending or failed.
    pub fn deploy_undeployed(
        &self,
        store: &Store,
        now: OffsetDateTime,
    ) -> anyhow::Result<Vec<Deployment>> {
        let rows = store.undeployed_certificates()?;
        rows.iter()
            .map(|row| self.deploy(store, row, now))
            .collect()
    }

    /// Writes the certificate's files, runs the hook and records how it went. A failed
    /// hook is reported, and retried by the next run; only the database can fail this.
    pub fn deploy(
        &self,
        store: &Store,
        row: &CertificateRow,
        now: OffsetDateTime,
    ) -> anyhow::Result<Deployment> {
        let outcome = self.write_files(row).and_then(|files| {
            self.hook
                .run(row, &files)
                .map_err(|why| anyhow::anyhow!(why))
        });
        let error = outcome.err().map(|e| format!("{e:#}"));
        if let Some(error) = &error {
            log::error!(
                "certificate #{} ({}): deploy hook failed: {error}; the next run tries again",
                row.id,
                row.common_name
            );
        }
        store.set_deployment(row.id, error.as_deref().map_or(Ok(()), Err), now)?;
        Ok(Deployment {
            certificate_id: row.id,
            common_name: row.common_name.clone(),
            sha256: row.sha256.clone(),
            ok: error.is_none(),
            error,
        })
    }

    /// `{cert,chain,fullchain}.pem` in `dir/<common name>/`, each written whole and
    /// renamed into place, 0644; and the matching private key file, by path only.
    fn write_files(&self, row: &CertificateRow) -> anyhow::Result<DeployFiles> {
        let folder = self.dir.join(folder_name(row));
        create_public_folder(&folder)?;
        let files = DeployFiles {
            cert: folder.join("cert.pem"),
            chain: folder.join("chain.pem"),
            fullchain: folder.join("fullchain.pem"),
            key: certificate_key(row).and_then(|key| {
                (self.keys.iter())
                    .find(|known| known.key == key)
                    .and_then(|known| known.private_key_file.clone())
            }),
        };
        write_atomically(&files.cert, &row.certificate_pem)?;
        write_atomically(&files.chain, &row.chain_pem)?;
        write_atomically(
            &files.fullchain,
            &format!("{}{}", row.certificate_pem, row.chain_pem),
        )?;
        Ok(files)
    }
}

/// Where the hook finds the certificate.
struct DeployFiles {
    cert: PathBuf,
    chain: PathBuf,
    fullchain: PathBuf,
    key: Option<PathBuf>,
}

/// The certificate's folder: its common name, without a wildcard's `*.` and with anything
/// but letters, digits, `.`, `-` and `_` replaced, so that no name (a hostile CN holding
/// `/` or `..`) can lead out of `[deploy] dir`.
fn folder_name(row: &CertificateRow) -> String {
    let name: String = (row.common_name.trim_start_matches("*.").chars())
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("certificate-{}", row.id)
    } else {
        name
    }
}

/// Creates `folder` and whatever is missing above it 0755 whatever the umask: the files
/// are for a web server's user to read, and no one else may replace them. Folders that
/// exist already keep the mode their owner gave them.
fn create_public_folder(folder: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let missing: Vec<&Path> = folder.ancestors().take_while(|p| !p.exists()).collect();
    let create = || -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(folder)?;
        for made in &missing {
            fs::set_permissions(made, fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    };
    create().with_context(|| format!("cannot create {}", folder.display()))
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader
/// (the hook, a web server reloading) never sees half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        // The mode is 0644 whatever the umask: a web server's user must read it.
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o644))?;
        fs::rename(&temporary, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

impl DeployHook {
    /// `sh -c COMMAND` with the certificate and chain PEM on stdin, the facts and the file
    /// paths in the environment (`FULFILL_KEY_PATH` is the private key's path, never its
    /// contents), its output sent to our stderr (stdout is for `--json`), stopped after
    /// the timeout with everything it started (`child::run`: its process group is killed
    /// when it ends). The environment holds no secret fulfill was given (`child::shell`).
    fn run(&self, row: &CertificateRow, files: &DeployFiles) -> Result<(), String> {
        let mut sh = child::shell(&self.command);
        let text = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
        sh.env("FULFILL_ORDER_ID", text(row.order_id))
            .env("FULFILL_COMMON_NAME", &row.common_name)
            .env("FULFILL_SHA256", &row.sha256)
            .env("FULFILL_PORTAL_ID", text(row.portal_certificate_id))
            .env("FULFILL_CERT_PATH", &files.cert)
            .env("FULFILL_CHAIN_PATH", &files.chain)
            .env("FULFILL_FULLCHAIN_PATH", &files.fullchain)
            .env(
                "FULFILL_KEY_PATH",
                files.key.as_deref().unwrap_or(Path::new("")),
            )
            .stdin(Stdio::piped())
            .stdout(std::io::stderr())
            .stderr(Stdio::inherit());
        // A hook that does not read its input is not an error, and cannot block the write.
        let input = format!("{}{}", row.certificate_pem, row.chain_pem);
        match child::run(&mut sh, input.as_bytes(), self.timeout, 0) {
            Ok(Finished {
                ended: Ended::Exited(status),
                ..
            }) if status.success() => Ok(()),
            Ok(Finished {
                ended: Ended::Exited(status),
                ..
            }) => Err(format!("`{}` ended with {status}", self.command)),
            Ok(Finished {
                ended: Ended::Killed,
                ..
            }) => Err(format!(
                "`{}` took longer than {} and was stopped",
                self.command,
                humantime::format_duration(self.timeout)
            )),
            Err(e) => Err(format!("cannot run sh: {e}")),
        }
    }
}

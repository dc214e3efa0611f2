//! Local files the validation needs (private keys and CSRs, trust anchors), and the checks
//! and database every importing command sets up the same way.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Settings, TrustRoots};
use crate::exit::UsageError;
use crate::extract::Limits;
use crate::keys::{self, KeyMaterial, PublicKeyId};
use crate::pipeline::Checks;
use crate::store::Store;
use crate::validate::{Expectations, KeySource, KnownKey};

/// Key files are small; anything bigger in a keys folder is not a key.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// Where the operating system keeps its CA bundle, by distribution family. `SSL_CERT_FILE`
/// (OpenSSL's override) wins when set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The checks of `import`, `poll` and `resend-and-import`: these keys, this name (or the
/// one each key's CSR asked for), the configured trust anchors and message size limit.
pub fn import_checks(
    settings: &Settings,
    name: Option<String>,
    keys: Vec<KnownKey>,
) -> anyhow::Result<Checks> {
    Ok(Checks {
        expectations: Expectations { name, keys },
        trust_anchors: load_trust_anchors(settings)?,
        limits: Limits {
            max_message_size: settings.max_message_size,
            ..Limits::default()
        },
    })
}

/// The database to record in; with `--dry-run`, only read, and `None` when it does not
/// exist yet (a dry run never creates it).
pub fn open_store(settings: &Settings, dry_run: bool) -> anyhow::Result<Option<Store>> {
    Ok(if dry_run {
        Store::open_read_only(&settings.database)?
    } else {
        Some(Store::open(&settings.database)?)
    })
}

/// Every private key and CSR we know: `--key` files (errors are fatal: the user named
/// them) and the files of `[keys] dirs` (errors are warnings: a folder holds other files).
/// A key whose CSR is also known carries the CSR's requested name.
pub fn load_known_keys(
    settings: &Settings,
    key_files: &[PathBuf],
) -> anyhow::Result<Vec<KnownKey>> {
    let mut found: Vec<(KeyMaterial, PathBuf)> = Vec::new();
    for path in key_files {
        let bytes = read_small(path).with_context(|| format!("--key {}", path.display()))?;
        let materials = keys::read_key_material(&bytes)
            .map_err(|e| UsageError(format!("--key {}: {e}", path.display())))?;
        found.extend(materials.into_iter().map(|m| (m, path.clone())));
    }
    for dir in &settings.key_dirs {
        found.extend(read_key_dir(dir)?);
    }

    // A private key is the better match to report: upload needs the key, not the CSR.
    found.sort_by_key(|(material, _)| matches!(material, KeyMaterial::SigningRequest { .. }));
    let requested: HashMap<PublicKeyId, String> = found
        .iter()
        .filter_map(|(m, _)| match m {
            KeyMaterial::SigningRequest {
                key,
                name: Some(name),
            } => Some((key.clone(), name.clone())),
            _ => None,
        })
        .collect();
    let file_of = |want_csr: bool, key: &PublicKeyId| {
        found
            .iter()
            .find(|(m, _)| {
                m.key() == key && matches!(m, KeyMaterial::SigningRequest { .. }) == want_csr
            })
            .map(|(_, path)| path.clone())
    };
    Ok(found
        .iter()
        .map(|(material, path)| {
            let source = match material {
                KeyMaterial::PrivateKey(_) => KeySource::KeyFile(path.clone()),
                KeyMaterial::SigningRequest { .. } => KeySource::CsrFile(path.clone()),
            };
            KnownKey {
                requested_name: requested.get(material.key()).cloned(),
                key: material.key().clone(),
                source,
                private_key_file: file_of(false, material.key()),
                csr_file: file_of(true, material.key()),
                order_id: None,
            }
        })
        .collect())
}

/// The keys and CSRs in one `[keys] dirs` folder, file by file in name order. Files that
/// hold no key are other files (a README, a certificate) and are passed over.
fn read_key_dir(dir: &Path) -> anyhow::Result<Vec<(KeyMaterial, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        UsageError(format!(
            "[keys] dirs: cannot read the folder {}: {e}",
            dir.display()
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut found = Vec::new();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        let materials = match read_small(&path) {
            Ok(bytes) => keys::read_key_material(&bytes),
            Err(e) => {
                log::warn!("{}: skipped: {e:#}", path.display());
                continue;
            }
        };
        match materials {
            Ok(materials) => found.extend(materials.into_iter().map(|m| (m, path.clone()))),
            Err(keys::KeyError::NothingFound) => {
                log::debug!("{}: not a key or CSR, skipped", path.display());
            }
            Err(e) => log::warn!("{}: skipped: {e}", path.display()),
        }
    }
    Ok(found)
}

fn read_small(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_KEY_FILE {
        anyhow::bail!(
            "{} is {} bytes, too large for a key file",
            path.display(),
            meta.len()
        );
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// DER trust anchors from `[validation] trust_roots`.
pub fn load_trust_anchors(settings: &Settings) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut anchors = Vec::new();
    for roots in &settings.trust_roots {
        let path = match roots {
            TrustRoots::Bundle(path) => path.clone(),
            TrustRoots::System => system_bundle().ok_or_else(|| {
                UsageError(format!(
                    "[validation] trust_roots: \"system\" but no CA bundle was found (looked at {}); \
                     install ca-certificates or name a PEM bundle",
                    SYSTEM_BUNDLES.join(", ")
                ))
            })?,
        };
        let text = fs::read(&path).map_err(|e| {
            UsageError(format!(
                "[validation] trust_roots: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let before = anchors.len();
        for block in pem::parse_many(&text).map_err(|e| {
            UsageError(format!(
                "[validation] trust_roots: {} is not a PEM bundle: {e}",
                path.display()
            ))
        })? {
            if block.tag() == "CERTIFICATE" {
                anchors.push(block.into_contents());
            }
        }
        if anchors.len() == before {
            return Err(UsageError(format!(
                "[validation] trust_roots: {} holds no certificate",
                path.display()
            ))
            .into());
        }
    }
    Ok(anchors)
}

fn system_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

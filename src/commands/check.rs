//! `fulfill check`: is everything in place? Configuration, keys, trust anchors, database,
//! portal authentication, Secrets Manager (when configured) and the mailbox (TLS, login, folder, IDLE and MOVE, and the folder
//! of `after_import = "move:..."`), each reported as ok or failed with the reason; exit 1
//! when one failed. It changes nothing: not the database (not even created), not a missing
//! `move:` folder, which the first mark of a run creates.
//!
//! `--offline` leaves out the two servers. `--expiring-within 30d` is the monitoring probe:
//! only the config, the database and the expiry of the recorded certificates, silent under
//! `-q` when all is well.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    Context, Report, days_left, load_known_keys, load_trust_anchors, parse_time, write_line,
};
use crate::config::{Settings, default_config_path};
use crate::exit::Exit;
use crate::mailbox::{AfterImport, MailboxSettings, Security, Session};
use crate::portal::Portal;
use crate::secrets_manager::SecretsManager;
use crate::store::{CertificateRow, Store};
use crate::validate::KeySource;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Leave out the portal and the mailbox: only what is on this machine
    #[arg(long)]
    pub offline: bool,

    /// Only the expiry of the recorded certificates (and the config and database): fail
    /// when one expires within this time (e.g. 30d) and no later certificate for its names
    /// is recorded. Quiet with -q when all is well: a monitoring probe
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub expiring_within: Option<Duration>,
}

#[derive(Serialize)]
struct CheckLine {
    check: &'static str,
    ok: bool,
    detail: String,
}

impl CheckLine {
    /// A check that ran: ok with what it found, or failed with why.
    fn from<T>(
        check: &'static str,
        result: anyhow::Result<T>,
        found: impl Fn(T) -> String,
    ) -> CheckLine {
        match result {
            Ok(value) => CheckLine {
                check,
                ok: true,
                detail: found(value),
            },
            Err(e) => CheckLine {
                check,
                ok: false,
                detail: format!("{e:#}"),
            },
        }
    }
}

impl CheckArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let mut lines = vec![
            check_config(settings),
            CheckLine::from("database", check_database(&settings.database), |found| {
                found
            }),
        ];
        if let Some(within) = self.expiring_within {
            lines.extend(check_expiry(settings, within, context.now));
        } else {
            lines.extend(self.check_setup(settings));
        }
        let exit = if lines.iter().all(|l| l.ok) {
            Exit::Done
        } else {
            Exit::Failure
        };
        context.output.print(&CheckReport(lines))?;
        Ok(exit)
    }

    /// Keys, trust roots, and unless `--offline` the portal and the mailbox.
    fn check_setup(&self, settings: &Settings) -> Vec<CheckLine> {
        let mut lines = vec![
            CheckLine::from("keys", load_known_keys(settings, &[]), |keys| {
                let private = (keys.iter())
                    .filter(|k| matches!(k.source, KeySource::KeyFile(_)))
                    .count();
                format!(
                    "{private} private keys and {} CSRs in [keys] dirs",
                    keys.len() - private
                )
            }),
            CheckLine::from("trust roots", load_trust_anchors(settings), |anchors| {
                format!("{} trust anchors", anchors.len())
            }),
        ];
        if !self.offline {
            lines.push(check_portal(settings));
            lines.extend(check_secrets_manager(settings));
            lines.extend(check_mailbox(settings));
        }
        lines
    }
}

/// The config file read, or where fulfill looked for one.
fn check_config(settings: &Settings) -> CheckLine {
    CheckLine::from("config", Ok(()), |()| match &settings.config_file {
        Some(path) => format!("{} read", path.display()),
        None => match default_config_path() {
            Ok(path) => format!("no config file at {}; defaults in use", path.display()),
            Err(_) => "no config file; defaults in use".into(),
        },
    })
}

/// The database can be written, or created: the file (when it exists) and its folder
/// (SQLite writes its journal and the run lock beside it), or the nearest folder that
/// exists on the way to it. Nothing is created.
fn check_database(database: &Path) -> anyhow::Result<String> {
    let folder = (database.parent())
        .filter(|f| !f.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if database.exists() {
        let store = Store::open_read_only(database)?.context("the database went away")?;
        writable(database)?;
        writable(folder)?;
        let count = store.list_certificates(None)?.len();
        return Ok(format!(
            "{} writable; {count} certificates recorded",
            database.display()
        ));
    }
    let existing = (folder.ancestors())
        .find(|f| f.as_os_str().is_empty() || f.exists())
        .filter(|f| !f.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        bail!(
            "cannot create {}: {} is not a folder",
            database.display(),
            existing.display()
        );
    }
    writable(existing)?;
    Ok(format!(
        "{} does not exist yet; the first import creates it ({} is writable)",
        database.display(),
        existing.display()
    ))
}

/// Whether this user may write `path` (access(2), which also knows read-only mounts).
fn writable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} holds a NUL byte", path.display()))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(name.as_ptr(), libc::W_OK) } != 0 {
        bail!(
            "{} is not writable: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `--expiring-within`: one failed line per certificate that expires within `within` and
/// has no successor ([`expiring`]), or one ok line. No database is a failure: a probe
/// pointed at the wrong file must not pass.
fn check_expiry(settings: &Settings, within: Duration, now: OffsetDateTime) -> Vec<CheckLine> {
    let certificates = match Store::open_read_only(&settings.database) {
        Ok(Some(store)) => store.list_certificates(None),
        Ok(None) => {
            return vec![CheckLine {
                check: "expiry",
                ok: false,
                detail: format!(
                    "no database at {}: no certificate recorded to watch",
                    settings.database.display()
                ),
            }];
        }
        Err(e) => Err(e),
    };
    let certificates = match certificates {
        Ok(certificates) => certificates,
        Err(e) => {
            return vec![CheckLine::from("expiry", Err::<(), _>(e.into()), |()| {
                String::new()
            })];
        }
    };
    let within_text = humantime::format_duration(within);
    let expiring = expiring(&certificates, now + within);
    if expiring.is_empty() {
        return vec![CheckLine {
            check: "expiry",
            ok: true,
            detail: format!(
                "none of {} certificates expires within {within_text} without a later one for its names",
                certificates.len()
            ),
        }];
    }
    (expiring.iter())
        .map(|c| CheckLine {
            check: "expiry",
            ok: false,
            detail: format!(
                "{} expires {} (sha256 {}); no later certificate for its names is recorded",
                c.common_name,
                parse_time(&c.not_after).map_or_else(|| c.not_after.clone(), |t| days_left(t, now)),
                c.sha256
            ),
        })
        .collect()
}

/// The names a certificate is for: its subjectAltNames, or its common name when it has
/// none; lowercase.
fn names(certificate: &CertificateRow) -> Vec<String> {
    let names = match certificate.subject_alt_names.is_empty() {
        true => std::slice::from_ref(&certificate.common_name),
        false => certificate.subject_alt_names.as_slice(),
    };
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// The certificates that expire before `until` (expired ones included) with no successor:
/// a recorded certificate that expires later and covers every one of its names (the same
/// subjectAltNames, or more). A renewal that added a name still replaces the old one; one
/// that dropped a name does not, since that name would go uncovered.
fn expiring(certificates: &[CertificateRow], until: OffsetDateTime) -> Vec<&CertificateRow> {
    let not_after = |c: &CertificateRow| parse_time(&c.not_after);
    (certificates.iter())
        .filter(|c| not_after(c).is_none_or(|t| t <= until))
        .filter(|old| {
            let wanted = names(old);
            !certificates.iter().any(|new| {
                let covered = names(new);
                not_after(new) > not_after(old) && wanted.iter().all(|n| covered.contains(n))
            })
        })
        .collect()
}

/// Logs in to the portal when it is configured: an account id back means the
/// credentials work.
fn check_portal(settings: &Settings) -> CheckLine {
    let portal = match settings.portal() {
        Ok(None) => {
            return CheckLine {
                check: "portal",
                ok: true,
                detail: "not configured (no username or API key); certificates are recorded locally only"
                    .into(),
            };
        }
        Ok(Some(portal)) => portal,
        Err(e) => {
            return CheckLine {
                check: "portal",
                ok: false,
                detail: e.to_string(),
            };
        }
    };
    match Portal::new(portal).and_then(|p| p.account_id().map(|id| (p, id))) {
        Ok((portal, account)) => CheckLine {
            check: "portal",
            ok: true,
            detail: format!(
                "authenticated as {} to account {account} at {}",
                portal.username(),
                portal.endpoint()
            ),
        },
        Err(e) => CheckLine {
            check: "portal",
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// When `[secrets_manager]` is configured: the API key resolves, IAM gives a token for it,
/// and the instance lists the group's imported certificates. Reads only: no secret's data
/// is asked for. Each failure's message says which step failed and what to do.
fn check_secrets_manager(settings: &Settings) -> Option<CheckLine> {
    settings.secrets_manager_name()?;
    let probe = || -> anyhow::Result<String> {
        let connection =
            (settings.secrets_manager())?.context("[secrets_manager] url is not set")?;
        let client = SecretsManager::new(connection)?;
        let count = client.probe()?;
        let connection = client.settings();
        Ok(format!(
            "IAM token from {}; {count} imported certificates in group '{}' at {}",
            connection.iam_endpoint, connection.secret_group_id, connection.url
        ))
    };
    Some(CheckLine::from("secrets manager", probe(), |found| found))
}

/// Logs in to the mailbox when it is configured and looks at the folder (EXAMINE, which
/// changes nothing) and at the `move:` folder of `after_import`, if any.
fn check_mailbox(settings: &Settings) -> Vec<CheckLine> {
    let failed = |detail: String| {
        vec![CheckLine {
            check: "mailbox",
            ok: false,
            detail,
        }]
    };
    let mailbox = match settings.mailbox() {
        Ok(None) => {
            return vec![CheckLine {
                check: "mailbox",
                ok: true,
                detail: "not configured (no [mailbox] host); poll and resend-and-import need it"
                    .into(),
            }];
        }
        Ok(Some(mailbox)) => mailbox,
        Err(e) => return failed(e.to_string()),
    };
    let mut session = match Session::connect(&mailbox) {
        Ok(session) => session,
        Err(e) => return failed(e.to_string()),
    };
    let status = match session.examine(&mailbox.folder) {
        Ok(status) => status,
        Err(e) => {
            session.logout();
            return failed(e.to_string());
        }
    };
    let mut lines = vec![
        CheckLine {
            check: "mailbox",
            ok: true,
            detail: format!(
                "logged in as {} to {}:{} over {}; folder {} holds {} messages",
                mailbox.username,
                mailbox.host,
                mailbox.port,
                tls(&mailbox),
                mailbox.folder,
                status.exists
            ),
        },
        CheckLine {
            check: "capabilities",
            ok: true,
            detail: capabilities(&session, &mailbox),
        },
    ];
    if let AfterImport::Move(target) = &mailbox.after_import {
        let action = &mailbox.after_import;
        lines.push(match session.folder_exists(target) {
            Ok(true) => CheckLine {
                check: "after_import",
                ok: true,
                detail: format!("\"{action}\": the folder {target} exists"),
            },
            Ok(false) => CheckLine {
                check: "after_import",
                ok: true,
                detail: format!(
                    "\"{action}\": the folder {target} does not exist on {}; the first run \
                     that imports a certificate creates it",
                    mailbox.host
                ),
            },
            Err(e) => CheckLine {
                check: "after_import",
                ok: false,
                detail: e.to_string(),
            },
        });
    }
    session.logout();
    lines
}

/// How the connection was secured: the server certificate is always verified.
fn tls(mailbox: &MailboxSettings) -> String {
    let how = match mailbox.security {
        Security::Tls => "TLS",
        Security::StartTls => "STARTTLS",
    };
    match (&mailbox.pin_sha256, &mailbox.ca_file) {
        (Some(_), _) => format!("{how}, the server certificate matching pin_sha256"),
        (None, Some(ca_file)) => format!(
            "{how}, the server certificate verified with {} and the system roots",
            ca_file.display()
        ),
        (None, None) => format!("{how}, the server certificate verified with the system roots"),
    }
}

/// IDLE and MOVE, and what fulfill does without them.
fn capabilities(session: &Session, mailbox: &MailboxSettings) -> String {
    let idle = match session.has_idle() {
        true => "IDLE: yes (new mail is seen at once)".to_string(),
        false => format!(
            "IDLE: no (looks for new mail every {})",
            humantime::format_duration(mailbox.poll_interval)
        ),
    };
    let moves = match session.has_move() {
        true => "MOVE: yes",
        false => "MOVE: no (\"move:\" copies the mail and flags the original)",
    };
    format!("{idle}; {moves}")
}

#[derive(Serialize)]
#[serde(transparent)]
struct CheckReport(Vec<CheckLine>);

impl Report for CheckReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        for line in &self.0 {
            let verdict = if line.ok { "ok" } else { "FAILED" };
            write_line(
                out,
                &format!("{:<12} {verdict:<6} {}", line.check, line.detail),
            )?;
        }
        Ok(())
    }

    /// All ok: `-q` prints nothing, so `check -q --expiring-within 30d` is a quiet probe.
    fn is_routine(&self) -> bool {
        self.0.iter().all(|line| line.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(id: i64, names: &[&str], not_after: &str) -> CertificateRow {
        CertificateRow {
            id,
            order_id: None,
            common_name: names.first().map_or("www.example.com", |n| n).to_string(),
            subject_alt_names: names.iter().map(|n| n.to_string()).collect(),
            serial: "01".into(),
            sha256: format!("{id:064x}"),
            issuer: "CN=Test CA".into(),
            not_before: "2020-01-01T00:00:00Z".into(),
            not_after: not_after.into(),
            certificate_pem: String::new(),
            chain_pem: String::new(),
            key_source: None,
            portal_certificate_id: None,
            source_message_id: None,
            source: None,
            imported_at: "2020-01-01T00:00:00Z".into(),
        }
    }

    fn ids(certificates: &[CertificateRow], until: &str) -> Vec<i64> {
        let until = parse_time(until).unwrap();
        (expiring(certificates, until).iter())
            .map(|c| c.id)
            .collect()
    }

    /// A certificate is replaced by a later one for all of its names (or more), whatever
    /// their order or case; not by one that leaves a name out, nor by an earlier one.
    #[test]
    fn only_certificates_without_a_later_one_for_their_names_are_expiring() {
        let certificates = [
            certificate(
                1,
                &["a.example.com", "b.example.com"],
                "2030-01-10T00:00:00Z",
            ),
            certificate(
                2,
                &["B.example.com", "a.example.com"],
                "2031-01-10T00:00:00Z",
            ),
            certificate(
                3,
                &["c.example.com", "d.example.com"],
                "2030-01-10T00:00:00Z",
            ),
            certificate(4, &["c.example.com"], "2031-01-10T00:00:00Z"),
            certificate(5, &["e.example.com"], "2030-01-10T00:00:00Z"),
            certificate(
                6,
                &["e.example.com", "f.example.com"],
                "2031-01-10T00:00:00Z",
            ),
            certificate(7, &["g.example.com"], "2030-01-10T00:00:00Z"),
            certificate(8, &["g.example.com"], "2029-01-10T00:00:00Z"),
            // No subjectAltNames: the common name stands for them.
            certificate(9, &[], "2030-01-10T00:00:00Z"),
        ];
        assert_eq!(ids(&certificates, "2030-02-01T00:00:00Z"), vec![3, 7, 9]);
        assert_eq!(
            ids(&certificates, "2029-02-01T00:00:00Z"),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids(&certificates, "2032-01-01T00:00:00Z"),
            vec![2, 3, 4, 6, 7, 9]
        );
    }
}

//! `fulfill check`: is everything in place? Configuration, keys, trust anchors, database,
//! portal authentication and the mailbox (login, folder, and the folder of
//! `after_import = "move:..."`), each reported as ok or failed with the reason. It changes
//! nothing: a missing `move:` folder is reported, and created by the first mark of a run.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;

use super::{Context, Report, load_known_keys, load_trust_anchors, write_line};
use crate::config::Settings;
use crate::exit::Exit;
use crate::mailbox::{AfterImport, Session};
use crate::portal::Portal;
use crate::validate::KeySource;

#[derive(Debug, Args)]
pub struct CheckArgs {}

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
            CheckLine::from("config", Ok(()), |()| match &settings.config_file {
                Some(path) => format!("{} read", path.display()),
                None => "no config file; defaults in use".into(),
            }),
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
            CheckLine::from("database", Ok(()), |()| {
                if settings.database.exists() {
                    format!("{}", settings.database.display())
                } else {
                    format!(
                        "{} (created by the first import)",
                        settings.database.display()
                    )
                }
            }),
            check_portal(settings),
        ];
        lines.extend(check_mailbox(settings));
        let exit = if lines.iter().all(|l| l.ok) {
            Exit::Done
        } else {
            Exit::Failure
        };
        context.output.print(&CheckReport(lines))?;
        Ok(exit)
    }
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
    let mut lines = vec![CheckLine {
        check: "mailbox",
        ok: true,
        detail: format!(
            "logged in as {} to {}:{}; folder {} holds {} messages",
            mailbox.username, mailbox.host, mailbox.port, mailbox.folder, status.exists
        ),
    }];
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
}

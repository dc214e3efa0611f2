//! `fulfill check`: is everything in place? Configuration, keys, trust anchors, database,
//! and portal authentication, each reported as ok or failed with the reason.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;

use super::{Context, Report, load_known_keys, load_trust_anchors, write_line};
use crate::config::Settings;
use crate::exit::Exit;
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
        let lines = vec![
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

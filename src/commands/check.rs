//! `fulfill check`: is everything in place? Configuration, keys, trust anchors, database,
//! and portal authentication, each reported as ok or failed with the reason.

use std::io::{self, Write};

use serde::Serialize;
use time::OffsetDateTime;

use super::{Exit, load_known_keys, load_trust_anchors, print_json};
use crate::config::Settings;
use crate::portal::Portal;

#[derive(Serialize)]
struct CheckLine {
    check: &'static str,
    ok: bool,
    detail: String,
}

pub fn run(settings: &Settings, json: bool, _now: OffsetDateTime) -> anyhow::Result<Exit> {
    let mut lines = vec![CheckLine {
        check: "config",
        ok: true,
        detail: match &settings.config_file {
            Some(path) => format!("{} read", path.display()),
            None => "no config file; defaults in use".into(),
        },
    }];
    lines.push(match load_known_keys(settings, &[]) {
        Ok(keys) => {
            let private = keys
                .iter()
                .filter(|k| k.source.starts_with("key file"))
                .count();
            CheckLine {
                check: "keys",
                ok: true,
                detail: format!(
                    "{private} private keys and {} CSRs in [keys] dirs",
                    keys.len() - private
                ),
            }
        }
        Err(e) => CheckLine {
            check: "keys",
            ok: false,
            detail: format!("{e:#}"),
        },
    });
    lines.push(match load_trust_anchors(settings) {
        Ok(anchors) => CheckLine {
            check: "trust roots",
            ok: true,
            detail: format!("{} trust anchors", anchors.len()),
        },
        Err(e) => CheckLine {
            check: "trust roots",
            ok: false,
            detail: format!("{e:#}"),
        },
    });
    lines.push(CheckLine {
        check: "database",
        ok: true,
        detail: if settings.database.exists() {
            format!("{}", settings.database.display())
        } else {
            format!(
                "{} (created by the first import)",
                settings.database.display()
            )
        },
    });
    lines.push(match settings.portal() {
        Ok(None) => CheckLine {
            check: "portal",
            ok: true,
            detail:
                "not configured (no username or API key); certificates are recorded locally only"
                    .into(),
        },
        Ok(Some(portal_settings)) => {
            match Portal::new(portal_settings).and_then(|p| p.account_id().map(|id| (p, id))) {
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
        Err(e) => CheckLine {
            check: "portal",
            ok: false,
            detail: e.to_string(),
        },
    });

    let exit = if lines.iter().all(|l| l.ok) {
        Exit::Done
    } else {
        Exit::Failure
    };
    if json {
        print_json(&lines)?;
    } else {
        let mut out = io::stdout().lock();
        for line in &lines {
            let verdict = if line.ok { "ok" } else { "FAILED" };
            writeln!(out, "{:<12} {verdict:<6} {}", line.check, line.detail)?;
        }
    }
    Ok(exit)
}

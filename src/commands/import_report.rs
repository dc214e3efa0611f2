//! The table `import` and `poll` print of the certificates they met, and what needs a
//! person: rejections with their rules, link-only mails with their links, failed uploads.

use std::io::{self, Write};

use serde::Serialize;
use time::OffsetDateTime;

use super::{Report, Table, days_left, write_line};
use crate::pipeline::deploy::Deployment;
use crate::pipeline::replace::Replacements;
use crate::pipeline::secrets_manager::{SecretImport, SecretOutcome};
use crate::pipeline::{ImportResult, Outcome, UploadStatus};

/// What `import` and `poll` print of the certificates they met: `--json` gives the
/// results as they are.
#[derive(Serialize)]
#[serde(transparent)]
pub struct ImportReport<'a> {
    pub results: &'a [ImportResult],
    /// What the deploy hook did (in `--json`, on each result as `deploy_hook`).
    #[serde(skip)]
    pub deployments: &'a [Deployment],
    /// What the import into Secrets Manager did (in `--json`, on each result).
    #[serde(skip)]
    pub secrets: &'a [SecretImport],
    /// What `[portal] replace_in_use` did (in `--json`, on each result as `listeners`).
    #[serde(skip)]
    pub replacements: &'a Replacements,
    #[serde(skip)]
    pub now: OffsetDateTime,
}

impl Report for ImportReport<'_> {
    /// A table, then what needs a person: rejections with their rules, link-only mails
    /// with their links, failed uploads and unreadable files.
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut table = Table::new(&["RESULT", "NAME", "ID", "PORTAL", "EXPIRES", "FILE"]);
        for r in self.results {
            table.row(self.row(r));
        }
        table.write(out)?;
        let explained: Vec<&ImportResult> = (self.results.iter())
            .filter(|r| !r.outcome.is_accepted() || r.upload_error.is_some())
            .collect();
        if !explained.is_empty() {
            writeln!(out)?;
        }
        for r in explained {
            explain(r, out)?;
        }
        write_deployments(self.deployments, out)?;
        write_secrets(self.secrets, out)?;
        write_replacements(self.replacements, out)
    }
}

/// One line per certificate imported into Secrets Manager, with what to do on failure.
pub fn write_secrets(secrets: &[SecretImport], out: &mut dyn Write) -> io::Result<()> {
    for s in secrets {
        let line = format!(
            "certificate #{} {}: Secrets Manager {}",
            s.certificate_id,
            s.common_name,
            s.summary()
        );
        write_line(out, &line)?;
        if s.outcome == SecretOutcome::Failed {
            writeln!(
                out,
                "  The next import, poll or resend-and-import tries again, searching by name first."
            )?;
        }
    }
    Ok(())
}

/// One line per deploy hook run, with what to do about a failure.
pub fn write_deployments(deployments: &[Deployment], out: &mut dyn Write) -> io::Result<()> {
    for d in deployments {
        let line = format!(
            "certificate #{} {}: deploy hook {}",
            d.certificate_id,
            d.common_name,
            d.summary()
        );
        write_line(out, &line)?;
        if !d.ok {
            writeln!(
                out,
                "  The next run tries again; `fulfill deploy --pending` runs it now."
            )?;
        }
    }
    Ok(())
}

/// One line per listener moved (or not) and per old certificate deleted (or kept), with
/// what to do about a failure.
pub fn write_replacements(replacements: &Replacements, out: &mut dyn Write) -> io::Result<()> {
    for error in &replacements.errors {
        write_line(out, error)?;
    }
    for m in &replacements.listeners {
        let mut line = format!(
            "listener {} of load balancer {}: certificate {} -> {}: {}",
            m.listener_uuid,
            m.load_balancer_uuid,
            m.old_portal_id,
            m.new_portal_id,
            m.outcome.words()
        );
        if let Some(detail) = &m.detail {
            line.push_str(&format!(": {detail}"));
        }
        write_line(out, &line)?;
    }
    if replacements
        .listeners
        .iter()
        .any(|m| m.outcome.is_failure())
    {
        writeln!(
            out,
            "  The state is kept: the next run goes on, or `fulfill replace --certificate ID` now."
        )?;
    }
    for r in &replacements.retired {
        let line = match &r.detail {
            None => format!(
                "portal certificate {}: deleted from the store",
                r.old_portal_id
            ),
            Some(why) => format!("portal certificate {}: not deleted: {why}", r.old_portal_id),
        };
        write_line(out, &line)?;
    }
    Ok(())
}

impl ImportReport<'_> {
    fn row(&self, r: &ImportResult) -> Vec<String> {
        let name = match (&r.common_name, r.order_numbers.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(order)) => format!("order number {order}"),
            (None, None) => "-".into(),
        };
        let portal = match (r.portal_certificate_id, r.upload) {
            (Some(id), _) => id.to_string(),
            (None, Some(UploadStatus::Failed)) => "failed".into(),
            (None, Some(UploadStatus::WouldUpload)) => "would upload".into(),
            (None, Some(UploadStatus::Unknown)) => "unknown".into(),
            _ => "-".into(),
        };
        vec![
            r.outcome.words().into(),
            name,
            r.id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
            portal,
            (r.not_after_time)
                .map(|t| days_left(t, self.now))
                .unwrap_or_else(|| "-".into()),
            r.source.clone(),
        ]
    }
}

/// What a person needs to know of a result that did not simply import.
fn explain(r: &ImportResult, out: &mut dyn Write) -> io::Result<()> {
    let source = &r.source;
    match r.outcome {
        Outcome::Rejected => {
            let what = r.subject.as_deref().unwrap_or("certificate");
            write_line(out, &format!("{source}: rejected {what}"))?;
            for reason in &r.reasons {
                write_line(out, &format!("  {}: {}", reason.rule_name, reason.detail))?;
            }
        }
        Outcome::LinkOnly => {
            let order = match r.order_numbers.first() {
                Some(order) => format!(" (order number {order})"),
                None => String::new(),
            };
            write_line(
                out,
                &format!("{source}: the mail holds no certificate, only a download link{order}:"),
            )?;
            for link in &r.links {
                write_line(out, &format!("  {link}"))?;
            }
            writeln!(
                out,
                "  The link is a bearer URL: download the certificate yourself, then `fulfill import` the file."
            )?;
        }
        _ if r.upload == Some(UploadStatus::Unknown) => {
            let error = r.upload_error.as_deref().unwrap_or_default();
            write_line(out, &format!("{source}: {error}"))?;
        }
        _ if r.upload_error.is_some() => {
            let error = r.upload_error.as_deref().unwrap_or_default();
            write_line(
                out,
                &format!("{source}: recorded locally but not uploaded: {error}"),
            )?;
            writeln!(out, "  Run the same import again to retry the upload.")?;
        }
        _ => {
            write_line(out, &format!("{source}: {}", r.outcome.words()))?;
            for problem in &r.problems {
                write_line(out, &format!("  {problem}"))?;
            }
        }
    }
    Ok(())
}

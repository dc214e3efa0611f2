//! The table `import` and `poll` print of the certificates they met, and what needs a
//! person: rejections with their rules, link-only mails with their links, failed uploads.

use std::io::{self, Write};

use serde::Serialize;
use time::OffsetDateTime;

use super::IntoService;
use super::{Report, Table, days_left, write_line};
use crate::pipeline::{ImportResult, Outcome, UploadStatus};

/// What `import` and `poll` print of the certificates they met: `--json` gives the
/// results as they are.
#[derive(Serialize)]
#[serde(transparent)]
pub struct ImportReport<'a> {
    pub results: &'a [ImportResult],
    /// What was put into service (in `--json`, on each result as `deploy_hook`,
    /// `secrets_manager` and `listeners`).
    #[serde(skip)]
    pub into_service: &'a IntoService,
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
        self.into_service.write_text(out, |_| false)
    }
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

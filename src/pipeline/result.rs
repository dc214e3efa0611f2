//! What importing one message or file came to: one [`ImportResult`] per certificate (or
//! per file that gave none), with its [`Outcome`] and [`UploadStatus`]. `--json` prints
//! these; the predicates that sort outcomes live here and nowhere else.

use serde::Serialize;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::extract::Extraction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    AlreadyImported,
    WouldImport,
    Rejected,
    LinkOnly,
    NoCertificate,
    Unreadable,
}

impl Outcome {
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::AlreadyImported => "already imported",
            Outcome::WouldImport => "would import",
            Outcome::Rejected => "rejected",
            Outcome::LinkOnly => "link only",
            Outcome::NoCertificate => "no certificate",
            Outcome::Unreadable => "unreadable",
        }
    }

    pub fn exit(self) -> Exit {
        match self {
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport => Exit::Done,
            Outcome::Rejected | Outcome::LinkOnly | Outcome::NoCertificate => Exit::Rejected,
            Outcome::Unreadable => Exit::Failure,
        }
    }

    /// A certificate that passed every rule (recorded now, before, or in a dry run).
    pub fn is_accepted(self) -> bool {
        matches!(
            self,
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport
        )
    }

    /// A certificate that is in the database now (so its mail can be marked).
    pub fn is_recorded(self) -> bool {
        matches!(self, Outcome::Imported | Outcome::AlreadyImported)
    }

    /// A certificate this run brought in (or, in a dry run, would): it ends a wait.
    pub fn is_new(self) -> bool {
        matches!(self, Outcome::Imported | Outcome::WouldImport)
    }

    /// The `events.kind` of a result that recorded nothing itself.
    pub fn event_kind(self) -> &'static str {
        match self {
            Outcome::Rejected => "certificate_rejected",
            Outcome::LinkOnly => "mail_link_only",
            Outcome::NoCertificate => "mail_without_certificate",
            Outcome::Unreadable => "mail_unreadable",
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport => {
                "certificate_recorded"
            }
        }
    }
}

/// What became of the upload of an accepted certificate to the portal's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    Uploaded,
    AlreadyInPortal,
    /// Dry run: not in the portal's store yet.
    WouldUpload,
    /// No portal configured (or `--no-upload`).
    NotUploaded,
    /// Recorded locally; the next import of the same mail retries.
    Failed,
    /// Dry run: the portal could not be read, so whether it holds the certificate is not
    /// known (the validation stands).
    Unknown,
}

#[derive(Debug, Serialize)]
pub struct Reason {
    pub rule: u8,
    /// "rule 3 (validity)"
    pub rule_name: String,
    pub detail: String,
}

/// One line of the report: one certificate, or one file that gave none.
#[derive(Debug, Serialize)]
pub struct ImportResult {
    pub source: String,
    pub outcome: Outcome,
    pub id: Option<i64>,
    pub common_name: Option<String>,
    pub sha256: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub key_source: Option<String>,
    /// The portal order the certificate was recorded for.
    pub order_id: Option<i64>,
    /// The certificate's id in the portal's certificate store, once uploaded or found there.
    pub portal_certificate_id: Option<i64>,
    pub upload: Option<UploadStatus>,
    pub upload_error: Option<String>,
    /// "ok", or "failed: why", when the deploy hook ran for this certificate.
    pub deploy_hook: Option<String>,
    /// What the import into Secrets Manager did with this result's certificate, if it ran.
    pub secrets_manager: Option<String>,
    /// The load balancer listeners moved to this certificate in this run
    /// (`[portal] replace_in_use`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<crate::pipeline::replace::ListenerMove>,
    pub reasons: Vec<Reason>,
    pub message_id: Option<String>,
    pub links: Vec<String>,
    pub order_numbers: Vec<String>,
    pub problems: Vec<String>,
    #[serde(skip)]
    pub not_after_time: Option<OffsetDateTime>,
    #[serde(skip)]
    pub subject: Option<String>,
}

impl ImportResult {
    pub fn new(source: &str, outcome: Outcome, extraction: Option<&Extraction>) -> ImportResult {
        ImportResult {
            source: source.to_string(),
            outcome,
            id: None,
            common_name: None,
            sha256: None,
            serial: None,
            not_after: None,
            key_source: None,
            order_id: None,
            portal_certificate_id: None,
            upload: None,
            upload_error: None,
            deploy_hook: None,
            secrets_manager: None,
            listeners: Vec::new(),
            reasons: Vec::new(),
            message_id: extraction.and_then(|e| e.message_id.clone()),
            links: extraction.map(|e| e.links.clone()).unwrap_or_default(),
            order_numbers: extraction
                .map(|e| e.order_numbers.clone())
                .unwrap_or_default(),
            problems: extraction
                .map(|e| {
                    e.problems
                        .iter()
                        .map(|p| format!("{}: {}", p.found_in, p.what))
                        .collect()
                })
                .unwrap_or_default(),
            not_after_time: None,
            subject: None,
        }
    }

    /// The exit this result asks for: its outcome's, or a failure when the upload failed.
    pub fn exit(&self) -> Exit {
        let upload = match self.upload {
            Some(UploadStatus::Failed) => Exit::Failure,
            _ => Exit::Done,
        };
        self.outcome.exit().worst(upload)
    }

    /// Notes what the deploy hook did with this result's certificate, if it ran for it.
    pub fn attach_deployment(&mut self, deployments: &[crate::pipeline::deploy::Deployment]) {
        let ran = deployments
            .iter()
            .find(|d| Some(&d.sha256) == self.sha256.as_ref());
        if let Some(deployment) = ran {
            self.deploy_hook = Some(deployment.summary());
        }
    }

    /// Notes what the import into Secrets Manager did with this result's certificate.
    pub fn attach_secret(&mut self, secrets: &[crate::pipeline::secrets_manager::SecretImport]) {
        let done = secrets
            .iter()
            .find(|s| Some(&s.sha256) == self.sha256.as_ref());
        if let Some(secret) = done {
            self.secrets_manager = Some(secret.summary());
        }
    }

    /// Notes the listeners moved to this result's certificate, if any.
    pub fn attach_replacements(&mut self, replacements: &crate::pipeline::replace::Replacements) {
        self.listeners = replacements.for_certificate(self.id);
    }

    /// The `events.detail` of this result: where, which certificate, and every reason.
    pub fn event_detail(&self) -> String {
        let mut detail = self.source.clone();
        if let Some(sha256) = &self.sha256 {
            detail.push_str(&format!(" sha256 {sha256}"));
        }
        for reason in &self.reasons {
            detail.push_str(&format!("; {}: {}", reason.rule_name, reason.detail));
        }
        for link in &self.links {
            detail.push_str(&format!("; link {link}"));
        }
        for problem in &self.problems {
            detail.push_str(&format!("; {problem}"));
        }
        detail
    }
}

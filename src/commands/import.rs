//! `fulfill import FILE.eml...|-`: extract, validate and record the certificates in saved
//! fulfillment emails (or in a certificate file downloaded from a link-only mail).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Exit, Table, days_left, load_known_keys, load_trust_anchors, print_json};
use crate::cli::ImportArgs;
use crate::config::Settings;
use crate::extract::{self, Extraction, Limits};
use crate::keys::{self, KeyMaterial};
use crate::portal::types::{CertificateTemplate, SslOrder};
use crate::portal::{Portal, Uploaded};
use crate::store::{NewCertificate, Recorded, Store, timestamp};
use crate::validate::{self, Accepted, Expectations, KnownKey, Rejected};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Imported,
    AlreadyImported,
    WouldImport,
    Rejected,
    LinkOnly,
    NoCertificate,
    Unreadable,
}

impl Outcome {
    fn words(self) -> &'static str {
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

    fn exit(self) -> Exit {
        match self {
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport => Exit::Done,
            Outcome::Rejected | Outcome::LinkOnly | Outcome::NoCertificate => Exit::Rejected,
            Outcome::Unreadable => Exit::Failure,
        }
    }
}

#[derive(Debug, Serialize)]
struct Reason {
    rule: u8,
    /// "rule 3 (validity)"
    rule_name: String,
    detail: String,
}

/// One line of the report: one certificate, or one file that gave none.
#[derive(Debug, Serialize)]
struct ImportResult {
    source: String,
    outcome: Outcome,
    id: Option<i64>,
    common_name: Option<String>,
    sha256: Option<String>,
    serial: Option<String>,
    not_after: Option<String>,
    key_source: Option<String>,
    /// The certificate's id in the portal's certificate store, once uploaded or found there.
    portal_certificate_id: Option<i64>,
    /// "uploaded", "already_in_portal", "would_upload", "not_uploaded" or "failed".
    upload: Option<&'static str>,
    upload_error: Option<String>,
    reasons: Vec<Reason>,
    message_id: Option<String>,
    links: Vec<String>,
    order_numbers: Vec<String>,
    problems: Vec<String>,
    #[serde(skip)]
    not_after_time: Option<OffsetDateTime>,
    #[serde(skip)]
    subject: Option<String>,
}

impl ImportResult {
    fn new(source: &str, outcome: Outcome, extraction: Option<&Extraction>) -> ImportResult {
        ImportResult {
            source: source.to_string(),
            outcome,
            id: None,
            common_name: None,
            sha256: None,
            serial: None,
            not_after: None,
            key_source: None,
            portal_certificate_id: None,
            upload: None,
            upload_error: None,
            reasons: Vec::new(),
            message_id: extraction.and_then(|e| e.message_id.clone()),
            links: extraction.map(|e| e.links.clone()).unwrap_or_default(),
            order_numbers: extraction.map(|e| e.order_numbers.clone()).unwrap_or_default(),
            problems: extraction
                .map(|e| e.problems.iter().map(|p| format!("{}: {}", p.found_in, p.what)).collect())
                .unwrap_or_default(),
            not_after_time: None,
            subject: None,
        }
    }
}

pub fn run(args: &ImportArgs, settings: &Settings, json: bool, now: OffsetDateTime) -> anyhow::Result<Exit> {
    let mut known_keys = load_known_keys(settings, &args.key)?;
    let trust_anchors = load_trust_anchors(settings)?;
    let portal = if args.no_upload {
        None
    } else {
        match settings.portal()? {
            Some(portal) => Some(Portal::new(portal)?),
            None => {
                log::warn!(
                    "no portal credentials ([portal] username and api_key_cmd, or SL_USERNAME and SL_API_KEY): \
                     certificates are recorded locally, not uploaded; --no-upload says that is intended"
                );
                None
            }
        }
    };
    // With --order and a portal, the order's CSR ties the certificate to it and its common
    // name is the name to cover.
    let order = match (args.order, &portal) {
        (Some(id), Some(portal)) => Some(portal.ssl_order(id).with_context(|| format!("reading order {id} from the portal"))?),
        _ => None,
    };
    if let Some(order) = &order {
        known_keys.extend(order_csr_keys(order, &known_keys));
    }
    let expectations = Expectations {
        name: args
            .expect_name
            .clone()
            .or_else(|| order.as_ref().and_then(|o| o.common_name.clone())),
        keys: known_keys,
    };
    let limits = Limits {
        max_message_size: settings.max_message_size,
        ..Limits::default()
    };
    let mut store = if args.dry_run {
        Store::open_read_only(&settings.database)?
    } else {
        Some(Store::open(&settings.database)?)
    };
    let upload = Upload {
        portal: portal.as_ref(),
        order: order.as_ref(),
        dry_run: args.dry_run,
    };

    let mut results = Vec::new();
    for path in &args.files {
        let source = path.display().to_string();
        let first_result = results.len();
        let bytes = match read_input(path, limits.max_message_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!("{source}: {e:#}");
                let mut result = ImportResult::new(&source, Outcome::Unreadable, None);
                result.problems.push(format!("{e:#}"));
                results.push(result);
                continue;
            }
        };
        let extraction = match extract::extract_any(&bytes, &source, &limits) {
            Ok(extraction) => extraction,
            Err(e) => {
                let mut result = ImportResult::new(&source, Outcome::NoCertificate, None);
                result.problems.push(e.to_string());
                results.push(result);
                continue;
            }
        };
        for problem in &extraction.problems {
            log::warn!("{source}: {}: {}", problem.found_in, problem.what);
        }
        for place in &extraction.private_keys {
            log::warn!(
                "{source}: {place}: the mail contains a private key; it was ignored and not stored. \
                 A key sent by mail should be treated as compromised"
            );
        }
        let report = validate::validate(&extraction.certificates, &expectations, &trust_anchors, now);
        for root in &report.dropped_roots {
            log::info!("{source}: self-signed root {} left out of the chain", root.label());
        }
        for accepted in report.accepted() {
            let mut result = record(accepted, args, &source, &extraction, store.as_mut(), args.dry_run, now)?;
            upload.run(accepted, &extraction, store.as_ref(), &mut result, now)?;
            results.push(result);
        }
        for rejected in report.rejected() {
            results.push(rejection(rejected, &source, &extraction));
        }
        if report.verdicts.is_empty() {
            let outcome = if extraction.is_link_only() {
                Outcome::LinkOnly
            } else {
                Outcome::NoCertificate
            };
            let mut result = ImportResult::new(&source, outcome, Some(&extraction));
            if !extraction.certificates.is_empty() {
                result
                    .problems
                    .push("only CA certificates were found, no server certificate".into());
            }
            results.push(result);
        }
        if let Some(store) = store.as_ref().filter(|_| !args.dry_run) {
            for result in &results[first_result..] {
                if !matches!(result.outcome, Outcome::Imported | Outcome::AlreadyImported) {
                    store.add_event(args.order, result.outcome_kind(), &result.event_detail(), now)?;
                }
            }
        }
    }

    let exit = results.iter().fold(Exit::Done, |exit, r| {
        let upload_failed = if r.upload == Some("failed") { Exit::Failure } else { Exit::Done };
        exit.worst(r.outcome.exit()).worst(upload_failed)
    });
    if json {
        print_json(&results)?;
    } else {
        print_report(&results, now)?;
    }
    Ok(exit)
}

impl ImportResult {
    fn outcome_kind(&self) -> &'static str {
        match self.outcome {
            Outcome::Rejected => "certificate_rejected",
            Outcome::LinkOnly => "mail_link_only",
            Outcome::NoCertificate => "mail_without_certificate",
            Outcome::Unreadable => "mail_unreadable",
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport => "certificate_recorded",
        }
    }

    fn event_detail(&self) -> String {
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

/// The keys of an order's CSR, named as the order's, with the private key file that has the
/// same public key when `[keys] dirs` holds one.
fn order_csr_keys(order: &SslOrder, known: &[KnownKey]) -> Vec<KnownKey> {
    let Some(csr) = &order.certificate_signing_request else {
        log::warn!("order {} has no CSR in the portal; only local keys can match", order.id);
        return Vec::new();
    };
    match keys::read_key_material(csr.as_bytes()) {
        Ok(materials) => materials
            .into_iter()
            .filter_map(|m| match m {
                KeyMaterial::SigningRequest { key, .. } => Some(key),
                KeyMaterial::PrivateKey(_) => None,
            })
            .map(|key| {
                let local = known.iter().find(|k| k.key == key);
                KnownKey {
                    source: format!("CSR of order {}", order.id),
                    requested_name: order.common_name.clone(),
                    private_key_file: local.and_then(|k| k.private_key_file.clone()),
                    csr_file: None,
                    key,
                }
            })
            .collect(),
        Err(e) => {
            log::warn!("order {}: its CSR cannot be read: {e}", order.id);
            Vec::new()
        }
    }
}

/// Uploading accepted certificates to the portal's certificate store.
struct Upload<'a> {
    portal: Option<&'a Portal>,
    order: Option<&'a SslOrder>,
    dry_run: bool,
}

impl Upload<'_> {
    /// Uploads a recorded certificate unless the portal already has it. A failure is
    /// reported on the result (exit 1) but keeps the local record: the next import of the
    /// same mail finds it without a portal id and tries again.
    fn run(
        &self,
        accepted: &Accepted,
        extraction: &Extraction,
        store: Option<&Store>,
        result: &mut ImportResult,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let Some(portal) = self.portal else {
            result.upload = Some("not_uploaded");
            return Ok(());
        };
        let leaf = &accepted.leaf;
        let row = match store {
            Some(store) => store.certificate_by_sha256(&leaf.sha256)?,
            None => None,
        };
        if let Some(portal_id) = row.as_ref().and_then(|r| r.portal_certificate_id) {
            result.portal_certificate_id = Some(portal_id);
            result.upload = Some("already_in_portal");
            return Ok(());
        }
        let common_name = result.common_name.clone().unwrap_or_default();
        if self.dry_run {
            // A dry run still reads: it says whether the upload would create anything.
            result.upload = Some(match portal.find_certificate(&common_name, &leaf.sha256)? {
                Some(found) => {
                    result.portal_certificate_id = Some(found.id);
                    "already_in_portal"
                }
                None => "would_upload",
            });
            return Ok(());
        }
        let outcome = self.template(accepted, extraction).and_then(|template| {
            portal
                .upload_certificate(&template, &common_name, &leaf.sha256)
                .map_err(anyhow::Error::new)
        });
        match (outcome, store, row) {
            (Ok(uploaded), Some(store), Some(row)) => {
                store.set_portal_certificate_id(row.id, uploaded.id(), now)?;
                result.portal_certificate_id = Some(uploaded.id());
                result.upload = Some(match uploaded {
                    Uploaded::Created(_) => "uploaded",
                    Uploaded::AlreadyInStore(_) => "already_in_portal",
                });
            }
            (Ok(_), _, _) => anyhow::bail!("internal: certificate {} uploaded but not recorded", leaf.sha256),
            (Err(error), store, _) => {
                let message = format!("{error:#}");
                log::error!("{}: upload of {} failed: {message}", result.source, leaf.sha256);
                if let Some(store) = store {
                    store.add_event(
                        self.order.map(|o| o.id),
                        "upload_failed",
                        &format!("{} sha256 {}: {message}", result.source, leaf.sha256),
                        now,
                    )?;
                }
                result.upload = Some("failed");
                result.upload_error = Some(message);
            }
        }
        Ok(())
    }

    /// What createObject receives: the certificate, its chain in order, the private key
    /// (the portal requires it, softlayer-api.md §2.3), the CSR and a note of provenance.
    fn template(&self, accepted: &Accepted, extraction: &Extraction) -> anyhow::Result<CertificateTemplate> {
        let key_file = accepted.key.private_key_file.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the portal needs the private key of {} and none was found: put it in a [keys] dirs folder or pass --key",
                accepted.leaf.label()
            )
        })?;
        let private_key = std::fs::read_to_string(key_file)
            .with_context(|| format!("cannot read the private key {}", key_file.display()))?;
        let order_csr = self
            .order
            .filter(|_| accepted.key.source.starts_with("CSR of order"))
            .and_then(|o| o.certificate_signing_request.clone());
        let csr = match (order_csr, &accepted.key.csr_file) {
            (Some(csr), _) => Some(csr),
            (None, Some(path)) => std::fs::read_to_string(path).ok(),
            (None, None) => None,
        };
        let chain: String = accepted.chain.iter().map(|c| to_pem(&c.der)).collect();
        let mut notes = String::from("imported by fulfill");
        if let Some(order) = self.order {
            notes.push_str(&format!("; order {}", order.id));
        }
        if let Some(message_id) = &extraction.message_id {
            notes.push_str(&format!("; mail <{message_id}>"));
        }
        Ok(CertificateTemplate {
            certificate: to_pem(&accepted.leaf.der),
            intermediate_certificate: (!chain.is_empty()).then_some(chain),
            private_key,
            certificate_signing_request: csr,
            notes: Some(notes),
        })
    }
}

/// Reads a file, or standard input for `-`, refusing more than `limit` bytes without
/// reading them all.
fn read_input(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > limit {
        anyhow::bail!(
            "{} is larger than the limit of {limit} bytes ([mailbox] max_message_size); not read",
            path.display()
        );
    }
    Ok(bytes)
}

fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn record(
    accepted: &Accepted,
    args: &ImportArgs,
    source: &str,
    extraction: &Extraction,
    store: Option<&mut Store>,
    dry_run: bool,
    now: OffsetDateTime,
) -> anyhow::Result<ImportResult> {
    let leaf = &accepted.leaf;
    let mut result = ImportResult::new(source, Outcome::Imported, Some(extraction));
    result.common_name = Some(leaf.common_name.clone().unwrap_or_else(|| accepted.expected_name.clone()));
    result.sha256 = Some(leaf.sha256.clone());
    result.serial = Some(leaf.serial.clone());
    result.not_after = Some(timestamp(leaf.not_after));
    result.not_after_time = Some(leaf.not_after);
    result.key_source = Some(accepted.key_source.clone());

    let existing = match store.as_deref() {
        Some(store) => store.certificate_by_sha256(&leaf.sha256)?,
        None => None,
    };
    if dry_run {
        result.outcome = if existing.is_some() { Outcome::AlreadyImported } else { Outcome::WouldImport };
        result.id = existing.map(|row| row.id);
        return Ok(result);
    }
    let Some(store) = store else {
        anyhow::bail!("internal: no database open for a real import");
    };
    let new = NewCertificate {
        order_id: args.order,
        common_name: result.common_name.clone().unwrap_or_default(),
        subject_alt_names: leaf.dns_names.clone(),
        serial: leaf.serial.clone(),
        sha256: leaf.sha256.clone(),
        issuer: leaf.issuer.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        certificate_pem: to_pem(&leaf.der),
        chain_pem: accepted.chain.iter().map(|c| to_pem(&c.der)).collect(),
        key_source: Some(accepted.key_source.clone()),
        source_message_id: extraction.message_id.clone(),
        source: Some(source.to_string()),
    };
    let recorded = store
        .record_certificate(&new, now)
        .with_context(|| format!("{source}: recording certificate {}", leaf.sha256))?;
    (result.outcome, result.id) = match recorded {
        Recorded::New(id) => (Outcome::Imported, Some(id)),
        Recorded::AlreadyThere(id) => (Outcome::AlreadyImported, Some(id)),
    };
    Ok(result)
}

fn rejection(rejected: &Rejected, source: &str, extraction: &Extraction) -> ImportResult {
    let leaf = &rejected.leaf;
    let mut result = ImportResult::new(source, Outcome::Rejected, Some(extraction));
    result.common_name = leaf.common_name.clone().or_else(|| leaf.dns_names.first().cloned());
    result.sha256 = Some(leaf.sha256.clone());
    result.serial = Some(leaf.serial.clone());
    result.not_after = Some(timestamp(leaf.not_after));
    result.not_after_time = Some(leaf.not_after);
    result.subject = Some(leaf.label());
    result.reasons = rejected
        .reasons
        .iter()
        .map(|r| Reason {
            rule: r.rule as u8,
            rule_name: r.rule.to_string(),
            detail: r.detail.clone(),
        })
        .collect();
    result
}

fn print_report(results: &[ImportResult], now: OffsetDateTime) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut table = Table::new(&["RESULT", "NAME", "ID", "PORTAL", "EXPIRES", "FILE"]);
    for r in results {
        let name = match (&r.common_name, r.order_numbers.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(order)) => format!("order number {order}"),
            (None, None) => "-".into(),
        };
        table.row(vec![
            r.outcome.words().into(),
            name,
            r.id.map(|id| id.to_string()).unwrap_or_else(|| "-".into()),
            match (r.portal_certificate_id, r.upload) {
                (Some(id), _) => id.to_string(),
                (None, Some("failed")) => "failed".into(),
                (None, Some("would_upload")) => "would upload".into(),
                _ => "-".into(),
            },
            r.not_after_time.map(|t| days_left(t, now)).unwrap_or_else(|| "-".into()),
            r.source.clone(),
        ]);
    }
    table.write(&mut out)?;

    let explained: Vec<&ImportResult> = results
        .iter()
        .filter(|r| {
            !matches!(r.outcome, Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport)
                || r.upload_error.is_some()
        })
        .collect();
    if !explained.is_empty() {
        writeln!(out)?;
    }
    for r in explained {
        match r.outcome {
            Outcome::Rejected => {
                writeln!(out, "{}: rejected {}", r.source, r.subject.as_deref().unwrap_or("certificate"))?;
                for reason in &r.reasons {
                    writeln!(out, "  {}: {}", reason.rule_name, reason.detail)?;
                }
            }
            Outcome::LinkOnly => {
                writeln!(
                    out,
                    "{}: the mail holds no certificate, only a download link{}:",
                    r.source,
                    match r.order_numbers.first() {
                        Some(order) => format!(" (order number {order})"),
                        None => String::new(),
                    }
                )?;
                for link in &r.links {
                    writeln!(out, "  {link}")?;
                }
                writeln!(
                    out,
                    "  The link is a bearer URL: download the certificate yourself, then `fulfill import` the file."
                )?;
            }
            _ if r.upload_error.is_some() => {
                writeln!(
                    out,
                    "{}: recorded locally but not uploaded: {}",
                    r.source,
                    r.upload_error.as_deref().unwrap_or_default()
                )?;
                writeln!(out, "  Run the same import again to retry the upload.")?;
            }
            _ => {
                writeln!(out, "{}: {}", r.source, r.outcome.words())?;
                for problem in &r.problems {
                    writeln!(out, "  {problem}")?;
                }
            }
        }
    }
    Ok(())
}

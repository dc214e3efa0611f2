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
use crate::store::{NewCertificate, Recorded, Store, timestamp};
use crate::validate::{self, Accepted, Expectations, Rejected};

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
    let known_keys = load_known_keys(settings, &args.key)?;
    let trust_anchors = load_trust_anchors(settings)?;
    let expectations = Expectations {
        name: args.expect_name.clone(),
        keys: known_keys,
    };
    let limits = Limits {
        max_message_size: settings.max_message_size,
        ..Limits::default()
    };
    if !args.no_upload {
        // The portal client is not part of fulfill yet: say so instead of pretending.
        log::info!("portal upload is not available in this version; certificates are recorded locally only");
    }
    let mut store = if args.dry_run {
        Store::open_read_only(&settings.database)?
    } else {
        Some(Store::open(&settings.database)?)
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
            results.push(record(accepted, args, &source, &extraction, store.as_mut(), args.dry_run, now)?);
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

    let exit = results.iter().fold(Exit::Done, |exit, r| exit.worst(r.outcome.exit()));
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
    let mut table = Table::new(&["RESULT", "NAME", "ID", "EXPIRES", "FILE"]);
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
            r.not_after_time.map(|t| days_left(t, now)).unwrap_or_else(|| "-".into()),
            r.source.clone(),
        ]);
    }
    table.write(&mut out)?;

    let explained: Vec<&ImportResult> = results
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport))
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

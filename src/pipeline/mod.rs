//! The only place that chains steps: a message's bytes → extract → validate → record →
//! upload, with each side effect committed before the next (docs/architecture.md).
//! Commands (`import`, `poll`) decide where bytes come from and how results are shown;
//! `scan` reads the mailbox; `resend_loop` runs the whole loop for portal orders: resend,
//! wait, import, upload, deploy.

pub mod deploy;
pub mod in_use;
pub mod order_keys;
pub mod pending;
pub mod replace;
pub mod resend_loop;
pub mod result;
pub mod scan;
pub mod secrets_manager;
pub mod upload;

use anyhow::Context;
use time::OffsetDateTime;

pub use self::order_keys::{RecordedCertificates, certificate_key, keys_for_orders};
pub use self::result::{ImportResult, Outcome, Reason, UploadStatus};
pub use self::scan::{Folder, MarkFailure, Scan, note_mark_failures, scan_mailbox};
pub use self::upload::{Upload, to_pem};
use crate::extract::parts::Skipped;
use crate::extract::{self, Extraction, Limits};
use crate::portal::Portal;
use crate::store::{MailBatch, MailboxPosition, NewCertificate, Recorded, Store, timestamp};
use crate::validate::{self, Accepted, CertificateInfo, Expectations, Rejected};

/// What a certificate must pass: the expectations, the trust anchors, the extraction limits.
pub struct Checks {
    pub expectations: Expectations,
    pub trust_anchors: Vec<Vec<u8>>,
    pub limits: Limits,
}

/// Where accepted certificates go.
pub struct Destination<'a> {
    /// `None` only in a dry run without a database.
    pub store: Option<&'a mut Store>,
    pub upload: Upload<'a>,
    /// The order every certificate is recorded for (`import --order`).
    pub order_id: Option<i64>,
    /// A deploy hook is configured: a new certificate is recorded with its deployment
    /// pending (`deploy.rs` runs it).
    pub deploy: bool,
    pub dry_run: bool,
}

impl<'a> Destination<'a> {
    /// Record in `store`, upload to `portal` when there is one; no order of its own.
    pub fn new(
        store: Option<&'a mut Store>,
        portal: Option<&'a Portal>,
        dry_run: bool,
    ) -> Destination<'a> {
        Destination {
            store,
            upload: Upload {
                portal,
                order: None,
                dry_run,
            },
            order_id: None,
            deploy: false,
            dry_run,
        }
    }
}

/// Extracts, validates, records and uploads what one message (or certificate file) holds.
/// With a mailbox position, the position moves past this message in the same transaction
/// as what was learnt from it, so a crash never loses or repeats a message.
pub fn import_message(
    bytes: &[u8],
    source: &str,
    checks: &Checks,
    destination: &mut Destination<'_>,
    position: Option<&MailboxPosition>,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<ImportResult>> {
    let mut batch = MailBatch::default();
    let at = InBatch {
        position,
        left_out: &[],
        batch: &mut batch,
    };
    let results = import_in_batch(bytes, source, checks, destination, at, now)?;
    commit(destination, &mut batch, now)?;
    Ok(results)
}

/// Where a mail of a mailbox scan is: its position, the parts of it left on the server,
/// and the batch that records what it taught.
pub struct InBatch<'a> {
    pub position: Option<&'a MailboxPosition>,
    /// Parts not fetched: said on a result that found nothing, and when over the limit.
    pub left_out: &'a [Skipped],
    pub batch: &'a mut MailBatch,
}

/// [`import_message`] for one mail of a batch: what records nothing (the events, the
/// position) goes into the batch, which the caller commits once for the batch. Before a
/// certificate is recorded the batch is committed, and the certificate is recorded with
/// its position in a transaction of its own: its upload then comes after both commits,
/// and the position never passes a mail whose event is not written.
pub fn import_in_batch(
    bytes: &[u8],
    source: &str,
    checks: &Checks,
    destination: &mut Destination<'_>,
    at: InBatch<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<ImportResult>> {
    let InBatch {
        position,
        left_out,
        batch,
    } = at;
    let mut results = Vec::new();
    let extraction = match extract::extract_any(bytes, source, &checks.limits) {
        Ok(extraction) => extraction,
        Err(e) => {
            let mut result = ImportResult::new(source, Outcome::NoCertificate, None);
            result.problems.push(e.to_string());
            results.push(result);
            note_left_out(&mut results, left_out);
            finish(&results, destination, position, batch);
            return Ok(results);
        }
    };
    log_extraction(source, &extraction);
    let report = validate::validate(
        &extraction.certificates,
        &checks.expectations,
        &checks.trust_anchors,
        now,
    );
    log_dropped_roots(source, &report);
    let accepted: Vec<&Accepted> = report.accepted().collect();
    let at = InBatch {
        position,
        left_out,
        batch: &mut *batch,
    };
    results.extend(record_and_upload(
        &accepted,
        source,
        &extraction,
        destination,
        at,
        now,
    )?);
    for rejected in report.rejected() {
        results.push(rejection(rejected, source, &extraction));
    }
    if report.verdicts.is_empty() {
        results.push(no_server_certificate(source, &extraction));
    }
    note_left_out(&mut results, left_out);
    finish(&results, destination, position, batch);
    // A recorded certificate moved the position past this mail already: what else the
    // mail taught (a certificate rejected beside it) is written now, not at the batch's
    // end, which a run killed in between would never reach for this mail.
    if results.iter().any(|r| r.outcome.is_recorded()) {
        commit(destination, batch, now)?;
    }
    Ok(results)
}

/// Records and uploads each accepted certificate of a mail, the batch so far committed
/// before each record, so that each upload comes after the commit that records it.
fn record_and_upload(
    all_accepted: &[&Accepted],
    source: &str,
    extraction: &Extraction,
    destination: &mut Destination<'_>,
    at: InBatch<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<ImportResult>> {
    let mut results = Vec::new();
    for (i, accepted) in all_accepted.iter().enumerate() {
        commit(destination, at.batch, now)?;
        // Only the mail's last certificate moves the position past it: a run killed after
        // an earlier one reads the mail again, and finds the rest (the first by fingerprint).
        let here = at.position.filter(|_| i + 1 == all_accepted.len());
        let mut result = record(accepted, source, extraction, destination, here, now)?;
        let store = destination.store.as_deref();
        (destination.upload).run(accepted, extraction, store, &mut result, now)?;
        results.push(result);
    }
    Ok(results)
}

/// What an extraction found that its results do not say, in the log. Each problem is on
/// its result, which the report prints: logged again only with -v.
fn log_extraction(source: &str, extraction: &Extraction) {
    for problem in &extraction.problems {
        log::info!("{source}: {}: {}", problem.found_in, problem.what);
    }
    for place in &extraction.private_keys {
        log::warn!(
            "{source}: {place}: the mail contains a private key; it was ignored and not stored. \
             A key sent by mail should be treated as compromised"
        );
    }
}

/// The self-signed roots that came with the mail, which trust never comes from (rule 4).
fn log_dropped_roots(source: &str, report: &validate::Report) {
    for root in &report.dropped_roots {
        log::info!(
            "{source}: self-signed root {} left out of the chain",
            root.label()
        );
    }
}

/// The result of a mail or file with no server certificate: links only, CA certificates
/// only, or nothing.
fn no_server_certificate(source: &str, extraction: &Extraction) -> ImportResult {
    let outcome = if extraction.is_link_only() {
        Outcome::LinkOnly
    } else {
        Outcome::NoCertificate
    };
    let mut result = ImportResult::new(source, outcome, Some(extraction));
    if !extraction.certificates.is_empty() {
        result
            .problems
            .push("only CA certificates were found, no server certificate".into());
    }
    result
}

/// Says which parts were left on the server: on a result that found nothing, all of
/// them; on the others, those over the size limit (which could have held a certificate).
fn note_left_out(results: &mut [ImportResult], left_out: &[Skipped]) {
    for result in results {
        let said: Vec<&Skipped> = (left_out.iter())
            .filter(|s| s.over_limit || result.outcome == Outcome::NoCertificate)
            .collect();
        if !said.is_empty() {
            result.problems.push(not_fetched(said));
        }
    }
}

/// "not fetched, ...: part 2 (application/pdf 'x.pdf', 300000 bytes), ..."
pub fn not_fetched<'a>(skipped: impl IntoIterator<Item = &'a Skipped>) -> String {
    let parts: Vec<String> = skipped.into_iter().map(Skipped::to_string).collect();
    format!(
        "not fetched, as no certificate can be in it: {}",
        parts.join(", ")
    )
}

/// Writes what `batch` holds in one transaction (nothing in a dry run).
pub fn commit(
    destination: &Destination<'_>,
    batch: &mut MailBatch,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    match destination.store.as_deref() {
        Some(store) if !destination.dry_run => Ok(store.commit_batch(batch, now)?),
        _ => {
            *batch = MailBatch::default();
            Ok(())
        }
    }
}

/// Adds to `batch` an event for every outcome that recorded nothing (an import records its
/// own), moving the mailbox position with it. In a mailbox scan that includes ordinary mail
/// without any certificate (`mail_without_certificate`, kept short): every mail the position
/// passes without importing from it is accounted for.
pub fn finish(
    results: &[ImportResult],
    destination: &Destination<'_>,
    position: Option<&MailboxPosition>,
    batch: &mut MailBatch,
) {
    if destination.dry_run || destination.store.is_none() {
        return;
    }
    for result in results {
        if result.outcome.is_recorded() {
            continue;
        }
        // Ordinary mail in a scan: where it is and what stopped a look inside (a skipped
        // zip, a part not fetched), not the links of every newsletter.
        let detail = if position.is_some() && result.outcome == Outcome::NoCertificate {
            std::iter::once(result.source.as_str())
                .chain(result.problems.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            result.event_detail()
        };
        let kind = result.outcome.event_kind();
        batch.event(destination.order_id, kind, &detail, position);
    }
    // Recording a certificate moved it already; moving again is harmless (it never goes back).
    if let Some(position) = position {
        batch.advance(position);
    }
}

/// Records an accepted certificate (or, in a dry run, says whether it is new), and moves
/// the mailbox position in the same transaction.
fn record(
    accepted: &Accepted,
    source: &str,
    extraction: &Extraction,
    destination: &mut Destination<'_>,
    position: Option<&MailboxPosition>,
    now: OffsetDateTime,
) -> anyhow::Result<ImportResult> {
    let leaf = &accepted.leaf;
    let mut result = ImportResult::new(source, Outcome::Imported, Some(extraction));
    result.common_name = Some(
        leaf.common_name
            .clone()
            .unwrap_or_else(|| accepted.expected_name.clone()),
    );
    result.sha256 = Some(leaf.sha256.clone());
    result.serial = Some(leaf.serial.clone());
    result.not_after = Some(timestamp(leaf.not_after));
    result.not_after_time = Some(leaf.not_after);
    result.key_source = Some(accepted.key_source.clone());
    result.order_id = destination.order_id.or(accepted.key.order_id);

    let existing = match destination.store.as_deref() {
        Some(store) => store.certificate_by_sha256(&leaf.sha256)?,
        None => None,
    };
    if destination.dry_run {
        result.outcome = if existing.is_some() {
            Outcome::AlreadyImported
        } else {
            Outcome::WouldImport
        };
        result.id = existing.map(|row| row.id);
        return Ok(result);
    }
    let Some(store) = destination.store.as_deref_mut() else {
        anyhow::bail!("internal: no database open for a real import");
    };
    let new = NewCertificate {
        order_id: destination.order_id.or(accepted.key.order_id),
        chain_pem: accepted.chain.iter().map(|c| to_pem(&c.der)).collect(),
        key_source: Some(accepted.key_source.clone()),
        source_message_id: extraction.message_id.clone(),
        source: Some(source.to_string()),
        deploy: destination.deploy,
        ..leaf_record(leaf, result.common_name.clone().unwrap_or_default())
    };
    let recorded = store
        .record_certificate(&new, position, now)
        .with_context(|| format!("{source}: recording certificate {}", leaf.sha256))?;
    (result.outcome, result.id) = match recorded {
        Recorded::New(id) => (Outcome::Imported, Some(id)),
        Recorded::AlreadyThere(id) => (Outcome::AlreadyImported, Some(id)),
    };
    Ok(result)
}

/// What a leaf says of itself, as a new record; the caller says where it came from.
pub fn leaf_record(leaf: &CertificateInfo, common_name: String) -> NewCertificate {
    NewCertificate {
        order_id: None,
        common_name,
        subject_alt_names: leaf.dns_names.clone(),
        serial: leaf.serial.clone(),
        sha256: leaf.sha256.clone(),
        issuer: leaf.issuer.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        certificate_pem: to_pem(&leaf.der),
        chain_pem: String::new(),
        key_source: None,
        source_message_id: None,
        source: None,
        deploy: false,
    }
}

pub fn rejection(rejected: &Rejected, source: &str, extraction: &Extraction) -> ImportResult {
    let leaf = &rejected.leaf;
    let mut result = ImportResult::new(source, Outcome::Rejected, Some(extraction));
    result.common_name = leaf
        .common_name
        .clone()
        .or_else(|| leaf.dns_names.first().cloned());
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

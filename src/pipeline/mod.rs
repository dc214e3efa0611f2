//! The only place that chains steps: a message's bytes → extract → validate → record →
//! upload, with each side effect committed before the next. Commands (`import`, `poll`)
//! decide where bytes come from and how results are shown. `orders` runs the whole loop
//! for portal orders: resend, wait, import, upload, deploy.

pub mod orders;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use crate::commands::Exit;
use crate::config::MailboxConfig;
use crate::extract::{self, Extraction, Limits};
use crate::keys::{self, KeyMaterial, PublicKeyId};
use crate::mailbox::Session;
use crate::portal::types::{CertificateTemplate, SslOrder};
use crate::portal::{Portal, Uploaded};
use crate::store::{CertificateRow, MailboxPosition, NewCertificate, Recorded, Store, timestamp};
use crate::validate::{self, Accepted, Expectations, KnownKey, Rejected};

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
    pub order_id: Option<i64>,
    pub dry_run: bool,
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
    let mut results = Vec::new();
    let extraction = match extract::extract_any(bytes, source, &checks.limits) {
        Ok(extraction) => extraction,
        Err(e) => {
            let mut result = ImportResult::new(source, Outcome::NoCertificate, None);
            result.problems.push(e.to_string());
            results.push(result);
            finish(&results, destination, position, now)?;
            return Ok(results);
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
    let report = validate::validate(
        &extraction.certificates,
        &checks.expectations,
        &checks.trust_anchors,
        now,
    );
    for root in &report.dropped_roots {
        log::info!(
            "{source}: self-signed root {} left out of the chain",
            root.label()
        );
    }
    for accepted in report.accepted() {
        let mut result = record(accepted, source, &extraction, destination, position, now)?;
        let upload = destination.upload;
        upload.run(
            accepted,
            &extraction,
            destination.store.as_deref(),
            &mut result,
            now,
        )?;
        results.push(result);
    }
    for rejected in report.rejected() {
        results.push(rejection(rejected, source, &extraction));
    }
    if report.verdicts.is_empty() {
        let outcome = if extraction.is_link_only() {
            Outcome::LinkOnly
        } else {
            Outcome::NoCertificate
        };
        let mut result = ImportResult::new(source, outcome, Some(&extraction));
        if !extraction.certificates.is_empty() {
            result
                .problems
                .push("only CA certificates were found, no server certificate".into());
        }
        results.push(result);
    }
    finish(&results, destination, position, now)?;
    Ok(results)
}

/// What one pass over the mailbox folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Results for every message that held certificate material (ordinary mail is left out).
    pub results: Vec<ImportResult>,
    pub new_messages: usize,
    pub too_large: usize,
    pub uidvalidity_changed: bool,
}

/// One pass over the configured folder: what is new since the last run (by UID, within
/// `since`, from `senders`), each message sized, fetched, imported and marked in turn, the
/// position recorded with what each message taught. A run with nothing new costs one
/// SELECT and one UID SEARCH, whatever the size of the mailbox.
pub fn scan_mailbox(
    session: &mut Session,
    config: &MailboxConfig,
    account: &str,
    checks: &Checks,
    destination: &mut Destination<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<Scan> {
    let folder = &config.session.folder;
    let status = session
        .select(folder)
        .with_context(|| format!("opening folder {folder} on {}", session.host()))?;
    let state = match destination.store.as_deref() {
        Some(store) => store.mailbox_state(account, folder)?,
        None => None,
    };
    let mut scan = Scan::default();
    let after_uid = match state {
        Some(state) if state.uidvalidity == status.uidvalidity => state.last_uid,
        Some(state) => {
            // The UIDs we remember mean nothing now (server migration, restore): look at the
            // whole window again; certificates already recorded are known by fingerprint.
            log::warn!(
                "{account}/{folder}: UIDVALIDITY changed from {} to {}; rescanning mail of the last {}",
                state.uidvalidity,
                status.uidvalidity,
                humantime::format_duration(config.since)
            );
            scan.uidvalidity_changed = true;
            0
        }
        None => 0,
    };
    let since = (now - config.since).date();
    let uids = session
        .search_new(after_uid, Some(since), &config.session.senders)
        .with_context(|| format!("searching {folder} for new mail"))?;
    scan.new_messages = uids.len();
    if uids.is_empty() {
        return Ok(scan);
    }
    for (uid, size) in session.sizes(&uids)? {
        let position = MailboxPosition {
            account: account.to_string(),
            folder: folder.clone(),
            uidvalidity: status.uidvalidity,
            uid,
        };
        // RFC 5092 IMAP URL: a reviewer can find the mail again from the record.
        let source = format!(
            "imap://{account}/{folder};UIDVALIDITY={};UID={uid}",
            status.uidvalidity
        );
        if u64::from(size) > config.session.max_message_size {
            scan.too_large += 1;
            let detail = format!(
                "{source}: {size} bytes, over max_message_size ({} bytes); not fetched",
                config.session.max_message_size
            );
            log::warn!("{detail}");
            if let Some(store) = destination
                .store
                .as_deref()
                .filter(|_| !destination.dry_run)
            {
                store.add_event_at(None, "mail_too_large", &detail, Some(&position), now)?;
            }
            continue;
        }
        let Some(bytes) = session.fetch(uid)? else {
            // Expunged between SEARCH and FETCH: nothing to learn, move on.
            if let Some(store) = destination
                .store
                .as_deref()
                .filter(|_| !destination.dry_run)
            {
                store.advance_mailbox(&position, now)?;
            }
            continue;
        };
        let results = import_message(&bytes, &source, checks, destination, Some(&position), now)?;
        let imported = results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Imported | Outcome::AlreadyImported));
        if imported && !destination.dry_run {
            session
                .after_import(uid, &config.session.after_import)
                .with_context(|| format!("{source}: applying after_import"))?;
        }
        scan.results.extend(
            results
                .into_iter()
                .filter(|r| r.outcome != Outcome::NoCertificate),
        );
    }
    Ok(scan)
}

/// Records an event for every outcome that recorded nothing (an import records its own),
/// moving the mailbox position with it.
fn finish(
    results: &[ImportResult],
    destination: &mut Destination<'_>,
    position: Option<&MailboxPosition>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if destination.dry_run {
        return Ok(());
    }
    let Some(store) = destination.store.as_deref_mut() else {
        return Ok(());
    };
    let mut moved = false;
    for result in results {
        if matches!(result.outcome, Outcome::Imported | Outcome::AlreadyImported) {
            continue;
        }
        // In a mailbox scan, mail without any certificate is ordinary mail, not an event.
        if position.is_some() && result.outcome == Outcome::NoCertificate {
            continue;
        }
        store.add_event_at(
            destination.order_id,
            result.outcome_kind(),
            &result.event_detail(),
            position,
            now,
        )?;
        moved = true;
    }
    // Recording a certificate moved it already; moving again is harmless (it never goes back).
    if let Some(position) = position.filter(|_| !moved) {
        store.advance_mailbox(position, now)?;
    }
    Ok(())
}

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
    /// "uploaded", "already_in_portal", "would_upload", "not_uploaded" or "failed".
    pub upload: Option<&'static str>,
    pub upload_error: Option<String>,
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
}

impl ImportResult {
    pub fn outcome_kind(&self) -> &'static str {
        match self.outcome {
            Outcome::Rejected => "certificate_rejected",
            Outcome::LinkOnly => "mail_link_only",
            Outcome::NoCertificate => "mail_without_certificate",
            Outcome::Unreadable => "mail_unreadable",
            Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport => {
                "certificate_recorded"
            }
        }
    }

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

/// The public key of a recorded certificate.
pub fn certificate_key(row: &CertificateRow) -> Option<PublicKeyId> {
    let block = crate::extract::scan_pem(&row.certificate_pem, usize::MAX)
        .blocks
        .into_iter()
        .next()?;
    let der = block.der.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    keys::from_spki(cert.public_key()).ok()
}

/// The keys of an order's CSR, named as the order's, with the private key file that has the
/// same public key when `[keys] dirs` holds one.
pub fn order_csr_keys(order: &SslOrder, known: &[KnownKey]) -> Vec<KnownKey> {
    let Some(csr) = &order.certificate_signing_request else {
        log::warn!(
            "order {} has no CSR in the portal; only local keys can match",
            order.id
        );
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
                    order_id: Some(order.id),
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
#[derive(Clone, Copy)]
pub struct Upload<'a> {
    pub portal: Option<&'a Portal>,
    pub order: Option<&'a SslOrder>,
    pub dry_run: bool,
}

impl Upload<'_> {
    /// Uploads a recorded certificate unless the portal already has it. A failure is
    /// reported on the result (exit 1) but keeps the local record: the next import of the
    /// same mail finds it without a portal id and tries again.
    pub fn run(
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
            (Ok(_), _, _) => anyhow::bail!(
                "internal: certificate {} uploaded but not recorded",
                leaf.sha256
            ),
            (Err(error), store, _) => {
                let message = format!("{error:#}");
                log::error!(
                    "{}: upload of {} failed: {message}",
                    result.source,
                    leaf.sha256
                );
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
    fn template(
        &self,
        accepted: &Accepted,
        extraction: &Extraction,
    ) -> anyhow::Result<CertificateTemplate> {
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

pub fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
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
        .record_certificate(&new, position, now)
        .with_context(|| format!("{source}: recording certificate {}", leaf.sha256))?;
    (result.outcome, result.id) = match recorded {
        Recorded::New(id) => (Outcome::Imported, Some(id)),
        Recorded::AlreadyThere(id) => (Outcome::AlreadyImported, Some(id)),
    };
    Ok(result)
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

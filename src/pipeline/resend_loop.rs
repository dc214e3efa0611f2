//! The whole loop for portal orders, as `resend-and-import` runs it from cron: for each
//! order, skip it if its certificate is in; otherwise look in the mailbox, ask the CA to
//! resend (once per cooldown), wait for the mail with IDLE, import and upload what matches
//! the order's CSR, record, and run the deploy hook. Several orders share one IMAP session
//! and one wait.
//!
//! Crash safety: every step's state is committed before the next side effect. The resend
//! time is written *before* `resendEmail`, so a run killed during the call does not resend
//! again within the cooldown; certificates are recorded before they are uploaded and the
//! portal's store is searched before every create, so a rerun after SIGKILL at any point
//! ends with one certificate in the portal and one row in `certificates`.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::order_keys::RecordedCertificates;
use super::pending::next_resend_due;
use super::upload::{TemplateParts, certificate_template};
use super::{
    Checks, Destination, Folder, MarkFailure, certificate_key, note_mark_failures, scan_mailbox,
};
use crate::exit::Exit;
use crate::extract;
use crate::mailbox::{IDLE_REFRESH, MailboxSettings, Session};
use crate::portal::types::SslOrder;
use crate::portal::{Portal, PortalError};
use crate::progress;
use crate::store::{CertificateRow, OrderState, Store, StoreError, timestamp};
use crate::validate::{self, Expectations};

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Ask the CA to resend (false with `--no-resend`).
    pub resend: bool,
    /// How long to wait for the mails.
    pub timeout: Duration,
    /// No second resend for an order within this time of the last; doubled for every
    /// resend in a row that brought no mail (`pending::next_resend_due`).
    pub cooldown: Duration,
    /// Wait for the mail of an order whose next resend is not due yet (an order named
    /// with `--order`); without, such an order is reported as not due (`--all-pending`).
    pub wait_when_not_due: bool,
    pub dry_run: bool,
    /// A deploy hook is configured: certificates are recorded with their deployment
    /// pending (the command runs the hook after the loop).
    pub deploy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderOutcome {
    /// The certificate was in before this run.
    AlreadyImported,
    Imported,
    /// Still waiting for the mail at the deadline; the next run goes on waiting.
    TimedOut,
    Failed,
    /// Dry run: the certificate is in the mailbox and would be imported.
    WouldImport,
    /// Dry run: it is recorded locally and would be uploaded.
    WouldUpload,
    /// Dry run: a resend would be requested and the mail waited for.
    WouldResend,
    /// Dry run: the mail would be waited for (resend within the cooldown, or --no-resend).
    WouldWait,
    /// `--all-pending`: the last resend brought no mail and the next is not due yet; the
    /// mailbox was looked at, not waited on.
    NotDue,
}

impl OrderOutcome {
    pub fn words(self) -> &'static str {
        match self {
            OrderOutcome::AlreadyImported => "already imported",
            OrderOutcome::Imported => "imported",
            OrderOutcome::TimedOut => "timed out",
            OrderOutcome::Failed => "failed",
            OrderOutcome::WouldImport => "would import",
            OrderOutcome::WouldUpload => "would upload",
            OrderOutcome::WouldResend => "would resend",
            OrderOutcome::WouldWait => "would wait",
            OrderOutcome::NotDue => "resend not due",
        }
    }

    pub fn exit(self) -> Exit {
        match self {
            OrderOutcome::TimedOut => Exit::TimedOut,
            OrderOutcome::Failed => Exit::Failure,
            _ => Exit::Done,
        }
    }
}

/// What happened to one order: `--json` prints these.
#[derive(Debug, Clone, Serialize)]
pub struct OrderResult {
    pub order_id: i64,
    pub common_name: Option<String>,
    pub outcome: OrderOutcome,
    pub certificate_id: Option<i64>,
    pub sha256: Option<String>,
    pub portal_certificate_id: Option<i64>,
    /// Whether this run asked the CA to resend and the portal said yes. A resend without
    /// a definite answer leaves it false and says so in `reason`.
    pub resent: bool,
    pub reason: Option<String>,
    /// "ok", or what went wrong; absent when no hook ran.
    pub deploy_hook: Option<String>,
    /// What the import into Secrets Manager did; absent when it did not run.
    pub secrets_manager: Option<String>,
    /// The load balancer listeners moved to its certificate in this run
    /// (`[portal] replace_in_use`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<crate::pipeline::replace::ListenerMove>,
}

impl OrderResult {
    fn new(order: &SslOrder) -> OrderResult {
        OrderResult {
            order_id: order.id,
            common_name: order.common_name.clone(),
            outcome: OrderOutcome::TimedOut,
            certificate_id: None,
            sha256: None,
            portal_certificate_id: None,
            resent: false,
            reason: None,
            deploy_hook: None,
            secrets_manager: None,
            listeners: Vec::new(),
        }
    }

    /// Still to be waited for.
    fn settled(&self) -> bool {
        self.outcome != OrderOutcome::TimedOut
    }

    /// Its certificate may still come in this run: waited for, or looked for in passing.
    fn open(&self) -> bool {
        matches!(self.outcome, OrderOutcome::TimedOut | OrderOutcome::NotDue)
    }

    fn with_row(&mut self, outcome: OrderOutcome, row: &CertificateRow) {
        self.outcome = outcome;
        self.certificate_id = Some(row.id);
        self.sha256 = Some(row.sha256.clone());
        self.portal_certificate_id = row.portal_certificate_id;
    }
}

/// The loop over portal orders, and what it works with.
pub struct ResendLoop<'a> {
    pub portal: &'a Portal,
    pub session: &'a mut Session,
    pub mailbox: &'a MailboxSettings,
    /// "user@host:port", the mailbox_state key.
    pub account: String,
    /// Keys: the orders' CSRs first (so an import names its order), then `[keys] dirs`.
    pub checks: Checks,
    pub store: Option<&'a mut Store>,
    pub options: LoopOptions,
    /// Mails whose `after_import` failed during the run (recorded, the mark pending).
    pub mark_failures: Vec<MarkFailure>,
}

impl ResendLoop<'_> {
    pub fn run(
        &mut self,
        orders: &[SslOrder],
        now: OffsetDateTime,
    ) -> anyhow::Result<Vec<OrderResult>> {
        let started = Instant::now();
        let mut results: Vec<OrderResult> = orders.iter().map(OrderResult::new).collect();
        // 1. Already in, or recorded and waiting for its upload?
        self.settle_recorded(orders, &mut results, now)?;
        // 2. The mail may be in the mailbox already: no resend needed then.
        let pass_time = now + started.elapsed();
        self.scan(orders, &mut results, pass_time)?;
        // 3. Resend for what is still missing.
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if !result.settled() {
                self.resend(order, result, now)?;
            }
        }
        // 4. Wait for the mails, all orders on one IDLE.
        if !self.options.dry_run {
            self.wait(orders, &mut results, started, now)?;
        }
        // 5. What is still missing waits for the next run; the resend time is kept. A
        //    resend without an answer stays the order's last error.
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if result.outcome == OrderOutcome::TimedOut {
                let unanswered = result.reason.take();
                let waited = format!(
                    "no fulfillment email with a certificate for its CSR within {}; the next run goes on waiting",
                    humantime::format_duration(self.options.timeout)
                );
                result.reason = Some(match &unanswered {
                    Some(note) => format!("{note}; {waited}"),
                    None => waited,
                });
                self.set_state(
                    order,
                    OrderState::WaitingForMail,
                    unanswered.as_deref(),
                    now,
                )?;
            }
        }
        Ok(results)
    }

    /// Settles the orders whose certificate an earlier run recorded, uploading it when
    /// that run could not.
    fn settle_recorded(
        &mut self,
        orders: &[SslOrder],
        results: &mut [OrderResult],
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let recorded = RecordedCertificates::load(self.store.as_deref())?;
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            let Some(row) = recorded.for_order(order) else {
                continue;
            };
            if let Some(store) = self.store.as_deref().filter(|_| !self.options.dry_run) {
                store.link_order(row.id, order.id, now)?;
            }
            if row.portal_certificate_id.is_some() {
                result.with_row(OrderOutcome::AlreadyImported, row);
                continue;
            }
            self.upload_recorded(order, row, result, now)?;
        }
        Ok(())
    }

    /// Waits on the mailbox until every order is settled or the timeout is reached.
    fn wait(
        &mut self,
        orders: &[SslOrder],
        results: &mut [OrderResult],
        started: Instant,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let deadline = started + self.options.timeout;
        while results.iter().any(|r| !r.settled()) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let waiting: Vec<i64> = (orders.iter().zip(results.iter()))
                .filter(|(_, r)| !r.settled())
                .map(|(order, _)| order.id)
                .collect();
            let _status = progress::waiting(
                &progress::waiting_for_orders(&waiting),
                &progress::how(self.session.has_idle(), self.mailbox.poll_interval),
                started,
                self.options.timeout,
            );
            // Re-issue IDLE well before servers drop it; without IDLE, NOOP every
            // poll_interval.
            self.session
                .wait_for_change(
                    remaining.min(IDLE_REFRESH),
                    self.mailbox.poll_interval.min(remaining),
                )
                .context("waiting for the fulfillment emails")?;
            self.scan(orders, results, now + started.elapsed())?;
        }
        Ok(())
    }

    fn set_state(
        &self,
        order: &SslOrder,
        state: OrderState,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        if let Some(store) = self.store.as_deref().filter(|_| !self.options.dry_run) {
            store.update_order(
                order.id,
                order.common_name.as_deref(),
                state,
                None,
                error,
                now,
            )?;
        }
        Ok(())
    }

    /// Imports what the mailbox holds, then settles the orders whose certificate is in.
    fn scan(
        &mut self,
        orders: &[SslOrder],
        results: &mut [OrderResult],
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let dry_run = self.options.dry_run;
        let mut destination =
            Destination::new(self.store.as_deref_mut(), Some(self.portal), dry_run);
        destination.deploy = self.options.deploy;
        let folder = Folder {
            settings: self.mailbox,
            account: &self.account,
        };
        let scan = scan_mailbox(self.session, &folder, &self.checks, &mut destination, now)?;
        note_mark_failures(&mut self.mark_failures, scan.mark_failures);
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if !result.open() {
                continue;
            }
            let found = (scan.results.iter())
                .find(|r| r.order_id == Some(order.id) && r.outcome.is_accepted());
            let Some(found) = found else { continue };
            result.sha256 = found.sha256.clone();
            if dry_run {
                result.outcome = OrderOutcome::WouldImport;
                continue;
            }
            result.certificate_id = found.id;
            if let Some(error) = &found.upload_error {
                result.outcome = OrderOutcome::Failed;
                result.reason = Some(format!(
                    "recorded locally, upload failed: {error}; the next run retries"
                ));
                self.set_state(order, OrderState::UploadFailed, Some(error), now)?;
            } else {
                result.outcome = OrderOutcome::Imported;
                result.portal_certificate_id = found.portal_certificate_id;
                self.set_state(order, OrderState::Imported, None, now)?;
            }
        }
        Ok(())
    }

    /// Asks the CA to resend, unless told not to or a resend is recent. The time is
    /// committed before the call, so a crash during it cannot lead to a second resend
    /// within the cooldown.
    fn resend(
        &mut self,
        order: &SslOrder,
        result: &mut OrderResult,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let state = match self.store.as_deref() {
            Some(store) => store.order(order.id)?,
            None => None,
        };
        let due = next_resend_due(state.as_ref(), self.options.cooldown).filter(|due| *due > now);
        if !self.options.resend || due.is_some() {
            if self.options.dry_run {
                result.outcome = OrderOutcome::WouldWait;
            }
            if let Some(due) = due {
                log::info!(
                    "order {}: the last resend brought no mail yet; the next is due at {}",
                    order.id,
                    timestamp(due)
                );
                if !self.options.wait_when_not_due && !self.options.dry_run {
                    result.outcome = OrderOutcome::NotDue;
                    result.reason = Some(format!("next resend at {}", timestamp(due)));
                }
            }
            return Ok(());
        }
        if self.options.dry_run {
            result.outcome = OrderOutcome::WouldResend;
            return Ok(());
        }
        let Some(store) = self.store.as_deref() else {
            anyhow::bail!("internal: no database for a real run");
        };
        match request_resend(self.portal, store, order, now)? {
            Ok(()) => result.resent = true,
            // The mail may be on its way: wait for it like any resend, and say so.
            Err(error) if error.outcome_unknown() => {
                let note = format!(
                    "no definite answer to the resend ({error}); it may have gone through, so its \
                     time is kept and the next resend waits for resend_cooldown ({})",
                    humantime::format_duration(self.options.cooldown)
                );
                log::warn!("order {}: {note}", order.id);
                result.reason = Some(note);
            }
            Err(error) => {
                result.outcome = OrderOutcome::Failed;
                result.reason = Some(format!("the portal refused the resend: {error}"));
            }
        }
        Ok(())
    }

    /// Uploads a certificate that an earlier run recorded but did not get into the portal.
    fn upload_recorded(
        &mut self,
        order: &SslOrder,
        row: &CertificateRow,
        result: &mut OrderResult,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        result.with_row(OrderOutcome::WouldUpload, row);
        if self.options.dry_run {
            return Ok(());
        }
        let outcome = (self.revalidate(order, row, now))
            .and_then(|()| self.template_for(order, row))
            .and_then(|template| {
                self.portal
                    .upload_certificate(&template, &row.common_name, &row.sha256)
                    .map_err(anyhow::Error::new)
            });
        match outcome {
            Ok(uploaded) => {
                if let Some(store) = self.store.as_deref() {
                    store.set_portal_certificate_id(row.id, uploaded.id(), now)?;
                }
                result.outcome = OrderOutcome::Imported;
                result.portal_certificate_id = Some(uploaded.id());
                self.set_state(order, OrderState::Imported, None, now)?;
            }
            Err(error) => {
                let message = format!("{error:#}");
                result.outcome = OrderOutcome::Failed;
                result.reason = Some(format!(
                    "recorded locally, upload failed: {message}; the next run retries"
                ));
                self.set_state(order, OrderState::UploadFailed, Some(&message), now)?;
            }
        }
        Ok(())
    }

    /// A row in the database is not a trust anchor: a certificate recorded by an earlier
    /// run must pass the four rules again, now, before it is uploaded.
    fn revalidate(
        &self,
        order: &SslOrder,
        row: &CertificateRow,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let recorded = format!("{}{}", row.certificate_pem, row.chain_pem);
        let source = format!("certificate #{} in the database", row.id);
        let extraction = extract::extract_any(recorded.as_bytes(), &source, &self.checks.limits)?;
        let expectations = Expectations {
            name: order.common_name.clone(),
            keys: self.checks.expectations.keys.clone(),
        };
        let report = validate::validate(
            &extraction.certificates,
            &expectations,
            &self.checks.trust_anchors,
            now,
        );
        if report.accepted().any(|a| a.leaf.sha256 == row.sha256) {
            return Ok(());
        }
        let reasons: Vec<String> = (report.rejected())
            .flat_map(|r| r.reasons.iter().map(|reason| reason.to_string()))
            .collect();
        anyhow::bail!(
            "{source} no longer passes the rules, so it is not uploaded: {}",
            if reasons.is_empty() {
                "no certificate in it".into()
            } else {
                reasons.join("; ")
            }
        )
    }

    /// The upload template of a recorded certificate, with the private key that matches
    /// it among the known keys.
    fn template_for(
        &self,
        order: &SslOrder,
        row: &CertificateRow,
    ) -> anyhow::Result<crate::portal::types::CertificateTemplate> {
        let key = certificate_key(row).ok_or_else(|| {
            anyhow::anyhow!("certificate #{} in the database cannot be read", row.id)
        })?;
        let key_file = (self.checks.expectations.keys.iter())
            .find(|k| k.key == key)
            .and_then(|k| k.private_key_file.as_deref())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no private key in [keys] dirs matches certificate #{}",
                    row.id
                )
            })?;
        certificate_template(TemplateParts {
            certificate_pem: row.certificate_pem.clone(),
            chain_pem: row.chain_pem.clone(),
            private_key_file: key_file,
            key: &key,
            csr: order.certificate_signing_request.clone(),
            order_id: Some(order.id),
            message_id: None,
        })
    }
}

/// Asks the portal to have the CA resend the order's fulfillment email, recorded the one
/// way `resend` and `resend-and-import` share: the request time is committed before the
/// call, so a run killed during it cannot resend again within the cooldown. A definite
/// refusal clears it and records the portal's answer; a failure after the request was
/// sent ([`PortalError::outcome_unknown`]: timeout, dropped connection, no complete
/// answer) keeps it, since the CA may be mailing, and records the error. The outer error
/// is the database's, the inner one the portal's.
pub fn request_resend(
    portal: &Portal,
    store: &Store,
    order: &SslOrder,
    now: OffsetDateTime,
) -> Result<Result<(), PortalError>, StoreError> {
    let name = order.common_name.as_deref();
    store.update_order(
        order.id,
        name,
        OrderState::ResendRequested,
        Some(now),
        None,
        now,
    )?;
    match portal.resend_fulfillment_email(order.id) {
        Ok(()) => Ok(Ok(())),
        Err(error) if error.outcome_unknown() => {
            store.update_order(
                order.id,
                name,
                OrderState::ResendRequested,
                None,
                Some(&format!(
                    "no definite answer to the resend, it may have gone through: {error}"
                )),
                now,
            )?;
            Ok(Err(error))
        }
        Err(error) => {
            // The API's own exception (a retired product, an order it will not resend) is
            // a refusal to remember: --all-pending leaves the order alone from now on.
            // Anything else definite (credentials, a redirect) may go away by itself.
            let state = match error.code() {
                Some(code) if code.starts_with("SoftLayer_Exception") && !error.is_transient() => {
                    OrderState::Refused
                }
                _ => OrderState::ResendFailed,
            };
            store.resend_refused(order.id, name, state, &error.to_string(), now)?;
            Ok(Err(error))
        }
    }
}

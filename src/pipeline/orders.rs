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

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Checks, Destination, Outcome, Upload, certificate_key, scan_mailbox};
use crate::commands::Exit;
use crate::config::MailboxConfig;
use crate::keys::{self, KeyMaterial, PublicKeyId};
use crate::mailbox::{IDLE_REFRESH, Session};
use crate::portal::types::{CertificateTemplate, SslOrder};
use crate::portal::{Portal, PortalError};
use crate::secret::SECRET_ENV_VARS;
use crate::store::{CertificateRow, Store, StoreError, timestamp};
use crate::validate::KnownKey;

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Ask the CA to resend (false with `--no-resend`).
    pub resend: bool,
    /// How long to wait for the mails.
    pub timeout: Duration,
    /// No second resend for an order within this time of the last.
    pub cooldown: Duration,
    pub dry_run: bool,
    pub deploy_hook: Option<DeployHook>,
}

#[derive(Debug, Clone)]
pub struct DeployHook {
    pub command: String,
    pub timeout: Duration,
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
    /// Whether this run asked the CA to resend.
    pub resent: bool,
    pub reason: Option<String>,
    /// "ok", or what went wrong; absent when no hook ran.
    pub deploy_hook: Option<String>,
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
        }
    }

    fn settled(&self) -> bool {
        self.outcome != OrderOutcome::TimedOut
    }

    fn with_row(&mut self, outcome: OrderOutcome, row: &CertificateRow) {
        self.outcome = outcome;
        self.certificate_id = Some(row.id);
        self.sha256 = Some(row.sha256.clone());
        self.portal_certificate_id = row.portal_certificate_id;
    }
}

/// What the loop works with.
pub struct Loop<'a> {
    pub portal: &'a Portal,
    pub session: &'a mut Session,
    pub mailbox: &'a MailboxConfig,
    /// "user@host:port", the mailbox_state key.
    pub account: String,
    /// Keys: the orders' CSRs first (so an import names its order), then `[keys] dirs`.
    pub checks: Checks,
    pub store: Option<&'a mut Store>,
    pub options: LoopOptions,
}

impl Loop<'_> {
    pub fn run(
        &mut self,
        orders: &[SslOrder],
        now: OffsetDateTime,
    ) -> anyhow::Result<Vec<OrderResult>> {
        let started = Instant::now();
        let mut results: Vec<OrderResult> = orders.iter().map(OrderResult::new).collect();

        // 1. Already in, or recorded and waiting for its upload?
        let mut newly_imported = Vec::new();
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if let Some(row) = self.recorded(order)? {
                if row.portal_certificate_id.is_some() {
                    result.with_row(OrderOutcome::AlreadyImported, &row);
                } else {
                    self.upload_recorded(order, &row, result, now)?;
                    if result.outcome == OrderOutcome::Imported {
                        newly_imported.push(order.id);
                    }
                }
            }
        }

        // 2. The mail may be in the mailbox already: no resend needed then.
        self.scan(
            orders,
            &mut results,
            &mut newly_imported,
            now + started.elapsed(),
        )?;

        // 3. Resend for what is still missing.
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if !result.settled() {
                self.resend(order, result, now)?;
            }
        }

        // 4. Wait for the mails, all orders on one IDLE.
        if !self.options.dry_run {
            let deadline = started + self.options.timeout;
            while results.iter().any(|r| !r.settled()) {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                self.session
                    .wait_for_change(
                        remaining.min(IDLE_REFRESH),
                        self.mailbox.poll_interval.min(remaining),
                    )
                    .context("waiting for the fulfillment emails")?;
                self.scan(
                    orders,
                    &mut results,
                    &mut newly_imported,
                    now + started.elapsed(),
                )?;
            }
        }

        // 5. What is still missing waits for the next run; the resend time is kept.
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if result.outcome == OrderOutcome::TimedOut {
                result.reason = Some(format!(
                    "no fulfillment email with a certificate for its CSR within {}; the next run goes on waiting",
                    humantime::format_duration(self.options.timeout)
                ));
                self.set_state(order, "waiting_for_mail", None, now)?;
            }
        }

        // 6. Deploy what came in.
        if let Some(hook) = self.options.deploy_hook.clone() {
            for result in results
                .iter_mut()
                .filter(|r| newly_imported.contains(&r.order_id))
            {
                result.deploy_hook = Some(self.deploy(&hook, result));
            }
        }
        Ok(results)
    }

    /// The certificate recorded for an order: by order id, or by the key of its CSR.
    fn recorded(&self, order: &SslOrder) -> anyhow::Result<Option<CertificateRow>> {
        let Some(store) = self.store.as_deref() else {
            return Ok(None);
        };
        let csr_key = order_csr_key(order);
        Ok(store.list_certificates(None)?.into_iter().find(|row| {
            row.order_id == Some(order.id)
                || (csr_key.is_some() && certificate_key(row).as_ref() == csr_key.as_ref())
        }))
    }

    fn set_state(
        &self,
        order: &SslOrder,
        state: &str,
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
        newly_imported: &mut Vec<i64>,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let mut destination = Destination {
            store: self.store.as_deref_mut(),
            upload: Upload {
                portal: Some(self.portal),
                order: None,
                dry_run: self.options.dry_run,
            },
            order_id: None,
            dry_run: self.options.dry_run,
        };
        let scan = scan_mailbox(
            self.session,
            self.mailbox,
            &self.account,
            &self.checks,
            &mut destination,
            now,
        )?;
        for (order, result) in orders.iter().zip(results.iter_mut()) {
            if result.settled() {
                continue;
            }
            let found = scan.results.iter().find(|r| {
                r.order_id == Some(order.id)
                    && matches!(
                        r.outcome,
                        Outcome::Imported | Outcome::AlreadyImported | Outcome::WouldImport
                    )
            });
            let Some(found) = found else { continue };
            if self.options.dry_run {
                result.outcome = OrderOutcome::WouldImport;
                result.sha256 = found.sha256.clone();
                continue;
            }
            if let Some(error) = &found.upload_error {
                result.outcome = OrderOutcome::Failed;
                result.certificate_id = found.id;
                result.sha256 = found.sha256.clone();
                result.reason = Some(format!(
                    "recorded locally, upload failed: {error}; the next run retries"
                ));
                self.set_state(order, "upload_failed", Some(error), now)?;
                continue;
            }
            result.outcome = OrderOutcome::Imported;
            result.certificate_id = found.id;
            result.sha256 = found.sha256.clone();
            result.portal_certificate_id = found.portal_certificate_id;
            newly_imported.push(order.id);
            self.set_state(order, "imported", None, now)?;
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
        let last = match self.store.as_deref() {
            Some(store) => store.order(order.id)?.and_then(|o| o.resend_requested_at),
            None => None,
        };
        let recent = last
            .as_deref()
            .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            .filter(|at| now - *at < self.options.cooldown);
        if !self.options.resend || recent.is_some() {
            if self.options.dry_run {
                result.outcome = OrderOutcome::WouldWait;
            }
            if let Some(at) = recent {
                log::info!(
                    "order {}: resend already requested at {}; waiting for that mail (resend_cooldown {})",
                    order.id,
                    timestamp(at),
                    humantime::format_duration(self.options.cooldown)
                );
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
        let key = certificate_key(row);
        let key_file = self
            .checks
            .expectations
            .keys
            .iter()
            .find(|k| Some(&k.key) == key.as_ref())
            .and_then(|k: &KnownKey| k.private_key_file.clone());
        let outcome = key_file
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no private key in [keys] dirs matches certificate #{}",
                    row.id
                )
            })
            .and_then(|path| {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))
            })
            .and_then(|private_key| {
                let template = CertificateTemplate {
                    certificate: row.certificate_pem.clone(),
                    intermediate_certificate: (!row.chain_pem.is_empty())
                        .then(|| row.chain_pem.clone()),
                    private_key,
                    certificate_signing_request: order.certificate_signing_request.clone(),
                    notes: Some(format!("imported by fulfill; order {}", order.id)),
                };
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
                self.set_state(order, "imported", None, now)?;
            }
            Err(error) => {
                let message = format!("{error:#}");
                result.outcome = OrderOutcome::Failed;
                result.reason = Some(format!(
                    "recorded locally, upload failed: {message}; the next run retries"
                ));
                self.set_state(order, "upload_failed", Some(&message), now)?;
            }
        }
        Ok(())
    }

    /// Runs the deploy hook with the certificate and chain on stdin. A failure is reported,
    /// not fatal: the certificate is in, only the deployment needs a person.
    fn deploy(&self, hook: &DeployHook, result: &OrderResult) -> String {
        let row = match (self.store.as_deref(), &result.sha256) {
            (Some(store), Some(sha256)) => store.certificate_by_sha256(sha256).ok().flatten(),
            _ => None,
        };
        let Some(row) = row else {
            return "failed: the certificate is not in the database".into();
        };
        match run_hook(hook, &row, result) {
            Ok(()) => "ok".into(),
            Err(why) => {
                log::error!("order {}: deploy hook failed: {why}", result.order_id);
                format!("failed: {why}")
            }
        }
    }
}

fn order_csr_key(order: &SslOrder) -> Option<PublicKeyId> {
    let csr = order.certificate_signing_request.as_deref()?;
    keys::read_key_material(csr.as_bytes())
        .ok()?
        .into_iter()
        .find_map(|m| match m {
            KeyMaterial::SigningRequest { key, .. } => Some(key),
            KeyMaterial::PrivateKey(_) => None,
        })
}

/// Asks the portal to have the CA resend the order's fulfillment email, recorded the one
/// way `resend` and `resend-and-import` share: the request time is committed before the
/// call, so a run killed during it cannot resend again within the cooldown; a refusal
/// clears it and records the portal's answer. The outer error is the database's, the
/// inner one the portal's refusal.
pub fn request_resend(
    portal: &Portal,
    store: &Store,
    order: &SslOrder,
    now: OffsetDateTime,
) -> Result<Result<(), PortalError>, StoreError> {
    let name = order.common_name.as_deref();
    store.update_order(order.id, name, "resend_requested", Some(now), None, now)?;
    match portal.resend_fulfillment_email(order.id) {
        Ok(()) => Ok(Ok(())),
        Err(error) => {
            store.resend_refused(order.id, name, &error.to_string(), now)?;
            Ok(Err(error))
        }
    }
}

/// `sh -c COMMAND` with the PEM on stdin and the facts in the environment, its output sent
/// to our stderr (stdout is for `--json`), stopped after the timeout.
fn run_hook(hook: &DeployHook, row: &CertificateRow, result: &OrderResult) -> Result<(), String> {
    let mut sh = Command::new("sh");
    // The hook gets the facts, never the secrets fulfill was given in its environment.
    for name in SECRET_ENV_VARS {
        sh.env_remove(name);
    }
    let mut child = sh
        .arg("-c")
        .arg(&hook.command)
        .env("FULFILL_ORDER_ID", result.order_id.to_string())
        .env("FULFILL_COMMON_NAME", &row.common_name)
        .env("FULFILL_SHA256", &row.sha256)
        .env(
            "FULFILL_PORTAL_ID",
            row.portal_certificate_id
                .map(|p| p.to_string())
                .unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is not an error.
        let _ = stdin.write_all(format!("{}{}", row.certificate_pem, row.chain_pem).as_bytes());
    }
    let deadline = Instant::now() + hook.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`{}` ended with {status}", hook.command)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{}` took longer than {} and was stopped",
                    hook.command,
                    humantime::format_duration(hook.timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

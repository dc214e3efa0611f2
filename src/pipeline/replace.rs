//! Putting a new certificate into service on IBM Cloud Load Balancer listeners
//! (`[portal] replace_in_use`, `fulfill replace`): every listener that uses an older
//! certificate of the same name is moved to the new one (docs/softlayer-api.md §7).
//!
//! Each move is recorded before anything is sent (`replacements`, store/replacements.rs),
//! and every step starts by reading the listener back, so a run killed at any point and
//! run again sends no update twice: a listener that names the new certificate already is
//! done, one whose load balancer is still applying a change is waited for.

use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use super::in_use::ListenerLookup;
use crate::portal::lbaas::{LoadBalancer, Provisioning};
use crate::portal::types::StoredCertificate;
use crate::portal::{Portal, PortalError, pem_der};
use crate::progress;
use crate::store::{
    CertificateRow, NewReplacement, ReplaceState, ReplacedCertificate, ReplacementRow, Store,
};
use crate::validate::{CertificateInfo, covers};

/// How replacements run.
#[derive(Debug, Clone, Copy)]
pub struct ReplaceOptions {
    /// How long one run waits, in all, for load balancers to come back to ACTIVE.
    pub timeout: Duration,
    /// How often a load balancer's status is read while it applies a change.
    pub poll_interval: Duration,
    /// Delete an old certificate from the store once nothing uses it.
    pub delete_replaced: bool,
}

/// What happened to one listener in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveOutcome {
    /// It names the new certificate and its load balancer is ACTIVE.
    Moved,
    /// A dry run: it would be moved.
    WouldMove,
    /// Its load balancer did not come back to ACTIVE in time; the next run goes on.
    NotActive,
    /// The portal refused or failed; the next run tries again.
    Failed,
    /// Gone, or moved to a third certificate by someone else: left alone.
    Skipped,
}

impl MoveOutcome {
    pub fn words(self) -> &'static str {
        match self {
            MoveOutcome::Moved => "moved",
            MoveOutcome::WouldMove => "would move",
            MoveOutcome::NotActive => "not ACTIVE in time",
            MoveOutcome::Failed => "failed",
            MoveOutcome::Skipped => "skipped",
        }
    }

    /// The run must end with exit 1 so that someone looks (the state is kept).
    pub fn is_failure(self) -> bool {
        matches!(self, MoveOutcome::NotActive | MoveOutcome::Failed)
    }
}

/// One listener's move, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerMove {
    pub certificate_id: i64,
    pub listener_uuid: String,
    pub load_balancer_uuid: String,
    pub old_portal_id: i64,
    pub new_portal_id: i64,
    pub outcome: MoveOutcome,
    pub detail: Option<String>,
}

/// An old certificate that `delete_replaced` looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Retirement {
    pub old_portal_id: i64,
    pub deleted: bool,
    pub detail: Option<String>,
}

/// Everything a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replacements {
    pub listeners: Vec<ListenerMove>,
    pub retired: Vec<Retirement>,
    /// A failure before any listener could be looked at (planning), with its reason.
    pub errors: Vec<String>,
}

impl Replacements {
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.listeners.iter().any(|m| m.outcome.is_failure())
    }

    /// The moves of one certificate (by row id).
    pub fn for_certificate(&self, certificate_id: Option<i64>) -> Vec<ListenerMove> {
        (self.listeners.iter())
            .filter(|m| Some(m.certificate_id) == certificate_id)
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.retired.is_empty() && self.errors.is_empty()
    }
}

/// Moves listeners for one portal.
pub struct Replacer<'a> {
    pub portal: &'a Portal,
    pub options: ReplaceOptions,
}

impl Replacer<'_> {
    /// The listeners to move to `certificate`: those of the older certificates of the
    /// store with its common name whose names it covers, each with its load balancer.
    /// Reads only.
    pub fn plan(&self, certificate: &CertificateRow) -> Result<Vec<NewReplacement>, PortalError> {
        let Some(new_id) = certificate.portal_certificate_id else {
            return Ok(Vec::new());
        };
        let olds = self.portal.certificates_named(&certificate.common_name)?;
        let mut lookup = ListenerLookup::new(self.portal);
        let mut moves = Vec::new();
        for old in olds
            .iter()
            .filter(|old| is_replaced_by(old, new_id, certificate))
        {
            for (listener, balancer) in lookup.listeners(old.id)? {
                let Some(load_balancer_uuid) = balancer else {
                    log::warn!(
                        "listener {}: on no load balancer of the account; left alone",
                        listener.uuid
                    );
                    continue;
                };
                moves.push(NewReplacement {
                    old_portal_id: old.id,
                    listener_uuid: listener.uuid,
                    load_balancer_uuid,
                });
            }
        }
        Ok(moves)
    }

    /// Plans every certificate not planned yet, then goes on with every move not finished
    /// (this run's and any an earlier run left), then deletes what `delete_replaced` may.
    pub fn sweep(&self, store: &Store, now: OffsetDateTime) -> anyhow::Result<Replacements> {
        let mut done = Replacements::default();
        for certificate in store.certificates_to_plan()? {
            if let Err(e) = self.record_plan(store, &certificate, now) {
                done.errors.push(e);
            }
        }
        let deadline = Instant::now() + self.options.timeout;
        for row in store.unfinished_replacements()? {
            done.listeners.push(self.settle(store, row, deadline, now)?);
        }
        done.retired = self.retire(store, now)?;
        Ok(done)
    }

    /// `fulfill replace`: plans `certificate` again (listeners attached since the last plan
    /// are added), finishes each of its moves, then deletes what `delete_replaced` may.
    pub fn replace_one(
        &self,
        store: &Store,
        certificate: &CertificateRow,
        now: OffsetDateTime,
    ) -> anyhow::Result<Replacements> {
        let mut done = Replacements::default();
        if let Err(e) = self.record_plan(store, certificate, now) {
            done.errors.push(e);
        }
        let deadline = Instant::now() + self.options.timeout;
        for row in store.replacements_for(certificate.id)? {
            if !row.state.is_finished() {
                done.listeners.push(self.settle(store, row, deadline, now)?);
            }
        }
        done.retired = self.retire(store, now)?;
        Ok(done)
    }

    /// `fulfill replace --dry-run`: the listeners that would move, read from the portal;
    /// nothing is written.
    pub fn dry_run(&self, certificate: &CertificateRow) -> Result<Replacements, PortalError> {
        let new_portal_id = certificate.portal_certificate_id.unwrap_or_default();
        let listeners = (self.plan(certificate)?.into_iter())
            .map(|m| ListenerMove {
                certificate_id: certificate.id,
                listener_uuid: m.listener_uuid,
                load_balancer_uuid: m.load_balancer_uuid,
                old_portal_id: m.old_portal_id,
                new_portal_id,
                outcome: MoveOutcome::WouldMove,
                detail: None,
            })
            .collect();
        Ok(Replacements {
            listeners,
            ..Replacements::default()
        })
    }

    /// Plans and records one certificate's moves; an error says which certificate.
    pub fn record_plan(
        &self,
        store: &Store,
        certificate: &CertificateRow,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let new_id = certificate.portal_certificate_id.unwrap_or_default();
        let moves = self.plan(certificate).map_err(|e| {
            let why = format!(
                "certificate #{} ({}): looking for the listeners to move: {e}; the next run tries again",
                certificate.id, certificate.common_name
            );
            log::error!("{why}");
            why
        })?;
        store
            .record_plan(certificate, new_id, &moves, now)
            .map_err(|e| e.to_string())
    }

    /// Finishes one listener's move: wait for its load balancer, read it back, and send
    /// the update only when the listener does not name the new certificate yet.
    pub fn settle(
        &self,
        store: &Store,
        mut row: ReplacementRow,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> anyhow::Result<ListenerMove> {
        let mut sends = 0;
        loop {
            let balancer = match self.wait_active(&row, deadline) {
                Ok(Waited::Active(balancer)) => balancer,
                Ok(Waited::Pending(status)) => {
                    let why = format!(
                        "load balancer still {status} after the wait; the next run goes on"
                    );
                    store.note_replacement(&row, &why, now)?;
                    return Ok(outcome(&row, MoveOutcome::NotActive, Some(why)));
                }
                Ok(Waited::Gone(why)) => return self.skip(store, &row, why, now),
                Err(e) => return self.failed(store, &row, None, e, now),
            };
            let named = (balancer.listener(&row.listener_uuid)).map(|l| l.tls_certificate_id);
            match named {
                None => return self.skip(store, &row, "the listener is gone".into(), now),
                Some(Some(id)) if id == row.new_portal_id => {
                    store.set_replacement(&row, ReplaceState::Done, None, now)?;
                    return Ok(outcome(&row, MoveOutcome::Moved, None));
                }
                // A third certificate is someone else's move, even after a send of ours
                // whose answer was lost (ours names the new one): never undone.
                Some(id) if id != Some(row.old_portal_id) => {
                    let why = format!("the listener now names certificate {id:?}; left alone");
                    return self.skip(store, &row, why, now);
                }
                Some(_) if sends == 2 => {
                    let why = anyhow::anyhow!(
                        "the listener still names the old certificate after the update"
                    );
                    return self.failed(store, &row, Some(ReplaceState::Planned), why, now);
                }
                Some(_) => {}
            }
            sends += 1;
            match self.send(store, &row, &balancer, now)? {
                Some(state) => row.state = state,
                None => {
                    let row = store.replacement(row.id)?.unwrap_or(row);
                    let error = row.last_error.clone();
                    return Ok(outcome(&row, MoveOutcome::Failed, error));
                }
            }
        }
    }

    /// Records `sending`, sends the listener's configuration with the new certificate,
    /// and records what came of it: `Some(state)` to go on verifying, `None` when the
    /// portal refused (the row is planned again, with the error).
    fn send(
        &self,
        store: &Store,
        row: &ReplacementRow,
        balancer: &LoadBalancer,
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<ReplaceState>> {
        let Some(listener) = balancer.listener(&row.listener_uuid) else {
            return Ok(Some(row.state));
        };
        let configuration = listener.configuration(row.new_portal_id);
        store.set_replacement(row, ReplaceState::Sending, None, now)?;
        match self
            .portal
            .update_listener(&row.load_balancer_uuid, &configuration)
        {
            Ok(()) => {
                store.set_replacement(row, ReplaceState::Sent, None, now)?;
                Ok(Some(ReplaceState::Sent))
            }
            Err(e) if e.outcome_unknown() => {
                let why = format!("{e}; reading the listener back");
                log::warn!("listener {}: {why}", row.listener_uuid);
                store.note_replacement(row, &why, now)?;
                Ok(Some(ReplaceState::Sending))
            }
            Err(e) => {
                log::error!(
                    "listener {}: {e}; the next run tries again",
                    row.listener_uuid
                );
                store.set_replacement(row, ReplaceState::Planned, Some(&e.to_string()), now)?;
                Ok(None)
            }
        }
    }

    /// Reads the load balancer until it is ACTIVE, it is in a state no change comes out
    /// of, or the run's wait is over.
    fn wait_active(&self, row: &ReplacementRow, deadline: Instant) -> Result<Waited, PortalError> {
        let started = Instant::now();
        // Shown from the first pending answer until the wait ends (dropped on return).
        let mut status_line = None;
        loop {
            let balancer = match self.portal.load_balancer(&row.load_balancer_uuid) {
                Ok(balancer) => balancer,
                Err(e) if is_not_found(&e) => return Ok(Waited::Gone(e.to_string())),
                Err(e) => return Err(e),
            };
            match balancer.provisioning() {
                Provisioning::Active => return Ok(Waited::Active(balancer)),
                Provisioning::Other(status) => {
                    return Ok(Waited::Gone(format!("the load balancer is {status}")));
                }
                Provisioning::Pending(status) => {
                    if Instant::now() + self.options.poll_interval > deadline {
                        return Ok(Waited::Pending(status));
                    }
                    status_line.get_or_insert_with(|| {
                        let what = format!("load balancer {} {status}", row.load_balancer_uuid);
                        progress::waiting(&what, "polling", started, self.options.timeout)
                    });
                    thread::sleep(self.options.poll_interval);
                }
            }
        }
    }

    fn skip(
        &self,
        store: &Store,
        row: &ReplacementRow,
        why: String,
        now: OffsetDateTime,
    ) -> anyhow::Result<ListenerMove> {
        log::warn!("listener {}: {why}", row.listener_uuid);
        store.set_replacement(row, ReplaceState::Skipped, Some(&why), now)?;
        Ok(outcome(row, MoveOutcome::Skipped, Some(why)))
    }

    fn failed(
        &self,
        store: &Store,
        row: &ReplacementRow,
        state: Option<ReplaceState>,
        error: impl std::fmt::Display,
        now: OffsetDateTime,
    ) -> anyhow::Result<ListenerMove> {
        let why = format!("{error}; the next run tries again");
        log::error!("listener {}: {why}", row.listener_uuid);
        match state {
            Some(state) => store.set_replacement(row, state, Some(&why), now)?,
            None => store.note_replacement(row, &why, now)?,
        }
        Ok(outcome(row, MoveOutcome::Failed, Some(why)))
    }

    /// With `delete_replaced`, deletes each old certificate whose listeners have all moved
    /// once the store says nothing uses it (§7.1: deleteObject refuses one in use).
    pub fn retire(&self, store: &Store, now: OffsetDateTime) -> anyhow::Result<Vec<Retirement>> {
        if !self.options.delete_replaced {
            return Ok(Vec::new());
        }
        let mut retired = Vec::new();
        for old in store.replaced_in_use()? {
            retired.push(self.retire_one(store, &old, now)?);
        }
        Ok(retired)
    }

    fn retire_one(
        &self,
        store: &Store,
        old: &ReplacedCertificate,
        now: OffsetDateTime,
    ) -> anyhow::Result<Retirement> {
        let id = old.old_portal_id;
        let deleted = match self.portal.associated_service_count(id) {
            Ok(0) => self
                .portal
                .delete_certificate(id)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(n) if n > 0 => Err(format!("still used by {n} service(s); kept")),
            Ok(_) => Err("the store gave a negative service count; kept".into()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        store.set_replaced(
            old,
            deleted.as_ref().map(|_| ()).map_err(String::as_str),
            now,
        )?;
        Ok(Retirement {
            old_portal_id: id,
            deleted: deleted.is_ok(),
            detail: deleted.err(),
        })
    }
}

/// What a wait for ACTIVE ended with.
enum Waited {
    Active(LoadBalancer),
    /// Still applying a change when the run's wait was over.
    Pending(String),
    /// The load balancer is gone, or in a state no change comes out of.
    Gone(String),
}

fn outcome(row: &ReplacementRow, outcome: MoveOutcome, detail: Option<String>) -> ListenerMove {
    ListenerMove {
        certificate_id: row.certificate_id,
        listener_uuid: row.listener_uuid.clone(),
        load_balancer_uuid: row.load_balancer_uuid.clone(),
        old_portal_id: row.old_portal_id,
        new_portal_id: row.new_portal_id,
        outcome,
        detail,
    }
}

/// The API's answer for an object that does not exist (§3.5, §7.4).
fn is_not_found(error: &PortalError) -> bool {
    matches!(
        error.code(),
        Some(
            "SoftLayer_Exception_ObjectNotFound"
                | "SoftLayer_Exception_Network_LBaaS_ObjectNotFound"
        )
    )
}

/// Whether `new` (recorded, in the store as `new_id`) replaces the stored certificate
/// `old`: another entry of the store, expiring earlier, whose names `new` all covers.
pub fn is_replaced_by(old: &StoredCertificate, new_id: i64, new: &CertificateRow) -> bool {
    let Some(info) = (old.certificate.as_deref())
        .and_then(pem_der)
        .and_then(|der| CertificateInfo::parse(&der).ok())
    else {
        return false;
    };
    let names = match info.dns_names.is_empty() {
        true => info.common_name.into_iter().collect(),
        false => info.dns_names,
    };
    let new_names = match new.subject_alt_names.is_empty() {
        true => vec![new.common_name.clone()],
        false => new.subject_alt_names.clone(),
    };
    let new_not_after = OffsetDateTime::parse(
        &new.not_after,
        &time::format_description::well_known::Rfc3339,
    )
    .ok();
    old.id != new_id
        && new_not_after.is_some_and(|t| info.not_after < t)
        && !names.is_empty()
        && names.iter().all(|name| covers(&new_names, name))
}

//! The `replacements` tables (migration 7): which listeners move to which certificate, and
//! where each move is. A row is written before anything is sent for it, and its state
//! moves on only after the step it names: a run killed at any point leaves a state from
//! which the next run can tell what is left to do (pipeline/replace.rs).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    CERTIFICATE_COLUMNS, CertificateRow, Store, StoreError, certificate_event, certificate_row,
    timestamp,
};
use crate::text::printable;

/// Where the move of one listener is (`replacements.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceState {
    /// Recorded; nothing sent yet, or the last send was refused.
    Planned,
    /// The update is being sent: it may have been performed. The listener is read back
    /// before anything is sent again.
    Sending,
    /// The portal took the update; its load balancer may still be applying it.
    Sent,
    /// The listener names the new certificate and its load balancer is ACTIVE.
    Done,
    /// Nothing to do: the listener is gone, or names a third certificate.
    Skipped,
}

impl ReplaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceState::Planned => "planned",
            ReplaceState::Sending => "sending",
            ReplaceState::Sent => "sent",
            ReplaceState::Done => "done",
            ReplaceState::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> ReplaceState {
        match text {
            "sending" => ReplaceState::Sending,
            "sent" => ReplaceState::Sent,
            "done" => ReplaceState::Done,
            "skipped" => ReplaceState::Skipped,
            _ => ReplaceState::Planned,
        }
    }

    /// Nothing is left to do for the listener.
    pub fn is_finished(self) -> bool {
        matches!(self, ReplaceState::Done | ReplaceState::Skipped)
    }
}

/// A listener to move, as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewReplacement {
    pub old_portal_id: i64,
    pub listener_uuid: String,
    pub load_balancer_uuid: String,
}

/// A row of `replacements`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplacementRow {
    pub id: i64,
    pub certificate_id: i64,
    pub new_portal_id: i64,
    pub old_portal_id: i64,
    pub listener_uuid: String,
    pub load_balancer_uuid: String,
    pub state: ReplaceState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

impl ReplacementRow {
    /// Where the move is, in the words `show` and `orders` use: a refused or failed send
    /// leaves the row planned with its error, so that the next run tries again.
    pub fn progress(&self) -> &'static str {
        match self.state {
            ReplaceState::Done => "moved",
            ReplaceState::Skipped => "skipped",
            ReplaceState::Planned if self.last_error.is_some() => "failed",
            ReplaceState::Planned | ReplaceState::Sending | ReplaceState::Sent => "pending",
        }
    }
}

/// An old certificate whose listeners moved (`replaced_certificates`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplacedCertificate {
    pub old_portal_id: i64,
    pub certificate_id: i64,
    /// "in_use" until `delete_replaced` deletes it from the portal's store, then "deleted".
    pub state: String,
    pub last_error: Option<String>,
}

const REPLACEMENT_COLUMNS: &str = "id, certificate_id, new_portal_id, old_portal_id, listener_uuid, \
load_balancer_uuid, state, attempts, last_error, updated_at";

fn replacement_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReplacementRow> {
    Ok(ReplacementRow {
        id: r.get(0)?,
        certificate_id: r.get(1)?,
        new_portal_id: r.get(2)?,
        old_portal_id: r.get(3)?,
        listener_uuid: r.get(4)?,
        load_balancer_uuid: r.get(5)?,
        state: ReplaceState::parse(&r.get::<_, String>(6)?),
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

impl Store {
    /// Certificates in the portal's store whose listeners were not looked for yet: the
    /// newest recorded one of each common name only (moving listeners to an older one
    /// would be a step back).
    pub fn certificates_to_plan(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates AS c
                 WHERE portal_certificate_id IS NOT NULL
                   AND id NOT IN (SELECT certificate_id FROM replacement_plans)
                   AND NOT EXISTS (SELECT 1 FROM certificates AS n
                       WHERE n.common_name = c.common_name COLLATE NOCASE
                         AND (n.not_after > c.not_after OR (n.not_after = c.not_after AND n.id > c.id)))
                 ORDER BY id"
            ))
            .map_err(self.sql())?;
        let rows = statement
            .query_map([], certificate_row)
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Records what the plan found for a certificate, all at once: its listeners to move
    /// (a listener recorded already keeps its row) and the old certificates they use.
    pub fn record_plan(
        &self,
        certificate: &CertificateRow,
        new_portal_id: i64,
        moves: &[NewReplacement],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "INSERT OR REPLACE INTO replacement_plans (certificate_id, planned_at) VALUES (?1, ?2)",
            params![certificate.id, at],
        )
        .map_err(self.sql())?;
        for m in moves {
            tx.execute(
                "INSERT OR IGNORE INTO replacements (certificate_id, new_portal_id, old_portal_id,
                     listener_uuid, load_balancer_uuid, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'planned', ?6, ?6)",
                params![
                    certificate.id,
                    new_portal_id,
                    m.old_portal_id,
                    m.listener_uuid,
                    m.load_balancer_uuid,
                    at
                ],
            )
            .map_err(self.sql())?;
            tx.execute(
                "INSERT OR IGNORE INTO replaced_certificates (old_portal_id, certificate_id, state, updated_at)
                 VALUES (?1, ?2, 'in_use', ?3)",
                params![m.old_portal_id, certificate.id, at],
            )
            .map_err(self.sql())?;
        }
        let detail = format!(
            "certificate #{} (portal {new_portal_id}): {} listener(s) to move: {}",
            certificate.id,
            moves.len(),
            (moves.iter())
                .map(|m| format!("{} from certificate {}", m.listener_uuid, m.old_portal_id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        certificate_event(&tx, certificate.id, "replacement_planned", &detail, &at)
            .map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// Every listener move not finished yet, oldest first: every run goes on with them.
    pub fn unfinished_replacements(&self) -> Result<Vec<ReplacementRow>, StoreError> {
        self.replacements_where("state NOT IN ('done', 'skipped')", params![])
    }

    /// Every listener move recorded for a certificate (by its row id).
    pub fn replacements_for(&self, certificate_id: i64) -> Result<Vec<ReplacementRow>, StoreError> {
        self.replacements_where("certificate_id = ?1", params![certificate_id])
    }

    /// Every listener move to or from a certificate: to its row, or to or from its id in
    /// the portal's store (a certificate found there need not be recorded).
    pub fn replacements_involving(
        &self,
        certificate_id: Option<i64>,
        portal_id: Option<i64>,
    ) -> Result<Vec<ReplacementRow>, StoreError> {
        self.replacements_where(
            "certificate_id = ?1 OR old_portal_id = ?2 OR new_portal_id = ?2",
            params![certificate_id, portal_id],
        )
    }

    /// Every listener move recorded.
    pub fn replacements(&self) -> Result<Vec<ReplacementRow>, StoreError> {
        self.replacements_where("1", params![])
    }

    fn replacements_where(
        &self,
        condition: &str,
        parameters: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ReplacementRow>, StoreError> {
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT {REPLACEMENT_COLUMNS} FROM replacements WHERE {condition} ORDER BY id"
            ))
            .map_err(self.sql())?;
        let rows = (statement.query_map(parameters, replacement_row)).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    pub fn replacement(&self, id: i64) -> Result<Option<ReplacementRow>, StoreError> {
        (self.conn)
            .query_row(
                &format!("SELECT {REPLACEMENT_COLUMNS} FROM replacements WHERE id = ?1"),
                [id],
                replacement_row,
            )
            .optional()
            .map_err(self.sql())
    }

    /// Moves a listener's row to `state`, with an event. `Sending` counts an attempt.
    pub fn set_replacement(
        &self,
        row: &ReplacementRow,
        state: ReplaceState,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let error = error.map(|e| printable(e).into_owned());
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "UPDATE replacements SET state = ?2, last_error = ?3, updated_at = ?4,
                 attempts = attempts + (CASE WHEN ?2 = 'sending' THEN 1 ELSE 0 END)
             WHERE id = ?1",
            params![row.id, state.as_str(), error, at],
        )
        .map_err(self.sql())?;
        let mut detail = format!(
            "listener {} of load balancer {}: certificate {} -> {}: {}",
            row.listener_uuid,
            row.load_balancer_uuid,
            row.old_portal_id,
            row.new_portal_id,
            state.as_str()
        );
        if let Some(error) = &error {
            detail.push_str(&format!(": {error}"));
        }
        let kind = format!("replacement_{}", state.as_str());
        certificate_event(&tx, row.certificate_id, &kind, &detail, &at).map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// Notes why a listener's move did not go on, its state unchanged (an answer that was
    /// lost, a load balancer still applying a change), with an event.
    pub fn note_replacement(
        &self,
        row: &ReplacementRow,
        why: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let why = printable(why).into_owned();
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "UPDATE replacements SET last_error = ?2, updated_at = ?3 WHERE id = ?1",
            params![row.id, why, at],
        )
        .map_err(self.sql())?;
        let detail = format!(
            "listener {} of load balancer {}: {why}",
            row.listener_uuid, row.load_balancer_uuid
        );
        certificate_event(&tx, row.certificate_id, "replacement_waiting", &detail, &at)
            .map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }

    /// Old certificates still in the portal's store whose listeners have all moved.
    pub fn replaced_in_use(&self) -> Result<Vec<ReplacedCertificate>, StoreError> {
        self.replaced_where(
            "state = 'in_use' AND old_portal_id NOT IN
                 (SELECT old_portal_id FROM replacements WHERE state NOT IN ('done', 'skipped'))",
        )
    }

    /// Every old certificate recorded.
    pub fn replaced_certificates(&self) -> Result<Vec<ReplacedCertificate>, StoreError> {
        self.replaced_where("1")
    }

    fn replaced_where(&self, condition: &str) -> Result<Vec<ReplacedCertificate>, StoreError> {
        let mut statement = (self.conn)
            .prepare(&format!(
                "SELECT old_portal_id, certificate_id, state, last_error FROM replaced_certificates
                 WHERE {condition} ORDER BY old_portal_id"
            ))
            .map_err(self.sql())?;
        let rows = statement
            .query_map([], |r| {
                Ok(ReplacedCertificate {
                    old_portal_id: r.get(0)?,
                    certificate_id: r.get(1)?,
                    state: r.get(2)?,
                    last_error: r.get(3)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Records that an old certificate was deleted from the portal's store, or why not.
    pub fn set_replaced(
        &self,
        old: &ReplacedCertificate,
        deleted: Result<(), &str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let (state, error, kind) = match deleted {
            Ok(()) => ("deleted", None, "replaced_certificate_deleted"),
            Err(e) => (
                "in_use",
                Some(printable(e).into_owned()),
                "replaced_certificate_kept",
            ),
        };
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "UPDATE replaced_certificates SET state = ?2, last_error = ?3, updated_at = ?4
             WHERE old_portal_id = ?1",
            params![old.old_portal_id, state, error, at],
        )
        .map_err(self.sql())?;
        let detail = match &error {
            None => format!(
                "portal certificate {}: deleted from the store",
                old.old_portal_id
            ),
            Some(e) => format!("portal certificate {}: not deleted: {e}", old.old_portal_id),
        };
        certificate_event(&tx, old.certificate_id, kind, &detail, &at).map_err(self.sql())?;
        tx.commit().map_err(self.sql())
    }
}

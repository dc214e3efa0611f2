//! Which portal orders `resend-and-import --all-pending` works on, and when an order's next
//! resend is due. A real account holds years of orders; only the few that can still be
//! fulfilled, and are not, are pending (docs/architecture.md, "Pending orders").

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use anyhow::Context;

use super::leaf_record;
use super::order_keys::{RecordedCertificates, order_csr_key};
use crate::keys;
use crate::portal::Portal;
use crate::portal::types::{SslOrder, StoredCertificate};
use crate::store::{NewCertificate, OrderRow, OrderState, Recorded, Store};
use crate::validate::{CertificateInfo, KeySource};

/// The longest wait between two resends for one order, however many brought no mail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(7 * 86400);

/// Whether an order is pending, and why (or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Pendency {
    /// Pending, and a resend may be asked for now.
    ResendDue,
    /// Pending; resends brought no mail so far, and the next one waits until then.
    Backoff {
        #[serde(serialize_with = "rfc3339")]
        next_resend: OffsetDateTime,
    },
    /// The CA has not issued it (yet, or ever): only Approved and Complete orders can be.
    NotIssued { status: Option<String> },
    /// Its `expirationDate` has passed.
    Expired { expiration: String },
    /// fulfill has recorded its certificate.
    Recorded { certificate_id: i64 },
    /// The portal's store holds a certificate with its CSR's key.
    InPortal { portal_certificate_id: i64 },
    /// The API refused `resendEmail` outright; named with `--order` it is tried again.
    Refused { error: Option<String> },
}

impl Pendency {
    pub fn is_pending(&self) -> bool {
        matches!(self, Pendency::ResendDue | Pendency::Backoff { .. })
    }

    /// When the next resend is due, for a pending order.
    pub fn next_resend(&self) -> Option<OffsetDateTime> {
        match self {
            Pendency::Backoff { next_resend } => Some(*next_resend),
            _ => None,
        }
    }

    /// Why, in words a person reads in `orders`.
    pub fn why(&self) -> String {
        match self {
            Pendency::ResendDue => "issued, no certificate yet; a resend is due".into(),
            Pendency::Backoff { next_resend } => format!(
                "issued, no certificate yet; the last resend brought no mail, next at {}",
                crate::store::timestamp(*next_resend)
            ),
            Pendency::NotIssued { status } => format!(
                "not issued by the CA (status {})",
                status.as_deref().unwrap_or("unknown")
            ),
            Pendency::Expired { expiration } => format!("expired on {expiration}"),
            Pendency::Recorded { certificate_id } => {
                format!("its certificate is recorded (#{certificate_id})")
            }
            Pendency::InPortal {
                portal_certificate_id,
            } => format!("its certificate is in the portal store ({portal_certificate_id})"),
            Pendency::Refused { error } => format!(
                "the portal refused to resend ({}); name it with --order to try again",
                error.as_deref().unwrap_or("no reason given")
            ),
        }
    }
}

/// Whether the CA has issued an order with this status name: only then can the
/// fulfillment email be sent (docs/softlayer-api.md §1.5).
pub fn is_issued(status: Option<&str>) -> bool {
    status.is_some_and(|name| {
        ["Approved", "Complete", "Completed"]
            .iter()
            .any(|issued| name.eq_ignore_ascii_case(issued))
    })
}

/// What the local record and the order's own fields say, before the portal's store is
/// asked: every reason an order is not pending that costs no API call, else whether its
/// resend is due. `recorded` is the certificate fulfill holds for it, if any.
pub fn assess(
    order: &SslOrder,
    status: Option<&str>,
    recorded: Option<i64>,
    state: Option<&OrderRow>,
    cooldown: Duration,
    now: OffsetDateTime,
) -> Pendency {
    if let Some(certificate_id) = recorded {
        return Pendency::Recorded { certificate_id };
    }
    if !is_issued(status) {
        return Pendency::NotIssued {
            status: status.map(str::to_string),
        };
    }
    let expiration = order.expiration_date.as_deref();
    if let Some(expiration) = expiration.filter(|e| parse(e).is_some_and(|at| at <= now)) {
        return Pendency::Expired {
            expiration: expiration.to_string(),
        };
    }
    if let Some(row) = state.filter(|row| row.state == OrderState::Refused.as_str()) {
        return Pendency::Refused {
            error: row.last_error.clone(),
        };
    }
    match next_resend_due(state, cooldown) {
        Some(next_resend) if next_resend > now => Pendency::Backoff { next_resend },
        _ => Pendency::ResendDue,
    }
}

/// When the next resend for an order may be asked for: `cooldown` after the last, doubled
/// for every resend before it that brought no mail, at most [`MAX_BACKOFF`]. `None` when
/// none was asked for.
pub fn next_resend_due(state: Option<&OrderRow>, cooldown: Duration) -> Option<OffsetDateTime> {
    let state = state?;
    let last = parse(state.resend_requested_at.as_deref()?)?;
    // Past 2^31 times the cooldown, MAX_BACKOFF has long been reached.
    let doublings = state.resend_attempts.saturating_sub(1).clamp(0, 31) as u32;
    let wait = (cooldown.checked_mul(2u32.pow(doublings)))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF.max(cooldown));
    Some(last + wait)
}

fn rfc3339<S: serde::Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::timestamp(*at))
}

fn parse(timestamp: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(timestamp, &Rfc3339).ok()
}

/// One order, judged: its pendency, and the certificate in the portal's store that has
/// its CSR's key when that is what makes it not pending.
pub struct Assessed {
    /// The order's status name, as the portal gives it.
    pub status: Option<String>,
    /// The certificate fulfill has recorded for it.
    pub recorded: Option<i64>,
    /// The recorded certificate's id in the portal's store, once uploaded.
    pub recorded_portal_id: Option<i64>,
    pub pendency: Pendency,
    pub in_portal: Option<StoredCertificate>,
}

impl Assessed {
    /// The id in the portal's store of the order's certificate, recorded or found there.
    pub fn portal_certificate_id(&self) -> Option<i64> {
        (self.recorded_portal_id).or(self.in_portal.as_ref().map(|found| found.id))
    }
}

/// Judges every order: the status names (read from the API when the mask did not bring
/// them), the local record, and, for the orders that are otherwise pending, the portal's
/// store (the certificates with the order's common name, compared by key).
pub fn assess_orders(
    portal: &Portal,
    store: Option<&Store>,
    orders: &[SslOrder],
    cooldown: Duration,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<Assessed>> {
    let statuses = if orders.iter().any(|o| o.status_name(&[]).is_none()) {
        portal
            .request_statuses()
            .context("reading the order status names")?
    } else {
        Vec::new()
    };
    let recorded = RecordedCertificates::load(store)?;
    let mut assessed = Vec::with_capacity(orders.len());
    for order in orders {
        let state = match store {
            Some(store) => store.order(order.id)?,
            None => None,
        };
        let status = order.status_name(&statuses);
        let recorded_row = recorded.for_order(order);
        let recorded_id = recorded_row.map(|row| row.id);
        let pendency = assess(
            order,
            status.as_deref(),
            recorded_id,
            state.as_ref(),
            cooldown,
            now,
        );
        let in_portal = match pendency.is_pending() {
            true => in_portal_store(portal, order)?,
            false => None,
        };
        let pendency = match &in_portal {
            Some(found) => Pendency::InPortal {
                portal_certificate_id: found.id,
            },
            None => pendency,
        };
        assessed.push(Assessed {
            status,
            recorded: recorded_id,
            recorded_portal_id: recorded_row.and_then(|row| row.portal_certificate_id),
            pendency,
            in_portal,
        });
    }
    Ok(assessed)
}

/// The certificate in the portal's store whose key is the order's CSR's, if any.
fn in_portal_store(portal: &Portal, order: &SslOrder) -> anyhow::Result<Option<StoredCertificate>> {
    let (Some(name), Some(key)) = (order.common_name.as_deref(), order_csr_key(order)) else {
        return Ok(None);
    };
    let stored = (portal.certificates_named(name)).with_context(|| {
        format!(
            "order {}: looking for its certificate in the portal store",
            order.id
        )
    })?;
    Ok(stored.into_iter().find(|certificate| {
        let pem = certificate.certificate.as_deref().unwrap_or_default();
        let der = crate::extract::scan_pem(pem, usize::MAX)
            .blocks
            .into_iter()
            .next();
        let spki_key = der.and_then(|block| block.der.ok()).and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            keys::from_spki(cert.public_key()).ok()
        });
        spki_key.as_ref() == Some(&key)
    }))
}

/// Records a certificate found in the portal's store for an order, with its portal id, so
/// that the order is settled locally too and never resent.
pub fn record_from_portal(
    store: &mut Store,
    order: &SslOrder,
    found: &StoredCertificate,
    deploy: bool,
    now: OffsetDateTime,
) -> anyhow::Result<i64> {
    let pem = found.certificate.as_deref().unwrap_or_default();
    let block = (crate::extract::scan_pem(pem, usize::MAX)
        .blocks
        .into_iter()
        .next())
    .and_then(|block| block.der.ok())
    .ok_or_else(|| anyhow::anyhow!("portal certificate {} holds no certificate", found.id))?;
    let leaf = CertificateInfo::parse(&block)
        .map_err(|e| anyhow::anyhow!("portal certificate {}: {e}", found.id))?;
    let common_name =
        (leaf.common_name.clone()).unwrap_or_else(|| order.common_name.clone().unwrap_or_default());
    let new = NewCertificate {
        order_id: Some(order.id),
        key_source: Some(KeySource::OrderCsr(order.id).to_string()),
        source: Some(format!("portal certificate {}", found.id)),
        deploy,
        ..leaf_record(&leaf, common_name)
    };
    let id = match store.record_certificate(&new, None, now)? {
        Recorded::New(id) | Recorded::AlreadyThere(id) => id,
    };
    store.set_portal_certificate_id(id, found.id, now)?;
    store.update_order(
        order.id,
        order.common_name.as_deref(),
        OrderState::Imported,
        None,
        None,
        now,
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
    const HOUR: Duration = Duration::from_secs(3600);

    fn order(expiration: Option<&str>) -> SslOrder {
        serde_json::from_value(serde_json::json!({
            "id": 7, "expirationDate": expiration
        }))
        .unwrap()
    }

    fn row(state: OrderState, resent: Option<&str>, attempts: i64) -> OrderRow {
        OrderRow {
            order_id: 7,
            common_name: None,
            state: state.as_str().into(),
            resend_requested_at: resent.map(str::to_string),
            resend_attempts: attempts,
            last_error: Some("SoftLayer_Exception_Public: no".into()),
            updated_at: String::new(),
        }
    }

    #[test]
    fn only_issued_live_unrecorded_orders_are_pending() {
        let live = order(Some("2027-11-29T10:56:44-06:00"));
        let assess = |order: &SslOrder, status, recorded, state: Option<&OrderRow>| {
            assess(order, status, recorded, state, HOUR, NOW)
        };
        assert_eq!(
            assess(&live, Some("Approved"), None, None),
            Pendency::ResendDue
        );
        assert_eq!(
            assess(&live, Some("COMPLETE"), None, None),
            Pendency::ResendDue
        );
        assert!(matches!(
            assess(&live, Some("Pending CA Approval"), None, None),
            Pendency::NotIssued { .. }
        ));
        assert!(matches!(
            assess(&live, Some("Canceled"), None, None),
            Pendency::NotIssued { .. }
        ));
        assert!(matches!(
            assess(&live, None, None, None),
            Pendency::NotIssued { .. }
        ));
        let old = order(Some("2020-01-20T10:56:44-06:00"));
        assert!(matches!(
            assess(&old, Some("Complete"), None, None),
            Pendency::Expired { .. }
        ));
        assert_eq!(
            assess(&live, Some("Approved"), Some(3), None),
            Pendency::Recorded { certificate_id: 3 }
        );
        let refused = row(OrderState::Refused, None, 0);
        assert!(matches!(
            assess(&live, Some("Approved"), None, Some(&refused)),
            Pendency::Refused { .. }
        ));
        // No expiration date: pending all the same.
        assert_eq!(
            assess(&order(None), Some("Approved"), None, None),
            Pendency::ResendDue
        );
    }

    #[test]
    fn resends_back_off_from_the_cooldown_to_a_week() {
        let at = "2026-11-29T11:30:00Z";
        let due = |attempts| {
            next_resend_due(
                Some(&row(OrderState::WaitingForMail, Some(at), attempts)),
                HOUR,
            )
        };
        let last = datetime!(2026-11-29 11:30 UTC);
        assert_eq!(due(1), Some(last + HOUR));
        assert_eq!(due(2), Some(last + 2 * HOUR));
        assert_eq!(due(4), Some(last + 8 * HOUR));
        assert_eq!(due(20), Some(last + MAX_BACKOFF));
        assert_eq!(due(i64::MAX), Some(last + MAX_BACKOFF));
        assert_eq!(next_resend_due(None, HOUR), None);
        let live = order(None);
        let waiting = row(OrderState::WaitingForMail, Some(at), 1);
        assert_eq!(
            assess(&live, Some("Approved"), None, Some(&waiting), HOUR, NOW),
            Pendency::Backoff {
                next_resend: last + HOUR
            }
        );
        let later = NOW + 2 * HOUR;
        assert_eq!(
            assess(&live, Some("Approved"), None, Some(&waiting), HOUR, later),
            Pendency::ResendDue
        );
    }
}

//! How a portal order and a certificate are tied: by the public key of the order's CSR
//! (rule 1 of docs/architecture.md; subjects and senders are never trusted for this).

use crate::keys::{self, KeyMaterial, PublicKeyId};
use crate::portal::types::SslOrder;
use crate::store::{CertificateRow, Store, StoreError};
use crate::validate::{KeySource, KnownKey};

/// The public key of the order's CSR, or `None` when the portal holds no readable CSR.
/// Silent: it is asked for each order several times a run (the record, the portal
/// store, the keys); [`order_known_key`] says once why an order has no key.
pub fn order_csr_key(order: &SslOrder) -> Option<PublicKeyId> {
    csr_key(order).ok().flatten()
}

/// The CSR's key, `None` when there is no CSR (or it holds none), or why it cannot be read.
fn csr_key(order: &SslOrder) -> Result<Option<PublicKeyId>, keys::KeyError> {
    let Some(csr) = order.certificate_signing_request.as_deref() else {
        return Ok(None);
    };
    Ok(keys::read_key_material(csr.as_bytes())?
        .into_iter()
        .find_map(|m| match m {
            KeyMaterial::SigningRequest { key, .. } => Some(key),
            KeyMaterial::PrivateKey(_) => None,
        }))
}

/// The key of an order's CSR as a known key named for the order, with the private key
/// file that has the same public key when `[keys] dirs` holds one.
pub fn order_known_key(order: &SslOrder, local: &[KnownKey]) -> Option<KnownKey> {
    let key = match csr_key(order) {
        Ok(Some(key)) => key,
        Ok(None) => {
            log::warn!(
                "order {} has no CSR in the portal; only local keys can match",
                order.id
            );
            return None;
        }
        Err(e) => {
            log::warn!("order {}: its CSR cannot be read: {e}", order.id);
            return None;
        }
    };
    let private_key_file = (local.iter())
        .find(|k| k.key == key)
        .and_then(|k| k.private_key_file.clone());
    Some(KnownKey {
        source: KeySource::OrderCsr(order.id),
        requested_name: order.common_name.clone(),
        private_key_file,
        csr_file: None,
        order_id: Some(order.id),
        key,
    })
}

/// Every key an import can match, in the one order every command uses: the orders' CSRs
/// first (validation takes the first key that matches, so an import is recorded for its
/// order), then the local keys and CSRs.
pub fn keys_for_orders(orders: &[SslOrder], local: Vec<KnownKey>) -> Vec<KnownKey> {
    let mut keys: Vec<KnownKey> = (orders.iter())
        .filter_map(|order| order_known_key(order, &local))
        .collect();
    keys.extend(local);
    keys
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

/// The recorded certificates with their public keys, read once, to find an order's.
pub struct RecordedCertificates(Vec<(CertificateRow, Option<PublicKeyId>)>);

impl RecordedCertificates {
    /// Every certificate in the store; none without a store (a dry run before any import).
    pub fn load(store: Option<&Store>) -> Result<RecordedCertificates, StoreError> {
        let rows = match store {
            Some(store) => store.list_certificates(None)?,
            None => Vec::new(),
        };
        Ok(RecordedCertificates(
            rows.into_iter()
                .map(|row| {
                    let key = certificate_key(&row);
                    (row, key)
                })
                .collect(),
        ))
    }

    /// The certificate recorded for an order: by order id, or by the key of its CSR.
    pub fn for_order(&self, order: &SslOrder) -> Option<&CertificateRow> {
        let csr_key = order_csr_key(order);
        self.0
            .iter()
            .find(|(row, key)| {
                row.order_id == Some(order.id) || (csr_key.is_some() && *key == csr_key)
            })
            .map(|(row, _)| row)
    }
}

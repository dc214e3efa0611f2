//! Uploading accepted certificates to the portal's certificate store, and the one
//! `createObject` template both a fresh import and a retried upload send.

use std::path::Path;

use anyhow::Context;
use time::OffsetDateTime;

use super::result::{ImportResult, UploadStatus};
use crate::extract::Extraction;
use crate::keys::{self, PublicKeyId};
use crate::portal::types::{CertificateTemplate, SslOrder};
use crate::portal::{Portal, Uploaded};
use crate::store::Store;
use crate::validate::{Accepted, KeySource};

/// Uploading accepted certificates to the portal's certificate store.
#[derive(Clone, Copy)]
pub struct Upload<'a> {
    pub portal: Option<&'a Portal>,
    pub order: Option<&'a SslOrder>,
    pub dry_run: bool,
}

/// What goes into a `createObject` template besides the fixed fields.
pub struct TemplateParts<'a> {
    pub certificate_pem: String,
    pub chain_pem: String,
    /// The portal requires the private key (docs/softlayer-api.md §2.3): the one in this
    /// file whose public key is `key` is sent, and nothing else of the file.
    pub private_key_file: &'a Path,
    pub key: &'a PublicKeyId,
    pub csr: Option<String>,
    pub order_id: Option<i64>,
    pub message_id: Option<&'a str>,
}

/// The `createObject` template: the certificate, its chain in order, the private key, the
/// CSR and a note of provenance a person sees in the portal.
pub fn certificate_template(parts: TemplateParts<'_>) -> anyhow::Result<CertificateTemplate> {
    let path = parts.private_key_file.display();
    let key_file = std::fs::read(parts.private_key_file)
        .with_context(|| format!("cannot read the private key {path}"))?;
    let private_key = keys::private_key_pem(&key_file, parts.key)
        .with_context(|| format!("the private key file {path}"))?;
    let mut notes = String::from("imported by fulfill");
    if let Some(order) = parts.order_id {
        notes.push_str(&format!("; order {order}"));
    }
    if let Some(message_id) = parts.message_id {
        notes.push_str(&format!("; mail <{message_id}>"));
    }
    Ok(CertificateTemplate {
        certificate: parts.certificate_pem,
        intermediate_certificate: (!parts.chain_pem.is_empty()).then_some(parts.chain_pem),
        private_key,
        certificate_signing_request: parts.csr,
        notes: Some(notes),
    })
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
            result.upload = Some(UploadStatus::NotUploaded);
            return Ok(());
        };
        let leaf = &accepted.leaf;
        let row = match store {
            Some(store) => store.certificate_by_sha256(&leaf.sha256)?,
            None => None,
        };
        if let Some(portal_id) = row.as_ref().and_then(|r| r.portal_certificate_id) {
            result.portal_certificate_id = Some(portal_id);
            result.upload = Some(UploadStatus::AlreadyInPortal);
            return Ok(());
        }
        let common_name = result.common_name.clone().unwrap_or_default();
        if self.dry_run {
            // A dry run still reads: it says whether the upload would create anything, or
            // that the portal could not say.
            match portal.find_certificate(&common_name, &leaf.sha256) {
                Ok(found) => {
                    result.portal_certificate_id = found.as_ref().map(|f| f.id);
                    result.upload = Some(match found {
                        Some(_) => UploadStatus::AlreadyInPortal,
                        None => UploadStatus::WouldUpload,
                    });
                }
                Err(error) => {
                    result.upload = Some(UploadStatus::Unknown);
                    result.upload_error = Some(format!(
                        "the portal's state is unknown, it could not be read: {error}"
                    ));
                }
            }
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
                    Uploaded::Created(_) => UploadStatus::Uploaded,
                    Uploaded::AlreadyInStore(_) => UploadStatus::AlreadyInPortal,
                });
            }
            (Ok(_), _, _) => anyhow::bail!(
                "internal: certificate {} uploaded but not recorded",
                leaf.sha256
            ),
            (Err(error), store, _) => self.failed(&error, store, result, &leaf.sha256, now)?,
        }
        Ok(())
    }

    /// Reports a failed upload on the result and in the audit trail.
    fn failed(
        &self,
        error: &anyhow::Error,
        store: Option<&Store>,
        result: &mut ImportResult,
        sha256: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let message = format!("{error:#}");
        log::error!("{}: upload of {sha256} failed: {message}", result.source);
        if let Some(store) = store {
            store.add_event(
                self.order.map(|o| o.id),
                "upload_failed",
                &format!("{} sha256 {sha256}: {message}", result.source),
                now,
            )?;
        }
        result.upload = Some(UploadStatus::Failed);
        result.upload_error = Some(message);
        Ok(())
    }

    /// The template for a certificate accepted just now: the order's CSR when the order's
    /// CSR is what matched, else the CSR file found beside the key.
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
        let order_csr = self
            .order
            .filter(|_| matches!(accepted.key.source, KeySource::OrderCsr(_)))
            .and_then(|o| o.certificate_signing_request.clone());
        let csr = match (order_csr, &accepted.key.csr_file) {
            (Some(csr), _) => Some(csr),
            (None, Some(path)) => std::fs::read_to_string(path).ok(),
            (None, None) => None,
        };
        certificate_template(TemplateParts {
            certificate_pem: to_pem(&accepted.leaf.der),
            chain_pem: accepted.chain.iter().map(|c| to_pem(&c.der)).collect(),
            private_key_file: key_file,
            key: &accepted.key.key,
            csr,
            order_id: self.order.map(|o| o.id),
            message_id: extraction.message_id.as_deref(),
        })
    }
}

pub fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

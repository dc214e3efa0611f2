//! The SoftLayer datatypes fulfill reads and writes, with the API's camelCase names
//! (serde is case-sensitive; docs/softlayer-api.md §2.5, which the "§" numbers below cite).

use std::fmt;

use serde::{Deserialize, Serialize};

/// `SoftLayer_Security_Certificate_Request` (docs/softlayer-api.md §1.4): an SSL order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SslOrder {
    pub id: i64,
    pub common_name: Option<String>,
    pub status_id: Option<i64>,
    pub status: Option<RequestStatus>,
    pub approver_email_address: Option<String>,
    pub technical_contact_email_address: Option<String>,
    pub certificate_signing_request: Option<String>,
    pub create_date: Option<String>,
    pub modify_date: Option<String>,
    pub effective_date: Option<String>,
    pub expiration_date: Option<String>,
}

impl SslOrder {
    /// The order's status name: from the object mask, else looked up by its id among
    /// `statuses` (`getAllObjects` of the status service, §1.5).
    pub fn status_name(&self, statuses: &[RequestStatus]) -> Option<String> {
        (self.status.as_ref())
            .and_then(|s| s.name.clone())
            .or_else(|| {
                let id = self.status_id?;
                (statuses.iter())
                    .find(|s| s.id == id)
                    .and_then(|s| s.name.clone())
            })
    }
}

/// The object mask for orders: everything `orders`, `resend` and `import` show or use.
/// There is no orderId on this type (§1.4), so none is asked for.
pub const SSL_ORDER_MASK: &str = "mask[id,commonName,statusId,status[id,name,description],approverEmailAddress,\
technicalContactEmailAddress,certificateSigningRequest,createDate,modifyDate,effectiveDate,expirationDate]";

/// `SoftLayer_Security_Certificate_Request_Status` (§1.5). Ids and names are read at run
/// time, never hard-coded: no source gives them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    pub id: i64,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A `SoftLayer_Security_Certificate` from the portal's certificate store (§2.2).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredCertificate {
    pub id: i64,
    pub common_name: Option<String>,
    pub validity_end: Option<String>,
    pub certificate: Option<String>,
    pub notes: Option<String>,
}

/// The mask for finding a certificate in the store: the certificate text is needed to
/// compare fingerprints; the private key is deliberately not asked for.
pub const STORED_CERTIFICATE_MASK: &str = "mask[id,commonName,validityEnd,certificate,notes]";

/// The `createObject` template: only the writable fields (§2.2: commonName and the dates
/// are extracted by the portal and ignored if sent).
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateTemplate {
    pub certificate: String,
    /// The chain, leaf's issuer first, PEM concatenated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_certificate: Option<String>,
    pub private_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_signing_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Never prints the private key.
impl fmt::Debug for CertificateTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateTemplate")
            .field(
                "certificate",
                &format_args!("{} bytes", self.certificate.len()),
            )
            .field(
                "intermediate_certificate",
                &self.intermediate_certificate.as_ref().map(String::len),
            )
            .field("private_key", &"(redacted)")
            .field(
                "certificate_signing_request",
                &self.certificate_signing_request.is_some(),
            )
            .field("notes", &self.notes)
            .finish()
    }
}

/// The API's error body (docs/softlayer-api.md §3.5).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiErrorBody {
    pub error: String,
    pub code: Option<String>,
}

//! The portal's state: the account and its credentials, the SSL orders, the certificate
//! store, queued faults, the request log and the resends.

use std::collections::BTreeMap;
use std::time::SystemTime;

use time::OffsetDateTime;

use super::faults::FaultQueues;
use super::request::RequestRecord;

/// `SoftLayer_Security_Certificate_Request_Status` names (§1.5) with deliberately odd ids:
/// the real ids are undocumented, so a client that hard-codes ids must fail against this
/// portal. Descriptions paraphrase SLDN's lifecycle text.
pub const STATUSES: [(i64, &str, &str); 4] = [
    (
        42,
        "Pending CA Approval",
        "The order was submitted and waits for the Certificate Authority's approval.",
    ),
    (
        43,
        "Approved",
        "The Certificate Authority approved the order and sent the fulfillment email.",
    ),
    (44, "Complete", "The payment process succeeded."),
    (
        45,
        "Canceled",
        "The Certificate Authority rejected the order.",
    ),
];

/// The account the portal serves, with its first credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    /// Classic usernames look like `<ACCOUNT_ID>_<email>`; `apikey` (an IBM Cloud key) works
    /// like any other username (§3.4).
    pub username: String,
    pub api_key: String,
}

impl Account {
    pub fn new(id: i64, username: &str, api_key: &str) -> Account {
        Account {
            id,
            username: username.to_string(),
            api_key: api_key.to_string(),
        }
    }
}

impl Default for Account {
    fn default() -> Account {
        Account::new(
            731_442,
            "731442_ops@example.com",
            "7c1f0e9a4b2d8c6e5f3a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e",
        )
    }
}

/// An SSL order to put in the portal (`SoftLayer_Security_Certificate_Request`, §1.4).
/// Build one with [`OrderSpec::new`] and struct update syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// `None`: the portal picks the next free id.
    pub id: Option<i64>,
    pub common_name: String,
    pub csr_pem: String,
    pub approver_email: String,
    pub technical_contact_email: Option<String>,
    /// One of the names in [`STATUSES`].
    pub status: String,
    /// The order refuses `resendEmail` like an order of the retired product (§0).
    pub refuses_resend: bool,
    /// `None`: the portal's account. Another account's order is invisible to this one.
    pub account_id: Option<i64>,
    /// The order's `expirationDate`; `None` gives a year from now for approved or complete
    /// orders and no date otherwise.
    pub expiration_date: Option<OffsetDateTime>,
}

impl OrderSpec {
    /// An approved order for `common_name` with that CSR.
    pub fn new(common_name: &str, csr_pem: &str) -> OrderSpec {
        let domain = common_name
            .trim_start_matches("*.")
            .trim_start_matches("www.");
        OrderSpec {
            id: None,
            common_name: common_name.to_string(),
            csr_pem: csr_pem.to_string(),
            approver_email: format!("admin@{domain}"),
            technical_contact_email: Some(format!("hostmaster@{domain}")),
            status: "Approved".to_string(),
            refuses_resend: false,
            account_id: None,
            expiration_date: None,
        }
    }
}

/// An order as the portal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub account_id: i64,
    pub common_name: String,
    pub csr_pem: String,
    pub approver_email: String,
    pub technical_contact_email: Option<String>,
    pub status_id: i64,
    pub refuses_resend: bool,
    /// The id of the related `SoftLayer_Billing_Order` (`order {id}`).
    pub billing_order_id: i64,
    pub create_date: OffsetDateTime,
    pub modify_date: OffsetDateTime,
    pub effective_date: Option<OffsetDateTime>,
    pub expiration_date: Option<OffsetDateTime>,
}

/// A certificate in the portal's store (`SoftLayer_Security_Certificate`, §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub id: i64,
    /// Extracted from the certificate: its subject CN, else its first DNS name.
    pub common_name: String,
    /// Extracted from the certificate: its subject O, else "Unspecified" (as in §2.5).
    pub organization_name: String,
    pub certificate: String,
    pub private_key: String,
    pub intermediate_certificate: Option<String>,
    pub certificate_signing_request: Option<String>,
    pub notes: Option<String>,
    pub validity_begin: OffsetDateTime,
    pub validity_end: OffsetDateTime,
    /// Bits of the certificate's public key.
    pub key_size: usize,
    pub create_date: OffsetDateTime,
    pub modify_date: OffsetDateTime,
    /// Lowercase hex SHA-256 of the certificate's DER (not an API field; for assertions).
    pub sha256: String,
}

/// A `createObject` template (§2.2: only these fields are writable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCertificate {
    pub certificate: String,
    pub private_key: String,
    pub intermediate_certificate: Option<String>,
    pub certificate_signing_request: Option<String>,
    pub notes: Option<String>,
}

/// A successful `resendEmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    pub order_id: i64,
    /// `FulfillmentEmail` or `ApproverEmail`.
    pub email_type: String,
    pub at: SystemTime,
}

pub(crate) struct State {
    pub(crate) account: Account,
    /// (username, api key)
    pub(crate) users: Vec<(String, String)>,
    pub(crate) orders: BTreeMap<i64, Order>,
    pub(crate) certificates: BTreeMap<i64, StoredCertificate>,
    pub(crate) next_order_id: i64,
    pub(crate) next_certificate_id: i64,
    pub(crate) faults: FaultQueues,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) resends: Vec<Resend>,
}

impl State {
    pub(crate) fn new(account: Account) -> State {
        State {
            users: vec![(account.username.clone(), account.api_key.clone())],
            account,
            orders: BTreeMap::new(),
            certificates: BTreeMap::new(),
            next_order_id: 4_310_001,
            next_certificate_id: 880_001,
            faults: FaultQueues::default(),
            requests: Vec::new(),
            resends: Vec::new(),
        }
    }

    /// Adds an order; returns its id. Panics on an unknown status name or a taken id.
    pub(crate) fn add_order(&mut self, spec: OrderSpec) -> i64 {
        let status_id = status_id(&spec.status).unwrap_or_else(|| {
            panic!(
                "unknown order status {:?}; use one of STATUSES",
                spec.status
            )
        });
        let id = spec.id.unwrap_or(self.next_order_id);
        assert!(!self.orders.contains_key(&id), "order {id} exists already");
        self.next_order_id = self.next_order_id.max(id + 1);
        let now = OffsetDateTime::now_utc();
        let issued = matches!(spec.status.as_str(), "Approved" | "Complete");
        let order = Order {
            id,
            account_id: spec.account_id.unwrap_or(self.account.id),
            common_name: spec.common_name,
            csr_pem: spec.csr_pem,
            approver_email: spec.approver_email,
            technical_contact_email: spec.technical_contact_email,
            status_id,
            refuses_resend: spec.refuses_resend,
            billing_order_id: 55_000_000 + id % 1_000_000,
            create_date: now - time::Duration::days(30),
            modify_date: now - time::Duration::days(2),
            effective_date: issued.then(|| now - time::Duration::days(2)),
            expiration_date: spec
                .expiration_date
                .or_else(|| issued.then(|| now + time::Duration::days(365))),
        };
        self.orders.insert(id, order);
        id
    }
}

pub(crate) fn status_id(name: &str) -> Option<i64> {
    STATUSES.iter().find(|s| s.1 == name).map(|s| s.0)
}

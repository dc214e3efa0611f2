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
    pub(crate) load_balancers: Vec<LoadBalancer>,
    pub(crate) listener_updates: Vec<ListenerUpdate>,
    /// How many `getLoadBalancer` answers say UPDATE_PENDING after each update.
    pub(crate) pending_polls_after_update: usize,
    pub(crate) next_lbaas_id: i64,
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
            load_balancers: Vec::new(),
            listener_updates: Vec::new(),
            pending_polls_after_update: 0,
            next_lbaas_id: 70_001,
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

impl State {
    /// A uuid of the shape the API gives (§7.2), unique in this portal.
    pub(crate) fn new_uuid(&mut self) -> String {
        let n = self.next_lbaas_id;
        self.next_lbaas_id += 1;
        format!("{n:08x}-4c1b-4f7e-9a2d-{:012x}", n * 7919)
    }

    /// The listeners that use a certificate of the store.
    pub(crate) fn listeners_using(&self, certificate_id: i64) -> Vec<&Listener> {
        (self.load_balancers.iter())
            .flat_map(|b| b.listeners.iter())
            .filter(|l| l.spec.tls_certificate_id == Some(certificate_id))
            .collect()
    }
}

pub(crate) fn status_id(name: &str) -> Option<i64> {
    STATUSES.iter().find(|s| s.1 == name).map(|s| s.0)
}

/// A listener to put on a load balancer (`SoftLayer_Network_LBaaS_Listener` with its
/// `defaultPool`, docs/softlayer-api.md §7.2). Build one with [`ListenerSpec::https`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocol: String,
    pub protocol_port: i64,
    pub backend_protocol: String,
    pub backend_port: i64,
    /// "ROUNDROBIN", "WEIGHTED_RR" or "LEASTCONNECTION".
    pub load_balancing_algorithm: String,
    /// "SOURCE_IP", "HTTP_COOKIE" or none.
    pub session_type: Option<String>,
    pub connection_limit: Option<i64>,
    pub client_timeout: Option<i64>,
    pub server_timeout: Option<i64>,
    pub tls_certificate_id: Option<i64>,
}

impl ListenerSpec {
    /// HTTPS on 443 with `certificate`, to HTTP on 80, with settings that differ from the
    /// defaults (so a client that drops them is caught).
    pub fn https(certificate: i64) -> ListenerSpec {
        ListenerSpec {
            protocol: "HTTPS".into(),
            protocol_port: 443,
            backend_protocol: "HTTP".into(),
            backend_port: 8080,
            load_balancing_algorithm: "LEASTCONNECTION".into(),
            session_type: Some("SOURCE_IP".into()),
            connection_limit: Some(2000),
            client_timeout: Some(120),
            server_timeout: Some(240),
            tls_certificate_id: Some(certificate),
        }
    }
}

/// A listener as the portal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub id: i64,
    pub uuid: String,
    pub pool_uuid: String,
    pub spec: ListenerSpec,
}

/// A load balancer (`SoftLayer_Network_LBaaS_LoadBalancer`, §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    /// ACTIVE, or UPDATE_PENDING while `pending_polls` answers are left.
    pub pending_polls: usize,
    pub listeners: Vec<Listener>,
}

/// One performed `updateLoadBalancerProtocols` configuration: the per-listener update log.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerUpdate {
    pub load_balancer_uuid: String,
    /// The listener updated, or created when the configuration named none.
    pub listener_uuid: String,
    pub created: bool,
    /// The configuration as sent.
    pub configuration: serde_json::Value,
}

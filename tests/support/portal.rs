//! A local SoftLayer portal for integration tests: a real HTTP/1.1 server on 127.0.0.1 that
//! answers the calls `fulfill` makes the way `shared/softlayer-api.md` says the real REST API
//! does (section numbers below, "§", refer to that file). It is not a stub: it checks the
//! credentials, the URL shape, parameter types and counts, and validates uploaded
//! certificates against their key and intermediate as the real `createObject` does.
//!
//! Where the spec leaves a behaviour open, the choice made here is marked "CHOICE" in a
//! comment, so a reader can tell a documented behaviour from a guess.
//!
//! Faults can be queued per API method ("the next N calls of X fail like this"), and every
//! request is logged for the tests to assert on.
//!
//! Threads: one accept loop plus one thread per connection; `Drop` stops the accept loop and
//! shuts the open connections down without joining anything.
//!
//! ```ignore
//! let portal = LocalPortal::start(Account::default());
//! let order = portal.add_order(OrderSpec::new("www.example.com", &csr_pem));
//! portal.inject("createObject", Fault::LostResponse, 1);
//! // ... run fulfill with endpoint_url = portal.endpoint() ...
//! assert_eq!(portal.resends(), vec![(order, "FulfillmentEmail".to_string())]);
//! assert_eq!(portal.certificates().len(), 1);
//! ```
//!
//! `tests/portal_server_selftest.rs` checks this server on the wire.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use super::dovecot::TestCert;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, UtcOffset};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The REST base path (§3.1). Only v3.1 is served: a client using another base fails here.
pub const BASE_PATH: &str = "/rest/v3.1/";
/// Largest request (head plus body) the server reads.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The generic error body (§3.5): SLDN's "Internal Error"; softlayer-go treats it as an
/// error even with status 200.
pub const INTERNAL_ERROR_BODY: &str =
    r#"{"error":"Internal Error","code":"SoftLayer_Exception_Public"}"#;
/// The answer to bad credentials (§3.5: HTTP 401, "Invalid API token.").
pub const INVALID_TOKEN_BODY: &str =
    r#"{"error":"Invalid API token.","code":"SoftLayer_Exception_Public"}"#;
/// The rate-limit error (§3.6).
pub const RATE_LIMIT_BODY: &str = r#"{"error":"Rate limit of 50 requests for every 1 second(s) exceeded.","code":"SoftLayer_Exception_WebService_RateLimitExceeded"}"#;
/// What a refusing order answers to `resendEmail`. CHOICE: the exact text (and class) the
/// real API gives for orders of the retired product (§0) is not documented anywhere.
pub const ORDERS_RETIRED_MESSAGE: &str = "SSL certificate orders are no longer supported.";

/// The portal's own time zone for dates (the API's examples carry `-06:00`, §1.4).
const PORTAL_OFFSET: UtcOffset = time::macros::offset!(-6);

// ---------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------

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

/// How a call fails. Queued per method with [`LocalPortal::inject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with [`INTERNAL_ERROR_BODY`]; the call is not performed.
    InternalError,
    /// HTTP 429 with [`RATE_LIMIT_BODY`]; the call is not performed.
    RateLimited,
    /// HTTP 500 with [`RATE_LIMIT_BODY`]: the status observed for rate limits in 2017 (§3.6).
    RateLimitedAs500,
    /// HTTP 401 with [`INVALID_TOKEN_BODY`], whatever the credentials; not performed.
    Unauthorized,
    /// The call is performed (its effects happen at once), then the answer is held back for
    /// this long before it is written: longer than the client's timeout, the client gives up
    /// while the work is already done.
    Delay(Duration),
    /// The request is read, then the connection is closed without an answer; not performed.
    Drop,
    /// HTTP 200 with `Content-Length: 0`; not performed.
    Empty200,
    /// HTTP 200 with [`INTERNAL_ERROR_BODY`]; not performed.
    ErrorBody200,
    /// "Lost response after create": the call is performed (a `createObject` stores the
    /// certificate, a `resendEmail` is recorded and fires the hook), then the connection is
    /// closed without an answer.
    LostResponse,
    /// Any status and body, as given; not performed.
    Raw { status: u16, body: String },
}

/// What the request's credentials were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No Authorization header.
    Missing,
    /// An Authorization header that is not HTTP Basic with `user:key` in base64.
    Malformed,
    /// Basic auth with an unknown user or a wrong key.
    Invalid {
        username: String,
    },
    Valid {
        username: String,
    },
}

impl Auth {
    pub fn present(&self) -> bool {
        !matches!(self, Auth::Missing)
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Auth::Valid { .. })
    }
}

/// One request as the portal saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// GET, POST, ...
    pub http_method: String,
    /// The request target exactly as sent: path plus `?query`.
    pub target: String,
    /// The raw path, without the query.
    pub path: String,
    /// The raw (still URL-encoded) query string, empty if none.
    pub query: String,
    /// The query decoded into pairs, in order.
    pub query_pairs: Vec<(String, String)>,
    /// Headers in order; the Authorization value is replaced by "(redacted)".
    pub headers: Vec<(String, String)>,
    pub service: Option<String>,
    pub id: Option<i64>,
    /// The API method the request was routed to (also for unknown methods).
    pub method: Option<String>,
    pub auth: Auth,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
    /// The status answered; `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    /// Which TCP connection carried the request (numbered from 1 in accept order), to tell
    /// a reused keep-alive connection from a new one.
    pub connection: u64,
    pub at: SystemTime,
}

impl RequestRecord {
    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A successful `resendEmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    pub order_id: i64,
    /// `FulfillmentEmail` or `ApproverEmail`.
    pub email_type: String,
    pub at: SystemTime,
}

/// Called with the order id after each successful `FulfillmentEmail` resend, before the
/// answer is written (so a test can deliver mail that is there when the client sees `true`).
pub type ResendHook = Box<dyn Fn(i64) + Send + Sync>;

type SharedHook = Arc<dyn Fn(i64) + Send + Sync>;

// ---------------------------------------------------------------------------------------
// The portal
// ---------------------------------------------------------------------------------------

pub struct LocalPortal {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Set for [`LocalPortal::start_tls`]: the endpoint is then `https://localhost:PORT`.
    tls: bool,
}

struct Shared {
    state: Mutex<State>,
    hook: Mutex<Option<SharedHook>>,
    stop: AtomicBool,
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
}

struct State {
    account: Account,
    /// (username, api key)
    users: Vec<(String, String)>,
    orders: BTreeMap<i64, Order>,
    certificates: BTreeMap<i64, StoredCertificate>,
    next_order_id: i64,
    next_certificate_id: i64,
    /// Keyed by "method" or "Service::method".
    faults: HashMap<String, VecDeque<Fault>>,
    requests: Vec<RequestRecord>,
    resends: Vec<Resend>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalPortal {
    /// Binds 127.0.0.1 on a free port and starts serving plain HTTP (the client allows
    /// `http://` only on loopback).
    pub fn start(account: Account) -> LocalPortal {
        LocalPortal::start_serving(account, None)
    }

    /// The same portal behind TLS with this server certificate, as the real endpoint is
    /// (https://api.softlayer.com): for the tests that a bad certificate is refused.
    pub fn start_tls(account: Account, cert: &TestCert) -> LocalPortal {
        let identity =
            native_tls::Identity::from_pkcs8(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
                .expect("the test certificate and key make a TLS identity");
        let acceptor = native_tls::TlsAcceptor::new(identity).expect("a TLS acceptor");
        LocalPortal::start_serving(account, Some(Arc::new(acceptor)))
    }

    fn start_serving(account: Account, tls: Option<Arc<native_tls::TlsAcceptor>>) -> LocalPortal {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                users: vec![(account.username.clone(), account.api_key.clone())],
                account,
                orders: BTreeMap::new(),
                certificates: BTreeMap::new(),
                next_order_id: 4_310_001,
                next_certificate_id: 880_001,
                faults: HashMap::new(),
                requests: Vec::new(),
                resends: Vec::new(),
            }),
            hook: Mutex::new(None),
            stop: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        });
        let accept_shared = Arc::clone(&shared);
        let tls_acceptor = tls;
        let tls = tls_acceptor.is_some();
        thread::Builder::new()
            .name("portal-accept".into())
            .spawn(move || accept_loop(accept_shared, listener, tls_acceptor))
            .expect("spawn the accept loop");
        LocalPortal { shared, addr, tls }
    }

    /// `http://127.0.0.1:PORT/rest/v3.1/`, or `https://localhost:PORT/rest/v3.1/` for
    /// [`LocalPortal::start_tls`] (the name the test certificates are made for).
    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}{BASE_PATH}", self.addr.port())
        } else {
            format!("http://{}{BASE_PATH}", self.addr)
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn account(&self) -> Account {
        lock(&self.shared.state).account.clone()
    }

    /// Another credential for the same account, e.g. `apikey` with an IBM Cloud key.
    pub fn add_user(&self, username: &str, api_key: &str) {
        lock(&self.shared.state)
            .users
            .push((username.to_string(), api_key.to_string()));
    }

    /// Adds an order; returns its id. Panics on an unknown status name or a taken id.
    pub fn add_order(&self, spec: OrderSpec) -> i64 {
        let status_id = status_id(&spec.status).unwrap_or_else(|| {
            panic!(
                "unknown order status {:?}; use one of STATUSES",
                spec.status
            )
        });
        let mut state = lock(&self.shared.state);
        let id = spec.id.unwrap_or(state.next_order_id);
        assert!(!state.orders.contains_key(&id), "order {id} exists already");
        state.next_order_id = state.next_order_id.max(id + 1);
        let now = OffsetDateTime::now_utc();
        let issued = matches!(spec.status.as_str(), "Approved" | "Complete");
        let order = Order {
            id,
            account_id: spec.account_id.unwrap_or(state.account.id),
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
        state.orders.insert(id, order);
        id
    }

    pub fn orders(&self) -> Vec<Order> {
        lock(&self.shared.state).orders.values().cloned().collect()
    }

    /// Moves an order to another status (a name from [`STATUSES`]).
    pub fn set_order_status(&self, order_id: i64, status: &str) {
        let status_id =
            status_id(status).unwrap_or_else(|| panic!("unknown order status {status:?}"));
        let mut state = lock(&self.shared.state);
        let order = state
            .orders
            .get_mut(&order_id)
            .unwrap_or_else(|| panic!("no order {order_id}"));
        order.status_id = status_id;
        order.modify_date = OffsetDateTime::now_utc();
    }

    /// Queues `times` faults for the next calls of `method`: an API method name
    /// ("createObject") or "Service::method" ("SoftLayer_Account::getObject"), the latter
    /// taking precedence. Calls consume the queue in order.
    pub fn inject(&self, method: &str, fault: Fault, times: usize) {
        let mut state = lock(&self.shared.state);
        let queue = state.faults.entry(method.to_string()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Faults still queued for `method` (same key as [`LocalPortal::inject`]).
    pub fn pending_faults(&self, method: &str) -> usize {
        lock(&self.shared.state)
            .faults
            .get(method)
            .map_or(0, VecDeque::len)
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.state).faults.clear();
    }

    /// The store, by id.
    pub fn certificates(&self) -> Vec<StoredCertificate> {
        lock(&self.shared.state)
            .certificates
            .values()
            .cloned()
            .collect()
    }

    /// A store entry that was there before the test (uploaded by hand, say). Validated like
    /// `createObject`; returns its id, or the message the portal would answer.
    pub fn add_certificate(&self, certificate: NewCertificate) -> Result<i64, String> {
        let mut template = Map::new();
        template.insert("certificate".into(), certificate.certificate.into());
        template.insert("privateKey".into(), certificate.private_key.into());
        for (name, value) in [
            (
                "intermediateCertificate",
                certificate.intermediate_certificate,
            ),
            (
                "certificateSigningRequest",
                certificate.certificate_signing_request,
            ),
            ("notes", certificate.notes),
        ] {
            if let Some(value) = value {
                template.insert(name.into(), value.into());
            }
        }
        let mut state = lock(&self.shared.state);
        create_certificate(&mut state, &template, OffsetDateTime::now_utc())
            .map(|c| c.id)
            .map_err(|e| e.message)
    }

    /// Successful resends as (order id, email type), in order.
    pub fn resends(&self) -> Vec<(i64, String)> {
        lock(&self.shared.state)
            .resends
            .iter()
            .map(|r| (r.order_id, r.email_type.clone()))
            .collect()
    }

    /// Successful resends with their times.
    pub fn resend_log(&self) -> Vec<Resend> {
        lock(&self.shared.state).resends.clone()
    }

    /// Every request so far, in the order they were answered (or dropped).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.state).requests.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.state).requests.clear();
    }

    /// Requests routed to API method `method` ("getObject") or "Service::method", whatever
    /// their outcome (faults, auth failures and errors included).
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.shared.state)
            .requests
            .iter()
            .filter(|r| match (&r.service, &r.method) {
                (Some(service), Some(m)) => m == method || format!("{service}::{m}") == method,
                (None, Some(m)) => m == method,
                _ => false,
            })
            .count()
    }

    /// Sets (or, with `None`, removes) the hook called after each successful
    /// `FulfillmentEmail` resend.
    pub fn set_on_resend(&self, hook: Option<ResendHook>) {
        *lock(&self.shared.hook) = hook.map(Arc::from);
    }
}

impl Drop for LocalPortal {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; it is not joined.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for (_, stream) in lock(&self.shared.connections).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn status_id(name: &str) -> Option<i64> {
    STATUSES.iter().find(|s| s.1 == name).map(|s| s.0)
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<native_tls::TlsAcceptor>>,
) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.connections).insert(id, clone);
        }
        if shared.stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            break;
        }
        let connection_shared = Arc::clone(&shared);
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .name(format!("portal-conn-{id}"))
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
                match tls {
                    None => serve_connection(&connection_shared, stream, id),
                    // A client that refuses the certificate ends the handshake here: the
                    // connection is then simply over, as with the real endpoint.
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream) {
                            serve_connection(&connection_shared, stream, id);
                        }
                    }
                }
                lock(&connection_shared.connections).remove(&id);
            });
        if spawned.is_err()
            && let Some(stream) = lock(&shared.connections).remove(&id)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

struct HttpRequest {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
        if self.version >= 1 {
            !tokens.contains(&"close")
        } else {
            tokens.contains(&"keep-alive")
        }
    }
}

struct HttpResponse {
    status: u16,
    body: Vec<u8>,
    /// `SoftLayer-Total-Items` for list results.
    total_items: Option<usize>,
}

impl HttpResponse {
    fn json(status: u16, value: &Value) -> HttpResponse {
        HttpResponse {
            status,
            body: value.to_string().into_bytes(),
            total_items: None,
        }
    }

    fn raw(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
            total_items: None,
        }
    }

    fn error(error: &ApiError) -> HttpResponse {
        HttpResponse::json(
            error.status,
            &json!({"error": error.message, "code": error.code}),
        )
    }
}

/// A request that cannot be served: answered with this status, then the connection closes.
struct BadRequest {
    status: u16,
    message: String,
    /// What was read of the request, for the log.
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

enum ReadError {
    /// The peer closed, reset, or went idle: nothing to answer.
    Closed,
    Bad(BadRequest),
}

fn bad(status: u16, message: &str) -> ReadError {
    ReadError::Bad(BadRequest {
        status,
        message: message.to_string(),
        method: String::new(),
        target: String::new(),
        headers: Vec::new(),
    })
}

/// Serves one connection, plain or TLS. `Outcome::Drop` shuts the socket down through
/// the clone kept in `shared.connections`.
fn serve_connection(shared: &Shared, mut stream: impl Read + Write, connection: u64) {
    let mut buffer = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let request = match read_request(&mut stream, &mut buffer) {
            Ok(request) => request,
            Err(ReadError::Closed) => break,
            Err(ReadError::Bad(bad)) => {
                let response = HttpResponse::json(
                    bad.status,
                    &json!({"error": bad.message, "code": "SoftLayer_Exception_WebService_BadRequest"}),
                );
                record_bad_request(shared, &bad, connection);
                let _ = write_response(&mut stream, &response, false);
                break;
            }
        };
        let keep_alive = request.keep_alive();
        match handle(shared, &request, connection) {
            Outcome::Respond(response) => {
                if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
                    break;
                }
            }
            Outcome::DelayThenRespond(delay, response) => {
                let deadline = Instant::now() + delay;
                while Instant::now() < deadline {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    thread::sleep(left.min(Duration::from_millis(20)));
                }
                if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
                    break;
                }
            }
            Outcome::Drop => {
                if let Some(socket) = lock(&shared.connections).get(&connection) {
                    let _ = socket.shutdown(Shutdown::Both);
                }
                break;
            }
        }
    }
}

fn record_bad_request(shared: &Shared, bad: &BadRequest, connection: u64) {
    let (path, query) = split_target(&bad.target);
    let record = RequestRecord {
        http_method: bad.method.clone(),
        target: bad.target.clone(),
        path: path.to_string(),
        query: query.to_string(),
        query_pairs: parse_query(query).unwrap_or_default(),
        headers: redact(&bad.headers),
        service: None,
        id: None,
        method: None,
        auth: Auth::Missing,
        body: String::new(),
        status: Some(bad.status),
        fault: None,
        connection,
        at: SystemTime::now(),
    };
    let mut state = lock(&shared.state);
    let record = RequestRecord {
        auth: check_auth(&state, &bad.headers),
        ..record
    };
    state.requests.push(record);
}

/// Reads one request; bytes after it (a pipelined request) stay in `buffer`.
fn read_request(
    stream: &mut (impl Read + Write),
    buffer: &mut Vec<u8>,
) -> Result<HttpRequest, ReadError> {
    loop {
        if !buffer.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buffer) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let method = parsed.method.unwrap_or_default().to_string();
                    let target = parsed.path.unwrap_or_default().to_string();
                    let version = parsed.version.unwrap_or(1);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    buffer.drain(..head_len);
                    return read_body(stream, buffer, method, target, version, headers);
                }
                Ok(httparse::Status::Partial) => {
                    if buffer.len() > MAX_HEAD_BYTES {
                        return Err(bad(431, "Request header fields too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(bad(431, "Too many header fields"));
                }
                Err(e) => return Err(bad(400, &format!("Bad request: {e}"))),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn read_body(
    stream: &mut (impl Read + Write),
    buffer: &mut Vec<u8>,
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, String)>,
) -> Result<HttpRequest, ReadError> {
    let fail = |status: u16, message: &str| {
        ReadError::Bad(BadRequest {
            status,
            message: message.to_string(),
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        })
    };
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding"))
    {
        // Bodies must come with Content-Length here; chunked requests are not supported.
        return Err(fail(
            411,
            "Length Required: send the body with Content-Length",
        ));
    }
    let mut length: Option<usize> = None;
    for (_, value) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
    {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(400, "Bad request: invalid Content-Length"));
        }
        let parsed: usize = match value.parse() {
            Ok(n) => n,
            Err(_) => return Err(fail(413, "Payload too large")),
        };
        if length.is_some_and(|l| l != parsed) {
            return Err(fail(400, "Bad request: conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    if length > MAX_REQUEST_BYTES {
        return Err(fail(413, "Payload too large"));
    }
    let expects_continue = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("Expect") && v.trim().eq_ignore_ascii_case("100-continue")
    });
    if expects_continue && buffer.len() < length {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    while buffer.len() < length {
        let mut chunk = [0u8; 64 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Closed),
        }
    }
    let body: Vec<u8> = buffer.drain(..length).collect();
    Ok(HttpRequest {
        method,
        target,
        version,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn write_response(
    stream: &mut impl Write,
    response: &HttpResponse,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    if let Some(total) = response.total_items {
        head.push_str(&format!("SoftLayer-Total-Items: {total}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

fn redact(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("Authorization") {
                (k.clone(), "(redacted)".to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// Percent-decoding; with `plus`, '+' is a space (form encoding, as in query strings).
fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// The credentials of a request, before they are checked.
enum Credentials {
    Missing,
    Malformed,
    Basic { username: String, key: String },
}

fn parse_credentials(headers: &[(String, String)]) -> Credentials {
    let Some((_, value)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
    else {
        return Credentials::Missing;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Credentials::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Credentials::Malformed;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Credentials::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Credentials::Malformed;
    };
    match decoded.split_once(':') {
        Some((username, key)) => Credentials::Basic {
            username: username.to_string(),
            key: key.to_string(),
        },
        None => Credentials::Malformed,
    }
}

fn check_auth(state: &State, headers: &[(String, String)]) -> Auth {
    match parse_credentials(headers) {
        Credentials::Missing => Auth::Missing,
        Credentials::Malformed => Auth::Malformed,
        Credentials::Basic { username, key } => {
            if state.users.iter().any(|(u, k)| *u == username && *k == key) {
                Auth::Valid { username }
            } else {
                Auth::Invalid { username }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Routing and dispatch
// ---------------------------------------------------------------------------------------

/// An API error (§3.5): `{"error": message, "code": code}` with an HTTP status.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn public(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "SoftLayer_Exception_Public", message)
    }

    fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "SoftLayer_Exception_InvalidValue", message)
    }

    /// SLDN's message for an unknown id (§3.5), with HTTP 404.
    fn not_found(id: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            404,
            "SoftLayer_Exception_ObjectNotFound",
            format!("Unable to find object with id of '{id}'."),
        )
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "SoftLayer_Exception_WebService_BadRequest", message)
    }

    /// A real API method that this local portal does not implement: a loud failure, so a
    /// test never passes on a made-up answer.
    fn not_implemented(service: &str, method: &str) -> ApiError {
        ApiError::new(
            500,
            "SoftLayer_Exception_NotImplemented",
            format!(
                "local test portal: {service}::{method} is a real method but is not implemented here"
            ),
        )
    }
}

enum Outcome {
    Respond(HttpResponse),
    DelayThenRespond(Duration, HttpResponse),
    Drop,
}

struct Route {
    service: String,
    id: Option<i64>,
    method: String,
    /// The method was named in the URL (not implied by the HTTP verb).
    explicit: bool,
    /// Simple parameters given as further path segments (§3.2).
    url_parameters: Vec<String>,
}

/// Parses `/rest/v3.1/{Service}[/{id}][/{method}][/{param}...][.json]`.
fn route(http_method: &str, path: &str) -> Result<Route, ApiError> {
    let Some(rest) = path.strip_prefix(BASE_PATH) else {
        // CHOICE: only /rest/v3.1/ is served; the real host answers other paths with its
        // web server's 404.
        return Err(ApiError::new(
            404,
            "SoftLayer_Exception_Public",
            "Service does not exist",
        ));
    };
    let mut segments: Vec<String> = Vec::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded =
            percent_decode(segment, false).ok_or_else(|| ApiError::bad_request("Bad request"))?;
        segments.push(decoded);
    }
    if let Some(last) = segments.last_mut() {
        if let Some(stripped) = last.strip_suffix(".json") {
            *last = stripped.to_string();
        } else if last.ends_with(".xml") || last.ends_with(".txt") {
            return Err(ApiError::new(
                500,
                "SoftLayer_Exception_NotImplemented",
                "local test portal: only the .json format is served",
            ));
        }
    }
    let mut segments = segments.into_iter();
    let Some(service) = segments.next().filter(|s| !s.is_empty()) else {
        return Err(ApiError::new(
            404,
            "SoftLayer_Exception_Public",
            "Service does not exist",
        ));
    };
    let rest: Vec<String> = segments.collect();
    let (id, after_id) = match rest.first() {
        Some(first) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => {
            let id = first
                .parse::<i64>()
                .map_err(|_| ApiError::not_found(first))?;
            (Some(id), &rest[1..])
        }
        _ => (None, &rest[..]),
    };
    let (method, explicit, url_parameters) = match after_id.split_first() {
        Some((method, parameters)) => (method.clone(), true, parameters.to_vec()),
        // SLDN (§3.1): no method name means getObject for GET, createObject for POST,
        // editObject for PUT and deleteObject for DELETE.
        None => {
            let implied = match http_method {
                "GET" => "getObject",
                "POST" => "createObject",
                "PUT" => "editObject",
                "DELETE" => "deleteObject",
                _ => {
                    return Err(ApiError::new(
                        405,
                        "SoftLayer_Exception_WebService_BadRequest",
                        "Bad request",
                    ));
                }
            };
            (implied.to_string(), false, Vec::new())
        }
    };
    Ok(Route {
        service,
        id,
        method,
        explicit,
        url_parameters,
    })
}

/// Query parameters the API reads (§3.3).
struct Query {
    mask: Option<String>,
    filter: Option<Value>,
    /// (offset, limit)
    limit: Option<(usize, usize)>,
}

fn read_query(pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut query = Query {
        mask: None,
        filter: None,
        limit: None,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "objectMask" => {
                if !mask_is_valid(value) {
                    // CHOICE: the real message for an unparsable mask is not documented.
                    return Err(ApiError::public(format!(
                        "Unable to parse object mask: {value}"
                    )));
                }
                query.mask = Some(value.clone());
            }
            "objectFilter" => {
                let filter: Value = serde_json::from_str(value).map_err(|e| {
                    // CHOICE: undocumented message and class.
                    ApiError::public(format!("Unable to parse object filter: {e}"))
                })?;
                if !filter.is_object() {
                    return Err(ApiError::public(
                        "Unable to parse object filter: not an object",
                    ));
                }
                query.filter = Some(filter);
            }
            "resultLimit" => {
                let parse = |s: &str| s.trim().parse::<usize>().ok();
                let limit = match value.split_once(',') {
                    Some((offset, limit)) => parse(offset).zip(parse(limit)),
                    None => parse(value).map(|limit| (0, limit)),
                };
                query.limit = Some(limit.ok_or_else(|| {
                    ApiError::invalid_value(format!(
                        "Invalid resultLimit '{value}': expected offset,limit"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// An object mask as SLDN writes them (§3.3): `mask[id,status[name]]`,
/// `mask(SoftLayer_Type)[...]`, `mask.id`, or a bare list `id,commonName`.
fn mask_is_valid(mask: &str) -> bool {
    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        depth: usize,
    }
    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn ws(&mut self) {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn ident(&mut self) -> bool {
            self.ws();
            match self.peek() {
                Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.i += 1,
                _ => return false,
            }
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                self.i += 1;
            }
            true
        }
        fn item(&mut self) -> bool {
            if !self.ident() {
                return false;
            }
            loop {
                self.ws();
                if self.peek() == Some(b'.') {
                    self.i += 1;
                    if !self.ident() {
                        return false;
                    }
                } else {
                    break;
                }
            }
            self.ws();
            if self.peek() == Some(b'(') {
                self.i += 1;
                if !self.ident() {
                    return false;
                }
                self.ws();
                if self.peek() != Some(b')') {
                    return false;
                }
                self.i += 1;
                self.ws();
            }
            if self.peek() == Some(b'[') {
                self.i += 1;
                self.depth += 1;
                if self.depth > 32 || !self.list(Some(b']')) {
                    return false;
                }
                self.ws();
                if self.peek() != Some(b']') {
                    return false;
                }
                self.i += 1;
                self.depth -= 1;
            }
            true
        }
        fn list(&mut self, close: Option<u8>) -> bool {
            self.ws();
            if close.is_some() && self.peek() == close {
                return true;
            }
            loop {
                if !self.item() {
                    return false;
                }
                self.ws();
                if self.peek() == Some(b',') {
                    self.i += 1;
                } else {
                    return true;
                }
            }
        }
    }
    if mask.trim().is_empty() {
        return false;
    }
    let mut parser = Parser {
        s: mask.as_bytes(),
        i: 0,
        depth: 0,
    };
    let ok = parser.list(None);
    parser.ws();
    ok && parser.i == parser.s.len()
}

/// A decoded call.
struct Call {
    service: String,
    id: Option<i64>,
    method: String,
    parameters: Vec<Value>,
    query: Query,
}

impl Call {
    fn name(&self) -> String {
        format!("{}::{}", self.service, self.method)
    }
}

/// A successful answer.
struct Answer {
    value: Value,
    total_items: Option<usize>,
    /// Order id to pass to the resend hook once the state lock is released.
    resend_hook: Option<i64>,
}

impl Answer {
    fn value(value: Value) -> Answer {
        Answer {
            value,
            total_items: None,
            resend_hook: None,
        }
    }
}

fn handle(shared: &Shared, request: &HttpRequest, connection: u64) -> Outcome {
    let (path, query_string) = split_target(&request.target);
    let mut record = RequestRecord {
        http_method: request.method.clone(),
        target: request.target.clone(),
        path: path.to_string(),
        query: query_string.to_string(),
        query_pairs: parse_query(query_string).unwrap_or_default(),
        headers: redact(&request.headers),
        service: None,
        id: None,
        method: None,
        auth: Auth::Missing,
        body: String::from_utf8_lossy(&request.body).into_owned(),
        status: None,
        fault: None,
        connection,
        at: SystemTime::now(),
    };
    let route = route(&request.method, path);
    let mut state = lock(&shared.state);
    record.auth = check_auth(&state, &request.headers);
    let route = match route {
        Ok(route) => route,
        Err(error) => return finish(state, record, Outcome::Respond(HttpResponse::error(&error))),
    };
    record.service = Some(route.service.clone());
    record.id = route.id;
    record.method = Some(route.method.clone());

    // Faults come first: they stand for the network, a gateway or an overloaded API.
    let fault = pop_fault(&mut state, &route.service, &route.method);
    record.fault = fault.clone();
    let performed = match &fault {
        None | Some(Fault::Delay(_)) | Some(Fault::LostResponse) => true,
        Some(_) => false,
    };
    if !performed {
        let outcome = match fault.expect("a fault that is not performed") {
            Fault::InternalError => Outcome::Respond(HttpResponse::raw(500, INTERNAL_ERROR_BODY)),
            Fault::RateLimited => Outcome::Respond(HttpResponse::raw(429, RATE_LIMIT_BODY)),
            Fault::RateLimitedAs500 => Outcome::Respond(HttpResponse::raw(500, RATE_LIMIT_BODY)),
            Fault::Unauthorized => Outcome::Respond(HttpResponse::raw(401, INVALID_TOKEN_BODY)),
            Fault::Empty200 => Outcome::Respond(HttpResponse::raw(200, "")),
            Fault::ErrorBody200 => Outcome::Respond(HttpResponse::raw(200, INTERNAL_ERROR_BODY)),
            Fault::Raw { status, body } => Outcome::Respond(HttpResponse::raw(status, &body)),
            Fault::Drop => Outcome::Drop,
            Fault::Delay(_) | Fault::LostResponse => unreachable!("performed faults"),
        };
        return finish(state, record, outcome);
    }

    let result = perform(&mut state, &record, request, route);
    let (response, hook) = match result {
        Ok(answer) => {
            let response = HttpResponse {
                status: 200,
                body: answer.value.to_string().into_bytes(),
                total_items: answer.total_items,
            };
            (response, answer.resend_hook)
        }
        Err(error) => (HttpResponse::error(&error), None),
    };
    // The hook runs without the state lock, before the answer is written.
    if let Some(order_id) = hook {
        drop(state);
        let hook = lock(&shared.hook).clone();
        if let Some(hook) = hook {
            hook(order_id);
        }
        state = lock(&shared.state);
    }
    let outcome = match fault {
        Some(Fault::Delay(delay)) => Outcome::DelayThenRespond(delay, response),
        Some(Fault::LostResponse) => Outcome::Drop,
        _ => Outcome::Respond(response),
    };
    finish(state, record, outcome)
}

/// Logs the request with its outcome.
fn finish(
    mut state: MutexGuard<'_, State>,
    mut record: RequestRecord,
    outcome: Outcome,
) -> Outcome {
    record.status = match &outcome {
        Outcome::Respond(r) | Outcome::DelayThenRespond(_, r) => Some(r.status),
        Outcome::Drop => None,
    };
    state.requests.push(record);
    outcome
}

fn pop_fault(state: &mut State, service: &str, method: &str) -> Option<Fault> {
    for key in [format!("{service}::{method}"), method.to_string()] {
        if let Some(fault) = state.faults.get_mut(&key).and_then(VecDeque::pop_front) {
            return Some(fault);
        }
    }
    None
}

fn perform(
    state: &mut State,
    record: &RequestRecord,
    request: &HttpRequest,
    route: Route,
) -> Result<Answer, ApiError> {
    if !record.auth.is_valid() {
        // §3.4/§3.5: HTTP 401 and "Invalid API token." for bad credentials. CHOICE: a request
        // without credentials, or with a non-Basic header, gets the same answer.
        return Err(ApiError::new(
            401,
            "SoftLayer_Exception_Public",
            "Invalid API token.",
        ));
    }
    if request.method == "DELETE" && route.explicit {
        // softlayer-python#962/#947: DELETE .../deleteObject.json answered 404 "Service does
        // not exist"; the verb implies the method and must not be combined with one.
        return Err(ApiError::new(
            404,
            "SoftLayer_Exception_Public",
            "Service does not exist",
        ));
    }
    let pairs = parse_query(&record.query).ok_or_else(|| ApiError::bad_request("Bad request"))?;
    let query = read_query(&pairs)?;
    // §3.2: "The SoftLayer API will ignore data sent in as a GET request."
    let mut parameters: Vec<Value> = route
        .url_parameters
        .iter()
        .cloned()
        .map(Value::String)
        .collect();
    if matches!(request.method.as_str(), "POST" | "PUT")
        && !request.body.is_empty()
        && parameters.is_empty()
    {
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| ApiError::bad_request("Bad request"))?;
        match body {
            Value::Object(mut object) => match object.remove("parameters") {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => parameters = list,
                Some(_) => return Err(ApiError::bad_request("Bad request")),
            },
            _ => return Err(ApiError::bad_request("Bad request")),
        }
    }
    let call = Call {
        service: route.service,
        id: route.id,
        method: route.method,
        parameters,
        query,
    };
    dispatch(state, &call, OffsetDateTime::now_utc())
}

/// Methods of the services below that exist in the real API (§1.1, §2.1) but are not
/// implemented here.
const UNIMPLEMENTED: &[(&str, &[&str])] = &[
    (
        "SoftLayer_Security_Certificate_Request",
        &[
            "cancelSslOrder",
            "getAccount",
            "getAdministratorEmailDomains",
            "getAdministratorEmailPrefixes",
            "getOrder",
            "getOrderItem",
            "getPreviousOrderData",
            "validateCsr",
        ],
    ),
    ("SoftLayer_Account", &["getValidSecurityCertificateEntries"]),
];

fn dispatch(state: &mut State, call: &Call, now: OffsetDateTime) -> Result<Answer, ApiError> {
    let service = call.service.as_str();
    let method = call.method.as_str();
    match service {
        "SoftLayer_Account" => account_call(state, call, now),
        "SoftLayer_Security_Certificate_Request" => order_call(state, call, now),
        "SoftLayer_Security_Certificate_Request_Status" => status_call(call),
        "SoftLayer_Security_Certificate" => certificate_call(state, call, now),
        _ => Err(ApiError::new(
            404,
            "SoftLayer_Exception_Public",
            "Service does not exist",
        )),
    }
    .map_err(|error| {
        let unknown =
            error.code == "SoftLayer_Exception_Public" && error.message.starts_with("Function (");
        let real = UNIMPLEMENTED
            .iter()
            .any(|(s, methods)| *s == service && methods.contains(&method));
        if unknown && real {
            ApiError::not_implemented(service, method)
        } else {
            error
        }
    })
}

/// §3.5: `Function ("x") is not a valid method for this service.`
fn unknown_method(method: &str) -> ApiError {
    ApiError::public(format!(
        "Function (\"{method}\") is not a valid method for this service."
    ))
}

/// A method that needs an init parameter called without one. CHOICE: the message is the
/// one the API gives over XML-RPC (softlayer-python#564); class and status over REST are
/// not documented.
fn needs_id(call: &Call) -> ApiError {
    ApiError::new(
        500,
        "SoftLayer_Exception",
        format!(
            "Object does not exist to execute method on. ({})",
            call.name()
        ),
    )
}

/// CHOICE: the real message for a wrong parameter count is not documented; too few and
/// too many are both refused.
fn expect_parameters(call: &Call, count: usize) -> Result<(), ApiError> {
    if call.parameters.len() == count {
        Ok(())
    } else {
        Err(ApiError::public(format!(
            "{} expects {count} parameter(s), {} given.",
            call.name(),
            call.parameters.len()
        )))
    }
}

fn integer_parameter(call: &Call, index: usize, name: &str) -> Result<i64, ApiError> {
    let value = &call.parameters[index];
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        // Parameters in the URL are strings; the API takes numeric strings for integers.
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ApiError::invalid_value(format!(
            "Invalid value for parameter '{name}' of {}: expected an integer, got {value}.",
            call.name()
        ))
    })
}

fn string_parameter<'c>(call: &'c Call, index: usize, name: &str) -> Result<&'c str, ApiError> {
    match &call.parameters[index] {
        Value::String(s) => Ok(s),
        other => Err(ApiError::invalid_value(format!(
            "Invalid value for parameter '{name}' of {}: expected a string, got {other}.",
            call.name()
        ))),
    }
}

fn object_parameter<'c>(
    call: &'c Call,
    index: usize,
    datatype: &str,
) -> Result<&'c Map<String, Value>, ApiError> {
    match &call.parameters[index] {
        Value::Object(object) => Ok(object),
        other => Err(ApiError::invalid_value(format!(
            "Invalid value for parameter 'templateObject' of {}: expected a {datatype}, got {other}.",
            call.name()
        ))),
    }
}

fn portal_date(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    t.to_offset(PORTAL_OFFSET)
        .format(&format)
        .unwrap_or_default()
}

/// Inserts `value` under `key` when it is not null: the API leaves unset properties out.
fn put(object: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let value = value.into();
    if !value.is_null() {
        object.insert(key.to_string(), value);
    }
}

// --- SoftLayer_Account ----------------------------------------------------------------------

fn account_call(state: &mut State, call: &Call, now: OffsetDateTime) -> Result<Answer, ApiError> {
    // The Account service works on the caller's account; an explicit id must be it.
    if let Some(id) = call.id
        && id != state.account.id
    {
        return Err(ApiError::not_found(id));
    }
    let certificates = |root: &str, keep: &dyn Fn(&StoredCertificate) -> bool| {
        expect_parameters(call, 0)?;
        let items: Vec<Value> = state
            .certificates
            .values()
            .filter(|c| keep(c))
            .map(|c| certificate_json(c, false, now))
            .collect();
        let filter = call.query.filter.as_ref().and_then(|f| f.get(root));
        list_answer(items, filter, call.query.limit)
    };
    match call.method.as_str() {
        "getObject" => {
            expect_parameters(call, 0)?;
            let account = &state.account;
            Ok(Answer::value(json!({
                "id": account.id,
                "companyName": "Local Test Portal",
                "email": "ops@example.com",
                "accountStatusId": 1001,
                "brandId": 2,
                "createDate": portal_date(now - time::Duration::days(3650)),
            })))
        }
        "getSecurityCertificates" => certificates("securityCertificates", &|_| true),
        "getValidSecurityCertificates" => {
            certificates("validSecurityCertificates", &|c| c.validity_end > now)
        }
        "getExpiredSecurityCertificates" => {
            certificates("expiredSecurityCertificates", &|c| c.validity_end <= now)
        }
        other => Err(unknown_method(other)),
    }
}

// --- SoftLayer_Security_Certificate_Request --------------------------------------------------

fn status_json(status_id: i64) -> Value {
    match STATUSES.iter().find(|s| s.0 == status_id) {
        Some((id, name, description)) => {
            json!({"id": id, "name": name, "description": description})
        }
        None => json!({"id": status_id}),
    }
}

fn order_json(order: &Order) -> Value {
    let mut object = Map::new();
    put(&mut object, "id", order.id);
    put(&mut object, "accountId", order.account_id);
    put(&mut object, "commonName", order.common_name.clone());
    put(
        &mut object,
        "certificateSigningRequest",
        order.csr_pem.clone(),
    );
    put(
        &mut object,
        "approverEmailAddress",
        order.approver_email.clone(),
    );
    put(
        &mut object,
        "technicalContactEmailAddress",
        order.technical_contact_email.clone(),
    );
    put(&mut object, "statusId", order.status_id);
    put(&mut object, "status", status_json(order.status_id));
    put(&mut object, "createDate", portal_date(order.create_date));
    put(&mut object, "modifyDate", portal_date(order.modify_date));
    put(
        &mut object,
        "effectiveDate",
        order.effective_date.map(portal_date),
    );
    put(
        &mut object,
        "expirationDate",
        order.expiration_date.map(portal_date),
    );
    put(&mut object, "order", json!({"id": order.billing_order_id}));
    Value::Object(object)
}

/// The caller's order `id` (another account's order is not found, as it is not theirs).
fn own_order(state: &State, call: &Call) -> Result<i64, ApiError> {
    let id = call.id.ok_or_else(|| needs_id(call))?;
    match state.orders.get(&id) {
        Some(order) if order.account_id == state.account.id => Ok(id),
        _ => Err(ApiError::not_found(id)),
    }
}

fn order_call(state: &mut State, call: &Call, now: OffsetDateTime) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getObject" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(order_json(&state.orders[&id])))
        }
        "getStatus" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(status_json(state.orders[&id].status_id)))
        }
        "getSslCertificateRequests" => {
            // No init parameter (§1.1); the account id is the one parameter.
            expect_parameters(call, 1)?;
            let account_id = integer_parameter(call, 0, "accountId")?;
            if account_id != state.account.id {
                // CHOICE: the answer for another account's id is undocumented; SLDN's
                // generic "Access Denied. " (§3.5) is used.
                return Err(ApiError::public("Access Denied. "));
            }
            let items: Vec<Value> = state
                .orders
                .values()
                .filter(|o| o.account_id == account_id)
                .map(order_json)
                .collect();
            // CHOICE (§6 item 6): the filter starts at the request's own properties,
            // e.g. {"commonName":{"operation":"example.com"}}.
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "resendEmail" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 1)?;
            let email_type = string_parameter(call, 0, "emailType")?.to_string();
            // §1.2: "Valid email types are: ApproverEmail, FulfillmentEmail". CHOICE: case
            // sensitivity is undocumented; exact strings only.
            if email_type != "FulfillmentEmail" && email_type != "ApproverEmail" {
                return Err(ApiError::invalid_value(format!(
                    "Invalid email type '{email_type}'. Valid email types are: ApproverEmail, FulfillmentEmail"
                )));
            }
            if state.orders[&id].refuses_resend {
                // CHOICE: text and class undocumented (§0, §6 item 2).
                return Err(ApiError::public(ORDERS_RETIRED_MESSAGE));
            }
            // CHOICE: the order's status does not matter (undocumented).
            state.resends.push(Resend {
                order_id: id,
                email_type: email_type.clone(),
                at: SystemTime::from(now),
            });
            let mut answer = Answer::value(Value::Bool(true));
            if email_type == "FulfillmentEmail" {
                answer.resend_hook = Some(id);
            }
            Ok(answer)
        }
        other => Err(unknown_method(other)),
    }
}

// --- SoftLayer_Security_Certificate_Request_Status -------------------------------------------

fn status_call(call: &Call) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getSslRequestStatuses" => {
            expect_parameters(call, 0)?;
            let items: Vec<Value> = STATUSES.iter().map(|s| status_json(s.0)).collect();
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "getObject" => {
            let id = call.id.ok_or_else(|| needs_id(call))?;
            expect_parameters(call, 0)?;
            if status_id_known(id) {
                Ok(Answer::value(status_json(id)))
            } else {
                Err(ApiError::not_found(id))
            }
        }
        other => Err(unknown_method(other)),
    }
}

fn status_id_known(id: i64) -> bool {
    STATUSES.iter().any(|s| s.0 == id)
}

// --- SoftLayer_Security_Certificate ----------------------------------------------------------

fn certificate_json(c: &StoredCertificate, with_private_key: bool, now: OffsetDateTime) -> Value {
    let mut object = Map::new();
    put(&mut object, "id", c.id);
    put(&mut object, "commonName", c.common_name.clone());
    put(&mut object, "organizationName", c.organization_name.clone());
    put(&mut object, "validityBegin", portal_date(c.validity_begin));
    put(&mut object, "validityEnd", portal_date(c.validity_end));
    put(
        &mut object,
        "validityDays",
        (c.validity_end - now).whole_days().max(0),
    );
    put(&mut object, "certificate", c.certificate.clone());
    put(
        &mut object,
        "intermediateCertificate",
        c.intermediate_certificate.clone(),
    );
    put(
        &mut object,
        "certificateSigningRequest",
        c.certificate_signing_request.clone(),
    );
    put(&mut object, "notes", c.notes.clone());
    put(&mut object, "createDate", portal_date(c.create_date));
    put(&mut object, "modifyDate", portal_date(c.modify_date));
    put(&mut object, "keySize", c.key_size);
    if with_private_key {
        put(&mut object, "privateKey", c.private_key.clone());
    }
    Value::Object(object)
}

fn own_certificate(state: &State, call: &Call) -> Result<i64, ApiError> {
    let id = call.id.ok_or_else(|| needs_id(call))?;
    if state.certificates.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::not_found(id))
    }
}

fn certificate_call(
    state: &mut State,
    call: &Call,
    now: OffsetDateTime,
) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(certificate_json(
                &state.certificates[&id],
                true,
                now,
            )))
        }
        "createObject" => {
            expect_parameters(call, 1)?;
            let template = object_parameter(call, 0, "SoftLayer_Security_Certificate")?;
            let created = create_certificate(state, template, now)?;
            Ok(Answer::value(certificate_json(&created, false, now)))
        }
        "findByCommonName" => {
            expect_parameters(call, 1)?;
            let name = string_parameter(call, 0, "commonName")?;
            // CHOICE: exact, case-sensitive match (undocumented).
            let items: Vec<Value> = state
                .certificates
                .values()
                .filter(|c| c.common_name == name)
                .map(|c| certificate_json(c, false, now))
                .collect();
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "deleteObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            state.certificates.remove(&id);
            Ok(Answer::value(Value::Bool(true)))
        }
        "editObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 1)?;
            let template = object_parameter(call, 0, "SoftLayer_Security_Certificate")?;
            edit_certificate(state, id, template, now)?;
            Ok(Answer::value(Value::Bool(true)))
        }
        "getPemFormat" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            let c = &state.certificates[&id];
            let mut pem = c.certificate.trim_end().to_string();
            if let Some(chain) = c
                .intermediate_certificate
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            {
                pem.push('\n');
                pem.push_str(chain.trim_end());
            }
            pem.push('\n');
            Ok(Answer::value(Value::String(pem)))
        }
        // No load balancers or other services in the local portal.
        "getAssociatedServiceCount"
        | "getLbaasListenerCount"
        | "getLoadBalancerVirtualIpAddressCount" => {
            own_certificate(state, call)?;
            Ok(Answer::value(json!(0)))
        }
        "getLbaasListeners" | "getLoadBalancerVirtualIpAddresses" => {
            own_certificate(state, call)?;
            list_answer(Vec::new(), None, call.query.limit)
        }
        other => Err(unknown_method(other)),
    }
}

/// An optional string field of a template: absent, null and "" are all "not given".
fn optional_string(template: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match template.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::invalid_value(format!(
            "Invalid value for property '{name}' of SoftLayer_Security_Certificate: expected a string, got {other}."
        ))),
    }
}

/// A required string field. The message follows the API's MissingCreationProperty text
/// (softlayer-python#885).
fn required_string(template: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    optional_string(template, name)?.ok_or_else(|| {
        ApiError::new(
            500,
            "SoftLayer_Exception_MissingCreationProperty",
            format!("The property '{name}' must be set to create an instance of 'SoftLayer_Security_Certificate'."),
        )
    })
}

/// A certificate, key and chain that passed the checks, with what the portal extracts.
struct Checked {
    common_name: String,
    organization_name: String,
    validity_begin: OffsetDateTime,
    validity_end: OffsetDateTime,
    key_size: usize,
    sha256: String,
}

/// The `createObject` checks (§2.1, §2.3): the certificate parses, the private key's public
/// key is the certificate's, and a given intermediate parses and signed the certificate.
/// CHOICE: the real messages are undocumented (§6 item 3); each names its problem, with
/// class SoftLayer_Exception_Public.
fn check_certificate(
    certificate: &str,
    private_key: &str,
    intermediate: Option<&str>,
    csr: Option<&str>,
) -> Result<Checked, ApiError> {
    let leaf_ders = pem_certificates(certificate, "certificate")?;
    if leaf_ders.len() != 1 {
        // CHOICE: a chain pasted into `certificate` is refused rather than cut; it belongs
        // in intermediateCertificate.
        return Err(ApiError::public(format!(
            "The certificate must hold exactly one certificate, found {}; put the chain in intermediateCertificate.",
            leaf_ders.len()
        )));
    }
    let leaf = parse_certificate(&leaf_ders[0], "certificate")?;
    let leaf_key = fulfill::keys::from_spki(leaf.public_key()).map_err(|e| {
        ApiError::public(format!("Unable to read the certificate's public key: {e}"))
    })?;

    let materials = fulfill::keys::read_key_material(private_key.as_bytes())
        .map_err(|e| ApiError::public(format!("Unable to parse the private key: {e}")))?;
    let key = materials
        .iter()
        .find_map(|m| match m {
            fulfill::keys::KeyMaterial::PrivateKey(key) => Some(key),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::public("Unable to parse the private key: no private key found.")
        })?;
    if *key != leaf_key {
        return Err(ApiError::public(
            "The private key does not match the certificate.",
        ));
    }

    if let Some(chain) = intermediate {
        let ders = pem_certificates(chain, "intermediate certificate")?;
        let parsed = ders
            .iter()
            .map(|der| parse_certificate(der, "intermediate certificate"))
            .collect::<Result<Vec<_>, _>>()?;
        // CHOICE: the chain must be in order, the leaf's issuer first (as clients send it).
        if leaf.verify_signature(Some(parsed[0].public_key())).is_err() {
            return Err(ApiError::public(
                "The intermediate certificate did not sign the certificate.",
            ));
        }
        for pair in parsed.windows(2) {
            if pair[0]
                .verify_signature(Some(pair[1].public_key()))
                .is_err()
            {
                return Err(ApiError::public(
                    "The intermediate certificates do not form a chain (each must be signed by the next).",
                ));
            }
        }
    }

    if let Some(csr) = csr {
        // IBM docs (§2.3): the CSR "must not be replaced by the Private Key".
        if csr.contains("PRIVATE KEY") {
            return Err(ApiError::public(
                "The certificate signing request must not be a private key.",
            ));
        }
    }

    let common_name = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .or_else(|| {
            leaf.subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|name| match name {
                        GeneralName::DNSName(dns) => Some(dns.to_string()),
                        _ => None,
                    })
                })
        })
        .unwrap_or_default();
    let organization_name = leaf
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map_or_else(|| "Unspecified".to_string(), str::to_string);
    let validity = leaf.validity();
    let to_time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let key_size = leaf
        .public_key()
        .parsed()
        .map(|k| k.key_size())
        .unwrap_or(0);
    Ok(Checked {
        common_name,
        organization_name,
        validity_begin: to_time(&validity.not_before),
        validity_end: to_time(&validity.not_after),
        key_size,
        sha256: fulfill::extract::sha256_hex(&leaf_ders[0]),
    })
}

/// The DER of each CERTIFICATE block of a PEM text.
fn pem_certificates(text: &str, what: &str) -> Result<Vec<Vec<u8>>, ApiError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| ApiError::public(format!("Unable to parse the {what}: {e}")))?;
    if blocks.is_empty() {
        return Err(ApiError::public(format!(
            "Unable to parse the {what}: no PEM block found."
        )));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == "CERTIFICATE" {
                Ok(block.into_contents())
            } else {
                Err(ApiError::public(format!(
                    "Unable to parse the {what}: unexpected PEM block '{}'.",
                    block.tag()
                )))
            }
        })
        .collect()
}

fn parse_certificate<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, ApiError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(ApiError::public(format!(
            "Unable to parse the {what}: trailing data after the certificate."
        ))),
        Err(e) => Err(ApiError::public(format!("Unable to parse the {what}: {e}"))),
    }
}

fn create_certificate(
    state: &mut State,
    template: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<StoredCertificate, ApiError> {
    let certificate = required_string(template, "certificate")?;
    // §2.3: "usually required"; every official client requires it, and so does this portal.
    let private_key = required_string(template, "privateKey")?;
    let intermediate = optional_string(template, "intermediateCertificate")?;
    let csr = optional_string(template, "certificateSigningRequest")?;
    let notes = optional_string(template, "notes")?;
    let checked = check_certificate(
        &certificate,
        &private_key,
        intermediate.as_deref(),
        csr.as_deref(),
    )?;
    // commonName, organizationName and the validity dates are extracted; values sent for
    // them are "silently ignored" (§2.2), as is anything else in the template.
    let id = state.next_certificate_id;
    state.next_certificate_id += 1;
    let stored = StoredCertificate {
        id,
        common_name: checked.common_name,
        organization_name: checked.organization_name,
        certificate,
        private_key,
        intermediate_certificate: intermediate,
        certificate_signing_request: csr,
        notes,
        validity_begin: checked.validity_begin,
        validity_end: checked.validity_end,
        key_size: checked.key_size,
        create_date: now,
        modify_date: now,
        sha256: checked.sha256,
    };
    state.certificates.insert(id, stored.clone());
    Ok(stored)
}

/// `editObject` (§2.1): only the properties sent change; with no associated services in
/// the local portal, every writable property may change, and the result is re-checked.
fn edit_certificate(
    state: &mut State,
    id: i64,
    template: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let current = state.certificates[&id].clone();
    let pick = |name: &str, old: Option<String>| -> Result<Option<String>, ApiError> {
        if template.contains_key(name) {
            optional_string(template, name)
        } else {
            Ok(old)
        }
    };
    let certificate = pick("certificate", Some(current.certificate.clone()))?
        .ok_or_else(|| ApiError::public("The certificate cannot be removed."))?;
    let private_key = pick("privateKey", Some(current.private_key.clone()))?
        .ok_or_else(|| ApiError::public("The private key cannot be removed."))?;
    let intermediate = pick(
        "intermediateCertificate",
        current.intermediate_certificate.clone(),
    )?;
    let csr = pick(
        "certificateSigningRequest",
        current.certificate_signing_request.clone(),
    )?;
    let notes = pick("notes", current.notes.clone())?;
    let checked = check_certificate(
        &certificate,
        &private_key,
        intermediate.as_deref(),
        csr.as_deref(),
    )?;
    let entry = state.certificates.get_mut(&id).expect("checked above");
    *entry = StoredCertificate {
        id,
        common_name: checked.common_name,
        organization_name: checked.organization_name,
        certificate,
        private_key,
        intermediate_certificate: intermediate,
        certificate_signing_request: csr,
        notes,
        validity_begin: checked.validity_begin,
        validity_end: checked.validity_end,
        key_size: checked.key_size,
        create_date: current.create_date,
        modify_date: now,
        sha256: checked.sha256,
    };
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Lists: objectFilter and resultLimit (§3.3, SLDN object-filters)
// ---------------------------------------------------------------------------------------

/// Filters, sorts and pages a list; `SoftLayer-Total-Items` is the count after filtering.
fn list_answer(
    items: Vec<Value>,
    filter: Option<&Value>,
    limit: Option<(usize, usize)>,
) -> Result<Answer, ApiError> {
    let mut conditions = Vec::new();
    if let Some(filter) = filter {
        collect_conditions(filter, &mut Vec::new(), &mut conditions);
    }
    let mut kept = Vec::new();
    for item in items {
        let mut keep = true;
        for condition in conditions.iter().filter(|c| !c.is_order_by()) {
            if !condition.matches(&item)? {
                keep = false;
                break;
            }
        }
        if keep {
            kept.push(item);
        }
    }
    let mut order_by: Vec<(i64, &Condition, bool)> = conditions
        .iter()
        .filter(|c| c.is_order_by())
        .map(|c| (c.sort_order(), c, c.descending()))
        .collect();
    order_by.sort_by_key(|(priority, _, _)| *priority);
    if !order_by.is_empty() {
        kept.sort_by(|a, b| {
            for (_, condition, descending) in &order_by {
                let ordering = compare_values(condition.lookup(a), condition.lookup(b));
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != std::cmp::Ordering::Equal {
                    return ordering;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let total = kept.len();
    let page: Vec<Value> = match limit {
        Some((offset, limit)) => kept.into_iter().skip(offset).take(limit).collect(),
        None => kept,
    };
    Ok(Answer {
        value: Value::Array(page),
        total_items: Some(total),
        resend_hook: None,
    })
}

struct Condition {
    path: Vec<String>,
    operation: Value,
    options: Vec<(String, Vec<Value>)>,
}

/// Walks a filter: every object with an "operation" is a condition on the property path
/// that leads to it. Objects without one are descended into; other values are ignored, as
/// the API "tends to just ignore" what it does not understand.
fn collect_conditions(filter: &Value, path: &mut Vec<String>, out: &mut Vec<Condition>) {
    let Value::Object(object) = filter else {
        return;
    };
    if let Some(operation) = object.get("operation") {
        let options = object
            .get("options")
            .and_then(Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(|o| {
                        let name = o.get("name")?.as_str()?.to_string();
                        let values = match o.get("value")? {
                            Value::Array(values) => values.clone(),
                            single => vec![single.clone()],
                        };
                        Some((name, values))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Condition {
            path: path.clone(),
            operation: operation.clone(),
            options,
        });
        return;
    }
    for (key, value) in object {
        path.push(key.clone());
        collect_conditions(value, path, out);
        path.pop();
    }
}

impl Condition {
    fn option(&self, name: &str) -> Option<&[Value]> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn is_order_by(&self) -> bool {
        self.operation.as_str() == Some("orderBy")
    }

    fn descending(&self) -> bool {
        self.option("sort")
            .and_then(|v| v.first())
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("DESC"))
    }

    fn sort_order(&self) -> i64 {
        self.option("sortOrder")
            .and_then(|v| v.first())
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The property at the path (`None` if absent or null).
    fn lookup<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        let mut value = item;
        for key in &self.path {
            value = value.get(key)?;
        }
        (!value.is_null()).then_some(value)
    }

    fn matches(&self, item: &Value) -> Result<bool, ApiError> {
        let actual = self.lookup(item);
        match &self.operation {
            Value::String(op) => match op.as_str() {
                "in" | "not in" => {
                    let values = self.option("data").unwrap_or(&[]);
                    let found = values.iter().any(|v| equals(actual, v));
                    Ok(found == (op == "in"))
                }
                "or" | "and" => {
                    let values = self.option("data").unwrap_or(&[]);
                    let mut results = Vec::new();
                    for v in values {
                        results.push(match v {
                            Value::String(s) => literal(s, actual)?,
                            other => equals(actual, other),
                        });
                    }
                    Ok(if op == "or" {
                        results.iter().any(|r| *r)
                    } else {
                        results.iter().all(|r| *r)
                    })
                }
                "isDate" | "lessThanDate" | "greaterThanDate" | "betweenDate" => {
                    Err(filter_not_implemented(op))
                }
                _ => literal(op, actual),
            },
            other => Ok(equals(actual, other)),
        }
    }
}

fn filter_not_implemented(what: &str) -> ApiError {
    ApiError::new(
        500,
        "SoftLayer_Exception_NotImplemented",
        format!("local test portal: object filter operation '{what}' is not implemented here"),
    )
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn equals(actual: Option<&Value>, expected: &Value) -> bool {
    actual.is_some_and(|a| as_text(a) == as_text(expected))
}

/// SLDN's literal operators: `value`, `!= value`, `> value`, `^= value`, `_= value`, ...
fn literal(expression: &str, actual: Option<&Value>) -> Result<bool, ApiError> {
    let trimmed = expression.trim();
    match trimmed {
        "not null" => return Ok(actual.is_some()),
        "is null" => return Ok(actual.is_none()),
        _ => {}
    }
    const OPERATORS: [&str; 14] = [
        "!^=", "!$=", "!*=", "!=", ">=", "<=", "^=", "$=", "*=", "_=", "!~", "~", ">", "<",
    ];
    for operator in OPERATORS {
        let Some(operand) = trimmed.strip_prefix(operator) else {
            continue;
        };
        let operand = operand.trim();
        if operand.contains("sysdate") || operand.contains("currentDate") {
            return Err(filter_not_implemented(trimmed));
        }
        let Some(actual) = actual.map(as_text) else {
            return Ok(false);
        };
        let result = match operator {
            "!^=" => !actual.starts_with(operand),
            "!$=" => !actual.ends_with(operand),
            "!*=" => !actual.contains(operand),
            "!=" => actual != operand,
            "^=" => actual.starts_with(operand),
            "$=" => actual.ends_with(operand),
            "*=" => actual.contains(operand),
            "_=" => actual.to_lowercase() == operand,
            "~" | "!~" => return Err(filter_not_implemented(operator)),
            _ => {
                let ordering = compare_text(&actual, operand);
                match operator {
                    ">=" => ordering.is_ge(),
                    "<=" => ordering.is_le(),
                    ">" => ordering.is_gt(),
                    _ => ordering.is_lt(),
                }
            }
        };
        return Ok(result);
    }
    // No operator: equality with the value as given.
    Ok(actual.is_some_and(|a| as_text(a) == expression))
}

/// Numbers compare as numbers, everything else as text.
fn compare_text(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// For sorting: absent values first.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => compare_text(&as_text(a), &as_text(b)),
    }
}

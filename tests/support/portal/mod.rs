//! A local SoftLayer portal for integration tests: a real HTTP/1.1 server on 127.0.0.1 that
//! answers the calls `fulfill` makes the way `docs/softlayer-api.md` says the real REST API
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
//!
//! Layout: [`http`] is the server (sockets, HTTP/1.1 framing); [`request`] turns a request
//! into an answer (log, credentials, [`faults`], then the call); [`url`] reads the path and
//! query; [`routes`] holds one module per service; [`store`] is the portal's state;
//! [`judge`] checks uploaded certificates (with OpenSSL, not with fulfill's code);
//! [`lists`] filters and pages list results; [`error`] is the API's error answer.

#![allow(dead_code)]

pub(crate) mod error;
mod faults;
pub(crate) mod http;
pub(crate) mod judge;
mod lists;
mod request;
mod routes;
mod store;
mod url;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::Map;
use time::OffsetDateTime;

use super::dovecot::TestCert;
use store::State;

// The portal's API; each test crate uses a part of it.
#[allow(unused_imports)]
pub use faults::{Fault, INTERNAL_ERROR_BODY, INVALID_TOKEN_BODY, RATE_LIMIT_BODY};
#[allow(unused_imports)]
pub use request::{Auth, RequestRecord};
#[allow(unused_imports)]
pub use routes::ORDERS_RETIRED_MESSAGE;
#[allow(unused_imports)]
pub use store::{
    Account, Listener, ListenerSpec, ListenerUpdate, LoadBalancer, NewCertificate, Order,
    OrderSpec, Resend, STATUSES, StoredCertificate,
};

/// The REST base path (§3.1). Only v3.1 is served: a client using another base fails here.
pub const BASE_PATH: &str = "/rest/v3.1/";
/// Largest request (head plus body) the server reads.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

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

/// A TLS acceptor presenting `cert` (the stand-ins' TLS).
pub(crate) fn tls_acceptor(cert: &TestCert) -> Arc<native_tls::TlsAcceptor> {
    let identity =
        native_tls::Identity::from_pkcs8(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .expect("the test certificate and key make a TLS identity");
    Arc::new(native_tls::TlsAcceptor::new(identity).expect("a TLS acceptor"))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
        LocalPortal::start_serving(account, Some(tls_acceptor(cert)))
    }

    fn start_serving(account: Account, tls: Option<Arc<native_tls::TlsAcceptor>>) -> LocalPortal {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(account)),
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
            .spawn(move || http::accept_loop(accept_shared, listener, tls_acceptor))
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
        lock(&self.shared.state).add_order(spec)
    }

    pub fn orders(&self) -> Vec<Order> {
        lock(&self.shared.state).orders.values().cloned().collect()
    }

    /// Moves an order to another status (a name from [`STATUSES`]).
    pub fn set_order_status(&self, order_id: i64, status: &str) {
        let status_id =
            store::status_id(status).unwrap_or_else(|| panic!("unknown order status {status:?}"));
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
        lock(&self.shared.state).faults.push(method, fault, times);
    }

    /// Faults still queued for `method` (same key as [`LocalPortal::inject`]).
    pub fn pending_faults(&self, method: &str) -> usize {
        lock(&self.shared.state).faults.pending(method)
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
        routes::create_certificate(&mut state, &template, OffsetDateTime::now_utc())
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

    /// A load balancer named `name` with these listeners, ACTIVE; returns its uuid.
    pub fn add_load_balancer(&self, name: &str, listeners: Vec<ListenerSpec>) -> String {
        let mut state = lock(&self.shared.state);
        let uuid = state.new_uuid();
        let id = state.next_lbaas_id;
        let mut balancer = LoadBalancer {
            id,
            uuid: uuid.clone(),
            name: name.to_string(),
            pending_polls: 0,
            listeners: Vec::new(),
        };
        for spec in listeners {
            let (listener_uuid, pool_uuid) = (state.new_uuid(), state.new_uuid());
            balancer.listeners.push(Listener {
                id: state.next_lbaas_id,
                uuid: listener_uuid,
                pool_uuid,
                spec,
            });
        }
        state.load_balancers.push(balancer);
        uuid
    }

    /// The load balancers with their listeners as they are now.
    pub fn load_balancers(&self) -> Vec<LoadBalancer> {
        lock(&self.shared.state).load_balancers.clone()
    }

    /// One listener as it is now.
    pub fn listener(&self, uuid: &str) -> Option<Listener> {
        let state = lock(&self.shared.state);
        (state.load_balancers.iter())
            .flat_map(|b| b.listeners.iter())
            .find(|l| l.uuid == uuid)
            .cloned()
    }

    /// Fault: after each update, `getLoadBalancer` answers UPDATE_PENDING this many times
    /// before ACTIVE.
    pub fn set_pending_polls_after_update(&self, polls: usize) {
        lock(&self.shared.state).pending_polls_after_update = polls;
    }

    /// Puts a load balancer into UPDATE_PENDING for this many reads, as if a change of
    /// someone else's were applying.
    pub fn set_pending_polls(&self, load_balancer_uuid: &str, polls: usize) {
        let mut state = lock(&self.shared.state);
        if let Some(b) = state
            .load_balancers
            .iter_mut()
            .find(|b| b.uuid == load_balancer_uuid)
        {
            b.pending_polls = polls;
        }
    }

    /// Someone else moves a listener to `certificate_id` (the console, another tool): not
    /// an update of the log.
    pub fn set_listener_certificate(&self, listener_uuid: &str, certificate_id: i64) {
        let mut state = lock(&self.shared.state);
        let listener = (state.load_balancers.iter_mut())
            .flat_map(|b| b.listeners.iter_mut())
            .find(|l| l.uuid == listener_uuid);
        if let Some(listener) = listener {
            listener.spec.tls_certificate_id = Some(certificate_id);
        }
    }

    /// Every performed listener update, in order: what a test counts.
    pub fn listener_updates(&self) -> Vec<ListenerUpdate> {
        lock(&self.shared.state).listener_updates.clone()
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

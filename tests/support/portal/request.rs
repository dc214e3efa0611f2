//! From a parsed HTTP request to an [`Outcome`]: the request is logged, its credentials
//! checked, a queued fault taken, and otherwise the call it names is performed.

use std::sync::MutexGuard;
use std::time::SystemTime;

use base64::Engine;
use serde_json::Value;
use time::OffsetDateTime;

use super::error::ApiError;
use super::faults::Fault;
use super::http::{BadRequest, HttpRequest, HttpResponse, Outcome};
use super::routes::{self, Answer, Call};
use super::store::State;
use super::url::{Route, parse_query, read_query, route};
use super::{Shared, lock};

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
    /// The record of a request before it is routed, authenticated and answered.
    fn new(
        http_method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
        connection: u64,
    ) -> RequestRecord {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        RequestRecord {
            http_method: http_method.to_string(),
            target: target.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            query_pairs: parse_query(query).unwrap_or_default(),
            headers: redact(headers),
            service: None,
            id: None,
            method: None,
            auth: Auth::Missing,
            body: String::from_utf8_lossy(body).into_owned(),
            status: None,
            fault: None,
            connection,
            at: SystemTime::now(),
        }
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
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

/// Handles one request: logs it, checks its credentials, takes a queued fault or performs
/// the call.
pub(crate) fn handle(shared: &Shared, request: &HttpRequest, connection: u64) -> Outcome {
    let mut record = RequestRecord::new(
        &request.method,
        &request.target,
        &request.headers,
        &request.body,
        connection,
    );
    let route = route(&request.method, &record.path);
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
    let fault = state.faults.pop(&route.service, &route.method);
    record.fault = fault.clone();
    if let Some(outcome) = fault.as_ref().and_then(Fault::instead_of_call) {
        return finish(state, record, outcome);
    }

    let result = perform(&mut state, &record, request, route);
    let (response, hook) = match result {
        Ok(answer) => {
            let response = HttpResponse {
                status: 200,
                body: answer.value.to_string().into_bytes(),
                total_items: answer.total_items,
                location: None,
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
    finish(state, record, Fault::after_call(fault.as_ref(), response))
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
        return Err(ApiError::no_service());
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
    routes::dispatch(state, &call, OffsetDateTime::now_utc())
}

/// Logs a request that could not be read in full (it is answered by the HTTP layer).
pub(crate) fn record_bad_request(shared: &Shared, bad: &BadRequest, connection: u64) {
    let mut record = RequestRecord::new(&bad.method, &bad.target, &bad.headers, &[], connection);
    record.status = Some(bad.status);
    let mut state = lock(&shared.state);
    record.auth = check_auth(&state, &bad.headers);
    state.requests.push(record);
}

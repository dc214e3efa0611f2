//! Injected faults: the network, a gateway or an overloaded API, queued per method with
//! [`LocalPortal::inject`](super::LocalPortal::inject). A fault is taken before anything
//! else about the call is looked at, credentials included.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::http::{HttpResponse, Outcome};

/// The generic error body (§3.5): SLDN's "Internal Error"; softlayer-go treats it as an
/// error even with status 200.
pub const INTERNAL_ERROR_BODY: &str =
    r#"{"error":"Internal Error","code":"SoftLayer_Exception_Public"}"#;
/// The answer to bad credentials (§3.5: HTTP 401, "Invalid API token.").
pub const INVALID_TOKEN_BODY: &str =
    r#"{"error":"Invalid API token.","code":"SoftLayer_Exception_Public"}"#;
/// The rate-limit error (§3.6).
pub const RATE_LIMIT_BODY: &str = r#"{"error":"Rate limit of 50 requests for every 1 second(s) exceeded.","code":"SoftLayer_Exception_WebService_RateLimitExceeded"}"#;

/// How a call fails. Queued per method with [`LocalPortal::inject`](super::LocalPortal::inject).
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
    /// A redirect (301, 302, 307, 308...) to `location`, with an empty JSON body; not
    /// performed. The real API never redirects; a proxy or a wrong endpoint might.
    Redirect { status: u16, location: String },
}

impl Fault {
    /// What a fault that stops the call answers; `None` for the faults that let the call be
    /// performed ([`Fault::Delay`], [`Fault::LostResponse`]).
    pub(crate) fn instead_of_call(&self) -> Option<Outcome> {
        let raw = |status, body: &str| Some(Outcome::Respond(HttpResponse::raw(status, body)));
        match self {
            Fault::InternalError => raw(500, INTERNAL_ERROR_BODY),
            Fault::RateLimited => raw(429, RATE_LIMIT_BODY),
            Fault::RateLimitedAs500 => raw(500, RATE_LIMIT_BODY),
            Fault::Unauthorized => raw(401, INVALID_TOKEN_BODY),
            Fault::Empty200 => raw(200, ""),
            Fault::ErrorBody200 => raw(200, INTERNAL_ERROR_BODY),
            Fault::Raw { status, body } => raw(*status, body),
            Fault::Redirect { status, location } => {
                let mut response = HttpResponse::raw(*status, "");
                response.location = Some(location.clone());
                Some(Outcome::Respond(response))
            }
            Fault::Drop => Some(Outcome::Drop),
            Fault::Delay(_) | Fault::LostResponse => None,
        }
    }

    /// How the answer of a performed call goes out under this fault (or none).
    pub(crate) fn after_call(fault: Option<&Fault>, response: HttpResponse) -> Outcome {
        match fault {
            Some(Fault::Delay(delay)) => Outcome::DelayThenRespond(*delay, response),
            Some(Fault::LostResponse) => Outcome::Drop,
            _ => Outcome::Respond(response),
        }
    }
}

/// The queues, keyed by "method" or "Service::method".
#[derive(Default)]
pub(crate) struct FaultQueues(HashMap<String, VecDeque<Fault>>);

impl FaultQueues {
    pub(crate) fn push(&mut self, key: &str, fault: Fault, times: usize) {
        let queue = self.0.entry(key.to_string()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    pub(crate) fn pending(&self, key: &str) -> usize {
        self.0.get(key).map_or(0, VecDeque::len)
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The next fault for a call: "Service::method" first, then "method".
    pub(crate) fn pop(&mut self, service: &str, method: &str) -> Option<Fault> {
        [format!("{service}::{method}"), method.to_string()]
            .iter()
            .find_map(|key| self.0.get_mut(key).and_then(VecDeque::pop_front))
    }
}

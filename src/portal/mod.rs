//! The SoftLayer REST client (docs/softlayer-api.md is the spec; section numbers below refer
//! to it).
//!
//! `Service/{id}/method.json` URLs, GET for calls without parameters and POST with
//! `{"parameters":[...]}` for calls with them (§3.2), HTTP Basic auth with the username and
//! API key (§3.4), errors keeping the API's `code` (§3.5). Read calls are retried with
//! exponential backoff and jitter on transient faults. `resendEmail` is retried only when
//! the fault shows it was not performed ([`PortalError::outcome_unknown`] is false): after
//! a timeout or a dropped connection the CA may already be mailing. `createObject` never
//! is blindly: before another attempt the store is searched for the certificate, so a
//! response lost after a successful create cannot make a duplicate.
//!
//! Requests go to the endpoint and nowhere else: redirects are not followed (a 3xx is an
//! error naming its Location), a loopback endpoint is reached without any proxy from the
//! environment, and TLS is 1.2 or newer.

pub mod lbaas;
pub mod types;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::types::{
    ApiErrorBody, CertificateTemplate, RequestStatus, SSL_ORDER_MASK, STORED_CERTIFICATE_MASK,
    SslOrder, StoredCertificate,
};
use crate::progress;
use crate::secret::Secret;

/// softlayer-python's `API_PUBLIC_ENDPOINT_REST` with the v3.1 path (§3.1).
/// The most pages of a list `fulfill` reads before it gives up (`certificates_named`).
pub const MAX_PAGES: usize = 50;

pub const DEFAULT_ENDPOINT: &str = "https://api.softlayer.com/rest/v3.1/";

/// How to reach the portal. Built by `config`, which resolves where each value comes from.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    pub endpoint: String,
    pub username: String,
    pub api_key: Secret,
    /// Limit on one whole call, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Further attempts after the first, for calls that may be retried.
    pub retries: u32,
    /// Wait before the first retry; doubled each time, with jitter.
    pub retry_wait: Duration,
    /// Extra trusted certificates (`[portal] ca_file`), added to the system store.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(
        "the portal refused the credentials of '{username}' ({code}: {message}); check [portal] username \
         and the API key (the username is literally \"apikey\" with an IBM Cloud API key)"
    )]
    Unauthorized {
        username: String,
        code: String,
        message: String,
    },
    #[error("{call}: {code}: {message} (HTTP {status})")]
    Api {
        call: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{call}: the portal answered HTTP {status} with an empty body")]
    Empty { call: String, status: u16 },
    #[error(
        "{call}: no complete answer within {seconds} s; the portal is slow or unreachable, try again later"
    )]
    Timeout {
        call: String,
        seconds: u64,
        /// False when the connection was never made: nothing reached the portal.
        request_sent: bool,
    },
    #[error("{call}: cannot reach the portal at {endpoint}: {cause}")]
    Connection {
        call: String,
        endpoint: String,
        cause: String,
        /// False when the connection was never made: nothing reached the portal.
        request_sent: bool,
    },
    #[error(
        "{call}: the portal at {endpoint} presented a TLS certificate that was refused ({cause}); \
         nothing was sent. Check the endpoint; if a proxy inspects TLS here, add its CA with [portal] ca_file"
    )]
    Certificate {
        call: String,
        endpoint: String,
        cause: String,
    },
    #[error(
        "{call}: the portal answered HTTP {status} redirecting to {location}; redirects are not \
         followed (nothing was sent there). Check [portal] endpoint"
    )]
    Redirect {
        call: String,
        status: u16,
        location: String,
    },
    #[error("{call}: unexpected answer from the portal: {why}")]
    Unexpected { call: String, why: String },
    #[error("portal endpoint '{endpoint}': {why}")]
    Endpoint { endpoint: String, why: String },
}

impl PortalError {
    /// A fault worth another try: rate limits, gateway errors, the API's generic
    /// "Internal Error", empty answers, timeouts and dropped connections. A specific
    /// `SoftLayer_Exception_*` is the API's answer and is not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            PortalError::Api {
                status,
                code,
                message,
                ..
            } => {
                *status == 429
                    || code == "SoftLayer_Exception_WebService_RateLimitExceeded"
                    // The generic "Internal Error" is a fault even with status 200 (§3.5).
                    || (code == "SoftLayer_Exception_Public" && message == "Internal Error")
                    || (*status >= 500 && code.is_empty())
            }
            PortalError::Empty { .. }
            | PortalError::Timeout { .. }
            | PortalError::Connection { .. } => true,
            _ => false,
        }
    }

    /// Whether the call may have been carried out although no definite answer says so: it
    /// was sent, then the answer timed out, the connection was reset or closed, or what
    /// came back was no answer of the API's (empty, unreadable, a gateway's 5xx page). Only
    /// a definite answer (the API's error body or a 4xx status, a redirect, refused
    /// credentials) or a failure before anything was sent says the call was not performed.
    /// A resend with an unknown outcome keeps its time, so no second mail follows within
    /// the cooldown.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PortalError::Timeout { request_sent, .. }
            | PortalError::Connection { request_sent, .. } => *request_sent,
            PortalError::Empty { .. } | PortalError::Unexpected { .. } => true,
            PortalError::Api { status, code, .. } => code.is_empty() && *status >= 500,
            PortalError::Unauthorized { .. }
            | PortalError::Certificate { .. }
            | PortalError::Redirect { .. }
            | PortalError::Endpoint { .. } => false,
        }
    }

    /// A few words for the status line: "HTTP 503", "timeout", "no connection".
    pub fn brief(&self) -> String {
        match self {
            PortalError::Api { status, .. } if *status == 429 => "HTTP 429 (rate limit)".into(),
            PortalError::Api { status, code, .. } if *status < 300 => code.clone(),
            PortalError::Api { status, .. }
            | PortalError::Empty { status, .. }
            | PortalError::Redirect { status, .. } => format!("HTTP {status}"),
            PortalError::Timeout { .. } => "timeout".into(),
            PortalError::Connection { .. } => "no connection".into(),
            PortalError::Unauthorized { .. } => "refused credentials".into(),
            PortalError::Certificate { .. } => "TLS certificate refused".into(),
            PortalError::Unexpected { .. } => "unexpected answer".into(),
            PortalError::Endpoint { .. } => "bad endpoint".into(),
        }
    }

    /// The API's exception class, when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PortalError::Api { code, .. } | PortalError::Unauthorized { code, .. }
                if !code.is_empty() =>
            {
                Some(code)
            }
            _ => None,
        }
    }
}

/// Whether a call may be sent again after a transient fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: any transient fault.
    Safe,
    /// `resendEmail`: a transient fault that shows the call was not performed (the API's
    /// "Internal Error", a rate limit, no connection). After one whose outcome is unknown
    /// the CA may be mailing already, and the caller keeps the resend time instead.
    UnlessPerformed,
    /// `createObject`: the caller decides, after looking for what may have been created.
    Never,
}

/// One API call.
struct Call<'a> {
    service: &'static str,
    id: Option<i64>,
    method: &'static str,
    parameters: Option<Value>,
    mask: Option<&'a str>,
    filter: Option<Value>,
    /// (offset, limit)
    result_limit: Option<(usize, usize)>,
    retry: Retry,
}

impl<'a> Call<'a> {
    fn new(service: &'static str, method: &'static str) -> Call<'a> {
        Call {
            service,
            id: None,
            method,
            parameters: None,
            mask: None,
            filter: None,
            result_limit: None,
            retry: Retry::Safe,
        }
    }

    fn name(&self) -> String {
        match self.id {
            Some(id) => format!("{}/{id}::{}", self.service, self.method),
            None => format!("{}::{}", self.service, self.method),
        }
    }
}

/// What uploading a certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    Created(i64),
    /// The store already held this certificate (uploaded before, by hand or by a run whose
    /// answer was lost).
    AlreadyInStore(i64),
}

impl Uploaded {
    pub fn id(self) -> i64 {
        match self {
            Uploaded::Created(id) | Uploaded::AlreadyInStore(id) => id,
        }
    }
}

pub struct Portal {
    http: Client,
    base: Url,
    settings: PortalSettings,
}

impl Portal {
    pub fn new(settings: PortalSettings) -> Result<Portal, PortalError> {
        let base = endpoint_url(&settings.endpoint)?;
        let http = crate::http::client(
            &base,
            settings.connect_timeout,
            settings.timeout,
            settings.ca_file.as_deref(),
        )
        .map_err(|why| PortalError::Endpoint {
            endpoint: settings.endpoint.clone(),
            why: format!("[portal] {why}"),
        })?;
        Ok(Portal {
            http,
            base,
            settings,
        })
    }

    pub fn username(&self) -> &str {
        &self.settings.username
    }

    pub fn endpoint(&self) -> &str {
        self.base.as_str()
    }

    /// The account id (`SoftLayer_Account/getObject` with mask `id`, §1.3). Also the
    /// cheapest way to check the credentials.
    pub fn account_id(&self) -> Result<i64, PortalError> {
        let mut call = Call::new("SoftLayer_Account", "getObject");
        call.mask = Some("mask[id]");
        let account: Value = self.call(&call)?;
        account["id"]
            .as_i64()
            .ok_or_else(|| PortalError::Unexpected {
                call: call.name(),
                why: "no account id in the answer".into(),
            })
    }

    /// Every SSL order of the account (§1.3: there is no Account method for them).
    pub fn ssl_orders(&self, account_id: i64) -> Result<Vec<SslOrder>, PortalError> {
        let mut call = Call::new(
            "SoftLayer_Security_Certificate_Request",
            "getSslCertificateRequests",
        );
        call.parameters = Some(json!([account_id]));
        call.mask = Some(SSL_ORDER_MASK);
        let orders: ListOf<SslOrder> = self.call(&call)?;
        Ok(orders.0)
    }

    pub fn ssl_order(&self, order_id: i64) -> Result<SslOrder, PortalError> {
        let mut call = Call::new("SoftLayer_Security_Certificate_Request", "getObject");
        call.id = Some(order_id);
        call.mask = Some(SSL_ORDER_MASK);
        self.call(&call)
    }

    /// The status names, from the API (§1.5: ids and names are not documented).
    pub fn request_statuses(&self) -> Result<Vec<RequestStatus>, PortalError> {
        let call = Call::new(
            "SoftLayer_Security_Certificate_Request_Status",
            "getSslRequestStatuses",
        );
        let statuses: ListOf<RequestStatus> = self.call(&call)?;
        Ok(statuses.0)
    }

    /// Asks the CA to send the fulfillment email again (§1.2: the email type is exactly
    /// `FulfillmentEmail`; the answer is `true`).
    pub fn resend_fulfillment_email(&self, order_id: i64) -> Result<(), PortalError> {
        let mut call = Call::new("SoftLayer_Security_Certificate_Request", "resendEmail");
        call.id = Some(order_id);
        call.parameters = Some(json!(["FulfillmentEmail"]));
        call.retry = Retry::UnlessPerformed;
        match self.call::<Value>(&call)? {
            Value::Bool(true) => Ok(()),
            other => Err(PortalError::Unexpected {
                call: call.name(),
                why: format!("expected true, got {other}"),
            }),
        }
    }

    /// The certificate in the store whose DER has this SHA-256, looked for among those
    /// with its common name (the filter narrows the answer; the fingerprint decides,
    /// §2.4: a filter the API does not know is ignored, not refused).
    pub fn find_certificate(
        &self,
        common_name: &str,
        sha256: &str,
    ) -> Result<Option<StoredCertificate>, PortalError> {
        Ok(self.certificates_named(common_name)?.into_iter().find(|c| {
            c.certificate
                .as_deref()
                .is_some_and(|pem| pem_sha256(pem).as_deref() == Some(sha256))
        }))
    }

    /// The store's certificates whose common name is `common_name`, page by page, at most
    /// [`MAX_PAGES`] pages: an account whose store answers more has something odd about
    /// it, and a run must end.
    pub fn certificates_named(
        &self,
        common_name: &str,
    ) -> Result<Vec<StoredCertificate>, PortalError> {
        const PAGE: usize = 100;
        let mut found = Vec::new();
        for page_number in 0..MAX_PAGES {
            let mut call = Call::new("SoftLayer_Account", "getSecurityCertificates");
            call.mask = Some(STORED_CERTIFICATE_MASK);
            call.filter = Some(json!({
                "securityCertificates": {
                    "commonName": {"operation": common_name},
                    // Stable pages need an order (SLDN using-result-limits-softlayer-api.md).
                    "id": {"operation": "orderBy", "options": [{"name": "sort", "value": ["ASC"]}]}
                }
            }));
            call.result_limit = Some((page_number * PAGE, PAGE));
            let page: ListOf<StoredCertificate> = self.call(&call)?;
            let full = page.0.len() == PAGE;
            found.extend(page.0);
            if !full {
                return Ok(found);
            }
        }
        Err(PortalError::Unexpected {
            call: "SoftLayer_Account::getSecurityCertificates".into(),
            why: format!(
                "more than {} certificates named {common_name}; stopped after {MAX_PAGES} pages",
                MAX_PAGES * PAGE
            ),
        })
    }

    /// Uploads a certificate unless the store already has it. After a fault that may have
    /// hidden a successful create (timeout, dropped connection, 5xx, empty answer), the
    /// store is searched before any new attempt.
    pub fn upload_certificate(
        &self,
        template: &CertificateTemplate,
        common_name: &str,
        sha256: &str,
    ) -> Result<Uploaded, PortalError> {
        if let Some(existing) = self.find_certificate(common_name, sha256)? {
            return Ok(Uploaded::AlreadyInStore(existing.id));
        }
        let mut call = Call::new("SoftLayer_Security_Certificate", "createObject");
        call.parameters = Some(json!([template]));
        call.retry = Retry::Never;
        let mut attempt = 0;
        loop {
            let error = match self.call::<StoredCertificate>(&call) {
                Ok(created) => return Ok(Uploaded::Created(created.id)),
                Err(e) if !e.is_transient() || attempt >= self.settings.retries => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            log::warn!("{error}; looking for the certificate in the store before trying again");
            self.pause(attempt, &error);
            if let Some(existing) = self.find_certificate(common_name, sha256)? {
                // The earlier attempt went through; only its answer was lost.
                return Ok(Uploaded::Created(existing.id));
            }
        }
    }

    /// Sends a call, retrying transient faults when the call allows it.
    fn call<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, PortalError> {
        let mut attempt = 0;
        loop {
            match self.attempt(call) {
                Ok(value) => return Ok(value),
                Err(e)
                    if e.is_transient()
                        && attempt < self.settings.retries
                        && match call.retry {
                            Retry::Safe => true,
                            Retry::UnlessPerformed => !e.outcome_unknown(),
                            Retry::Never => false,
                        } =>
                {
                    attempt += 1;
                    log::info!("{e}; retrying ({attempt} of {})", self.settings.retries);
                    self.pause(attempt, &e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Exponential backoff with jitter: retry_wait × 2^(attempt-1), ±25 %, with a status
    /// line at a terminal.
    fn pause(&self, attempt: u32, error: &PortalError) {
        let base = self
            .settings
            .retry_wait
            .saturating_mul(1 << (attempt - 1).min(10));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.75 + f64::from(nanos % 1000) / 2000.0;
        let pause = base.mul_f64(jitter);
        let _status = progress::retrying(&error.brief(), attempt, self.settings.retries, pause);
        thread::sleep(pause);
    }

    fn url(&self, call: &Call<'_>) -> Result<Url, PortalError> {
        let path = match call.id {
            Some(id) => format!("{}/{id}/{}.json", call.service, call.method),
            None => format!("{}/{}.json", call.service, call.method),
        };
        let mut url = self.base.join(&path).map_err(|e| PortalError::Endpoint {
            endpoint: self.base.to_string(),
            why: e.to_string(),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(mask) = call.mask {
                query.append_pair("objectMask", mask);
            }
            if let Some(filter) = &call.filter {
                query.append_pair("objectFilter", &filter.to_string());
            }
            if let Some((offset, limit)) = call.result_limit {
                query.append_pair("resultLimit", &format!("{offset},{limit}"));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// One HTTP exchange.
    fn attempt<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, PortalError> {
        let url = self.url(call)?;
        // §3.2: the API ignores a body sent with GET, so calls with parameters are POSTs.
        let method = if call.parameters.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        log::debug!("portal: {method} {url}");
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(
                &self.settings.username,
                Some(self.settings.api_key.expose()),
            )
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(parameters) = &call.parameters {
            request = request.json(&json!({ "parameters": parameters }));
        }
        let response = request.send().map_err(|e| self.transport_error(call, e))?;
        self.read_response(call, response)
    }

    fn transport_error(&self, call: &Call<'_>, error: reqwest::Error) -> PortalError {
        // A refused server certificate is its own error: not a fault to retry.
        match crate::http::Failure::of(error) {
            crate::http::Failure::Timeout { request_sent } => PortalError::Timeout {
                call: call.name(),
                seconds: self.settings.timeout.as_secs().max(1),
                request_sent,
            },
            crate::http::Failure::Certificate { reason } => PortalError::Certificate {
                call: call.name(),
                endpoint: self.base.to_string(),
                cause: reason,
            },
            crate::http::Failure::Connection {
                cause,
                request_sent,
            } => PortalError::Connection {
                call: call.name(),
                endpoint: self.base.to_string(),
                cause,
                request_sent,
            },
        }
    }

    fn read_response<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        response: Response,
    ) -> Result<T, PortalError> {
        let status = response.status();
        if status.is_redirection() {
            return Err(PortalError::Redirect {
                call: call.name(),
                status: status.as_u16(),
                location: crate::http::location(&response),
            });
        }
        let body = response.text().map_err(|e| self.transport_error(call, e))?;
        log::trace!("portal: HTTP {status}, {} bytes", body.len());
        // softlayer-go `findResponseError`: an empty body is an error even with 2xx.
        if body.trim().is_empty() {
            return Err(PortalError::Empty {
                call: call.name(),
                status: status.as_u16(),
            });
        }
        let error_body = serde_json::from_str::<ApiErrorBody>(&body).ok();
        if status == StatusCode::UNAUTHORIZED {
            let (code, message) = error_body
                .map(|e| (e.code.unwrap_or_default(), e.error))
                .unwrap_or_else(|| (String::new(), "HTTP 401".into()));
            return Err(PortalError::Unauthorized {
                username: self.settings.username.clone(),
                code,
                message,
            });
        }
        // An error body is an error whatever the status: softlayer-go treats a 200 carrying
        // {"error":"Internal Error","code":"SoftLayer_Exception_Public"} as one (§3.5).
        if let Some(error) = error_body.filter(|e| !status.is_success() || e.code.is_some()) {
            return Err(PortalError::Api {
                call: call.name(),
                status: status.as_u16(),
                code: error.code.unwrap_or_default(),
                message: error.error,
            });
        }
        if !status.is_success() {
            return Err(PortalError::Api {
                call: call.name(),
                status: status.as_u16(),
                code: String::new(),
                message: body.chars().take(200).collect(),
            });
        }
        serde_json::from_str(&body).map_err(|e| PortalError::Unexpected {
            call: call.name(),
            why: e.to_string(),
        })
    }
}

/// A list in the API's answer. softlayer-go wraps a lone object in a list, since "some APIs
/// that normally return a collection omit the []'s" (§3.5).
struct ListOf<T>(Vec<T>);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for ListOf<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
                .collect::<Result<_, _>>()
                .map(ListOf),
            object @ Value::Object(_) => serde_json::from_value(object)
                .map(|item| ListOf(vec![item]))
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a list, got {other}"
            ))),
        }
    }
}

/// The SHA-256 of the first certificate in a PEM text as the portal returns it (its
/// fixtures show spaces before line breaks; the tolerant scanner reads it).
pub fn pem_sha256(pem: &str) -> Option<String> {
    pem_der(pem).map(|der| crate::extract::sha256_hex(&der))
}

/// The DER of the first certificate in a PEM text as the portal returns it.
pub fn pem_der(pem: &str) -> Option<Vec<u8>> {
    crate::extract::scan_pem(pem, usize::MAX)
        .blocks
        .into_iter()
        .find_map(|block| block.der.ok())
}

/// Parses and checks the endpoint (`crate::http::endpoint_url`).
fn endpoint_url(endpoint: &str) -> Result<Url, PortalError> {
    crate::http::endpoint_url(endpoint, "[portal] username and api_key_cmd").map_err(|why| {
        PortalError::Endpoint {
            endpoint: endpoint.to_string(),
            why,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_definite_answer_says_a_call_was_not_performed() {
        let api = |status, code: &str| PortalError::Api {
            call: "x".into(),
            status,
            code: code.into(),
            message: "m".into(),
        };
        let timeout = |request_sent| PortalError::Timeout {
            call: "x".into(),
            seconds: 1,
            request_sent,
        };
        let connection = |request_sent| PortalError::Connection {
            call: "x".into(),
            endpoint: "e".into(),
            cause: "connection closed before message completed".into(),
            request_sent,
        };
        // Sent, then no definite answer: the portal may have acted.
        assert!(timeout(true).outcome_unknown());
        assert!(connection(true).outcome_unknown());
        assert!(
            PortalError::Empty {
                call: "x".into(),
                status: 200
            }
            .outcome_unknown()
        );
        assert!(api(504, "").outcome_unknown(), "a gateway's page");
        // Never sent, or the API's own answer.
        assert!(!timeout(false).outcome_unknown());
        assert!(!connection(false).outcome_unknown());
        assert!(!api(500, "SoftLayer_Exception_Public").outcome_unknown());
        assert!(!api(429, "").outcome_unknown());
        assert!(!api(404, "SoftLayer_Exception_ObjectNotFound").outcome_unknown());
        assert!(
            !PortalError::Redirect {
                call: "x".into(),
                status: 307,
                location: "l".into()
            }
            .outcome_unknown()
        );
    }

    #[test]
    fn transient_faults_are_told_from_answers() {
        let api = |status, code: &str, message: &str| PortalError::Api {
            call: "x".into(),
            status,
            code: code.into(),
            message: message.into(),
        };
        assert!(api(500, "SoftLayer_Exception_Public", "Internal Error").is_transient());
        assert!(api(429, "", "").is_transient());
        assert!(
            api(
                500,
                "SoftLayer_Exception_WebService_RateLimitExceeded",
                "Rate limit"
            )
            .is_transient()
        );
        assert!(api(502, "", "Bad Gateway").is_transient());
        assert!(!api(500, "SoftLayer_Exception_Public", "SSL orders are retired").is_transient());
        assert!(
            !api(
                404,
                "SoftLayer_Exception_ObjectNotFound",
                "Unable to find object"
            )
            .is_transient()
        );
    }
}

//! The IBM Cloud Secrets Manager v2 client (docs/secrets-manager.md is the spec; section
//! numbers below refer to it): an IAM token from the API key (§2), kept in memory and
//! asked for again at 80 % of its life or once after a 401; the secret list by name
//! (§5), a secret's current certificate (§6), a new imported certificate (§3) and a new
//! version of one (§4). Reads are retried on transient faults; creates never are here:
//! the pipeline searches by name before every create (a lost answer must never make a
//! second secret or version).
//!
//! Requests go to the instance URL and the IAM endpoint and nowhere else, as the portal
//! client's do (`crate::http`): no redirects, TLS 1.2 or newer, https except on loopback.

pub mod iam;
pub mod types;

use std::cell::RefCell;
use std::io::Read;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use self::iam::{GRANT_TYPE_API_KEY, Token, TokenAnswer};
use self::types::{
    ApiErrorBody, CertificateData, IMPORTED_CERT, IamErrorBody, ImportedCertificate, NewSecret,
    SecretMetadata, SecretsPage, VersionMetadata,
};
use crate::http::Failure;
use crate::secret::Secret;

/// The most of one answer that is read: a page of 200 secrets' metadata is far less.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;
/// Secrets per list page, and the most pages read for one name.
const PAGE: usize = 200;
const MAX_PAGES: usize = 50;

/// How to reach Secrets Manager. Built by `config`.
#[derive(Debug, Clone)]
pub struct SecretsManagerSettings {
    /// The instance's URL, `https://{instance}.{region}.secrets-manager.appdomain.cloud`.
    pub url: String,
    pub iam_endpoint: String,
    pub api_key: Secret,
    pub secret_group_id: String,
    /// `[secrets_manager] name`: the secret's name, `{common_name}` replaced.
    pub name: Option<String>,
    pub timeout: Duration,
    /// Extra trusted certificates (`[secrets_manager] ca_file`), added to the system store.
    pub ca_file: Option<PathBuf>,
    /// Further attempts after a transient fault.
    pub retries: u32,
    pub retry_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsManagerError {
    #[error(
        "IAM at {endpoint} refused the API key ({code}: {message}); check [secrets_manager] \
         api_key_cmd or IBMCLOUD_API_KEY"
    )]
    ApiKeyRefused {
        endpoint: String,
        code: String,
        message: String,
    },
    #[error("{call}: HTTP {status} {code}: {message}{}", what_to_do(*.status))]
    Api {
        call: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "{call}: no complete answer within {seconds} s; Secrets Manager is slow or unreachable"
    )]
    Timeout {
        call: String,
        seconds: u64,
        request_sent: bool,
    },
    #[error(
        "{call}: cannot reach {endpoint}: {cause}; check [secrets_manager] {setting} and the network"
    )]
    Connection {
        call: String,
        endpoint: String,
        /// The setting that names the endpoint: `url` or `iam_endpoint`.
        setting: &'static str,
        cause: String,
        request_sent: bool,
    },
    #[error(
        "{call}: {endpoint} presented a TLS certificate that was refused ({cause}); nothing was \
         sent. Check [secrets_manager] {setting}; if a proxy inspects TLS here, add its CA with \
         [secrets_manager] ca_file"
    )]
    Certificate {
        call: String,
        endpoint: String,
        setting: &'static str,
        cause: String,
    },
    #[error(
        "{call}: HTTP {status} redirecting to {location}; redirects are not followed (nothing \
         was sent there). Check [secrets_manager] url and iam_endpoint"
    )]
    Redirect {
        call: String,
        status: u16,
        location: String,
    },
    #[error("{call}: unexpected answer: {why}")]
    Unexpected { call: String, why: String },
    #[error("[secrets_manager] {setting} '{endpoint}': {why}")]
    Endpoint {
        setting: &'static str,
        endpoint: String,
        why: String,
    },
}

/// What a person can do about an answer of the instance, by its status.
fn what_to_do(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            "; check that the API key may read and write secrets in [secrets_manager] \
             secret_group_id of this instance (its IAM access policy)"
        }
        404 => "; check [secrets_manager] url and secret_group_id",
        // A conflict is looked at again, and a transient fault retried: the report says so.
        _ => "",
    }
}

impl SecretsManagerError {
    /// A fault worth another try: rate limits, server errors, timeouts, lost connections.
    pub fn is_transient(&self) -> bool {
        match self {
            SecretsManagerError::Api { status, .. } => *status == 429 || *status >= 500,
            SecretsManagerError::Timeout { .. } | SecretsManagerError::Connection { .. } => true,
            _ => false,
        }
    }

    /// 409: a secret of that name exists already in the group (§3).
    pub fn is_conflict(&self) -> bool {
        matches!(self, SecretsManagerError::Api { status: 409, .. })
    }
}

/// The client. Its token lives in a `RefCell`: one run uses it from one thread.
pub struct SecretsManager {
    http: Client,
    base: Url,
    iam: Url,
    settings: SecretsManagerSettings,
    token: RefCell<Option<Token>>,
}

impl SecretsManager {
    pub fn new(settings: SecretsManagerSettings) -> Result<SecretsManager, SecretsManagerError> {
        let check = |setting, endpoint: &str| {
            crate::http::endpoint_url(endpoint, "api_key_cmd or IBMCLOUD_API_KEY").map_err(|why| {
                SecretsManagerError::Endpoint {
                    setting,
                    endpoint: endpoint.to_string(),
                    why,
                }
            })
        };
        let base = check("url", &settings.url)?;
        // The token endpoint is a path of its own: no slash is added to it.
        let iam = check("iam_endpoint", &settings.iam_endpoint)?;
        let iam = Url::parse(&settings.iam_endpoint).unwrap_or(iam);
        let connect_timeout = settings.timeout.min(Duration::from_secs(10));
        let ca_file = settings.ca_file.as_deref();
        let http = crate::http::client(&base, connect_timeout, settings.timeout, ca_file).map_err(
            |why| SecretsManagerError::Endpoint {
                setting: if ca_file.is_some() { "ca_file" } else { "url" },
                endpoint: (ca_file.map(|p| p.display().to_string()))
                    .unwrap_or_else(|| settings.url.clone()),
                why,
            },
        )?;
        Ok(SecretsManager {
            http,
            base,
            iam,
            settings,
            token: RefCell::new(None),
        })
    }

    pub fn settings(&self) -> &SecretsManagerSettings {
        &self.settings
    }

    /// The imported certificate named `name` in the configured group, if there is one
    /// (§5: `search` narrows the list, the exact name and type decide).
    pub fn find_secret(&self, name: &str) -> Result<Option<SecretMetadata>, SecretsManagerError> {
        for page in 0..MAX_PAGES {
            let offset = page * PAGE;
            let call = format!("list secrets named {name}");
            let mut url = self.path("api/v2/secrets", &call)?;
            url.query_pairs_mut()
                .append_pair("search", name)
                .append_pair("groups", &self.settings.secret_group_id)
                .append_pair("secret_types", IMPORTED_CERT)
                .append_pair("limit", &PAGE.to_string())
                .append_pair("offset", &offset.to_string());
            let answer: SecretsPage = self.read(&call, url)?;
            let count = answer.secrets.len();
            if let Some(found) = answer.secrets.into_iter().find(|s| {
                s.name == name
                    && s.secret_type.as_deref().is_none_or(|t| t == IMPORTED_CERT)
                    && (s.secret_group_id.as_deref())
                        .is_none_or(|g| g == self.settings.secret_group_id)
            }) {
                return Ok(Some(found));
            }
            let total = answer.total_count.unwrap_or(offset + count);
            if count == 0 || offset + count >= total {
                return Ok(None);
            }
        }
        Err(SecretsManagerError::Unexpected {
            call: format!("list secrets named {name}"),
            why: format!(
                "more than {} secrets match; give the secret a more specific [secrets_manager] name",
                MAX_PAGES * PAGE
            ),
        })
    }

    /// `fulfill check`: an IAM token for the API key (§2), then one page of one secret's
    /// metadata from the list in the group (§5): reads only, no secret's data. Returns
    /// how many imported certificates the group holds.
    pub fn probe(&self) -> Result<usize, SecretsManagerError> {
        self.token()?;
        let call = "list the imported certificates in the group";
        let mut url = self.path("api/v2/secrets", call)?;
        url.query_pairs_mut()
            .append_pair("groups", &self.settings.secret_group_id)
            .append_pair("secret_types", IMPORTED_CERT)
            .append_pair("limit", "1");
        let page: SecretsPage = self.read(call, url)?;
        Ok(page.total_count.unwrap_or(page.secrets.len()))
    }

    /// A secret with its current version's certificate (§6).
    pub fn imported_certificate(
        &self,
        id: &str,
    ) -> Result<ImportedCertificate, SecretsManagerError> {
        let call = format!("get secret {id}");
        let url = self.path(&format!("api/v2/secrets/{}", segment(id)), &call)?;
        self.read(&call, url)
    }

    /// The metadata of the secret's current version, by the `current` alias (§4a): its
    /// id. Metadata only, so no private key travels.
    pub fn current_version(&self, id: &str) -> Result<VersionMetadata, SecretsManagerError> {
        let call = format!("get the current version of secret {id}");
        let path = format!("api/v2/secrets/{}/versions/current/metadata", segment(id));
        let url = self.path(&path, &call)?;
        self.read(&call, url)
    }

    /// Creates the secret (§3). Not retried: the caller searches by name first.
    pub fn create_secret(
        &self,
        secret: &NewSecret<'_>,
    ) -> Result<SecretMetadata, SecretsManagerError> {
        let call = format!("create secret {}", secret.name);
        let url = self.path("api/v2/secrets", &call)?;
        self.send(
            &call,
            Method::POST,
            url,
            Some(
                &serde_json::to_value(secret).map_err(|e| SecretsManagerError::Unexpected {
                    call: call.clone(),
                    why: e.to_string(),
                })?,
            ),
        )
    }

    /// Adds a version to secret `id` (§4). Not retried: the caller looks first.
    pub fn create_version(
        &self,
        id: &str,
        data: &CertificateData,
    ) -> Result<VersionMetadata, SecretsManagerError> {
        let call = format!("add a version to secret {id}");
        let url = self.path(&format!("api/v2/secrets/{}/versions", segment(id)), &call)?;
        let body = serde_json::to_value(data).map_err(|e| SecretsManagerError::Unexpected {
            call: call.clone(),
            why: e.to_string(),
        })?;
        self.send(&call, Method::POST, url, Some(&body))
    }

    fn path(&self, path: &str, call: &str) -> Result<Url, SecretsManagerError> {
        self.base
            .join(path)
            .map_err(|e| SecretsManagerError::Unexpected {
                call: call.to_string(),
                why: e.to_string(),
            })
    }

    /// A GET, retried on transient faults with a doubling wait.
    fn read<T: DeserializeOwned>(&self, call: &str, url: Url) -> Result<T, SecretsManagerError> {
        let mut attempt = 0;
        loop {
            match self.send(call, Method::GET, url.clone(), None) {
                Err(e) if e.is_transient() && attempt < self.settings.retries => {
                    attempt += 1;
                    log::info!(
                        "secrets manager: {e}; retrying ({attempt} of {})",
                        self.settings.retries
                    );
                    thread::sleep(
                        self.settings
                            .retry_wait
                            .saturating_mul(1 << (attempt - 1).min(10)),
                    );
                }
                other => return other,
            }
        }
    }

    /// One call with the current token; after a 401, once more with a new one.
    fn send<T: DeserializeOwned>(
        &self,
        call: &str,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T, SecretsManagerError> {
        let request = |token: &Secret| {
            let mut request = (self.http.request(method.clone(), url.clone()))
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            request
        };
        log::debug!("secrets manager: {method} {url}");
        let response = self.exchange(call, Endpoint::Instance, request(&self.token()?))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return self.answer(call, response);
        }
        // §2: a token may be revoked or expire early; a new one is asked for, once.
        log::info!("secrets manager: {call}: HTTP 401; asking IAM for a new token");
        self.token.replace(None);
        let response = self.exchange(call, Endpoint::Instance, request(&self.token()?))?;
        self.answer(call, response)
    }

    fn exchange(
        &self,
        call: &str,
        which: Endpoint,
        request: RequestBuilder,
    ) -> Result<Response, SecretsManagerError> {
        let response = request
            .send()
            .map_err(|e| self.transport_error(call, which, e))?;
        if response.status().is_redirection() {
            return Err(SecretsManagerError::Redirect {
                call: call.to_string(),
                status: response.status().as_u16(),
                location: crate::http::location(&response),
            });
        }
        Ok(response)
    }

    /// The token to send: the one held while it is fresh, else a new one from IAM.
    fn token(&self) -> Result<Secret, SecretsManagerError> {
        if let Some(token) = self
            .token
            .borrow()
            .as_ref()
            .filter(|t| t.fresh(Instant::now()))
        {
            return Ok(token.access.clone());
        }
        let call = "IAM token";
        let form = [
            ("grant_type", GRANT_TYPE_API_KEY),
            ("apikey", self.settings.api_key.expose()),
        ];
        let request = (self.http.post(self.iam.clone()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let response = self.exchange(call, Endpoint::Iam, request)?;
        let status = response.status();
        let text = self.body(call, Endpoint::Iam, response)?;
        if !status.is_success() {
            let error = serde_json::from_str::<IamErrorBody>(&text).ok();
            let code = (error.as_ref().and_then(|e| e.error_code.clone())).unwrap_or_default();
            let message =
                (error.and_then(|e| e.error_message)).unwrap_or_else(|| format!("HTTP {status}"));
            return Err(match status.as_u16() {
                400 | 401 | 403 => SecretsManagerError::ApiKeyRefused {
                    endpoint: self.iam.to_string(),
                    code,
                    message,
                },
                status => SecretsManagerError::Api {
                    call: call.into(),
                    status,
                    code,
                    message,
                },
            });
        }
        let answer: TokenAnswer =
            serde_json::from_str(&text).map_err(|e| SecretsManagerError::Unexpected {
                call: call.into(),
                why: format!("not a token answer: {}", e.classify_text()),
            })?;
        let token = Token::new(answer, Instant::now());
        let access = token.access.clone();
        self.token.replace(Some(token));
        Ok(access)
    }

    /// The answer's JSON, or the API's error (§7).
    fn answer<T: DeserializeOwned>(
        &self,
        call: &str,
        response: Response,
    ) -> Result<T, SecretsManagerError> {
        let status = response.status();
        let text = self.body(call, Endpoint::Instance, response)?;
        if !status.is_success() {
            let error = serde_json::from_str::<ApiErrorBody>(&text).ok();
            let first = error.as_ref().and_then(|e| e.errors.first());
            let code = first.and_then(|e| e.code.clone()).unwrap_or_default();
            let mut message = (first.and_then(|e| e.message.clone()))
                .unwrap_or_else(|| text.chars().take(200).collect());
            if let Some(trace) = error.and_then(|e| e.trace) {
                message.push_str(&format!(" (trace {trace})"));
            }
            return Err(SecretsManagerError::Api {
                call: call.into(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| SecretsManagerError::Unexpected {
            call: call.into(),
            why: e.classify_text(),
        })
    }
}

/// A path segment from an id: ids are UUIDs, anything else is escaped.
fn segment(id: &str) -> String {
    url_escape(id)
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Serde's error without the text it read: an answer may hold a token or a key.
trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

/// Which endpoint a call goes to: its errors name it and the setting it comes from.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Instance,
    Iam,
}

impl SecretsManager {
    fn endpoint(&self, which: Endpoint) -> (&Url, &'static str) {
        match which {
            Endpoint::Instance => (&self.base, "url"),
            Endpoint::Iam => (&self.iam, "iam_endpoint"),
        }
    }

    /// The body, at most [`MAX_ANSWER_BYTES`].
    fn body(
        &self,
        call: &str,
        which: Endpoint,
        response: Response,
    ) -> Result<String, SecretsManagerError> {
        let mut bytes = Vec::new();
        let read = response.take(MAX_ANSWER_BYTES + 1).read_to_end(&mut bytes);
        if let Err(e) = read {
            let (url, setting) = self.endpoint(which);
            return Err(SecretsManagerError::Connection {
                call: call.into(),
                endpoint: url.to_string(),
                setting,
                cause: if e.kind() == std::io::ErrorKind::TimedOut {
                    format!("timed out after {:?}", self.settings.timeout)
                } else {
                    e.to_string()
                },
                request_sent: true,
            });
        }
        if bytes.len() as u64 > MAX_ANSWER_BYTES {
            return Err(SecretsManagerError::Unexpected {
                call: call.into(),
                why: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        String::from_utf8(bytes).map_err(|_| SecretsManagerError::Unexpected {
            call: call.into(),
            why: "the answer is not UTF-8".into(),
        })
    }

    /// A request without an answer; a refused certificate is its own error, not retried.
    fn transport_error(
        &self,
        call: &str,
        which: Endpoint,
        error: reqwest::Error,
    ) -> SecretsManagerError {
        let (url, setting) = self.endpoint(which);
        match Failure::of(error) {
            Failure::Timeout { request_sent } => SecretsManagerError::Timeout {
                call: call.into(),
                seconds: self.settings.timeout.as_secs().max(1),
                request_sent,
            },
            Failure::Certificate { reason } => SecretsManagerError::Certificate {
                call: call.into(),
                endpoint: url.to_string(),
                setting,
                cause: reason,
            },
            Failure::Connection {
                cause,
                request_sent,
            } => SecretsManagerError::Connection {
                call: call.into(),
                endpoint: url.to_string(),
                setting,
                cause,
                request_sent,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(segment("0b5571f7-21e6-42b7"), "0b5571f7-21e6-42b7");
        assert_eq!(segment("a/../b"), "a%2F..%2Fb");
    }

    #[test]
    fn transient_faults_and_conflicts() {
        let api = |status| SecretsManagerError::Api {
            call: "x".into(),
            status,
            code: String::new(),
            message: String::new(),
        };
        assert!(api(500).is_transient());
        assert!(api(429).is_transient());
        assert!(!api(400).is_transient());
        assert!(api(409).is_conflict());
        assert!(!api(409).is_transient());
    }

    #[test]
    fn an_answer_of_the_instance_says_what_to_do() {
        let api = |status| SecretsManagerError::Api {
            call: "create secret www.example.com".into(),
            status,
            code: "forbidden".into(),
            message: "Forbidden".into(),
        };
        let refused = api(403).to_string();
        assert!(
            refused.starts_with("create secret www.example.com: HTTP 403 forbidden: Forbidden; ")
        );
        assert!(refused.contains("secret_group_id"), "{refused}");
        assert!(
            api(404)
                .to_string()
                .ends_with("check [secrets_manager] url and secret_group_id")
        );
        assert!(api(503).to_string().ends_with("Forbidden"));
        assert!(api(409).to_string().ends_with("Forbidden"));
    }
}

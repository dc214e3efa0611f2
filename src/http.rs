//! What the two HTTPS clients (`portal`, `secrets_manager`) share: the endpoint check
//! (https, or plain http only to this machine), the client builder (no redirects, TLS 1.2
//! or newer, no proxy for loopback, extra anchors from a `ca_file`), what a failed request
//! came to (a refused server certificate told apart), and reading a redirect's `Location`
//! for an error. Each client maps the `String` reasons here into
//! its own error type.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use reqwest::blocking::{Client, ClientBuilder, Response};

/// Parses and checks an endpoint: https, or http only to this machine (tests, tunnels),
/// since credentials travel in every request. `credentials_hint` names, in the refusal
/// of a URL with credentials in it, the settings where they belong instead.
pub fn endpoint_url(endpoint: &str, credentials_hint: &str) -> Result<Url, String> {
    let with_slash = if endpoint.ends_with('/') {
        endpoint.to_string()
    } else {
        format!("{endpoint}/")
    };
    let url = Url::parse(&with_slash).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "credentials do not belong in the URL; use {credentials_hint}"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("plain http would send the credentials in clear; use https".into()),
        _ => Err("only https endpoints are supported".into()),
    }
}

/// Whether the URL names this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // host_str gives an IPv6 address in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The blocking client both APIs are called with. Certificate and host name verification
/// stay reqwest's defaults (on); there is deliberately no setting that turns them off, a
/// `ca_file` only adds anchors. Redirects are never followed: reqwest's default policy
/// would send the request again, body (a private key) and all, to wherever a `Location`
/// points, plain http included. A loopback endpoint is reached without any proxy from the
/// environment, which would otherwise see its plain-http requests, credentials included.
pub fn client(
    base: &Url,
    connect_timeout: Duration,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<Client, String> {
    let mut builder: ClientBuilder = Client::builder()
        .user_agent(concat!("fulfill/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .min_tls_version(reqwest::tls::Version::TLS_1_2);
    if is_loopback(base) {
        builder = builder.no_proxy();
    }
    if let Some(path) = ca_file {
        for certificate in read_ca_file(path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// The certificates of a `ca_file`; an unreadable or empty file is an error, not a silent
/// fall-back to the system store alone.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let refuse = |why: String| format!("ca_file {}: {why}", path.display());
    let pem = std::fs::read(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| refuse(format!("not a PEM certificate bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(refuse("it holds no PEM certificate".into()));
    }
    Ok(certificates)
}

/// What a request that got no answer came to. Each client turns it into its own error.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// No complete answer in time.
    Timeout { request_sent: bool },
    /// The server's TLS certificate was refused, with OpenSSL's reason ("certificate has
    /// expired"...). Nothing was sent, and another try would meet the same certificate.
    Certificate { reason: String },
    /// Anything else: refused, reset, unreachable, a broken answer.
    Connection { cause: String, request_sent: bool },
}

impl Failure {
    /// Classifies reqwest's error. Its message names the whole URL, query and all; the
    /// callers say the endpoint themselves, so the URL goes.
    pub fn of(error: reqwest::Error) -> Failure {
        // A connect error (refused, unreachable, connect timeout) means nothing was sent.
        let request_sent = !error.is_connect();
        if error.is_timeout() {
            return Failure::Timeout { request_sent };
        }
        let error = error.without_url();
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        Failure::from_cause(cause, request_sent)
    }

    /// OpenSSL (native-tls) says "...certificate verify failed:...:(certificate has
    /// expired)": the part in brackets is what a person needs.
    fn from_cause(cause: String, request_sent: bool) -> Failure {
        let Some((_, after)) = cause.split_once("certificate verify failed") else {
            return Failure::Connection {
                cause,
                request_sent,
            };
        };
        let reason = after
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(reason, _)| reason)
            .unwrap_or("no reason given");
        Failure::Certificate {
            reason: format!("certificate verify failed: {reason}"),
        }
    }
}

/// A redirect's `Location` as it can be shown: printable characters only, at most 300.
pub fn location(response: &Response) -> String {
    match response.headers().get(reqwest::header::LOCATION) {
        None => "no Location".into(),
        Some(value) => String::from_utf8_lossy(value.as_bytes())
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_told_apart_with_its_reason() {
        let cause = "error sending request: client error (Connect): error:0A000086:SSL \
                     routines:tls_post_process_server_certificate:certificate verify failed:\
                     ../ssl/statem/statem_clnt.c:2102: (certificate has expired)";
        assert_eq!(
            Failure::from_cause(cause.into(), false),
            Failure::Certificate {
                reason: "certificate verify failed: certificate has expired".into()
            }
        );
        assert!(matches!(
            Failure::from_cause("connection refused".into(), false),
            Failure::Connection { .. }
        ));
    }

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        let check = |e: &str| endpoint_url(e, "the config");
        assert!(check("https://api.softlayer.com/rest/v3.1").is_ok());
        assert!(check("http://127.0.0.1:8080/rest/v3.1/").is_ok());
        assert!(check("http://127.0.0.2:8080/rest/v3.1/").is_ok());
        assert!(check("http://[::1]:8080/rest/v3.1/").is_ok());
        assert!(check("http://LOCALHOST:8080/rest/v3.1/").is_ok());
        assert!(check("http://127.0.0.1.example.com/rest/v3.1/").is_err());
        assert!(check("http://10.0.0.1/rest/v3.1/").is_err());
        assert!(
            check("http://api.softlayer.com/rest/v3.1/")
                .unwrap_err()
                .contains("in clear")
        );
        assert!(check("https://user:key@api.softlayer.com/rest/v3.1/").is_err());
        assert!(check("ftp://x/").is_err());
        assert_eq!(
            check("https://api.softlayer.com/rest/v3.1").unwrap().path(),
            "/rest/v3.1/"
        );
    }
}

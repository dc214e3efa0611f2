//! Self-test of the local SoftLayer portal (tests/support/portal/): raw HTTP/1.1 written
//! by hand over std TcpStream, so the server is checked on the wire and not through the
//! client it is meant to test. A few tests at the end use reqwest (the client fulfill
//! uses) to check keep-alive reuse, timeouts and dropped connections as that stack sees
//! them.

#[path = "support/portal/mod.rs"]
mod portal;
// The portal's TLS mode takes its server certificates from here.
#[allow(dead_code)]
#[path = "support/dovecot.rs"]
mod dovecot;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use portal::{Account, Auth, Fault, ListenerSpec, LocalPortal, NewCertificate, OrderSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// A tiny raw HTTP client
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an API error: status, code and message.
    fn assert_error(&self, status: u16, code: &str, message: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, body["code"].as_str(), body["error"].as_str()),
            (status, Some(code), Some(message)),
            "full body: {body}"
        );
    }

    /// Asserts an API error by status, code and a part of the message.
    fn assert_error_containing(&self, status: u16, code: &str, part: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(body["code"].as_str(), Some(code), "body: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    fn open(portal: &LocalPortal) -> Conn {
        let stream = TcpStream::connect(portal.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            buffer: Vec::new(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next response, or `None` if the server closed the connection first.
    fn read_response(&mut self) -> Option<Response> {
        loop {
            if !self.buffer.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(head) =
                    parsed.parse(&self.buffer).expect("valid response")
                {
                    let status = parsed.code.unwrap();
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
                    self.buffer.drain(..head);
                    if status == 100 {
                        continue;
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
                        .map(|(_, v)| v.parse().unwrap())
                        .expect("Content-Length on every answer");
                    while self.buffer.len() < length {
                        self.fill().expect("body");
                    }
                    let body = self.buffer.drain(..length).collect();
                    return Some(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            if self.fill().is_none() {
                assert!(
                    self.buffer.is_empty(),
                    "connection closed mid-response: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
                return None;
            }
        }
    }

    /// Reads more; `None` at EOF or on a reset.
    fn fill(&mut self) -> Option<usize> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// True once the server has closed its side.
    fn closed_by_server(&mut self) -> bool {
        self.fill().is_none()
    }

    fn request(&mut self, req: &Req) -> Option<Response> {
        let bytes = req.bytes();
        self.send_raw(&bytes);
        self.read_response()
    }
}

/// A request to build by hand.
struct Req {
    method: &'static str,
    target: String,
    auth: Option<(String, String)>,
    body: Option<String>,
    headers: Vec<(String, String)>,
}

impl Req {
    fn new(method: &'static str, target: &str) -> Req {
        Req {
            method,
            target: target.to_string(),
            auth: None,
            body: None,
            headers: Vec::new(),
        }
    }

    fn get(path: &str) -> Req {
        Req::new("GET", &api(path))
    }

    fn post(path: &str, body: Value) -> Req {
        Req::new("POST", &api(path)).body(&body.to_string())
    }

    fn auth(mut self, account: &Account) -> Req {
        self.auth = Some((account.username.clone(), account.api_key.clone()));
        self
    }

    fn user(mut self, username: &str, key: &str) -> Req {
        self.auth = Some((username.to_string(), key.to_string()));
        self
    }

    fn body(mut self, body: &str) -> Req {
        self.body = Some(body.to_string());
        self
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n",
            self.method, self.target
        );
        if let Some((user, key)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if let Some(body) = &self.body {
            bytes.extend_from_slice(body.as_bytes());
        }
        bytes
    }
}

fn api(path: &str) -> String {
    format!("/rest/v3.1/{path}")
}

/// Percent-encodes a query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls until `done` holds, failing after a deadline far beyond any normal wait: the
/// test waits for the event itself, not for a guess at how long it takes.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One request on a fresh connection.
fn send(portal: &LocalPortal, req: Req) -> Response {
    Conn::open(portal)
        .request(&req)
        .expect("an answer from the portal")
}

fn start() -> (LocalPortal, Account) {
    let account = Account::default();
    (LocalPortal::start(account.clone()), account)
}

// ---------------------------------------------------------------------------------------
// Certificates for the tests
// ---------------------------------------------------------------------------------------

struct Pki {
    root_pem: String,
    intermediate_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    /// A key that is not the leaf's.
    other_key_pem: String,
    /// An intermediate of another CA, with the same name: it did not sign the leaf.
    impostor_intermediate_pem: String,
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Portal Selftest CA");
    params
}

/// Root → intermediate → leaf for `name`, all EC P-256.
fn pki(name: &str) -> Pki {
    pki_with_validity(name, None)
}

fn pki_with_validity(
    name: &str,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> Pki {
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_params = ca_params("Selftest Root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, root_key);

    let intermediate_key = rcgen::KeyPair::generate().unwrap();
    let intermediate_params = ca_params("Selftest Issuing CA");
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root_issuer)
        .unwrap();
    let intermediate_issuer = rcgen::Issuer::new(intermediate_params, intermediate_key);

    let impostor_key = rcgen::KeyPair::generate().unwrap();
    let impostor = ca_params("Selftest Issuing CA")
        .self_signed(&impostor_key)
        .unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    if let Some((begin, end)) = validity {
        leaf_params.not_before = begin;
        leaf_params.not_after = end;
    }
    let leaf = leaf_params
        .signed_by(&leaf_key, &intermediate_issuer)
        .unwrap();

    Pki {
        root_pem: root.pem(),
        intermediate_pem: intermediate.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        other_key_pem: rcgen::KeyPair::generate().unwrap().serialize_pem(),
        impostor_intermediate_pem: impostor.pem(),
    }
}

fn sample(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The PEM CERTIFICATE blocks of a text, in order.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..].find(end_marker).unwrap() + start + end_marker.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

fn template(certificate: &str, key: &str, intermediate: Option<&str>) -> Value {
    let mut t = json!({"certificate": certificate, "privateKey": key});
    if let Some(i) = intermediate {
        t["intermediateCertificate"] = json!(i);
    }
    t
}

fn create(portal: &LocalPortal, account: &Account, template: Value) -> Response {
    send(
        portal,
        Req::post(
            "SoftLayer_Security_Certificate/createObject.json",
            json!({"parameters": [template]}),
        )
        .auth(account),
    )
}

/// An approved order of the portal's account; returns its id.
fn order(portal: &LocalPortal, name: &str) -> i64 {
    portal.add_order(OrderSpec::new(
        name,
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    ))
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

#[test]
fn every_call_needs_valid_basic_auth() {
    let (portal, account) = start();
    let path = "SoftLayer_Account/getObject.json";
    let invalid = r#"{"error":"Invalid API token.","code":"SoftLayer_Exception_Public"}"#;

    let none = send(&portal, Req::get(path));
    assert_eq!(none.status, 401);
    assert_eq!(none.json(), serde_json::from_str::<Value>(invalid).unwrap());

    let wrong_key = send(
        &portal,
        Req::get(path).user(&account.username, "not-the-key"),
    );
    wrong_key.assert_error(401, "SoftLayer_Exception_Public", "Invalid API token.");

    let unknown_user = send(
        &portal,
        Req::get(path).user("someone_else", &account.api_key),
    );
    unknown_user.assert_error(401, "SoftLayer_Exception_Public", "Invalid API token.");

    let bearer = send(
        &portal,
        Req::get(path).header("Authorization", "Bearer abc.def"),
    );
    bearer.assert_error(401, "SoftLayer_Exception_Public", "Invalid API token.");

    let good = send(&portal, Req::get(path).auth(&account));
    assert_eq!(good.status, 200);
    assert_eq!(good.json()["id"], json!(account.id));

    // An IBM Cloud API key: the username is literally "apikey".
    portal.add_user("apikey", "cloud-key-123");
    let cloud = send(&portal, Req::get(path).user("apikey", "cloud-key-123"));
    assert_eq!(cloud.json()["id"], json!(account.id));
    let cloud_wrong = send(&portal, Req::get(path).user("apikey", &account.api_key));
    assert_eq!(cloud_wrong.status, 401);

    // Every kind of call is checked, not only getObject.
    let resend = send(
        &portal,
        Req::post(
            "SoftLayer_Security_Certificate_Request/1/resendEmail.json",
            json!({"parameters": ["FulfillmentEmail"]}),
        ),
    );
    assert_eq!(resend.status, 401);

    let auths: Vec<Auth> = portal.requests().into_iter().map(|r| r.auth).collect();
    assert_eq!(
        auths,
        vec![
            Auth::Missing,
            Auth::Invalid {
                username: account.username.clone()
            },
            Auth::Invalid {
                username: "someone_else".into()
            },
            Auth::Malformed,
            Auth::Valid {
                username: account.username.clone()
            },
            Auth::Valid {
                username: "apikey".into()
            },
            Auth::Invalid {
                username: "apikey".into()
            },
            Auth::Missing,
        ]
    );
    assert!(portal.resends().is_empty());
}

// ---------------------------------------------------------------------------------------
// URL shapes and query parameters
// ---------------------------------------------------------------------------------------

#[test]
fn url_shapes_follow_sldn() {
    let (portal, account) = start();
    let id = order(&portal, "www.shape.example.com");

    for path in [
        "SoftLayer_Account/getObject.json",
        "SoftLayer_Account/getObject",
        "SoftLayer_Account.json",
        "SoftLayer_Account",
    ] {
        let r = send(&portal, Req::get(path).auth(&account));
        assert_eq!(
            (r.status, r.json()["id"].clone()),
            (200, json!(account.id)),
            "{path}"
        );
    }

    // GET on {Service}/{id} without a method is getObject (softlayer-go's shape).
    for path in [
        format!("SoftLayer_Security_Certificate_Request/{id}.json"),
        format!("SoftLayer_Security_Certificate_Request/{id}"),
        format!("SoftLayer_Security_Certificate_Request/{id}/getObject.json"),
        format!("SoftLayer_Security_Certificate_Request/{id}/getObject"),
    ] {
        let r = send(&portal, Req::get(&path).auth(&account));
        assert_eq!(
            (r.status, r.json()["id"].clone()),
            (200, json!(id)),
            "{path}"
        );
    }
    // POST with parameters to a getter works too (softlayer-python forces POST with args).
    let r = send(
        &portal,
        Req::post(
            &format!("SoftLayer_Security_Certificate_Request/{id}/getObject.json"),
            json!({}),
        )
        .auth(&account),
    );
    assert_eq!(r.json()["id"], json!(id));

    let unknown_method = send(
        &portal,
        Req::get("SoftLayer_Account/getFoo.json").auth(&account),
    );
    unknown_method.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "Function (\"getFoo\") is not a valid method for this service.",
    );

    let unknown_id = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request/123/getObject.json").auth(&account),
    );
    unknown_id.assert_error(
        404,
        "SoftLayer_Exception_ObjectNotFound",
        "Unable to find object with id of '123'.",
    );

    let unknown_service = send(
        &portal,
        Req::get("SoftLayer_Nothing/getObject.json").auth(&account),
    );
    unknown_service.assert_error(404, "SoftLayer_Exception_Public", "Service does not exist");

    let wrong_base = send(
        &portal,
        Req::new("GET", "/rest/v3/SoftLayer_Account/getObject.json").auth(&account),
    );
    assert_eq!(wrong_base.status, 404);

    let xml = send(
        &portal,
        Req::get("SoftLayer_Account/getObject.xml").auth(&account),
    );
    assert_eq!(xml.json()["code"], "SoftLayer_Exception_NotImplemented");

    // A method that needs an id, called without one.
    let no_id = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request/getObject.json").auth(&account),
    );
    no_id.assert_error(
        500,
        "SoftLayer_Exception",
        "Object does not exist to execute method on. (SoftLayer_Security_Certificate_Request::getObject)",
    );

    // A real method that the local portal does not implement fails loudly.
    let unimplemented = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{id}/cancelSslOrder.json"
        ))
        .auth(&account),
    );
    assert_eq!(
        unimplemented.json()["code"],
        "SoftLayer_Exception_NotImplemented"
    );

    // The verb DELETE implies deleteObject; naming it as well is refused (softlayer-python#962).
    let delete = send(
        &portal,
        Req::new(
            "DELETE",
            &api("SoftLayer_Security_Certificate/5/deleteObject.json"),
        )
        .auth(&account),
    );
    delete.assert_error(404, "SoftLayer_Exception_Public", "Service does not exist");

    // The record of a routed call.
    let records = portal.requests();
    let last_get = records
        .iter()
        .find(|r| r.target.ends_with(&format!("{id}/getObject")))
        .unwrap();
    assert_eq!(
        last_get.service.as_deref(),
        Some("SoftLayer_Security_Certificate_Request")
    );
    assert_eq!(last_get.id, Some(id));
    assert_eq!(last_get.method.as_deref(), Some("getObject"));
    assert_eq!(last_get.status, Some(200));
}

#[test]
fn object_masks_filters_and_result_limits_are_parsed() {
    let (portal, account) = start();
    for mask in [
        "mask[id]",
        "mask[id,commonName,statusId,status[id,name,description],order[id]]",
        "mask[id, commonName, validityDays, notes]",
        "mask(SoftLayer_Account)[id]",
        "mask.id",
        "id,companyName",
        "id",
    ] {
        let r = send(
            &portal,
            Req::get(&format!(
                "SoftLayer_Account/getObject.json?objectMask={}",
                enc(mask)
            ))
            .auth(&account),
        );
        assert_eq!(r.status, 200, "mask {mask:?}: {:?}", r.json());
    }
    for mask in [
        "mask[id",
        "mask[id]]",
        "[id]",
        "id,,name",
        "mask[id commonName]",
        "mask[]x",
        "",
    ] {
        let r = send(
            &portal,
            Req::get(&format!(
                "SoftLayer_Account/getObject.json?objectMask={}",
                enc(mask)
            ))
            .auth(&account),
        );
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (500, Some("SoftLayer_Exception_Public")),
            "mask {mask:?}"
        );
    }

    let bad_filter = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Account/getSecurityCertificates.json?objectFilter={}",
            enc("{\"securityCertificates\":")
        ))
        .auth(&account),
    );
    assert_eq!(bad_filter.status, 500);

    let bad_limit = send(
        &portal,
        Req::get("SoftLayer_Account/getSecurityCertificates.json?resultLimit=a,b").auth(&account),
    );
    assert_eq!(bad_limit.json()["code"], "SoftLayer_Exception_InvalidValue");

    // '+' in a query is a space (form encoding, as reqwest writes it).
    let plus = send(
        &portal,
        Req::get("SoftLayer_Account/getObject.json?objectMask=mask%5Bid,+companyName%5D")
            .auth(&account),
    );
    assert_eq!(plus.status, 200);
    let record = portal.requests().pop().unwrap();
    assert_eq!(
        record.query_param("objectMask"),
        Some("mask[id, companyName]")
    );
}

// ---------------------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------------------

#[test]
fn ssl_certificate_requests_take_the_account_id_by_post() {
    let (portal, account) = start();
    let alpha = order(&portal, "www.alpha.example.com");
    let bravo = order(&portal, "www.bravo.example.com");
    let foreign = portal.add_order(OrderSpec {
        account_id: Some(999),
        ..OrderSpec::new("www.foreign.example.com", "csr")
    });
    let path = "SoftLayer_Security_Certificate_Request/getSslCertificateRequests.json";

    let listed = send(
        &portal,
        Req::post(path, json!({"parameters": [account.id]})).auth(&account),
    );
    assert_eq!(listed.status, 200);
    let ids: Vec<i64> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![alpha, bravo]);
    assert_eq!(listed.header("SoftLayer-Total-Items"), Some("2"));

    // A numeric string is taken; the id in the URL works too (§3.2 simple parameters).
    let as_string = send(
        &portal,
        Req::post(path, json!({"parameters": [account.id.to_string()]})).auth(&account),
    );
    assert_eq!(as_string.json().as_array().unwrap().len(), 2);
    let in_url = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/getSslCertificateRequests/{}.json",
            account.id
        ))
        .auth(&account),
    );
    assert_eq!(in_url.json().as_array().unwrap().len(), 2);

    // The API ignores data sent with GET: the parameter is then missing.
    let get_with_body = send(
        &portal,
        Req::get(path)
            .body(&json!({"parameters": [account.id]}).to_string())
            .auth(&account),
    );
    get_with_body.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "expects 1 parameter(s), 0 given",
    );

    let wrong_account = send(
        &portal,
        Req::post(path, json!({"parameters": [999]})).auth(&account),
    );
    wrong_account.assert_error(500, "SoftLayer_Exception_Public", "Access Denied. ");
    let wrong_type = send(
        &portal,
        Req::post(path, json!({"parameters": ["abc"]})).auth(&account),
    );
    assert_eq!(
        (wrong_type.status, wrong_type.json()["code"].as_str()),
        (500, Some("SoftLayer_Exception_InvalidValue"))
    );
    let wrong_type = send(
        &portal,
        Req::post(path, json!({"parameters": [{"id": 1}]})).auth(&account),
    );
    assert_eq!(
        wrong_type.json()["code"],
        "SoftLayer_Exception_InvalidValue"
    );
    let too_many = send(
        &portal,
        Req::post(path, json!({"parameters": [account.id, 1]})).auth(&account),
    );
    assert_eq!(too_many.status, 500);

    // Another account's order is not the caller's: invisible and not found.
    let r = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{foreign}.json"
        ))
        .auth(&account),
    );
    r.assert_error(
        404,
        "SoftLayer_Exception_ObjectNotFound",
        &format!("Unable to find object with id of '{foreign}'."),
    );

    // Filter on the request's own properties, and pages.
    let filter = json!({"commonName": {"operation": "www.bravo.example.com"}}).to_string();
    let filtered = send(
        &portal,
        Req::post(
            &format!("{path}?objectFilter={}", enc(&filter)),
            json!({"parameters": [account.id]}),
        )
        .auth(&account),
    );
    let body = filtered.json();
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["id"], json!(bravo));
    let paged = send(
        &portal,
        Req::post(
            &format!("{path}?resultLimit=1,1"),
            json!({"parameters": [account.id]}),
        )
        .auth(&account),
    );
    assert_eq!(paged.json()[0]["id"], json!(bravo));
    assert_eq!(paged.header("SoftLayer-Total-Items"), Some("2"));
}

fn is_portal_date(value: &Value) -> bool {
    let s = value.as_str().unwrap_or_default();
    // 2016-01-20T10:56:44-06:00
    let b = s.as_bytes();
    s.len() == 25
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (b[19] == b'-' || b[19] == b'+')
        && b[22] == b':'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

#[test]
fn orders_carry_the_documented_fields() {
    let (portal, account) = start();
    let id = portal.add_order(OrderSpec {
        id: Some(77_001),
        refuses_resend: false,
        ..OrderSpec::new(
            "www.fields.example.com",
            "-----BEGIN CERTIFICATE REQUEST-----\nX\n-----END CERTIFICATE REQUEST-----\n",
        )
    });
    assert_eq!(id, 77_001);
    let pending = portal.add_order(OrderSpec {
        status: "Pending CA Approval".into(),
        ..OrderSpec::new("www.pending.example.com", "csr")
    });
    let o = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{id}/getObject.json"
        ))
        .auth(&account),
    )
    .json();
    assert_eq!(o["id"], json!(id));
    assert_eq!(o["accountId"], json!(account.id));
    assert_eq!(o["commonName"], "www.fields.example.com");
    assert!(
        o["certificateSigningRequest"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE REQUEST")
    );
    assert_eq!(o["approverEmailAddress"], "admin@fields.example.com");
    assert_eq!(
        o["technicalContactEmailAddress"],
        "hostmaster@fields.example.com"
    );
    assert_eq!(o["statusId"], json!(43));
    assert_eq!(
        o["status"],
        json!({"id": 43, "name": "Approved", "description": portal::STATUSES[1].2})
    );
    assert!(o["order"]["id"].is_i64());
    for date in [
        "createDate",
        "modifyDate",
        "effectiveDate",
        "expirationDate",
    ] {
        assert!(is_portal_date(&o[date]), "{date}: {}", o[date]);
    }
    assert!(o["createDate"].as_str().unwrap().ends_with("-06:00"));

    let p = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{pending}.json"
        ))
        .auth(&account),
    )
    .json();
    assert_eq!(p["statusId"], json!(42));
    assert!(p.get("effectiveDate").is_none() && p.get("expirationDate").is_none());

    let status = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{pending}/getStatus.json"
        ))
        .auth(&account),
    )
    .json();
    assert_eq!(status["name"], "Pending CA Approval");

    portal.set_order_status(pending, "Canceled");
    let p = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{pending}.json"
        ))
        .auth(&account),
    )
    .json();
    assert_eq!(p["status"]["name"], "Canceled");
    assert_eq!(p["statusId"], json!(45));
}

#[test]
fn request_statuses_have_non_obvious_ids() {
    let (portal, account) = start();
    let r = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request_Status/getSslRequestStatuses.json")
            .auth(&account),
    );
    assert_eq!(r.status, 200);
    let statuses: Vec<(i64, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["description"].is_string());
            (
                s["id"].as_i64().unwrap(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (42, "Pending CA Approval".to_string()),
            (43, "Approved".to_string()),
            (44, "Complete".to_string()),
            (45, "Canceled".to_string()),
        ]
    );
    let one = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request_Status/44.json").auth(&account),
    );
    assert_eq!(one.json()["name"], "Complete");
    let none = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request_Status/1.json").auth(&account),
    );
    assert_eq!(none.status, 404);
}

// ---------------------------------------------------------------------------------------
// resendEmail
// ---------------------------------------------------------------------------------------

#[test]
fn resend_email_takes_the_documented_email_types_only() {
    let (portal, account) = start();
    let id = order(&portal, "www.resend.example.com");
    let retired = portal.add_order(OrderSpec {
        refuses_resend: true,
        ..OrderSpec::new("www.retired.example.com", "csr")
    });
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&hooked);
    portal.set_on_resend(Some(Box::new(move |order_id| {
        seen.lock().unwrap().push(order_id)
    })));
    let resend = |order_id: i64, parameters: Value| {
        send(
            &portal,
            Req::post(
                &format!("SoftLayer_Security_Certificate_Request/{order_id}/resendEmail.json"),
                json!({ "parameters": parameters }),
            )
            .auth(&account),
        )
    };

    let ok = resend(id, json!(["FulfillmentEmail"]));
    assert_eq!((ok.status, ok.json()), (200, json!(true)));
    assert_eq!(
        *hooked.lock().unwrap(),
        vec![id],
        "the hook ran before the answer"
    );

    let approver = resend(id, json!(["ApproverEmail"]));
    assert_eq!(approver.json(), json!(true));
    assert_eq!(
        *hooked.lock().unwrap(),
        vec![id],
        "no hook for ApproverEmail"
    );

    for wrong in [
        json!(["FULFILLMENT"]),
        json!(["fulfillmentemail"]),
        json!(["APPROVER"]),
        json!([""]),
    ] {
        let r = resend(id, wrong.clone());
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (500, Some("SoftLayer_Exception_InvalidValue")),
            "{wrong}"
        );
    }
    let number = resend(id, json!([1]));
    assert_eq!(number.json()["code"], "SoftLayer_Exception_InvalidValue");
    let none = resend(id, json!([]));
    assert_eq!(none.status, 500);

    let missing = resend(4242, json!(["FulfillmentEmail"]));
    missing.assert_error(
        404,
        "SoftLayer_Exception_ObjectNotFound",
        "Unable to find object with id of '4242'.",
    );

    let refused = resend(retired, json!(["FulfillmentEmail"]));
    refused.assert_error(
        500,
        "SoftLayer_Exception_Public",
        portal::ORDERS_RETIRED_MESSAGE,
    );

    // GET drops the body, so the email type is missing.
    let get = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{id}/resendEmail.json"
        ))
        .body(r#"{"parameters":["FulfillmentEmail"]}"#)
        .auth(&account),
    );
    assert_eq!(get.status, 500);

    // The SLDN curl shape, without .json.
    let bare = send(
        &portal,
        Req::post(
            &format!("SoftLayer_Security_Certificate_Request/{id}/resendEmail"),
            json!({"parameters": ["FulfillmentEmail"]}),
        )
        .auth(&account),
    );
    assert_eq!(bare.json(), json!(true));

    assert_eq!(
        portal.resends(),
        vec![
            (id, "FulfillmentEmail".to_string()),
            (id, "ApproverEmail".to_string()),
            (id, "FulfillmentEmail".to_string()),
        ]
    );
    assert_eq!(*hooked.lock().unwrap(), vec![id, id]);
    let log = portal.resend_log();
    assert!(log[0].at <= log[2].at);
    assert_eq!(portal.calls("resendEmail"), 12);

    portal.set_on_resend(None);
    resend(id, json!(["FulfillmentEmail"]));
    assert_eq!(hooked.lock().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// The certificate store
// ---------------------------------------------------------------------------------------

#[test]
fn create_object_validates_certificate_key_and_intermediate() {
    let (portal, account) = start();
    let p = pki("www.upload.example.com");

    let garbage = create(
        &portal,
        &account,
        template("not a certificate", &p.leaf_key_pem, None),
    );
    garbage.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "Unable to parse the certificate",
    );
    let broken_der = create(
        &portal,
        &account,
        template(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &p.leaf_key_pem,
            None,
        ),
    );
    broken_der.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "Unable to parse the certificate",
    );

    let no_key = create(&portal, &account, json!({"certificate": p.leaf_pem}));
    no_key.assert_error(
        500,
        "SoftLayer_Exception_MissingCreationProperty",
        "The property 'privateKey' must be set to create an instance of 'SoftLayer_Security_Certificate'.",
    );
    let no_certificate = create(
        &portal,
        &account,
        json!({"privateKey": p.leaf_key_pem, "certificate": ""}),
    );
    assert_eq!(
        no_certificate.json()["code"],
        "SoftLayer_Exception_MissingCreationProperty"
    );
    let bad_key = create(
        &portal,
        &account,
        template(
            &p.leaf_pem,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
        ),
    );
    bad_key.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "Unable to parse the private key",
    );
    let csr_as_key = create(
        &portal,
        &account,
        template(&p.leaf_pem, &sample("keys/www.alpha.example.com.csr"), None),
    );
    csr_as_key.assert_error_containing(500, "SoftLayer_Exception_Public", "no private key");

    let mismatch = create(
        &portal,
        &account,
        template(&p.leaf_pem, &p.other_key_pem, None),
    );
    mismatch.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "The private key does not match the certificate.",
    );

    let wrong_intermediate = create(
        &portal,
        &account,
        template(
            &p.leaf_pem,
            &p.leaf_key_pem,
            Some(&p.impostor_intermediate_pem),
        ),
    );
    wrong_intermediate.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "The intermediate certificate did not sign the certificate.",
    );
    let root_first = create(
        &portal,
        &account,
        template(
            &p.leaf_pem,
            &p.leaf_key_pem,
            Some(&format!("{}{}", p.root_pem, p.intermediate_pem)),
        ),
    );
    assert_eq!(root_first.status, 500);
    let garbage_intermediate = create(
        &portal,
        &account,
        template(&p.leaf_pem, &p.leaf_key_pem, Some("junk")),
    );
    garbage_intermediate.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "intermediate certificate",
    );
    let chain_in_certificate = create(
        &portal,
        &account,
        template(
            &format!("{}{}", p.leaf_pem, p.intermediate_pem),
            &p.leaf_key_pem,
            None,
        ),
    );
    chain_in_certificate.assert_error_containing(
        500,
        "SoftLayer_Exception_Public",
        "exactly one certificate",
    );
    let mut key_as_csr = template(&p.leaf_pem, &p.leaf_key_pem, None);
    key_as_csr["certificateSigningRequest"] = json!(p.leaf_key_pem);
    assert_eq!(create(&portal, &account, key_as_csr).status, 500);
    let not_an_object = create(&portal, &account, json!("certificate"));
    assert_eq!(
        not_an_object.json()["code"],
        "SoftLayer_Exception_InvalidValue"
    );
    let number = create(
        &portal,
        &account,
        json!({"certificate": 5, "privateKey": p.leaf_key_pem}),
    );
    assert_eq!(number.json()["code"], "SoftLayer_Exception_InvalidValue");

    assert!(
        portal.certificates().is_empty(),
        "nothing stored by failed calls"
    );

    // Good: with the chain (leaf's issuer first, then the root), and read-only fields ignored.
    let mut good = template(
        &p.leaf_pem,
        &p.leaf_key_pem,
        Some(&format!("{}{}", p.intermediate_pem, p.root_pem)),
    );
    good["commonName"] = json!("spoofed.example.com");
    good["validityEnd"] = json!("2099-01-01T00:00:00-06:00");
    good["notes"] = json!("fulfill import");
    good["certificateSigningRequest"] =
        json!("-----BEGIN CERTIFICATE REQUEST-----\nX\n-----END CERTIFICATE REQUEST-----\n");
    let created = create(&portal, &account, good);
    assert_eq!(created.status, 200, "{:?}", created.json());
    let body = created.json();
    let id = body["id"].as_i64().unwrap();
    assert_eq!(body["commonName"], "www.upload.example.com");
    assert_eq!(body["notes"], "fulfill import");
    assert_eq!(body["keySize"], json!(256));
    assert!(body.get("privateKey").is_none());
    assert!(is_portal_date(&body["validityBegin"]) && is_portal_date(&body["validityEnd"]));
    assert_ne!(body["validityEnd"], "2099-01-01T00:00:00-06:00");

    // Without an intermediate, only certificate and key are checked.
    let second = create(
        &portal,
        &account,
        template(&p.leaf_pem, &p.leaf_key_pem, None),
    );
    assert_eq!(second.status, 200);
    assert_ne!(second.json()["id"], json!(id));

    let stored = portal.certificates();
    assert_eq!(stored.len(), 2, "the real API keeps duplicates");
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].private_key, p.leaf_key_pem);
    assert_eq!(stored[0].notes.as_deref(), Some("fulfill import"));
    // The expected fingerprint comes from sha2 on the DER; the portal computes its own with
    // OpenSSL, and neither is fulfill's code.
    let der = pem::parse(&p.leaf_pem).unwrap().into_contents();
    assert_eq!(stored[0].sha256, hex::encode(Sha256::digest(&der)));

    // getObject includes the private key; the list does not.
    let one = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate/{id}/getObject.json"
        ))
        .auth(&account),
    )
    .json();
    assert_eq!(one["privateKey"], json!(p.leaf_key_pem));
    let same = send(
        &portal,
        Req::get(&format!("SoftLayer_Security_Certificate/{id}.json")).auth(&account),
    )
    .json();
    assert_eq!(same["id"], json!(id));

    // softlayer-go's createObject shape: POST on the service, no method name.
    let go_shape = send(
        &portal,
        Req::post(
            "SoftLayer_Security_Certificate.json",
            json!({"parameters": [template(&p.leaf_pem, &p.leaf_key_pem, None)]}),
        )
        .auth(&account),
    );
    assert_eq!(go_shape.status, 200);
    assert_eq!(portal.calls("createObject"), 17);
}

#[test]
fn create_object_accepts_the_sample_rsa_chain() {
    let (portal, account) = start();
    let mail = sample("01-geotrust-inline-pem.eml");
    let blocks = pem_blocks(&mail);
    assert_eq!(blocks.len(), 2);
    let key = sample("keys/www.alpha.example.com.key");
    let intermediate = sample("ca/intermediate.pem");
    assert_eq!(blocks[1].replace("\r\n", "\n").trim(), intermediate.trim());

    let created = create(
        &portal,
        &account,
        template(&blocks[0], &key, Some(&intermediate)),
    );
    assert_eq!(created.status, 200, "{:?}", created.json());
    let body = created.json();
    assert_eq!(body["commonName"], "www.alpha.example.com");
    assert_eq!(body["keySize"], json!(2048));
    assert!(
        body["validityBegin"]
            .as_str()
            .unwrap()
            .starts_with("2025-05-31T18:00:00-06:00")
    );

    let other_key = sample("keys/www.bravo.example.com.key");
    let mismatch = create(
        &portal,
        &account,
        template(&blocks[0], &other_key, Some(&intermediate)),
    );
    mismatch.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "The private key does not match the certificate.",
    );
    // The root signed the intermediate, not the leaf.
    let root = sample("ca/root.pem");
    let wrong = create(&portal, &account, template(&blocks[0], &key, Some(&root)));
    wrong.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "The intermediate certificate did not sign the certificate.",
    );
    // The chain from the intermediate up to the root is in order.
    let chain = create(
        &portal,
        &account,
        template(&blocks[0], &key, Some(&format!("{intermediate}{root}"))),
    );
    assert_eq!(chain.status, 200);
    assert_eq!(portal.certificates().len(), 2);
}

#[test]
fn store_listing_filters_pages_and_hides_private_keys() {
    let (portal, account) = start();
    let names = [
        "b.example.com",
        "a.example.com",
        "b.example.com",
        "c.example.com",
    ];
    let mut ids = Vec::new();
    for name in names {
        let p = pki(name);
        ids.push(
            portal
                .add_certificate(NewCertificate {
                    certificate: p.leaf_pem.clone(),
                    private_key: p.leaf_key_pem.clone(),
                    intermediate_certificate: Some(p.intermediate_pem.clone()),
                    notes: Some(format!("note {name}")),
                    ..NewCertificate::default()
                })
                .unwrap(),
        );
    }
    let p = pki("bad.example.com");
    let refused = portal.add_certificate(NewCertificate {
        certificate: p.leaf_pem,
        private_key: p.other_key_pem,
        ..NewCertificate::default()
    });
    assert_eq!(
        refused,
        Err("The private key does not match the certificate.".to_string())
    );

    let list = |query: &str| {
        send(
            &portal,
            Req::get(&format!(
                "SoftLayer_Account/getSecurityCertificates.json{query}"
            ))
            .auth(&account),
        )
    };
    let all = list("");
    assert_eq!(all.header("SoftLayer-Total-Items"), Some("4"));
    let items = all.json();
    assert_eq!(items.as_array().unwrap().len(), 4);
    for item in items.as_array().unwrap() {
        assert!(item.get("privateKey").is_none());
        for field in [
            "id",
            "commonName",
            "validityBegin",
            "validityEnd",
            "validityDays",
            "certificate",
            "intermediateCertificate",
            "notes",
            "createDate",
            "modifyDate",
            "keySize",
        ] {
            assert!(item.get(field).is_some(), "{field} in {item}");
        }
        assert!(item["validityDays"].as_i64().unwrap() >= 0);
    }

    let by_name = |name: &str| {
        json!({"securityCertificates": {"commonName": {"operation": name}}}).to_string()
    };
    let filtered = list(&format!("?objectFilter={}", enc(&by_name("b.example.com"))));
    let got: Vec<i64> = filtered
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0], ids[2]]);
    assert_eq!(filtered.header("SoftLayer-Total-Items"), Some("2"));

    let none = list(&format!("?objectFilter={}", enc(&by_name("B.example.com"))));
    assert_eq!(none.json(), json!([]));
    let lower = list(&format!(
        "?objectFilter={}",
        enc(&by_name("_= b.example.com"))
    ));
    assert_eq!(lower.json().as_array().unwrap().len(), 2);
    let prefix = list(&format!("?objectFilter={}", enc(&by_name("^= a."))));
    assert_eq!(prefix.json().as_array().unwrap().len(), 1);
    let not = list(&format!(
        "?objectFilter={}",
        enc(&by_name("!= b.example.com"))
    ));
    assert_eq!(not.json().as_array().unwrap().len(), 2);
    // A filter rooted elsewhere is ignored, as SLDN warns.
    let misrooted = list(&format!(
        "?objectFilter={}",
        enc(&json!({"commonName": {"operation": "a.example.com"}}).to_string())
    ));
    assert_eq!(misrooted.json().as_array().unwrap().len(), 4);

    // SLDN's orderBy, and paging with the total before paging.
    let order_desc = json!({"securityCertificates": {"id": {"operation": "orderBy", "options": [{"name": "sort", "value": ["DESC"]}]}}}).to_string();
    let paged = list(&format!(
        "?objectFilter={}&resultLimit=1,2",
        enc(&order_desc)
    ));
    let got: Vec<i64> = paged
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2], ids[1]]);
    assert_eq!(paged.header("SoftLayer-Total-Items"), Some("4"));
    let in_list = json!({"securityCertificates": {"commonName": {"operation": "in", "options": [{"name": "data", "value": ["a.example.com", "c.example.com"]}]}}}).to_string();
    assert_eq!(
        list(&format!("?objectFilter={}", enc(&in_list)))
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let found = send(
        &portal,
        Req::post(
            "SoftLayer_Security_Certificate/findByCommonName.json",
            json!({"parameters": ["b.example.com"]}),
        )
        .auth(&account),
    );
    assert_eq!(found.json().as_array().unwrap().len(), 2);
    assert!(found.json()[0].get("privateKey").is_none());
    let found_none = send(
        &portal,
        Req::post(
            "SoftLayer_Security_Certificate/findByCommonName.json",
            json!({"parameters": ["x.example.com"]}),
        )
        .auth(&account),
    );
    assert_eq!(found_none.json(), json!([]));

    // deleteObject by the verb, editObject by PUT.
    let deleted = send(
        &portal,
        Req::new(
            "DELETE",
            &api(&format!("SoftLayer_Security_Certificate/{}.json", ids[3])),
        )
        .auth(&account),
    );
    assert_eq!(deleted.json(), json!(true));
    let edited = send(
        &portal,
        Req::new(
            "PUT",
            &api(&format!("SoftLayer_Security_Certificate/{}.json", ids[1])),
        )
        .body(&json!({"parameters": [{"notes": "edited"}]}).to_string())
        .auth(&account),
    );
    assert_eq!(edited.json(), json!(true));
    let certificates = portal.certificates();
    assert_eq!(certificates.len(), 3);
    assert_eq!(
        certificates
            .iter()
            .find(|c| c.id == ids[1])
            .unwrap()
            .notes
            .as_deref(),
        Some("edited")
    );
}

#[test]
fn valid_and_expired_certificates_are_told_apart() {
    let (portal, account) = start();
    let now = time::OffsetDateTime::now_utc();
    let expired = pki_with_validity(
        "old.example.com",
        Some((
            now - time::Duration::days(400),
            now - time::Duration::days(35),
        )),
    );
    let current = pki("new.example.com");
    for p in [&expired, &current] {
        portal
            .add_certificate(NewCertificate {
                certificate: p.leaf_pem.clone(),
                private_key: p.leaf_key_pem.clone(),
                ..NewCertificate::default()
            })
            .unwrap();
    }
    let names = |method: &str| -> Vec<String> {
        send(
            &portal,
            Req::get(&format!("SoftLayer_Account/{method}.json")).auth(&account),
        )
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["commonName"].as_str().unwrap().to_string())
        .collect()
    };
    assert_eq!(
        names("getValidSecurityCertificates"),
        vec!["new.example.com"]
    );
    assert_eq!(
        names("getExpiredSecurityCertificates"),
        vec!["old.example.com"]
    );
    let all = send(
        &portal,
        Req::get("SoftLayer_Account/getSecurityCertificates.json").auth(&account),
    )
    .json();
    assert_eq!(all[0]["validityDays"], json!(0));
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

#[test]
fn status_faults_answer_as_documented_and_are_consumed_in_order() {
    let (portal, account) = start();
    let path = "SoftLayer_Account/getObject.json";
    portal.inject("getObject", Fault::InternalError, 2);
    portal.inject("getObject", Fault::RateLimited, 1);
    portal.inject("getObject", Fault::RateLimitedAs500, 1);
    portal.inject("getObject", Fault::Unauthorized, 1);
    portal.inject("getObject", Fault::Empty200, 1);
    portal.inject("getObject", Fault::ErrorBody200, 1);
    portal.inject(
        "getObject",
        Fault::Raw {
            status: 503,
            body: "<html>down</html>".into(),
        },
        1,
    );
    assert_eq!(portal.pending_faults("getObject"), 8);

    // Another method is not affected.
    let other = send(
        &portal,
        Req::get("SoftLayer_Security_Certificate_Request_Status/getSslRequestStatuses.json")
            .auth(&account),
    );
    assert_eq!(other.status, 200);

    let mut conn = Conn::open(&portal);
    let mut next = || conn.request(&Req::get(path).auth(&account)).unwrap();
    for _ in 0..2 {
        next().assert_error(500, "SoftLayer_Exception_Public", "Internal Error");
    }
    let limited = next();
    limited.assert_error(
        429,
        "SoftLayer_Exception_WebService_RateLimitExceeded",
        "Rate limit of 50 requests for every 1 second(s) exceeded.",
    );
    next().assert_error(
        500,
        "SoftLayer_Exception_WebService_RateLimitExceeded",
        "Rate limit of 50 requests for every 1 second(s) exceeded.",
    );
    next().assert_error(401, "SoftLayer_Exception_Public", "Invalid API token.");
    let empty = next();
    assert_eq!((empty.status, empty.body.len()), (200, 0));
    assert_eq!(empty.header("Content-Length"), Some("0"));
    let error_200 = next();
    assert_eq!(error_200.status, 200);
    assert_eq!(error_200.body, portal::INTERNAL_ERROR_BODY.as_bytes());
    let raw = next();
    assert_eq!(
        (raw.status, raw.body.as_slice()),
        (503, b"<html>down</html>".as_slice())
    );
    // Then normal service.
    let ok = next();
    assert_eq!(
        (ok.status, ok.json()["id"].clone()),
        (200, json!(account.id))
    );
    assert_eq!(portal.pending_faults("getObject"), 0);
    assert_eq!(portal.calls("getObject"), 9);
    let faults: Vec<Option<Fault>> = portal
        .requests()
        .iter()
        .skip(1)
        .map(|r| r.fault.clone())
        .collect();
    assert_eq!(faults[0], Some(Fault::InternalError));
    assert_eq!(faults[8], None);
}

#[test]
fn service_qualified_faults_take_precedence() {
    let (portal, account) = start();
    portal.inject("SoftLayer_Account::getObject", Fault::InternalError, 1);
    let order_id = order(&portal, "www.q.example.com");
    // getObject of another service is not hit by the qualified fault.
    let r = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate_Request/{order_id}.json"
        ))
        .auth(&account),
    );
    assert_eq!(r.status, 200);
    let r = send(
        &portal,
        Req::get("SoftLayer_Account/getObject.json").auth(&account),
    );
    assert_eq!(r.status, 500);
    assert_eq!(portal.calls("SoftLayer_Account::getObject"), 1);
    assert_eq!(portal.calls("getObject"), 2);
}

#[test]
fn redirect_answers_with_its_location_and_does_nothing() {
    let (portal, account) = start();
    let id = order(&portal, "www.redirect.example.com");
    let location = "http://127.0.0.1:9/elsewhere/resendEmail.json";
    portal.inject(
        "resendEmail",
        Fault::Redirect {
            status: 307,
            location: location.into(),
        },
        1,
    );
    let answer = send(
        &portal,
        Req::post(
            &format!("SoftLayer_Security_Certificate_Request/{id}/resendEmail.json"),
            json!({"parameters": ["FulfillmentEmail"]}),
        )
        .auth(&account),
    );
    assert_eq!(answer.status, 307);
    assert_eq!(answer.header("Location"), Some(location));
    assert!(answer.body.is_empty());
    assert!(portal.resends().is_empty(), "a redirect is not performed");
}

#[test]
fn drop_closes_without_an_answer_and_does_nothing() {
    let (portal, account) = start();
    let id = order(&portal, "www.drop.example.com");
    portal.inject("resendEmail", Fault::Drop, 1);
    let mut conn = Conn::open(&portal);
    let answer = conn.request(
        &Req::post(
            &format!("SoftLayer_Security_Certificate_Request/{id}/resendEmail.json"),
            json!({"parameters": ["FulfillmentEmail"]}),
        )
        .auth(&account),
    );
    assert!(answer.is_none(), "no answer at all");
    assert!(
        portal.resends().is_empty(),
        "a dropped call is not performed"
    );
    let record = portal.requests().pop().unwrap();
    assert_eq!((record.status, record.fault), (None, Some(Fault::Drop)));
    assert!(
        record.body.contains("FulfillmentEmail"),
        "the request was read in full"
    );
}

#[test]
fn lost_response_after_create_stores_the_certificate() {
    let (portal, account) = start();
    let p = pki("www.lost.example.com");
    portal.inject("createObject", Fault::LostResponse, 1);
    let mut conn = Conn::open(&portal);
    let answer = conn.request(
        &Req::post(
            "SoftLayer_Security_Certificate/createObject.json",
            json!({"parameters": [template(&p.leaf_pem, &p.leaf_key_pem, Some(&p.intermediate_pem))]}),
        )
        .auth(&account),
    );
    assert!(answer.is_none());
    let stored = portal.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].common_name, "www.lost.example.com");
    // The client can find it afterwards.
    let filter =
        json!({"securityCertificates": {"commonName": {"operation": "www.lost.example.com"}}})
            .to_string();
    let found = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Account/getSecurityCertificates.json?objectFilter={}",
            enc(&filter)
        ))
        .auth(&account),
    );
    assert_eq!(found.json()[0]["id"], json!(stored[0].id));
}

#[test]
fn delay_performs_the_call_and_answers_late() {
    let (portal, account) = start();
    let id = order(&portal, "www.slow.example.com");
    let resend = Req::post(
        &format!("SoftLayer_Security_Certificate_Request/{id}/resendEmail.json"),
        json!({"parameters": ["FulfillmentEmail"]}),
    )
    .auth(&account)
    .bytes();

    // The work is done at once: with the answer held back for a minute, the resend is
    // there long before. The resend hook runs once the work is done and before the delay
    // starts; it holds the server there until the test has looked.
    portal.inject("resendEmail", Fault::Delay(Duration::from_secs(60)), 1);
    let (reached, hook_reached) = mpsc::channel();
    let (release, hook_released) = mpsc::channel::<()>();
    let hook_released = Mutex::new(hook_released);
    portal.set_on_resend(Some(Box::new(move |order_id| {
        reached.send(order_id).unwrap();
        let _ = hook_released
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60));
    })));
    let mut slow = Conn::open(&portal);
    slow.send_raw(&resend);
    assert_eq!(
        hook_reached.recv_timeout(Duration::from_secs(30)),
        Ok(id),
        "the call was performed before the delay"
    );
    assert_eq!(portal.resends(), vec![(id, "FulfillmentEmail".to_string())]);
    slow.stream.set_nonblocking(true).unwrap();
    let early = slow.stream.read(&mut [0u8; 1]);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no answer yet: {early:?}"
    );
    release.send(()).unwrap();
    portal.set_on_resend(None);

    // Only the answer waits, for the whole delay: the server starts waiting once it has
    // read the request, which is after it was sent.
    let delay = Duration::from_millis(700);
    portal.inject("resendEmail", Fault::Delay(delay), 1);
    let mut conn = Conn::open(&portal);
    let sent = Instant::now();
    conn.send_raw(&resend);
    let answer = conn.read_response().unwrap();
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}",
        sent.elapsed()
    );
    assert_eq!(answer.json(), json!(true));
    assert_eq!(portal.resends().len(), 2);
}

// ---------------------------------------------------------------------------------------
// The request log
// ---------------------------------------------------------------------------------------

#[test]
fn the_log_shows_where_credentials_went() {
    let (portal, account) = start();
    let id = order(&portal, "www.log.example.com");
    send(
        &portal,
        Req::get("SoftLayer_Account/getObject.json?objectMask=mask%5Bid%5D").auth(&account),
    );
    send(
        &portal,
        Req::post(
            &format!("SoftLayer_Security_Certificate_Request/{id}/resendEmail.json"),
            json!({"parameters": ["FulfillmentEmail"]}),
        )
        .auth(&account),
    );
    // A careless client that puts the key in the URL is visible.
    send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Account/getObject.json?apiKey={}",
            account.api_key
        ))
        .auth(&account),
    );
    let records = portal.requests();
    assert_eq!(records.len(), 3);
    let leaks: Vec<&str> = records
        .iter()
        .filter(|r| {
            r.target.contains(&account.api_key)
                || r.query.contains(&account.api_key)
                || r.body.contains(&account.api_key)
        })
        .map(|r| r.target.as_str())
        .collect();
    assert_eq!(leaks.len(), 1);
    assert!(leaks[0].contains("apiKey="));
    for record in &records {
        assert!(record.auth.present() && record.auth.is_valid());
        let authorization = record
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .unwrap();
        assert_eq!(authorization.1, "(redacted)");
        assert!(
            !format!("{record:?}").contains(
                &base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", account.username, account.api_key))
            )
        );
    }
    assert_eq!(records[0].http_method, "GET");
    assert_eq!(
        records[0].path,
        "/rest/v3.1/SoftLayer_Account/getObject.json"
    );
    assert_eq!(records[0].query, "objectMask=mask%5Bid%5D");
    assert_eq!(records[0].query_param("objectMask"), Some("mask[id]"));
    assert_eq!(records[1].http_method, "POST");
    assert_eq!(
        serde_json::from_str::<Value>(&records[1].body).unwrap(),
        json!({"parameters": ["FulfillmentEmail"]})
    );
    assert_eq!(portal.calls("getObject"), 2);
    assert_eq!(portal.calls("resendEmail"), 1);
    assert_eq!(portal.calls("createObject"), 0);
    portal.clear_requests();
    assert!(portal.requests().is_empty());
}

// ---------------------------------------------------------------------------------------
// HTTP: keep-alive, malformed requests, limits, shutdown
// ---------------------------------------------------------------------------------------

#[test]
fn connections_are_kept_alive_and_pipelining_works() {
    let (portal, account) = start();
    let mut conn = Conn::open(&portal);
    for _ in 0..3 {
        let r = conn
            .request(&Req::get("SoftLayer_Account/getObject.json").auth(&account))
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
    }
    // Errors keep the connection too.
    let r = conn
        .request(&Req::get("SoftLayer_Account/nope.json").auth(&account))
        .unwrap();
    assert_eq!(r.status, 500);
    // Two requests in one write.
    let mut both = Req::get("SoftLayer_Account/getObject.json")
        .auth(&account)
        .bytes();
    both.extend(
        Req::post(
            "SoftLayer_Security_Certificate/findByCommonName.json",
            json!({"parameters": ["x"]}),
        )
        .auth(&account)
        .bytes(),
    );
    conn.send_raw(&both);
    assert_eq!(
        conn.read_response().unwrap().json()["id"],
        json!(account.id)
    );
    assert_eq!(conn.read_response().unwrap().json(), json!([]));
    let connections: Vec<u64> = portal.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections.len(), 6);
    assert!(connections.iter().all(|c| *c == connections[0]));

    // Connection: close is honoured.
    let r = conn
        .request(
            &Req::get("SoftLayer_Account/getObject.json")
                .auth(&account)
                .header("Connection", "close"),
        )
        .unwrap();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(conn.closed_by_server());

    // HTTP/1.0 closes unless asked otherwise.
    let mut old = Conn::open(&portal);
    let mut bytes = Req::get("SoftLayer_Account/getObject.json")
        .auth(&account)
        .bytes();
    let head = String::from_utf8(bytes.clone())
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    bytes = head.into_bytes();
    old.send_raw(&bytes);
    assert_eq!(old.read_response().unwrap().status, 200);
    assert!(old.closed_by_server());
}

#[test]
fn malformed_requests_get_400_family_answers_and_the_server_lives_on() {
    let (portal, account) = start();

    let mut garbage = Conn::open(&portal);
    garbage.send_raw(b"\x00\x01 not http\r\n\r\n");
    let r = garbage.read_response().unwrap();
    assert_eq!(r.status, 400);
    assert!(garbage.closed_by_server());

    let mut chunked = Conn::open(&portal);
    chunked.send_raw(
        "POST /rest/v3.1/SoftLayer_Account/getObject.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string()
        .as_bytes(),
    );
    assert_eq!(chunked.read_response().unwrap().status, 411);

    let mut huge = Conn::open(&portal);
    huge.send_raw(
        format!(
            "POST /rest/v3.1/SoftLayer_Security_Certificate/createObject.json HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            portal::MAX_REQUEST_BYTES + 1
        )
        .as_bytes(),
    );
    assert_eq!(huge.read_response().unwrap().status, 413);

    let mut bad_length = Conn::open(&portal);
    bad_length.send_raw(b"POST /rest/v3.1/SoftLayer_Account/getObject.json HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
    assert_eq!(bad_length.read_response().unwrap().status, 400);

    let mut long_head = Conn::open(&portal);
    let mut bytes = b"GET /rest/v3.1/SoftLayer_Account/getObject.json HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        bytes.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    let _ = long_head.stream.write_all(&bytes);
    assert_eq!(long_head.read_response().unwrap().status, 431);

    let bad_json = send(
        &portal,
        Req::new(
            "POST",
            &api("SoftLayer_Security_Certificate/createObject.json"),
        )
        .body("{not json")
        .auth(&account),
    );
    bad_json.assert_error(
        400,
        "SoftLayer_Exception_WebService_BadRequest",
        "Bad request",
    );
    let not_a_list = send(
        &portal,
        Req::post(
            "SoftLayer_Security_Certificate/createObject.json",
            json!({"parameters": 5}),
        )
        .auth(&account),
    );
    assert_eq!(not_a_list.status, 400);
    let bad_escape = send(
        &portal,
        Req::new(
            "GET",
            "/rest/v3.1/SoftLayer_Account/getObject.json?objectMask=%zz",
        )
        .auth(&account),
    );
    assert_eq!(bad_escape.status, 400);
    let bad_verb = send(
        &portal,
        Req::new("PATCH", &api("SoftLayer_Account.json")).auth(&account),
    );
    assert_eq!(bad_verb.status, 405);

    // Expect: 100-continue is answered before the body is sent.
    let mut expect = Conn::open(&portal);
    let body = json!({"parameters": [account.id]}).to_string();
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", account.username, account.api_key));
    expect.send_raw(
        format!(
            "POST /rest/v3.1/SoftLayer_Security_Certificate_Request/getSslCertificateRequests.json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    expect.fill().unwrap();
    assert!(expect.buffer.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    expect.send_raw(body.as_bytes());
    assert_eq!(expect.read_response().unwrap().json(), json!([]));

    // Still serving.
    let ok = send(
        &portal,
        Req::get("SoftLayer_Account/getObject.json").auth(&account),
    );
    assert_eq!(ok.status, 200);
    let statuses: Vec<Option<u16>> = portal.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&Some(411))
            && statuses.contains(&Some(413))
            && statuses.contains(&Some(431))
    );
}

#[test]
fn dropping_the_portal_stops_it() {
    let (portal, account) = start();
    let addr = portal.addr();
    let mut idle = Conn::open(&portal);
    assert_eq!(
        idle.request(&Req::get("SoftLayer_Account/getObject.json").auth(&account))
            .unwrap()
            .status,
        200
    );
    // A slow answer in flight must not hold the drop up.
    portal.inject("getObject", Fault::Delay(Duration::from_secs(60)), 1);
    let mut slow = Conn::open(&portal);
    slow.send_raw(
        &Req::get("SoftLayer_Account/getObject.json")
            .auth(&account)
            .bytes(),
    );
    // The portal logs a request when its outcome is decided, just before the delay starts.
    wait_for("the slow request to reach its delay", || {
        portal.calls("getObject") == 2
    });

    let started = Instant::now();
    drop(portal);
    // Far less than the minute the slow answer is held back: the drop did not wait for it.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(idle.closed_by_server(), "open connections are shut down");
    assert!(slow.read_response().is_none());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(_) => break,
            Ok(mut s) => {
                // Accepted by a listener that is going away, or by the kernel backlog: it
                // must not be served. Either way the connection is closed at once; the
                // long timeout leaves a server time to answer if it were still serving.
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.write_all(
                    b"GET /rest/v3.1/SoftLayer_Account.json HTTP/1.1\r\nHost: x\r\n\r\n",
                );
                let mut buf = [0u8; 16];
                assert!(
                    !matches!(s.read(&mut buf), Ok(n) if n > 0),
                    "served after drop"
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "the port still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// With reqwest, the HTTP stack fulfill uses
// ---------------------------------------------------------------------------------------

fn reqwest_client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
}

#[test]
fn reqwest_reuses_connections_and_sees_faults() {
    let (portal, account) = start();
    // Generous for the calls that must succeed on a busy machine; the timeout is checked
    // with a per-request one against an answer held back far longer.
    let client = reqwest_client(Duration::from_secs(30));
    let url = format!("{}SoftLayer_Account/getObject.json", portal.endpoint());
    for _ in 0..3 {
        let r = client
            .get(&url)
            .basic_auth(&account.username, Some(&account.api_key))
            .query(&[("objectMask", "mask[id]")])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().unwrap()["id"], json!(account.id));
    }
    let connections: Vec<u64> = portal.requests().iter().map(|r| r.connection).collect();
    assert!(
        connections.iter().all(|c| *c == connections[0]),
        "keep-alive reused: {connections:?}"
    );

    portal.inject("getObject", Fault::Delay(Duration::from_secs(60)), 1);
    let timed_out = client
        .get(&url)
        .basic_auth(&account.username, Some(&account.api_key))
        .timeout(Duration::from_secs(1))
        .send()
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");

    portal.inject("getObject", Fault::Drop, 1);
    let dropped = client
        .get(&url)
        .basic_auth(&account.username, Some(&account.api_key))
        .send();
    assert!(dropped.is_err(), "{dropped:?}");

    let p = pki("www.reqwest.example.com");
    portal.inject("createObject", Fault::LostResponse, 1);
    let lost = client
        .post(format!("{}SoftLayer_Security_Certificate/createObject.json", portal.endpoint()))
        .basic_auth(&account.username, Some(&account.api_key))
        .json(&json!({"parameters": [template(&p.leaf_pem, &p.leaf_key_pem, Some(&p.intermediate_pem))]}))
        .send();
    assert!(lost.is_err());
    assert_eq!(portal.certificates().len(), 1);

    // A query the way reqwest encodes it (spaces as '+').
    let filter = json!({"securityCertificates": {"commonName": {"operation": "_= www.reqwest.example.com"}}}).to_string();
    let found: Value = client
        .get(format!(
            "{}SoftLayer_Account/getSecurityCertificates.json",
            portal.endpoint()
        ))
        .basic_auth(&account.username, Some(&account.api_key))
        .query(&[("objectFilter", filter.as_str()), ("resultLimit", "0,100")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// LBaaS (docs/softlayer-api.md §7)
// ---------------------------------------------------------------------------------------

/// A portal with one certificate serving one HTTPS listener; (portal, account, certificate
/// id, load balancer uuid, listener uuid).
fn with_listener() -> (LocalPortal, Account, i64, String, String) {
    let (portal, account) = start();
    let p = pki("lb.example.com");
    let id = create(
        &portal,
        &account,
        template(&p.leaf_pem, &p.leaf_key_pem, Some(&p.intermediate_pem)),
    )
    .json()["id"]
        .as_i64()
        .unwrap();
    let balancer = portal.add_load_balancer("web", vec![ListenerSpec::https(id)]);
    let listener = portal.load_balancers()[0].listeners[0].uuid.clone();
    (portal, account, id, balancer, listener)
}

#[test]
fn a_certificate_lists_its_listeners_and_counts_them_as_services() {
    let (portal, account, id, _, listener) = with_listener();
    let listeners = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate/{id}/getLbaasListeners.json"
        ))
        .auth(&account),
    );
    assert_eq!(listeners.status, 200);
    let body = listeners.json();
    assert_eq!(body[0]["uuid"], listener.as_str());
    assert_eq!(body[0]["tlsCertificateId"], id);
    assert_eq!(body[0]["defaultPool"]["protocolPort"], 8080);
    let count = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate/{id}/getAssociatedServiceCount.json"
        ))
        .auth(&account),
    );
    assert_eq!(count.json(), json!(1));
    // deleteObject refuses a certificate in use (§7.1).
    let delete = send(
        &portal,
        Req::get(&format!(
            "SoftLayer_Security_Certificate/{id}/deleteObject.json"
        ))
        .auth(&account),
    );
    delete.assert_error(
        500,
        "SoftLayer_Exception_Public",
        "You may not remove a certificate with associated services.",
    );
    assert_eq!(portal.certificates().len(), 1);
}

#[test]
fn an_update_names_its_listener_or_creates_one_and_the_load_balancer_applies_it() {
    let (portal, account, id, balancer, listener) = with_listener();
    portal.set_pending_polls_after_update(2);
    let update = |configuration: Value| {
        send(
            &portal,
            Req::post(
                "SoftLayer_Network_LBaaS_Listener/updateLoadBalancerProtocols.json",
                json!({"parameters": [balancer, [configuration]]}),
            )
            .auth(&account),
        )
    };
    let answer = update(
        json!({"listenerUuid": listener, "frontendProtocol": "HTTPS",
        "frontendPort": 443, "backendProtocol": "HTTP", "backendPort": 8080, "tlsCertificateId": id}),
    );
    assert_eq!(answer.status, 200, "{}", answer.json());
    let status = || {
        send(
            &portal,
            Req::post(
                "SoftLayer_Network_LBaaS_LoadBalancer/getLoadBalancer.json",
                json!({"parameters": [balancer]}),
            )
            .auth(&account),
        )
        .json()["provisioningStatus"]
            .clone()
    };
    // Another update while UPDATE_PENDING is refused.
    let refused = update(json!({"listenerUuid": listener, "tlsCertificateId": id}));
    assert_eq!(refused.status, 500);
    assert_eq!(status(), "UPDATE_PENDING");
    assert_eq!(status(), "UPDATE_PENDING");
    assert_eq!(status(), "ACTIVE");
    // Without a listenerUuid, a listener is created (§7.3).
    let created = update(json!({"frontendProtocol": "HTTP", "frontendPort": 80,
        "backendProtocol": "HTTP", "backendPort": 80}));
    assert_eq!(created.status, 200);
    assert_eq!(portal.load_balancers()[0].listeners.len(), 2);
    let log = portal.listener_updates();
    assert_eq!(log.len(), 2);
    assert!(!log[0].created && log[1].created);
    // An unknown load balancer.
    let unknown = send(
        &portal,
        Req::post(
            "SoftLayer_Network_LBaaS_LoadBalancer/getLoadBalancer.json",
            json!({"parameters": ["no-such-uuid"]}),
        )
        .auth(&account),
    );
    unknown.assert_error_containing(
        404,
        "SoftLayer_Exception_Network_LBaaS_ObjectNotFound",
        "no-such-uuid",
    );
}

//! The portal half against the local portal of tests/support/portal/: `orders`,
//! `resend`, `check`, upload on `import`, every injected fault, the no-duplicate rule,
//! credential precedence and secret hygiene. The real binary, a real SQLite file.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use predicates::prelude::*;
use support::dovecot::{ServerCert, TestCert, make_cert};
use support::portal::{Account, Auth, Fault, LocalPortal, NewCertificate, OrderSpec};
use support::{Home, open_db, samples, stdout_json};

const ALPHA: &str = "www.alpha.example.com";

struct Setup {
    home: Home,
    portal: LocalPortal,
    config: PathBuf,
    order: i64,
}

fn api_key() -> String {
    Account::default().api_key
}

/// A portal with one approved order for sample 01's name and CSR, and a config that reaches
/// it with short timeouts and retry waits, reading the key through api_key_cmd.
fn setup() -> Setup {
    setup_with(|_| {})
}

fn setup_with(change: impl FnOnce(&mut OrderSpec)) -> Setup {
    let home = Home::new();
    let portal = LocalPortal::start(Account::default());
    let csr = std::fs::read_to_string(samples().join("keys/www.alpha.example.com.csr")).unwrap();
    let mut spec = OrderSpec {
        approver_email: "admin@alpha.example.com".into(),
        ..OrderSpec::new(ALPHA, &csr)
    };
    change(&mut spec);
    let order = portal.add_order(spec);
    let key_file = home.path().join("sl-key");
    std::fs::write(&key_file, format!("{}\n", api_key())).unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[portal]\nendpoint = \"{}\"\nusername = \"{}\"\napi_key_cmd = \"cat {}\"\ntimeout = \"1s\"\nretry_wait = \"10ms\"\n\
             [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            portal.endpoint(),
            Account::default().username,
            key_file.display(),
            samples().join("keys").display(),
            samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    Setup {
        home,
        portal,
        config,
        order,
    }
}

impl Setup {
    fn fulfill(&self) -> assert_cmd::Command {
        let mut cmd = self.home.fulfill();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    fn import_alpha(&self) -> assert_cmd::Command {
        let mut cmd = self.fulfill();
        cmd.args(["import", "--order", &self.order.to_string()])
            .arg(samples().join("01-geotrust-inline-pem.eml"));
        cmd
    }
}

#[test]
fn orders_lists_the_account_orders_and_what_was_imported() {
    let s = setup();
    let output = s.fulfill().arg("orders").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("ORDER    COMMON NAME"), "{text}");
    assert!(
        text.contains(ALPHA)
            && text.contains("Approved")
            && text.contains("admin@alpha.example.com")
    );
    assert!(
        (text.lines().nth(1).unwrap().trim_end())
            .ends_with("no        yes: issued, no certificate yet; a resend is due  -"),
        "not imported, pending, and no certificate in use: {text}"
    );

    s.import_alpha().assert().success();
    let json = stdout_json(&s.fulfill().args(["orders", "--json"]).output().unwrap());
    assert_eq!(json[0]["id"], s.order);
    assert_eq!(json[0]["status"], "Approved");
    assert_eq!(json[0]["approver_email"], "admin@alpha.example.com");
    assert_eq!(json[0]["imported_certificate_id"], 1);
    // The account id came from SoftLayer_Account/getObject with mask id.
    let account_call = s
        .portal
        .requests()
        .into_iter()
        .find(|r| {
            r.method.as_deref() == Some("getObject")
                && r.service.as_deref() == Some("SoftLayer_Account")
        })
        .unwrap();
    assert_eq!(account_call.query_param("objectMask"), Some("mask[id]"));
}

#[test]
fn resend_asks_the_ca_and_records_it() {
    let s = setup();
    s.fulfill()
        .args(["resend", "--order", &s.order.to_string()])
        .assert()
        .success()
        .stderr(predicate::str::contains("to admin@alpha.example.com"))
        .stdout(predicate::str::contains("Fulfillment email requested"));
    // Standard input is not a terminal here: no question, no wait.
    assert_eq!(
        s.portal.resends(),
        vec![(s.order, "FulfillmentEmail".to_string())]
    );
    let db = open_db(&s.home.default_db());
    let (state, requested): (String, Option<String>) = db
        .query_row(
            "SELECT state, resend_requested_at FROM orders WHERE order_id = ?1",
            [s.order],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "resend_requested");
    assert!(requested.unwrap().ends_with('Z'));
    let events: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE order_id = ?1 AND kind = 'order_state'",
            [s.order],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 1);
}

#[test]
fn a_refused_resend_shows_the_api_message_and_code() {
    let s = setup_with(|spec| spec.refuses_resend = true);
    s.fulfill()
        .args(["resend", "--yes", "--order", &s.order.to_string()])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("SoftLayer_Exception_Public")
                .and(predicate::str::contains("no longer supported"))
                .and(predicate::str::contains(format!("order {}", s.order))),
        );
    let db = open_db(&s.home.default_db());
    let state: String = db
        .query_row(
            "SELECT state FROM orders WHERE order_id = ?1",
            [s.order],
            |r| r.get(0),
        )
        .unwrap();
    // The API's own exception: remembered, so --all-pending leaves the order alone.
    assert_eq!(state, "refused");
    // A refusal is an answer, not a fault: it is not retried.
    assert_eq!(s.portal.calls("resendEmail"), 1);
}

#[test]
fn a_resend_without_an_answer_keeps_its_time() {
    let s = setup();
    // The portal performs the resend, then answers after the client has given up.
    s.portal
        .inject("resendEmail", Fault::Delay(Duration::from_secs(3)), 1);
    s.fulfill()
        .args(["resend", "--yes", "--order", &s.order.to_string()])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("no definite answer to the resend")
                .and(predicate::str::contains("its time is kept"))
                .and(predicate::str::contains("no complete answer within")),
        );
    assert_eq!(
        s.portal.calls("resendEmail"),
        1,
        "not retried: the CA may be mailing already"
    );
    let db = open_db(&s.home.default_db());
    let (state, requested, last_error): (String, Option<String>, Option<String>) = db
        .query_row(
            "SELECT state, resend_requested_at, last_error FROM orders WHERE order_id = ?1",
            [s.order],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(state, "resend_requested");
    assert!(requested.is_some(), "the resend time is kept");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("no complete answer")),
        "{last_error:?}"
    );
}

#[test]
fn resend_of_an_unknown_order_names_it() {
    let s = setup();
    s.fulfill()
        .args(["resend", "--order", "999999"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("999999").and(predicate::str::contains(
                "SoftLayer_Exception_ObjectNotFound",
            )),
        );
    assert!(s.portal.resends().is_empty());
}

#[test]
fn import_uploads_certificate_chain_key_and_csr() {
    let s = setup();
    let output = s.import_alpha().arg("--json").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = stdout_json(&output);
    assert_eq!(results[0]["upload"], "uploaded");
    let stored = s.portal.certificates();
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    assert_eq!(results[0]["portal_certificate_id"], stored.id);
    assert_eq!(results[0]["sha256"], stored.sha256.as_str());
    assert_eq!(stored.common_name, ALPHA);
    let key = std::fs::read_to_string(samples().join("keys/www.alpha.example.com.key")).unwrap();
    assert_eq!(stored.private_key, key);
    let csr = std::fs::read_to_string(samples().join("keys/www.alpha.example.com.csr")).unwrap();
    assert_eq!(
        stored.certificate_signing_request.as_deref(),
        Some(csr.as_str())
    );
    assert_eq!(
        stored
            .intermediate_certificate
            .as_deref()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        1
    );
    assert!(
        stored
            .notes
            .as_deref()
            .unwrap()
            .contains(&format!("order {}", s.order))
    );

    let db = open_db(&s.home.default_db());
    let (portal_id, order_id): (i64, i64) = db
        .query_row(
            "SELECT portal_certificate_id, order_id FROM certificates",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((portal_id, order_id), (stored.id, s.order));
    let uploaded: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'certificate_uploaded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(uploaded, 1);

    // The order's name is the name to cover: with --order, a wrong name is rejected.
    s.fulfill()
        .args(["import", "--order", &s.order.to_string()])
        .arg(samples().join("22-reject-key-mismatch.eml"))
        .assert()
        .code(4);
}

#[test]
fn importing_again_uploads_nothing() {
    let s = setup();
    s.import_alpha().assert().success();
    s.import_alpha()
        .assert()
        .success()
        .stdout(predicate::str::contains("already imported"));
    assert_eq!(s.portal.calls("createObject"), 1);
    assert_eq!(s.portal.certificates().len(), 1);
}

#[test]
fn a_certificate_already_in_the_portal_is_not_uploaded_again() {
    let s = setup();
    let mail = std::fs::read_to_string(samples().join("01-geotrust-inline-pem.eml")).unwrap();
    let blocks = pem::parse_many(mail.replace("\r\n", "\n")).unwrap();
    let existing = s
        .portal
        .add_certificate(NewCertificate {
            certificate: pem::encode(&blocks[0]),
            private_key: std::fs::read_to_string(samples().join("keys/www.alpha.example.com.key"))
                .unwrap(),
            intermediate_certificate: Some(pem::encode(&blocks[1])),
            ..NewCertificate::default()
        })
        .unwrap();
    let results = stdout_json(&s.import_alpha().arg("--json").output().unwrap());
    assert_eq!(results[0]["upload"], "already_in_portal");
    assert_eq!(results[0]["portal_certificate_id"], existing);
    assert_eq!(s.portal.calls("createObject"), 0);
    assert_eq!(s.portal.certificates().len(), 1);
}

#[test]
fn a_lost_answer_after_create_makes_no_duplicate() {
    for fault in [
        Fault::LostResponse,
        Fault::Delay(Duration::from_millis(1500)),
    ] {
        let s = setup();
        s.portal.inject("createObject", fault.clone(), 1);
        let results = stdout_json(&s.import_alpha().arg("--json").output().unwrap());
        assert_eq!(
            s.portal.certificates().len(),
            1,
            "{fault:?}: exactly one certificate in the portal"
        );
        assert_eq!(
            s.portal.calls("createObject"),
            1,
            "{fault:?}: not created twice"
        );
        assert_eq!(
            results[0]["portal_certificate_id"],
            s.portal.certificates()[0].id,
            "{fault:?}"
        );
        assert_eq!(results[0]["upload"], "uploaded", "{fault:?}");
    }
}

#[test]
fn transient_faults_on_create_are_retried_after_a_search() {
    for fault in [
        Fault::InternalError,
        Fault::RateLimited,
        Fault::Drop,
        Fault::Empty200,
        Fault::ErrorBody200,
    ] {
        let s = setup();
        s.portal.inject("createObject", fault.clone(), 1);
        s.import_alpha().assert().success();
        assert_eq!(s.portal.certificates().len(), 1, "{fault:?}");
        assert_eq!(
            s.portal.calls("createObject"),
            2,
            "{fault:?}: one failed attempt, one good"
        );
        // Before the second attempt the store was searched again.
        assert!(s.portal.calls("getSecurityCertificates") >= 2, "{fault:?}");
    }
}

#[test]
fn transient_faults_on_reads_are_retried() {
    for fault in [
        Fault::InternalError,
        Fault::RateLimited,
        Fault::RateLimitedAs500,
        Fault::Drop,
        Fault::Empty200,
        Fault::ErrorBody200,
        Fault::Delay(Duration::from_millis(1500)),
    ] {
        let s = setup();
        s.portal
            .inject("getSslCertificateRequests", fault.clone(), 2);
        s.fulfill()
            .arg("orders")
            .assert()
            .success()
            .stdout(predicate::str::contains(ALPHA));
        assert_eq!(
            s.portal.calls("getSslCertificateRequests"),
            3,
            "{fault:?}: two faults, then success"
        );
    }
    // resendEmail is retried too: a second mail is harmless, a missing one is not.
    let s = setup();
    s.portal.inject("resendEmail", Fault::InternalError, 1);
    s.fulfill()
        .args(["resend", "--order", &s.order.to_string()])
        .assert()
        .success();
    assert_eq!(s.portal.resends().len(), 1);
}

#[test]
fn faults_that_outlast_the_retries_fail_with_the_reason() {
    let s = setup();
    s.portal
        .inject("getSslCertificateRequests", Fault::InternalError, 10);
    s.fulfill().arg("orders").assert().code(1).stderr(
        predicate::str::contains("Internal Error")
            .and(predicate::str::contains("SoftLayer_Exception_Public")),
    );
    assert_eq!(
        s.portal.calls("getSslCertificateRequests"),
        4,
        "first try and 3 retries"
    );

    let s = setup();
    s.portal.inject(
        "getSslCertificateRequests",
        Fault::Delay(Duration::from_secs(3)),
        10,
    );
    s.fulfill()
        .arg("orders")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no complete answer within"));
}

#[test]
fn a_failed_upload_keeps_the_record_and_the_next_run_uploads() {
    let s = setup();
    s.portal.inject(
        "createObject",
        Fault::Raw {
            status: 500,
            body: r#"{"error":"Unable to validate the certificate.","code":"SoftLayer_Exception_Public"}"#.into(),
        },
        1,
    );
    s.import_alpha().assert().code(1).stdout(
        predicate::str::contains("recorded locally but not uploaded")
            .and(predicate::str::contains("Unable to validate")),
    );
    assert_eq!(
        s.portal.calls("createObject"),
        1,
        "an answer from the API is not retried"
    );
    let db = open_db(&s.home.default_db());
    let portal_id: Option<i64> = db
        .query_row("SELECT portal_certificate_id FROM certificates", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(portal_id, None);
    drop(db);

    s.import_alpha().assert().success();
    assert_eq!(s.portal.certificates().len(), 1);
    let db = open_db(&s.home.default_db());
    let portal_id: Option<i64> = db
        .query_row("SELECT portal_certificate_id FROM certificates", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(portal_id, Some(s.portal.certificates()[0].id));
}

#[test]
fn no_upload_and_dry_run_write_nothing_to_the_portal() {
    let s = setup();
    s.import_alpha().arg("--no-upload").assert().success();
    s.import_alpha()
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(predicate::str::contains("would upload"));
    assert_eq!(s.portal.calls("createObject"), 0);
    assert!(s.portal.certificates().is_empty());
}

#[test]
fn check_reports_portal_authentication() {
    let s = setup();
    s.fulfill().arg("check").assert().success().stdout(
        predicate::str::contains("portal       ok").and(predicate::str::contains(format!(
            "account {}",
            Account::default().id
        ))),
    );

    std::fs::write(s.home.path().join("sl-key"), "not-the-key\n").unwrap();
    s.fulfill().arg("check").assert().code(1).stdout(
        predicate::str::contains("FAILED").and(predicate::str::contains("refused the credentials")),
    );
}

#[test]
fn credentials_follow_env_then_config_then_softlayer_file() {
    let s = setup();
    s.portal.add_user("apikey", "ibm-cloud-key");
    s.portal.add_user("env-user", "env-key");
    let last_user = |portal: &LocalPortal| match portal.requests().last().map(|r| r.auth.clone()) {
        Some(Auth::Valid { username }) => username,
        other => panic!("last request not authenticated: {other:?}"),
    };

    // ~/.softlayer alone, with slcli's XML-RPC endpoint mapped to REST.
    let softlayer = s.home.path().join(".softlayer");
    let xmlrpc = s.portal.endpoint().replace("/rest/", "/xmlrpc/");
    std::fs::write(&softlayer, format!("[softlayer]\nusername = apikey\napi_key = ibm-cloud-key\nendpoint_url = {xmlrpc}\ntimeout = 5\n")).unwrap();
    std::fs::set_permissions(&softlayer, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.home.fulfill().arg("check").assert().success();
    assert_eq!(last_user(&s.portal), "apikey");

    // The config file wins over ~/.softlayer.
    s.fulfill().arg("check").assert().success();
    assert_eq!(last_user(&s.portal), Account::default().username);

    // The environment wins over the config file.
    s.fulfill()
        .env("SL_USERNAME", "env-user")
        .env("SL_API_KEY", "env-key")
        .arg("check")
        .assert()
        .success();
    assert_eq!(last_user(&s.portal), "env-user");

    // A ~/.softlayer holding a key, readable by others, is refused.
    std::fs::set_permissions(&softlayer, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.home
        .fulfill()
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "chmod 600 {}",
            softlayer.display()
        )));
}

#[test]
fn a_literal_api_key_needs_a_private_config_file() {
    let s = setup();
    let config = s.home.path().join("literal.toml");
    std::fs::write(
        &config,
        format!(
            "[portal]\nendpoint = \"{}\"\nusername = \"{}\"\napi_key = \"{}\"\nretry_wait = \"10ms\"\n",
            s.portal.endpoint(),
            Account::default().username,
            api_key()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.home
        .fulfill()
        .arg("--config")
        .arg(&config)
        .arg("orders")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "chmod 600 {}",
            config.display()
        )));
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.home
        .fulfill()
        .arg("--config")
        .arg(&config)
        .arg("orders")
        .assert()
        .success();
}

#[test]
fn the_api_key_appears_nowhere() {
    let s = setup();
    let key = api_key();
    let mut seen = Vec::new();
    s.portal
        .inject("getSslCertificateRequests", Fault::InternalError, 1);
    s.portal.inject("createObject", Fault::Drop, 1);
    for args in [
        vec!["-vvv", "orders"],
        vec!["-vvv", "--json", "orders"],
        vec!["-vvv", "check"],
        vec!["-vvv", "--json", "check"],
    ] {
        let output = s.fulfill().args(&args).output().unwrap();
        // A run that failed early (say, on its arguments) would have had nothing to leak.
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        seen.push(output.stdout);
        seen.push(output.stderr);
    }
    let output = s.import_alpha().arg("-vvv").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    seen.push(output.stdout);
    seen.push(output.stderr);
    // The injected faults were met, so the runs above went through their error paths too.
    assert_eq!(s.portal.pending_faults("getSslCertificateRequests"), 0);
    assert_eq!(s.portal.pending_faults("createObject"), 0);
    // A failing call shows its error, not the key.
    std::fs::write(s.home.path().join("sl-key"), format!("{key}-wrong\n")).unwrap();
    let output = s.fulfill().args(["-vvv", "orders"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    seen.push(output.stdout);
    seen.push(output.stderr);
    for text in &seen {
        assert!(
            !String::from_utf8_lossy(text).contains(&key),
            "API key leaked: {}",
            String::from_utf8_lossy(text)
        );
    }
    // Never in a URL: only in the Authorization header.
    for request in s.portal.requests() {
        assert!(
            !request.target.contains(&key),
            "API key in URL {}",
            request.target
        );
        assert!(!request.body.contains(&key), "API key in a request body");
    }
    // Never in the database.
    let db = std::fs::read(s.home.default_db()).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&key));
}

// ---------------------------------------------------------------------------------------
// Where requests go: the endpoint only; never a redirect's Location, never a proxy for a
// loopback endpoint.
// ---------------------------------------------------------------------------------------

/// A port that must see nothing: a listener nobody serves. A connection made to it waits
/// in the kernel's backlog, so [`Trap::assert_untouched`] finds it and shows what it carried.
struct Trap(std::net::TcpListener);

impl Trap {
    fn new() -> Trap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap(listener)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.0.local_addr().unwrap())
    }

    fn assert_untouched(&self, what: &str) {
        use std::io::Read;
        if let Ok((mut stream, _)) = self.0.accept() {
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            panic!(
                "{what}: a connection reached the trap, carrying {} bytes:\n{}",
                bytes.len(),
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[test]
fn a_redirect_is_not_followed_and_is_reported_with_its_location() {
    for status in [307, 308, 302] {
        let s = setup();
        let trap = Trap::new();
        let location = trap.url("/rest/v3.1/SoftLayer_Security_Certificate/createObject.json");
        s.portal.inject(
            "createObject",
            Fault::Redirect {
                status,
                location: location.clone(),
            },
            1,
        );
        let output = s.import_alpha().output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        trap.assert_untouched(&format!("HTTP {status}"));
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("recorded locally but not uploaded")
                && stdout.contains(&format!("HTTP {status}"))
                && stdout.contains(&location),
            "HTTP {status}: the report names the redirect and its Location:\n{stdout}\n{stderr}"
        );
        assert_eq!(
            s.portal.calls("createObject"),
            1,
            "HTTP {status}: a redirect is an answer, not retried"
        );
        assert!(s.portal.certificates().is_empty());
    }
}

#[test]
fn a_loopback_endpoint_is_reached_without_the_proxy() {
    let s = setup();
    let trap = Trap::new();
    let proxy = trap.url("");
    let mut cmd = s.fulfill();
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(name, &proxy);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    let output = cmd.arg("orders").output().unwrap();
    trap.assert_untouched("the proxy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(ALPHA));
}

// ---------------------------------------------------------------------------------------
// TLS: the real endpoint is https; the client verifies its certificate on every call.
// ---------------------------------------------------------------------------------------

/// A TLS portal presenting `cert`, and a config that names it by `localhost`, trusting
/// `ca_file` when given (the test certificates are self-signed: each is its own anchor).
fn tls_setup(cert: &TestCert, ca_file: Option<&str>) -> (Home, LocalPortal, PathBuf) {
    let home = Home::new();
    let portal = LocalPortal::start_tls(Account::default(), cert);
    let key_file = home.path().join("sl-key");
    std::fs::write(&key_file, format!("{}\n", api_key())).unwrap();
    let mut text = format!(
        "[portal]\nendpoint = \"{}\"\nusername = \"{}\"\napi_key_cmd = \"cat {}\"\ntimeout = \"5s\"\nretry_wait = \"10ms\"\n",
        portal.endpoint(),
        Account::default().username,
        key_file.display(),
    );
    if let Some(pem) = ca_file {
        let path = home.path().join("portal-ca.pem");
        std::fs::write(&path, pem).unwrap();
        text.push_str(&format!("ca_file = \"{}\"\n", path.display()));
    }
    let config = home.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    (home, portal, config)
}

fn orders_over_tls(cert: &TestCert, ca_file: Option<&str>) -> (LocalPortal, std::process::Output) {
    let (home, portal, config) = tls_setup(cert, ca_file);
    let output = home
        .fulfill()
        .arg("--config")
        .arg(&config)
        // -v shows retries, which a refused certificate must not cause.
        .args(["-v", "orders"])
        .output()
        .unwrap();
    (portal, output)
}

/// The refusal: exit 1, the reason and the endpoint named, the way out (ca_file) given,
/// not retried, and no request (so no API key) ever reached the server.
fn assert_refused(portal: &LocalPortal, output: &std::process::Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("TLS certificate that was refused"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains(reason), "expected '{reason}' in: {stderr}");
    assert!(stderr.contains(&portal.endpoint()), "stderr: {stderr}");
    assert!(stderr.contains("[portal] ca_file"), "stderr: {stderr}");
    assert!(
        !stderr.contains("retrying"),
        "a refused certificate is not retried: {stderr}"
    );
    assert!(portal.requests().is_empty(), "a request got through");
}

#[test]
fn an_https_portal_with_a_trusted_certificate_is_used() {
    let cert = make_cert(&ServerCert::Localhost);
    let (portal, output) = orders_over_tls(&cert, Some(&cert.cert_pem));
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests = portal.requests();
    assert!(!requests.is_empty(), "no request reached the portal");
    assert!(requests.iter().all(|r| r.auth.is_valid()));
}

#[test]
fn an_expired_portal_certificate_is_refused() {
    let cert = make_cert(&ServerCert::Expired);
    let (portal, output) = orders_over_tls(&cert, Some(&cert.cert_pem));
    assert_refused(&portal, &output, "expired");
}

#[test]
fn a_portal_certificate_for_another_name_is_refused() {
    let cert = make_cert(&ServerCert::OtherName("api.elsewhere.example".into()));
    let (portal, output) = orders_over_tls(&cert, Some(&cert.cert_pem));
    assert_refused(&portal, &output, "mismatch");
}

#[test]
fn a_self_signed_portal_certificate_is_refused() {
    // Not in ca_file, so only the system store could vouch for it, and it does not.
    let cert = make_cert(&ServerCert::Localhost);
    let (portal, output) = orders_over_tls(&cert, None);
    assert_refused(&portal, &output, "self-signed");
}

#[test]
fn an_unreadable_portal_ca_file_is_an_error_naming_it() {
    let cert = make_cert(&ServerCert::Localhost);
    let (portal, output) = orders_over_tls(&cert, Some("not a certificate\n"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr.contains("[portal] ca_file"), "stderr: {stderr}");
    assert!(stderr.contains("portal-ca.pem"), "stderr: {stderr}");
    assert!(portal.requests().is_empty());
}

/// Points the setup's `[keys] dirs` at `dir` instead of samples/keys.
fn use_keys_dir(s: &Setup, dir: &std::path::Path) {
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replace(
        &samples().join("keys").display().to_string(),
        &dir.display().to_string(),
    );
    std::fs::write(&s.config, config).unwrap();
}

/// A key file that holds two keys sends only the one that matches the certificate; a DER
/// key goes to the portal as PEM (issue: the whole file was sent, and DER failed).
#[test]
fn exactly_the_matching_private_key_is_uploaded_as_pem() {
    let alpha = std::fs::read_to_string(samples().join("keys/www.alpha.example.com.key")).unwrap();
    let bravo = std::fs::read_to_string(samples().join("keys/www.bravo.example.com.key")).unwrap();
    // The matching key second, after another: both would have left the machine.
    let s = setup();
    let keys = s.home.path().join("keys-two");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("both.key"), format!("{bravo}{alpha}")).unwrap();
    use_keys_dir(&s, &keys);
    let output = s.import_alpha().arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stored = s.portal.certificates();
    assert_eq!(stored.len(), 1, "{stderr}");
    assert_eq!(stored[0].private_key, alpha);
    assert_eq!(stored[0].private_key.matches("BEGIN").count(), 1);

    // A DER (PKCS#1, as the sample) key file: sent as the same key in PEM.
    let s = setup();
    let keys = s.home.path().join("keys-der");
    std::fs::create_dir(&keys).unwrap();
    let der = openssl::rsa::Rsa::private_key_from_pem(alpha.as_bytes())
        .unwrap()
        .private_key_to_der()
        .unwrap();
    std::fs::write(keys.join("alpha.der"), der).unwrap();
    use_keys_dir(&s, &keys);
    let output = s.import_alpha().arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout_json(&output)[0]["upload"], "uploaded", "{stderr}");
    let stored = s.portal.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].private_key, alpha);
}

/// A store that answers every page of `getSecurityCertificates` full (as an API that
/// ignored resultLimit's offset would) is read for at most 50 pages: the upload stops
/// with an error that says so, instead of paging forever.
#[test]
fn the_store_is_paged_at_most_fifty_times() {
    let s = setup();
    let page: Vec<serde_json::Value> = (0..100)
        .map(|id| serde_json::json!({"id": 9000 + id, "commonName": ALPHA, "certificate": ""}))
        .collect();
    s.portal.inject(
        "getSecurityCertificates",
        Fault::Raw {
            status: 200,
            body: serde_json::Value::Array(page).to_string(),
        },
        200,
    );
    let output = s.import_alpha().output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped after 50 pages"), "{stderr}");
    assert_eq!(
        s.portal.pending_faults("getSecurityCertificates"),
        150,
        "50 pages read"
    );
    assert!(s.portal.certificates().is_empty(), "nothing created");
}

/// A certificate imported with no order (here `--no-upload`, no portal asked) is tied to
/// its order once `orders` sees whose it is: `list` then names the order too.
#[test]
fn list_names_the_order_that_orders_found() {
    let s = setup();
    s.fulfill()
        .args(["import", "--no-upload"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    let listed = stdout_json(&s.fulfill().args(["--json", "list"]).output().unwrap());
    assert!(listed[0]["order_id"].is_null(), "{listed:#}");
    let orders = stdout_json(&s.fulfill().args(["--json", "orders"]).output().unwrap());
    assert_eq!(orders[0]["imported_certificate_id"], 1, "{orders:#}");
    let listed = stdout_json(&s.fulfill().args(["--json", "list"]).output().unwrap());
    assert_eq!(listed[0]["order_id"], s.order, "{listed:#}");
}

/// At a terminal, a retry shows a status line on stderr ("portal: HTTP 500, retry 1 of 3 in
/// 1s"), and log lines carry no timestamp; away from one (cron, this test's pipes) there is
/// no status line and every log line starts with its RFC 3339 time. `--json` shows none.
#[test]
fn a_retry_shows_a_status_line_at_a_terminal_only() {
    let s = setup();
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("retry_wait = \"10ms\"", "retry_wait = \"1s\""),
    )
    .unwrap();
    let run = |json: bool| {
        s.portal
            .inject("getSslCertificateRequests", Fault::InternalError, 1);
        let mut cmd = s.home.fulfill_process();
        cmd.arg("--config").arg(&s.config).args(["-v", "orders"]);
        if json {
            cmd.arg("--json");
        }
        cmd
    };

    let Some(shown) = support::at_a_terminal(&run(false)) else {
        return;
    };
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(
        text.contains("portal: HTTP 500, retry 1 of 3 in 1s"),
        "the status line:\n{text:?}"
    );
    assert!(text.contains("\x1b["), "drawn and cleared:\n{text:?}");
    assert!(text.contains(ALPHA), "the table:\n{text}");
    assert!(
        text.contains("\nfulfill: info: ") || text.starts_with("fulfill: info: "),
        "a log line, with no timestamp at a terminal:\n{text:?}"
    );

    let json = support::at_a_terminal(&run(true)).unwrap();
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(json.status.success(), "{text}");
    assert!(
        !text.contains("retry 1 of 3 in"),
        "--json: no status line:\n{text:?}"
    );

    let piped = run(false).output().unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b') && !stderr.contains("retry 1 of 3 in"),
        "no status line without a terminal:\n{stderr:?}"
    );
    assert!(stderr.contains("retrying (1 of 3)"), "{stderr}");
    for line in stderr.lines() {
        let (at, rest) = line.split_once(' ').unwrap_or_default();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok()
                && at.ends_with('Z')
                && rest.starts_with("fulfill: "),
            "a timestamp first: {line:?}"
        );
    }
}

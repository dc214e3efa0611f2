//! `[portal] replace_in_use` and `fulfill replace`: load balancer listeners move from an
//! older certificate to the new one, against the local portal's LBaaS services
//! (tests/support/portal/routes/lbaas.rs), with the real binary and a real SQLite file.
//! Every fault must leave exactly one update in the portal's per-listener log.

mod support;

use fulfill_test_pki as pki;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::dovecot::{deliver_when_idle, dovecot_or_skip};
use support::portal::{Account, Fault, ListenerSpec, LocalPortal, NewCertificate, OrderSpec};
use support::secrets_manager::{API_KEY as SM_API_KEY, LocalSecretsManager};
use support::{Home, open_db, stdout_json};

const NAME: &str = "www.lb.example.com";

struct Fixture {
    portal: LocalPortal,
    home: Home,
    issuing: pki::Ca,
    config: PathBuf,
    /// The certificate in service now, in the portal's store.
    old_id: i64,
    load_balancer: String,
    listener: String,
    /// The new certificate, its chain, as a file `import` reads; its key is in the keys dir.
    new_file: PathBuf,
    /// The old certificate as a file `import` reads, and its key (not in the keys dir).
    old_file: PathBuf,
    old_key: PathBuf,
}

impl Fixture {
    /// An old certificate serving one HTTPS listener, and a new one ready to import.
    fn new(extra_config: &str) -> Fixture {
        let portal = LocalPortal::start(Account::default());
        let home = Home::new();
        let root = pki::root("Replace Test Root");
        let issuing = pki::intermediate("Replace Test Issuing CA", &root);
        let keys = home.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(home.path().join("root.pem"), &root.pem).unwrap();
        std::fs::write(
            home.path().join("sl-key"),
            format!("{}\n", Account::default().api_key),
        )
        .unwrap();
        let old = pki::leaf(
            &pki::LeafSpec::new(&[NAME]).valid(pki::ymd(2025, 1, 1), pki::ymd(2033, 1, 1)),
            &issuing,
        );
        let old_id = portal
            .add_certificate(NewCertificate {
                certificate: old.pem.clone(),
                private_key: old.key_pem(),
                intermediate_certificate: Some(issuing.pem.clone()),
                ..NewCertificate::default()
            })
            .expect("the old certificate is accepted");
        let old_file = home.path().join("old.pem");
        std::fs::write(&old_file, format!("{}{}", old.pem, issuing.pem)).unwrap();
        let old_key = home.path().join("old.key");
        std::fs::write(&old_key, old.key_pem()).unwrap();
        let load_balancer = portal.add_load_balancer("web", vec![ListenerSpec::https(old_id)]);
        let listener = portal.load_balancers()[0].listeners[0].uuid.clone();
        let new = pki::leaf(
            &pki::LeafSpec::new(&[NAME]).valid(pki::ymd(2025, 6, 1), pki::ymd(2034, 1, 1)),
            &issuing,
        );
        std::fs::write(keys.join("new.key"), new.key_pem()).unwrap();
        let new_file = home.path().join("new.pem");
        std::fs::write(&new_file, format!("{}{}", new.pem, issuing.pem)).unwrap();
        let config = home.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[portal]\nendpoint = \"{}\"\nusername = \"{}\"\napi_key_cmd = \"cat {}\"\n\
                 timeout = \"2s\"\nretry_wait = \"10ms\"\nreplace_in_use = true\n\
                 replace_poll_interval = \"20ms\"\nreplace_timeout = \"20s\"\n{extra_config}\
                 [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
                portal.endpoint(),
                Account::default().username,
                home.path().join("sl-key").display(),
                keys.display(),
                home.path().join("root.pem").display()
            ),
        )
        .unwrap();
        Fixture {
            portal,
            home,
            issuing,
            config,
            old_id,
            load_balancer,
            listener,
            new_file,
            old_file,
            old_key,
        }
    }

    fn fulfill(&self) -> assert_cmd::Command {
        let mut cmd = self.home.fulfill();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// `fulfill --json import NEW --expect-name NAME`: exit code, JSON, stderr.
    fn import(&self) -> (Option<i32>, serde_json::Value, String) {
        let output = (self.fulfill())
            .args(["--json", "import", "--expect-name", NAME])
            .arg(&self.new_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout_json(&output), stderr)
    }

    fn replace(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let output = (self.fulfill()).arg("replace").args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    }

    /// The new certificate's id in the portal's store.
    fn new_id(&self) -> i64 {
        let stored = self.portal.certificates();
        stored
            .iter()
            .map(|c| c.id)
            .find(|id| *id != self.old_id)
            .expect("uploaded")
    }

    fn named_certificate(&self) -> Option<i64> {
        self.portal
            .listener(&self.listener)
            .and_then(|l| l.spec.tls_certificate_id)
    }

    fn states(&self) -> Vec<String> {
        let db = open_db(&self.home.default_db());
        let mut stmt = db
            .prepare("SELECT state FROM replacements ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn updates(&self) -> usize {
        self.portal.listener_updates().len()
    }
}

/// The move itself: one update carrying the listener's whole configuration with only the
/// certificate changed, waited through UPDATE_PENDING, read back, recorded done.
#[test]
fn import_moves_the_listener_through_update_pending() {
    let f = Fixture::new("");
    f.portal.set_pending_polls_after_update(3);
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    let new_id = f.new_id();
    assert_eq!(f.named_certificate(), Some(new_id));
    let updates = f.portal.listener_updates();
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert!(!updates[0].created);
    assert_eq!(updates[0].load_balancer_uuid, f.load_balancer);
    assert_eq!(
        updates[0].configuration,
        serde_json::json!({"listenerUuid": f.listener, "frontendProtocol": "HTTPS",
            "frontendPort": 443, "backendProtocol": "HTTP", "backendPort": 8080,
            "loadBalancingMethod": "LEASTCONNECTION", "sessionType": "SOURCE_IP",
            "maxConn": 2000, "clientTimeout": 120, "serverTimeout": 240,
            "tlsCertificateId": new_id})
    );
    // Nothing but the certificate changed on the listener.
    let listener = f.portal.listener(&f.listener).unwrap();
    assert_eq!(
        listener.spec,
        ListenerSpec {
            tls_certificate_id: Some(new_id),
            ..ListenerSpec::https(0)
        }
    );
    // It waited: the three UPDATE_PENDING answers and then ACTIVE were all read.
    assert!(
        f.portal.calls("getLoadBalancer") >= 5,
        "{}",
        f.portal.calls("getLoadBalancer")
    );
    assert_eq!(f.states(), vec!["done"]);
    assert_eq!(results[0]["listeners"][0]["outcome"], "moved");
    assert_eq!(
        results[0]["listeners"][0]["listener_uuid"],
        f.listener.as_str()
    );
    // The old certificate stays without delete_replaced.
    assert!(f.portal.certificates().iter().any(|c| c.id == f.old_id));
    // A second run finds nothing left to do.
    f.import();
    assert_eq!(f.updates(), 1);
    // `show` tells where the certificate is in use.
    let shown = f.fulfill().args(["show", "1"]).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&format!(
            "in use:      {} of load balancer {}",
            f.listener, f.load_balancer
        )),
        "{text}"
    );
    assert!(text.contains(": moved"), "{text}");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let f = Fixture::new("");
    f.import_without_replacing();
    let new_id = f.new_id();
    let (code, out, err) = f.replace(&["--certificate", "1", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(&f.listener), "{out}");
    assert!(out.contains(&f.load_balancer), "{out}");
    assert!(
        out.contains(&format!("certificate {} -> {new_id}: would move", f.old_id)),
        "{out}"
    );
    assert_eq!(f.updates(), 0);
    assert_eq!(f.portal.calls("updateLoadBalancerProtocols"), 0);
    // Without --dry-run it moves the listener.
    let (code, out, err) = f.replace(&["--certificate", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("moved"), "{out}");
    assert_eq!(f.named_certificate(), Some(new_id));
    assert_eq!(f.updates(), 1);
}

/// Each fault of the update call: a refusal and a 500 are retried by the next run, a lost
/// answer is settled by reading the listener back. One update in the log, whatever
/// happened.
#[test]
fn each_fault_leaves_exactly_one_update() {
    let refused = Fault::Raw {
        status: 500,
        body: r#"{"error":"Listener update is not allowed right now.","code":"SoftLayer_Exception_Public"}"#.into(),
    };
    for (fault, first_exit) in [
        (Fault::InternalError, 1),
        (refused, 1),
        (Fault::LostResponse, 0),
        (Fault::Drop, 0),
        (Fault::Delay(Duration::from_secs(3)), 0),
    ] {
        let f = Fixture::new("");
        f.portal.set_pending_polls_after_update(2);
        f.portal
            .inject("updateLoadBalancerProtocols", fault.clone(), 1);
        let (code, results, stderr) = f.import();
        assert_eq!(code, Some(first_exit), "{fault:?}: {results:#}\n{stderr}");
        if first_exit != 0 {
            assert!(stderr.contains(&f.listener) || results.to_string().contains(&f.listener));
            let (code, out, err) = f.replace(&["--certificate", "1"]);
            assert_eq!(code, Some(0), "{fault:?}: {out}\n{err}");
        }
        assert_eq!(
            f.updates(),
            1,
            "{fault:?}: {:#?}",
            f.portal.listener_updates()
        );
        assert_eq!(f.named_certificate(), Some(f.new_id()), "{fault:?}");
        assert_eq!(f.states(), vec!["done"], "{fault:?}");
    }
}

/// A load balancer that stays UPDATE_PENDING past replace_timeout: exit 1 naming the
/// listener, the state kept; the next run finishes without sending again.
#[test]
fn a_load_balancer_not_active_in_time_is_reported_and_the_next_run_goes_on() {
    let f = Fixture::new("").with_timeout("300ms");
    f.portal.set_pending_polls_after_update(1_000_000);
    let output = (f.fulfill())
        .args(["import", "--expect-name", NAME])
        .arg(&f.new_file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&f.listener) && out.contains("not ACTIVE in time"),
        "{out}"
    );
    assert_eq!(f.states(), vec!["sent"]);
    assert_eq!(f.updates(), 1);
    f.portal.set_pending_polls(&f.load_balancer, 2);
    let (code, out, err) = f.replace(&["--certificate", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(f.updates(), 1, "no second update");
    assert_eq!(f.states(), vec!["done"]);
}

/// SIGKILL right after the update was sent, while the load balancer applies it: the next
/// run reads the listener back and sends nothing again.
#[test]
fn a_run_killed_after_the_update_sends_nothing_twice() {
    let f = Fixture::new("");
    f.kill_import_after_its_update();
    assert_eq!(f.updates(), 1);
    f.portal.set_pending_polls(&f.load_balancer, 3);
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(f.updates(), 1, "{:#?}", f.portal.listener_updates());
    assert_eq!(f.named_certificate(), Some(f.new_id()));
    assert_eq!(f.states(), vec!["done"]);
}

/// A run killed after its update was sent, whose listener someone else then moved to a
/// third certificate: the next run leaves that listener alone and sends nothing.
#[test]
fn a_listener_moved_by_someone_else_after_a_killed_run_is_left_alone() {
    let f = Fixture::new("");
    f.kill_import_after_its_update();
    let third = f.new_id() + 1000;
    f.portal.set_listener_certificate(&f.listener, third);
    f.portal.set_pending_polls(&f.load_balancer, 0);
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(f.updates(), 1, "{:#?}", f.portal.listener_updates());
    assert_eq!(f.named_certificate(), Some(third));
    assert_eq!(f.states(), vec!["skipped"]);
}

/// With delete_replaced the old certificate goes once nothing uses it; the portal refuses
/// to delete one still in use, so it is deleted only after the move.
#[test]
fn delete_replaced_removes_the_old_certificate_once_unused() {
    let f = Fixture::new("delete_replaced = true\n");
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert!(!f.portal.certificates().iter().any(|c| c.id == f.old_id));
    assert_eq!(f.portal.calls("deleteObject"), 1);
    let db = open_db(&f.home.default_db());
    let state: String = db
        .query_row("SELECT state FROM replaced_certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "deleted");
}

/// The issue's end-to-end case: resend-and-import with Dovecot moves the listener.
/// The whole of issue 13 in one cron run: with both stores configured, `resend-and-import`
/// imports the mailed certificate, uploads it, moves the listener (waiting through
/// UPDATE_PENDING) and creates its Secrets Manager secret, once each.
#[test]
fn resend_and_import_moves_the_listener_and_creates_the_secret() {
    let Some(dovecot) = dovecot_or_skip() else {
        return;
    };
    let dovecot = Arc::new(dovecot);
    let sm = LocalSecretsManager::start();
    let f = Fixture::new(&sm.config_section());
    let key_pem = std::fs::read_to_string(f.home.path().join("keys/new.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let csr = pki::csr_pem(&key, Some(NAME), &[NAME]);
    let order = f.portal.add_order(OrderSpec::new(NAME, &csr));
    let pem = std::fs::read_to_string(&f.new_file).unwrap();
    let mail = format!(
        "From: orders@ca.example\r\nTo: certs@example.com\r\nSubject: Your certificate\r\n\
         Message-ID: <1.lb@ca.example>\r\nContent-Type: text/plain\r\n\r\n{}\r\n",
        pem.replace('\n', "\r\n")
    )
    .into_bytes();
    let server = Arc::downgrade(&dovecot);
    f.portal.set_on_resend(Some(Box::new(move |_| {
        if let Some(server) = server.upgrade() {
            deliver_when_idle(&server, "INBOX", vec![mail.clone()]);
        }
    })));
    std::fs::write(
        f.home.path().join("imap-password"),
        format!("{}\n", dovecot.password()),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&f.config).unwrap();
    config.push_str(&format!(
        "[mailbox]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"{}\"\n\
         password_cmd = \"cat {}\"\ntimeout = \"5s\"\npoll_interval = \"1s\"\n",
        dovecot.imaps_port(),
        dovecot.cert_pem_path().display(),
        dovecot.user(),
        f.home.path().join("imap-password").display()
    ));
    std::fs::write(&f.config, config).unwrap();
    f.portal.set_pending_polls_after_update(4);
    let output = (f.fulfill())
        .env("IBMCLOUD_API_KEY", SM_API_KEY)
        .args([
            "--json",
            "resend-and-import",
            "--order",
            &order.to_string(),
            "--timeout",
            "30s",
        ])
        .output()
        .unwrap();
    let results = stdout_json(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "imported");
    assert_eq!(results[0]["listeners"][0]["outcome"], "moved");
    assert_eq!(f.named_certificate(), Some(f.new_id()));
    assert_eq!(f.updates(), 1);
    let secret = results[0]["secrets_manager"].as_str().unwrap_or_default();
    assert!(secret.contains(" version 1 ("), "{secret}");
    assert!(secret.ends_with(": secret created"), "{secret}");
    let sha256 = results[0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(sm.versions(NAME), vec![sha256]);
    let _ = &f.issuing;
}

/// `orders` tells where each order's certificate is in use, from the portal: one
/// getLbaasListeners per order whose certificate is in the portal's store (recorded, or
/// found there by its key), none for an order without one, the load balancers read once;
/// with what fulfill recorded of its move.
#[test]
fn orders_tell_where_each_certificate_is_in_use() {
    let f = Fixture::new("");
    let old_order = f.portal.add_order(OrderSpec::new(NAME, &f.csr(&f.old_key)));
    let new_order = (f.portal).add_order(OrderSpec::new(NAME, &f.csr(&f.keys().join("new.key"))));
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other_csr = pki::csr_pem(&other_key, Some("other.lb.example.com"), &[]);
    let other = (f.portal).add_order(OrderSpec::new("other.lb.example.com", &other_csr));
    f.import_without_replacing();
    // A second load balancer already serves the new certificate.
    let api = (f.portal).add_load_balancer("api", vec![ListenerSpec::https(f.new_id())]);
    let api_listener = f.portal.load_balancers()[1].listeners[0].uuid.clone();
    let (listeners_before, balancers_before) = (f.listener_calls(), f.balancer_calls());
    let orders = f.orders();
    let listener_calls = f.listener_calls() - listeners_before;
    assert_eq!(listener_calls, 2, "one per certificate");
    assert_eq!(f.balancer_calls() - balancers_before, 1, "once per run");
    let in_use = |id: i64| orders.iter().find(|o| o["id"] == id).unwrap()["in_use"].clone();
    // The old certificate, found in the portal's store by its order's key, serves the
    // listener: fulfill never touched it.
    assert_eq!(
        in_use(old_order),
        serde_json::json!({"live_view": "portal", "why": null, "listeners": [
            {"listener_uuid": f.listener, "load_balancer_uuid": f.load_balancer,
             "protocol": "HTTPS", "port": 443, "live": true, "move": null}]})
    );
    let api_in_use = serde_json::json!({"listener_uuid": api_listener, "load_balancer_uuid": api,
        "protocol": "HTTPS", "port": 443, "live": true, "move": null});
    assert_eq!(
        in_use(new_order)["listeners"],
        serde_json::json!([api_in_use])
    );
    assert_eq!(in_use(other), serde_json::Value::Null);
    let text = f.fulfill().arg("orders").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let count_of = |id: i64| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&id.to_string()))
            .unwrap();
        line.split_whitespace().last().unwrap().to_string()
    };
    assert!(text.lines().next().unwrap().ends_with("IN USE"), "{text}");
    assert_eq!(
        [count_of(old_order), count_of(new_order), count_of(other)],
        ["1", "1", "-"],
        "{text}"
    );
    let (code, out, err) = f.replace(&["--certificate", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let orders = f.orders();
    let in_use = |id: i64| orders.iter().find(|o| o["id"] == id).unwrap()["in_use"].clone();
    let moved = serde_json::json!({"old_portal_id": f.old_id, "new_portal_id": f.new_id(),
        "state": "done", "progress": "moved", "last_error": null});
    assert_eq!(
        in_use(new_order)["listeners"],
        serde_json::json!([{"listener_uuid": f.listener, "load_balancer_uuid": f.load_balancer,
            "protocol": "HTTPS", "port": 443, "live": true, "move": moved}, api_in_use])
    );
    assert_eq!(
        in_use(old_order)["listeners"],
        serde_json::json!([{"listener_uuid": f.listener, "load_balancer_uuid": f.load_balancer,
            "protocol": null, "port": null, "live": false, "move": moved}])
    );
}

/// A portal that cannot say which listeners use a certificate does not make `orders` fail:
/// "?" in the column, one warning, and it is not asked again in the run.
#[test]
fn orders_goes_on_when_the_portal_cannot_say_where_certificates_are_in_use() {
    let f = Fixture::new("");
    let old_order = f.portal.add_order(OrderSpec::new(NAME, &f.csr(&f.old_key)));
    let new_order = (f.portal).add_order(OrderSpec::new(NAME, &f.csr(&f.keys().join("new.key"))));
    f.import_without_replacing();
    f.portal
        .inject("getLbaasListeners", Fault::InternalError, 1000);
    let output = f.fulfill().arg("orders").output().unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{text}\n{err}");
    for order in [old_order, new_order] {
        let line = text.lines().find(|l| l.starts_with(&order.to_string()));
        assert!(line.unwrap().ends_with(" ?"), "{text}");
    }
    let warnings = err
        .matches("cannot say where certificates are in use")
        .count();
    assert_eq!(warnings, 1, "{err}");
}

/// `show` prints where a certificate is in use: the portal's listeners (one fulfill never
/// touched, and one it moved, with the move's state), the moves recorded of listeners the
/// portal no longer names; a portal that cannot be reached or is not configured leaves
/// the recorded view, and never a failure.
#[test]
fn show_tells_where_a_certificate_is_in_use() {
    let f = Fixture::new("");
    std::fs::copy(&f.old_key, f.keys().join("old.key")).unwrap();
    (f.fulfill())
        .args(["import", "--expect-name", NAME])
        .arg(&f.old_file)
        .assert()
        .success();
    let (text, json) = f.show(&f.config, "1");
    let untouched = format!(
        "in use:      {} of load balancer {}, HTTPS:443\n",
        f.listener, f.load_balancer
    );
    assert!(text.contains(&untouched), "{text}");
    assert_eq!(json["portal_certificate_id"], f.old_id);
    assert_eq!(json["in_use"]["live_view"], "portal");
    assert_eq!(
        json["in_use"]["listeners"][0]["move"],
        serde_json::Value::Null
    );
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    let moved = format!(
        "{} of load balancer {}, HTTPS:443; fulfill's move from certificate {} to {}: moved",
        f.listener,
        f.load_balancer,
        f.old_id,
        f.new_id()
    );
    let (text, json) = f.show(&f.config, "2");
    assert!(text.contains(&format!("in use:      {moved}")), "{text}");
    assert_eq!(json["in_use"]["listeners"][0]["live"], true);
    let (text, _) = f.show(&f.config, "1");
    assert!(text.contains("in use:      no listener"), "{text}");
    let recorded = format!(
        "recorded:    {} of load balancer {}; fulfill's move from certificate {} to {}: moved",
        f.listener,
        f.load_balancer,
        f.old_id,
        f.new_id()
    );
    assert!(text.contains(&recorded), "{text}");
    // A portal that cannot be reached: a warning, and what the database knows.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_endpoint = format!("http://{}/rest/v3.1/", closed.local_addr().unwrap());
    drop(closed);
    let config = std::fs::read_to_string(&f.config).unwrap();
    let unreachable = f.home.path().join("unreachable.toml");
    std::fs::write(
        &unreachable,
        config.replace(&f.portal.endpoint(), &closed_endpoint),
    )
    .unwrap();
    let (text, err, json) = f.show_with_stderr(&unreachable, "2");
    assert!(
        err.contains("cannot say where certificates are in use"),
        "{err}"
    );
    assert!(
        text.contains(&recorded.replace(", HTTPS:443", "")),
        "{text}"
    );
    assert_eq!(json["in_use"]["live_view"], "unavailable");
    // No portal configured: the recorded view only, without a warning.
    let no_portal = f.home.path().join("no-portal.toml");
    let keys_onward = &config[config.find("[keys]").unwrap()..];
    std::fs::write(&no_portal, keys_onward).unwrap();
    let (text, err, json) = f.show_with_stderr(&no_portal, "2");
    assert!(text.contains(&recorded), "{text}");
    assert!(!text.contains("in use:"), "{text}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(json["in_use"]["live_view"], "not_asked");
    assert_eq!(json["in_use"]["listeners"][0]["move"]["progress"], "moved");
}

impl Fixture {
    /// Runs `import` of the new certificate and kills it (SIGKILL) once its listener
    /// update is sent, while the load balancer is still applying it.
    fn kill_import_after_its_update(&self) {
        self.portal.set_pending_polls_after_update(1_000_000);
        let child = (self.home.fulfill_process())
            .arg("--config")
            .arg(&self.config)
            .args(["import", "--expect-name", NAME])
            .arg(&self.new_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the update is sent", || self.updates() == 1);
        std::thread::sleep(Duration::from_millis(100));
        kill(child);
    }

    fn keys(&self) -> PathBuf {
        self.home.path().join("keys")
    }

    /// A CSR for NAME with the key in `key_file`.
    fn csr(&self, key_file: &std::path::Path) -> String {
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(key_file).unwrap()).unwrap();
        pki::csr_pem(&key, Some(NAME), &[NAME])
    }

    /// Records and uploads the new certificate with replace_in_use off: nothing moves.
    fn import_without_replacing(&self) {
        let off = self.home.path().join("off.toml");
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace("replace_in_use = true", "");
        std::fs::write(&off, text).unwrap();
        (self.home.fulfill())
            .arg("--config")
            .arg(&off)
            .args(["import", "--expect-name", NAME])
            .arg(&self.new_file)
            .assert()
            .success();
        assert_eq!(self.updates(), 0);
    }

    /// `fulfill --json orders`.
    fn orders(&self) -> Vec<serde_json::Value> {
        let output = self.fulfill().args(["--json", "orders"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        let serde_json::Value::Array(orders) = stdout_json(&output) else {
            panic!("orders --json is not a list");
        };
        orders
    }

    /// `fulfill show ID` with this config, which must exit 0: its text, and its `--json`.
    fn show(&self, config: &std::path::Path, id: &str) -> (String, serde_json::Value) {
        let (text, _, json) = self.show_with_stderr(config, id);
        (text, json)
    }

    /// [`Fixture::show`], and what the text run wrote on stderr.
    fn show_with_stderr(
        &self,
        config: &std::path::Path,
        id: &str,
    ) -> (String, String, serde_json::Value) {
        let run = |json: bool| {
            let mut cmd = self.home.fulfill();
            cmd.arg("--config").arg(config);
            if json {
                cmd.arg("--json");
            }
            let output = cmd.args(["show", id]).output().unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let (out, err) = (text(&output.stdout), text(&output.stderr));
            assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
            (output, out, err)
        };
        let (_, text, err) = run(false);
        (text, err, stdout_json(&run(true).0))
    }

    fn listener_calls(&self) -> usize {
        self.portal.calls("getLbaasListeners")
    }

    fn balancer_calls(&self) -> usize {
        (self.portal).calls("SoftLayer_Network_LBaaS_LoadBalancer::getAllObjects")
    }

    fn with_timeout(self, timeout: &str) -> Fixture {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replace(
            "replace_timeout = \"20s\"",
            &format!("replace_timeout = \"{timeout}\""),
        );
        std::fs::write(&self.config, text).unwrap();
        self
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(mut child: Child) {
    // SIGKILL: no destructor, no rollback hook, nothing runs.
    child.kill().unwrap();
    child.wait().unwrap();
}

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
    assert!(text.contains(": done"), "{text}");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let f = Fixture::new("");
    // Record and upload without moving anything: replace_in_use off for this run.
    let off = f.home.path().join("off.toml");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("replace_in_use = true", "");
    std::fs::write(&off, text).unwrap();
    (f.home.fulfill())
        .arg("--config")
        .arg(&off)
        .args(["import", "--expect-name", NAME])
        .arg(&f.new_file)
        .assert()
        .success();
    assert_eq!(f.updates(), 0);
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
    f.portal.set_pending_polls_after_update(1_000_000);
    let child = (f.home.fulfill_process())
        .arg("--config")
        .arg(&f.config)
        .args(["import", "--expect-name", NAME])
        .arg(&f.new_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the update is sent", || f.updates() == 1);
    std::thread::sleep(Duration::from_millis(100));
    kill(child);
    assert_eq!(f.updates(), 1);
    f.portal.set_pending_polls(&f.load_balancer, 3);
    let (code, results, stderr) = f.import();
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(f.updates(), 1, "{:#?}", f.portal.listener_updates());
    assert_eq!(f.named_certificate(), Some(f.new_id()));
    assert_eq!(f.states(), vec!["done"]);
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
#[test]
fn resend_and_import_moves_the_listener_waiting_through_update_pending() {
    let Some(dovecot) = dovecot_or_skip() else {
        return;
    };
    let dovecot = Arc::new(dovecot);
    let f = Fixture::new("");
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
    let _ = &f.issuing;
}

impl Fixture {
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

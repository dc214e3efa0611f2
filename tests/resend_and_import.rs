//! `fulfill resend-and-import` end to end: the local portal (tests/support/portal.rs), which
//! on `resendEmail` delivers the order's fulfillment mail into a real Dovecot by IMAP APPEND
//! after a short delay, as a CA would; the real binary; a real SQLite file.

mod support;

use fulfill_test_pki as pki;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use support::dovecot::{Dovecot, deliver_when_idle, dovecot_or_skip};
use support::portal::{Account, Fault, LocalPortal, NewCertificate, OrderSpec};
use support::{Home, open_db, stdout_json};

/// Mails the "CA" sends when an order's fulfillment email is resent.
type Outbox = Arc<Mutex<HashMap<i64, Vec<Vec<u8>>>>>;

struct Fixture {
    dovecot: Arc<Dovecot>,
    portal: LocalPortal,
    home: Home,
    issuing: pki::Ca,
    keys: PathBuf,
    config: PathBuf,
    outbox: Outbox,
    serial: u32,
}

/// An order with its key on disk and the mail that carries its certificate.
struct Order {
    id: i64,
    name: String,
    mail: Vec<u8>,
    sha256: String,
    /// The certificate and its key, PEM, for putting it into the portal's store by hand.
    leaf_pem: String,
    key_pem: String,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let dovecot = Arc::new(dovecot_or_skip()?);
        let portal = LocalPortal::start(Account::default());
        let home = Home::new();
        let root = pki::root("Loop Test Root");
        let issuing = pki::intermediate("Loop Test Issuing CA", &root);
        let keys = home.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(home.path().join("root.pem"), &root.pem).unwrap();
        std::fs::write(
            home.path().join("sl-key"),
            format!("{}\n", Account::default().api_key),
        )
        .unwrap();
        std::fs::write(
            home.path().join("imap-password"),
            format!("{}\n", dovecot.password()),
        )
        .unwrap();
        let config = home.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "resend_cooldown = \"1h\"\n\
                 [portal]\nendpoint = \"{}\"\nusername = \"{}\"\napi_key_cmd = \"cat {}\"\ntimeout = \"2s\"\nretry_wait = \"10ms\"\n\
                 [mailbox]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"{}\"\npassword_cmd = \"cat {}\"\n\
                 timeout = \"5s\"\npoll_interval = \"1s\"\nrun_timeout = \"2m\"\n\
                 [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
                portal.endpoint(),
                Account::default().username,
                home.path().join("sl-key").display(),
                dovecot.imaps_port(),
                dovecot.cert_pem_path().display(),
                dovecot.user(),
                home.path().join("imap-password").display(),
                keys.display(),
                home.path().join("root.pem").display()
            ),
        )
        .unwrap();
        // The CA: on a FulfillmentEmail resend, deliver that order's mails while fulfill
        // waits for them (in IDLE, as the server sees it; not after a guessed delay).
        let outbox: Outbox = Arc::default();
        let (mails, server) = (outbox.clone(), Arc::downgrade(&dovecot));
        portal.set_on_resend(Some(Box::new(move |order_id| {
            let pending = mails
                .lock()
                .unwrap()
                .get(&order_id)
                .cloned()
                .unwrap_or_default();
            if let Some(server) = server.upgrade() {
                deliver_when_idle(&server, "INBOX", pending);
            }
        })));
        Some(Fixture {
            dovecot,
            portal,
            home,
            issuing,
            keys,
            config,
            outbox,
            serial: 0,
        })
    }

    /// A CA mail with a certificate for `name` and `key`.
    fn mail(&mut self, name: &str, leaf: &pki::Leaf) -> Vec<u8> {
        self.serial += 1;
        format!(
            "From: \"Test CA Orders\" <orders@ca.example>\r\nTo: certs@example.com\r\n\
             Subject: Your certificate for {name}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{}.{name}@ca.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
             Your certificate:\r\n\r\n{}{}\r\n",
            self.serial,
            leaf.pem.replace('\n', "\r\n"),
            self.issuing.pem.replace('\n', "\r\n"),
        )
        .into_bytes()
    }

    /// An approved order in the portal whose key we hold, and the mail the CA will send.
    fn order(&mut self, name: &str) -> Order {
        self.order_with(name, |_| {})
    }

    /// An order as [`Fixture::order`] makes it, with `change` made to it first (its
    /// status, its expiration date).
    fn order_with(&mut self, name: &str, change: impl FnOnce(&mut OrderSpec)) -> Order {
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        std::fs::write(self.keys.join(format!("{name}.key")), leaf.key_pem()).unwrap();
        let csr = pki::csr_pem(&leaf.key, Some(name), &[name]);
        let mut order = OrderSpec {
            approver_email: format!("admin@{name}"),
            ..OrderSpec::new(name, &csr)
        };
        change(&mut order);
        let id = self.portal.add_order(order);
        let mail = self.mail(name, &leaf);
        Order {
            id,
            name: name.to_string(),
            mail,
            sha256: fulfill::extract::sha256_hex(&leaf.der),
            leaf_pem: leaf.pem.clone(),
            key_pem: leaf.key_pem(),
        }
    }

    /// What the CA sends when `order` is resent.
    fn on_resend_send(&self, order: &Order, mails: Vec<Vec<u8>>) {
        self.outbox.lock().unwrap().insert(order.id, mails);
    }

    fn fulfill(&self) -> assert_cmd::Command {
        let mut cmd = self.home.fulfill();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let output = self
            .fulfill()
            .args(["--json", "resend-and-import"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.stdout.is_empty(), "no output; stderr:\n{stderr}");
        (output.status.code(), stdout_json(&output), stderr)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.home
            .fulfill_process()
            .arg("--config")
            .arg(&self.config)
            .arg("resend-and-import")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn rows(&self) -> Vec<(i64, String, Option<i64>)> {
        if !self.home.default_db().exists() {
            return Vec::new();
        }
        let db = open_db(&self.home.default_db());
        // A run may be creating the schema right now.
        let Ok(mut stmt) = db.prepare(
            "SELECT order_id, sha256, portal_certificate_id FROM certificates ORDER BY id",
        ) else {
            return Vec::new();
        };
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// How many rows `table` has; `None` while the database or its schema is not there.
    fn count(&self, table: &str) -> Option<i64> {
        if !self.home.default_db().exists() {
            return None;
        }
        let db = open_db(&self.home.default_db());
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .ok()
    }

    /// The kinds of every event, oldest first.
    fn event_kinds(&self) -> Vec<String> {
        let db = open_db(&self.home.default_db());
        let mut statement = db.prepare("SELECT kind FROM events ORDER BY id").unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn order_state(&self, id: i64) -> Option<String> {
        if !self.home.default_db().exists() {
            return None;
        }
        open_db(&self.home.default_db())
            .query_row("SELECT state FROM orders WHERE order_id = ?1", [id], |r| {
                r.get(0)
            })
            .ok()
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(mut child: Child) {
    // SIGKILL: no destructor, no rollback hook, nothing runs.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn one_order_is_resent_imported_uploaded_and_recorded() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.one.example.com");
    f.on_resend_send(&order, vec![order.mail.clone()]);
    let (code, results, stderr) = f.run(&["--order", &order.id.to_string(), "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "imported");
    assert_eq!(results[0]["resent"], true);
    assert_eq!(results[0]["sha256"], order.sha256.as_str());
    assert_eq!(
        f.portal.resends(),
        vec![(order.id, "FulfillmentEmail".to_string())]
    );
    let stored = f.portal.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sha256, order.sha256);
    assert_eq!(results[0]["portal_certificate_id"], stored[0].id);
    assert_eq!(
        f.rows(),
        vec![(order.id, order.sha256.clone(), Some(stored[0].id))]
    );
    assert_eq!(f.order_state(order.id).as_deref(), Some("imported"));

    // A second run after success does nothing, says nothing with -q, and exits 0.
    f.fulfill()
        .args(["-q", "resend-and-import", "--order", &order.id.to_string()])
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    assert_eq!(f.portal.resends().len(), 1);
    assert_eq!(f.portal.calls("createObject"), 1);
}

#[test]
fn three_orders_share_one_session_and_one_wait() {
    let Some(mut f) = Fixture::new() else { return };
    let orders: Vec<Order> = [
        "www.a.example.com",
        "www.b.example.com",
        "www.c.example.com",
    ]
    .iter()
    .map(|n| f.order(n))
    .collect();
    for order in &orders {
        f.on_resend_send(order, vec![order.mail.clone()]);
    }
    let (code, results, stderr) = f.run(&["--all-pending", "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(results.as_array().unwrap().len(), 3);
    for (order, result) in orders.iter().zip(results.as_array().unwrap()) {
        assert_eq!(result["order_id"], order.id);
        assert_eq!(result["outcome"], "imported", "{result:#}");
        assert_eq!(result["sha256"], order.sha256.as_str());
    }
    assert_eq!(f.portal.resends().len(), 3);
    assert_eq!(f.portal.certificates().len(), 3);
    assert_eq!(f.rows().len(), 3);
    // One IMAP login for the whole run; the other three are the CA's deliveries.
    let logins = f.dovecot.log().matches("imap-login: Info: Login:").count();
    assert_eq!(logins, 1 + 3, "{}", f.dovecot.log());
}

/// With `[secrets_manager]`, the certificate the loop imports is also a Secrets Manager
/// secret; the next order's certificate for the same name becomes its second version.
#[test]
fn resend_and_import_creates_a_secrets_manager_secret_then_a_version() {
    use support::secrets_manager::{API_KEY, LocalSecretsManager};
    let Some(mut f) = Fixture::new() else { return };
    let sm = LocalSecretsManager::start();
    let config = std::fs::read_to_string(&f.config).unwrap() + &sm.config_section();
    std::fs::write(&f.config, config).unwrap();
    let name = "www.sm.example.com";
    let mut shas = Vec::new();
    for _ in 0..2 {
        let order = f.order(name);
        f.on_resend_send(&order, vec![order.mail.clone()]);
        let output = (f.fulfill())
            .env("IBMCLOUD_API_KEY", API_KEY)
            .args([
                "--json",
                "resend-and-import",
                "--order",
                &order.id.to_string(),
            ])
            .args(["--timeout", "30s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        let results = stdout_json(&output);
        assert_eq!(results[0]["outcome"], "imported", "{results:#}");
        let summary = results[0]["secrets_manager"].as_str().unwrap_or_default();
        assert!(summary.contains(&format!("secret '{name}'")), "{results:#}");
        shas.push(order.sha256.clone());
        assert_eq!(sm.versions(name), shas);
    }
    assert_eq!(sm.secrets().len(), 1);
    assert_eq!(f.portal.certificates().len(), 2);
}

#[test]
fn mail_already_in_the_mailbox_needs_no_resend() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.early.example.com");
    f.dovecot.append("INBOX", &order.mail);
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "imported");
    assert_eq!(results[0]["resent"], false);
    assert!(f.portal.resends().is_empty());
}

/// The order's certificate is in, but its mail cannot be moved (a file stands where the
/// `move:` folder would go, so it cannot be created): the order is imported, the run exits 1
/// and the mark stays pending; once the folder can be made, the next run moves the mail.
#[test]
fn a_refused_mark_fails_the_run_but_not_the_order() {
    let Some(mut f) = Fixture::new() else { return };
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(
        &f.config,
        config.replace(
            "[mailbox]\n",
            "[mailbox]\nafter_import = \"move:Imported\"\n",
        ),
    )
    .unwrap();
    let order = f.order("www.unmoved.example.com");
    f.dovecot.append("INBOX", &order.mail);
    let blocker = f.dovecot.folder_path("Imported");
    std::fs::write(&blocker, "not a folder").unwrap();
    let id = order.id.to_string();
    let (code, results, stderr) = f.run(&["--order", &id, "--timeout", "10s"]);
    assert_eq!(code, Some(1), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "imported", "{results:#}");
    assert!(stderr.contains("the mark is pending"), "{stderr}");
    assert_eq!(f.count("pending_marks"), Some(1));
    assert_eq!(f.dovecot.count("INBOX"), 1);

    std::fs::remove_file(&blocker).unwrap();
    let (code, results, stderr) = f.run(&["--order", &id, "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "already_imported", "{results:#}");
    assert_eq!(f.count("pending_marks"), Some(0));
    assert_eq!(f.dovecot.count("Imported"), 1, "moved by the second run");
    assert_eq!(f.dovecot.count("INBOX"), 0);
}

#[test]
fn a_forged_mail_arriving_first_is_ignored() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.target.example.com");
    // Same subject, sender and name, a genuine CA signature, but someone else's key.
    let spec = pki::LeafSpec::new(&["www.target.example.com"])
        .valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
    let forged_leaf = pki::leaf(&spec, &f.issuing);
    let forged = f.mail("www.target.example.com", &forged_leaf);
    f.on_resend_send(&order, vec![forged, order.mail.clone()]);
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(
        results[0]["sha256"],
        order.sha256.as_str(),
        "the real certificate, not the forged one"
    );
    assert_eq!(f.portal.certificates().len(), 1);
    assert_eq!(f.portal.certificates()[0].sha256, order.sha256);
    let db = open_db(&f.home.default_db());
    let rejected: i64 = db
        .query_row("SELECT count(*) FROM events WHERE kind = 'certificate_rejected' AND detail LIKE '%rule 1 (key)%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rejected, 1);
}

#[test]
fn a_timeout_keeps_the_state_and_the_next_run_completes_without_resending() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.slow.example.com");
    // The CA is slow: nothing arrives during the first run.
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "2s"]);
    assert_eq!(code, Some(3), "{results:#}");
    assert_eq!(results[0]["outcome"], "timed_out");
    assert_eq!(f.order_state(order.id).as_deref(), Some("waiting_for_mail"));
    assert_eq!(f.portal.resends().len(), 1);

    f.dovecot.append("INBOX", &order.mail);
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "imported");
    assert_eq!(
        results[0]["resent"], false,
        "within the cooldown: no second resend"
    );
    assert_eq!(f.portal.resends().len(), 1);
}

#[test]
fn a_resend_without_an_answer_keeps_its_time_and_is_not_repeated() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.unanswered.example.com");
    let id = order.id.to_string();
    // The portal performs the resend, then drops the connection without answering. The
    // CA is slow: no mail comes during these runs.
    f.portal.inject("resendEmail", Fault::LostResponse, 1);
    let (code, results, stderr) = f.run(&["--order", &id, "--timeout", "2s"]);
    assert_eq!(code, Some(3), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "timed_out");
    assert_eq!(results[0]["resent"], false, "no answer said yes");
    let reason = results[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no definite answer to the resend")
            && reason.contains("may have gone through"),
        "{reason}"
    );
    assert!(
        stderr.contains("no definite answer to the resend"),
        "the run says so on stderr: {stderr}"
    );
    assert_eq!(
        f.portal.calls("resendEmail"),
        1,
        "not retried: the CA may be mailing already"
    );
    assert_eq!(f.portal.resends().len(), 1, "the portal did act");
    let db = open_db(&f.home.default_db());
    let (requested, last_error): (Option<String>, Option<String>) = db
        .query_row(
            "SELECT resend_requested_at, last_error FROM orders WHERE order_id = ?1",
            [order.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(requested.is_some(), "the resend time is kept");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("no definite answer")),
        "{last_error:?}"
    );
    let events: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE order_id = ?1 AND detail LIKE '%no definite answer%'",
            [order.id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(events >= 1, "the error is in the event log");
    drop(db);

    // The next run, within resend_cooldown, waits for that mail without resending.
    let (code, results, stderr) = f.run(&["--order", &id, "--timeout", "2s"]);
    assert_eq!(code, Some(3), "{results:#}\n{stderr}");
    assert_eq!(results[0]["resent"], false);
    assert_eq!(f.portal.calls("resendEmail"), 1, "one call in all");
}

#[test]
fn sigkill_at_each_step_then_a_rerun_imports_exactly_once() {
    // (where to stop, the fault that holds the run there, when the step is reached)
    type Reached = fn(&Fixture, &Order) -> bool;
    type Hold = Option<(&'static str, Fault)>;
    let steps: Vec<(&str, Hold, Reached)> = vec![
        (
            "during resendEmail",
            Some(("resendEmail", Fault::Delay(Duration::from_secs(20)))),
            |f, _| !f.portal.resends().is_empty(),
        ),
        ("waiting for the mail", None, |f, o| {
            !f.portal.resends().is_empty()
                && f.order_state(o.id).as_deref() == Some("resend_requested")
        }),
        (
            "recorded, before the upload",
            Some((
                "getSecurityCertificates",
                Fault::Delay(Duration::from_secs(20)),
            )),
            |f, _| !f.rows().is_empty(),
        ),
        (
            "during createObject",
            Some(("createObject", Fault::Delay(Duration::from_secs(20)))),
            |f, _| !f.portal.certificates().is_empty(),
        ),
    ];
    for (step, fault, reached) in steps {
        let Some(mut f) = Fixture::new() else { return };
        let order = f.order("www.crash.example.com");
        if step != "waiting for the mail" {
            f.on_resend_send(&order, vec![order.mail.clone()]);
        }
        if let Some((method, fault)) = fault {
            f.portal.inject(method, fault, 1);
        }
        let child = f.spawn(&["--order", &order.id.to_string(), "--timeout", "60s"]);
        wait_until(step, || reached(&f, &order));
        kill(child);
        if step == "waiting for the mail" {
            f.dovecot.append("INBOX", &order.mail);
        }
        f.portal.clear_faults();

        let (code, results, stderr) =
            f.run(&["--order", &order.id.to_string(), "--timeout", "30s"]);
        assert_eq!(code, Some(0), "{step}: {results:#}\n{stderr}");
        assert_eq!(f.portal.resends().len(), 1, "{step}: resent once");
        let stored = f.portal.certificates();
        assert_eq!(stored.len(), 1, "{step}: one certificate in the portal");
        assert_eq!(
            f.rows(),
            vec![(order.id, order.sha256.clone(), Some(stored[0].id))],
            "{step}: one row"
        );
    }
}

#[test]
fn a_second_concurrent_run_exits_75() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.busy.example.com");
    let child = f.spawn(&[
        "--order",
        &order.id.to_string(),
        "--timeout",
        "20s",
        "--no-resend",
    ]);
    wait_until("the first run holds the lock", || {
        let lock = f.home.default_db().with_extension("db.lock");
        lock.exists() && f.home.default_db().exists()
    });
    f.fulfill()
        .args(["resend-and-import", "--order", &order.id.to_string()])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("another fulfill run holds"));
    kill(child);
    // The lock died with the process: the next run goes ahead.
    f.dovecot.append("INBOX", &order.mail);
    f.fulfill()
        .args([
            "resend-and-import",
            "--no-resend",
            "--timeout",
            "10s",
            "--order",
            &order.id.to_string(),
        ])
        .assert()
        .success();
}

/// Every command that writes takes the run lock: `poll`, `import` and `resend` next to a
/// cron run that is waiting for mail exit 75 and write nothing. (The waiting run itself
/// writes nothing while no mail comes: no resend, no mailbox position, no event.)
#[test]
fn every_writing_command_waits_its_turn() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.turn.example.com");
    let child = f.spawn(&[
        "--order",
        &order.id.to_string(),
        "--timeout",
        "30s",
        "--no-resend",
    ]);
    // Past its portal calls and its first look at the mailbox: waiting in IDLE, it holds
    // the lock and touches nothing until the mail comes or the timeout.
    assert!(
        f.dovecot.wait_for_idle(Duration::from_secs(30)),
        "the first run waits in IDLE"
    );
    assert!(f.home.default_db().with_extension("db.lock").exists());
    let calls_before = f.portal.requests().len();
    let sample = support::samples().join("01-geotrust-inline-pem.eml");
    let order_id = order.id.to_string();
    let commands: [&[&str]; 3] = [
        &["poll"],
        &["import", "--no-upload", &sample.display().to_string()],
        &["resend", "--yes", "--order", &order_id],
    ];
    for args in commands {
        f.fulfill()
            .args(args)
            .assert()
            .code(75)
            .stderr(predicate::str::contains("another fulfill run holds"));
    }
    for table in ["certificates", "events", "mailbox_state", "orders"] {
        assert_eq!(f.count(table), Some(0), "nothing written to {table}");
    }
    assert_eq!(f.portal.requests().len(), calls_before, "no portal call");
    kill(child);
}

#[test]
fn portal_faults_during_resend_and_upload() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.faults.example.com");
    f.on_resend_send(&order, vec![order.mail.clone()]);
    // A transient fault on resend is retried; a refused upload is reported and kept.
    f.portal.inject("resendEmail", Fault::InternalError, 1);
    f.portal.inject(
        "createObject",
        Fault::Raw {
            status: 500,
            body: r#"{"error":"Unable to validate the certificate.","code":"SoftLayer_Exception_Public"}"#.into(),
        },
        1,
    );
    let (code, results, stderr) = f.run(&["--order", &order.id.to_string(), "--timeout", "30s"]);
    assert_eq!(code, Some(1), "{results:#}");
    assert_eq!(results[0]["outcome"], "failed");
    assert!(
        results[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Unable to validate"),
        "{results:#}"
    );
    assert!(
        stderr.contains("Unable to validate"),
        "errors go to stderr too: {stderr}"
    );
    assert_eq!(f.portal.resends().len(), 1);
    assert_eq!(f.order_state(order.id).as_deref(), Some("upload_failed"));
    // The next run uploads what was recorded, without resending.
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "imported");
    assert_eq!(f.portal.certificates().len(), 1);
    assert_eq!(f.portal.resends().len(), 1);

    // A refused resend (the retired product) is the API's own words, exit 1.
    let retired = f.portal.add_order(OrderSpec {
        refuses_resend: true,
        ..OrderSpec::new(
            "www.retired.example.com",
            &pki::csr_pem(
                &pki::leaf(&pki::LeafSpec::new(&["x.example.com"]), &f.issuing).key,
                Some("www.retired.example.com"),
                &["www.retired.example.com"],
            ),
        )
    });
    let (code, results, _) = f.run(&["--order", &retired.to_string(), "--timeout", "2s"]);
    assert_eq!(code, Some(1));
    let reason = results[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("SoftLayer_Exception_Public") && reason.contains("no longer supported"),
        "{reason}"
    );
}

/// A row in the database is not a trust anchor: a certificate recorded by an earlier run
/// whose upload failed is checked by the four rules again before it is uploaded, and one
/// changed in the database since (here: its chain taken away) is not uploaded.
#[test]
fn a_recorded_certificate_is_validated_again_before_its_upload() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.recheck.example.com");
    f.on_resend_send(&order, vec![order.mail.clone()]);
    let refused =
        r#"{"error":"Unable to validate the certificate.","code":"SoftLayer_Exception_Public"}"#;
    f.portal.inject(
        "createObject",
        Fault::Raw {
            status: 500,
            body: refused.into(),
        },
        1,
    );
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "30s"]);
    assert_eq!(code, Some(1), "{results:#}");
    assert_eq!(f.order_state(order.id).as_deref(), Some("upload_failed"));

    let db = rusqlite::Connection::open(f.home.default_db()).unwrap();
    db.execute("UPDATE certificates SET chain_pem = ''", [])
        .unwrap();
    drop(db);
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--timeout", "5s"]);
    assert_eq!(code, Some(1), "{results:#}");
    assert_eq!(results[0]["outcome"], "failed");
    let reason = results[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no longer passes the rules") && reason.contains("rule 4"),
        "{reason}"
    );
    assert!(f.portal.certificates().is_empty(), "nothing uploaded");
}

/// `--all-pending` works on the orders that can still be fulfilled and are not: issued
/// (Approved or Complete), unexpired, without a certificate here or in the portal's
/// store, and not refused by the API. Nothing else is resent.
#[test]
fn all_pending_works_on_pending_orders_only() {
    let Some(mut f) = Fixture::new() else { return };
    let due = f.order("www.due.example.com");
    f.on_resend_send(&due, vec![due.mail.clone()]);
    let waiting = f.order_with("www.waiting.example.com", |o| {
        o.status = "Pending CA Approval".into()
    });
    let canceled = f.order_with("www.canceled.example.com", |o| o.status = "Canceled".into());
    let old = f.order_with("www.old.example.com", |o| {
        o.status = "Complete".into();
        o.expiration_date = Some(time::macros::datetime!(2020-01-20 10:56:44 UTC));
    });
    let in_store = f.order("www.instore.example.com");
    let portal_id = f
        .portal
        .add_certificate(NewCertificate {
            certificate: in_store.leaf_pem.clone(),
            private_key: in_store.key_pem.clone(),
            intermediate_certificate: Some(f.issuing.pem.clone()),
            ..NewCertificate::default()
        })
        .unwrap();
    let refused = f.order_with("www.refused.example.com", |o| o.refuses_resend = true);
    // Named on its own, the refused order is tried, refused, and remembered.
    let (code, _, _) = f.run(&["--order", &refused.id.to_string(), "--timeout", "2s"]);
    assert_eq!(code, Some(1));
    assert_eq!(f.order_state(refused.id).as_deref(), Some("refused"));

    let (code, results, stderr) = f.run(&["--all-pending", "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    let worked_on: Vec<i64> = (results.as_array().unwrap().iter())
        .map(|r| r["order_id"].as_i64().unwrap())
        .collect();
    assert_eq!(worked_on, vec![due.id], "{results:#}");
    assert_eq!(results[0]["outcome"], "imported");
    let resent: Vec<i64> = f.portal.resends().iter().map(|(id, _)| *id).collect();
    assert_eq!(resent, vec![due.id], "only the pending order is resent");
    for order in [&waiting, &canceled, &old] {
        assert_eq!(f.order_state(order.id), None, "{} untouched", order.name);
    }
    // The certificate found in the portal's store is recorded with its portal id.
    assert!(
        f.rows()
            .contains(&(in_store.id, in_store.sha256.clone(), Some(portal_id))),
        "{:?}",
        f.rows()
    );
    assert_eq!(f.order_state(in_store.id).as_deref(), Some("imported"));
    // Nothing is pending now: a quiet run says nothing, resends nothing, exits 0.
    let output = f
        .fulfill()
        .args([
            "-q",
            "resend-and-import",
            "--all-pending",
            "--timeout",
            "5s",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(f.portal.resends().len(), 1);
}

/// A resend that brings no mail makes the next one wait twice as long; until it is due,
/// `--all-pending` looks in the mailbox without waiting, exits 0, and is quiet with -q.
/// `orders` says why the order is pending and when its next resend is due.
#[test]
fn resends_back_off_and_runs_in_backoff_are_quiet() {
    let Some(mut f) = Fixture::new() else { return };
    let silent = f.order("www.silent.example.com");
    let (code, results, _) = f.run(&["--all-pending", "--timeout", "3s"]);
    assert_eq!(code, Some(3), "{results:#}");
    assert_eq!(f.portal.resends().len(), 1);

    let (code, results, _) = f.run(&["--all-pending", "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "not_due", "{results:#}");
    assert_eq!(f.portal.resends().len(), 1, "not resent within the backoff");
    let output = f
        .fulfill()
        .args([
            "-q",
            "resend-and-import",
            "--all-pending",
            "--timeout",
            "30s",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let orders = stdout_json(&f.fulfill().args(["--json", "orders"]).output().unwrap());
    let line = (orders.as_array().unwrap().iter())
        .find(|o| o["id"] == silent.id)
        .unwrap();
    assert_eq!(line["pending"], true, "{line:#}");
    assert_eq!(line["pendency"]["reason"], "backoff", "{line:#}");
    assert!(line["next_resend"].is_string(), "{line:#}");

    // The mail comes late: a run in the backoff still finds and imports it.
    f.dovecot.append("INBOX", &silent.mail);
    let (code, results, _) = f.run(&["--all-pending", "--timeout", "30s"]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "imported", "{results:#}");
    assert_eq!(f.portal.resends().len(), 1);
}

/// A hook that fails once: the run exits 1 and says so in --json and in events; the next
/// run runs it again and it succeeds; a third run does not run it.
#[test]
fn a_failed_deploy_hook_is_retried_until_it_succeeds() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.retry.example.com");
    f.dovecot.append("INBOX", &order.mail);
    let (marker, log) = (
        f.home.path().join("failed-once"),
        f.home.path().join("hook.log"),
    );
    let hook = format!(
        "if [ ! -e {m} ]; then touch {m}; exit 1; fi; echo \"$FULFILL_SHA256\" >> {l}",
        m = marker.display(),
        l = log.display()
    );
    let args = [
        "--order",
        &order.id.to_string(),
        "--timeout",
        "10s",
        "--deploy-hook",
        &hook,
    ];
    let (code, results, stderr) = f.run(&args);
    assert_eq!(code, Some(1), "{results:#}\n{stderr}");
    assert_eq!(results[0]["outcome"], "imported");
    assert!(
        results[0]["deploy_hook"]
            .as_str()
            .unwrap()
            .starts_with("failed:"),
        "{results:#}"
    );
    assert!(f.event_kinds().contains(&"deploy_hook_failed".to_string()));
    assert!(!log.exists());

    let (code, results, _) = f.run(&args);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["outcome"], "already_imported");
    assert_eq!(results[0]["deploy_hook"], "ok", "{results:#}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{}\n", order.sha256)
    );

    let (code, results, _) = f.run(&args);
    assert_eq!(code, Some(0), "{results:#}");
    assert!(results[0]["deploy_hook"].is_null(), "{results:#}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "run once"
    );
}

/// A run killed after it recorded a certificate and before its hook ran: the next run
/// runs the hook, once; the one after does not.
#[test]
fn a_run_killed_before_its_deploy_hook_deploys_on_the_next_run() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.killed.example.com");
    f.dovecot.append("INBOX", &order.mail);
    let log = f.home.path().join("hook.log");
    let hook = format!("echo \"$FULFILL_SHA256\" >> {}", log.display());
    // The upload hangs after the record: the run is killed there, before its hook.
    f.portal
        .inject("createObject", Fault::Delay(Duration::from_secs(60)), 1);
    let order_id = order.id.to_string();
    let args = [
        "--order",
        order_id.as_str(),
        "--timeout",
        "10s",
        "--deploy-hook",
        &hook,
    ];
    let child = f.spawn(&args);
    wait_until("the certificate is recorded", || !f.rows().is_empty());
    kill(child);
    assert!(!log.exists(), "the hook had not run");
    f.portal.clear_faults();

    let (code, results, stderr) = f.run(&args);
    assert_eq!(code, Some(0), "{results:#}\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{}\n", order.sha256)
    );
    let (code, _, _) = f.run(&args);
    assert_eq!(code, Some(0));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "run once"
    );
}

/// A mail that holds two certificates of the order's key (a CA's reissue beside the
/// first): a run killed while it uploads the first, then a poll, records both. Only the
/// mail's last certificate may move the position past it.
#[test]
fn a_run_killed_between_two_certificates_of_one_mail_records_both() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.twice.example.com");
    let key = rcgen::KeyPair::from_pem(&order.key_pem).unwrap();
    let spec = pki::LeafSpec::new(&["www.twice.example.com"])
        .valid(pki::ymd(2025, 6, 1), pki::ymd(2034, 6, 1));
    let reissue = pki::pem_with(
        "CERTIFICATE",
        &pki::leaf_for_key(&spec, &key, &f.issuing),
        64,
        "\r\n",
    );
    let mail = String::from_utf8(order.mail.clone()).unwrap();
    let mail = mail.replacen(
        "Your certificate:\r\n",
        &format!("Your certificate:\r\n{reissue}"),
        1,
    );
    f.dovecot.append("INBOX", mail.as_bytes());
    f.portal
        .inject("createObject", Fault::Delay(Duration::from_secs(60)), 1);
    let child = (f.home.fulfill_process())
        .arg("--config")
        .arg(&f.config)
        .arg("poll")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first certificate is recorded", || f.rows().len() == 1);
    kill(child);
    f.portal.clear_faults();

    let output = (f.fulfill()).args(["--json", "poll"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        f.rows().len(),
        2,
        "both certificates of the mail are recorded"
    );
    assert_eq!(f.portal.calls("createObject"), 2, "each uploaded once");
}

/// A certificate left undeployed by a killed run is deployed by the next run, whichever
/// order that run is for, and its text output says so: it has no order line of its own.
#[test]
fn a_run_for_another_order_deploys_and_reports_an_earlier_certificate() {
    let Some(mut f) = Fixture::new() else { return };
    let killed = f.order("www.killed.example.com");
    let other = f.order("www.other.example.com");
    f.dovecot.append("INBOX", &killed.mail);
    let log = f.home.path().join("hook.log");
    let hook = format!("echo \"$FULFILL_SHA256\" >> {}", log.display());
    f.portal
        .inject("createObject", Fault::Delay(Duration::from_secs(60)), 1);
    let killed_id = killed.id.to_string();
    let child = f.spawn(&[
        "--order",
        &killed_id,
        "--timeout",
        "10s",
        "--deploy-hook",
        &hook,
    ]);
    wait_until("the certificate is recorded", || !f.rows().is_empty());
    kill(child);
    f.portal.clear_faults();
    f.dovecot.append("INBOX", &other.mail);

    let output = (f.fulfill())
        .args(["resend-and-import", "--order", &other.id.to_string()])
        .args(["--timeout", "10s", "--deploy-hook", &hook])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let hooked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        hooked.lines().count(),
        2,
        "both certificates deployed: {hooked}"
    );
    assert!(hooked.contains(&killed.sha256), "{hooked}");
    let earlier = (text.lines())
        .find(|line| line.contains("www.killed.example.com"))
        .unwrap_or_else(|| panic!("the earlier certificate is reported:\n{text}"));
    assert!(earlier.contains("deploy hook ok"), "{earlier}");
    let order_line = format!("order {} www.other.example.com: imported", other.id);
    assert!(text.contains(&order_line), "{text}");
    assert_eq!(
        (text.lines())
            .filter(|l| l.contains("www.other.example.com"))
            .count(),
        1,
        "this run's certificate has its order line only:\n{text}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let Some(mut f) = Fixture::new() else { return };
    let waiting = f.order("www.waiting.example.com");
    let present = f.order("www.present.example.com");
    let uid = f.dovecot.append("INBOX", &present.mail);
    let (code, results, _) = f.run(&["--all-pending", "--dry-run"]);
    assert_eq!(code, Some(0), "{results:#}");
    let outcome = |id: i64| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["order_id"] == id)
            .map(|r| r["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome(waiting.id).as_deref(), Some("would_resend"));
    assert_eq!(outcome(present.id).as_deref(), Some("would_import"));
    assert!(f.portal.resends().is_empty(), "no resend");
    assert_eq!(f.portal.calls("createObject"), 0, "no upload");
    assert!(
        f.dovecot.flags("INBOX", uid).unwrap().is_empty(),
        "no mailbox flag"
    );
    assert!(!f.home.default_db().exists(), "no database");
    assert!(
        !f.home
            .path()
            .join(".local/share/fulfill/fulfill.db.lock")
            .exists(),
        "no lock file"
    );
}

#[test]
fn the_deploy_hook_receives_the_certificate_and_its_facts() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.deploy.example.com");
    f.dovecot.append("INBOX", &order.mail);
    let out = f.home.path().join("deployed");
    let hook = format!(
        "cat > {out}.pem && env | grep '^FULFILL_' | sort > {out}.env",
        out = out.display()
    );
    let (code, results, _) = f.run(&["--order", &order.id.to_string(), "--deploy-hook", &hook]);
    assert_eq!(code, Some(0), "{results:#}");
    assert_eq!(results[0]["deploy_hook"], "ok");
    let pem_text = std::fs::read_to_string(out.with_extension("pem")).unwrap();
    let blocks = pem::parse_many(&pem_text).unwrap();
    assert_eq!(blocks.len(), 2, "certificate and chain");
    assert_eq!(
        fulfill::extract::sha256_hex(blocks[0].contents()),
        order.sha256
    );
    let env = std::fs::read_to_string(out.with_extension("env")).unwrap();
    assert!(
        env.contains(&format!("FULFILL_ORDER_ID={}", order.id)),
        "{env}"
    );
    assert!(
        env.contains(&format!("FULFILL_COMMON_NAME={}", order.name)),
        "{env}"
    );
    assert!(
        env.contains(&format!("FULFILL_SHA256={}", order.sha256)),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "FULFILL_PORTAL_ID={}",
            f.portal.certificates()[0].id
        )),
        "{env}"
    );

    // The certificate files, like certbot's live/: written whole, 0644, named to the hook;
    // the private key by its path only.
    let live = f
        .home
        .default_db()
        .parent()
        .unwrap()
        .join("live")
        .join(&order.name);
    for (variable, file) in [
        ("FULFILL_CERT_PATH", "cert.pem"),
        ("FULFILL_CHAIN_PATH", "chain.pem"),
        ("FULFILL_FULLCHAIN_PATH", "fullchain.pem"),
    ] {
        let path = live.join(file);
        assert!(
            env.contains(&format!("{variable}={}", path.display())),
            "{env}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{file}");
    }
    let cert = std::fs::read_to_string(live.join("cert.pem")).unwrap();
    let chain = std::fs::read_to_string(live.join("chain.pem")).unwrap();
    let fullchain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap();
    assert_eq!(pem::parse_many(&cert).unwrap().len(), 1);
    assert_eq!(
        fulfill::extract::sha256_hex(pem::parse(&cert).unwrap().contents()),
        order.sha256
    );
    assert_eq!(pem::parse_many(&chain).unwrap().len(), 1);
    assert_eq!(fullchain, format!("{cert}{chain}"));
    let key_file = f.keys.join(format!("{}.key", order.name));
    assert!(
        env.contains(&format!("FULFILL_KEY_PATH={}", key_file.display())),
        "{env}"
    );
    assert!(!env.contains("PRIVATE KEY"), "never the key itself: {env}");

    // A failing hook is reported: the run exits 1 once all else is done.
    let other = f.order("www.deploy2.example.com");
    f.dovecot.append("INBOX", &other.mail);
    let (code, results, _) = f.run(&["--order", &other.id.to_string(), "--deploy-hook", "exit 7"]);
    assert_eq!(code, Some(1));
    assert_eq!(results[0]["outcome"], "imported", "{results:#}");
    assert!(
        results[0]["deploy_hook"]
            .as_str()
            .unwrap()
            .starts_with("failed:"),
        "{results:#}"
    );
}

/// The command lines of contrib/fulfill.cron and contrib/fulfill.service, as the README
/// shows them, run here with the paths of this test.
#[test]
fn the_cron_and_systemd_examples_run() {
    let Some(mut f) = Fixture::new() else { return };
    let order = f.order("www.cron.example.com");
    f.on_resend_send(&order, vec![order.mail.clone()]);
    let repo = support::repo();
    let cron = std::fs::read_to_string(repo.join("contrib/fulfill.cron")).unwrap();
    // The package installs it as /etc/cron.d/fulfill, so it stays commented out (the timer
    // is the default): every line is a comment, the job is the one after "#*/".
    assert!(
        cron.lines()
            .all(|l| l.starts_with('#') || l.trim().is_empty()),
        "contrib/fulfill.cron runs nothing until uncommented"
    );
    let cron_line = cron
        .lines()
        .find_map(|l| l.strip_prefix('#').filter(|job| job.starts_with("*/")))
        .unwrap();
    // minute hour day month weekday user command...
    let cron_command: String = cron_line
        .split_whitespace()
        .skip(6)
        .collect::<Vec<_>>()
        .join(" ");
    let service = std::fs::read_to_string(repo.join("contrib/fulfill.service")).unwrap();
    let exec_start = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .to_string();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    assert!(
        readme.contains(cron_line),
        "the README shows contrib/fulfill.cron's line"
    );
    assert!(
        readme.contains(&exec_start),
        "the README shows contrib/fulfill.service's ExecStart"
    );
    let success: Vec<i32> = service
        .lines()
        .find_map(|l| l.strip_prefix("SuccessExitStatus="))
        .unwrap()
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();

    for command in [cron_command, exec_start] {
        let command = command
            .replace(
                "/usr/bin/fulfill",
                support::fulfill_binary().to_str().unwrap(),
            )
            .replace("/etc/fulfill/config.toml", f.config.to_str().unwrap())
            .replace(
                "/var/lib/fulfill/fulfill.db",
                f.home.default_db().to_str().unwrap(),
            )
            .replace("--timeout 20m", "--timeout 30s");
        let output = support::env::command("sh")
            .arg("-c")
            .arg(&command)
            .env("HOME", f.home.path())
            .output()
            .unwrap();
        let code = output.status.code().unwrap();
        assert!(
            code == 0 || success.contains(&code),
            "{command}: exit {code}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(f.portal.certificates().len(), 1);
    assert_eq!(f.portal.resends().len(), 1);
}

//! `fulfill poll` against a real Dovecot over TLS on loopback (tests/support/dovecot.rs):
//! both TLS modes, login refusal, certificate trust and pinning, finding fulfillment mail
//! among unrelated mail, incremental runs, UIDVALIDITY changes, oversized mail, a server
//! killed mid-run, IDLE, the --wait deadline, Secrets Manager as a second store, and XOAUTH2 with a token from
//! `oauth2_token_cmd` checked by Dovecot's oauth2 passdb. Mail arrives by IMAP APPEND, as a
//! CA's mail server would deliver it.

mod support;

use fulfill_test_pki as pki;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use support::dovecot::{
    Dovecot, OAuth2, Options, ServerCert, dovecot_or_skip, dovecot_or_skip_with,
};
use support::{Home, open_db, stdout_json};

/// A private Dovecot, a private home, a test CA, and a keys folder that fills up as
/// fulfillment mails are made.
struct Fixture {
    dovecot: Dovecot,
    home: Home,
    issuing: pki::Ca,
    keys: PathBuf,
    config: PathBuf,
    serial: u32,
    /// The `[mailbox]` line that says how to log in (`password_cmd` unless changed).
    credential: String,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        Some(Fixture::with(dovecot_or_skip()?))
    }

    fn with(dovecot: Dovecot) -> Fixture {
        let home = Home::new();
        let root = pki::root("Mailbox Test Root");
        let issuing = pki::intermediate("Mailbox Test Issuing CA", &root);
        let keys = home.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(home.path().join("root.pem"), &root.pem).unwrap();
        std::fs::write(
            home.path().join("imap-password"),
            format!("{}\n", dovecot.password()),
        )
        .unwrap();
        let config = home.path().join("config.toml");
        let credential = format!(
            "password_cmd = \"cat {}\"",
            home.path().join("imap-password").display()
        );
        let fixture = Fixture {
            dovecot,
            home,
            issuing,
            keys,
            config,
            serial: 0,
            credential,
        };
        fixture.configure("");
        fixture
    }

    /// Writes the config: IMAPS with the server's certificate as ca_file, plus `extra`
    /// lines in [mailbox] (later keys must not repeat these).
    fn configure(&self, extra: &str) {
        self.configure_raw(&format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nca_file = \"{}\"\n{extra}",
            self.dovecot.imaps_port(),
            self.dovecot.cert_pem_path().display()
        ));
    }

    /// Writes the config with exactly these connection lines.
    fn configure_raw(&self, connection: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[mailbox]\n{connection}\nusername = \"{}\"\n{}\ntimeout = \"5s\"\nrun_timeout = \"2m\"\n\
                 [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
                self.dovecot.user(),
                self.credential,
                self.keys.display(),
                self.home.path().join("root.pem").display()
            ),
        )
        .unwrap();
    }

    fn fulfill(&self) -> assert_cmd::Command {
        let mut cmd = self.home.fulfill();
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// `fulfill --json poll ARGS`, its exit code and its report.
    fn poll(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let output = self
            .fulfill()
            .args(["--json", "poll"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.stdout.is_empty() {
            panic!(
                "poll printed nothing; stderr:\n{stderr}\ndovecot log:\n{}",
                self.dovecot.log()
            );
        }
        (output.status.code(), stdout_json(&output))
    }

    /// A CA's fulfillment mail for a new certificate of `name`, whose key (and CSR) go into
    /// the keys folder when `ours`.
    fn fulfillment_mail(&mut self, name: &str, ours: bool) -> Vec<u8> {
        self.serial += 1;
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        if ours {
            std::fs::write(
                self.keys.join(format!("{name}-{}.key", self.serial)),
                leaf.key_pem(),
            )
            .unwrap();
            std::fs::write(
                self.keys.join(format!("{name}-{}.csr", self.serial)),
                pki::csr_pem(&leaf.key, Some(name), &[name]),
            )
            .unwrap();
        }
        format!(
            "From: \"Test CA Orders\" <orders@ca.example>\r\nTo: certs@example.com\r\n\
             Subject: Your certificate for {name}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{}.{name}@ca.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n\
             Your certificate for {name} is below.\r\n\r\n{}{}\r\nThe Test CA team\r\n",
            self.serial,
            leaf.pem.replace('\n', "\r\n"),
            self.issuing.pem.replace('\n', "\r\n"),
        )
        .into_bytes()
    }

    fn certificates_in_db(&self) -> Vec<String> {
        let db = open_db(&self.home.default_db());
        let mut stmt = db
            .prepare("SELECT common_name FROM certificates ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn unrelated_mail(i: usize) -> Vec<u8> {
    format!(
        "From: colleague{i}@example.com\r\nTo: certs@example.com\r\nSubject: Lunch {i}?\r\n\
         Date: Sun, 29 Nov 2026 09:00:00 +0000\r\nMessage-ID: <lunch{i}@example.com>\r\n\r\nSee you at noon.\r\n"
    )
    .into_bytes()
}

fn imported(report: &serde_json::Value) -> Vec<String> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "imported")
        .map(|r| r["common_name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn imports_over_implicit_tls_and_marks_the_mail() {
    let Some(mut f) = Fixture::new() else { return };
    let mail = f.fulfillment_mail("www.tls.example.com", true);
    let uid = f.dovecot.append("INBOX", &mail);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(imported(&report), vec!["www.tls.example.com"]);
    assert_eq!(f.certificates_in_db(), vec!["www.tls.example.com"]);
    let source = report["results"][0]["source"].as_str().unwrap();
    assert!(
        source.starts_with("imap://") && source.ends_with(&format!(";UID={uid}")),
        "{source}"
    );
    // after_import = "flag" (the default): the keyword, and no \Seen (fetched with PEEK).
    let flags = f.dovecot.flags("INBOX", uid).unwrap();
    assert!(flags.iter().any(|k| k == "$FulfillImported"), "{flags:?}");
    assert!(!flags.iter().any(|k| k == "\\Seen"), "{flags:?}");
    assert_eq!(f.dovecot.count("INBOX"), 1, "nothing is deleted");
}

/// With `[secrets_manager]`, what poll imports from the mailbox also goes to Secrets
/// Manager: the first mail's certificate creates the secret, the renewal's adds a version,
/// and a poll with nothing new sends nothing there.
#[test]
fn poll_imports_into_secrets_manager_a_secret_then_a_version() {
    use support::secrets_manager::{API_KEY, LocalSecretsManager};
    let Some(mut f) = Fixture::new() else { return };
    let sm = LocalSecretsManager::start();
    let config = std::fs::read_to_string(&f.config).unwrap() + &sm.config_section();
    std::fs::write(&f.config, config).unwrap();
    let name = "www.poll-sm.example.com";
    let poll = |f: &Fixture| {
        let output = (f.fulfill())
            .env("IBMCLOUD_API_KEY", API_KEY)
            .args(["--json", "poll"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        stdout_json(&output)
    };
    for (round, done) in [(1, "secret created"), (2, "version added")] {
        let mail = f.fulfillment_mail(name, true);
        f.dovecot.append("INBOX", &mail);
        let report = poll(&f);
        assert_eq!(imported(&report), vec![name], "{report:#}");
        let summary = report["results"][0]["secrets_manager"]
            .as_str()
            .unwrap_or_default();
        assert!(summary.contains(done), "{report:#}");
        assert_eq!(sm.versions(name).len(), round);
    }
    let db = open_db(&f.home.default_db());
    let recorded: Vec<String> = (db.prepare("SELECT sha256 FROM certificates ORDER BY id"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        sm.versions(name),
        recorded,
        "one version per mail, in order"
    );
    let secret_id = sm.secrets()[0].id.clone();
    let writes = |sm: &LocalSecretsManager| {
        sm.calls("POST", "/api/v2/secrets")
            + sm.calls("POST", &format!("/api/v2/secrets/{secret_id}/versions"))
    };
    let before = writes(&sm);
    let report = poll(&f);
    assert!(imported(&report).is_empty(), "{report:#}");
    assert_eq!(writes(&sm), before, "nothing new, nothing sent");
    assert_eq!(sm.secrets().len(), 1);
}

/// The plain port refuses any login before STARTTLS (dovecot_selftest checks that), so
/// this passes only if fulfill really started TLS.
#[test]
fn imports_over_starttls() {
    let Some(mut f) = Fixture::new() else { return };
    f.configure_raw(&format!(
        "host = \"{}\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"",
        f.dovecot.starttls_host(),
        f.dovecot.imap_port(),
        f.dovecot.cert_pem_path().display()
    ));
    let mail = f.fulfillment_mail("www.starttls.example.com", true);
    f.dovecot.append("INBOX", &mail);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(imported(&report), vec!["www.starttls.example.com"]);
    // fulfill's login is the one on the plain port, and the server saw it over TLS.
    let log = f.dovecot.log();
    let logins: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" Login: ") && l.contains("lip=127.0.0.2"))
        .collect();
    assert_eq!(logins.len(), 1, "{log}");
    assert!(logins[0].contains(", TLS,"), "{log}");
}

#[test]
fn a_wrong_password_shows_the_server_refusal() {
    let Some(f) = Fixture::new() else { return };
    std::fs::write(f.home.path().join("imap-password"), "wrong\n").unwrap();
    f.fulfill().arg("poll").assert().code(1).stderr(
        predicate::str::contains("refused the login")
            .and(predicate::str::contains("uthentication failed")),
    );
    // The password from FULFILL_IMAP_PASSWORD wins over password_cmd.
    f.fulfill()
        .env("FULFILL_IMAP_PASSWORD", f.dovecot.password())
        .arg("poll")
        .assert()
        .success();
}

#[test]
fn an_untrusted_server_certificate_is_refused_and_a_pinned_one_accepted() {
    let Some(f) = Fixture::new() else { return };
    // No ca_file: the self-signed server certificate is not trusted.
    f.configure_raw(&format!(
        "host = \"127.0.0.1\"\nport = {}",
        f.dovecot.imaps_port()
    ));
    f.fulfill().arg("poll").assert().code(1).stderr(
        predicate::str::contains("TLS with 127.0.0.1 failed")
            .and(predicate::str::contains("ca_file")),
    );
    // Pinned by SHA-256: accepted without a CA.
    f.configure_raw(&format!(
        "host = \"127.0.0.1\"\nport = {}\npin_sha256 = \"{}\"",
        f.dovecot.imaps_port(),
        f.dovecot.cert_sha256()
    ));
    f.fulfill().arg("poll").assert().success();
    // A wrong pin is refused.
    f.configure_raw(&format!(
        "host = \"127.0.0.1\"\nport = {}\npin_sha256 = \"{}\"",
        f.dovecot.imaps_port(),
        "00".repeat(32)
    ));
    f.fulfill()
        .arg("poll")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not the pinned"));
}

/// Every way a server certificate can be wrong, over implicit TLS and over STARTTLS: the
/// poll fails before the password is sent, naming the host and OpenSSL's reason. The
/// certificate is the server's own ca_file, so only the named fault can refuse it.
#[test]
fn server_certificates_for_another_name_expired_or_self_signed_are_refused() {
    let cases = [
        (
            ServerCert::OtherName("mail.elsewhere.example".into()),
            true,
            "IP address mismatch",
        ),
        (ServerCert::Expired, true, "certificate has expired"),
        (
            ServerCert::NotYetValid,
            true,
            "certificate is not yet valid",
        ),
        // Self-signed and not in ca_file: nothing vouches for it.
        (ServerCert::Localhost, false, "self-signed certificate"),
    ];
    for (cert, trusted, reason) in cases {
        let Some(dovecot) = dovecot_or_skip_with(Options {
            cert: cert.clone(),
            ..Options::default()
        }) else {
            return;
        };
        let f = Fixture::with(dovecot);
        for (security, host, port) in [
            ("tls", f.dovecot.host(), f.dovecot.imaps_port()),
            ("starttls", f.dovecot.starttls_host(), f.dovecot.imap_port()),
        ] {
            let mut connection =
                format!("host = \"{host}\"\nport = {port}\nsecurity = \"{security}\"");
            if trusted {
                let ca_file = f.dovecot.cert_pem_path().display().to_string();
                connection.push_str(&format!("\nca_file = \"{ca_file}\""));
            }
            f.configure_raw(&connection);
            f.fulfill().arg("poll").assert().code(1).stderr(
                predicate::str::contains(format!("TLS with {host} failed"))
                    .and(predicate::str::contains(reason)),
            );
        }
    }
}

#[test]
fn finds_fulfillment_mail_among_unrelated_mail_and_a_second_run_fetches_nothing() {
    let Some(mut f) = Fixture::new() else { return };
    let mut mails: Vec<Vec<u8>> = (0..40).map(unrelated_mail).collect();
    mails.insert(7, f.fulfillment_mail("www.one.example.com", true));
    mails.insert(23, f.fulfillment_mail("www.two.example.com", true));
    // A forged mail: right shape, a genuine CA signature, but not our key.
    mails.insert(30, f.fulfillment_mail("www.one.example.com", false));
    f.dovecot.append_many("INBOX", &mails);

    let (code, first) = f.poll(&[]);
    assert_eq!(code, Some(0), "{first:#}");
    assert_eq!(first["new_messages"], 43);
    assert_eq!(
        imported(&first),
        vec!["www.one.example.com", "www.two.example.com"]
    );
    let rejected: Vec<_> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["reasons"][0]["rule"], 1,
        "the forged mail fails the key rule"
    );
    // Unrelated mail is left as it was.
    let uids = f.dovecot.uids("INBOX");
    assert!(f.dovecot.flags("INBOX", uids[0]).unwrap().is_empty());

    let (code, second) = f.poll(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(second["new_messages"], 0);
    assert!(second["results"].as_array().unwrap().is_empty());
    let first_bytes = first["bytes_read"].as_u64().unwrap();
    let second_bytes = second["bytes_read"].as_u64().unwrap();
    assert!(
        second_bytes * 5 < first_bytes,
        "a run with nothing new fetches nothing: {second_bytes} vs {first_bytes}"
    );
    assert_eq!(f.certificates_in_db().len(), 2);

    // New mail after that is found by the next run, and only it.
    let third_mail = f.fulfillment_mail("www.three.example.com", true);
    f.dovecot.append("INBOX", &third_mail);
    let (_, third) = f.poll(&[]);
    assert_eq!(third["new_messages"], 1);
    assert_eq!(imported(&third), vec!["www.three.example.com"]);
}

#[test]
fn a_changed_uidvalidity_rescans_without_importing_twice() {
    let Some(mut f) = Fixture::new() else { return };
    let mail = f.fulfillment_mail("www.valid.example.com", true);
    f.dovecot.append_many("INBOX", [unrelated_mail(1), mail]);
    let (_, first) = f.poll(&[]);
    assert_eq!(imported(&first), vec!["www.valid.example.com"]);

    let old = f.dovecot.uidvalidity("INBOX");
    f.dovecot.set_uidvalidity("INBOX", old + 1000);
    let (code, second) = f.poll(&[]);
    assert_eq!(code, Some(0), "{second:#}");
    assert_eq!(second["uidvalidity_changed"], true);
    assert_eq!(
        second["new_messages"], 2,
        "the whole window is looked at again"
    );
    assert!(imported(&second).is_empty());
    assert_eq!(second["results"][0]["outcome"], "already_imported");
    assert_eq!(f.certificates_in_db().len(), 1);
    // And the run after that is quiet again.
    let (_, third) = f.poll(&[]);
    assert_eq!(third["new_messages"], 0);
}

#[test]
fn oversized_mail_is_skipped_unfetched() {
    let Some(mut f) = Fixture::new() else { return };
    f.configure("max_message_size = \"8KiB\"\n");
    let mut big = f.fulfillment_mail("www.big.example.com", true);
    let padding = format!("{}\r\n", "x".repeat(70)).repeat(200);
    big.extend_from_slice(padding.as_bytes());
    let small = f.fulfillment_mail("www.small.example.com", true);
    f.dovecot.append_many("INBOX", [big, small]);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["too_large"], 1);
    assert_eq!(imported(&report), vec!["www.small.example.com"]);
    assert!(
        (report["bytes_read"].as_u64().unwrap()) < 14_000,
        "the big mail was not downloaded"
    );
    let db = open_db(&f.home.default_db());
    let skipped: String = db
        .query_row(
            "SELECT detail FROM events WHERE kind = 'mail_too_large'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(skipped.contains("max_message_size"), "{skipped}");
}

#[test]
fn a_server_killed_mid_run_loses_and_duplicates_nothing() {
    let Some(mut f) = Fixture::new() else { return };
    let count = 25;
    let names: Vec<String> = (0..count)
        .map(|i| format!("www.crash{i}.example.com"))
        .collect();
    let mails: Vec<Vec<u8>> = names.iter().map(|n| f.fulfillment_mail(n, true)).collect();
    f.dovecot.append_many("INBOX", &mails);

    let child = f
        .home
        .fulfill_process()
        .arg("--config")
        .arg(&f.config)
        .arg("poll")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server as soon as the first certificate is recorded: mid-run.
    let started = Instant::now();
    loop {
        let recorded = f.home.default_db().exists()
            && open_db(&f.home.default_db())
                .query_row("SELECT count(*) FROM certificates", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap_or(0)
                > 0;
        if recorded || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f.dovecot.kill_hard();
    let output = child.wait_with_output().unwrap();
    let done_before = f.certificates_in_db().len();
    eprintln!("server killed after {done_before} of {count} certificates were recorded");
    if output.status.success() {
        // The run finished before the kill landed; the rest of the test still holds.
        assert_eq!(done_before, count);
    } else {
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            done_before < count,
            "killed mid-run: {done_before} of {count}"
        );
    }

    f.dovecot.restart();
    f.configure("");
    // A Dovecot restarted after SIGKILL may first recover the index and locks the killed
    // one left: once, on a loaded CI machine, its SELECT took longer than the 5 s of the
    // other tests. The assertions are about fulfill's records, not Dovecot's speed.
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(
        &f.config,
        config.replace("timeout = \"5s\"", "timeout = \"60s\""),
    )
    .unwrap();
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    let mut recorded = f.certificates_in_db();
    recorded.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(recorded, expected, "every certificate exactly once");
    assert_eq!(
        imported(&report).len(),
        count - done_before,
        "the second run picked up where the first stopped"
    );
}

#[test]
fn wait_returns_when_idle_sees_the_mail_arrive() {
    let Some(mut f) = Fixture::new() else { return };
    let mail = f.fulfillment_mail("www.idle.example.com", true);
    let mut child = f
        .home
        .fulfill_process()
        .arg("--config")
        .arg(&f.config)
        .args(["--json", "poll", "--wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Deliver once it has finished its first pass and waits in IDLE: seen on the server,
    // not guessed with a sleep. A run that ends before that fails here with its output.
    let started = Instant::now();
    while !f.dovecot.is_idling() {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "poll --wait ended ({status}) before it waited in IDLE:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if started.elapsed() > Duration::from_secs(50) {
            let _ = child.kill();
            panic!("poll --wait never waited in IDLE\n{}", f.dovecot.log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let delivered = Instant::now();
    f.dovecot.append("INBOX", &mail);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // IDLE woke it: it did not sit out the 60 s deadline.
    assert!(
        delivered.elapsed() < Duration::from_secs(30),
        "returned after {:?}",
        delivered.elapsed()
    );
    let report = stdout_json(&output);
    assert_eq!(imported(&report), vec!["www.idle.example.com"]);
    assert_eq!(report["timed_out"], false);
}

#[test]
fn wait_deadline_exits_3_and_keeps_state() {
    let Some(f) = Fixture::new() else { return };
    f.dovecot.append("INBOX", &unrelated_mail(1));
    let (code, report) = f.poll(&["--wait", "2s"]);
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!(report["timed_out"], true);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        report["new_messages"], 0,
        "the state of the timed-out run was kept"
    );
}

/// At a terminal, `poll --wait` shows what it waits for and how long it has waited, ticking
/// while IDLE blocks; without a terminal it shows nothing of the kind.
#[test]
fn a_wait_shows_a_status_line_at_a_terminal() {
    let Some(f) = Fixture::new() else { return };
    let mut cmd = f.home.fulfill_process();
    cmd.arg("--config")
        .arg(&f.config)
        .args(["poll", "--wait", "3s"]);
    let Some(shown) = support::at_a_terminal(&cmd) else {
        return;
    };
    let text = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(shown.status.code(), Some(3), "{text}");
    assert!(
        text.contains("waiting for new mail: 0s of 3s (IDLE)"),
        "{text:?}"
    );
    assert!(
        text.contains("waiting for new mail: 2s of 3s (IDLE)"),
        "it ticks while IDLE blocks:\n{text:?}"
    );
    let piped = cmd.output().unwrap();
    assert_eq!(piped.status.code(), Some(3));
    let all = [piped.stdout, piped.stderr].concat();
    let all = String::from_utf8_lossy(&all);
    assert!(
        !all.contains("waiting for new mail") && !all.contains('\r') && !all.contains('\x1b'),
        "{all:?}"
    );
}

#[test]
fn dry_run_changes_nothing_and_senders_filter_on_the_server() {
    let Some(mut f) = Fixture::new() else { return };
    let mail = f.fulfillment_mail("www.dry.example.com", true);
    let uid = f.dovecot.append("INBOX", &mail);
    let (code, report) = f.poll(&["--dry-run"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["results"][0]["outcome"], "would_import");
    assert!(!f.home.default_db().exists(), "no database written");
    assert!(
        f.dovecot.flags("INBOX", uid).unwrap().is_empty(),
        "no flag set"
    );

    // Only mail from the listed senders is looked at.
    f.configure("senders = [\"someone-else@ca.example\"]\n");
    let (_, report) = f.poll(&[]);
    assert_eq!(report["new_messages"], 0);
    f.configure("senders = [\"someone-else@ca.example\", \"orders@ca.example\"]\nafter_import = \"move:Imported\"\n");
    f.dovecot.create_folder("Imported");
    let (_, report) = f.poll(&[]);
    assert_eq!(imported(&report), vec!["www.dry.example.com"]);
    assert_eq!(f.dovecot.count("INBOX"), 0);
    assert_eq!(f.dovecot.count("Imported"), 1, "moved, not deleted");
}

// ---------------------------------------------------------------------------------------
// XOAUTH2 (Gmail, Office 365): the token comes from oauth2_token_cmd, and Dovecot's oauth2
// passdb asks the test's introspection endpoint whether it is active.
// ---------------------------------------------------------------------------------------

/// Shaped like a Google access token, so nothing in between treats it specially.
const VALID_TOKEN: &str = "ya29.fulfill-valid-token-7f3a9c01e5d2";
const WRONG_TOKEN: &str = "ya29.fulfill-wrong-token-2b8d4e6f1093";

impl Fixture {
    /// A Dovecot that offers XOAUTH2 and knows only `valid` as a token, and a config that
    /// logs in with `oauth2_token_cmd` (no password anywhere): the command appends a line
    /// to `token-runs` (see [`Fixture::token_runs`]) and prints the `imap-token` file.
    fn oauth2(valid: &str) -> Option<Fixture> {
        let dovecot = dovecot_or_skip_with(Options {
            oauth2: Some(OAuth2::token(valid)),
            ..Options::default()
        })?;
        let mut f = Fixture::with(dovecot);
        std::fs::remove_file(f.home.path().join("imap-password")).unwrap();
        f.set_token(valid);
        f.credential = format!(
            "oauth2_token_cmd = \"echo run >> {}; cat {}\"",
            f.home.path().join("token-runs").display(),
            f.home.path().join("imap-token").display()
        );
        f.configure("");
        Some(f)
    }

    /// What `oauth2_token_cmd` prints from now on.
    fn set_token(&self, token: &str) {
        std::fs::write(self.home.path().join("imap-token"), format!("{token}\n")).unwrap();
    }

    /// How many times `oauth2_token_cmd` ran.
    fn token_runs(&self) -> usize {
        std::fs::read_to_string(self.home.path().join("token-runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// `token`, and the XOAUTH2 string carrying it as it goes on the wire (base64): output
/// holding any of them leaked the token.
fn token_forms(user: &str, token: &str) -> Vec<String> {
    use base64::Engine as _;
    let sasl = format!("user={user}\x01auth=Bearer {token}\x01\x01");
    vec![
        token.to_string(),
        base64::engine::general_purpose::STANDARD.encode(sasl),
    ]
}

#[test]
fn xoauth2_with_a_token_from_the_command_logs_in_and_imports() {
    let Some(mut f) = Fixture::oauth2(VALID_TOKEN) else {
        return;
    };
    let mail = f.fulfillment_mail("www.oauth.example.com", true);
    let uid = f.dovecot.append("INBOX", &mail);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}\n{}", f.dovecot.log());
    assert_eq!(imported(&report), vec!["www.oauth.example.com"]);
    assert_eq!(f.certificates_in_db(), vec!["www.oauth.example.com"]);
    let flags = f.dovecot.flags("INBOX", uid).unwrap();
    assert!(flags.iter().any(|k| k == "$FulfillImported"), "{flags:?}");

    // The login really went through XOAUTH2 and the oauth2 passdb: the endpoint was asked
    // about exactly this token, once, and Dovecot logged the mechanism.
    let introspection = f.dovecot.introspection();
    assert_eq!(introspection.tokens(), vec![VALID_TOKEN]);
    assert_eq!(introspection.bad_requests(), 0);
    let log = f.dovecot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("Login: user=<fulfill-test>") && l.contains("method=XOAUTH2")),
        "{log}"
    );
    assert_eq!(f.token_runs(), 1);
}

/// The password sent as a token, a wrong token and an expired one (valid before, no longer
/// active): refused with exit 1, an error that names XOAUTH2 and oauth2_token_cmd and says
/// what to do, and no token in any output, at -vvv and with --json.
#[test]
fn a_refused_xoauth2_token_says_what_to_do_and_leaks_nothing() {
    let Some(f) = Fixture::oauth2(VALID_TOKEN) else {
        return;
    };
    let user = f.dovecot.user();
    let secrets: Vec<String> = [VALID_TOKEN, WRONG_TOKEN]
        .iter()
        .flat_map(|t| token_forms(user, t))
        .collect();
    let mut expected_tokens = Vec::new();
    let refused = |args: &[&str]| {
        let output = f.fulfill().args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let all = format!(
            "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        assert_eq!(output.status.code(), Some(1), "{all}");
        // The server's reason travels in its XOAUTH2 error challenge (a JSON object).
        for needle in [
            "refused the login",
            "XOAUTH2",
            "oauth2_token_cmd",
            "fresh access token",
            "\"status\":\"401\"",
        ] {
            assert!(
                stderr.contains(needle),
                "no {needle:?} in the error:\n{all}"
            );
        }
        for secret in &secrets {
            assert!(!all.contains(secret.as_str()), "{secret} leaked:\n{all}");
        }
    };

    // The account's password is no token: only the oauth2 passdb answers XOAUTH2, so a
    // login through it is always the token check.
    f.set_token(f.dovecot.password());
    refused(&["poll"]);
    expected_tokens.push(f.dovecot.password());
    // Wrong token.
    f.set_token(WRONG_TOKEN);
    for args in [&["-vvv", "poll"][..], &["-vvv", "--json", "poll"]] {
        refused(args);
        expected_tokens.push(WRONG_TOKEN);
    }
    // Expired: it logs in, then the authorization server stops accepting it.
    f.set_token(VALID_TOKEN);
    f.fulfill().arg("poll").assert().success();
    expected_tokens.push(VALID_TOKEN);
    f.dovecot
        .introspection()
        .set_valid_token("ya29.fulfill-renewed-token");
    for args in [&["-vvv", "poll"][..], &["-vvv", "--json", "poll"]] {
        refused(args);
        expected_tokens.push(VALID_TOKEN);
    }

    // Each attempt was one question to the endpoint: the refusals came from the token check,
    // not from some other fault before it. (That the client answers the server's error
    // challenge with an empty line is a unit test in src/mailbox: Dovecot ends the exchange
    // the same way whatever the answer, so it cannot be seen from here.)
    assert_eq!(f.dovecot.introspection().tokens(), expected_tokens);
    let log = f.dovecot.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("auth failed") && l.contains("method=XOAUTH2"))
            .count(),
        5,
        "{log}"
    );
}

/// Tokens expire within the hour, so the command runs on every connect: once per run, and
/// a token renewed between runs is the one sent.
#[test]
fn the_token_command_runs_on_every_connect() {
    let Some(f) = Fixture::oauth2(VALID_TOKEN) else {
        return;
    };
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(f.token_runs(), 1);

    let renewed = "ya29.fulfill-renewed-token-93c1d0";
    f.dovecot.introspection().set_valid_token(renewed);
    f.set_token(renewed);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}\n{}", f.dovecot.log());
    assert_eq!(f.token_runs(), 2);
    assert_eq!(
        f.dovecot.introspection().tokens(),
        vec![VALID_TOKEN, renewed],
        "the second run sent the renewed token, not a remembered one"
    );
}

// ---------------------------------------------------------------------------------------
// password_cmd can neither hang a run nor outlive it (no Dovecot needed: the commands run
// before any connection).
// ---------------------------------------------------------------------------------------

/// A config whose mailbox is a closed port on loopback, logging in with `password_cmd`,
/// and the file where that command writes its shell's pid: with each child leading its own
/// process group, that is also the group's id.
fn hanging_password_setup(password_cmd: &str, run_timeout: &str) -> (Home, PathBuf, PathBuf) {
    let home = Home::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pid_file = home.path().join("pgid");
    let keys = home.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailbox]\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"u\"\n\
             password_cmd = \"echo $$ > {}; {password_cmd}\"\ntimeout = \"5s\"\nrun_timeout = \"{run_timeout}\"\n\
             [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            pid_file.display(),
            keys.display(),
            support::samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    (home, config, pid_file)
}

/// Runs `fulfill poll`, killing it if it has not ended within `limit`.
fn poll_within(home: &Home, config: &PathBuf, limit: Duration) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fulfill"))
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FULFILL_IMAP_PASSWORD")
        .arg("--config")
        .arg(config)
        .arg("poll")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("fulfill poll still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether process group `pgid` ends within a few seconds. Killed processes whose parent
/// was the shell are reparented, and a container's init may never reap them: zombies in
/// `/proc` count as gone.
fn group_ends(pgid_file: &std::path::Path) -> bool {
    let pgid = std::fs::read_to_string(pgid_file)
        .unwrap()
        .trim()
        .to_string();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // "pid (comm) state ppid pgrp ..."
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or("", |(_, after)| after)
                    .split_whitespace()
                    .collect();
                fields.get(2) == Some(&pgid.as_str()) && fields.first() != Some(&"Z")
            })
            .count();
        if alive == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_password_cmd_leaving_a_background_child_gives_its_line_and_leaves_nothing() {
    let (home, config, pgid) = hanging_password_setup("sleep 600 & echo pw", "2m");
    let (code, stderr) = poll_within(&home, &config, Duration::from_secs(30));
    // The password came back; the run went on to the (closed) mailbox port.
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        !stderr.contains("password_cmd") && stderr.contains("connecting to the mailbox"),
        "{stderr}"
    );
    assert!(group_ends(&pgid), "the background sleep was killed");
}

#[test]
fn the_watchdog_covers_a_hanging_password_cmd_and_kills_it() {
    let (home, config, pgid) = hanging_password_setup("sleep 600", "2s");
    let (code, stderr) = poll_within(&home, &config, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("took longer than 2s"), "{stderr}");
    assert!(group_ends(&pgid), "the watchdog killed the command's group");
}

/// `poll` records certificates, so it runs the deploy hook for them too.
#[test]
fn poll_runs_the_deploy_hook_for_what_it_imports() {
    let Some(mut f) = Fixture::new() else { return };
    let log = f.home.path().join("hook.log");
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(
        &f.config,
        format!(
            "deploy_hook = \"echo $FULFILL_COMMON_NAME >> {}\"\n{config}",
            log.display()
        ),
    )
    .unwrap();
    let mail = f.fulfillment_mail("www.polled.example.com", true);
    f.dovecot.append("INBOX", &mail);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["deployments"][0]["ok"], true, "{report:#}");
    assert_eq!(report["results"][0]["deploy_hook"], "ok", "{report:#}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "www.polled.example.com\n"
    );
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "once"
    );
}

// ---------------------------------------------------------------------------------------
// after_import that cannot be applied: the mail is never lost from sight.
// ---------------------------------------------------------------------------------------

impl Fixture {
    /// `(kind, detail)` of every event.
    fn events(&self) -> Vec<(String, String)> {
        let db = open_db(&self.home.default_db());
        let mut stmt = db
            .prepare("SELECT kind, detail FROM events ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// `(uid, action, last_error)` of every pending mark.
    fn pending_marks(&self) -> Vec<(u32, String, Option<String>)> {
        let db = open_db(&self.home.default_db());
        let mut stmt = db
            .prepare("SELECT uid, action, last_error FROM pending_marks ORDER BY uid")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn last_uid(&self) -> u32 {
        open_db(&self.home.default_db())
            .query_row("SELECT last_uid FROM mailbox_state", [], |r| r.get(0))
            .unwrap()
    }
}

fn events_of<'a>(events: &'a [(String, String)], kind: &str) -> Vec<&'a str> {
    (events.iter())
        .filter(|(k, _)| k == kind)
        .map(|(_, detail)| detail.as_str())
        .collect()
}

/// `move:Imported` and no such folder: the first mark creates it (and says so), every mail
/// of the run is moved, and the mail without a certificate is in `events` with its UID.
#[test]
fn a_move_into_a_missing_folder_creates_it_and_moves_every_mail() {
    let Some(mut f) = Fixture::new() else { return };
    f.configure("after_import = \"move:Imported\"\n");
    let first = f.fulfillment_mail("www.first.example.com", true);
    let second = f.fulfillment_mail("www.second.example.com", true);
    let uids = f
        .dovecot
        .append_many("INBOX", [first, unrelated_mail(1), second]);
    // `check` says so beforehand, and changes nothing.
    f.fulfill().arg("check").assert().success().stdout(
        predicate::str::contains("mailbox      ok     logged in as fulfill-test")
            .and(predicate::str::contains("folder INBOX holds 3 messages"))
            .and(predicate::str::contains(
                "the server certificate verified with",
            ))
            .and(predicate::str::contains(
                "capabilities ok     IDLE: yes (new mail is seen at once); MOVE: yes",
            ))
            .and(predicate::str::contains(
                "after_import ok     \"move:Imported\": the folder Imported does not exist on \
                 127.0.0.1; the first run that imports a certificate creates it",
            )),
    );
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        imported(&report),
        vec!["www.first.example.com", "www.second.example.com"]
    );
    f.fulfill()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "\"move:Imported\": the folder Imported exists",
        ));
    assert_eq!(f.dovecot.count("Imported"), 2);
    assert_eq!(
        f.dovecot.uids("INBOX"),
        vec![uids[1]],
        "only the ordinary mail is left"
    );
    assert!(f.pending_marks().is_empty());
    let events = f.events();
    let created = events_of(&events, "mailbox_folder_created");
    assert_eq!(created.len(), 1, "{events:#?}");
    assert!(
        created[0].contains("the folder Imported did not exist"),
        "{events:#?}"
    );
    let ordinary = events_of(&events, "mail_without_certificate");
    assert_eq!(ordinary.len(), 1, "{events:#?}");
    assert!(
        ordinary[0].ends_with(&format!(";UID={}", uids[1])),
        "{events:#?}"
    );
}

/// A `move:` folder that cannot be created (a file stands where Dovecot would keep it, so
/// LIST does not show it and CREATE fails, as on a server that does not let the user create
/// folders): the certificates are recorded, the run goes on to the next mail, and each mark
/// is left pending with its error and an event. Once the folder can be made, the next run
/// moves both mails, although the position had passed them.
#[test]
fn a_mark_that_fails_stays_pending_until_the_next_run_applies_it() {
    let Some(mut f) = Fixture::new() else { return };
    f.configure("after_import = \"move:Imported\"\n");
    let first = f.fulfillment_mail("www.first.example.com", true);
    let second = f.fulfillment_mail("www.second.example.com", true);
    let uids = f
        .dovecot
        .append_many("INBOX", [first, unrelated_mail(1), second]);
    let blocker = f.dovecot.folder_path("Imported");
    std::fs::write(&blocker, "not a folder").unwrap();

    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        imported(&report),
        vec!["www.first.example.com", "www.second.example.com"],
        "the run carried on after the first failed mark"
    );
    assert_eq!(
        report["mark_failures"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    assert_eq!(f.dovecot.count("INBOX"), 3, "nothing moved");
    assert_eq!(f.last_uid(), uids[2]);
    let pending = f.pending_marks();
    assert_eq!(
        pending
            .iter()
            .map(|(uid, action, _)| (*uid, action.as_str()))
            .collect::<Vec<_>>(),
        vec![(uids[0], "move:Imported"), (uids[2], "move:Imported")]
    );
    assert!(
        pending.iter().all(|(_, _, error)| error.is_some()),
        "{pending:?}"
    );
    let events = f.events();
    let failed = events_of(&events, "mark_failed");
    assert_eq!(failed.len(), 2, "{events:#?}");
    assert!(
        failed[0].contains(&format!(";UID={}:", uids[0])),
        "{events:#?}"
    );
    assert!(
        failed[1].contains(&format!(";UID={}:", uids[2])),
        "{events:#?}"
    );

    // Still failing: still pending, and no new event for the same error.
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["new_messages"], 0);
    assert_eq!(f.pending_marks().len(), 2);
    assert_eq!(events_of(&f.events(), "mark_failed").len(), 2);

    std::fs::remove_file(&blocker).unwrap();
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["new_messages"], 0);
    assert_eq!(f.dovecot.count("Imported"), 2, "both mails moved");
    assert_eq!(f.dovecot.uids("INBOX"), vec![uids[1]]);
    assert!(f.pending_marks().is_empty());
    let events = f.events();
    assert_eq!(events_of(&events, "mail_marked").len(), 2, "{events:#?}");
    assert_eq!(events_of(&events, "mailbox_folder_created").len(), 1);
    assert_eq!(f.certificates_in_db().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Reading mail part by part (docs/imap.md): what is not fetched, and batched commits.

/// `mail` (a single text part) with an attachment after its text: a multipart/mixed of the
/// text and `bytes` as `content_type` named `name`, base64.
fn with_attachment(mail: &[u8], content_type: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(mail.to_vec()).unwrap();
    let (header, body) = text.split_once("\r\n\r\n").unwrap();
    let header = header.replace("Content-Type: text/plain\r\n", "");
    let header = header
        .trim_end_matches("Content-Type: text/plain")
        .trim_end();
    // Without MIME-Version a server may take the whole mail for text (Dovecot does).
    let mime = match header.contains("MIME-Version") {
        true => "",
        false => "\r\nMIME-Version: 1.0",
    };
    format!(
        "{header}{mime}\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\n{body}\r\n\
         --outer\r\nContent-Type: {content_type}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --outer--\r\n",
        pki::base64_mime(bytes)
    )
    .into_bytes()
}

/// 300 KB that no extractor would take for a certificate, as an invoice PDF would be.
fn pdf_bytes() -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    pdf
}

fn event_details(f: &Fixture, kind: &str) -> Vec<String> {
    let db = open_db(&f.home.default_db());
    let mut stmt = db
        .prepare("SELECT detail FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([kind], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The UID a mail's IMAP URL names (";UID=7"), at the start of an event's detail.
fn uid_of(detail: &str) -> u32 {
    let rest = detail.split(";UID=").nth(1).expect("an IMAP URL");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// A PDF invoice and an image are left on the server: the run reads a small part of
/// what the mailbox holds, says what it left and why, and a certificate mail with a big
/// PDF beside the certificate still imports.
#[test]
fn a_pdf_and_an_image_are_not_fetched_and_a_certificate_beside_a_pdf_still_imports() {
    let Some(mut f) = Fixture::new() else { return };
    let pdf = pdf_bytes();
    let invoice = with_attachment(&unrelated_mail(1), "application/pdf", "invoice.pdf", &pdf);
    let photo = with_attachment(&unrelated_mail(2), "image/jpeg", "team.jpg", &pdf);
    let cert = f.fulfillment_mail("www.beside-a-pdf.example.com", true);
    let cert = with_attachment(&cert, "application/pdf", "order.pdf", &pdf);
    let total: usize = [&invoice, &photo, &cert].iter().map(|m| m.len()).sum();
    f.dovecot.append_many("INBOX", [invoice, photo, cert]);

    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(imported(&report), vec!["www.beside-a-pdf.example.com"]);
    let read = report["bytes_read"].as_u64().unwrap();
    assert!(
        read < 40_000,
        "{read} bytes read of a mailbox of {total}: no attachment was fetched"
    );
    let ordinary = event_details(&f, "mail_without_certificate");
    assert_eq!(ordinary.len(), 2, "{ordinary:#?}");
    assert!(
        ordinary[0].contains("not fetched")
            && ordinary[0].contains("application/pdf 'invoice.pdf'"),
        "{ordinary:#?}"
    );
    assert!(
        ordinary[1].contains("image/jpeg 'team.jpg'"),
        "{ordinary:#?}"
    );
    // The mailbox position is past all three.
    let (_, again) = f.poll(&[]);
    assert_eq!(again["new_messages"], 0, "{again:#}");
}

/// A part over max_message_size is not fetched, and the record says so; the text beside
/// it is still read, although the mail as a whole is over the limit.
#[test]
fn a_part_over_max_message_size_is_left_and_said_so() {
    let Some(mut f) = Fixture::new() else { return };
    f.configure("max_message_size = \"64KiB\"\n");
    let cert = f.fulfillment_mail("www.big-zip-beside.example.com", true);
    let cert = with_attachment(&cert, "application/zip", "logs.zip", &pdf_bytes());
    f.dovecot.append("INBOX", &cert);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(imported(&report), vec!["www.big-zip-beside.example.com"]);
    let problems = report["results"][0]["problems"].to_string();
    assert!(
        problems.contains("application/zip 'logs.zip'")
            && problems.contains("over max_message_size"),
        "{report:#}"
    );
}

/// Killed (SIGKILL) in the middle of a batch, then run again: every certificate is
/// recorded once, every ordinary mail has exactly one event, and the position the killed
/// run left is one a commit wrote: after a certificate (recorded with the mails before it
/// in the batch), never after an ordinary mail in the middle of a batch.
#[test]
fn a_run_killed_mid_batch_rereads_the_batch_and_accounts_for_every_mail_once() {
    let Some(mut f) = Fixture::new() else { return };
    let mut mails = Vec::new();
    let mut names = Vec::new();
    for i in 0..12 {
        for j in 0..15 {
            mails.push(unrelated_mail(i * 100 + j));
        }
        let name = format!("www.batch{i}.example.com");
        mails.push(f.fulfillment_mail(&name, true));
        names.push(name);
    }
    let uids = f.dovecot.append_many("INBOX", &mails);
    let cert_uids: Vec<u32> = (0..12).map(|i| uids[i * 16 + 15]).collect();

    let mut child = f
        .home
        .fulfill_process()
        .arg("--config")
        .arg(&f.config)
        .arg("poll")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let db = f.home.default_db();
    loop {
        let recorded = db.exists()
            && open_db(&db)
                .query_row("SELECT count(*) FROM certificates", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap_or(0)
                > 0;
        if recorded || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let done_before = f.certificates_in_db().len();
    eprintln!("killed ({status}) after {done_before} of 12 certificates were recorded");
    let last_uid: Option<u32> = open_db(&db)
        .query_row("SELECT last_uid FROM mailbox_state", [], |r| r.get(0))
        .ok();
    if done_before < 12 {
        let last = last_uid.expect("a position was recorded with the first certificate");
        assert!(
            cert_uids.contains(&last),
            "the killed run left the position at UID {last}, which is no certificate's \
             mail ({cert_uids:?}): it moved without a batch commit"
        );
    }

    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    let mut recorded = f.certificates_in_db();
    recorded.sort();
    names.sort();
    assert_eq!(recorded, names, "every certificate exactly once");
    let mut accounted: Vec<u32> = event_details(&f, "mail_without_certificate")
        .iter()
        .map(|d| uid_of(d))
        .collect();
    accounted.sort_unstable();
    let mut ordinary: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !cert_uids.contains(u))
        .collect();
    ordinary.sort_unstable();
    assert_eq!(
        accounted, ordinary,
        "every ordinary mail accounted for exactly once"
    );
}

// ---------------------------------------------------------------------------------------
// A large first scan: the structures of later chunks read on a second connection.
// ---------------------------------------------------------------------------------------

/// More new mail than one chunk of structures (500 UIDs, src/pipeline/scan.rs): one mail
/// in 100 a CA's, the rest ordinary, written straight into the Maildir. Returns the
/// certificates' names.
fn fill_large_mailbox(f: &mut Fixture) -> Vec<String> {
    let mut names = Vec::new();
    let mut mails = Vec::new();
    for i in 0..1_100 {
        if i % 100 == 50 {
            let name = format!("www.large{i}.example.com");
            mails.push(f.fulfillment_mail(&name, true));
            names.push(name);
        } else {
            mails.push(unrelated_mail(i));
        }
    }
    f.dovecot.fill_maildir(mails.len(), |i| mails[i].clone());
    names.sort();
    names
}

/// Every certificate recorded once and every other mail accounted for once.
fn assert_all_accounted(f: &Fixture, names: &[String], total: usize) {
    let mut recorded = f.certificates_in_db();
    recorded.sort();
    assert_eq!(recorded, names, "every certificate exactly once");
    let mut accounted: Vec<u32> = event_details(f, "mail_without_certificate")
        .iter()
        .map(|d| uid_of(d))
        .collect();
    accounted.sort_unstable();
    accounted.dedup();
    assert_eq!(
        accounted.len(),
        total - names.len(),
        "each ordinary mail once"
    );
    assert_eq!(
        event_details(f, "mail_without_certificate").len(),
        total - names.len()
    );
}

/// fulfill's logins in Dovecot's log so far.
fn logins(f: &Fixture) -> usize {
    f.dovecot
        .log()
        .lines()
        .filter(|l| l.contains(" Login: "))
        .count()
}

/// A first scan of more than one chunk logs in twice (the second connection describes
/// the later chunks while the first imports) and still imports every certificate and
/// accounts for every mail once; a scan of a few mails and a poll with nothing new log in
/// once.
#[test]
fn a_large_scan_describes_on_a_second_connection_and_a_small_one_does_not() {
    let Some(mut f) = Fixture::new() else { return };
    let names = fill_large_mailbox(&mut f);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}\n{}", f.dovecot.log());
    assert_all_accounted(&f, &names, 1_100);
    let log = f.dovecot.log();
    assert_eq!(
        logins(&f),
        2,
        "a second connection for 1,100 new mails\n{log}"
    );
    assert!(
        log.lines().filter(|l| l.contains("Logged out")).count() >= 2,
        "the second connection logged out\n{log}"
    );

    let mail = f.fulfillment_mail("www.small.example.com", true);
    f.dovecot.append("INBOX", &mail);
    let before = logins(&f);
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(imported(&report), vec!["www.small.example.com"]);
    assert_eq!(logins(&f), before + 1, "one connection for one new mail");
    let (code, report) = f.poll(&[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(logins(&f), before + 2, "one connection when nothing is new");
}

/// The server refuses the second connection (one session per user and address,
/// `mail_max_userip_connections = 1`): the scan says so and describes every chunk on its
/// one connection, with the same result.
#[test]
fn a_refused_second_connection_leaves_the_scan_to_the_first() {
    let Some(dovecot) = dovecot_or_skip_with(Options {
        max_userip_connections: Some(1),
        ..Options::default()
    }) else {
        return;
    };
    let mut f = Fixture::with(dovecot);
    let names = fill_large_mailbox(&mut f);
    let output = f.fulfill().args(["-v", "--json", "poll"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = f.dovecot.log();
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{log}");
    assert!(
        log.contains("Maximum number of connections"),
        "the server refused a second connection\n{log}"
    );
    assert!(
        stderr.contains("second IMAP connection not used"),
        "{stderr}"
    );
    assert_all_accounted(&f, &names, 1_100);
}

//! IBM Cloud Secrets Manager as a second store, end to end: the real binary, a real SQLite
//! file, and the local Secrets Manager (tests/support/secrets_manager), with and without
//! the local portal. Each fault leaves one secret, and one version per certificate.

mod support;

use fulfill_test_pki as pki;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::dovecot::{ServerCert, make_cert};
use support::portal::{Account, LocalPortal};
use support::secrets_manager::{API_KEY, Fault, LocalSecretsManager, Route};
use support::{Home, open_db, stdout_json};

const NAME: &str = "www.example.com";

struct Fixture {
    sm: LocalSecretsManager,
    home: Home,
    issuing: pki::Ca,
    keys: PathBuf,
    config: PathBuf,
}

/// A certificate file, its fingerprint, and its key on disk.
struct Certificate {
    file: PathBuf,
    sha256: String,
}

impl Fixture {
    /// fulfill with `[secrets_manager]` and no portal; `extra` is appended to the config.
    fn new(extra: &str) -> Fixture {
        Fixture::with(LocalSecretsManager::start(), extra)
    }

    fn with(sm: LocalSecretsManager, extra: &str) -> Fixture {
        let home = Home::new();
        let root = pki::root("SM Test Root");
        let issuing = pki::intermediate("SM Test Issuing CA", &root);
        let keys = home.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(home.path().join("root.pem"), &root.pem).unwrap();
        let config = home.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "{extra}[keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n{}",
                keys.display(),
                home.path().join("root.pem").display(),
                sm.config_section(),
            ),
        )
        .unwrap();
        Fixture {
            sm,
            home,
            issuing,
            keys,
            config,
        }
    }

    /// A certificate for `name`, valid from `from` to `to` (years), with a key of its own.
    fn certificate(&self, name: &str, from: i32, to: i32) -> Certificate {
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(from, 1, 1), pki::ymd(to, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        let stem = format!("{name}-{from}");
        std::fs::write(self.keys.join(format!("{stem}.key")), leaf.key_pem()).unwrap();
        // The CSR beside the key says which name the certificate must cover (rule 2).
        let csr = pki::csr_pem(&leaf.key, Some(name), &[name]);
        std::fs::write(self.keys.join(format!("{stem}.csr")), csr).unwrap();
        let file = self.home.path().join(format!("{stem}.pem"));
        std::fs::write(&file, format!("{}{}", leaf.pem, self.issuing.pem)).unwrap();
        Certificate {
            file,
            sha256: fulfill::extract::sha256_hex(&leaf.der),
        }
    }

    fn fulfill(&self) -> assert_cmd::Command {
        let mut cmd = self.home.fulfill();
        cmd.arg("--config")
            .arg(&self.config)
            .env("IBMCLOUD_API_KEY", API_KEY);
        cmd
    }

    /// `fulfill --json import FILE`: the exit code, the JSON and stderr.
    fn import(&self, certificate: &Certificate) -> (Option<i32>, serde_json::Value, String) {
        let output = (self.fulfill())
            .args(["--json", "import"])
            .arg(&certificate.file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout_json(&output), stderr)
    }

    /// `secrets_manager` rows: (certificate id, state, secret id, version).
    fn rows(&self) -> Vec<(i64, String, Option<String>, Option<i64>)> {
        let db = open_db(&self.home.default_db());
        let mut statement = db
            .prepare("SELECT certificate_id, state, secret_id, secret_version FROM secrets_manager ORDER BY certificate_id")
            .unwrap();
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// `secrets_manager.secret_version_id` of each row, by certificate.
    fn version_ids(&self) -> Vec<Option<String>> {
        let db = open_db(&self.home.default_db());
        let mut statement = db
            .prepare("SELECT secret_version_id FROM secrets_manager ORDER BY certificate_id")
            .unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The ids of the versions of the secret named `name`, oldest first.
    fn stored_version_ids(&self, name: &str) -> Vec<Option<String>> {
        (self.sm.secrets().into_iter())
            .filter(|s| s.name == name)
            .flat_map(|s| s.versions.into_iter().map(|v| Some(v.id)))
            .collect()
    }

    fn creates(&self) -> usize {
        self.sm.calls("POST", "/api/v2/secrets")
    }
}

#[test]
fn the_first_certificate_creates_a_secret_and_a_renewal_adds_a_version() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    let (code, json, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256.clone()]);
    let secret = &fixture.sm.secrets()[0];
    assert_eq!(secret.secret_group_id, "default");
    assert_eq!(secret.labels, vec!["fulfill".to_string()]);
    let summary = json[0]["secrets_manager"].as_str().unwrap_or_default();
    assert!(
        summary.contains("secret created") && summary.contains(&secret.id),
        "{json}"
    );
    assert_eq!(
        fixture.rows(),
        vec![(1, "stored".into(), Some(secret.id.clone()), Some(1))]
    );

    let renewal = fixture.certificate(NAME, 2026, 2035);
    let (code, json, stderr) = fixture.import(&renewal);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.sm.versions(NAME),
        vec![first.sha256.clone(), renewal.sha256.clone()]
    );
    assert_eq!(fixture.sm.secrets().len(), 1);
    let summary = json[0]["secrets_manager"].as_str().unwrap_or_default();
    let version_id = &fixture.sm.secrets()[0].versions[1].id;
    assert!(
        summary.contains(&format!("version 2 ({version_id}): version added")),
        "{json}"
    );
    assert_eq!(fixture.rows()[1].3, Some(2));
    // Each row names its own version: the first from the `current` alias after the
    // create, the renewal from the new version's answer.
    assert_eq!(fixture.version_ids(), fixture.stored_version_ids(NAME));

    // The same certificates again: nothing is sent.
    let writes = fixture.creates()
        + fixture
            .sm
            .calls("POST", &format!("/api/v2/secrets/{}/versions", secret.id));
    for certificate in [&renewal, &first] {
        let (code, _, stderr) = fixture.import(certificate);
        assert_eq!(code, Some(0), "{stderr}");
    }
    let after = fixture.creates()
        + fixture
            .sm
            .calls("POST", &format!("/api/v2/secrets/{}/versions", secret.id));
    assert_eq!(writes, after);
    assert_eq!(fixture.sm.versions(NAME).len(), 2);
}

#[test]
fn with_a_portal_both_stores_get_the_certificate() {
    let portal = LocalPortal::start(Account::default());
    let account = Account::default();
    let fixture = Fixture::new(&format!(
        "[portal]\nendpoint = \"{}\"\nusername = \"{}\"\nretry_wait = \"10ms\"\n",
        portal.endpoint(),
        account.username
    ));
    let certificate = fixture.certificate(NAME, 2025, 2034);
    let output = (fixture.fulfill())
        .env("SL_API_KEY", &account.api_key)
        .args(["--json", "import"])
        .arg(&certificate.file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(portal.certificates().len(), 1);
    assert_eq!(fixture.sm.versions(NAME), vec![certificate.sha256]);
}

#[test]
fn a_token_that_expires_mid_run_is_replaced_once() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    assert_eq!(fixture.import(&first).0, Some(0));
    let tokens_before = fixture.sm.calls("POST", "/identity/token");
    fixture.sm.inject(Route::Version, Fault::ExpireTokens, 1);
    let renewal = fixture.certificate(NAME, 2026, 2035);
    let (code, _, stderr) = fixture.import(&renewal);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.sm.versions(NAME),
        vec![first.sha256, renewal.sha256]
    );
    // One token for the run, one more after the 401.
    assert_eq!(
        fixture.sm.calls("POST", "/identity/token") - tokens_before,
        2
    );
}

#[test]
fn a_409_on_a_name_taken_meanwhile_adds_a_version_instead() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    assert_eq!(fixture.import(&first).0, Some(0));
    // The search does not show the secret yet: the create meets the name and gets 409.
    fixture.sm.inject(Route::List, Fault::StaleList, 1);
    let renewal = fixture.certificate(NAME, 2026, 2035);
    let (code, _, stderr) = fixture.import(&renewal);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.creates(),
        2,
        "the one refused with 409, and the first"
    );
    assert_eq!(fixture.sm.secrets().len(), 1);
    assert_eq!(
        fixture.sm.versions(NAME),
        vec![first.sha256, renewal.sha256]
    );
}

#[test]
fn a_500_is_retried_after_looking_again() {
    let fixture = Fixture::new("");
    fixture.sm.inject(Route::Create, Fault::InternalError, 1);
    let first = fixture.certificate(NAME, 2025, 2034);
    let (code, _, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256.clone()]);
    fixture.sm.inject(Route::Version, Fault::InternalError, 1);
    let renewal = fixture.certificate(NAME, 2026, 2035);
    let (code, _, stderr) = fixture.import(&renewal);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.sm.versions(NAME),
        vec![first.sha256, renewal.sha256]
    );
}

#[test]
fn a_lost_answer_after_the_create_makes_no_second_secret_or_version() {
    let fixture = Fixture::new("");
    fixture.sm.inject(Route::Create, Fault::LostResponse, 1);
    let first = fixture.certificate(NAME, 2025, 2034);
    let (code, json, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256.clone()]);
    assert!(
        (json[0]["secrets_manager"].as_str().unwrap_or_default())
            .contains("already the current version"),
        "{json}"
    );
    fixture.sm.inject(Route::Version, Fault::LostResponse, 1);
    let renewal = fixture.certificate(NAME, 2026, 2035);
    let (code, _, stderr) = fixture.import(&renewal);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.sm.versions(NAME),
        vec![first.sha256, renewal.sha256]
    );
    assert_eq!(fixture.rows()[1].1, "stored");
    // Both answers were lost: each version's id comes from the re-read.
    assert_eq!(fixture.version_ids(), fixture.stored_version_ids(NAME));
}

#[test]
fn a_run_killed_after_the_create_then_run_again_makes_no_second_version() {
    let fixture = Fixture::new("");
    fixture
        .sm
        .inject(Route::Create, Fault::HoldAnswer(Duration::from_secs(60)), 1);
    let first = fixture.certificate(NAME, 2025, 2034);
    let mut child = (fixture.home.fulfill_process())
        .arg("--config")
        .arg(&fixture.config)
        .env("IBMCLOUD_API_KEY", API_KEY)
        .arg("import")
        .arg(&first.file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fixture.sm.secrets().is_empty() {
        assert!(Instant::now() < deadline, "the create never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(fixture.rows()[0].1, "pending", "recorded before the call");

    let (code, _, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256]);
    assert_eq!(fixture.creates(), 1);
    assert_eq!(fixture.rows()[0].1, "stored");
}

#[test]
fn a_failure_exits_1_naming_the_certificate_and_the_next_run_finishes() {
    let fixture = Fixture::new("");
    // More faults than retries.
    fixture.sm.inject(Route::Create, Fault::InternalError, 4);
    let first = fixture.certificate(NAME, 2025, 2034);
    let (code, json, stderr) = fixture.import(&first);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("certificate #1") && stderr.contains(&format!("secret '{NAME}'")),
        "{stderr}"
    );
    assert!(
        (json[0]["secrets_manager"].as_str().unwrap_or_default()).contains("failed"),
        "{json}"
    );
    assert_eq!(fixture.rows()[0].1, "failed");
    assert!(fixture.sm.secrets().is_empty());
    let (code, _, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256]);
}

#[test]
fn a_dry_run_only_plans_and_a_certificate_without_its_key_is_left_out() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    let output = (fixture.fulfill())
        .args(["import", "--dry-run"])
        .arg(&first.file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(fixture.sm.requests().is_empty());

    // A renewal whose private key is not at hand (its CSR is, so it is recorded): nothing
    // to import it with, so it is left out, not failed.
    let other = fixture.certificate("other.example.com", 2025, 2034);
    assert_eq!(fixture.import(&other).0, Some(0));
    assert_eq!(fixture.sm.secrets().len(), 1);
    let renewal = fixture.certificate("other.example.com", 2026, 2035);
    std::fs::remove_file(fixture.keys.join("other.example.com-2026.key")).unwrap();
    let output = (fixture.fulfill())
        .args(["import", "--no-upload"])
        .arg(&renewal.file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(fixture.sm.versions("other.example.com").len(), 1);
    assert_eq!(fixture.rows().len(), 1, "no row for the renewal");
}

#[test]
fn a_wildcard_gets_the_name_wildcard_and_a_template_names_it() {
    let fixture = Fixture::new("");
    std::fs::write(
        &fixture.config,
        std::fs::read_to_string(&fixture.config).unwrap() + "name = \"web-{common_name}\"\n",
    )
    .unwrap();
    let certificate = fixture.certificate("*.example.com", 2025, 2034);
    let (code, _, stderr) = fixture.import(&certificate);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        fixture.sm.versions("web-wildcard.example.com"),
        vec![certificate.sha256]
    );
}

#[test]
fn show_and_list_name_the_secret() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    assert_eq!(fixture.import(&first).0, Some(0));
    let id = fixture.sm.secrets()[0].id.clone();
    let list = fixture.fulfill().args(["--json", "list"]).output().unwrap();
    let list = stdout_json(&list);
    assert_eq!(list[0]["secrets_manager"]["secret_id"], id.as_str());
    assert_eq!(list[0]["secrets_manager"]["secret_version"], 1);
    let version_id = fixture.sm.secrets()[0].versions[0].id.clone();
    assert_eq!(
        list[0]["secrets_manager"]["secret_version_id"],
        version_id.as_str()
    );
    let show = fixture.fulfill().args(["show", "1"]).output().unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains(&id) && text.contains(NAME) && text.contains(&version_id),
        "{text}"
    );
}

/// `fulfill --json check`: its exit code and the "secrets manager" line.
fn check(fixture: &Fixture, api_key: &str) -> (Option<i32>, serde_json::Value) {
    let output = (fixture.fulfill())
        .env("IBMCLOUD_API_KEY", api_key)
        .args(["--json", "check"])
        .output()
        .unwrap();
    let lines = stdout_json(&output);
    let line = (lines.as_array().unwrap().iter())
        .find(|l| l["check"] == "secrets manager")
        .cloned()
        .unwrap_or_else(|| panic!("no secrets manager line: {lines:#}"));
    (output.status.code(), line)
}

#[test]
fn check_probes_iam_and_the_group_and_reads_no_secret() {
    let fixture = Fixture::new("");
    let first = fixture.certificate(NAME, 2025, 2034);
    assert_eq!(fixture.import(&first).0, Some(0));
    let before = fixture.sm.requests().len();
    let (code, line) = check(&fixture, API_KEY);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(line["ok"], true, "{line}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 imported certificates in group 'default'"),
        "{detail}"
    );
    // Reads only: a token, then the list; no secret's data, nothing written.
    let probe: Vec<_> = fixture.sm.requests()[before..]
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.target.split('?').next().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        probe,
        vec![
            ("POST".to_string(), "/identity/token".to_string()),
            ("GET".to_string(), "/api/v2/secrets".to_string()),
        ]
    );
}

#[test]
fn check_names_a_refused_api_key_and_what_to_do() {
    let fixture = Fixture::new("");
    let (code, line) = check(&fixture, "not-the-key");
    assert_eq!(code, Some(1), "{line}");
    assert_eq!(line["ok"], false);
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused the API key") && detail.contains("IBMCLOUD_API_KEY"),
        "{detail}"
    );
    assert!(!detail.contains("not-the-key"), "the key is never shown");
    assert_eq!(fixture.sm.calls("GET", "/api/v2/secrets"), 0);
}

#[test]
fn check_names_an_unreachable_instance_and_the_setting() {
    let fixture = Fixture::new("");
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = std::fs::read_to_string(&fixture.config).unwrap();
    let config = config.replace(
        &format!("url = \"{}\"", fixture.sm.url()),
        &format!("url = \"{url}\""),
    );
    std::fs::write(&fixture.config, config).unwrap();
    let (code, line) = check(&fixture, API_KEY);
    assert_eq!(code, Some(1), "{line}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains("cannot reach") && detail.contains(&url),
        "{detail}"
    );
    assert!(detail.contains("[secrets_manager] url"), "{detail}");
}

/// An import against the local Secrets Manager over TLS with a self-signed certificate
/// for `localhost`, trusted through `[secrets_manager] ca_file` when `trusted`.
fn import_over_tls(trusted: bool) -> (Fixture, Option<i32>, String) {
    let cert = make_cert(&ServerCert::Localhost);
    let fixture = Fixture::with(LocalSecretsManager::start_tls(&cert), "");
    if trusted {
        let ca_file = fixture.home.path().join("sm-ca.pem");
        std::fs::write(&ca_file, &cert.cert_pem).unwrap();
        let config = std::fs::read_to_string(&fixture.config).unwrap()
            + &format!("ca_file = \"{}\"\n", ca_file.display());
        std::fs::write(&fixture.config, config).unwrap();
    }
    let first = fixture.certificate(NAME, 2025, 2034);
    // -v shows retries, which a refused certificate must not cause.
    let output = (fixture.fulfill())
        .args(["-v", "import"])
        .arg(&first.file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (fixture, output.status.code(), stderr)
}

#[test]
fn a_refused_tls_certificate_is_reported_at_once_with_its_reason() {
    let (fixture, code, stderr) = import_over_tls(false);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS certificate that was refused") && stderr.contains("self-signed"),
        "{stderr}"
    );
    // The first call is IAM's: its endpoint and setting are named, and the way out.
    assert!(stderr.contains(&fixture.sm.iam_endpoint()), "{stderr}");
    assert!(
        stderr.contains("[secrets_manager] iam_endpoint"),
        "{stderr}"
    );
    assert!(stderr.contains("[secrets_manager] ca_file"), "{stderr}");
    assert!(
        !stderr.contains("retrying") && !stderr.contains("looking again"),
        "a refused certificate is not retried: {stderr}"
    );
    assert!(fixture.sm.requests().is_empty(), "a request got through");
}

#[test]
fn a_ca_file_makes_the_tls_certificate_trusted() {
    let (fixture, code, stderr) = import_over_tls(true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.secrets().len(), 1);
    assert!(fixture.sm.requests().iter().all(|r| r.status.is_some()));
}

/// An API key that cannot be had (a failing api_key_cmd) fails the import into Secrets
/// Manager, not the run: the certificate is recorded and reported with the failure, the
/// run exits 1, and the next run with a key imports it.
#[test]
fn a_failing_api_key_cmd_is_reported_on_the_result_and_the_next_run_imports() {
    let fixture = Fixture::new("");
    let mut config = std::fs::read_to_string(&fixture.config).unwrap();
    config.push_str("api_key_cmd = \"echo no key >&2; exit 3\"\n");
    std::fs::write(&fixture.config, config).unwrap();
    let first = fixture.certificate(NAME, 2025, 2034);
    let output = (fixture.home.fulfill())
        .arg("--config")
        .arg(&fixture.config)
        .args(["--json", "import"])
        .arg(&first.file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = stdout_json(&output);
    assert_eq!(output.status.code(), Some(1), "{json:#}\n{stderr}");
    assert_eq!(json[0]["outcome"], "imported", "{json:#}");
    let secret = json[0]["secrets_manager"].as_str().unwrap_or_default();
    assert!(
        secret.contains("failed") && secret.contains("api_key_cmd"),
        "{secret}"
    );
    assert!(fixture.sm.secrets().is_empty());

    let (code, _, stderr) = fixture.import(&first);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fixture.sm.versions(NAME), vec![first.sha256]);
}

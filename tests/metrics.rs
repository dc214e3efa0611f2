//! `[metrics] textfile`: written after every run that uses the database, read back with a
//! Prometheus text-format parser, and its values checked against the database.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use prometheus_parse::{Scrape, Value};
use support::{Home, open_db, samples};

/// A config like samples/config.toml, with `[metrics] textfile` in the home.
fn configure(home: &Home) -> (PathBuf, PathBuf) {
    let config = home.path().join("config.toml");
    let textfile = home.path().join("node-exporter/fulfill.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[keys]\ndirs = [\"{keys}\"]\n\n[validation]\ntrust_roots = [\"{root}\"]\n\n\
             [metrics]\ntextfile = \"node-exporter/fulfill.prom\"\n",
            keys = samples().join("keys").display(),
            root = samples().join("ca/root.pem").display(),
        ),
    )
    .unwrap();
    (config, textfile)
}

/// The file parsed; every sample line must parse (the parser passes over lines it does
/// not understand, so they are counted).
fn scrape(textfile: &Path) -> Scrape {
    let text = std::fs::read_to_string(textfile).expect("the textfile is written");
    let samples = (text.lines())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(
        scrape.samples.len(),
        samples,
        "a line did not parse:\n{text}"
    );
    scrape
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = (scrape.samples.iter())
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Gauge(v) => v,
            ref other => panic!("{metric} is not a gauge: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
    found.first().copied()
}

#[test]
fn runs_write_the_textfile_from_the_database() {
    let home = Home::new();
    let (config, textfile) = configure(&home);
    let fulfill = || {
        let mut cmd = home.fulfill();
        cmd.arg("--config").arg(&config);
        cmd
    };

    // No database yet: `check` creates none, so there is nothing to write.
    fulfill().arg("check").assert().success();
    assert!(!home.default_db().exists());
    assert!(!textfile.exists());

    // A dry run writes nothing either.
    (fulfill().args(["import", "--dry-run"]))
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    assert!(!textfile.exists());

    for sample in ["01-geotrust-inline-pem", "13-ec-p256"] {
        (fulfill().arg("import"))
            .arg(samples().join(format!("{sample}.eml")))
            .assert()
            .success();
    }
    let mode = std::fs::metadata(&textfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let metrics = scrape(&textfile);
    let db = open_db(&home.default_db());
    let mut statement = db
        .prepare("SELECT common_name, sha256, not_after FROM certificates")
        .unwrap();
    let rows: Vec<(String, String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (name, sha256, not_after) in &rows {
        let expires =
            time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp() as f64;
        assert_eq!(
            value(
                &metrics,
                "fulfill_certificate_not_after_timestamp_seconds",
                &[("common_name", name), ("sha256", sha256), ("portal_id", "")]
            ),
            Some(expires),
            "{name}"
        );
    }
    let exit_code =
        |m: &Scrape, command| value(m, "fulfill_last_run_exit_code", &[("command", command)]);
    assert_eq!(exit_code(&metrics, "import"), Some(0.0));
    let ran = value(
        &metrics,
        "fulfill_last_run_timestamp_seconds",
        &[("command", "import")],
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((now - 600.0..=now + 1.0).contains(&ran), "{ran} vs {now}");
    assert_eq!(
        value(&metrics, "fulfill_deploy_hook_failures", &[]),
        Some(0.0)
    );

    // A rejected mail: exit 4, recorded; `check` then adds its own run beside it.
    (fulfill().arg("import"))
        .arg(samples().join("20-reject-expired.eml"))
        .assert()
        .code(4);
    assert_eq!(exit_code(&scrape(&textfile), "import"), Some(4.0));

    // Orders and deployments as other commands leave them, a hostile name among them.
    drop(statement);
    drop(db);
    let db = rusqlite::Connection::open(home.default_db()).unwrap();
    db.execute_batch(
        "INSERT INTO orders (order_id, common_name, state, resend_requested_at, updated_at)
         VALUES (7, 'www.a.example.com', 'waiting_for_mail', '2025-01-02T03:04:05Z', 'x'),
                (8, 'www.b.example.com', 'imported', NULL, 'x'),
                (9, 'q\"b\\n' || char(10) || 'x', 'resend_failed', NULL, 'x');
         INSERT INTO deployments (certificate_id, state, updated_at)
         SELECT id, 'failed', 'x' FROM certificates;",
    )
    .unwrap();
    drop(db);
    fulfill().arg("check").assert().success();
    let metrics = scrape(&textfile);
    assert_eq!(exit_code(&metrics, "check"), Some(0.0));
    assert_eq!(
        exit_code(&metrics, "import"),
        Some(4.0),
        "kept across commands"
    );
    assert_eq!(
        value(&metrics, "fulfill_deploy_hook_failures", &[]),
        Some(2.0)
    );
    let pending = |order| value(&metrics, "fulfill_order_pending", &[("order_id", order)]);
    assert_eq!(pending("7"), Some(1.0));
    assert_eq!(pending("8"), Some(0.0));
    assert_eq!(pending("9"), Some(1.0));
    assert_eq!(
        value(
            &metrics,
            "fulfill_order_last_resend_timestamp_seconds",
            &[("order_id", "7"), ("common_name", "www.a.example.com")]
        ),
        Some(1735787045.0)
    );
    // The escapes of the text format: \" \\ \n, the whole sample on one line.
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains(r#"fulfill_order_pending{order_id="9",common_name="q\"b\\n\nx"} 1"#),
        "{text}"
    );
}

/// A textfile that cannot be written is a warning, not a failed run.
#[test]
fn an_unwritable_textfile_is_a_warning() {
    let home = Home::new();
    let (config, textfile) = configure(&home);
    std::fs::remove_dir(textfile.parent().unwrap()).unwrap();
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("import")
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success()
        .stderr(predicates::str::contains("warn: [metrics] textfile"));
    assert!(!textfile.exists());
}

#[test]
fn the_secrets_manager_version_of_each_certificate_is_a_metric() {
    let home = Home::new();
    let (config, textfile) = configure(&home);
    let sm = support::secrets_manager::LocalSecretsManager::start();
    let text = std::fs::read_to_string(&config).unwrap() + &sm.config_section();
    std::fs::write(&config, text).unwrap();
    let run = |faults: usize| {
        sm.inject(
            support::secrets_manager::Route::Create,
            support::secrets_manager::Fault::InternalError,
            faults,
        );
        (home.fulfill())
            .arg("--config")
            .arg(&config)
            .env("IBMCLOUD_API_KEY", support::secrets_manager::API_KEY)
            .args(["import", "--no-upload"])
            .arg(samples().join("01-geotrust-inline-pem.eml"))
            .output()
            .unwrap()
    };
    // More 500s than retries: the import fails, and the metrics say so.
    assert_eq!(run(4).status.code(), Some(1));
    let metrics = scrape(&textfile);
    assert_eq!(
        value(&metrics, "fulfill_secrets_manager_failures", &[]),
        Some(1.0)
    );
    assert_eq!(run(0).status.code(), Some(0));
    let metrics = scrape(&textfile);
    assert_eq!(
        value(&metrics, "fulfill_secrets_manager_failures", &[]),
        Some(0.0)
    );
    let secret = &sm.secrets()[0];
    assert_eq!(
        value(
            &metrics,
            "fulfill_certificate_secrets_manager_version",
            &[
                ("secret_id", secret.id.as_str()),
                ("secret_name", secret.name.as_str()),
                ("version_id", secret.versions[0].id.as_str()),
            ]
        ),
        Some(1.0)
    );
}

//! `fulfill check` on this machine: `--offline`, the database check, and
//! `--expiring-within` as a monitoring probe. The servers' lines are tested with them
//! (tests/portal.rs, tests/mailbox.rs).

mod support;

use predicates::prelude::*;
use support::{Home, samples, stdout_json};

#[test]
fn offline_checks_this_machine_and_creates_nothing() {
    let home = Home::new();
    home.with_samples()
        .args(["check", "--offline"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!(
                "config       ok     {} read",
                samples().join("config.toml").display()
            ))
            .and(predicate::str::contains(
                "does not exist yet; the first import creates it",
            ))
            .and(predicate::str::contains("keys         ok"))
            .and(predicate::str::contains(
                "trust roots  ok     1 trust anchors",
            ))
            .and(predicate::str::contains("portal").not())
            .and(predicate::str::contains("mailbox").not()),
        );
    assert!(!home.default_db().exists());
    assert!(!home.path().join(".local").exists(), "no folder created");

    // Without a config file, it says where it looked.
    home.fulfill()
        .args(["check", "--offline"])
        .assert()
        .stdout(predicate::str::contains(format!(
            "no config file at {}; defaults in use",
            home.path().join(".config/fulfill/config.toml").display()
        )));

    // A database that cannot be created fails, with the reason.
    let file = home.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    home.with_samples()
        .arg("--db")
        .arg(file.join("fulfill.db"))
        .args(["check", "--offline"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "database     FAILED cannot create {}: {} is not a folder",
            file.join("fulfill.db").display(),
            file.display()
        )));

    // Once it exists it is opened read-only and counted.
    home.with_samples()
        .arg("import")
        .arg(samples().join("13-ec-p256.eml"))
        .assert()
        .success();
    home.with_samples()
        .args(["check", "--offline"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "writable; 1 certificates recorded",
        ));
}

#[test]
fn expiring_within_is_a_quiet_probe() {
    let home = Home::new();
    let probe = |within: &str| {
        let mut cmd = home.with_samples();
        cmd.args(["check", "--expiring-within", within]);
        cmd
    };
    // No database: nothing to watch is a failure, not a pass.
    probe("30d")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "expiry       FAILED no database at",
        ));

    for sample in ["01-geotrust-inline-pem", "13-ec-p256"] {
        home.with_samples()
            .arg("import")
            .arg(samples().join(format!("{sample}.eml")))
            .assert()
            .success();
    }
    // All well: ok, and nothing at all under -q.
    probe("1d").assert().success().stdout(
        predicate::str::contains("expiry       ok     none of 2 certificates expires within 1day")
            .and(predicate::str::contains("keys").not()),
    );
    let quiet = home
        .with_samples()
        .args(["-q", "check", "--expiring-within", "1d"])
        .assert()
        .success();
    assert!(quiet.get_output().stdout.is_empty());

    // Both expire within 90 years: each is listed, exit 1, and -q prints them too.
    let output = home
        .with_samples()
        .args(["-q", "check", "--expiring-within", "90y"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("expiry       FAILED www.alpha.example.com expires")
                .and(predicate::str::contains(
                    "FAILED www.lima.example.com expires",
                ))
                .and(predicate::str::contains(
                    "no later certificate for its names is recorded",
                )),
        );
    drop(output);
    let json = home
        .with_samples()
        .args(["--json", "check", "--expiring-within", "90y"])
        .output()
        .unwrap();
    let lines = stdout_json(&json);
    let failed: Vec<&str> = (lines.as_array().unwrap().iter())
        .filter(|l| l["ok"] == false)
        .map(|l| l["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["expiry", "expiry"]);
}

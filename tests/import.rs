//! `fulfill import`, `list` and `show` on the samples: the binary as a user runs it, a
//! real SQLite file, and the exit codes of docs/architecture.md.

mod support;

use std::os::unix::fs::PermissionsExt;

use predicates::prelude::*;
use support::{Home, open_db, sample_mails, samples, stdout_json};

/// What each sample must give: (file stem, outcome, common name, rule that rejects it).
const EXPECTED: &[(&str, &str, &str, Option<u64>)] = &[
    (
        "01-geotrust-inline-pem",
        "imported",
        "www.alpha.example.com",
        None,
    ),
    ("02-html-br", "imported", "www.bravo.example.com", None),
    (
        "03-quoted-printable",
        "imported",
        "www.charlie.example.com",
        None,
    ),
    (
        "04-der-cer-attachment",
        "imported",
        "www.echo.example.com",
        None,
    ),
    ("05-p7b-der", "imported", "www.foxtrot.example.com", None),
    ("06-p7b-pem", "imported", "www.golf.example.com", None),
    ("07-sectigo-zip", "imported", "www.delta.example.org", None),
    ("08-rapidssl-zip", "imported", "www.hotel.example.com", None),
    ("09-forwarded", "imported", "www.india.example.com", None),
    ("10-link-only", "link_only", "", None),
    ("11-quotes-csr", "imported", "www.kilo.example.com", None),
    ("12-wildcard", "imported", "*.wild.example.net", None),
    ("13-ec-p256", "imported", "www.lima.example.com", None),
    (
        "20-reject-expired",
        "rejected",
        "www.expired.example.com",
        Some(3),
    ),
    (
        "21-reject-wrong-name",
        "rejected",
        "evil.example.net",
        Some(2),
    ),
    (
        "22-reject-key-mismatch",
        "rejected",
        "www.alpha.example.com",
        Some(1),
    ),
    (
        "23-reject-broken-chain",
        "rejected",
        "www.broken.example.com",
        Some(4),
    ),
];

fn stem(source: &str) -> String {
    std::path::Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn every_sample_gives_its_expected_outcome_and_rows() {
    let home = Home::new();
    let output = home
        .with_samples()
        .arg("--json")
        .arg("import")
        .args(sample_mails())
        .output()
        .unwrap();
    // Rejections among the samples: exit 4.
    assert_eq!(
        output.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = stdout_json(&output);
    let results = results.as_array().expect("an array of results");
    assert_eq!(
        results.len(),
        EXPECTED.len(),
        "one result per sample: {results:#?}"
    );
    for (file, outcome, name, rule) in EXPECTED {
        let result = results
            .iter()
            .find(|r| stem(r["source"].as_str().unwrap()) == *file)
            .unwrap_or_else(|| panic!("no result for {file}"));
        assert_eq!(result["outcome"], *outcome, "{file}: {result:#}");
        if !name.is_empty() {
            assert_eq!(result["common_name"], *name, "{file}");
        }
        match rule {
            Some(rule) => {
                let reasons = result["reasons"].as_array().unwrap();
                assert!(!reasons.is_empty(), "{file}: a rejection has a reason");
                assert_eq!(reasons[0]["rule"], *rule, "{file}: {reasons:#?}");
                assert!(
                    result["sha256"].as_str().unwrap().len() == 64,
                    "{file} names the certificate"
                );
            }
            None if *outcome == "imported" => {
                assert!(
                    result["id"].as_i64().is_some(),
                    "{file}: imported with an id"
                );
                assert!(result["reasons"].as_array().unwrap().is_empty());
            }
            None => {}
        }
    }

    // The link-only mail reports its link and order number.
    let link_only = results
        .iter()
        .find(|r| r["outcome"] == "link_only")
        .unwrap();
    assert_eq!(link_only["order_numbers"][0], "1557047799");
    assert!(
        link_only["links"][0]
            .as_str()
            .unwrap()
            .starts_with("https://getcert.rapidssl.com/")
    );

    // The database holds exactly the imported certificates, in the columns docs/architecture.md lists.
    let db = open_db(&home.default_db());
    let imported = EXPECTED.iter().filter(|e| e.1 == "imported").count() as i64;
    let count: i64 = db
        .query_row("SELECT count(*) FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, imported);
    let (cn, sans, pem, chain, not_after, key_source): (String, String, String, String, String, String) = db
        .query_row(
            "SELECT common_name, subject_alt_names, certificate_pem, chain_pem, not_after, key_source
             FROM certificates WHERE common_name = 'www.alpha.example.com'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(cn, "www.alpha.example.com");
    assert!(sans.contains("alpha.example.com"), "{sans}");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        1,
        "the intermediate, no root"
    );
    assert_eq!(not_after, "2045-06-01T00:00:00Z");
    assert!(
        key_source.contains("www.alpha.example.com.key"),
        "{key_source}"
    );
    // Private keys never reach the database.
    let leaked: i64 = db
        .query_row(
            "SELECT count(*) FROM certificates WHERE certificate_pem LIKE '%PRIVATE KEY%' OR chain_pem LIKE '%PRIVATE KEY%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);

    // Every file left an event; rejections name their rule.
    let events: Vec<(String, String)> = db
        .prepare("SELECT kind, detail FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.0 == "certificate_recorded")
            .count() as i64,
        imported
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.0 == "certificate_rejected")
            .count(),
        4
    );
    assert!(
        events
            .iter()
            .any(|e| e.0 == "certificate_rejected" && e.1.contains("rule 3 (validity)"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.0 == "mail_link_only" && e.1.contains("getcert.rapidssl.com"))
    );
}

#[test]
fn chains_are_ordered_and_roots_dropped() {
    let home = Home::new();
    // The Sectigo zip carries leaf, intermediate, cross-signed root and a self-signed
    // legacy root; the P7B carries root, leaf, intermediate in that order.
    home.with_samples()
        .arg("import")
        .arg(samples().join("07-sectigo-zip.eml"))
        .arg(samples().join("05-p7b-der.eml"))
        .assert()
        .success();
    let db = open_db(&home.default_db());
    for name in ["www.delta.example.org", "www.foxtrot.example.com"] {
        let chain: String = db
            .query_row(
                "SELECT chain_pem FROM certificates WHERE common_name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap();
        let blocks = pem::parse_many(&chain).unwrap();
        assert_eq!(blocks.len(), 1, "{name}: only the issuing intermediate");
        let (_, cert) = x509_parser::parse_x509_certificate(blocks[0].contents()).unwrap();
        assert!(
            cert.subject()
                .to_string()
                .contains("Fulfill Test Issuing CA RSA"),
            "{name}"
        );
    }
}

#[test]
fn importing_again_is_a_no_op_that_says_so() {
    let home = Home::new();
    let good = samples().join("01-geotrust-inline-pem.eml");
    home.with_samples()
        .arg("import")
        .arg(&good)
        .assert()
        .success()
        .stdout(predicate::str::contains("imported"));
    home.with_samples()
        .arg("import")
        .arg(&good)
        .assert()
        .success()
        .stdout(predicate::str::contains("already imported"));
    let db = open_db(&home.default_db());
    let count: i64 = db
        .query_row("SELECT count(*) FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
    let already: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'certificate_already_recorded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(already, 1);
}

#[test]
fn database_is_private_to_its_owner() {
    let home = Home::new();
    home.with_samples()
        .arg("import")
        .arg(samples().join("13-ec-p256.eml"))
        .assert()
        .success();
    let db = home.default_db();
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "database mode {mode:o}");
    let dir_mode = std::fs::metadata(db.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "database folder mode {dir_mode:o}");
}

#[test]
fn dry_run_writes_nothing() {
    let home = Home::new();
    home.with_samples()
        .args(["import", "--dry-run"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("would import"));
    assert!(
        !home.default_db().exists(),
        "a dry run must not create the database"
    );

    // With a database already there, a dry run still changes nothing in it.
    home.with_samples()
        .arg("import")
        .arg(samples().join("02-html-br.eml"))
        .assert()
        .success();
    let before = std::fs::read(home.default_db()).unwrap();
    home.with_samples()
        .args(["import", "--dry-run"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .arg(samples().join("02-html-br.eml"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would import")
                .and(predicate::str::contains("already imported")),
        );
    let db = open_db(&home.default_db());
    let count: i64 = db
        .query_row("SELECT count(*) FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
    drop(db);
    assert_eq!(before, std::fs::read(home.default_db()).unwrap());
}

#[test]
fn reads_a_mail_from_standard_input() {
    let home = Home::new();
    let mail = std::fs::read(samples().join("06-p7b-pem.eml")).unwrap();
    home.with_samples()
        .args(["import", "-"])
        .write_stdin(mail)
        .assert()
        .success()
        .stdout(predicate::str::contains("www.golf.example.com"));
}

#[test]
fn expect_name_overrides_the_csr_name() {
    let home = Home::new();
    home.with_samples()
        .args(["import", "--expect-name", "www.other.example.com"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .code(4)
        .stdout(predicate::str::contains(
            "rule 2 (name): it does not cover www.other.example.com",
        ));
}

#[test]
fn key_given_on_the_command_line_is_used() {
    let home = Home::new();
    // No [keys] dirs: only the --key file can tie the certificate to us.
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[validation]\ntrust_roots = [\"{}\"]\n",
            samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    let mail = samples().join("03-quoted-printable.eml");
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("import")
        .arg(&mail)
        .assert()
        .code(4)
        .stdout(predicate::str::contains(
            "rule 1 (key): no private key or CSR",
        ));
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("import")
        .arg("--key")
        .arg(samples().join("keys/www.charlie.example.com.key"))
        .arg("--expect-name")
        .arg("www.charlie.example.com")
        .arg(&mail)
        .assert()
        .success();
}

#[test]
fn a_downloaded_certificate_file_can_be_imported() {
    // After a link-only mail the user downloads the certificate; import takes the file.
    let home = Home::new();
    let mail = std::fs::read_to_string(samples().join("01-geotrust-inline-pem.eml")).unwrap();
    let start = mail.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = mail.rfind("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let bundle = home.path().join("www_alpha_example_com.crt");
    std::fs::write(&bundle, &mail[start..end]).unwrap();
    home.with_samples()
        .args(["import", "--order", "1557047799"])
        .arg(&bundle)
        .assert()
        .success();
    let db = open_db(&home.default_db());
    let order: i64 = db
        .query_row("SELECT order_id FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(order, 1557047799);
}

#[test]
fn list_and_show_present_the_record() {
    let home = Home::new();
    home.with_samples()
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("No certificates recorded yet"));
    home.with_samples()
        .arg("import")
        .arg(samples().join("12-wildcard.eml"))
        .arg(samples().join("09-forwarded.eml"))
        .assert()
        .success();

    let listing = home.with_samples().arg("list").output().unwrap();
    assert!(listing.status.success());
    let text = String::from_utf8(listing.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ID  COMMON NAME"), "{text}");
    assert!(text.contains("*.wild.example.net") && text.contains("www.india.example.com"));
    assert!(
        text.contains("2045-06-01 ("),
        "expiry as a date and days left: {text}"
    );
    // Columns are aligned: EXPIRES starts at the same place on every line.
    let column = lines[0].find("EXPIRES").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[column..].starts_with("2045-06-01")),
        "{text}"
    );

    let json = stdout_json(
        &home
            .with_samples()
            .args(["list", "--json"])
            .output()
            .unwrap(),
    );
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for key in [
        "id",
        "sha256",
        "common_name",
        "not_after",
        "subject_alt_names",
        "serial",
        "issuer",
        "imported_at",
    ] {
        assert!(
            rows[0].get(key).is_some(),
            "--json has {key}: {:#}",
            rows[0]
        );
    }
    // Global options work after the command too.
    let after = stdout_json(
        &home
            .with_samples()
            .args(["list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(after, json);

    // Nothing expires within 30 days; everything within 30 years.
    let soon = stdout_json(
        &home
            .with_samples()
            .args(["--json", "list", "--expiring-within", "30d"])
            .output()
            .unwrap(),
    );
    assert_eq!(soon.as_array().unwrap().len(), 0);
    let later = stdout_json(
        &home
            .with_samples()
            .args(["--json", "list", "--expiring-within", "30years"])
            .output()
            .unwrap(),
    );
    assert_eq!(later.as_array().unwrap().len(), 2);

    let sha256 = rows[0]["sha256"].as_str().unwrap().to_string();
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let by_id = home.with_samples().args(["show", &id]).output().unwrap();
    let by_prefix = home
        .with_samples()
        .args(["show", &sha256[..12]])
        .output()
        .unwrap();
    assert!(by_id.status.success());
    assert_eq!(by_id.stdout, by_prefix.stdout);
    let shown = String::from_utf8(by_id.stdout).unwrap();
    assert!(
        shown.contains(&sha256) && shown.contains("Fulfill Test Issuing CA RSA"),
        "{shown}"
    );

    let pem_output = home
        .with_samples()
        .args(["show", "--pem", &sha256])
        .output()
        .unwrap();
    let blocks = pem::parse_many(&pem_output.stdout).unwrap();
    assert_eq!(blocks.len(), 2, "leaf and intermediate");
    assert_eq!(fulfill::extract::sha256_hex(blocks[0].contents()), sha256);

    let shown_json = stdout_json(
        &home
            .with_samples()
            .args(["show", "--json", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(shown_json["sha256"], sha256.as_str());
    assert!(
        shown_json["certificate_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    home.with_samples()
        .args(["show", "999"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no certificate '999'"));
}

#[test]
fn configuration_mistakes_exit_2_and_name_the_file() {
    let home = Home::new();
    let config = home.path().join("config.toml");
    std::fs::write(&config, "[keys]\ndirz = [\"/etc/ssl/private\"]\n").unwrap();
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(config.display().to_string())
                .and(predicate::str::contains("dirz")),
        );

    home.fulfill()
        .args(["--config", "/nonexistent/fulfill.toml", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/fulfill.toml"));

    std::fs::write(
        &config,
        "[validation]\ntrust_roots = [\"missing-bundle.pem\"]\n",
    )
    .unwrap();
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("import")
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing-bundle.pem"));

    // Usage errors from clap are exit 2 as well.
    home.fulfill().arg("import").assert().code(2);
}

#[test]
fn an_oversized_mail_is_refused_without_being_read() {
    let home = Home::new();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailbox]\nmax_message_size = \"1KiB\"\n[keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            samples().join("keys").display(),
            samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("import")
        .arg(samples().join("07-sectigo-zip.eml"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("max_message_size"));
}

#[test]
fn an_encrypted_key_is_a_clear_usage_error() {
    let home = Home::new();
    let key = home.path().join("encrypted.key");
    std::fs::write(
        &key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    home.with_samples()
        .arg("import")
        .arg("--key")
        .arg(&key)
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("encrypted.key").and(predicate::str::contains("encrypted")),
        );
}

#[test]
fn a_file_that_is_no_mail_says_so() {
    let home = Home::new();
    let junk = home.path().join("junk.eml");
    std::fs::write(&junk, b"\x00\x01\x02 not a mail at all").unwrap();
    home.with_samples()
        .arg("import")
        .arg(&junk)
        .assert()
        .code(4)
        .stdout(predicate::str::contains("junk.eml"));
}

/// A bad value in the config is refused when the file is loaded, with its line and column,
/// whatever the command: `check` and `list` no longer pass a config that fails under cron.
/// Durations are bounded, so a huge one is an error, never a panic.
#[test]
fn bad_config_values_are_refused_at_load_with_their_place() {
    let home = Home::new();
    let config = home.path().join("config.toml");
    for (text, says) in [
        (
            "[mailbox]\nsecurity = \"ssl\"\n",
            "line 2, column 12: security = \"ssl\"",
        ),
        (
            "[mailbox]\ntimeout = \"30 seconds please\"\n",
            "line 2, column 11: '30 seconds please' is not a duration",
        ),
        (
            "[mailbox]\nsince = \"100000000y\"\n",
            "line 2, column 9: '100000000y' is longer than the limit",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        for command in ["check", "list"] {
            home.fulfill()
                .arg("--config")
                .arg(&config)
                .arg(command)
                .assert()
                .code(2)
                .stderr(
                    predicate::str::contains(config.display().to_string())
                        .and(predicate::str::contains(says)),
                );
        }
    }
    home.fulfill()
        .args(["list", "--expiring-within", "100000000y"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "longer than the limit of 100 years",
        ));
}

/// The run lock is never followed through a link, and a lock that belongs to another user
/// is an error that names the file and the owner.
#[test]
fn the_run_lock_refuses_links_and_other_owners() {
    let home = Home::new();
    let db = home.path().join("state/fulfill.db");
    let lock = home.path().join("state/fulfill.db.lock");
    std::fs::create_dir(home.path().join("state")).unwrap();
    let target = home.path().join("elsewhere");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let import = || {
        let mut cmd = home.with_samples();
        cmd.arg("--db")
            .arg(&db)
            .args(["import", "--no-upload"])
            .arg(samples().join("01-geotrust-inline-pem.eml"));
        cmd
    };
    import().assert().code(1).stderr(
        predicate::str::contains(lock.display().to_string())
            .and(predicate::str::contains("is a symbolic link")),
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(!db.exists(), "nothing recorded");

    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "").unwrap();
    // Giving a file away needs root (as in CI); elsewhere this half cannot be set up.
    let nobody = 65534;
    if std::os::unix::fs::chown(&lock, Some(nobody), None).is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root and must run this half"
        );
        eprintln!("skipped: giving the lock to another user needs root");
        return;
    }
    import().assert().code(1).stderr(
        predicate::str::contains(lock.display().to_string()).and(
            predicate::str::contains("belongs to nobody")
                .or(predicate::str::contains("belongs to uid 65534")),
        ),
    );
    assert!(!db.exists(), "nothing recorded");
}

/// Names and text from a mail reach the terminal and the audit trail escaped: a zip entry
/// named to retitle the terminal and forge a log line does neither.
#[test]
fn hostile_names_are_printed_escaped() {
    use base64::Engine;
    use std::io::Write;

    let hostile = "\x1b]0;x\x07\nfulfill: info: imported";
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(hostile, zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n")
        .unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let mail = format!(
        "From: ca@example.com\r\nTo: admin@example.com\r\nSubject: Your certificate\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n\
         --b\r\nContent-Type: application/zip; name=cert.zip\r\n\
         Content-Disposition: attachment; filename=cert.zip\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        base64::engine::general_purpose::STANDARD.encode(&zip)
    );
    let home = Home::new();
    let file = home.path().join("hostile.eml");
    std::fs::write(&file, mail).unwrap();
    let output = home
        .with_samples()
        .args(["-v", "import", "--no-upload"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    let text = String::from_utf8_lossy(&shown);
    assert!(
        text.contains("\\x1b]0;x\\x07\\nfulfill: info: imported"),
        "the name is shown, escaped:\n{text}"
    );
    assert!(
        !shown.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f),
        "a raw control byte reached the output:\n{text:?}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("fulfill: info: imported")),
        "a forged line:\n{text}"
    );
    let db = open_db(&home.default_db());
    let details: Vec<String> = db
        .prepare("SELECT detail FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        details.iter().any(|d| d.contains("\\x1b]0;x")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .all(|d| !d.contains('\x1b') && !d.contains('\n')),
        "{details:?}"
    );
}

/// A database or folder that others can read still works, with a warning that gives the
/// `chmod` to run.
#[test]
fn a_database_readable_by_others_is_pointed_out() {
    let home = Home::new();
    home.with_samples()
        .args(["import", "--no-upload"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    let db = home.default_db();
    let folder = db.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    home.fulfill().arg("list").assert().success().stderr(
        predicate::str::contains(format!("run `chmod 600 {}`", db.display())).and(
            predicate::str::contains(format!("run `chmod 700 {}`", folder.display())),
        ),
    );
}

/// A config file that names commands (`*_cmd`, `deploy_hook`) and that others may change
/// is refused, as sshd's StrictModes refuses such an authorized_keys.
#[test]
fn a_config_with_commands_that_others_can_change_is_refused() {
    let home = Home::new();
    let folder = home.path().join("etc");
    std::fs::create_dir(&folder).unwrap();
    let config = folder.join("config.toml");
    for (text, key) in [
        (
            "[portal]\nusername = \"u\"\napi_key_cmd = \"echo k\"\n",
            "[portal] api_key_cmd",
        ),
        ("deploy_hook = \"true\"\n", "deploy_hook"),
    ] {
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
        home.fulfill()
            .arg("--config")
            .arg(&config)
            .arg("list")
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(config.display().to_string())
                    .and(predicate::str::contains(key))
                    .and(predicate::str::contains("writable by other users")),
            );
        // Its folder counts too.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
        home.fulfill()
            .arg("--config")
            .arg(&config)
            .arg("list")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "{} is writable",
                folder.display()
            )));
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        home.fulfill()
            .arg("--config")
            .arg(&config)
            .arg("list")
            .assert()
            .success();
    }
    // Without commands, the same modes are accepted.
    std::fs::write(&config, "[keys]\ndirs = []\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    home.fulfill()
        .arg("--config")
        .arg(&config)
        .arg("list")
        .assert()
        .success();
}

/// `import` runs the deploy hook for what it records; `fulfill deploy` runs it by hand,
/// for named certificates or for every one left pending or failed.
#[test]
fn import_and_deploy_run_the_deploy_hook() {
    let home = Home::new();
    let log = home.path().join("hook.log");
    let config = home.path().join("config.toml");
    let write_config = |hook: &str| {
        std::fs::write(
            &config,
            format!(
                "deploy_hook = \"{hook}\"\n[keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
                samples().join("keys").display(),
                samples().join("ca/root.pem").display()
            ),
        )
        .unwrap();
    };
    let fulfill = || {
        let mut cmd = home.fulfill();
        cmd.arg("--config").arg(&config);
        cmd
    };
    let lines = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    write_config(&format!("echo $FULFILL_SHA256 >> {}", log.display()));
    let alpha = samples().join("01-geotrust-inline-pem.eml");
    fulfill()
        .args(["import", "--no-upload"])
        .arg(&alpha)
        .assert()
        .success();
    assert_eq!(lines(), 1);
    fulfill()
        .args(["import", "--no-upload"])
        .arg(&alpha)
        .assert()
        .success();
    assert_eq!(lines(), 1, "already deployed");

    // A hook that fails: exit 1 once all is recorded; deploy --pending retries it.
    write_config("exit 3");
    let bravo = samples().join("02-html-br.eml");
    let output = fulfill()
        .args(["--json", "import", "--no-upload"])
        .arg(&bravo)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let results = stdout_json(&output);
    assert_eq!(results[0]["outcome"], "imported");
    assert!(
        results[0]["deploy_hook"]
            .as_str()
            .unwrap()
            .starts_with("failed:")
    );
    write_config(&format!("echo $FULFILL_SHA256 >> {}", log.display()));
    let deployed = stdout_json(
        &fulfill()
            .args(["--json", "deploy", "--pending"])
            .output()
            .unwrap(),
    );
    assert_eq!(deployed.as_array().unwrap().len(), 1, "{deployed:#}");
    assert_eq!(deployed[0]["ok"], true);
    assert_eq!(lines(), 2);
    fulfill()
        .args(["deploy", "--pending"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Nothing to deploy"));

    // By hand, a named certificate is deployed again.
    fulfill().args(["deploy", "1"]).assert().success();
    assert_eq!(lines(), 3);
    fulfill()
        .args(["deploy", "99"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no certificate '99'"));
    home.with_samples()
        .args(["deploy", "--pending"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no deploy hook"));
}

/// What a new user met, each said once and in words they can act on.
#[test]
fn confusing_output_is_said_once_and_plainly() {
    let home = Home::new();
    let said = |output: &std::process::Output, what: &str| {
        let all = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        String::from_utf8_lossy(&all).matches(what).count()
    };
    // A missing config file: its reason once.
    let output = home
        .fulfill()
        .args(["--config", "/nonexistent/fulfill.toml", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(said(&output, "No such file or directory"), 1, "{output:?}");
    // A missing mail: in the table and in its explanation, not a third time on stderr.
    let output = home
        .with_samples()
        .args(["import", "--no-upload", "/nonexistent/mail.eml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(said(&output, "No such file or directory"), 1, "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // An expired leaf whose CA is valid today: "expired", and nothing about the CA.
    let output = home
        .with_samples()
        .args(["--json", "import", "--no-upload"])
        .arg(samples().join("20-reject-expired.eml"))
        .output()
        .unwrap();
    let results = stdout_json(&output);
    let rules: Vec<u64> = (results[0]["reasons"].as_array().unwrap().iter())
        .map(|r| r["rule"].as_u64().unwrap())
        .collect();
    assert_eq!(rules, vec![3], "{results:#}");
    // A file that stops early: "truncated", not the parser's "Parsing requires 1 bytes".
    let truncated = home.path().join("cut.der");
    std::fs::write(&truncated, [0x30, 0x82, 0x05]).unwrap();
    let output = home
        .with_samples()
        .args(["import", "--no-upload"])
        .arg(&truncated)
        .output()
        .unwrap();
    assert_eq!(said(&output, "truncated"), 1, "{output:?}");
    assert_eq!(said(&output, "Parsing requires"), 0, "{output:?}");
    // A bare number where a duration goes: days are suggested.
    home.fulfill()
        .args(["list", "--expiring-within", "30"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("30d for days").and(predicate::str::contains("30sec").not()),
        );
    // A dry run records nothing, so it says nothing about where records would go.
    let output = home
        .with_samples()
        .args(["import", "--dry-run"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(said(&output, "recorded locally"), 0, "{output:?}");
}

/// `import --dry-run` with a portal that cannot be reached still shows the validation, at
/// once, and says the portal's state is unknown; the error names no percent-encoded URL.
#[test]
fn a_dry_run_works_with_the_portal_unreachable() {
    let home = Home::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[portal]\nendpoint = \"http://127.0.0.1:{port}/rest/v3.1/\"\nusername = \"u\"\napi_key = \"k\"\n\
             [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            samples().join("keys").display(),
            samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = home
        .fulfill()
        .arg("--config")
        .arg(&config)
        .args(["import", "--dry-run", "--order", "4310001"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("would import") && stdout.contains("unknown"),
        "{stdout}"
    );
    assert!(stdout.contains("the portal's state is unknown"), "{stdout}");
    assert!(
        stderr.contains("order 4310001: the portal cannot be read"),
        "{stderr}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("objectFilter"),
        "{stdout}{stderr}"
    );
}

/// `database` in the config file says where the database is, from the file's folder: root
/// running `fulfill --config /etc/fulfill/config.toml list` reads the service's records.
/// `--db` and `FULFILL_DB` still come first.
#[test]
fn the_config_file_names_the_database() {
    let home = Home::new();
    let etc = home.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let config = etc.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"state/service.db\"\n[keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            samples().join("keys").display(),
            samples().join("ca/root.pem").display()
        ),
    )
    .unwrap();
    let fulfill = || {
        let mut cmd = home.fulfill();
        cmd.arg("--config").arg(&config);
        cmd
    };
    fulfill()
        .args(["import", "--no-upload"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    let db = etc.join("state/service.db");
    assert!(db.exists(), "relative to the config file's folder");
    assert!(!home.default_db().exists(), "not the XDG default");
    fulfill()
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("www.alpha.example.com"));

    // --db and FULFILL_DB come before the file.
    let other = home.path().join("other.db");
    fulfill()
        .arg("--db")
        .arg(&other)
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains(other.display().to_string()));
    fulfill()
        .env("FULFILL_DB", &other)
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("No certificates recorded yet"));
}

/// `show` takes a common name; a too-short prefix says what is needed; `show --json` has
/// `days_left`, as `list --json` does, and keeps every column.
#[test]
fn show_finds_a_name_and_says_what_a_prefix_needs() {
    let home = Home::new();
    home.with_samples()
        .args(["import", "--no-upload"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    let by_name = stdout_json(
        &home
            .with_samples()
            .args(["--json", "show", "www.alpha.example.com"])
            .output()
            .unwrap(),
    );
    let listed = stdout_json(
        &home
            .with_samples()
            .args(["--json", "list"])
            .output()
            .unwrap(),
    );
    assert_eq!(by_name["sha256"], listed[0]["sha256"]);
    assert_eq!(by_name["days_left"], listed[0]["days_left"]);
    assert!(by_name["days_left"].as_i64().unwrap() > 1000, "{by_name:#}");
    for key in [
        "id",
        "common_name",
        "not_after",
        "certificate_pem",
        "chain_pem",
    ] {
        assert!(by_name.get(key).is_some(), "{key} in {by_name:#}");
    }
    let sha256 = by_name["sha256"].as_str().unwrap();
    home.with_samples()
        .args(["show", &sha256[..5]])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "a prefix needs 8 or more hex digits",
        ));
    home.with_samples()
        .args(["show", "www.nothing.example.com"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no certificate 'www.nothing.example.com'",
        ));
}

/// `fulfill log` shows the audit trail oldest first, as a table or `--json`, for one order
/// (`--order`) and a last while (`--since`); without a database it says there is none yet.
#[test]
fn log_shows_the_audit_trail() {
    let home = Home::new();
    home.with_samples()
        .arg("log")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("No events recorded yet ("));
    home.with_samples()
        .args(["import", "--no-upload"])
        .arg(samples().join("01-geotrust-inline-pem.eml"))
        .assert()
        .success();
    // An older event of an order, and one whose detail was escaped when written.
    let db = rusqlite::Connection::open(home.default_db()).unwrap();
    db.execute(
        "INSERT INTO events (at, order_id, kind, detail) VALUES \
         ('2020-01-01T00:00:00Z', 101, 'order_state', 'waiting_for_mail'), \
         ('2020-01-02T00:00:00Z', 102, 'order_state', 'a \\x1b]0;x\\x07 name')",
        [],
    )
    .unwrap();
    drop(db);

    let table = home.with_samples().arg("log").output().unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("AT") && lines[0].contains("DETAIL"),
        "{text}"
    );
    assert!(
        lines[1].contains("certificate_recorded") && lines[1].contains("www.alpha.example.com"),
        "oldest first (by id):\n{text}"
    );
    assert!(
        lines[2].starts_with("2020-01-01T00:00:00Z  101  ")
            && lines[2].ends_with("waiting_for_mail"),
        "{text}"
    );
    assert!(lines[3].ends_with("a \\x1b]0;x\\x07 name"), "{text}");

    let json = |args: &[&str]| {
        stdout_json(
            &home
                .with_samples()
                .args(["--json", "log"])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let all = json(&[]);
    assert_eq!(all.as_array().unwrap().len(), 3, "{all:#}");
    for key in ["id", "at", "order_id", "kind", "detail"] {
        assert!(all[0].get(key).is_some(), "{key}: {all:#}");
    }
    let order = json(&["--order", "101"]);
    assert_eq!(order.as_array().unwrap().len(), 1, "{order:#}");
    assert_eq!(order[0]["detail"], "waiting_for_mail");
    let recent = json(&["--since", "1d"]);
    assert_eq!(recent.as_array().unwrap().len(), 1, "{recent:#}");
    assert_eq!(recent[0]["kind"], "certificate_recorded");
    home.with_samples()
        .args(["log", "--order", "101", "--since", "1d"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("No events match"));
    home.with_samples()
        .args(["log", "--since", "200years"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("100 years"));
}

//! Every form the extractor reads, delivered through IMAP: each shape of
//! tests/support/shapes.rs (the shapes of `samples/`, plus DER in an octet-stream part
//! without a file name) is appended to a private Dovecot, `fulfill --json poll` runs as a
//! user runs it, and the certificate must be imported (its SHA-256 and common name in the
//! report) and recorded in the SQLite database. Each shape also with a 300 KB PDF beside
//! the certificate, as in a shared mailbox full of invoices.
//!
//! Whatever fulfill fetches of a mail (the whole of it, or the parts its structure says can
//! hold a certificate), these must keep passing.
//!
//! One Dovecot serves the tests that run at the same time (see [`shared_dovecot`]); each
//! test has a folder, a home and a database of its own.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use support::dovecot::{Dovecot, dovecot_or_skip};
use support::shapes::{Pki, Shape, pdf_base64};
use support::{Home, open_db, stdout_json};

/// The Dovecot of the tests running now, started by the first of them and stopped once the
/// last drops it: Dovecot's start is most of a test's time, and a server held in a plain
/// static would never be stopped (statics are not dropped at exit).
fn shared_dovecot() -> Option<Arc<Dovecot>> {
    static SHARED: Mutex<Weak<Dovecot>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dovecot) = shared.upgrade() {
        return Some(dovecot);
    }
    let dovecot = Arc::new(dovecot_or_skip()?);
    *shared = Arc::downgrade(&dovecot);
    Some(dovecot)
}

/// Delivers `shape` (beside a PDF when `with_pdf`) for a certificate of its own into a
/// folder of its own, polls that folder, and checks the certificate was imported and
/// recorded.
fn imports_through_imap(shape: Shape, with_pdf: bool) {
    let Some(dovecot) = shared_dovecot() else {
        return;
    };
    let folder = format!("{shape:?}{}", if with_pdf { "-pdf" } else { "" });
    let name = format!("www.{}.example.com", folder.to_lowercase());
    let home = Home::new();
    let pki = Pki::new();
    let issued = pki.issue(&name);
    let keys = home.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    issued.write_key(&keys);
    let root = home.path().join("root.pem");
    std::fs::write(&root, &pki.root.pem).unwrap();
    let config = write_config(&dovecot, &home, &folder, &keys, &root);

    let pdf = with_pdf.then(pdf_base64);
    let mail = pki.mail(shape, &issued, pdf.as_deref());
    if with_pdf {
        assert!(mail.len() > 400_000, "the PDF is in the mail");
    }
    dovecot.create_folder(&folder);
    let uid = dovecot.append(&folder, &mail);

    let output = home
        .fulfill()
        .arg("--config")
        .arg(&config)
        .args(["--json", "poll"])
        .output()
        .unwrap();
    let report = stdout_json(&output);
    let context = format!(
        "{shape:?}, PDF: {with_pdf}\nreport: {report:#}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{context}");
    assert_eq!(report["new_messages"], 1, "{context}");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "one result for the one mail: {context}");
    assert_eq!(results[0]["outcome"], "imported", "{context}");
    assert_eq!(results[0]["common_name"], name.as_str(), "{context}");
    assert_eq!(results[0]["sha256"], issued.sha256.as_str(), "{context}");

    let db = open_db(&home.default_db());
    let rows: Vec<(String, String, String)> = db
        .prepare("SELECT common_name, sha256, source FROM certificates")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one certificate recorded: {rows:?}\n{context}"
    );
    let (common_name, sha256, source) = &rows[0];
    assert_eq!((common_name, sha256), (&name, &issued.sha256), "{context}");
    assert!(source.ends_with(&format!(";UID={uid}")), "{source}");
}

/// IMAPS with the server's certificate as ca_file, the given folder, the key and the root.
fn write_config(
    dovecot: &Dovecot,
    home: &Home,
    folder: &str,
    keys: &std::path::Path,
    root: &std::path::Path,
) -> PathBuf {
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mailbox]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\nca_file = \"{}\"\n\
             username = \"{}\"\npassword_cmd = \"echo {}\"\nfolder = \"{folder}\"\n\
             timeout = \"10s\"\nrun_timeout = \"2m\"\n\
             [keys]\ndirs = [\"{}\"]\n[validation]\ntrust_roots = [\"{}\"]\n",
            dovecot.imaps_port(),
            dovecot.cert_pem_path().display(),
            dovecot.user(),
            dovecot.password(),
            keys.display(),
            root.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn inline_pem() {
    imports_through_imap(Shape::InlinePem, false);
}

#[test]
fn inline_pem_beside_a_pdf() {
    imports_through_imap(Shape::InlinePem, true);
}

#[test]
fn html() {
    imports_through_imap(Shape::Html, false);
}

#[test]
fn html_beside_a_pdf() {
    imports_through_imap(Shape::Html, true);
}

#[test]
fn quoted_printable() {
    imports_through_imap(Shape::QuotedPrintable, false);
}

#[test]
fn quoted_printable_beside_a_pdf() {
    imports_through_imap(Shape::QuotedPrintable, true);
}

#[test]
fn der_attachments() {
    imports_through_imap(Shape::Der, false);
}

#[test]
fn der_attachments_beside_a_pdf() {
    imports_through_imap(Shape::Der, true);
}

#[test]
fn p7b_in_der() {
    imports_through_imap(Shape::P7bDer, false);
}

#[test]
fn p7b_in_der_beside_a_pdf() {
    imports_through_imap(Shape::P7bDer, true);
}

#[test]
fn p7b_in_pem() {
    imports_through_imap(Shape::P7bPem, false);
}

#[test]
fn p7b_in_pem_beside_a_pdf() {
    imports_through_imap(Shape::P7bPem, true);
}

#[test]
fn zip_of_pem_files() {
    imports_through_imap(Shape::ZipPem, false);
}

#[test]
fn zip_of_pem_files_beside_a_pdf() {
    imports_through_imap(Shape::ZipPem, true);
}

#[test]
fn zip_with_der() {
    imports_through_imap(Shape::ZipDer, false);
}

#[test]
fn zip_with_der_beside_a_pdf() {
    imports_through_imap(Shape::ZipDer, true);
}

#[test]
fn forwarded_message_rfc822() {
    imports_through_imap(Shape::Forwarded, false);
}

#[test]
fn forwarded_message_rfc822_beside_a_pdf() {
    imports_through_imap(Shape::Forwarded, true);
}

#[test]
fn der_in_octet_stream_parts_without_a_file_name() {
    imports_through_imap(Shape::NamelessOctetStream, false);
}

#[test]
fn der_in_octet_stream_parts_without_a_file_name_beside_a_pdf() {
    imports_through_imap(Shape::NamelessOctetStream, true);
}

//! Unit tests for the extractor: one test per shape a fulfillment mail takes
//! (`docs/fulfillment-emails.md` §1), per trap (CSRs, keys, duplicates) and per limit.

use fulfill_test_pki as pki;

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use super::*;
use pki::{Ca, Leaf, LeafSpec};

// ---------------------------------------------------------------------------------------
// Fixtures

/// A root, an intermediate under it and a leaf under that: what a CA mail carries.
struct Chain {
    root: Ca,
    ca: Ca,
    leaf: Leaf,
}

fn chain() -> Chain {
    let root = pki::root("Test Root CA");
    let ca = pki::intermediate("Test DV CA", &root);
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com", "example.com"]), &ca);
    Chain { root, ca, leaf }
}

fn sha(der: &[u8]) -> String {
    sha256_hex(der)
}

fn shas(extraction: &Extraction) -> Vec<String> {
    extraction
        .certificates
        .iter()
        .map(|c| c.sha256.clone())
        .collect()
}

fn run(message: &[u8]) -> Extraction {
    extract(message, &Limits::default()).expect("extract")
}

fn run_with(message: &[u8], limits: &Limits) -> Extraction {
    extract(message, limits).expect("extract")
}

fn problems_mentioning<'a>(extraction: &'a Extraction, word: &str) -> Vec<&'a Problem> {
    extraction
        .problems
        .iter()
        .filter(|p| p.what.contains(word) || p.found_in.contains(word))
        .collect()
}

fn assert_no_problems(extraction: &Extraction) {
    assert!(
        extraction.problems.is_empty(),
        "unexpected problems: {:#?}",
        extraction.problems
    );
}

// ---------------------------------------------------------------------------------------
// A small MIME writer: just enough structure to build every layout the tests need.

enum Part {
    Single {
        headers: String,
        body: Vec<u8>,
    },
    Multipart {
        subtype: &'static str,
        parts: Vec<Part>,
    },
    Message(Vec<u8>),
}

fn text(body: &str) -> Part {
    Part::Single {
        headers:
            "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
                .into(),
        body: body.as_bytes().to_vec(),
    }
}

fn html(body: &str) -> Part {
    Part::Single {
        headers: "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            .into(),
        body: body.as_bytes().to_vec(),
    }
}

fn quoted_printable(content_type: &str, encoded: &str) -> Part {
    Part::Single {
        headers: format!(
            "Content-Type: {content_type}\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        ),
        body: encoded.as_bytes().to_vec(),
    }
}

fn base64_part(content_type: &str, bytes: &[u8]) -> Part {
    Part::Single {
        headers: format!("Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"),
        body: pki::base64_mime(bytes).into_bytes(),
    }
}

/// An attachment in base64, as every mail client sends files.
fn attachment(content_type: &str, name: &str, bytes: &[u8]) -> Part {
    Part::Single {
        headers: format!(
            "Content-Type: {content_type}; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n"
        ),
        body: pki::base64_mime(bytes).into_bytes(),
    }
}

fn mixed(parts: Vec<Part>) -> Part {
    Part::Multipart {
        subtype: "mixed",
        parts,
    }
}

fn render(part: &Part, boundary_seq: &mut usize, out: &mut Vec<u8>) {
    match part {
        Part::Single { headers, body } => {
            out.extend_from_slice(headers.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
        Part::Multipart { subtype, parts } => {
            *boundary_seq += 1;
            let boundary = format!("=_boundary_{:04}_=", boundary_seq);
            out.extend_from_slice(
                format!(
                    "Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n\
                     This is a multi-part message in MIME format.\r\n"
                )
                .as_bytes(),
            );
            for child in parts {
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                render(child, boundary_seq, out);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        Part::Message(inner) => {
            out.extend_from_slice(
                b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n",
            );
            out.extend_from_slice(inner);
        }
    }
}

fn mail(subject: &str, body: Part) -> Vec<u8> {
    let mut out = format!(
        "Return-Path: <orderprocessing@rapidssl.com>\r\n\
         From: RapidSSL <orderprocessing@rapidssl.com>\r\n\
         To: certs@example.com\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\
         Message-ID: <fulfillment-1557047799@rapidssl.com>\r\n\
         MIME-Version: 1.0\r\n"
    )
    .into_bytes();
    render(&body, &mut 0, &mut out);
    out
}

fn text_mail(body: &str) -> Vec<u8> {
    mail("Your RapidSSL certificate is ready", text(body))
}

fn prose_around(pem: &str) -> String {
    format!(
        "Dear customer,\r\n\r\nYour certificate for www.example.com has been issued.\r\n\
         Order number: 1557047799\r\n\r\nWeb Server CERTIFICATE\r\n\r\n{pem}\r\n\
         Thank you for choosing RapidSSL.\r\n"
    )
}

/// Quoted-printable the way mailers write PEM: `=` becomes `=3D` and lines longer than
/// `width` get soft breaks (`=` CRLF), which land in the middle of base64 lines.
fn qp_encode(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut column = 0;
        for c in line.chars() {
            let token = if c == '=' {
                "=3D".to_string()
            } else {
                c.to_string()
            };
            if column + token.len() >= width {
                out.push_str("=\r\n");
                column = 0;
            }
            column += token.len();
            out.push_str(&token);
        }
        out.push_str("\r\n");
    }
    out
}

fn zip_of(entries: &[(&str, &[u8])], method: ::zip::CompressionMethod) -> Vec<u8> {
    let mut writer = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = ::zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        if name.ends_with('/') {
            writer.add_directory(*name, options).expect("zip dir");
        } else {
            writer.start_file(*name, options).expect("zip entry");
            writer.write_all(bytes).expect("zip write");
        }
    }
    writer.finish().expect("zip finish").into_inner()
}

fn deflated(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_of(entries, ::zip::CompressionMethod::Deflated)
}

// ---------------------------------------------------------------------------------------
// PEM in text bodies

#[test]
fn pem_inline_in_text_plain_7bit() {
    let c = chain();
    let body = prose_around(&format!(
        "{}\r\nINTERMEDIATE CA\r\n\r\n{}",
        c.leaf.pem, c.ca.pem
    ));
    let out = run(&text_mail(&body));
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der)],
        "mail order kept"
    );
    assert_eq!(out.certificates[0].der, c.leaf.der);
    assert!(
        out.certificates[0]
            .found_in
            .contains("PEM block 1 (CERTIFICATE)"),
        "{}",
        out.certificates[0].found_in
    );
    assert!(
        out.certificates[1].found_in.contains("PEM block 2"),
        "{}",
        out.certificates[1].found_in
    );
    assert_eq!(
        out.subject.as_deref(),
        Some("Your RapidSSL certificate is ready")
    );
    assert_eq!(out.from.as_deref(), Some("orderprocessing@rapidssl.com"));
    assert_eq!(
        out.message_id.as_deref(),
        Some("fulfillment-1557047799@rapidssl.com")
    );
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);
    assert!(out.signing_requests.is_empty() && out.private_keys.is_empty());
    assert!(!out.is_link_only());
}

#[test]
fn pem_in_html_with_br_and_entities() {
    let c = chain();
    // Rendered the way web mailers do: one <br> per line, `+`, `/` and `=` as entities,
    // and a non-breaking space after the END line.
    let lines: Vec<String> = c
        .leaf
        .pem
        .lines()
        .map(|l| {
            l.replace('+', "&#43;")
                .replace('/', "&#x2F;")
                .replace('=', "&#61;")
        })
        .collect();
    let body = format!(
        "<html><body><p>Dear customer,</p><p>Your certificate &lt;www.example.com&gt;:</p>\
         <p style=\"font-family:monospace\">{}&nbsp;</p><div>{}</div>\
         <p>Order #: 1557047799</p></body></html>",
        lines.join("<br>\n"),
        c.ca.pem.lines().collect::<Vec<_>>().join("<BR/>")
    );
    let out = run(&mail("Your certificate", html(&body)));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
    assert!(
        out.certificates[0].found_in.contains("text/html"),
        "{}",
        out.certificates[0].found_in
    );
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);
}

#[test]
fn html_entity_lt_never_becomes_a_tag() {
    // `&lt;br&gt;` is text that says "<br>", not a line break, and `&lt;` must not open a
    // tag that swallows the certificate after it.
    let c = chain();
    let body = format!(
        "<p>Use &lt;VirtualHost&gt; and paste:</p><pre>{}</pre><p>a &lt; b</p>",
        c.leaf.pem
    );
    let out = run(&mail("Your certificate", html(&body)));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn quoted_printable_with_soft_breaks_inside_base64_lines_and_3d_padding() {
    let c = chain();
    // A leaf whose base64 ends in padding, so `=3D` appears; the width puts soft breaks
    // in the middle of every base64 line.
    let padded = std::iter::once(c.leaf)
        .chain((0..20).map(|_| pki::leaf(&LeafSpec::new(&["www.example.com"]), &c.ca)))
        .find(|l| l.der.len() % 3 != 0)
        .expect("a certificate whose base64 is padded");
    assert!(pki::base64_encode(&padded.der).ends_with('='));
    let encoded = qp_encode(&prose_around(&padded.pem), 40);
    assert!(encoded.contains("=3D"), "padding was escaped");
    assert!(encoded.contains("=\r\n"), "soft breaks were inserted");
    let out = run(&mail(
        "Your certificate",
        quoted_printable("text/plain; charset=utf-8", &encoded),
    ));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&padded.der)]);
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);
}

#[test]
fn quoted_printable_from_a_real_encoder_with_76_char_pem_lines() {
    let c = chain();
    let pem = pki::pem_with("CERTIFICATE", &c.leaf.der, 76, "\r\n");
    let encoded = quoted_printable::encode_to_str(prose_around(&pem));
    let out = run(&mail(
        "Your certificate",
        quoted_printable("text/plain; charset=utf-8", &encoded),
    ));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn base64_transfer_encoding_of_a_text_body() {
    let c = chain();
    let body = prose_around(&format!("{}{}", c.leaf.pem, c.ca.pem));
    let out = run(&mail(
        "Your certificate",
        base64_part("text/plain; charset=utf-8", body.as_bytes()),
    ));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
}

#[test]
fn crlf_trailing_spaces_and_76_char_lines() {
    let c = chain();
    let pem: String = pki::pem_with("CERTIFICATE", &c.leaf.der, 76, "\r\n")
        .split("\r\n")
        .map(|line| format!("{line}  \t"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let out = run(&text_mail(&prose_around(&pem)));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);

    // LF only, lines of uneven length.
    let b64 = pki::base64_encode(&c.ca.der);
    let (a, b) = b64.split_at(100);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{a}\n{b}\n-----END CERTIFICATE-----\n");
    let out = run(&text_mail(&pem));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.ca.der)]);
}

#[test]
fn pem_lines_run_together_or_indented() {
    // A renderer that collapsed the line breaks into spaces, and a mail that indents the
    // block with a tab.
    let c = chain();
    let collapsed = c.leaf.pem.trim_end().replace('\n', " ");
    let indented: String = c.ca.pem.lines().map(|l| format!("\t{l}\r\n")).collect();
    let out = run(&text_mail(&format!(
        "Certificate: {collapsed} Thanks!\r\n\r\n{indented}"
    )));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
}

#[test]
fn missing_end_line_before_prose() {
    let c = chain();
    let pem = c.leaf.pem.replace("-----END CERTIFICATE-----", "");
    let out = run(&text_mail(&format!(
        "Your certificate:\r\n\r\n{pem}\r\nThank you for choosing RapidSSL.\r\n"
    )));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn missing_end_line_before_a_signature_made_of_base64_letters() {
    // "Regards" and "RapidSSL Team" are all letters: nothing but the DER length tells
    // where the certificate stops.
    let c = chain();
    for tail in [
        "Regards\r\nRapidSSL Team\r\n",
        "Regards\r\n\r\nRapidSSL\r\n",
        "RapidSSL\r\n",
    ] {
        let pem = c
            .leaf
            .pem
            .replace("-----END CERTIFICATE-----\n", "")
            .replace("\n", "\r\n");
        let out = run(&text_mail(&format!("Your certificate:\r\n{pem}{tail}")));
        assert_no_problems(&out);
        assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "tail {tail:?}");
    }
}

#[test]
fn missing_end_line_before_the_next_begin_and_at_end_of_text() {
    let c = chain();
    let leaf = c.leaf.pem.replace("-----END CERTIFICATE-----\n", "");
    let ca = c.ca.pem.replace("-----END CERTIFICATE-----\n", "");
    let out = run(&text_mail(&format!("{leaf}{ca}")));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
}

#[test]
fn quoted_pem_in_a_reply() {
    let c = chain();
    let quote = |pem: &str, prefix: &str| -> String {
        pem.lines().map(|l| format!("{prefix}{l}\r\n")).collect()
    };
    let body = format!(
        "Hi, the certificate is below.\r\n\r\nOn Mon, RapidSSL wrote:\r\n{}>\r\n{}",
        quote(&c.leaf.pem, "> "),
        quote(&c.ca.pem, "> > ")
    );
    let out = run(&text_mail(&body));
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
}

#[test]
fn every_certificate_label() {
    let c = chain();
    // OpenSSL's TRUSTED CERTIFICATE: the certificate followed by its trust settings.
    let mut trusted = c.root.der.clone();
    trusted.extend_from_slice(&[
        0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
    ]);
    let bundle = pki::pkcs7(Some(&[&c.leaf.der, &c.ca.der]));
    // (label, DER inside the PEM, certificates expected out)
    type Case<'a> = (&'a str, Vec<u8>, Vec<&'a [u8]>);
    let cases: Vec<Case<'_>> = vec![
        ("CERTIFICATE", c.leaf.der.clone(), vec![&c.leaf.der]),
        ("X509 CERTIFICATE", c.leaf.der.clone(), vec![&c.leaf.der]),
        ("TRUSTED CERTIFICATE", trusted, vec![&c.root.der]),
        ("PKCS7", bundle.clone(), vec![&c.leaf.der, &c.ca.der]),
        (
            "PKCS #7 SIGNED DATA",
            bundle.clone(),
            vec![&c.leaf.der, &c.ca.der],
        ),
        // Red Hat Certificate System: CERTIFICATE wrapping a PKCS#7 chain.
        ("CERTIFICATE", bundle, vec![&c.leaf.der, &c.ca.der]),
        // And a PKCS7 label around one plain certificate: the DER decides.
        ("PKCS7", c.ca.der.clone(), vec![&c.ca.der]),
    ];
    for (label, der, expected) in cases {
        let pem = pki::pem_with(label, &der, 64, "\r\n");
        let out = run(&text_mail(&prose_around(&pem)));
        assert_no_problems(&out);
        let expected: Vec<String> = expected.iter().map(|d| sha(d)).collect();
        assert_eq!(shas(&out), expected, "label {label}");
        assert!(
            out.certificates[0].found_in.contains(label),
            "{}",
            out.certificates[0].found_in
        );
    }
}

// ---------------------------------------------------------------------------------------
// Attachments

#[test]
fn der_certificate_attachment_with_a_misleading_name() {
    let c = chain();
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Your certificate is attached.\r\n"),
            attachment(
                "application/octet-stream",
                "getting_started.txt",
                &c.leaf.der,
            ),
            attachment(
                "application/x-x509-ca-cert",
                "IntermediateCA.p7b",
                c.ca.pem.as_bytes(),
            ),
        ]),
    );
    let out = run(&message);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
    assert!(
        out.certificates[0]
            .found_in
            .contains("'getting_started.txt'"),
        "{}",
        out.certificates[0].found_in
    );
    assert!(
        out.certificates[1]
            .found_in
            .contains("'IntermediateCA.p7b'"),
        "{}",
        out.certificates[1].found_in
    );
}

#[test]
fn der_certificate_in_a_text_typed_attachment() {
    // A `.txt` that is really DER, sent as text/plain: the bytes, not the declared type,
    // decide. The text decoding must not destroy them.
    let c = chain();
    for (content_type, name) in [
        ("text/plain", "certificate.txt"),
        ("text/plain; charset=iso-8859-1", "ssl_certificate.cer"),
        ("text/x-x509-cert", "ssl_certificate.crt"),
    ] {
        let message = mail(
            "Your certificate",
            mixed(vec![
                text("Attached.\r\n"),
                attachment(content_type, name, &c.leaf.der),
            ]),
        );
        let out = run(&message);
        assert_no_problems(&out);
        assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "{content_type}");
    }
    // Latin-1 prose is not binary, whatever its bytes: no problem is made of it.
    let latin1 = Part::Single {
        headers:
            "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
                .into(),
        body: b"0 Zertifikate f\xfcr Sie.\r\nGr\xfc\xdfe\r\n".to_vec(),
    };
    let out = run(&mail("Ihr Zertifikat", latin1));
    assert_no_problems(&out);
    assert!(out.certificates.is_empty());
}

#[test]
fn pkcs7_der_and_pem_attachments() {
    let c = chain();
    // Leaf in the middle: a bundle's order means nothing.
    let bundle = pki::pkcs7(Some(&[&c.ca.der, &c.leaf.der, &c.root.der]));
    let pem_bundle = pki::pem_with("PKCS7", &bundle, 64, "\n");
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Attached.\r\n"),
            attachment("application/pkcs7-mime", "ssl_certificate.p7b", &bundle),
            attachment(
                "application/x-pkcs7-certificates",
                "copy.p7b",
                pem_bundle.as_bytes(),
            ),
        ]),
    );
    let out = run(&message);
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.ca.der), sha(&c.leaf.der), sha(&c.root.der)],
        "three certificates, each once"
    );
    assert!(
        out.certificates[1]
            .found_in
            .contains("bundle certificate 2"),
        "{}",
        out.certificates[1].found_in
    );
}

#[test]
fn pkcs7_in_ber_with_indefinite_lengths() {
    let c = chain();
    let bundle = pki::pkcs7_ber(&[&c.leaf.der, &c.ca.der]);
    let out = extract_file(&bundle, "certnew.p7b", &Limits::default()).expect("extract");
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
}

#[test]
fn empty_pkcs7_bundle_is_a_problem() {
    for bundle in [pki::pkcs7(None), pki::pkcs7(Some(&[]))] {
        let message = mail(
            "Your certificate",
            mixed(vec![
                text("Attached.\r\n"),
                attachment("application/pkcs7-mime", "empty.p7b", &bundle),
            ]),
        );
        let out = run(&message);
        assert!(out.certificates.is_empty());
        let found = problems_mentioning(&out, "holds no certificate");
        assert_eq!(found.len(), 1, "{:#?}", out.problems);
        assert!(
            found[0].found_in.contains("empty.p7b"),
            "{}",
            found[0].found_in
        );
    }
}

// ---------------------------------------------------------------------------------------
// Zip archives

#[test]
fn zip_with_pem_der_and_ca_bundle_entries() {
    let c = chain();
    let cross = c.root.cross_signed_by(&pki::root("Legacy Root"));
    let ca_bundle = format!(
        "{}{}{}",
        c.ca.pem,
        pki::pem_with("CERTIFICATE", &cross, 64, "\n"),
        c.root.pem
    );
    let archive = deflated(&[
        ("SSLAssistant/", b""),
        (
            "SSLAssistant/SSLAssistant.exe",
            b"MZ\x90\x00 not a certificate",
        ),
        ("star_example_com.crt", c.leaf.pem.as_bytes()),
        ("IntermediateCA.cer", &c.ca.der),
        ("star_example_com.ca-bundle", ca_bundle.as_bytes()),
        (
            "getting_started.txt",
            b"Install the certificate on your server.\r\n",
        ),
        ("seal.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ]);
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Your certificate files are attached.\r\n"),
            attachment("application/zip", "star_example_com.zip", &archive),
        ]),
    );
    let out = run(&message);
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![
            sha(&c.leaf.der),
            sha(&c.ca.der),
            sha(&cross),
            sha(&c.root.der)
        ],
        "the intermediate appears twice in the zip and is reported once"
    );
    assert!(
        out.certificates[0]
            .found_in
            .contains("zip entry 'star_example_com.crt'"),
        "{}",
        out.certificates[0].found_in
    );
    assert!(
        out.certificates[1]
            .found_in
            .contains("zip entry 'IntermediateCA.cer'")
    );
    assert!(out.certificates[2].found_in.contains(".ca-bundle"));
}

#[test]
fn broken_zip_is_a_problem() {
    let c = chain();
    let archive = deflated(&[("cert.crt", c.leaf.pem.as_bytes())]);
    let cut = &archive[..archive.len() / 2];
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Attached.\r\n"),
            attachment("application/zip", "cert.zip", cut),
        ]),
    );
    let out = run(&message);
    assert!(out.certificates.is_empty());
    assert!(
        !problems_mentioning(&out, "zip").is_empty(),
        "{:#?}",
        out.problems
    );
}

// ---------------------------------------------------------------------------------------
// Forwards, CSRs, keys, duplicates, links

#[test]
fn nested_message_rfc822_forward() {
    let c = chain();
    let original = mail(
        "Your RapidSSL certificate is ready",
        mixed(vec![
            text(&prose_around(&c.leaf.pem)),
            attachment("application/octet-stream", "IntermediateCA.cer", &c.ca.der),
        ]),
    );
    let forward = mail(
        "Fwd: Your RapidSSL certificate is ready",
        mixed(vec![
            text("FYI, see below.\r\n"),
            Part::Message(original.clone()),
        ]),
    );
    let forward_of_forward = mail(
        "Fwd: Fwd: Your RapidSSL certificate is ready",
        mixed(vec![text("Again.\r\n"), Part::Message(forward)]),
    );
    let out = run(&forward_of_forward);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
    assert_eq!(
        out.certificates[0].found_in.matches(" > ").count(),
        2,
        "{}",
        out.certificates[0].found_in
    );
    assert_eq!(
        out.subject.as_deref(),
        Some("Fwd: Fwd: Your RapidSSL certificate is ready")
    );
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);
}

#[test]
fn csr_quoted_in_the_mail_is_never_a_certificate() {
    let c = chain();
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = pki::csr_pem(&key, Some("www.example.com"), &["www.example.com"]);
    let csr_der = pki::csr_der(&key, Some("www.example.com"), &["www.example.com"]);
    let quoted: String = csr.lines().map(|l| format!("> {l}\r\n")).collect();
    let body = format!(
        "We've received a RapidSSL certificate request for www.example.com.\r\n\
         Order number: 1557047799\r\n\r\nYour CSR:\r\n{quoted}\r\n\
         {}\r\n\
         {}",
        csr.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
        // A CSR mislabelled CERTIFICATE: the DER says what it is.
        pki::pem_with("CERTIFICATE", &csr_der, 64, "\r\n"),
    );
    let message = mail(
        "RapidSSL order received",
        mixed(vec![
            text(&body),
            attachment("application/pkcs10", "request.csr", &csr_der),
        ]),
    );
    let out = run(&message);
    assert!(out.certificates.is_empty(), "{:#?}", out.certificates);
    assert_eq!(out.signing_requests.len(), 4, "{:#?}", out.signing_requests);
    assert!(
        out.signing_requests[0].contains("CERTIFICATE REQUEST"),
        "{}",
        out.signing_requests[0]
    );
    assert!(
        out.signing_requests[3].contains("request.csr"),
        "{}",
        out.signing_requests[3]
    );
    assert_no_problems(&out);

    // And next to a real certificate, only the certificate is one.
    let out = run(&text_mail(&format!("{quoted}\r\n{}", c.leaf.pem)));
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
    assert_eq!(out.signing_requests.len(), 1);
}

#[test]
fn private_key_pasted_in_a_mail_is_reported_never_kept() {
    let c = chain();
    let pkcs8_pem = c.leaf.key_pem();
    let sec1_der = sec1_of(&c.leaf.key);
    let sec1_pem = pki::pem_with("EC PRIVATE KEY", &sec1_der, 64, "\r\n");
    let body = format!(
        "Here is everything for the server:\r\n{pkcs8_pem}\r\n{sec1_pem}\r\n\
         -----BEGIN ENCRYPTED PRIVATE KEY-----\r\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQww\r\n\
         -----END ENCRYPTED PRIVATE KEY-----\r\n{}",
        c.leaf.pem
    );
    let message = mail(
        "server files",
        mixed(vec![
            text(&body),
            attachment(
                "application/octet-stream",
                "server.key",
                &c.leaf.key.serialize_der(),
            ),
        ]),
    );
    let out = run(&message);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der)],
        "only the certificate is a certificate"
    );
    assert_eq!(out.private_keys.len(), 4, "{:#?}", out.private_keys);
    assert!(out.private_keys[0].contains("PRIVATE KEY"));
    assert!(out.private_keys[3].contains("server.key"));
    // Nothing of the key itself is kept: not its base64, not its DER.
    let debug = format!("{out:?}");
    let key_b64 = pki::base64_encode(&c.leaf.key.serialize_der());
    assert!(
        !debug.contains(&key_b64[20..60]),
        "key material leaked into the extraction"
    );
    assert!(
        out.certificates
            .iter()
            .all(|cert| cert.der != c.leaf.key.serialize_der())
    );
}

/// SEC1 `EC PRIVATE KEY` DER of a P-256 rcgen key.
fn sec1_of(key: &rcgen::KeyPair) -> Vec<u8> {
    use p256::pkcs8::DecodePrivateKey;
    let secret = p256::SecretKey::from_pkcs8_der(&key.serialize_der()).expect("p256 key");
    secret.to_sec1_der().expect("sec1").to_vec()
}

#[test]
fn identical_certificate_twice_is_reported_once() {
    let c = chain();
    let archive = deflated(&[("cert.crt", c.leaf.pem.as_bytes())]);
    let message = mail(
        "Your certificate",
        mixed(vec![
            text(&format!("{}\r\nAgain:\r\n{}", c.leaf.pem, c.leaf.pem)),
            html(&format!("<pre>{}</pre>", c.leaf.pem)),
            attachment("application/octet-stream", "cert.cer", &c.leaf.der),
            attachment("application/zip", "cert.zip", &archive),
        ]),
    );
    let out = run(&message);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
    assert!(
        out.certificates[0].found_in.contains("PEM block 1"),
        "first place kept"
    );
}

#[test]
fn link_only_mail_gives_links_and_order_number() {
    let plain = "Your RapidSSL certificate is ready\r\n\r\n\
                 Order number: 1557047799\r\nWebsite URL: *.MOBMINDER.COM\r\n\r\n\
                 Get your certificate and installation instructions:\r\n\
                 https://getcert.rapidssl.com/process/trust/home?digest=3f2a9c&order=1557047799.\r\n\r\n\
                 Questions? https://www.rapidssl.com/support\r\n";
    let out = run(&text_mail(plain));
    assert_no_problems(&out);
    assert!(out.is_link_only());
    assert!(out.certificates.is_empty());
    assert_eq!(
        out.links,
        vec![
            "https://getcert.rapidssl.com/process/trust/home?digest=3f2a9c&order=1557047799"
                .to_string()
        ]
    );
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);

    // The same in HTML, where the link sits in an href with `&amp;`, and the visible text
    // repeats it: one link, decoded.
    let link = "https://getcert.rapidssl.com/process/trust/home?digest=3f2a9c&amp;order=1557047799";
    let body = format!(
        "<p>Order No.: 1557047799</p><p><a href=\"{link}\">{link}</a></p>\
         <p><a href='https://www.rapidssl.com/'>RapidSSL</a></p>"
    );
    let message = mail(
        "Your RapidSSL certificate is ready",
        Part::Multipart {
            subtype: "alternative",
            parts: vec![text(plain), html(&body)],
        },
    );
    let out = run(&message);
    assert!(out.is_link_only());
    assert_eq!(
        out.links,
        vec![
            "https://getcert.rapidssl.com/process/trust/home?digest=3f2a9c&order=1557047799"
                .to_string()
        ]
    );
    assert_eq!(out.order_numbers, vec!["1557047799".to_string()]);
}

#[test]
fn order_numbers_are_found_in_any_case_and_only_the_first_few_kept() {
    let numbers: String = (0..25)
        .map(|i| format!("ORDER NUMBER: {}\r\n", 1_557_047_700 + i))
        .collect();
    let out = run(&text_mail(&format!(
        "order #4242 and Order Id 4243\r\n{numbers}"
    )));
    // A mail is not an order list: a list of thousands once cost a quadratic search.
    assert_eq!(out.order_numbers.len(), 10, "{:?}", out.order_numbers);
    assert_eq!(out.order_numbers[..3], ["4242", "4243", "1557047700"]);
}

#[test]
fn pem_attachment_with_bytes_that_are_not_utf8_is_read() {
    let c = chain();
    // A bundle saved by a Latin-1 tool: "für" is not UTF-8.
    let mut file = b"Zertifikat f\xfcr www.example.com\n".to_vec();
    file.extend_from_slice(c.leaf.pem.as_bytes());
    let message = mail(
        "certificate",
        mixed(vec![attachment(
            "application/octet-stream",
            "www.example.com.crt",
            &file,
        )]),
    );
    let out = run(&message);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn mail_with_no_certificate_and_no_link() {
    let out = run(&text_mail(
        "Thank you for your order.\r\nWe will be in touch. See https://www.rapidssl.com/ for news.\r\n",
    ));
    assert_no_problems(&out);
    assert!(out.certificates.is_empty());
    assert!(out.links.is_empty(), "{:?}", out.links);
    assert!(!out.is_link_only());
    assert!(out.signing_requests.is_empty() && out.private_keys.is_empty());
}

// ---------------------------------------------------------------------------------------
// Broken input

#[test]
fn broken_mime_bad_base64_and_truncated_der_are_problems_not_panics() {
    let c = chain();
    // Truncated DER attachment.
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Attached.\r\n"),
            attachment(
                "application/octet-stream",
                "cert.cer",
                &c.leaf.der[..c.leaf.der.len() - 40],
            ),
        ]),
    );
    let out = run(&message);
    assert!(out.certificates.is_empty());
    let found = problems_mentioning(&out, "cert.cer");
    assert_eq!(found.len(), 1, "{:#?}", out.problems);

    // Bad base64 inside a PEM block (a line with a stray character and a wrong length).
    let mut broken = c.leaf.pem.clone();
    broken.insert(40, 'A');
    let out = run(&text_mail(&format!("{broken}{}", c.ca.pem)));
    assert_eq!(
        shas(&out),
        vec![sha(&c.ca.der)],
        "the good block is still read"
    );
    assert_eq!(
        problems_mentioning(&out, "PEM block 1").len(),
        1,
        "{:#?}",
        out.problems
    );

    // A transfer encoding that is not base64 at all.
    let message = mail(
        "Your certificate",
        mixed(vec![
            text("Attached.\r\n"),
            Part::Single {
                headers: "Content-Type: application/octet-stream; name=\"cert.cer\"\r\n\
                          Content-Transfer-Encoding: base64\r\n"
                    .into(),
                body: b"%%%% this is ~not~ base64 !!!\r\n".to_vec(),
            },
        ]),
    );
    let out = run(&message);
    assert!(out.certificates.is_empty());
    assert!(
        !out.problems.is_empty(),
        "a broken transfer encoding is reported"
    );

    // An unterminated multipart and a boundary that never comes.
    let mut message = mail(
        "Your certificate",
        mixed(vec![
            text(&c.leaf.pem),
            attachment("application/octet-stream", "x.cer", &c.ca.der),
        ]),
    );
    let cut = message.len() - 30;
    message.truncate(cut);
    let out = run(&message);
    assert_eq!(shas(&out)[0], sha(&c.leaf.der), "what is readable is read");

    // Bytes that are no mail at all, and garbage of every kind.
    for garbage in [
        &b""[..],
        b"\x00\x01\x02\x03",
        b"\xff\xfe\xfd",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"-----BEGIN CERTIFICATE-----",
        b"Subject: x\r\n\r\n-----BEGIN CERTIFICATE-----\r\n-----END CERTIFICATE-----\r\n",
        b"Subject: x\r\n\r\n-----BEGIN -----\r\n-----BEGIN CERTIFICATE",
    ] {
        let _ = extract(garbage, &Limits::default());
        let _ = extract_any(garbage, "x", &Limits::default());
    }
    let out = run(
        b"Subject: x\r\n\r\n-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n",
    );
    assert!(out.certificates.is_empty());
    assert_eq!(out.problems.len(), 1, "{:#?}", out.problems);
}

// ---------------------------------------------------------------------------------------
// Limits: one `limit_<field>_...` group per `Limits` field. Each proves the boundary (an
// input exactly at the limit is read in full, without a problem), that one step past it
// nothing beyond the limit is kept, and that the problem or error names the field.

/// The one problem reporting `field`, which its text must name.
fn the_limit_problem<'a>(out: &'a Extraction, field: &str) -> &'a Problem {
    let found: Vec<&Problem> = out
        .problems
        .iter()
        .filter(|p| p.what.contains(field))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one problem naming {field}: {:#?}",
        out.problems
    );
    found[0]
}

/// The names of the fields of `Limits`, from a pattern that names every field without `..`:
/// it fails to compile when `Limits` gains or loses a field, so the list cannot drift.
macro_rules! limit_fields {
    ($($field:ident),+ $(,)?) => {{
        let Limits { $($field: _),+ } = Limits::default();
        [$(stringify!($field)),+]
    }};
}

/// The `#[test]` functions of this file, by name, read from its own source.
fn test_functions_in_this_file() -> Vec<&'static str> {
    let source = include_str!("tests.rs");
    let mut names = Vec::new();
    let mut lines = source.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "#[test]" {
            continue;
        }
        // The function follows, maybe after more attributes or doc comments.
        let function = lines
            .by_ref()
            .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
            .expect("#[test] is followed by a function");
        let name = function
            .strip_prefix("fn ")
            .and_then(|rest| rest.split_once('('))
            .map(|(name, _)| name)
            .unwrap_or_else(|| panic!("#[test] followed by {function:?}, not a function"));
        names.push(name);
    }
    names
}

/// Every field of `Limits` has at least one `limit_<field>_...` test in this file. A new
/// field fails to compile in `limit_fields!` until it is listed there, and then fails here
/// at run time until a test for it exists.
#[test]
fn limit_every_field_has_a_test() {
    let fields = limit_fields!(
        max_message_size,
        max_mime_depth,
        max_parts,
        max_header_size,
        max_text_size,
        max_zip_entries,
        max_zip_entry_size,
        max_zip_total_size,
        max_zip_ratio,
        max_zip_depth,
        max_pem_blocks,
        max_certificates,
        max_line_length,
    );
    let tests = test_functions_in_this_file();
    // The reader must see this very test, or it sees nothing at all.
    assert!(
        tests.contains(&"limit_every_field_has_a_test"),
        "the #[test] reader missed this test: {tests:?}"
    );
    let untested: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|field| {
            let prefix = format!("limit_{field}_");
            !tests.iter().any(|test| test.starts_with(&prefix))
        })
        .collect();
    assert!(
        untested.is_empty(),
        "Limits fields without a `limit_<field>_...` test: {untested:?}"
    );
}

#[test]
fn limit_max_message_size_refuses_the_message_one_byte_over() {
    let c = chain();
    let message = text_mail(&c.leaf.pem);
    let limits = Limits {
        max_message_size: message.len() - 1,
        ..Limits::default()
    };
    let refused = extract(&message, &limits);
    assert_eq!(
        refused,
        Err(ExtractError::TooLarge {
            size: message.len(),
            limit: message.len() - 1
        })
    );
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("max_message_size"), "{error}");
    for refused in [
        extract_file(&message, "x", &limits),
        extract_any(&message, "x", &limits),
    ] {
        let error = refused.expect_err("over the limit").to_string();
        assert!(error.contains("max_message_size"), "{error}");
    }
    // A bare DER file is held to the same limit.
    let limits = Limits {
        max_message_size: c.leaf.der.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        extract_any(&c.leaf.der, "x", &limits),
        Err(ExtractError::TooLarge { .. })
    ));

    // Exactly at the limit the message is read.
    let limits = Limits {
        max_message_size: message.len(),
        ..Limits::default()
    };
    let out = extract(&message, &limits).expect("at the limit");
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
    let limits = Limits {
        max_message_size: c.leaf.der.len(),
        ..Limits::default()
    };
    let out = extract_any(&c.leaf.der, "x", &limits).expect("at the limit");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

/// A mail whose body is `levels` multiparts nested in each other, the certificate in the
/// innermost one. The top multipart is level 1.
fn nested_multiparts(levels: usize, pem: &str) -> Vec<u8> {
    let mut body = text(pem);
    for _ in 0..levels {
        body = mixed(vec![body]);
    }
    mail("deep", body)
}

#[test]
fn limit_max_mime_depth_nested_multiparts_boundary() {
    let c = chain();
    let limits = Limits {
        max_mime_depth: 3,
        ..Limits::default()
    };
    let out = run_with(&nested_multiparts(3, &c.leaf.pem), &limits);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let out = run_with(&nested_multiparts(4, &c.leaf.pem), &limits);
    assert!(
        out.certificates.is_empty(),
        "the certificate is below the limit"
    );
    let problem = the_limit_problem(&out, "max_mime_depth");
    assert!(problem.what.contains("more than 3"), "{}", problem.what);
}

/// `levels` forwards, each a message/rfc822 holding the next, the certificate innermost.
fn nested_forwards(levels: usize, pem: &str) -> Vec<u8> {
    let mut inner = format!(
        "From: a@example.com\r\nSubject: original\r\nContent-Type: text/plain\r\n\r\n{pem}"
    )
    .into_bytes();
    for _ in 0..levels {
        let mut wrapped =
            b"From: a@example.com\r\nSubject: Fwd\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        wrapped.extend_from_slice(&inner);
        inner = wrapped;
    }
    inner
}

#[test]
fn limit_max_mime_depth_nested_forwards_boundary() {
    let c = chain();
    let limits = Limits {
        max_mime_depth: 3,
        ..Limits::default()
    };
    let out = run_with(&nested_forwards(3, &c.leaf.pem), &limits);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let out = run_with(&nested_forwards(4, &c.leaf.pem), &limits);
    assert!(out.certificates.is_empty());
    let problem = the_limit_problem(&out, "max_mime_depth");
    assert!(problem.what.contains("more than 3"), "{}", problem.what);
}

#[test]
fn limit_max_mime_depth_ten_thousand_nested_multiparts() {
    let c = chain();
    let depth = 10_000;
    let mut message = b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n".to_vec();
    for i in 0..depth {
        message.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"=_{i:05}_=\"\r\n\r\n--=_{i:05}_=\r\n"
            )
            .as_bytes(),
        );
    }
    message.extend_from_slice(format!("Content-Type: text/plain\r\n\r\n{}", c.leaf.pem).as_bytes());
    for i in (0..depth).rev() {
        message.extend_from_slice(format!("\r\n--=_{i:05}_=--\r\n").as_bytes());
    }
    let started = Instant::now();
    let out = run(&message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        out.certificates.is_empty(),
        "the certificate is below the depth limit"
    );
    the_limit_problem(&out, "max_mime_depth");

    // Exactly at the limit the same structure is read.
    let limits = Limits {
        max_mime_depth: depth,
        max_parts: 2 * depth,
        max_header_size: message.len(),
        ..Limits::default()
    };
    let out = run_with(&message, &limits);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn limit_max_mime_depth_ten_thousand_nested_forwards() {
    let c = chain();
    let started = Instant::now();
    let out = run(&nested_forwards(10_000, &c.leaf.pem));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(out.certificates.is_empty());
    the_limit_problem(&out, "max_mime_depth");

    // The same forwards inside multiparts, as mail clients write them.
    let mut inner = text_mail(&c.leaf.pem);
    for _ in 0..2_000 {
        inner = mail("Fwd", mixed(vec![text("fwd\r\n"), Part::Message(inner)]));
    }
    let started = Instant::now();
    let out = run(&inner);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(out.certificates.is_empty());
    the_limit_problem(&out, "max_mime_depth");
}

#[test]
fn limit_max_parts_stops_the_walk_one_part_over() {
    let c = chain();
    // The multipart itself and 10 children, the certificate in the last: 11 parts.
    let mut parts: Vec<Part> = (0..9).map(|i| text(&format!("part {i}\r\n"))).collect();
    parts.push(text(&c.leaf.pem));
    let message = mail("many parts", mixed(parts));

    let at_limit = Limits {
        max_parts: 11,
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let over = Limits {
        max_parts: 10,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert!(
        out.certificates.is_empty(),
        "the part past the limit is not read"
    );
    let problem = the_limit_problem(&out, "max_parts");
    assert!(problem.what.contains("more than 10"), "{}", problem.what);
}

/// A multipart holding `first` in a text part, then `count` empty parts: "--b" CRLF CRLF
/// each, 7 bytes a part. 2.5 million of them made the parser build 562 MB before the walk
/// could stop at max_parts.
fn empty_parts(count: usize, first: &str) -> Vec<u8> {
    let mut message = format!(
        "From: a@example.com\r\nSubject: many parts\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\n{first}\r\n"
    )
    .into_bytes();
    for _ in 0..count {
        message.extend_from_slice(b"--b\r\n\r\n");
    }
    message
}

#[test]
fn limit_max_parts_cuts_the_message_before_the_parser_builds_its_tree() {
    let c = chain();
    let message = empty_parts(500_000, &c.leaf.pem);
    let started = Instant::now();
    let out = run(&message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "read up to the cut");
    let problem = the_limit_problem(&out, "max_parts");
    assert!(problem.what.contains("more than 1000"), "{}", problem.what);
}

#[test]
fn limit_max_parts_counts_the_parts_of_an_encoded_forward() {
    let c = chain();
    // The root, the multipart... the forward sent in base64 holds 20 parts of its own.
    let inner = mail(
        "Fwd",
        mixed((0..19).map(|i| text(&format!("{i}\r\n"))).collect()),
    );
    let message = mail(
        "forwarded",
        mixed(vec![
            text(&c.leaf.pem),
            base64_part("message/rfc822", &inner),
        ]),
    );
    // Root multipart, the text, the forward's part and its 20: 23 parts.
    let at_limit = Limits {
        max_parts: 23,
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);

    // One over, inside the forward: the parser never sees the forward at all, since it
    // would parse whatever part of it were left.
    let over = Limits {
        max_parts: 22,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "read up to the forward");
    let problem = the_limit_problem(&out, "max_parts");
    assert!(problem.what.contains("more than 22"), "{}", problem.what);
}

/// Parts and header bytes in the parser's tree, forwards included.
fn tree_counts(message: &mail_parser::Message<'_>) -> (usize, usize) {
    let (mut parts, mut header_bytes) = (0, 0);
    let mut pending = vec![message];
    while let Some(message) = pending.pop() {
        for part in &message.parts {
            parts += 1;
            header_bytes += (part.offset_body - part.offset_header) as usize;
            if let mail_parser::PartType::Message(inner) = &part.body {
                pending.push(inner);
            }
        }
    }
    (parts, header_bytes)
}

/// The cut is only as good as the walk's copy of the parser's steps: on every message at
/// hand, both must see the same parts and header sections.
#[test]
fn shape_counts_what_the_parser_builds() {
    let c = chain();
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = repo.join("tests/data/third-party/mail-parser");
    for dir in [
        repo.join("samples"),
        corpus.join("malformed"),
        corpus.join("rfc"),
        corpus.join("thirdparty"),
    ] {
        // Every folder is in the repository: a missing one fails, it is not skipped.
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable").path();
            if path.extension().is_some_and(|e| e == "eml") {
                let bytes = std::fs::read(&path).expect("readable");
                messages.push((path.display().to_string(), bytes));
            }
        }
    }
    // The 17 samples and mail-parser's 53 messages, all read.
    assert!(
        messages.len() >= 70,
        "only {} messages read",
        messages.len()
    );
    let inner = mail("Fwd", mixed(vec![text("a\r\n"), text(&c.leaf.pem)]));
    let qp_inner = String::from_utf8(inner.clone()).unwrap();
    let mut encoded_thrice = inner.clone();
    for _ in 0..4 {
        encoded_thrice = mail(
            "Fwd",
            mixed(vec![
                text("x\r\n"),
                base64_part("message/rfc822", &encoded_thrice),
            ]),
        );
    }
    let odd: Vec<(&str, Vec<u8>)> = vec![
        ("nested multiparts", nested_multiparts(30, &c.leaf.pem)),
        ("nested forwards", nested_forwards(30, &c.leaf.pem)),
        ("empty parts", empty_parts(50, "x")),
        (
            "base64 forward",
            mail("f", mixed(vec![base64_part("message/rfc822", &inner)])),
        ),
        (
            "quoted-printable forward",
            mail(
                "f",
                mixed(vec![quoted_printable(
                    "message/rfc822",
                    &qp_encode(&qp_inner, 76),
                )]),
            ),
        ),
        ("forwards encoded four deep", encoded_thrice),
        (
            "forward as sent, multipart inside",
            mail("f", mixed(vec![text("a"), Part::Message(inner.clone())])),
        ),
        (
            "forward at the root",
            [
                &b"Subject: f\r\nContent-Type: message/rfc822\r\n\r\n"[..],
                &inner,
            ]
            .concat(),
        ),
        (
            "digest",
            b"Subject: d\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n\
              Subject: one\r\n\r\nbody\r\n--d\r\n\r\nSubject: two\r\n\r\nbody\r\n--d--\r\n"
                .to_vec(),
        ),
        (
            "bad base64, unclosed boundary",
            b"Subject: b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
              Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\
              !!!not base64!!!\r\n--b\r\nContent-Type: text/plain\r\n\r\nno end"
                .to_vec(),
        ),
        (
            "delimiters inside lines",
            b"Subject: m\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nx--b\r\n\r\none--b\
              \r\n\r\ntwo--b\r\n\r\n--b--"
                .to_vec(),
        ),
        (
            "boundary never seen",
            b"Subject: n\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\ntext\r\n".to_vec(),
        ),
        (
            "no boundary parameter",
            b"Subject: n\r\nContent-Type: multipart/mixed\r\n\r\n--b\r\n\r\ntext\r\n".to_vec(),
        ),
        (
            "headers only",
            b"Subject: h\r\nFrom: a@example.com\r\nX-No-Body: yes".to_vec(),
        ),
        (
            "forward cut in its headers",
            b"Subject: f\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
              Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x"
                .to_vec(),
        ),
    ];
    messages.extend(
        odd.into_iter()
            .map(|(name, bytes)| (name.to_string(), bytes)),
    );
    let parser = mail_parser::MessageParser::default();
    let mut compared = 0;
    for (name, bytes) in &messages {
        let walked = shape::count(bytes, &parser);
        let built = parser
            .parse(bytes)
            .map(|m| tree_counts(&m))
            .unwrap_or((0, 0));
        if name.ends_with("thirdparty/015.eml") {
            // Forwards whose header sections run on into the next part's: the parser builds
            // a part, then drops it with the forward that held it. The walk counts what
            // was built, which is what the memory was spent on.
            assert!(
                walked.0 > built.0 && walked.1 > built.1,
                "{name}: walked {walked:?}, built {built:?}"
            );
        } else {
            assert_eq!(walked, built, "{name}: (parts, header bytes)");
        }
        compared += 1;
    }
    assert!(compared >= 30, "compared {compared} messages");
}

#[test]
fn limit_max_header_size_boundary() {
    let c = chain();
    let root = "From: a@example.com\r\nSubject: headers\r\n\
                Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n";
    let section = "Content-Type: text/plain\r\n\r\n";
    let message = format!(
        "{root}--b\r\n{section}hello\r\n--b\r\n{section}{}\r\n--b--\r\n",
        c.leaf.pem
    );
    let header_bytes = root.len() + 2 * section.len();

    let at_limit = Limits {
        max_header_size: header_bytes,
        ..Limits::default()
    };
    let out = run_with(message.as_bytes(), &at_limit);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    // One byte over, in the last part's header section: that part is not read.
    let over = Limits {
        max_header_size: header_bytes - 1,
        ..Limits::default()
    };
    let out = run_with(message.as_bytes(), &over);
    assert!(
        out.certificates.is_empty(),
        "the part past the limit is not read"
    );
    let problem = the_limit_problem(&out, "max_header_size");
    assert!(
        problem
            .what
            .contains(&format!("more than {}", header_bytes - 1)),
        "{}",
        problem.what
    );
}

#[test]
fn limit_max_header_size_millions_of_header_lines() {
    // 20 MB of "X-a: b" lines made the parser build 320 MB of headers.
    let mut message = b"From: a@example.com\r\nSubject: flood\r\n".to_vec();
    for _ in 0..1_000_000 {
        message.extend_from_slice(b"X-a: b\r\n");
    }
    message.extend_from_slice(b"\r\nbody\r\n");
    let started = Instant::now();
    let out = run(&message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // The cut keeps the headers before the budget ran out.
    assert_eq!(out.subject.as_deref(), Some("flood"));
    assert_eq!(out.from.as_deref(), Some("a@example.com"));
    the_limit_problem(&out, "max_header_size");
}

#[test]
fn limit_max_text_size_boundary() {
    let c = chain();
    let message = mail(
        "text",
        mixed(vec![
            text("hello"),
            attachment("application/pkix-cert", "cert.cer", &c.leaf.der),
        ]),
    );
    // The one text part holds "hello"; the attachment is not text.
    let at_limit = Limits {
        max_text_size: 5,
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let over = Limits {
        max_text_size: 4,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert!(
        out.certificates.is_empty(),
        "the part past the limit is not read"
    );
    let problem = the_limit_problem(&out, "max_text_size");
    assert!(problem.what.contains("more than 4"), "{}", problem.what);
}

#[test]
fn limit_max_text_size_counts_encoded_forwards_and_cuts_them_whole() {
    let c = chain();
    let inner = text_mail(&c.leaf.pem);
    let encoded = pki::base64_mime(&inner);
    let message = mail(
        "forwarded",
        mixed(vec![base64_part("message/rfc822", &inner)]),
    );
    // The forward as sent, and the text part inside it once decoded.
    let text_bytes = encoded.len() + c.leaf.pem.len();
    let at_limit = Limits {
        max_text_size: text_bytes,
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let over = Limits {
        max_text_size: text_bytes - 1,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert!(out.certificates.is_empty(), "the forward is not read");
    the_limit_problem(&out, "max_text_size");
}

#[test]
fn limit_max_text_size_cuts_a_forward_that_is_the_whole_message_after_its_headers() {
    let c = chain();
    let mut message = b"From: a@example.com\r\nSubject: forwarded\r\n\
        Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    message.extend_from_slice(pki::base64_mime(&text_mail(&c.leaf.pem)).as_bytes());
    let limits = Limits {
        max_text_size: 100,
        ..Limits::default()
    };
    let out = run_with(&message, &limits);
    assert!(out.certificates.is_empty());
    // Still a message, with its headers: cut before the whole of it, it would be none.
    assert_eq!(out.subject.as_deref(), Some("forwarded"));
    the_limit_problem(&out, "max_text_size");
}

#[test]
fn limit_max_zip_entries_refuses_the_archive_one_entry_over() {
    let c = chain();
    let names: Vec<String> = (0..5).map(|i| format!("file{i}.txt")).collect();
    let mut entries: Vec<(&str, &[u8])> =
        names.iter().map(|n| (n.as_str(), &b"hello"[..])).collect();
    entries.push(("cert.crt", c.leaf.pem.as_bytes()));
    let archive = deflated(&entries);

    let at_limit = Limits {
        max_zip_entries: 6,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &at_limit).expect("extract");
    assert_no_problems(&out);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)], "at the limit");

    let over = Limits {
        max_zip_entries: 5,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &over).expect("extract");
    assert!(out.certificates.is_empty(), "the archive is not opened");
    let problem = the_limit_problem(&out, "max_zip_entries");
    assert!(problem.what.contains("6 entries"), "{}", problem.what);
}

#[test]
fn limit_max_zip_entry_size_refuses_the_entry_one_byte_over() {
    let c = chain();
    // The certificate padded well past the size of the entry after it.
    let padded = format!("{}{}", c.leaf.pem, "\n".repeat(2000));
    let size = padded.len() as u64;
    let archive = zip_of(
        &[("padded.crt", padded.as_bytes()), ("ca.der", &c.ca.der)],
        ::zip::CompressionMethod::Stored,
    );

    let at_limit = Limits {
        max_zip_entry_size: size,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &at_limit).expect("extract");
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der)],
        "at the limit"
    );

    let over = Limits {
        max_zip_entry_size: size - 1,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &over).expect("extract");
    assert_eq!(
        shas(&out),
        vec![sha(&c.ca.der)],
        "only the oversized entry is refused; later entries are still read"
    );
    let problem = the_limit_problem(&out, "max_zip_entry_size");
    assert!(
        problem.found_in.contains("padded.crt"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_zip_total_size_stops_one_byte_over() {
    let c = chain();
    let entries: [(&str, &[u8]); 3] = [
        ("leaf.crt", c.leaf.pem.as_bytes()),
        ("ca.der", &c.ca.der),
        ("root.crt", c.root.pem.as_bytes()),
    ];
    let total: u64 = entries.iter().map(|(_, b)| b.len() as u64).sum();
    let archive = zip_of(&entries, ::zip::CompressionMethod::Stored);

    let at_limit = Limits {
        max_zip_total_size: total,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &at_limit).expect("extract");
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der), sha(&c.root.der)],
        "at the limit"
    );

    let over = Limits {
        max_zip_total_size: total - 1,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &over).expect("extract");
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der)],
        "the entry that crosses the total is not kept"
    );
    let problem = the_limit_problem(&out, "max_zip_total_size");
    assert!(
        problem.found_in.contains("root.crt"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_zip_total_size_stops_later_entries() {
    let c = chain();
    let filler = vec![b'y'; 3000];
    let archive = zip_of(
        &[
            ("a.txt", &filler),
            ("b.txt", &filler),
            ("cert.der", &c.leaf.der),
        ],
        ::zip::CompressionMethod::Stored,
    );
    let limits = Limits {
        max_zip_total_size: 5000,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &limits).expect("extract");
    assert!(
        out.certificates.is_empty(),
        "entries past the total are not read"
    );
    the_limit_problem(&out, "max_zip_total_size");
}

#[test]
fn limit_max_zip_total_size_counts_refused_zip_bombs() {
    // Forty 1 MiB bombs of about 1 KiB each: each is refused by its ratio after about
    // 100 KiB are unpacked (never the whole MiB), and those bytes are the cost, so they
    // count against max_zip_total_size: the reading stops after some 20 bombs.
    let c = chain();
    let bomb = vec![0u8; 1024 * 1024];
    let names: Vec<String> = (0..40).map(|i| format!("bomb{i}.bin")).collect();
    let mut entries: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), bomb.as_slice()))
        .collect();
    entries.push(("cert.crt", c.leaf.pem.as_bytes()));
    let archive = deflated(&entries);
    let limits = Limits {
        max_zip_total_size: 2 * 1024 * 1024,
        ..Limits::default()
    };
    let out = extract_file(&archive, "bombs.zip", &limits).expect("extract");
    let refused = problems_mentioning(&out, "max_zip_ratio").len();
    assert!(
        (10..=21).contains(&refused),
        "{refused} bombs unpacked: {:#?}",
        out.problems
    );
    the_limit_problem(&out, "max_zip_total_size");
}

#[test]
fn limit_max_zip_total_size_is_shared_by_nested_zips() {
    // Incompressible bytes, so only the total can stop them.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let c = chain();
    let inner = zip_of(
        &[
            ("a.bin", &noise),
            ("b.bin", &noise),
            ("c.bin", &noise),
            ("cert.crt", c.leaf.pem.as_bytes()),
        ],
        ::zip::CompressionMethod::Stored,
    );
    let outer = zip_of(&[("inner.zip", &inner)], ::zip::CompressionMethod::Stored);
    let limits = Limits {
        max_zip_total_size: 5 * 1024 * 1024,
        ..Limits::default()
    };
    let out = extract_file(&outer, "outer.zip", &limits).expect("extract");
    assert!(
        out.certificates.is_empty(),
        "the inner archive ran out of the shared total"
    );
    let problem = the_limit_problem(&out, "max_zip_total_size");
    assert!(
        problem.found_in.contains("inner.zip"),
        "{}",
        problem.found_in
    );
    // With room for both, everything is read.
    let out = extract_file(&outer, "outer.zip", &Limits::default()).expect("extract");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn limit_max_zip_ratio_boundary() {
    let c = chain();
    // A certificate followed by 300 000 newlines deflates some 250:1.
    let padded = format!("{}{}", c.leaf.pem, "\n".repeat(300_000));
    let archive = deflated(&[("padded.crt", padded.as_bytes()), ("ca.der", &c.ca.der)]);
    let compressed = ::zip::ZipArchive::new(Cursor::new(&archive))
        .expect("zip")
        .by_index(0)
        .expect("entry")
        .compressed_size();
    let size = padded.len() as u64;
    let ratio = size.div_ceil(compressed);
    assert!(
        compressed * (ratio - 1) > 64 * 1024,
        "judged by its ratio, not spared as a small entry"
    );

    let at_limit = Limits {
        max_zip_ratio: ratio,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &at_limit).expect("extract");
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der)],
        "at the limit"
    );

    let over = Limits {
        max_zip_ratio: ratio - 1,
        ..Limits::default()
    };
    let out = extract_file(&archive, "cert.zip", &over).expect("extract");
    assert_eq!(
        shas(&out),
        vec![sha(&c.ca.der)],
        "only the entry over the ratio is refused"
    );
    let problem = the_limit_problem(&out, "max_zip_ratio");
    assert!(
        problem.found_in.contains("padded.crt"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_zip_ratio_refuses_a_bomb() {
    let c = chain();
    let bomb = vec![0u8; 2 * 1024 * 1024];
    let archive = deflated(&[("zeros.bin", &bomb), ("cert.crt", c.leaf.pem.as_bytes())]);
    let out = extract_file(&archive, "cert.zip", &Limits::default()).expect("extract");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
    let problem = the_limit_problem(&out, "max_zip_ratio");
    assert!(
        problem.found_in.contains("zeros.bin"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_zip_depth_one_level_is_read_two_levels_are_refused() {
    let c = chain();
    let innermost = deflated(&[("root.crt", c.root.pem.as_bytes())]);
    let inner = deflated(&[
        ("IntermediateCA.crt", c.ca.pem.as_bytes()),
        ("more.zip", &innermost),
    ]);
    let outer = deflated(&[
        ("ssl_certificate.crt", &c.leaf.der),
        ("PKCS7/bundle.zip", &inner),
    ]);
    // The default, 1: the zip inside the attached zip is read, the one below is not.
    assert_eq!(Limits::default().max_zip_depth, 1);
    let out = extract_file(&outer, "cert.zip", &Limits::default()).expect("extract");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
    let problem = the_limit_problem(&out, "max_zip_depth");
    assert!(
        problem.found_in.contains("more.zip"),
        "{}",
        problem.found_in
    );

    // One level deeper allowed: everything is read.
    let limits = Limits {
        max_zip_depth: 2,
        ..Limits::default()
    };
    let out = extract_file(&outer, "cert.zip", &limits).expect("extract");
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der), sha(&c.root.der)]
    );

    // With max_zip_depth 0 only the attached zip itself is opened.
    let limits = Limits {
        max_zip_depth: 0,
        ..Limits::default()
    };
    let out = extract_file(&outer, "cert.zip", &limits).expect("extract");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
    let problem = the_limit_problem(&out, "max_zip_depth");
    assert!(
        problem.found_in.contains("bundle.zip"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_pem_blocks_counts_over_the_whole_message() {
    let c = chain();
    let leaves: Vec<Leaf> = (0..3)
        .map(|i| pki::leaf(&LeafSpec::new(&[&format!("host{i}.example.com")]), &c.ca))
        .collect();
    let body: String = leaves
        .iter()
        .map(|l| l.pem.clone())
        .collect::<Vec<_>>()
        .join("\r\n");
    // Five blocks spread over three parts: they count together.
    let message = mail(
        "many blocks",
        mixed(vec![text(&body), text(&c.ca.pem), text(&c.root.pem)]),
    );

    let at_limit = Limits {
        max_pem_blocks: 5,
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(out.certificates.len(), 5, "at the limit");

    let over = Limits {
        max_pem_blocks: 4,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert_eq!(
        shas(&out),
        vec![
            sha(&leaves[0].der),
            sha(&leaves[1].der),
            sha(&leaves[2].der),
            sha(&c.ca.der)
        ],
        "the block past the limit is not read"
    );
    let problem = the_limit_problem(&out, "max_pem_blocks");
    assert!(problem.what.contains("more than 4"), "{}", problem.what);

    // Reported once, where it was hit, however many blocks follow.
    let limits = Limits {
        max_pem_blocks: 2,
        ..Limits::default()
    };
    let out = run_with(&message, &limits);
    assert_eq!(shas(&out), vec![sha(&leaves[0].der), sha(&leaves[1].der)]);
    the_limit_problem(&out, "max_pem_blocks");
}

#[test]
fn limit_max_certificates_boundary() {
    let c = chain();
    let leaves: Vec<Leaf> = (0..5)
        .map(|i| pki::leaf(&LeafSpec::new(&[&format!("host{i}.example.com")]), &c.ca))
        .collect();
    let ders: Vec<&[u8]> = leaves.iter().map(|l| l.der.as_slice()).collect();
    let bundle = pki::pkcs7(Some(&ders));

    let at_limit = Limits {
        max_certificates: 5,
        ..Limits::default()
    };
    let out = extract_file(&bundle, "many.p7b", &at_limit).expect("extract");
    assert_no_problems(&out);
    assert_eq!(out.certificates.len(), 5, "at the limit");

    let over = Limits {
        max_certificates: 4,
        ..Limits::default()
    };
    let out = extract_file(&bundle, "many.p7b", &over).expect("extract");
    let kept: Vec<String> = leaves[..4].iter().map(|l| sha(&l.der)).collect();
    assert_eq!(
        shas(&out),
        kept,
        "the certificate past the limit is not kept"
    );
    let problem = the_limit_problem(&out, "max_certificates");
    assert!(
        problem.found_in.contains("bundle certificate 5"),
        "{}",
        problem.found_in
    );

    // Across the parts of a mail, and a duplicate does not count.
    let message = mail(
        "chain",
        mixed(vec![
            text(&format!("{}{}", c.leaf.pem, c.leaf.pem)),
            text(&c.ca.pem),
            attachment("application/octet-stream", "root.cer", &c.root.der),
        ]),
    );
    let limits = Limits {
        max_certificates: 3,
        ..Limits::default()
    };
    let out = run_with(&message, &limits);
    assert_no_problems(&out);
    assert_eq!(out.certificates.len(), 3);
    let limits = Limits {
        max_certificates: 2,
        ..Limits::default()
    };
    let out = run_with(&message, &limits);
    assert_eq!(shas(&out), vec![sha(&c.leaf.der), sha(&c.ca.der)]);
    let problem = the_limit_problem(&out, "max_certificates");
    assert!(
        problem.found_in.contains("root.cer"),
        "{}",
        problem.found_in
    );
}

#[test]
fn limit_max_line_length_boundary() {
    let c = chain();
    let base64 = pki::base64_encode(&c.leaf.der);
    let one_line =
        format!("-----BEGIN CERTIFICATE-----\r\n{base64}\r\n-----END CERTIFICATE-----\r\n");
    let message = text_mail(&format!("{one_line}{}", c.ca.pem));

    let at_limit = Limits {
        max_line_length: base64.len(),
        ..Limits::default()
    };
    let out = run_with(&message, &at_limit);
    assert_no_problems(&out);
    assert_eq!(
        shas(&out),
        vec![sha(&c.leaf.der), sha(&c.ca.der)],
        "at the limit"
    );

    let over = Limits {
        max_line_length: base64.len() - 1,
        ..Limits::default()
    };
    let out = run_with(&message, &over);
    assert_eq!(
        shas(&out),
        vec![sha(&c.ca.der)],
        "the block with the long line is cut; the next block is still read"
    );
    let problem = the_limit_problem(&out, "max_line_length");
    assert!(
        problem
            .what
            .contains(&format!("{} characters", base64.len())),
        "{}",
        problem.what
    );
    // The default reads a certificate on one line.
    assert_eq!(shas(&run(&text_mail(&one_line))), vec![sha(&c.leaf.der)]);
}

// ---------------------------------------------------------------------------------------
// Files given to `fulfill import`

#[test]
fn extract_any_tells_files_from_mails() {
    let c = chain();
    let limits = Limits::default();
    let pem = format!("{}{}", c.leaf.pem, c.ca.pem);
    let zip = deflated(&[("a.crt", c.leaf.pem.as_bytes())]);
    let p7b = pki::pkcs7(Some(&[&c.leaf.der]));
    let mail_bytes = text_mail(&c.leaf.pem);
    for (name, bytes, count) in [
        ("bundle.pem", pem.as_bytes(), 2),
        ("cert.der", c.leaf.der.as_slice(), 1),
        ("cert.zip", zip.as_slice(), 1),
        ("cert.p7b", p7b.as_slice(), 1),
        ("mail.eml", mail_bytes.as_slice(), 1),
    ] {
        let out = extract_any(bytes, name, &limits).expect("extract");
        assert_eq!(out.certificates.len(), count, "{name}: {:#?}", out.problems);
        assert_eq!(out.certificates[0].sha256, sha(&c.leaf.der), "{name}");
    }
    // Bare base64 without BEGIN/END lines, as some download pages save it.
    let bare = pki::base64_mime(&c.leaf.der);
    let out = extract_file(bare.as_bytes(), "cert.b64", &limits).expect("extract");
    assert_eq!(shas(&out), vec![sha(&c.leaf.der)]);
}

#[test]
fn classify_der_kinds() {
    let c = chain();
    assert_eq!(
        classify_der(&c.leaf.der),
        DerKind::Certificate(c.leaf.der.clone())
    );
    let key = rcgen::KeyPair::generate().expect("key");
    assert_eq!(
        classify_der(&pki::csr_der(&key, Some("a.example"), &[])),
        DerKind::SigningRequest
    );
    assert_eq!(classify_der(&key.serialize_der()), DerKind::PrivateKey);
    assert!(matches!(
        classify_der(b"\x30\x03\x02\x01\x01"),
        DerKind::Unreadable(_)
    ));
    assert!(matches!(classify_der(b""), DerKind::Unreadable(_)));
}

//! Fulfillment mails in every form the extractor reads (the shapes of `samples/`, see
//! samples/README.md), made here around a certificate of the test PKI so a test knows the
//! certificate it must find: inline PEM, HTML, quoted-printable, DER attachments, p7b in
//! DER and in PEM, zips of PEM and of DER files, a forwarded message/rfc822, and DER in
//! `application/octet-stream` parts without a file name. Each can carry a 300 KB PDF beside
//! the certificate, as a shared mailbox's invoices do.
//!
//! Used by tests/mailbox_shapes.rs (each shape delivered through IMAP) and by
//! benches/mailbox.rs (its certificate mails); the bench includes this file by `#[path]`,
//! so it uses nothing of `support` but the test PKI.

use std::io::Write as _;
use std::path::Path;

use fulfill_test_pki as pki;
use sha2::{Digest, Sha256};

/// The size of the PDF a mail can carry: an invoice or a report, as in issue 14's mailbox.
pub const PDF_SIZE: usize = 300 * 1024;

/// Every form a certificate arrives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `text/plain` 7bit, leaf and intermediate PEM in the prose (sample 01).
    InlinePem,
    /// `multipart/alternative`; the HTML part holds the PEM with `<br>` at each line end
    /// (sample 02).
    Html,
    /// `text/plain` quoted-printable, PEM lines longer than 76 so soft breaks fall inside
    /// them, and `=` written `=3D` (sample 03).
    QuotedPrintable,
    /// The leaf as DER in `application/pkix-cert` `certificate.cer`, the intermediate
    /// beside it (sample 04).
    Der,
    /// A DER PKCS#7 bundle, `application/x-pkcs7-certificates` `.p7b` (sample 05).
    P7bDer,
    /// The same bundle as `-----BEGIN PKCS7-----` in a `text/plain` `.p7b` attachment
    /// (sample 06).
    P7bPem,
    /// Sectigo: `application/zip` with the leaf `.crt` and a `.ca-bundle`, both PEM (sample 07).
    ZipPem,
    /// RapidSSL: `application/zip` with the leaf as DER `.cer` and the intermediate PEM
    /// (sample 08).
    ZipDer,
    /// A colleague's note with the CA's mail (inline PEM) as a `message/rfc822` part
    /// (sample 09).
    Forwarded,
    /// Leaf and intermediate as DER, each in an `application/octet-stream` part with
    /// neither a name nor a Content-Disposition.
    NamelessOctetStream,
}

impl Shape {
    pub const ALL: [Shape; 10] = [
        Shape::InlinePem,
        Shape::Html,
        Shape::QuotedPrintable,
        Shape::Der,
        Shape::P7bDer,
        Shape::P7bPem,
        Shape::ZipPem,
        Shape::ZipDer,
        Shape::Forwarded,
        Shape::NamelessOctetStream,
    ];
}

/// A test root and the issuing CA under it; the root is the trust anchor.
pub struct Pki {
    pub root: pki::Ca,
    pub issuing: pki::Ca,
}

impl Pki {
    pub fn new() -> Pki {
        let root = pki::root("Shapes Test Root");
        let issuing = pki::intermediate("Shapes Test Issuing CA", &root);
        Pki { root, issuing }
    }

    /// A certificate for `name` (and no other name), valid 2025–2034.
    pub fn issue(&self, name: &str) -> Issued {
        let spec = pki::LeafSpec::new(&[name]).valid(pki::ymd(2025, 1, 1), pki::ymd(2034, 1, 1));
        let leaf = pki::leaf(&spec, &self.issuing);
        Issued {
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(&leaf.der)),
            leaf,
        }
    }

    /// The mail of `shape` that delivers `issued` with its chain; with `pdf` (from
    /// [`pdf_base64`]), a PDF attachment right after the text, before the certificate.
    pub fn mail(&self, shape: Shape, issued: &Issued, pdf: Option<&str>) -> Vec<u8> {
        let mut parts = self.parts(shape, issued);
        if let Some(pdf) = pdf {
            parts.insert(1, pdf_part(pdf));
        }
        let body = match <[String; 1]>::try_from(parts) {
            Ok([single]) => single,
            Err(parts) => multipart("mixed", &parts),
        };
        let subject = format!("Your certificate for {}", issued.name);
        format!("{}{body}", headers(&subject, &issued.name)).into_bytes()
    }

    /// The MIME entities of a shape, the text first.
    fn parts(&self, shape: Shape, issued: &Issued) -> Vec<String> {
        let leaf = &issued.leaf;
        let issuing = &self.issuing;
        let stem = issued.name.replace('.', "_");
        match shape {
            Shape::InlinePem => vec![text(&inline_body(issued, issuing))],
            Shape::Html => vec![multipart(
                "alternative",
                &[
                    text("This message contains HTML: view it in an HTML-capable client.\r\n"),
                    html(issued, issuing),
                ],
            )],
            Shape::QuotedPrintable => vec![quoted_printable(issued, issuing)],
            Shape::Der => vec![
                text(&note(issued, "attached as certificate.cer")),
                attachment("application/pkix-cert", Some("certificate.cer"), &leaf.der),
                attachment(
                    "application/pkix-cert",
                    Some("IntermediateCA.cer"),
                    &issuing.der,
                ),
            ],
            Shape::P7bDer => vec![
                text(&note(issued, "attached as a PKCS#7 bundle")),
                attachment(
                    "application/x-pkcs7-certificates",
                    Some("ssl_certificate.p7b"),
                    &self.p7b(leaf),
                ),
            ],
            Shape::P7bPem => vec![
                text(&note(issued, "attached as a PKCS#7 bundle")),
                entity(
                    &format!(
                        "Content-Type: text/plain; charset=us-ascii; name=\"{stem}.p7b\"\r\n\
                         Content-Transfer-Encoding: 7bit\r\n\
                         Content-Disposition: attachment; filename=\"{stem}.p7b\""
                    ),
                    &pki::pem_with("PKCS7", &self.p7b(leaf), 64, "\r\n"),
                ),
            ],
            Shape::ZipPem => vec![
                text(&note(issued, "in the attached zip")),
                zip_part(
                    &format!("{stem}.zip"),
                    &[
                        (&format!("{stem}.crt"), crlf(&leaf.pem).as_bytes()),
                        (&format!("{stem}.ca-bundle"), crlf(&issuing.pem).as_bytes()),
                        (
                            "Choosing the Right Files to Install.txt",
                            b"Install the .crt.\r\n",
                        ),
                    ],
                ),
            ],
            Shape::ZipDer => vec![
                text(&note(issued, "in the attached zip")),
                zip_part(
                    &format!("{stem}.zip"),
                    &[
                        ("ssl_certificate.cer", &leaf.der),
                        ("IntermediateCA.cer", crlf(&issuing.pem).as_bytes()),
                        ("getting_started.txt", b"Install both files.\r\n"),
                    ],
                ),
            ],
            Shape::Forwarded => vec![
                text("Hi,\r\n\r\nforwarding the CA's mail so it can be installed.\r\n\r\nPat\r\n"),
                forwarded(issued, issuing),
            ],
            Shape::NamelessOctetStream => vec![
                text(&note(issued, "attached")),
                attachment("application/octet-stream", None, &leaf.der),
                attachment("application/octet-stream", None, &issuing.der),
            ],
        }
    }

    /// A certs-only PKCS#7 bundle: root, leaf, intermediate (the order of sample 05).
    fn p7b(&self, leaf: &pki::Leaf) -> Vec<u8> {
        pki::pkcs7(Some(&[&self.root.der, &leaf.der, &self.issuing.der]))
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// A certificate made by [`Pki::issue`].
pub struct Issued {
    /// Its only DNS name and its common name.
    pub name: String,
    pub leaf: pki::Leaf,
    /// SHA-256 of the leaf's DER, lowercase hex: the fingerprint fulfill records.
    pub sha256: String,
}

impl Issued {
    /// Puts the certificate's key and CSR into `keys` (a `[keys] dirs` folder), as the
    /// administrator who ordered it would have.
    pub fn write_key(&self, keys: &Path) {
        let stem = keys.join(self.name.replace('*', "star"));
        std::fs::write(stem.with_extension("key"), self.leaf.key_pem()).expect("write the key");
        let csr = pki::csr_pem(&self.leaf.key, Some(&self.name), &[&self.name]);
        std::fs::write(stem.with_extension("csr"), csr).expect("write the CSR");
    }
}

/// [`PDF_SIZE`] random bytes behind a PDF header, base64 in 76-column lines: the body of a
/// PDF attachment. Random, so it compresses no better on the wire than a real PDF's streams.
pub fn pdf_base64() -> String {
    use rand::RngCore;
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let header = pdf.len();
    pdf.resize(PDF_SIZE, 0);
    rand::thread_rng().fill_bytes(&mut pdf[header..]);
    pki::base64_mime(&pdf)
}

/// An `application/pdf` attachment whose body is `base64` (from [`pdf_base64`]).
pub fn pdf_part(base64: &str) -> String {
    entity(
        "Content-Type: application/pdf; name=\"invoice-2026-11.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"invoice-2026-11.pdf\"",
        base64,
    )
}

/// The top headers of a CA's mail, down to MIME-Version (the body's own headers follow).
pub fn headers(subject: &str, id: &str) -> String {
    format!(
        "From: \"Test CA Orders\" <orders@ca.example>\r\nTo: certs@example.com\r\n\
         Subject: {subject}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}@ca.example>\r\nMIME-Version: 1.0\r\n"
    )
}

/// A MIME entity: its headers (CRLF between them, none at the end), a blank line, the body.
pub fn entity(headers: &str, body: &str) -> String {
    format!("{headers}\r\n\r\n{body}")
}

/// A `text/plain` 7bit entity.
pub fn text(body: &str) -> String {
    entity(
        "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit",
        body,
    )
}

/// A `multipart/<subtype>` entity of `parts`. The boundary holds `_` and `-`, which no
/// base64 or PEM line does, and the subtype, so nested multiparts differ.
pub fn multipart(subtype: &str, parts: &[String]) -> String {
    let boundary = format!("----=_Part_{subtype}_0123456789");
    let mut body = String::from("This is a multi-part message in MIME format.\r\n");
    for part in parts {
        body.push_str(&format!("--{boundary}\r\n{part}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    entity(
        &format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\""),
        &body,
    )
}

/// A base64 attachment; `name: None` leaves out both the name and the Content-Disposition.
fn attachment(content_type: &str, name: Option<&str>, bytes: &[u8]) -> String {
    let headers = match name {
        Some(name) => format!(
            "Content-Type: {content_type}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{name}\""
        ),
        None => format!("Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64"),
    };
    entity(&headers, &pki::base64_mime(bytes))
}

fn zip_part(name: &str, files: &[(&str, &[u8])]) -> String {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (file, bytes) in files {
        writer.start_file(*file, options).expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    let zip = writer.finish().expect("zip").into_inner();
    attachment("application/zip", Some(name), &zip)
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn note(issued: &Issued, how: &str) -> String {
    format!(
        "Your certificate for {} has been issued; it is {how}.\r\n\r\nThe Test CA team\r\n",
        issued.name
    )
}

/// Prose with the leaf and the intermediate PEM inline.
fn inline_body(issued: &Issued, issuing: &pki::Ca) -> String {
    format!(
        "Your certificate for {} is below.\r\n\r\nWeb Server CERTIFICATE\r\n{}\r\n\
         INTERMEDIATE CA\r\n{}\r\nThe Test CA team\r\n",
        issued.name,
        crlf(&issued.leaf.pem),
        crlf(&issuing.pem)
    )
}

fn html(issued: &Issued, issuing: &pki::Ca) -> String {
    let br = |pem: &str| {
        pem.lines()
            .map(|l| format!("{l}<br>\r\n"))
            .collect::<String>()
    };
    entity(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit",
        &format!(
            "<html><body>\r\n<p>Dear&nbsp;Administrator,</p>\r\n<p>Your certificate for \
             <b>{}</b>:&nbsp;<br>\r\n<span style=\"font-family: monospace;\">\r\n{}</span></p>\r\n\
             <p>Intermediate&nbsp;CA:<br />\r\n<tt>{}</tt></p>\r\n</body></html>\r\n",
            issued.name,
            br(&issued.leaf.pem),
            br(&issuing.pem)
        ),
    )
}

/// Leaf PEM in 100-column lines, so the encoder's soft breaks fall inside base64 lines.
fn quoted_printable(issued: &Issued, issuing: &pki::Ca) -> String {
    let body = format!(
        "Your certificate for {} is below.\r\n\r\n{}\r\n{}\r\nThe Test CA team\r\n",
        issued.name,
        pki::pem_with("CERTIFICATE", &issued.leaf.der, 100, "  \r\n"),
        pki::pem_with("CERTIFICATE", &issuing.der, 76, "\r\n"),
    );
    entity(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
        &quoted_printable::encode_to_str(body),
    )
}

/// The CA's original mail (inline PEM) as a `message/rfc822` attachment.
fn forwarded(issued: &Issued, issuing: &pki::Ca) -> String {
    let subject = format!("Your certificate for {}", issued.name);
    let original = format!(
        "{}{}",
        headers(&subject, &format!("original.{}", issued.name)),
        text(&inline_body(issued, issuing))
    );
    entity(
        &format!(
            "Content-Type: message/rfc822; name=\"{subject}.eml\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             Content-Disposition: attachment; filename=\"{subject}.eml\""
        ),
        &original,
    )
}

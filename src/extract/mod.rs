//! Bytes of a fulfillment email in, the certificates it carries out.
//!
//! Pure: no clock, disk or network. CA mails come in every shape (see
//! `docs/fulfillment-emails.md` §1): PEM inline in text or HTML, DER or PEM attachments,
//! PKCS#7 bundles, zip archives, forwards, or only a download link. The extractor walks
//! every MIME part and classifies what it finds by content, never by file name, so a
//! `.cer` that is really PEM or a `.txt` that is really DER is still found.
//!
//! Anything odd becomes a [`Problem`] with the place it was found; only a message over
//! the size limit is refused outright. Every loop is bounded by a [`Limits`] field, so
//! hostile mail costs bounded time and memory.

mod der;
mod html;
mod mime;
pub mod parts;
mod pem;
mod shape;
mod zip;

use sha2::{Digest, Sha256};

pub use self::der::{DerKind, classify_der};
pub use self::pem::{PemBlock, scan_pem};

/// Bounds on what one message may make the extractor do. Each breach is reported as a
/// [`Problem`] naming the limit, except `max_message_size`, which refuses the message.
///
/// `max_parts`, `max_header_size` and `max_text_size` bound what the MIME parser builds:
/// the message is cut where the first of them is passed, before the parser reads it
/// (`shape.rs`), which keeps the parser's memory within a few times the message size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    /// Nesting of multiparts and forwarded messages.
    pub max_mime_depth: usize,
    pub max_parts: usize,
    /// Bytes of header lines in the message, every part's and forward's together.
    pub max_header_size: usize,
    /// Bytes of text and HTML parts, and of forwarded messages sent encoded, as they are
    /// in the mail: what the parser decodes into text, up to three times larger.
    pub max_text_size: usize,
    pub max_zip_entries: usize,
    pub max_zip_entry_size: u64,
    /// Bytes unpacked from all zip archives of one message, nested ones and refused
    /// entries included: the work a zip of zip bombs can cause.
    pub max_zip_total_size: u64,
    /// Uncompressed size over compressed size, the usual zip-bomb signature.
    pub max_zip_ratio: u64,
    /// Zips inside zips are followed this many levels deep.
    pub max_zip_depth: usize,
    pub max_pem_blocks: usize,
    pub max_certificates: usize,
    /// Longest line accepted inside a PEM block body.
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_mime_depth: 20,
            max_parts: 1000,
            max_header_size: 128 * 1024,
            max_text_size: 1024 * 1024,
            max_zip_entries: 256,
            max_zip_entry_size: 4 * 1024 * 1024,
            max_zip_total_size: 50 * 1024 * 1024,
            max_zip_ratio: 100,
            max_zip_depth: 1,
            max_pem_blocks: 200,
            max_certificates: 100,
            max_line_length: 64 * 1024,
        }
    }
}

/// A certificate found in a message: DER bytes, fingerprint and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCertificate {
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER, the certificate's identity everywhere in fulfill.
    pub sha256: String,
    pub found_in: String,
}

/// Something in the message that could not be read, or a limit that was hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub found_in: String,
    pub what: String,
}

/// Everything the extractor learnt from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    /// Unique by SHA-256, in the order first found.
    pub certificates: Vec<FoundCertificate>,
    /// Certificate signing requests quoted in the mail: recognised so they are never taken
    /// for certificates (order mails quote the CSR, §1.2).
    pub signing_requests: Vec<String>,
    /// Private keys pasted into the mail: recognised, never kept. Only the places.
    pub private_keys: Vec<String>,
    /// Download links, for mails that carry the certificate only behind a link.
    pub links: Vec<String>,
    /// Order numbers mentioned in the text ("Order number: 1557047799").
    pub order_numbers: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Extraction {
    /// A mail with no certificate but a download link (RapidSSL "Your certificate is
    /// ready", GoDaddy): the user must fetch it by hand, which is not "no certificate".
    pub fn is_link_only(&self) -> bool {
        self.certificates.is_empty() && !self.links.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error(
        "the message is {size} bytes, over the limit of {limit} bytes (max_message_size); \
         it was not read"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("not an email message: no header lines were found")]
    NotAMessage,
}

/// Extracts every certificate, CSR, link and order number from a raw RFC 5322 message.
pub fn extract(message: &[u8], limits: &Limits) -> Result<Extraction, ExtractError> {
    if message.len() > limits.max_message_size {
        return Err(ExtractError::TooLarge {
            size: message.len(),
            limit: limits.max_message_size,
        });
    }
    let mut collector = Collector::new(limits);
    let parsed = mime::walk(message, &mut collector)?;
    let mut extraction = collector.finish();
    extraction.message_id = parsed.message_id;
    extraction.subject = parsed.subject;
    extraction.from = parsed.from;
    Ok(extraction)
}

/// Extracts certificates from a bare file (an attachment saved to disk, a `.p7b`, a zip,
/// a PEM bundle), classified by content like an attachment.
pub fn extract_file(bytes: &[u8], name: &str, limits: &Limits) -> Result<Extraction, ExtractError> {
    if bytes.len() > limits.max_message_size {
        return Err(ExtractError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_size,
        });
    }
    let mut collector = Collector::new(limits);
    collector.scan_bytes(bytes, name, 0);
    Ok(collector.finish())
}

/// A file given to `fulfill import`: a saved mail, or, for mails that only carry a link,
/// the certificate file downloaded from it (PEM, DER, `.p7b`, zip). Told apart by content.
pub fn extract_any(bytes: &[u8], name: &str, limits: &Limits) -> Result<Extraction, ExtractError> {
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"-----BEGIN ") || zip::is_zip(start) || start.first() == Some(&0x30) {
        extract_file(bytes, name, limits)
    } else {
        extract(bytes, limits)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Accumulates findings while the MIME walker, the zip reader and the PEM scanner feed it.
struct Collector<'l> {
    limits: &'l Limits,
    out: Extraction,
    pem_blocks: usize,
    pem_limit_reported: bool,
    certificate_limit_reported: bool,
    /// Bytes that zip archives may still unpack, shared by every archive in the message.
    zip_budget: u64,
}

impl<'l> Collector<'l> {
    fn new(limits: &'l Limits) -> Self {
        Collector {
            limits,
            out: Extraction::default(),
            pem_blocks: 0,
            pem_limit_reported: false,
            certificate_limit_reported: false,
            zip_budget: limits.max_zip_total_size,
        }
    }

    fn finish(self) -> Extraction {
        self.out
    }

    fn problem(&mut self, found_in: &str, what: impl Into<String>) {
        self.out.problems.push(Problem {
            found_in: found_in.to_string(),
            what: what.into(),
        });
    }

    /// Download links in text or raw HTML (where they hide in `href`).
    fn note_links(&mut self, text: &str) {
        for link in html::certificate_links(text) {
            if !self.out.links.contains(&link) {
                self.out.links.push(link);
            }
        }
    }

    /// Text of a part (plain, or HTML already stripped): PEM blocks, links, order numbers.
    fn scan_text(&mut self, text: &str, found_in: &str) {
        self.note_links(text);
        for number in html::order_numbers(text) {
            if !self.out.order_numbers.contains(&number) {
                self.out.order_numbers.push(number);
            }
        }
        // One block past the limit is enough to know it was passed.
        let room = self
            .limits
            .max_pem_blocks
            .saturating_sub(self.pem_blocks)
            .saturating_add(1);
        let scan = pem::scan_pem_blocks(text, self.limits.max_line_length, room);
        for problem in scan.problems {
            self.problem(found_in, problem);
        }
        for (index, block) in scan.blocks.into_iter().enumerate() {
            self.pem_blocks += 1;
            if self.pem_blocks > self.limits.max_pem_blocks {
                // The count runs over the whole message: say so once, where it was hit.
                if !self.pem_limit_reported {
                    self.pem_limit_reported = true;
                    self.problem(
                        found_in,
                        format!(
                            "more than {} PEM blocks in the message (max_pem_blocks); the rest were not read",
                            self.limits.max_pem_blocks
                        ),
                    );
                }
                return;
            }
            let place = format!("{found_in}, PEM block {} ({})", index + 1, block.label);
            self.take_pem_block(&block, &place);
        }
    }

    fn take_pem_block(&mut self, block: &PemBlock, place: &str) {
        if !block.complete {
            // x509-parser's `no_end.pem` asset: mailers cut the END line; the body is enough.
            log::debug!("{place}: PEM block without END line, read anyway");
        }
        let der = match &block.der {
            Ok(der) => der,
            Err(e) => {
                self.problem(place, format!("base64 could not be decoded: {e}"));
                return;
            }
        };
        match pem::label_kind(&block.label) {
            pem::LabelKind::SigningRequest => self.out.signing_requests.push(place.to_string()),
            pem::LabelKind::PrivateKey => self.out.private_keys.push(place.to_string()),
            pem::LabelKind::Ignored => {}
            // CERTIFICATE can wrap a PKCS#7 bundle (Red Hat Certificate System), and a
            // PKCS7 label can hold one certificate: the DER decides, not the label.
            pem::LabelKind::CertificateOrBundle => self.take_der(der, place),
        }
    }

    /// DER of unknown kind: certificate, PKCS#7 bundle, CSR or key.
    fn take_der(&mut self, der: &[u8], place: &str) {
        match classify_der(der) {
            DerKind::Certificate(cert) => self.add_certificate(cert, place),
            DerKind::Bundle(certs) => {
                if certs.is_empty() {
                    self.problem(place, "PKCS#7 bundle holds no certificate");
                }
                for (i, cert) in certs.into_iter().enumerate() {
                    self.add_certificate(cert, &format!("{place}, bundle certificate {}", i + 1));
                }
            }
            DerKind::SigningRequest => self.out.signing_requests.push(place.to_string()),
            DerKind::PrivateKey => self.out.private_keys.push(place.to_string()),
            DerKind::Unreadable(why) => self.problem(place, why),
        }
    }

    fn add_certificate(&mut self, der: Vec<u8>, place: &str) {
        let sha256 = sha256_hex(&der);
        if self.out.certificates.iter().any(|c| c.sha256 == sha256) {
            return;
        }
        if self.out.certificates.len() >= self.limits.max_certificates {
            if !self.certificate_limit_reported {
                self.certificate_limit_reported = true;
                self.problem(
                    place,
                    format!(
                        "more than {} certificates in the message (max_certificates); the rest were not read",
                        self.limits.max_certificates
                    ),
                );
            }
            return;
        }
        self.out.certificates.push(FoundCertificate {
            der,
            sha256,
            found_in: place.to_string(),
        });
    }

    /// An attachment or zip entry: classified by its bytes alone.
    fn scan_bytes(&mut self, bytes: &[u8], found_in: &str, zip_depth: usize) {
        if zip::is_zip(bytes) {
            self.scan_zip(bytes, found_in, zip_depth);
        } else if let Some(text) = pem::as_pem_text(bytes) {
            self.scan_text(&text, found_in);
        } else if bytes.first() == Some(&0x30) {
            self.take_der(bytes, found_in);
        } else if let Some(der) = pem::bare_base64(bytes) {
            // Some servers save a certificate as base64 without the BEGIN/END lines.
            if matches!(
                classify_der(&der),
                DerKind::Certificate(_) | DerKind::Bundle(_)
            ) {
                self.take_der(&der, found_in);
            }
        }
        // Anything else (instructions, seals, installer programs) is not certificate material.
    }

    fn scan_zip(&mut self, bytes: &[u8], found_in: &str, zip_depth: usize) {
        if zip_depth > self.limits.max_zip_depth {
            self.problem(
                found_in,
                format!(
                    "zip archive nested more than {} level(s) deep (max_zip_depth); not opened",
                    self.limits.max_zip_depth
                ),
            );
            return;
        }
        // Entry by entry: only the entry being scanned (and, inside it, the entry of a
        // nested archive) is in memory.
        let mut entries = zip::ZipReader::new(bytes, self.limits);
        while let Some(item) = entries.next(self.limits, &mut self.zip_budget) {
            match item {
                zip::ZipItem::File { name, bytes } => {
                    let place = format!("{found_in}, zip entry '{name}'");
                    self.scan_bytes(&bytes, &place, zip_depth + 1);
                }
                zip::ZipItem::Problem(place, what) => {
                    self.problem(&format!("{found_in}{place}"), what);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

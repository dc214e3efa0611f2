//! A forgiving PEM scanner for text that went through mailers.
//!
//! Strict PEM readers (the `pem` crate, OpenSSL) want exact BEGIN/END pairs. Mail breaks
//! that: quoted-printable soft breaks, CRLF, trailing spaces, lines of any length, `> `
//! quoting in replies, and a missing END line (`shared/fulfillment-emails.md` §1.3). This
//! scanner takes the base64 between a BEGIN line and the END line, the next BEGIN, or the
//! first line of prose, whichever comes first.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard alphabet, padding optional: mail loses `=` padding now and then.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
/// Labels are short ("PKCS #7 SIGNED DATA" is the longest known); more is not a marker.
const MAX_LABEL: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Result<Vec<u8>, String>,
    /// False when the END line was missing.
    pub complete: bool,
}

#[derive(Debug, Default)]
pub struct PemScan {
    pub blocks: Vec<PemBlock>,
    pub problems: Vec<String>,
}

/// What a PEM label says the block is. Labels from RFC 7468 and the ones seen in CA mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    CertificateOrBundle,
    SigningRequest,
    PrivateKey,
    Ignored,
}

pub fn label_kind(label: &str) -> LabelKind {
    let label = label.to_ascii_uppercase();
    match label.as_str() {
        "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" | "PKCS7" | "PKCS #7 SIGNED DATA"
        | "CMS" => LabelKind::CertificateOrBundle,
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => LabelKind::SigningRequest,
        l if l.ends_with("PRIVATE KEY") => LabelKind::PrivateKey,
        _ => LabelKind::Ignored,
    }
}

/// Finds every PEM block in `text`.
pub fn scan_pem(text: &str, max_line_length: usize) -> PemScan {
    let mut scan = PemScan::default();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----").filter(|&n| n <= MAX_LABEL) else {
            rest = after;
            continue;
        };
        let label = after[..label_end].trim().to_string();
        let body_start = &after[label_end + 5..];
        let (body, complete, consumed) = take_body(body_start, max_line_length, &mut scan.problems);
        let der = LENIENT.decode(body.as_bytes()).map_err(|e| e.to_string());
        scan.blocks.push(PemBlock {
            label,
            der,
            complete,
        });
        rest = &body_start[consumed..];
    }
    scan
}

/// Collects base64 after a BEGIN marker. Returns the base64, whether an END was seen,
/// and how many bytes of `text` were used (not past a following BEGIN).
fn take_body(text: &str, max_line_length: usize, problems: &mut Vec<String>) -> (String, bool, usize) {
    let mut body = String::new();
    let mut offset = 0;
    for raw_line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw_line.len();
        let line = strip_quoting(raw_line);
        if let Some(end) = line.find(END) {
            body.push_str(line[..end].trim());
            return (body, true, offset);
        }
        if let Some(begin) = line.find(BEGIN) {
            body.push_str(line[..begin].trim());
            let begin_in_text = line_start + (raw_line.len() - raw_line.trim_start_matches(is_quote).len()) + begin;
            return (body, false, begin_in_text.min(text.len()));
        }
        if line.is_empty() {
            continue;
        }
        // RFC 1421 headers (Proc-Type, DEK-Info) may follow BEGIN before the base64.
        if body.is_empty() && line.contains(':') {
            continue;
        }
        if line.len() > max_line_length {
            problems.push(format!(
                "a PEM line is {} characters long, over the limit of {max_line_length} (max_line_length); block cut there",
                line.len()
            ));
            return (body, false, offset);
        }
        if line.bytes().all(is_base64_byte) {
            body.push_str(line);
        } else {
            // Prose after the base64: the END line was lost.
            return (body, false, line_start);
        }
    }
    (body, false, offset)
}

fn is_quote(c: char) -> bool {
    c == '>' || c == ' ' || c == '\t'
}

/// Strips reply quoting (`> `), indentation and trailing white space (CR included).
fn strip_quoting(line: &str) -> &str {
    line.trim_start_matches(is_quote).trim_end()
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\t')
}

/// Bytes that are text holding a PEM marker (an attachment saved as `.crt`, `.p7b`, `.ca-bundle`).
pub fn as_pem_text(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.contains(BEGIN).then(|| text.into_owned())
}

/// Bytes that are nothing but base64 (and white space), decoded; `None` for anything else.
pub fn bare_base64(bytes: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    // A certificate is hundreds of bytes; short base64-looking words are not one.
    if compact.len() < 128 || !compact.iter().all(|&b| is_base64_byte(b)) {
        return None;
    }
    LENIENT.decode(&compact).ok()
}

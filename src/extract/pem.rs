//! A forgiving PEM scanner for text that went through mailers.
//!
//! Strict PEM readers (the `pem` crate, OpenSSL) want exact BEGIN/END pairs. Mail breaks
//! that: quoted-printable soft breaks, CRLF, trailing spaces, lines of any length, `> `
//! quoting in replies, and a missing END line (`docs/fulfillment-emails.md` §1.3). This
//! scanner takes the base64 between a BEGIN line and the END line, the next BEGIN, or the
//! first line of prose, whichever comes first.

use std::borrow::Cow;

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
        "CERTIFICATE"
        | "X509 CERTIFICATE"
        | "TRUSTED CERTIFICATE"
        | "PKCS7"
        | "PKCS #7 SIGNED DATA"
        | "CMS" => LabelKind::CertificateOrBundle,
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => LabelKind::SigningRequest,
        l if l.ends_with("PRIVATE KEY") => LabelKind::PrivateKey,
        _ => LabelKind::Ignored,
    }
}

/// Finds every PEM block in `text`.
pub fn scan_pem(text: &str, max_line_length: usize) -> PemScan {
    scan_pem_blocks(text, max_line_length, usize::MAX)
}

/// Finds the first `max_blocks` PEM blocks in `text`: the ones past the caller's limit are
/// neither decoded nor kept.
pub fn scan_pem_blocks(text: &str, max_line_length: usize, max_blocks: usize) -> PemScan {
    let mut scan = PemScan::default();
    let mut rest = text;
    while scan.blocks.len() < max_blocks
        && let Some(start) = rest.find(BEGIN)
    {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----").filter(|&n| n <= MAX_LABEL) else {
            rest = after;
            continue;
        };
        let label = after[..label_end].trim().to_string();
        let body_start = &after[label_end + 5..];
        let (body, complete, consumed) = take_body(body_start, max_line_length, &mut scan.problems);
        let body = if complete {
            &body[..]
        } else {
            cut_to_der_length(&body)
        };
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
fn take_body(
    text: &str,
    max_line_length: usize,
    problems: &mut Vec<String>,
) -> (String, bool, usize) {
    let mut body = String::new();
    let mut offset = 0;
    for raw_line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw_line.len();
        let line = strip_quoting(raw_line);
        if let Some(end) = line.find(END) {
            push_base64(&mut body, &line[..end]);
            return (body, true, offset);
        }
        if let Some(begin) = line.find(BEGIN) {
            push_base64(&mut body, &line[..begin]);
            let begin_in_text =
                line_start + (raw_line.len() - raw_line.trim_start_matches(is_quote).len()) + begin;
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
            push_base64(&mut body, line);
        } else {
            // Prose after the base64: the END line was lost.
            return (body, false, line_start);
        }
    }
    (body, false, offset)
}

/// Appends base64 without its white space: renderers that collapse line breaks leave
/// spaces between the chunks, which the decoder would refuse.
fn push_base64(body: &mut String, text: &str) {
    body.extend(text.chars().filter(|c| !c.is_ascii_whitespace()));
}

/// Without an END line the base64 can run on into a signature made only of letters and
/// spaces ("Regards", "RapidSSL Team"), which no line test can tell from base64. The DER
/// header says how long the structure is: keep that much base64 and drop the rest.
fn cut_to_der_length(body: &str) -> &str {
    // 8 characters decode to the 6 bytes that hold any tag and length up to 0x84.
    let Some(head) = body.get(..8).and_then(|head| LENIENT.decode(head).ok()) else {
        return body;
    };
    let total = match head.get(1) {
        Some(&len) if len < 0x80 => 2 + usize::from(len),
        Some(&len @ 0x81..=0x84) => {
            let count = usize::from(len & 0x7f);
            let Some(bytes) = head.get(2..2 + count) else {
                return body;
            };
            let value = bytes.iter().fold(0usize, |acc, &b| {
                acc.saturating_mul(256).saturating_add(usize::from(b))
            });
            value.saturating_add(2 + count)
        }
        // Indefinite (BER) or absurd lengths: nothing to cut by.
        _ => return body,
    };
    let chars = total.div_ceil(3).saturating_mul(4);
    body.get(..chars).unwrap_or(body)
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
/// Bytes that are not UTF-8 become `?`, one for one: U+FFFD would take three bytes for
/// each, and an attachment is up to 25 MiB.
pub fn as_pem_text(bytes: &[u8]) -> Option<Cow<'_, str>> {
    if !bytes
        .windows(BEGIN.len())
        .any(|window| window == BEGIN.as_bytes())
    {
        return None;
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Some(Cow::Borrowed(text));
    }
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    Some(Cow::Owned(text))
}

/// Base64 with line breaks and other white space, as in a transfer-encoded body.
pub fn decode_base64(bytes: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    LENIENT.decode(&compact).ok()
}

/// Bytes that are nothing but base64 (and white space), decoded; `None` for anything else.
pub fn bare_base64(bytes: &[u8]) -> Option<Vec<u8>> {
    // Checked before anything is copied: most attachments fail at the first bytes.
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_whitespace() || is_base64_byte(b))
    {
        return None;
    }
    let compact: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    // A certificate is hundreds of bytes; short base64-looking words are not one.
    if compact.len() < 128 {
        return None;
    }
    LENIENT.decode(&compact).ok()
}

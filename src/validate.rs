//! Certificates from a mail + what we expect + `now` → a verdict with every reason.
//!
//! The four rules of docs/architecture.md must all hold before anything is recorded as
//! imported: (1) the leaf's key is one of ours, (2) it covers the expected name, (3) `now`
//! is inside its validity window, (4) a path from it through the mail's intermediates to a
//! configured trust anchor verifies for serverAuth (rustls-webpki builds the path, so the
//! order in the mail does not matter). Self-signed roots in the mail are dropped: trust
//! comes from the configured anchors, never from the mail.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::extract::{FoundCertificate, sha256_hex};
use crate::keys::{self, PublicKeyId};

/// The rules, numbered as in the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    KeyMatch = 1,
    Name = 2,
    Validity = 3,
    Chain = 4,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Rule::KeyMatch => "key",
            Rule::Name => "name",
            Rule::Validity => "validity",
            Rule::Chain => "chain",
        };
        write!(f, "rule {} ({name})", *self as u8)
    }
}

/// Where a known key came from; its text ("key file /etc/ssl/private/www.key", "CSR of
/// order 1234") is what a person recognises, and what `certificates.key_source` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A private key file (`--key` or `[keys] dirs`).
    KeyFile(PathBuf),
    /// A CSR file in `[keys] dirs` (or `--key`).
    CsrFile(PathBuf),
    /// The CSR the portal holds for this order.
    OrderCsr(i64),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::KeyFile(path) => write!(f, "key file {}", path.display()),
            KeySource::CsrFile(path) => write!(f, "CSR {}", path.display()),
            KeySource::OrderCsr(order) => write!(f, "CSR of order {order}"),
        }
    }
}

/// A key we own or asked a certificate for, and where it came from.
#[derive(Debug, Clone)]
pub struct KnownKey {
    pub key: PublicKeyId,
    pub source: KeySource,
    /// The name the key's CSR asked for, when a CSR for it is known.
    pub requested_name: Option<String>,
    /// The private key file with this public key, if we have one (upload needs it).
    pub private_key_file: Option<PathBuf>,
    /// A CSR file with this public key, if we have one (uploaded for the record).
    pub csr_file: Option<PathBuf>,
    /// The portal order whose CSR this is.
    pub order_id: Option<i64>,
}

/// What the leaf must match.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The name the leaf must cover (`--expect-name` or the order's common name). When
    /// unset, the name requested by the matching key's CSR is used.
    pub name: Option<String>,
    pub keys: Vec<KnownKey>,
}

/// Readable facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub der: Vec<u8>,
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    /// Colon-separated hex, as `openssl x509 -serial` shows it (without the colons there).
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub self_signed: bool,
}

impl CertificateInfo {
    pub fn parse(der: &[u8]) -> Result<CertificateInfo, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        Ok(Self::from_parsed(der, &cert))
    }

    fn from_parsed(der: &[u8], cert: &X509Certificate<'_>) -> CertificateInfo {
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let self_signed = is_self_signed(cert);
        CertificateInfo {
            der: der.to_vec(),
            sha256: sha256_hex(der),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            dns_names,
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            self_signed,
        }
    }

    /// "CN=www.example.com (serial 0a1b…, sha256 3f2a…)": how rejections name a certificate.
    pub fn label(&self) -> String {
        format!(
            "'{}' (serial {}, sha256 {})",
            self.subject, self.serial, self.sha256
        )
    }
}

/// Issued under its own name and signed with its own key.
///
/// The signature is the proof, but ring (behind x509-parser's `verify`) cannot check every
/// algorithm: ECDSA over P-521 or with SHA-512 comes back "unsupported". Counting such a
/// certificate as not self-signed would keep a self-signed P-521 root sent in the mail as
/// an intermediate instead of dropping it (x509-parser's `p521-selfsigned.der`,
/// `tests/corpora.rs`). When the algorithm is unsupported, the key identifiers decide: a
/// self-issued certificate whose authority key identifier names another key is a CA's
/// key rollover, not self-signed. Calling too much self-signed is safe: webpki cannot
/// verify these algorithms either, and a dropped certificate is never accepted.
fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return false;
    }
    match cert.verify_signature(None) {
        Ok(()) => true,
        Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => {
            let mut subject_key = None;
            let mut authority_key = None;
            for extension in cert.extensions() {
                match extension.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => subject_key = Some(id.0),
                    ParsedExtension::AuthorityKeyIdentifier(aki) => {
                        authority_key = aki.key_identifier.as_ref().map(|id| id.0);
                    }
                    _ => {}
                }
            }
            match (authority_key, subject_key) {
                (Some(authority), Some(subject)) => authority == subject,
                _ => true,
            }
        }
        Err(_) => false,
    }
}

/// One reason a leaf was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

/// A leaf that passed every rule, with the chain to upload (intermediates, leaf's issuer
/// first, no root).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub leaf: CertificateInfo,
    pub chain: Vec<CertificateInfo>,
    pub key_source: String,
    /// The key the leaf matched, with the files known for it.
    pub key: KnownKey,
    pub expected_name: String,
}

#[derive(Debug, Clone)]
pub struct Rejected {
    pub leaf: CertificateInfo,
    pub reasons: Vec<Rejection>,
}

#[derive(Debug, Clone)]
// A mail yields a handful of verdicts: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    Accepted(Accepted),
    Rejected(Rejected),
}

/// The outcome for all certificates of one mail.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One verdict per end-entity certificate in the mail.
    pub verdicts: Vec<Verdict>,
    /// Self-signed roots that came with the mail and were left out of every chain.
    pub dropped_roots: Vec<CertificateInfo>,
    /// Certificates that could not be parsed at all.
    pub unreadable: Vec<(String, String)>,
}

impl Report {
    pub fn accepted(&self) -> impl Iterator<Item = &Accepted> {
        self.verdicts.iter().filter_map(|v| match v {
            Verdict::Accepted(a) => Some(a),
            Verdict::Rejected(_) => None,
        })
    }

    pub fn rejected(&self) -> impl Iterator<Item = &Rejected> {
        self.verdicts.iter().filter_map(|v| match v {
            Verdict::Rejected(r) => Some(r),
            Verdict::Accepted(_) => None,
        })
    }
}

/// Judges every end-entity certificate among `found` against the expectations, the trust
/// anchors (DER certificates) and `now`.
pub fn validate(
    found: &[FoundCertificate],
    expectations: &Expectations,
    trust_anchors: &[Vec<u8>],
    now: OffsetDateTime,
) -> Report {
    let mut report = Report::default();
    let parsed = parse_all(found, &mut report.unreadable);
    let (roots, others): (Vec<_>, Vec<_>) = parsed
        .into_iter()
        .partition(|(info, x509)| is_root(info, x509));
    report.dropped_roots = roots.into_iter().map(|(info, _)| info).collect();

    let anchor_ders: Vec<CertificateDer<'_>> = trust_anchors
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let paths = Paths {
        intermediates: others
            .iter()
            .filter(|(info, _)| info.is_ca)
            .map(|(info, _)| CertificateDer::from(info.der.as_slice()))
            .collect(),
        anchors: anchor_ders
            .iter()
            .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
            .collect(),
        cas: others
            .iter()
            .filter(|(i, _)| i.is_ca)
            .map(|(i, _)| i)
            .collect(),
        dropped_roots: &report.dropped_roots,
        no_anchors: trust_anchors.is_empty(),
    };
    let verdicts = others
        .iter()
        .filter(|(info, _)| !info.is_ca)
        .map(|(leaf, x509)| judge(leaf, x509, expectations, &paths, now))
        .collect();
    report.verdicts = verdicts;
    report
}

/// Every certificate that parses, with its facts; the others go to `unreadable`.
fn parse_all<'a>(
    found: &'a [FoundCertificate],
    unreadable: &mut Vec<(String, String)>,
) -> Vec<(CertificateInfo, X509Certificate<'a>)> {
    let mut parsed = Vec::new();
    for cert in found {
        match x509_parser::parse_x509_certificate(&cert.der) {
            Ok((_, x509)) => parsed.push((CertificateInfo::from_parsed(&cert.der, &x509), x509)),
            Err(e) => unreadable.push((cert.found_in.clone(), e.to_string())),
        }
    }
    parsed
}

/// A root is a self-signed CA. A self-signed v3 certificate without CA:TRUE can sign
/// nothing (RFC 5280 §4.2.1.9): it is a leaf, and is judged like one rather than silently
/// dropped. v1 certificates have no extensions, so old v1 roots count as roots.
fn is_root(info: &CertificateInfo, x509: &X509Certificate<'_>) -> bool {
    info.self_signed && (info.is_ca || x509.version() != x509_parser::x509::X509Version::V3)
}

/// What rule 4 checks a leaf against: the mail's CA certificates and the configured
/// trust anchors, with what explaining a failed path needs.
struct Paths<'a> {
    intermediates: Vec<CertificateDer<'a>>,
    anchors: Vec<rustls_pki_types::TrustAnchor<'a>>,
    cas: Vec<&'a CertificateInfo>,
    dropped_roots: &'a [CertificateInfo],
    no_anchors: bool,
}

/// Applies the four rules to one leaf. Every broken rule gives a reason, in rule order;
/// the leaf is accepted only when there is none.
fn judge(
    leaf: &CertificateInfo,
    x509: &X509Certificate<'_>,
    expectations: &Expectations,
    paths: &Paths<'_>,
    now: OffsetDateTime,
) -> Verdict {
    let mut reasons = Vec::new();
    let matched = match key_rule(x509, &expectations.keys) {
        Ok(key) => Some(key),
        Err(reason) => {
            reasons.push(reason);
            None
        }
    };
    let expected_name = expected_name(expectations, matched);
    reasons.extend(name_rule(leaf, expected_name.as_deref(), matched.is_some()));
    let validity = validity_rule(leaf, now);
    let outside_validity = validity.is_some();
    reasons.extend(validity);
    let chain = match chain_rule(leaf, paths, now, outside_validity) {
        Ok(chain) => chain,
        Err(reason) => {
            reasons.extend(reason);
            Vec::new()
        }
    };

    if reasons.is_empty() {
        // Both are set when no reason was recorded: the key matched and a name was known.
        if let (Some(key), Some(name)) = (matched, expected_name) {
            let chain = chain
                .iter()
                .filter_map(|der| {
                    paths
                        .cas
                        .iter()
                        .find(|info| info.der == *der)
                        .map(|info| (*info).clone())
                })
                .collect();
            return Verdict::Accepted(Accepted {
                leaf: leaf.clone(),
                chain,
                key_source: key.source.to_string(),
                key: key.clone(),
                expected_name: name,
            });
        }
    }
    Verdict::Rejected(Rejected {
        leaf: leaf.clone(),
        reasons,
    })
}

/// Rule 1: the leaf's public key is one of the known keys. Returns the first that matches.
fn key_rule<'k>(
    x509: &X509Certificate<'_>,
    keys: &'k [KnownKey],
) -> Result<&'k KnownKey, Rejection> {
    let leaf_key = keys::from_spki(x509.public_key()).map_err(|e| Rejection {
        rule: Rule::KeyMatch,
        detail: format!("its public key cannot be used: {e}"),
    })?;
    keys.iter().find(|k| k.key == leaf_key).ok_or_else(|| Rejection {
        rule: Rule::KeyMatch,
        detail: if keys.is_empty() {
            "no private key or CSR to compare with: give --key, or put the keys in a [keys] dirs folder".into()
        } else {
            format!(
                "its {} key {} matches none of the {} known keys (private keys and CSRs); the mail may be forged or for another order",
                leaf_key.describe(),
                leaf_key.fingerprint(),
                distinct_keys(keys)
            )
        },
    })
}

/// The name rule 2 checks: the one given, else the one the matched key's CSR asked for.
fn expected_name(expectations: &Expectations, matched: Option<&KnownKey>) -> Option<String> {
    // The same key can be known twice (its key file and its CSR): the name comes from
    // whichever of them knows one, not only from the first match.
    expectations.name.clone().or_else(|| {
        matched.and_then(|m| {
            expectations
                .keys
                .iter()
                .filter(|k| k.key == m.key)
                .find_map(|k| k.requested_name.clone())
        })
    })
}

/// Rule 2: the leaf covers the expected name.
fn name_rule(
    leaf: &CertificateInfo,
    expected_name: Option<&str>,
    key_matched: bool,
) -> Option<Rejection> {
    match expected_name {
        Some(name) if covers(&leaf.dns_names, name) => None,
        Some(name) => Some(Rejection {
            rule: Rule::Name,
            detail: format!(
                "it does not cover {name}; it names {}",
                if leaf.dns_names.is_empty() {
                    "no DNS name in subjectAltName".to_string()
                } else {
                    leaf.dns_names.join(", ")
                }
            ),
        }),
        None if key_matched => Some(Rejection {
            rule: Rule::Name,
            detail: "no expected name is known for its key: give --expect-name, or put the order's CSR next to the key".into(),
        }),
        // Without a key match there is nothing to say about the name.
        None => None,
    }
}

/// Rule 3: `now` is inside the leaf's validity window.
fn validity_rule(leaf: &CertificateInfo, now: OffsetDateTime) -> Option<Rejection> {
    if now < leaf.not_before {
        Some(Rejection {
            rule: Rule::Validity,
            detail: format!("not valid before {}", date(leaf.not_before)),
        })
    } else if now > leaf.not_after {
        Some(Rejection {
            rule: Rule::Validity,
            detail: format!("expired on {}", date(leaf.not_after)),
        })
    } else {
        None
    }
}

/// Rule 4: a path from the leaf to a trust anchor verifies. Returns the intermediates of
/// the path, leaf's issuer first; `Err(None)` when the path fails only on what rule 3
/// (`outside_validity`) has said already.
fn chain_rule(
    leaf: &CertificateInfo,
    paths: &Paths<'_>,
    now: OffsetDateTime,
    outside_validity: bool,
) -> Result<Vec<Vec<u8>>, Option<Rejection>> {
    let error = match verify_path(leaf, &paths.intermediates, &paths.anchors, now) {
        Ok(chain) => return Ok(chain),
        Err(error) => error,
    };
    let explain = |e: &webpki::Error, at| Rejection {
        rule: Rule::Chain,
        detail: explain_path_error(
            e,
            leaf,
            &paths.cas,
            paths.dropped_roots,
            paths.no_anchors,
            at,
        ),
    };
    if !(outside_validity && is_time_error(&error)) {
        return Err(Some(explain(&error, now)));
    }
    // webpki checks the leaf's own dates before anything else, so with rule 3 broken the
    // chain's other faults would go unsaid. Judge the path again on the leaf's valid day
    // nearest `now`. A date error there is a chain fault only when a CA of the mail is out
    // of its dates today too; a CA valid today that was not yet valid on the leaf's days
    // adds nothing to rule 3's "expired" (an expired leaf is said to be expired once).
    let at = if now < leaf.not_before {
        leaf.not_before
    } else {
        leaf.not_after
    };
    let ca_out_of_date_today =
        (paths.cas.iter()).any(|ca| now > ca.not_after || now < ca.not_before);
    match verify_path(leaf, &paths.intermediates, &paths.anchors, at) {
        Err(e) if !is_time_error(&e) => Err(Some(explain(&e, at))),
        Err(e) if ca_out_of_date_today => Err(Some(explain(&e, now))),
        _ => Err(None),
    }
}

fn distinct_keys(keys: &[KnownKey]) -> usize {
    let mut seen: Vec<&PublicKeyId> = keys.iter().map(|k| &k.key).collect();
    seen.sort_by_key(|k| k.fingerprint());
    seen.dedup();
    seen.len()
}

fn is_time_error(error: &webpki::Error) -> bool {
    matches!(
        error,
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }
    )
}

/// Builds and verifies the path; returns the intermediates used, leaf's issuer first.
fn verify_path(
    leaf: &CertificateInfo,
    intermediates: &[CertificateDer<'_>],
    anchors: &[rustls_pki_types::TrustAnchor<'_>],
    now: OffsetDateTime,
) -> Result<Vec<Vec<u8>>, webpki::Error> {
    let leaf_der = CertificateDer::from(leaf.der.as_slice());
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)?;
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(seconds));
    let path = end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    Ok(path
        .intermediate_certificates()
        .map(|cert| cert.der().to_vec())
        .collect())
}

/// Turns webpki's terse error into something a person can act on, telling apart a chain
/// whose root is simply not trusted here (old GeoTrust chains, `docs/fulfillment-emails.md`
/// §1.3), an expired CA, and a broken signature.
fn explain_path_error(
    error: &webpki::Error,
    leaf: &CertificateInfo,
    cas: &[&CertificateInfo],
    dropped_roots: &[CertificateInfo],
    no_anchors: bool,
    now: OffsetDateTime,
) -> String {
    match error {
        webpki::Error::UnknownIssuer if no_anchors => {
            "no trust anchors are configured: set [validation] trust_roots (\"system\" or a PEM bundle)".into()
        }
        webpki::Error::UnknownIssuer if leaf.self_signed => {
            "it is self-signed: no CA issued it, so it cannot chain to a trust anchor".into()
        }
        webpki::Error::UnknownIssuer => explain_unknown_issuer(leaf, cas, dropped_roots),
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            match cas.iter().find(|ca| now > ca.not_after || now < ca.not_before) {
                Some(ca) => format!(
                    "the CA certificate {} is valid only from {} to {}",
                    ca.label(),
                    date(ca.not_before),
                    date(ca.not_after)
                ),
                None => "a certificate in the chain is outside its validity period".into(),
            }
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not verify with its issuer's key (tampered or mismatched intermediate)".into()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "it is not a TLS server certificate (no serverAuth extended key usage)".into()
        }
        other => format!("path validation failed: {other:?}"),
    }
}

/// Names where the chain stops short of a trust anchor: at a root sent in the mail, at a
/// missing intermediate, or at a CA whose issuer is not trusted here.
fn explain_unknown_issuer(
    leaf: &CertificateInfo,
    cas: &[&CertificateInfo],
    dropped_roots: &[CertificateInfo],
) -> String {
    // Walk up by issuer name as far as the mail's certificates go.
    let mut top = leaf;
    let mut steps = 0;
    while let Some(issuer) = cas
        .iter()
        .find(|ca| ca.subject == top.issuer && ca.sha256 != top.sha256)
    {
        top = issuer;
        steps += 1;
        if steps > cas.len() {
            break;
        }
    }
    if let Some(root) = dropped_roots.iter().find(|r| r.subject == top.issuer) {
        format!(
            "the chain ends at the root '{}' sent in the mail, which is not a configured trust anchor; add it to [validation] trust_roots only if you trust it",
            root.subject
        )
    } else if steps == 0 {
        format!(
            "its issuer '{}' is neither in the mail nor a configured trust anchor (missing intermediate?)",
            top.issuer
        )
    } else {
        format!(
            "the chain ends at '{}', whose issuer '{}' is not a configured trust anchor",
            top.subject, top.issuer
        )
    }
}

/// Whether `dns_names` (the leaf's subjectAltName) cover `name`, per RFC 6125 §6.4: exact
/// match ignoring case, or a wildcard that is the whole left-most label and stands for
/// exactly one label, never for a public suffix-like two-label name ("*.com").
pub fn covers(dns_names: &[String], name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    dns_names.iter().any(|presented| {
        let presented = presented.trim_end_matches('.').to_ascii_lowercase();
        if presented == name {
            return true;
        }
        let Some(suffix) = presented.strip_prefix("*.") else {
            return false;
        };
        if suffix.split('.').count() < 2 || suffix.contains('*') {
            return false;
        }
        match name.split_once('.') {
            Some((first, rest)) => !first.is_empty() && first != "*" && rest == suffix,
            None => false,
        }
    })
}

/// YYYY-MM-DD.
pub fn date(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECDSA P-521 with SHA-512, which ring cannot verify (made with `openssl req -x509`,
    /// key secp521r1, `-sha512`, basicConstraints CA:TRUE): a self-signed root.
    const P521_ROOT: &str = "-----BEGIN CERTIFICATE-----
MIICEDCCAXGgAwIBAgIBATAKBggqhkjOPQQDBDAaMRgwFgYDVQQDDA9QLTUyMSBU
ZXN0IFJvb3QwIBcNMjYxMTI5MDU0NjA2WhgPMjEyNjExMDUwNTQ2MDZaMBoxGDAW
BgNVBAMMD1AtNTIxIFRlc3QgUm9vdDCBmzAQBgcqhkjOPQIBBgUrgQQAIwOBhgAE
APNyMIMxf8wJhXqj1n3j8WE72B0sKxxWrKSyEEuMKtoCtGOksHkUpyWqaKiEH30M
Taz7OBAt45nIXaiIFsATNCOHAZCXE5n9KH4H/tnDxME0bdKvDZM3WMuDo/UViNPc
lOf6FEZywedysvEwVZeAQToKTxd1KFOwK3yhZ6nFmr4IKMj0o2MwYTAdBgNVHQ4E
FgQUHN6j/0eIyfBDfxwW+9QlQ4wfaK4wHwYDVR0jBBgwFoAUHN6j/0eIyfBDfxwW
+9QlQ4wfaK4wDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZI
zj0EAwQDgYwAMIGIAkIBefwsLtAHTjHwDiOWBiCiYzaJQtW50LS1/IAtb1PSZxgr
wsTrQRODvSmakdZMpBCgA2MRMZuIBjXRDTJ8lYZNhSoCQgHwyynwcvhr2n2Up0XS
JOdwk7BZ0pmqj8cWn8QXqQ86Ac7jQTbIpYSqW8AFIWnGlIpGtmjYxroD0pTbu6cK
nVQuEA==
-----END CERTIFICATE-----";

    /// The same name with a new key, signed by the root's key (a CA key rollover): issued
    /// under its own name, but its authority key identifier names the root's key.
    const P521_ROLLOVER: &str = "-----BEGIN CERTIFICATE-----
MIICEDCCAXGgAwIBAgIBAjAKBggqhkjOPQQDBDAaMRgwFgYDVQQDDA9QLTUyMSBU
ZXN0IFJvb3QwIBcNMjYxMTI5MDU0NjA2WhgPMjEyNjExMDUwNTQ2MDZaMBoxGDAW
BgNVBAMMD1AtNTIxIFRlc3QgUm9vdDCBmzAQBgcqhkjOPQIBBgUrgQQAIwOBhgAE
AOm47idCT+1Xb6navmk2JgW5u0T1Oh4kQzzffADZWTaW+ZVmy7v1fmYSj6JComCm
MuY492DQT8hvPsDd5odSp8OOAAENMgaUEbeF1kMzoYO4fddjy95J8rKRaRmc5WIi
ssOLTr9r/SeZuFsK2UH/f0eLFf1kq51/sbd28GEobG5YdWTpo2MwYTAPBgNVHRMB
Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUpUVqxHzwqlFAwJ+X
qlqO/ml+XTAwHwYDVR0jBBgwFoAUHN6j/0eIyfBDfxwW+9QlQ4wfaK4wCgYIKoZI
zj0EAwQDgYwAMIGIAkIBrZTm+dUO5yRLI8RcIAMEPPXN3mLA+X3CCoqMrUql/psM
ex4Y0JICaPfBlIiIkRHEOgWfS47KaOszXRVQCHRmDJwCQgEP1uof8414C0Ms1kyR
FRf9XTjYx2qF3aiETPpVXwyZh8JMCSU532ZFhUfxxQFSGFe8tmtFLJdAJJGpI3O3
p5AB0g==
-----END CERTIFICATE-----";

    fn found(pem_text: &str) -> FoundCertificate {
        let der = pem::parse(pem_text).expect("test PEM").into_contents();
        FoundCertificate {
            sha256: sha256_hex(&der),
            der,
            found_in: "test".into(),
        }
    }

    #[test]
    fn a_self_signed_root_with_a_signature_ring_cannot_check_is_dropped_as_a_root() {
        let root = found(P521_ROOT);
        let rollover = found(P521_ROLLOVER);
        assert!(CertificateInfo::parse(&root.der).expect("root").self_signed);
        assert!(
            !CertificateInfo::parse(&rollover.der)
                .expect("rollover")
                .self_signed
        );

        let now = time::macros::datetime!(2027-01-01 00:00 UTC);
        let report = validate(
            &[root.clone(), rollover],
            &Expectations::default(),
            &[],
            now,
        );
        let dropped: Vec<&str> = report
            .dropped_roots
            .iter()
            .map(|r| r.sha256.as_str())
            .collect();
        // The rollover certificate is a CA issued by another key: an intermediate, which
        // validate keeps for chains and does not report.
        assert_eq!(dropped, [root.sha256.as_str()]);
        assert!(report.verdicts.is_empty() && report.unreadable.is_empty());
    }
}

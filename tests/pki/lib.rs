//! Test PKI shared by the unit tests of `src/extract` and the integration tests: a root, an
//! intermediate, leaves and CSRs made with rcgen, with fixed dates so tests can pass an
//! explicit `now`.
//!
//! A crate of its own (`fulfill-test-pki`, a path dev-dependency of fulfill): tests use it
//! as `use fulfill_test_pki as pki;`. It depends on rcgen, time and base64 only, never on
//! fulfill, so what it makes is independent of the code under test.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

/// Every certificate gets its own serial, so no two certificates share a fingerprint by accident.
static SERIAL: AtomicU64 = AtomicU64::new(0x1000);

fn next_serial() -> SerialNumber {
    SerialNumber::from(SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// 2026-06-01T00:00:00Z: the `now` the tests validate at. Everything below is valid then.
pub fn now() -> OffsetDateTime {
    ymd(2026, 6, 1)
}

pub fn ymd(year: i32, month: u8, day: u8) -> OffsetDateTime {
    rcgen::date_time_ymd(year, month, day)
}

/// A CA (root or intermediate): its certificate, and what it takes to issue under it.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
    pub pem: String,
}

impl Ca {
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// The same subject and key, issued by `by` instead of by itself: a cross-signed root
    /// (USERTrust RSA under AAA Certificate Services in Sectigo zips).
    pub fn cross_signed_by(&self, by: &Ca) -> Vec<u8> {
        let mut params = self.params.clone();
        params.serial_number = Some(next_serial());
        params
            .signed_by(&self.key, &by.issuer())
            .expect("cross-sign")
            .der()
            .to_vec()
    }
}

fn ca_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Fulfill Test PKI");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(next_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

/// A self-signed root, valid 2020–2040.
pub fn root(common_name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let params = ca_params(common_name, ymd(2020, 1, 1), ymd(2040, 1, 1));
    let cert = params.self_signed(&key).expect("self-sign");
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        params,
        key,
    }
}

/// An intermediate under `parent`, valid 2021–2035.
pub fn intermediate(common_name: &str, parent: &Ca) -> Ca {
    intermediate_valid(common_name, parent, ymd(2021, 1, 1), ymd(2035, 1, 1))
}

pub fn intermediate_valid(
    common_name: &str,
    parent: &Ca,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Ca {
    let key = KeyPair::generate().expect("key");
    let params = ca_params(common_name, not_before, not_after);
    let cert = params
        .signed_by(&key, &parent.issuer())
        .expect("sign intermediate");
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        params,
        key,
    }
}

/// What a leaf should look like; `LeafSpec::new(&["www.example.com"])` is a normal
/// server certificate valid 2026-01-01 – 2027-01-01 with a fresh P-256 key.
pub struct LeafSpec {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub algorithm: &'static SignatureAlgorithm,
    pub server_auth: bool,
}

impl LeafSpec {
    pub fn new(dns_names: &[&str]) -> LeafSpec {
        LeafSpec {
            common_name: dns_names.first().map(|s| s.to_string()),
            dns_names: dns_names.iter().map(|s| s.to_string()).collect(),
            not_before: ymd(2026, 1, 1),
            not_after: ymd(2027, 1, 1),
            algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
            server_auth: true,
        }
    }

    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> LeafSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    pub fn algorithm(mut self, algorithm: &'static SignatureAlgorithm) -> LeafSpec {
        self.algorithm = algorithm;
        self
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::new(self.dns_names.clone()).expect("names");
        let mut dn = DistinguishedName::new();
        if let Some(cn) = &self.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.server_auth {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.serial_number = Some(next_serial());
        params.use_authority_key_identifier_extension = true;
        params
    }
}

/// An end-entity certificate and its private key.
pub struct Leaf {
    pub der: Vec<u8>,
    pub pem: String,
    pub key: KeyPair,
}

impl Leaf {
    /// The private key as PKCS#8 PEM ("PRIVATE KEY").
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

pub fn leaf(spec: &LeafSpec, issuer: &Ca) -> Leaf {
    let key = KeyPair::generate_for(spec.algorithm).expect("key");
    let cert = spec
        .params()
        .signed_by(&key, &issuer.issuer())
        .expect("sign leaf");
    Leaf {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
    }
}

/// A leaf for a key made elsewhere (an RSA key from the `rsa` crate, say).
pub fn leaf_for_key(spec: &LeafSpec, public_key: &impl PublicKeyData, issuer: &Ca) -> Vec<u8> {
    spec.params()
        .signed_by(public_key, &issuer.issuer())
        .expect("sign leaf")
        .der()
        .to_vec()
}

/// A self-signed end-entity certificate (not a CA).
pub fn self_signed_leaf(spec: &LeafSpec) -> Leaf {
    let key = KeyPair::generate_for(spec.algorithm).expect("key");
    let cert = spec.params().self_signed(&key).expect("self-sign");
    Leaf {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
    }
}

/// A public key given as raw bytes, to put a foreign key (RSA from the `rsa` crate) in a
/// certificate rcgen signs with another key.
pub struct RawPublicKey {
    /// For RSA: the PKCS#1 RSAPublicKey DER. For EC: the uncompressed point.
    pub bytes: Vec<u8>,
    pub algorithm: &'static SignatureAlgorithm,
}

impl PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// A CSR for `key`, with the given common name (if any) and DNS names.
pub fn csr_pem(key: &KeyPair, common_name: Option<&str>, dns_names: &[&str]) -> String {
    csr_params(common_name, dns_names)
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("csr pem")
}

pub fn csr_der(key: &KeyPair, common_name: Option<&str>, dns_names: &[&str]) -> Vec<u8> {
    csr_params(common_name, dns_names)
        .serialize_request(key)
        .expect("csr")
        .der()
        .to_vec()
}

fn csr_params(common_name: Option<&str>, dns_names: &[&str]) -> CertificateParams {
    let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("names");
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params
}

/// PEM with a chosen label and line width (PEM is 64; mailers and MIME tools use 76).
pub fn pem_with(label: &str, der: &[u8], width: usize, eol: &str) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----{eol}");
    for chunk in b64.as_bytes().chunks(width) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push_str(eol);
    }
    out.push_str(&format!("-----END {label}-----{eol}"));
    out
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 wrapped at 76 columns with CRLF, as a Content-Transfer-Encoding: base64 body.
pub fn base64_mime(bytes: &[u8]) -> String {
    let b64 = base64_encode(bytes);
    let mut out = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push_str("\r\n");
    }
    out
}

/// A DER TLV with a definite length.
pub fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A BER TLV with an indefinite length, as Windows writes `.p7b` files.
pub fn ber_indefinite(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, 0x80];
    out.extend_from_slice(content);
    out.extend_from_slice(&[0, 0]);
    out
}

const OID_SIGNED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
const OID_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

/// A PKCS#7 certs-only SignedData (`openssl crl2pkcs7 -nocrl`), certificates in the given
/// order. `None` leaves the certificates field out entirely; `Some(&[])` writes it empty.
pub fn pkcs7(certs: Option<&[&[u8]]>) -> Vec<u8> {
    let mut signed = Vec::new();
    signed.extend(der_tlv(0x02, &[1])); // version
    signed.extend(der_tlv(0x31, &[])); // digestAlgorithms
    signed.extend(der_tlv(0x30, OID_DATA)); // encapContentInfo
    if let Some(certs) = certs {
        signed.extend(der_tlv(0xa0, &certs.concat()));
    }
    signed.extend(der_tlv(0x31, &[])); // signerInfos
    let signed = der_tlv(0x30, &signed);
    let mut info = OID_SIGNED_DATA.to_vec();
    info.extend(der_tlv(0xa0, &signed));
    der_tlv(0x30, &info)
}

/// The same bundle in BER with indefinite lengths, as Windows certificate export writes it.
pub fn pkcs7_ber(certs: &[&[u8]]) -> Vec<u8> {
    let mut signed = Vec::new();
    signed.extend(der_tlv(0x02, &[1]));
    signed.extend(der_tlv(0x31, &[]));
    signed.extend(ber_indefinite(0x30, OID_DATA));
    signed.extend(ber_indefinite(0xa0, &certs.concat()));
    signed.extend(der_tlv(0x31, &[]));
    let signed = ber_indefinite(0x30, &signed);
    let mut info = OID_SIGNED_DATA.to_vec();
    info.extend(ber_indefinite(0xa0, &signed));
    ber_indefinite(0x30, &info)
}

//! Telling DER structures apart by their content: a certificate, a PKCS#7 certs-only
//! bundle, a CSR, a CRL or a private key. Labels and file names lie; the ASN.1 does not.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use x509_parser::prelude::FromDer;

/// id-signedData, 1.2.840.113549.1.7.2 (RFC 5652 §5.1).
const ID_SIGNED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// The same OID as DER bytes, to spot BER bundles the strict decoder refuses.
const SIGNED_DATA_OID_DER: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerKind {
    /// One X.509 certificate (exactly its own DER, trailing bytes cut off).
    Certificate(Vec<u8>),
    /// The certificates of a PKCS#7 / CMS SignedData, in the order stored.
    Bundle(Vec<Vec<u8>>),
    SigningRequest,
    PrivateKey,
    /// Could not be read as any of the above; says why.
    Unreadable(String),
}

pub fn classify_der(der: &[u8]) -> DerKind {
    let cert_error = match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) => return DerKind::Certificate(der[..der.len() - rest.len()].to_vec()),
        Err(e) => e,
    };
    if let Some(bundle) = pkcs7_certificates(der) {
        return bundle;
    }
    if x509_parser::certification_request::X509CertificationRequest::from_der(der).is_ok() {
        return DerKind::SigningRequest;
    }
    if x509_parser::revocation_list::CertificateRevocationList::from_der(der).is_ok() {
        return DerKind::Unreadable("a certificate revocation list, not a certificate".into());
    }
    if is_private_key(der) {
        return DerKind::PrivateKey;
    }
    DerKind::Unreadable(format!(
        "not a certificate, PKCS#7 bundle or CSR ({} bytes; as a certificate: {cert_error})",
        der.len()
    ))
}

/// Certificates of a PKCS#7 certs-only bundle (`.p7b`), or `None` if `der` is not one.
fn pkcs7_certificates(der: &[u8]) -> Option<DerKind> {
    match ContentInfo::from_der(der) {
        Ok(info) if info.content_type == ID_SIGNED_DATA => {
            let signed = match info.content.decode_as::<SignedData>() {
                Ok(signed) => signed,
                Err(e) => return Some(DerKind::Unreadable(format!("PKCS#7 SignedData is malformed: {e}"))),
            };
            let mut certs = Vec::new();
            for choice in signed.certificates.iter().flat_map(|set| set.0.iter()) {
                if let CertificateChoices::Certificate(cert) = choice {
                    match cert.to_der() {
                        Ok(bytes) => certs.push(bytes),
                        Err(e) => {
                            return Some(DerKind::Unreadable(format!(
                                "PKCS#7 bundle holds a certificate that cannot be re-encoded: {e}"
                            )));
                        }
                    }
                }
            }
            Some(DerKind::Bundle(certs))
        }
        Ok(_) => None,
        // Windows writes .p7b in BER (indefinite lengths), which the DER decoder refuses;
        // the certificates inside are still DER, so look for them one by one.
        Err(_) if der.len() > 2 && der[..der.len().min(64)].windows(11).any(|w| w == SIGNED_DATA_OID_DER) => {
            Some(DerKind::Bundle(embedded_certificates(der)))
        }
        Err(_) => None,
    }
}

/// Certificates embedded anywhere in `der`, found by trying each SEQUENCE start.
fn embedded_certificates(der: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 4 < der.len() {
        // A certificate is a SEQUENCE with a long-form length (0x82/0x83: hundreds of bytes).
        if der[at] == 0x30 && matches!(der[at + 1], 0x82 | 0x83) {
            if let Ok((rest, _)) = x509_parser::parse_x509_certificate(&der[at..]) {
                let len = der.len() - at - rest.len();
                found.push(der[at..at + len].to_vec());
                at += len;
                continue;
            }
        }
        at += 1;
    }
    found
}

fn is_private_key(der: &[u8]) -> bool {
    pkcs8::PrivateKeyInfo::try_from(der).is_ok()
        || pkcs8::EncryptedPrivateKeyInfo::try_from(der).is_ok()
        || pkcs1::RsaPrivateKey::try_from(der).is_ok()
        || sec1::EcPrivateKey::try_from(der).is_ok()
}

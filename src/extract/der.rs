//! Telling DER structures apart by their content: a certificate, a PKCS#7 certs-only
//! bundle, a CSR, a CRL or a private key. Labels and file names lie; the ASN.1 does not.

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::asn1::{Any, AnyRef};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
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
        // nom's own words ("Parsing requires 1 bytes/chars") mean the data stops early.
        Err(x509_parser::nom::Err::Incomplete(_)) => {
            "it ends before its first structure does (truncated)".into()
        }
        Err(e) => e.to_string(),
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
                Err(e) => {
                    // The strict decoder refuses the whole bundle for one certificate it
                    // does not like (x509-parser is more forgiving), so look for them one
                    // by one before giving up.
                    let found = embedded_certificates(der);
                    if found.is_empty() {
                        return Some(DerKind::Unreadable(format!(
                            "PKCS#7 SignedData is malformed: {e}"
                        )));
                    }
                    return Some(DerKind::Bundle(found));
                }
            };
            if signed.certificates.is_none() {
                return Some(DerKind::Bundle(Vec::new()));
            }
            // The decoder sorts a SET OF into DER order, but OpenSSL writes a bundle in file
            // order (leaf first, usually), and places such as "bundle certificate 2" must
            // point into the file as it is. So take the certificates from the stored bytes,
            // now known to be well-formed, which also keeps them byte for byte.
            match stored_certificates(&info.content) {
                Ok(certs) => Some(DerKind::Bundle(certs)),
                Err(e) => Some(DerKind::Unreadable(format!(
                    "PKCS#7 SignedData is malformed: {e}"
                ))),
            }
        }
        Ok(_) => None,
        // Windows writes .p7b in BER (indefinite lengths), which the DER decoder refuses;
        // the certificates inside are still DER, so look for them one by one.
        Err(_)
            if der.len() > 2
                && der[..der.len().min(64)]
                    .windows(11)
                    .any(|w| w == SIGNED_DATA_OID_DER) =>
        {
            Some(DerKind::Bundle(embedded_certificates(der)))
        }
        Err(_) => None,
    }
}

/// The certificates of a SignedData, in stored order: the SEQUENCEs (plain X.509; the
/// other CertificateChoices are tagged [1]–[3]) of its `certificates [0] IMPLICIT` field.
fn stored_certificates(signed_data: &Any) -> der::Result<Vec<Vec<u8>>> {
    let mut fields = SliceReader::new(signed_data.value())?;
    // version, digestAlgorithms, encapContentInfo
    for _ in 0..3 {
        AnyRef::decode(&mut fields)?;
    }
    let mut certs = Vec::new();
    if fields.is_finished() {
        return Ok(certs);
    }
    let field = AnyRef::decode(&mut fields)?;
    if field.tag()
        != (Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        })
    {
        return Ok(certs);
    }
    let mut choices = SliceReader::new(field.value())?;
    while !choices.is_finished() {
        let choice = AnyRef::decode(&mut choices)?;
        if choice.tag() == Tag::Sequence {
            certs.push(choice.to_der()?);
        }
    }
    Ok(certs)
}

/// Certificates embedded anywhere in `der`, found by trying each SEQUENCE start.
fn embedded_certificates(der: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 4 < der.len() {
        // A certificate is a SEQUENCE with a long-form length (0x82/0x83: hundreds of bytes).
        if der[at] == 0x30
            && matches!(der[at + 1], 0x82 | 0x83)
            && let Ok((rest, _)) = x509_parser::parse_x509_certificate(&der[at..])
        {
            let len = der.len() - at - rest.len();
            found.push(der[at..at + len].to_vec());
            at += len;
            continue;
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

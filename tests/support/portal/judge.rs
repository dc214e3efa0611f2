//! The judge of uploads: what `createObject` and `editObject` check before a certificate
//! is stored (§2.1, §2.3), and what the portal extracts from it.
//!
//! The judging is done with OpenSSL, not with `fulfill`'s own key and certificate code
//! (RustCrypto, x509-parser): a portal that agreed with the client because it ran the
//! client's code could not catch the client's mistakes.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::ec::EcKey;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameRef, X509Req};
use time::OffsetDateTime;

use super::error::ApiError;

/// A certificate, key and chain that passed the checks, with what the portal extracts.
pub(crate) struct Checked {
    pub(crate) common_name: String,
    pub(crate) organization_name: String,
    pub(crate) validity_begin: OffsetDateTime,
    pub(crate) validity_end: OffsetDateTime,
    pub(crate) key_size: usize,
    pub(crate) sha256: String,
}

/// The `createObject` checks (§2.1, §2.3): the certificate parses, the private key's public
/// key is the certificate's, and a given intermediate parses and signed the certificate.
/// CHOICE: the real messages are undocumented (§6 item 3); each names its problem, with
/// class SoftLayer_Exception_Public.
pub(crate) fn check_certificate(
    certificate: &str,
    private_key: &str,
    intermediate: Option<&str>,
    csr: Option<&str>,
) -> Result<Checked, ApiError> {
    let leaf_ders = pem_certificates(certificate, "certificate")?;
    if leaf_ders.len() != 1 {
        // CHOICE: a chain pasted into `certificate` is refused rather than cut; it belongs
        // in intermediateCertificate.
        return Err(ApiError::public(format!(
            "The certificate must hold exactly one certificate, found {}; put the chain in intermediateCertificate.",
            leaf_ders.len()
        )));
    }
    let leaf = parse_certificate(&leaf_ders[0], "certificate")?;
    let leaf_key = leaf
        .public_key()
        .map_err(|e| e.to_string())
        .and_then(|key| supported(&key).map(|()| key))
        .map_err(|e| {
            ApiError::public(format!("Unable to read the certificate's public key: {e}"))
        })?;

    let key = read_private_key(private_key)
        .map_err(|e| ApiError::public(format!("Unable to parse the private key: {e}")))?;
    if !key.public_eq(&leaf_key) {
        return Err(ApiError::public(
            "The private key does not match the certificate.",
        ));
    }

    if let Some(chain) = intermediate {
        let parsed = pem_certificates(chain, "intermediate certificate")?
            .iter()
            .map(|der| parse_certificate(der, "intermediate certificate"))
            .collect::<Result<Vec<_>, _>>()?;
        // CHOICE: the chain must be in order, the leaf's issuer first (as clients send it).
        if !signed_by(&leaf, &parsed[0]) {
            return Err(ApiError::public(
                "The intermediate certificate did not sign the certificate.",
            ));
        }
        if parsed.windows(2).any(|pair| !signed_by(&pair[0], &pair[1])) {
            return Err(ApiError::public(
                "The intermediate certificates do not form a chain (each must be signed by the next).",
            ));
        }
    }

    if let Some(csr) = csr {
        // IBM docs (§2.3): the CSR "must not be replaced by the Private Key".
        if csr.contains("PRIVATE KEY") {
            return Err(ApiError::public(
                "The certificate signing request must not be a private key.",
            ));
        }
    }

    let common_name = first_entry(leaf.subject_name(), Nid::COMMONNAME)
        .or_else(|| {
            leaf.subject_alt_names()?
                .iter()
                .find_map(|name| name.dnsname().map(str::to_string))
        })
        .unwrap_or_default();
    let organization_name = first_entry(leaf.subject_name(), Nid::ORGANIZATIONNAME)
        .unwrap_or_else(|| "Unspecified".to_string());
    let sha256 = leaf
        .digest(MessageDigest::sha256())
        .map_err(|e| ApiError::public(format!("Unable to hash the certificate: {e}")))?;
    Ok(Checked {
        common_name,
        organization_name,
        validity_begin: unix_time(leaf.not_before()),
        validity_end: unix_time(leaf.not_after()),
        key_size: usize::try_from(leaf_key.bits()).unwrap_or(0),
        sha256: hex::encode(sha256),
    })
}

/// The DER of each CERTIFICATE block of a PEM text.
fn pem_certificates(text: &str, what: &str) -> Result<Vec<Vec<u8>>, ApiError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| ApiError::public(format!("Unable to parse the {what}: {e}")))?;
    if blocks.is_empty() {
        return Err(ApiError::public(format!(
            "Unable to parse the {what}: no PEM block found."
        )));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == "CERTIFICATE" {
                Ok(block.into_contents())
            } else {
                Err(ApiError::public(format!(
                    "Unable to parse the {what}: unexpected PEM block '{}'.",
                    block.tag()
                )))
            }
        })
        .collect()
}

/// One DER certificate and nothing after it.
fn parse_certificate(der: &[u8], what: &str) -> Result<X509, ApiError> {
    let certificate = X509::from_der(der)
        .map_err(|e| ApiError::public(format!("Unable to parse the {what}: {e}")))?;
    // OpenSSL reads the first certificate and ignores what follows; it re-encodes what it
    // read byte for byte, so a longer input had something after the certificate.
    if certificate
        .to_der()
        .is_ok_and(|again| again.len() == der.len())
    {
        Ok(certificate)
    } else {
        Err(ApiError::public(format!(
            "Unable to parse the {what}: trailing data after the certificate."
        )))
    }
}

/// The first private key of a key text. Every key (and CSR) block in it must decode; an
/// encrypted key is refused, as the portal has no passphrase. No key at all is an error.
fn read_private_key(text: &str) -> Result<PKey<Private>, String> {
    let blocks = pem::parse_many(text).map_err(|e| e.to_string())?;
    let mut first = None;
    for block in blocks {
        let der = block.contents();
        let encrypted = block.tag() == "ENCRYPTED PRIVATE KEY"
            || block
                .headers()
                .get("Proc-Type")
                .is_some_and(|v| v.contains("ENCRYPTED"));
        if encrypted {
            return Err("the key is encrypted.".to_string());
        }
        let key = match block.tag() {
            "PRIVATE KEY" => PKey::private_key_from_pkcs8(der),
            "RSA PRIVATE KEY" => Rsa::private_key_from_der(der).and_then(PKey::from_rsa),
            "EC PRIVATE KEY" => EcKey::private_key_from_der(der).and_then(PKey::from_ec_key),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                let request =
                    X509Req::from_der(der).map_err(|e| format!("bad certificate request: {e}"))?;
                let key = request.public_key().map_err(|e| e.to_string())?;
                supported(&key)?;
                continue;
            }
            _ => continue,
        };
        let key = key.map_err(|e| format!("{} block: {e}", block.tag()))?;
        supported(&key)?;
        first.get_or_insert(key);
    }
    first.ok_or_else(|| "no private key found.".to_string())
}

/// CHOICE: RSA, and EC on P-256 or P-384, are the key types the portal takes; others are
/// refused (the real list is undocumented).
fn supported<T: HasPublic>(key: &PKeyRef<T>) -> Result<(), String> {
    if key.id() == Id::RSA {
        return Ok(());
    }
    if key.id() != Id::EC {
        let name = Nid::from_raw(key.id().as_raw()).short_name();
        return Err(format!(
            "unsupported key type {}",
            name.unwrap_or("(unknown)")
        ));
    }
    let curve = key.ec_key().ok().and_then(|k| k.group().curve_name());
    match curve {
        Some(nid) if nid == Nid::X9_62_PRIME256V1 || nid == Nid::SECP384R1 => Ok(()),
        Some(nid) => Err(format!(
            "unsupported EC curve {}",
            nid.short_name().unwrap_or("(unknown)")
        )),
        None => Err("unsupported EC curve (unnamed)".to_string()),
    }
}

/// Whether `issuer`'s key verifies `certificate`'s signature.
fn signed_by(certificate: &X509, issuer: &X509) -> bool {
    issuer
        .public_key()
        .and_then(|key| certificate.verify(&key))
        .unwrap_or(false)
}

/// The first value of a name attribute, as text.
fn first_entry(name: &X509NameRef, nid: Nid) -> Option<String> {
    let entry = name.entries_by_nid(nid).next()?;
    entry.data().to_string().ok()
}

fn unix_time(t: &Asn1TimeRef) -> OffsetDateTime {
    Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(t))
        .ok()
        .and_then(|d| {
            let seconds = i64::from(d.days) * 86_400 + i64::from(d.secs);
            OffsetDateTime::from_unix_timestamp(seconds).ok()
        })
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

//! The judge of uploads: what `createObject` and `editObject` check before a certificate
//! is stored (§2.1, §2.3), and what the portal extracts from it.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

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
    let leaf_key = fulfill::keys::from_spki(leaf.public_key()).map_err(|e| {
        ApiError::public(format!("Unable to read the certificate's public key: {e}"))
    })?;

    let materials = fulfill::keys::read_key_material(private_key.as_bytes())
        .map_err(|e| ApiError::public(format!("Unable to parse the private key: {e}")))?;
    let key = materials
        .iter()
        .find_map(|m| match m {
            fulfill::keys::KeyMaterial::PrivateKey(key) => Some(key),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::public("Unable to parse the private key: no private key found.")
        })?;
    if *key != leaf_key {
        return Err(ApiError::public(
            "The private key does not match the certificate.",
        ));
    }

    if let Some(chain) = intermediate {
        let ders = pem_certificates(chain, "intermediate certificate")?;
        let parsed = ders
            .iter()
            .map(|der| parse_certificate(der, "intermediate certificate"))
            .collect::<Result<Vec<_>, _>>()?;
        // CHOICE: the chain must be in order, the leaf's issuer first (as clients send it).
        if leaf.verify_signature(Some(parsed[0].public_key())).is_err() {
            return Err(ApiError::public(
                "The intermediate certificate did not sign the certificate.",
            ));
        }
        for pair in parsed.windows(2) {
            if pair[0]
                .verify_signature(Some(pair[1].public_key()))
                .is_err()
            {
                return Err(ApiError::public(
                    "The intermediate certificates do not form a chain (each must be signed by the next).",
                ));
            }
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

    let common_name = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .or_else(|| {
            leaf.subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|name| match name {
                        GeneralName::DNSName(dns) => Some(dns.to_string()),
                        _ => None,
                    })
                })
        })
        .unwrap_or_default();
    let organization_name = leaf
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map_or_else(|| "Unspecified".to_string(), str::to_string);
    let validity = leaf.validity();
    let to_time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let key_size = leaf
        .public_key()
        .parsed()
        .map(|k| k.key_size())
        .unwrap_or(0);
    Ok(Checked {
        common_name,
        organization_name,
        validity_begin: to_time(&validity.not_before),
        validity_end: to_time(&validity.not_after),
        key_size,
        sha256: fulfill::extract::sha256_hex(&leaf_ders[0]),
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

fn parse_certificate<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, ApiError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(ApiError::public(format!(
            "Unable to parse the {what}: trailing data after the certificate."
        ))),
        Err(e) => Err(ApiError::public(format!("Unable to parse the {what}: {e}"))),
    }
}

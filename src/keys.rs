//! Private keys and CSRs → the public key they stand for, so a certificate can be tied to
//! an order by its key (design rule 1), never by the mail's subject or sender.
//!
//! Pure: bytes in, identities out. A private key is read only to compute its public key;
//! nothing secret is kept in any value this module returns.

use der::Decode;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// rsaEncryption, 1.2.840.113549.1.1.1 (RFC 8017 appendix C).
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// id-ecPublicKey, 1.2.840.10045.2.1 (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp256r1 and secp384r1 (RFC 5480 §2.1.1.1).
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
}

/// A public key in a normal form: the same key compares equal whether it came from a
/// certificate, a CSR, or a PKCS#1, PKCS#8 or SEC1 private key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKeyId {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// The uncompressed point (0x04 || x || y).
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

impl PublicKeyId {
    /// "RSA 2048" or "EC P-256", for messages.
    pub fn describe(&self) -> String {
        match self {
            PublicKeyId::Rsa { modulus, .. } => format!("RSA {}", bit_length(modulus)),
            PublicKeyId::Ec {
                curve: Curve::P256, ..
            } => "EC P-256".into(),
            PublicKeyId::Ec {
                curve: Curve::P384, ..
            } => "EC P-384".into(),
        }
    }

    /// Short hex fingerprint of the public key, to name a key in messages.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        match self {
            PublicKeyId::Rsa { modulus, exponent } => {
                hasher.update(b"rsa");
                hasher.update(modulus);
                hasher.update(exponent);
            }
            PublicKeyId::Ec { point, .. } => {
                hasher.update(b"ec");
                hasher.update(point);
            }
        }
        hex::encode(&hasher.finalize()[..8])
    }
}

fn bit_length(modulus: &[u8]) -> usize {
    match modulus.first() {
        Some(&first) => modulus.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the private key is encrypted; fulfill cannot use it. Decrypt it to a file only root can read (e.g. `openssl pkey -in KEY -out KEY.plain`)"
    )]
    Encrypted,
    #[error("unsupported key type {0}: only RSA, EC P-256 and EC P-384 are supported")]
    Unsupported(String),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("no private key or certificate signing request found")]
    NothingFound,
    #[error("no private key in the file has the public key {0}")]
    NoMatchingKey(String),
}

fn malformed(what: &'static str) -> impl Fn(String) -> KeyError {
    move |why| KeyError::Malformed { what, why }
}

/// What a key file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    PrivateKey(PublicKeyId),
    /// A CSR, with the name it asked for (its common name, else its first DNS name).
    SigningRequest {
        key: PublicKeyId,
        name: Option<String>,
    },
}

impl KeyMaterial {
    pub fn key(&self) -> &PublicKeyId {
        match self {
            KeyMaterial::PrivateKey(key) | KeyMaterial::SigningRequest { key, .. } => key,
        }
    }
}

/// Reads a key file's bytes: PEM (any number of blocks) or a single DER structure.
/// PEM blocks that are neither keys nor CSRs (certificates, EC PARAMETERS) are skipped.
pub fn read_key_material(bytes: &[u8]) -> Result<Vec<KeyMaterial>, KeyError> {
    if !is_pem(bytes) {
        return read_der_key_material(bytes).map(|m| vec![m]);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| KeyError::Malformed {
        what: "PEM file",
        why: e.to_string(),
    })?;
    let mut found = Vec::new();
    for block in blocks {
        let der = block.contents();
        let material = match block.tag() {
            "PRIVATE KEY" => KeyMaterial::PrivateKey(from_pkcs8(der)?),
            "RSA PRIVATE KEY" | "EC PRIVATE KEY"
                if block
                    .headers()
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED")) =>
            {
                return Err(KeyError::Encrypted);
            }
            "RSA PRIVATE KEY" => KeyMaterial::PrivateKey(from_pkcs1(der)?),
            "EC PRIVATE KEY" => KeyMaterial::PrivateKey(from_sec1(der)?),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => from_csr(der)?,
            _ => continue,
        };
        found.push(material);
    }
    if found.is_empty() {
        return Err(KeyError::NothingFound);
    }
    Ok(found)
}

/// The one private key in `bytes` whose public key is `wanted`, as PEM under the label of
/// its form ("PRIVATE KEY" for PKCS#8, "RSA PRIVATE KEY", "EC PRIVATE KEY"). A key file
/// may hold several keys, or a DER key: the portal is sent exactly this one, as PEM
/// (docs/softlayer-api.md §2.3), and no other key in the file leaves the machine.
pub fn private_key_pem(bytes: &[u8], wanted: &PublicKeyId) -> Result<String, KeyError> {
    let candidates: Vec<(&'static str, Vec<u8>)> = if is_pem(bytes) {
        let blocks = pem::parse_many(bytes).map_err(|e| KeyError::Malformed {
            what: "PEM file",
            why: e.to_string(),
        })?;
        (blocks.into_iter())
            .filter_map(|block| {
                let label = private_key_label(block.tag())?;
                Some((label, block.into_contents()))
            })
            .collect()
    } else {
        der_private_key_label(bytes)
            .map(|label| (label, bytes.to_vec()))
            .into_iter()
            .collect()
    };
    for (label, der) in candidates {
        let key = match label {
            "PRIVATE KEY" => from_pkcs8(&der),
            "RSA PRIVATE KEY" => from_pkcs1(&der),
            _ => from_sec1(&der),
        };
        if key.as_ref() == Ok(wanted) {
            let block = pem::Pem::new(label, der);
            let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            return Ok(pem::encode_config(&block, config));
        }
    }
    Err(KeyError::NoMatchingKey(format!(
        "{} ({})",
        wanted.describe(),
        wanted.fingerprint()
    )))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The labels of unencrypted private keys, as `pem` reports them.
fn private_key_label(tag: &str) -> Option<&'static str> {
    match tag {
        "PRIVATE KEY" => Some("PRIVATE KEY"),
        "RSA PRIVATE KEY" => Some("RSA PRIVATE KEY"),
        "EC PRIVATE KEY" => Some("EC PRIVATE KEY"),
        _ => None,
    }
}

/// The PEM label a DER private key would carry, by its form.
fn der_private_key_label(der: &[u8]) -> Option<&'static str> {
    if pkcs8::PrivateKeyInfo::try_from(der).is_ok() {
        Some("PRIVATE KEY")
    } else if pkcs1::RsaPrivateKey::try_from(der).is_ok() {
        Some("RSA PRIVATE KEY")
    } else if sec1::EcPrivateKey::from_der(der).is_ok() {
        Some("EC PRIVATE KEY")
    } else {
        None
    }
}

fn read_der_key_material(der: &[u8]) -> Result<KeyMaterial, KeyError> {
    if pkcs8::EncryptedPrivateKeyInfo::try_from(der).is_ok() {
        return Err(KeyError::Encrypted);
    }
    if pkcs8::PrivateKeyInfo::try_from(der).is_ok() {
        return from_pkcs8(der).map(KeyMaterial::PrivateKey);
    }
    if pkcs1::RsaPrivateKey::try_from(der).is_ok() {
        return from_pkcs1(der).map(KeyMaterial::PrivateKey);
    }
    if sec1::EcPrivateKey::from_der(der).is_ok() {
        return from_sec1(der).map(KeyMaterial::PrivateKey);
    }
    if X509CertificationRequest::from_der(der).is_ok() {
        return from_csr(der);
    }
    Err(KeyError::NothingFound)
}

fn from_pkcs8(der: &[u8]) -> Result<PublicKeyId, KeyError> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| malformed("PKCS#8 private key")(e.to_string()))?;
    let algorithm = info.algorithm.oid.to_string();
    match algorithm.as_str() {
        RSA_ENCRYPTION => from_pkcs1(info.private_key),
        EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| malformed("PKCS#8 EC private key")(e.to_string()))?
                .to_string();
            match curve.as_str() {
                P256 => p256::SecretKey::from_pkcs8_der(der)
                    .map(|k| {
                        ec_id(
                            Curve::P256,
                            k.public_key().to_encoded_point(false).as_bytes(),
                        )
                    })
                    .map_err(|e| malformed("PKCS#8 P-256 private key")(e.to_string())),
                P384 => p384::SecretKey::from_pkcs8_der(der)
                    .map(|k| {
                        ec_id(
                            Curve::P384,
                            k.public_key().to_encoded_point(false).as_bytes(),
                        )
                    })
                    .map_err(|e| malformed("PKCS#8 P-384 private key")(e.to_string())),
                other => Err(KeyError::Unsupported(format!("EC curve {other}"))),
            }
        }
        other => Err(KeyError::Unsupported(format!("algorithm {other}"))),
    }
}

fn from_pkcs1(der: &[u8]) -> Result<PublicKeyId, KeyError> {
    let key = pkcs1::RsaPrivateKey::try_from(der)
        .map_err(|e| malformed("RSA private key")(e.to_string()))?;
    Ok(rsa_id(
        key.modulus.as_bytes(),
        key.public_exponent.as_bytes(),
    ))
}

fn from_sec1(der: &[u8]) -> Result<PublicKeyId, KeyError> {
    let key = sec1::EcPrivateKey::from_der(der)
        .map_err(|e| malformed("EC private key")(e.to_string()))?;
    // The curve parameter is optional in SEC1; the scalar's length tells the curve then.
    let curve = match key.parameters.and_then(|p| p.named_curve()) {
        Some(oid) if oid.to_string() == P256 => Curve::P256,
        Some(oid) if oid.to_string() == P384 => Curve::P384,
        Some(oid) => return Err(KeyError::Unsupported(format!("EC curve {oid}"))),
        None if key.private_key.len() == 32 => Curve::P256,
        None if key.private_key.len() == 48 => Curve::P384,
        None => {
            return Err(KeyError::Unsupported(format!(
                "EC key of {} bytes",
                key.private_key.len()
            )));
        }
    };
    match curve {
        Curve::P256 => p256::SecretKey::from_slice(key.private_key)
            .map(|k| ec_id(curve, k.public_key().to_encoded_point(false).as_bytes()))
            .map_err(|e| malformed("EC P-256 private key")(e.to_string())),
        Curve::P384 => p384::SecretKey::from_slice(key.private_key)
            .map(|k| ec_id(curve, k.public_key().to_encoded_point(false).as_bytes()))
            .map_err(|e| malformed("EC P-384 private key")(e.to_string())),
    }
}

fn from_csr(der: &[u8]) -> Result<KeyMaterial, KeyError> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| malformed("certificate signing request")(e.to_string()))?;
    let info = &csr.certification_request_info;
    let key = from_spki(&info.subject_pki)?;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let first_dns = csr.requested_extensions().and_then(|mut exts| {
        exts.find_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                san.general_names.iter().find_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
            }
            _ => None,
        })
    });
    Ok(KeyMaterial::SigningRequest {
        key,
        name: common_name.or(first_dns),
    })
}

/// The key of a certificate or CSR.
pub fn from_spki(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<PublicKeyId, KeyError> {
    use x509_parser::public_key::PublicKey;
    let parsed = spki
        .parsed()
        .map_err(|e| malformed("public key")(e.to_string()))?;
    match parsed {
        PublicKey::RSA(rsa) => Ok(rsa_id(rsa.modulus, rsa.exponent)),
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                // Normalise compressed points, which some encoders emit, to uncompressed.
                Some(P256) => p256::PublicKey::from_sec1_bytes(point.data())
                    .map(|k| ec_id(Curve::P256, k.to_encoded_point(false).as_bytes()))
                    .map_err(|e| malformed("P-256 public key")(e.to_string())),
                Some(P384) => p384::PublicKey::from_sec1_bytes(point.data())
                    .map(|k| ec_id(Curve::P384, k.to_encoded_point(false).as_bytes()))
                    .map_err(|e| malformed("P-384 public key")(e.to_string())),
                other => Err(KeyError::Unsupported(format!(
                    "EC curve {}",
                    other.unwrap_or("(none)")
                ))),
            }
        }
        _ => Err(KeyError::Unsupported(
            spki.algorithm.algorithm.to_id_string(),
        )),
    }
}

fn rsa_id(modulus: &[u8], exponent: &[u8]) -> PublicKeyId {
    let strip = |b: &[u8]| {
        let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[first..].to_vec()
    };
    PublicKeyId::Rsa {
        modulus: strip(modulus),
        exponent: strip(exponent),
    }
}

fn ec_id(curve: Curve, point: &[u8]) -> PublicKeyId {
    PublicKeyId::Ec {
        curve,
        point: point.to_vec(),
    }
}

//! `keys::read_key_material` for every key form fulfill accepts, the ones it refuses with a
//! clear error, and the identity that ties a key to its certificate (rule 1 of docs/architecture.md).

use fulfill_test_pki as pki;

use fulfill::keys::{self, Curve, KeyError, KeyMaterial, PublicKeyId};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use pki::{LeafSpec, RawPublicKey};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};

// Made with OpenSSL 3.0 (`openssl genpkey ... -aes-256-cbc`, `openssl genrsa -traditional
// -aes128`, `openssl ec -aes128`), password "secret": real encrypted keys as users have them.
const ENCRYPTED_PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhTUKdA7E/bIAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEKfsqtRpjcgRjwQ7ZvXcq9kEgZBG
iAM8qQXfFt8NjrNKnwM21k6E/XGWMCPerHHch7E2ZoT/25c2qGbBc3fZVjE/8Icu
EqKM4wBLrhxArUf2k2Y9NBD0ft4hW+CHG2unVAdPgv6XWq9PzeKz4X2fmtQzE6rw
QREYF/OGPozT+I7TSjrW550SM4zw/jvcXmV/s7kiJbcWGl3CHMufO+0P7Pp2Ym8=
-----END ENCRYPTED PRIVATE KEY-----
";

const LEGACY_ENCRYPTED_RSA: &str = "-----BEGIN RSA PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,277A3332B6DBAADF8753E4F033F900A2

efKNk5msPs6JHLnL326iOz97FCsT+JTO82M8veSHjfTzxfkkvJA1ORjnEBitXG69
+gqt843scrtiD8x+TA6mROf9E31blRX+q/YT7RiUKEEferoyH2bRMyGATKucltBZ
QzyZvi4827+YyLE4bhWbfHesEJVbS8qApPwIZS1jOsKAVSbYIEeo7jH6Xa77oImb
YMf1lGwHbzRW87csgUXWUEcEpf2owqCGLJZyPFlVnv9JdhEl+VVhjrWBp2RtJhQ5
ivjsgsIJubGYVjJo3ouKHv/ZQt0aze3r6oOlsgse9Pne5UXHOSHGoBYSUKzfvGI3
M1HFY7Eh6PY/j4fM3Ogt2E2eaIoSDK8Tkp2bxoM8pMPTgzrWnaeRglzk+hZOPzQi
nYt3rjtjmYjeJAnunc2nhNAM9yvp7J5x4s84qmidLgHjmWEmXKOESw0kPCXSmHpT
JUwuLOnyk4RGpuxp+vM9myomKLmr+NEL9figj2cmXbdtrq/gKhNVDSq9DQ0XQF7o
fBuomWqwWyjHfrF/mTK0ghKfLh+mfkU987nD7GyuWErBMWRWKW6HWFAyKWaRdrXd
p3qZQlt4rQDPo3fsWAp18jN3/DV1GPlIr+4aJra3ReWANQBTuyJXpqldYZigGC6i
qcR74V2mpPI6ojVQ2zZU7Ru+El9YEC7Dpq5KkZe0hT0Elj1PFV5JgE2dEM37zQ8v
ZCBHy/y6JYksbuHG5/gdeMZ57vAGbhprgsE/OV+UOUfM2x1qyJv+qBvAQZ4t8rRl
zaEyk5dRA2q5mDE52HpKL1Oyy+P4FARTOT4POSiJ+x+FD32MyK14YhoTCydntg6h
-----END RSA PRIVATE KEY-----
";

const LEGACY_ENCRYPTED_EC: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,B387AAEEA4C4A681292990D5FB866565

buAmVo/UqUf8xEbp0AFltsgeZ6F1iyhX/t2g+P67fvMF46MgOUALy6EDnQoRR/wq
w74FmQTGBYZR8OT7u8Y7qxMBcxYV7dS2xoYjfGDvV2Ex7wrYa7oFezPHwCrEss5Z
yFazdhezrEMLd5/o+q5tDgkeuQTXgOjuEOmModL8jBM=
-----END EC PRIVATE KEY-----
";

// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521` and `:secp256k1`.
const P521_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIBfU5HPlJwwNyyAnMS
VHt4+vGCCq+QhzxWZLohOJXLwoIWNHReVjLB97wki9eXAvgceT2TkttbaR1Pfpmm
H+Wi6FWhgYkDgYYABADfIvK0sxzSq1X2viUo5J/Rzq4eHKjkcYgDkxWxaK6zPQjJ
FrnthMp3avBS6es7Pgt2nnn/1DN6N7TKb4a9Jd+EUQFdwNECdKHvI3pXjEiMnp7r
aCO5ZRXnl7yrFYHN0qn31QTPcBcOLRysY58CoqMfDKaiRhZHxRV1lm2e1dKv/12C
Jg==
-----END PRIVATE KEY-----
";

const SECP256K1_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgAmJiKXzY9jOGMpm5YYM4
ojN/b5d5iEqrEOHHavh0NoGhRANCAARCYcxmZuBS90zjF19mTtd3JAObHgvimc6E
jmkJTYGRabYuVvWmEM4iRmS7xPIKhCOinlBtvtpcwMXhsVXTkqDs
-----END PRIVATE KEY-----
";

fn only_private_key(bytes: &[u8]) -> PublicKeyId {
    match keys::read_key_material(bytes)
        .expect("key material")
        .as_slice()
    {
        [KeyMaterial::PrivateKey(key)] => key.clone(),
        other => panic!("expected one private key, got {other:?}"),
    }
}

fn only_csr(bytes: &[u8]) -> (PublicKeyId, Option<String>) {
    match keys::read_key_material(bytes)
        .expect("key material")
        .as_slice()
    {
        [KeyMaterial::SigningRequest { key, name }] => (key.clone(), name.clone()),
        other => panic!("expected one CSR, got {other:?}"),
    }
}

/// The key of a certificate, the way validate reads it.
fn cert_key(der: &[u8]) -> PublicKeyId {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
    keys::from_spki(cert.public_key()).expect("certificate key")
}

fn pem_decode(text: &str) -> Vec<u8> {
    pem::parse(text).expect("pem").into_contents()
}

fn rsa_key(bits: usize) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).expect("rsa key")
}

/// A certificate for an RSA key, signed by an EC test CA (rcgen's ring backend cannot
/// make RSA keys; it only needs the public half here).
fn rsa_cert(key: &rsa::RsaPrivateKey) -> Vec<u8> {
    let ca = pki::root("RSA test CA");
    let public = RawPublicKey {
        bytes: key
            .to_public_key()
            .to_pkcs1_der()
            .expect("pkcs1 public")
            .as_bytes()
            .to_vec(),
        algorithm: &rcgen::PKCS_RSA_SHA256,
    };
    pki::leaf_for_key(&LeafSpec::new(&["rsa.example.com"]), &public, &ca)
}

#[test]
fn rsa_pkcs1_and_pkcs8_pem_and_der_match_the_certificate() {
    let key = rsa_key(2048);
    let from_cert = cert_key(&rsa_cert(&key));
    assert_eq!(from_cert.describe(), "RSA 2048");

    let pkcs1_pem = key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1 pem");
    assert!(pkcs1_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let pkcs1_der = key.to_pkcs1_der().expect("pkcs1 der");
    let pkcs8_pem =
        rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::CRLF).expect("pkcs8 pem");
    assert!(pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let pkcs8_der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).expect("pkcs8 der");

    for (form, bytes) in [
        ("PKCS#1 PEM", pkcs1_pem.as_bytes()),
        ("PKCS#1 DER", pkcs1_der.as_bytes()),
        ("PKCS#8 PEM", pkcs8_pem.as_bytes()),
        ("PKCS#8 DER", pkcs8_der.as_bytes()),
    ] {
        assert_eq!(only_private_key(bytes), from_cert, "{form}");
    }
    // Another key is another identity.
    let other = rsa_key(1024);
    let other_id = only_private_key(other.to_pkcs1_der().expect("der").as_bytes());
    assert_ne!(other_id, from_cert);
    assert_eq!(other_id.describe(), "RSA 1024");
    assert_ne!(other_id.fingerprint(), from_cert.fingerprint());
}

#[test]
fn p256_sec1_and_pkcs8_match_the_certificate() {
    let ca = pki::root("EC test CA");
    let leaf = pki::leaf(&LeafSpec::new(&["ec.example.com"]), &ca);
    let from_cert = cert_key(&leaf.der);
    assert_eq!(from_cert.describe(), "EC P-256");
    assert!(
        matches!(&from_cert, PublicKeyId::Ec { curve: Curve::P256, point } if point.len() == 65 && point[0] == 4)
    );

    let pkcs8_der = leaf.key.serialize_der();
    let secret = p256::SecretKey::from_pkcs8_der(&pkcs8_der).expect("p256");
    let sec1_der = secret.to_sec1_der().expect("sec1 der");
    let sec1_pem = secret.to_sec1_pem(LineEnding::LF).expect("sec1 pem");
    let reencoded_pkcs8 = secret.to_pkcs8_der().expect("pkcs8");

    for (form, bytes) in [
        ("PKCS#8 PEM (ring)", leaf.key_pem().into_bytes()),
        ("PKCS#8 DER (ring)", pkcs8_der.clone()),
        (
            "PKCS#8 DER (RustCrypto)",
            reencoded_pkcs8.as_bytes().to_vec(),
        ),
        ("SEC1 PEM", sec1_pem.as_bytes().to_vec()),
        ("SEC1 DER", sec1_der.to_vec()),
        (
            "SEC1 without curve parameter",
            sec1_without_parameters(&secret.to_bytes()),
        ),
    ] {
        assert_eq!(only_private_key(&bytes), from_cert, "{form}");
    }
}

#[test]
fn p384_pkcs8_and_sec1_match_the_certificate() {
    let ca = pki::root("EC test CA");
    let leaf = pki::leaf(
        &LeafSpec::new(&["ec384.example.com"]).algorithm(&rcgen::PKCS_ECDSA_P384_SHA384),
        &ca,
    );
    let from_cert = cert_key(&leaf.der);
    assert_eq!(from_cert.describe(), "EC P-384");

    let pkcs8_der = leaf.key.serialize_der();
    let secret = p384::SecretKey::from_pkcs8_der(&pkcs8_der).expect("p384");
    let sec1_pem = secret.to_sec1_pem(LineEnding::LF).expect("sec1 pem");
    for (form, bytes) in [
        ("PKCS#8 PEM", leaf.key_pem().into_bytes()),
        ("PKCS#8 DER", pkcs8_der.clone()),
        ("SEC1 PEM", sec1_pem.as_bytes().to_vec()),
        ("SEC1 DER", secret.to_sec1_der().expect("sec1").to_vec()),
        (
            "SEC1 without curve parameter",
            sec1_without_parameters(&secret.to_bytes()),
        ),
    ] {
        assert_eq!(only_private_key(&bytes), from_cert, "{form}");
    }
}

/// SEC1 leaves the curve out when the context gives it; the scalar's length tells.
fn sec1_without_parameters(scalar: &[u8]) -> Vec<u8> {
    use sec1::der::Encode;
    sec1::EcPrivateKey {
        private_key: scalar,
        parameters: None,
        public_key: None,
    }
    .to_der()
    .expect("sec1")
}

#[test]
fn compressed_ec_point_in_a_certificate_is_the_same_key() {
    let ca = pki::root("EC test CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let secret = p256::SecretKey::from_pkcs8_der(&key.serialize_der()).expect("p256");
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let compressed = secret.public_key().to_encoded_point(true);
    let public = RawPublicKey {
        bytes: compressed.as_bytes().to_vec(),
        algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let cert = pki::leaf_for_key(&LeafSpec::new(&["c.example.com"]), &public, &ca);
    assert_eq!(
        cert_key(&cert),
        only_private_key(key.serialize_pem().as_bytes())
    );
}

#[test]
fn csr_gives_its_key_and_its_common_name_else_its_first_dns_name() {
    let key = rcgen::KeyPair::generate().expect("key");
    let private = only_private_key(key.serialize_pem().as_bytes());

    let with_cn = pki::csr_pem(
        &key,
        Some("www.example.com"),
        &["other.example.com", "www.example.com"],
    );
    assert_eq!(
        only_csr(with_cn.as_bytes()),
        (private.clone(), Some("www.example.com".into()))
    );

    let without_cn = pki::csr_pem(&key, None, &["shop.example.com", "www.shop.example.com"]);
    assert_eq!(
        only_csr(without_cn.as_bytes()),
        (private.clone(), Some("shop.example.com".into()))
    );

    let der = pki::csr_der(&key, None, &["der.example.com"]);
    assert_eq!(
        only_csr(&der),
        (private.clone(), Some("der.example.com".into()))
    );

    let nameless = pki::csr_der(&key, None, &[]);
    assert_eq!(only_csr(&nameless), (private.clone(), None));

    // The label older tools (Netscape, IIS) write.
    let new_label = with_cn.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(
        only_csr(new_label.as_bytes()).1.as_deref(),
        Some("www.example.com")
    );
}

#[test]
fn a_file_with_a_key_a_csr_and_other_blocks() {
    let ca = pki::root("EC test CA");
    let leaf = pki::leaf(&LeafSpec::new(&["www.example.com"]), &ca);
    let secret = p256::SecretKey::from_pkcs8_der(&leaf.key.serialize_der()).expect("p256");
    // `openssl ecparam -genkey` output: EC PARAMETERS, then the key; plus the certificate
    // and the CSR that people keep next to it.
    let file = format!(
        "Bag Attributes\n    friendlyName: www\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}{}{}",
        secret.to_sec1_pem(LineEnding::CRLF).expect("pem").as_str(),
        leaf.pem,
        pki::csr_pem(&leaf.key, Some("www.example.com"), &[])
    );
    let found = keys::read_key_material(file.as_bytes()).expect("material");
    assert_eq!(found.len(), 2, "{found:?}");
    let from_cert = cert_key(&leaf.der);
    assert_eq!(found[0], KeyMaterial::PrivateKey(from_cert.clone()));
    assert_eq!(
        found[1],
        KeyMaterial::SigningRequest {
            key: from_cert.clone(),
            name: Some("www.example.com".into())
        }
    );
    assert!(found.iter().all(|m| m.key() == &from_cert));

    // A certificate alone is no key material.
    assert_eq!(
        keys::read_key_material(leaf.pem.as_bytes()),
        Err(KeyError::NothingFound)
    );
    assert_eq!(
        keys::read_key_material(&leaf.der),
        Err(KeyError::NothingFound)
    );
}

#[test]
fn encrypted_keys_are_a_clear_error() {
    assert_eq!(
        keys::read_key_material(ENCRYPTED_PKCS8.as_bytes()),
        Err(KeyError::Encrypted)
    );
    assert_eq!(
        keys::read_key_material(&pem_decode(ENCRYPTED_PKCS8)),
        Err(KeyError::Encrypted)
    );
    assert_eq!(
        keys::read_key_material(LEGACY_ENCRYPTED_RSA.as_bytes()),
        Err(KeyError::Encrypted)
    );
    assert_eq!(
        keys::read_key_material(LEGACY_ENCRYPTED_EC.as_bytes()),
        Err(KeyError::Encrypted)
    );
    // With CRLF, as a key copied from Windows has it.
    let crlf = LEGACY_ENCRYPTED_RSA.replace('\n', "\r\n");
    assert_eq!(
        keys::read_key_material(crlf.as_bytes()),
        Err(KeyError::Encrypted)
    );
    let message = KeyError::Encrypted.to_string();
    assert!(
        message.contains("encrypted") && message.contains("openssl"),
        "{message}"
    );
}

#[test]
fn unsupported_key_types() {
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    for bytes in [
        ed25519.serialize_pem().into_bytes(),
        ed25519.serialize_der(),
    ] {
        match keys::read_key_material(&bytes) {
            Err(KeyError::Unsupported(what)) => assert!(what.contains("1.3.101.112"), "{what}"),
            other => panic!("Ed25519 must be unsupported, got {other:?}"),
        }
    }
    for (curve, pem) in [
        ("1.3.132.0.35", P521_PKCS8),
        ("1.3.132.0.10", SECP256K1_PKCS8),
    ] {
        match keys::read_key_material(pem.as_bytes()) {
            Err(KeyError::Unsupported(what)) => assert!(what.contains(curve), "{what}"),
            other => panic!("curve {curve} must be unsupported, got {other:?}"),
        }
    }
    // An Ed25519 certificate's key, as validate would meet it.
    let ca = pki::root("EC test CA");
    let leaf = pki::leaf(
        &LeafSpec::new(&["ed.example.com"]).algorithm(&rcgen::PKCS_ED25519),
        &ca,
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("certificate");
    assert!(matches!(
        keys::from_spki(cert.public_key()),
        Err(KeyError::Unsupported(_))
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let key = rcgen::KeyPair::generate().expect("key");
    let der = key.serialize_der();
    let mut flipped = der.clone();
    flipped[40] ^= 0xff;
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello world".to_vec(),
        vec![0x30],
        vec![0x30, 0x82, 0xff, 0xff],
        der[..der.len() / 2].to_vec(),
        flipped,
        b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\nMIIB".to_vec(),
        b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n".to_vec(),
        (0..=255u8).cycle().take(4096).collect(),
    ];
    for input in inputs {
        assert!(
            keys::read_key_material(&input).is_err(),
            "accepted garbage {:?}",
            String::from_utf8_lossy(&input)
        );
    }
    // A SEC1 key whose scalar is zero is no key.
    assert!(keys::read_key_material(&sec1_without_parameters(&[0u8; 32])).is_err());
}

/// The fingerprint as `PublicKeyId::fingerprint` documents it, computed here with sha2 from
/// the key as its maker holds it (rcgen's or the rsa crate's public key, never fulfill's
/// reading of a certificate): the first 8 bytes of SHA-256 over the tag and the key's parts,
/// in lowercase hex.
fn expected_fingerprint(tag: &[u8], parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(tag);
    for part in parts {
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..8])
}

#[test]
fn describe_and_fingerprint() {
    let ca = pki::root("EC test CA");
    let leaf_a = pki::leaf(&LeafSpec::new(&["a.example.com"]), &ca);
    let leaf_b = pki::leaf(&LeafSpec::new(&["b.example.com"]), &ca);
    let (a, b) = (cert_key(&leaf_a.der), cert_key(&leaf_b.der));
    assert_eq!(a.fingerprint().len(), 16);
    assert_ne!(a.fingerprint(), b.fingerprint());
    // EC: "ec" and the uncompressed point (0x04 || x || y), as ring made it for rcgen.
    for (leaf, id) in [(&leaf_a, &a), (&leaf_b, &b)] {
        let point = leaf.key.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        assert_eq!(id.fingerprint(), expected_fingerprint(b"ec", &[point]));
    }

    // RSA: "rsa", the modulus and the public exponent, big-endian without leading zeros.
    use rsa::traits::PublicKeyParts;
    let key = rsa_key(1024);
    let id = cert_key(&rsa_cert(&key));
    let (modulus, exponent) = (key.n().to_bytes_be(), key.e().to_bytes_be());
    assert_eq!(exponent, [0x01, 0x00, 0x01], "65537");
    assert_eq!(
        id.fingerprint(),
        expected_fingerprint(b"rsa", &[&modulus, &exponent])
    );
}

//! Generates the sample CA fulfillment emails, the test PKI and the matching keys.
//!
//! Usage: `cargo run --example gen-samples -- samples`
//!
//! File names are deterministic; keys, serial numbers and signatures are random on
//! every run. CA private keys are never written to disk, so regenerating replaces
//! the whole set (CA certificates, keys, CSRs and emails) at once.

use std::fs;
use std::io::{Cursor, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SerialNumber,
};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use sha2::Digest as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use time::macros::datetime;

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// The private key formats the samples rotate through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    RsaPkcs1,
    RsaPkcs8,
    P256Sec1,
    P256Pkcs8,
    P384Pkcs8,
}

impl KeyKind {
    fn is_rsa(self) -> bool {
        matches!(self, KeyKind::RsaPkcs1 | KeyKind::RsaPkcs8)
    }
}

/// A generated key: the rcgen signing handle plus the PEM text written to `keys/`.
struct OwnedKey {
    kp: KeyPair,
    file_pem: String,
}

fn gen_rsa() -> Result<(rsa::RsaPrivateKey, KeyPair)> {
    let sk = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let p8 = sk.to_pkcs8_der()?;
    let kp = KeyPair::try_from(p8.as_bytes()).context("loading RSA key into rcgen")?;
    Ok((sk, kp))
}

/// SEC1 `EC PRIVATE KEY` with the namedCurve parameters, as `openssl ecparam -genkey`
/// writes it. (`p256::SecretKey::to_sec1_pem` leaves the curve OID out, and OpenSSL
/// refuses such a key.)
fn p256_sec1_pem(pkcs8: &[u8]) -> Result<String> {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::AssociatedOid as _;
    use sec1::der::Encode as _;
    let sk = p256::SecretKey::from_pkcs8_der(pkcs8)?;
    let private_key = sk.to_bytes();
    let point = sk.public_key().to_encoded_point(false);
    let ec = sec1::EcPrivateKey {
        private_key: &private_key,
        parameters: Some(sec1::EcParameters::NamedCurve(p256::NistP256::OID)),
        public_key: Some(point.as_bytes()),
    };
    let der = ec.to_der()?;
    ensure!(
        p256::SecretKey::from_sec1_der(&der)? == sk,
        "SEC1 self-check failed"
    );
    Ok(pem_block("EC PRIVATE KEY", &der, 64))
}

fn gen_key(kind: KeyKind) -> Result<OwnedKey> {
    Ok(match kind {
        KeyKind::RsaPkcs1 => {
            let (sk, kp) = gen_rsa()?;
            let file_pem = sk.to_pkcs1_pem(LineEnding::LF)?.to_string();
            OwnedKey { kp, file_pem }
        }
        KeyKind::RsaPkcs8 => {
            let (sk, kp) = gen_rsa()?;
            let file_pem = sk.to_pkcs8_pem(LineEnding::LF)?.to_string();
            OwnedKey { kp, file_pem }
        }
        KeyKind::P256Sec1 => {
            let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let file_pem = p256_sec1_pem(kp.serialized_der())?;
            OwnedKey { kp, file_pem }
        }
        KeyKind::P256Pkcs8 => {
            let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let file_pem = pem_block("PRIVATE KEY", kp.serialized_der(), 64);
            OwnedKey { kp, file_pem }
        }
        KeyKind::P384Pkcs8 => {
            let kp = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
            // Round-trip through p384 to make sure the PKCS#8 document is standard.
            let sk = p384::SecretKey::from_pkcs8_der(kp.serialized_der())?;
            let file_pem = sk.to_pkcs8_pem(LineEnding::LF)?.to_string();
            OwnedKey { kp, file_pem }
        }
    })
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

fn random_serial(len: usize) -> SerialNumber {
    let mut bytes = vec![0u8; len.max(1)];
    rand::thread_rng().fill_bytes(&mut bytes);
    // Positive and exactly `len` bytes long once DER-encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(cn: &str, org: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "ZZ");
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = datetime!(2024-01-01 0:00 UTC);
    p.not_after = datetime!(2049-12-31 23:59:59 UTC);
    p.serial_number = Some(random_serial(16));
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

struct LeafOpts {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// Write basicConstraints CA:false instead of leaving the extension out.
    explicit_no_ca: bool,
    serial_len: usize,
}

impl LeafOpts {
    fn standard(explicit_no_ca: bool) -> Self {
        LeafOpts {
            not_before: datetime!(2025-06-01 0:00 UTC),
            not_after: datetime!(2045-06-01 0:00 UTC),
            explicit_no_ca,
            serial_len: 16,
        }
    }
}

fn issue_leaf(
    names: &[&str],
    key: &KeyPair,
    rsa: bool,
    issuer: &Issuer<'_, KeyPair>,
    opts: &LeafOpts,
) -> Result<Vec<u8>> {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    p.distinguished_name = dn;
    p.not_before = opts.not_before;
    p.not_after = opts.not_after;
    p.serial_number = Some(random_serial(opts.serial_len));
    p.is_ca = if opts.explicit_no_ca {
        IsCa::ExplicitNoCa
    } else {
        IsCa::NoCa
    };
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(key, issuer)?.der().to_vec())
}

fn make_csr(names: &[&str], key: &KeyPair) -> Result<Vec<u8>> {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    p.distinguished_name = dn;
    Ok(p.serialize_request(key)?.der().to_vec())
}

/// The test PKI. Only certificates leave this struct; the keys die with the process.
struct Pki {
    root: Vec<u8>,
    root_cross: Vec<u8>,
    legacy_root: Vec<u8>,
    intermediate: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    unknown_ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Result<Self> {
        // Root: P-384, self-signed.
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let root_params = ca_params("Fulfill Test Root CA", "Fulfill Test PKI", None);
        let root = root_params.self_signed(&root_key)?.der().to_vec();

        // Legacy root: RSA 2048, self-signed (the "AAA Certificate Services" role).
        let (_, legacy_key) = gen_rsa()?;
        let legacy_params = ca_params("Fulfill Test Legacy Root", "Fulfill Test PKI", None);
        let legacy_root = legacy_params.self_signed(&legacy_key)?.der().to_vec();
        let legacy_issuer = Issuer::new(legacy_params, legacy_key);

        // Cross-signed root: same subject and key as the root, issued by the legacy root.
        let mut cross_params = root_params.clone();
        cross_params.serial_number = Some(random_serial(16));
        cross_params.use_authority_key_identifier_extension = true;
        let root_cross = cross_params
            .signed_by(&root_key, &legacy_issuer)?
            .der()
            .to_vec();

        let root_issuer = Issuer::new(root_params, root_key);

        // Issuing CA: RSA 2048, signed by the root.
        let (_, int_key) = gen_rsa()?;
        let mut int_params = ca_params("Fulfill Test Issuing CA RSA", "Fulfill Test PKI", Some(0));
        int_params.use_authority_key_identifier_extension = true;
        int_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let intermediate = int_params.signed_by(&int_key, &root_issuer)?.der().to_vec();
        let issuer = Issuer::new(int_params, int_key);

        // A throwaway CA that nothing trusts (sample 23).
        let unknown_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let unknown_params = ca_params("Unknown Issuing CA", "Nobody Trust Services", Some(0));
        let unknown_ca = Issuer::new(unknown_params, unknown_key);

        Ok(Pki {
            root,
            root_cross,
            legacy_root,
            intermediate,
            issuer,
            unknown_ca,
        })
    }
}

// ---------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------

/// Base64 split into lines of `width` characters, each ending in `\n`.
fn b64_lines(data: &[u8], width: usize) -> String {
    let b = B64.encode(data);
    let mut out = String::with_capacity(b.len() + b.len() / width + 2);
    let mut i = 0;
    while i < b.len() {
        let end = (i + width).min(b.len());
        out.push_str(&b[i..end]);
        out.push('\n');
        i = end;
    }
    out
}

fn pem_block(label: &str, der: &[u8], width: usize) -> String {
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        b64_lines(der, width)
    )
}

fn cert_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der, 64)
}

/// Quoted-printable (RFC 2045 6.7) for text whose lines end in `\n`.
/// Output lines end in `\n`; [`crlf`] turns them into CRLF later.
fn qp_encode(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let bytes = line.as_bytes();
        let mut col = 0usize;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let tok = match b {
                b'=' => "=3D".to_string(),
                b' ' | b'\t' if last => format!("={b:02X}"),
                33..=126 | b' ' | b'\t' => char::from(b).to_string(),
                _ => format!("={b:02X}"),
            };
            // At most 76 characters per line, counting the '=' of a soft break.
            let need = tok.len() + usize::from(!last);
            if col + need > 76 {
                out.push_str("=\n");
                col = 0;
            }
            out.push_str(&tok);
            col += tok.len();
        }
    }
    out
}

/// Turn `\n` line ends into CRLF, as RFC 5322 requires on the wire.
fn crlf(text: &str) -> Result<String> {
    ensure!(
        !text.contains('\r'),
        "internal: message text already contains CR"
    );
    Ok(text.replace('\n', "\r\n"))
}

/// A DER TLV with definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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

/// A PKCS#7 / CMS certs-only SignedData (no signers, id-data with no content),
/// with the certificates kept in the given order. The cms crate would sort the
/// SET OF on encoding; real CA bundles are not sorted, so this is built by hand.
fn p7b_certs_only(certs: &[&[u8]]) -> Result<Vec<u8>> {
    const OID_SIGNED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    const OID_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    let mut signed = Vec::new();
    signed.extend(tlv(0x02, &[1])); // version 1
    signed.extend(tlv(0x31, &[])); // digestAlgorithms: empty SET
    signed.extend(tlv(0x30, &tlv(0x06, &OID_DATA))); // encapContentInfo: id-data, no content
    signed.extend(tlv(0xa0, &certs.concat())); // [0] IMPLICIT certificates
    signed.extend(tlv(0x31, &[])); // signerInfos: empty SET
    let mut info = tlv(0x06, &OID_SIGNED_DATA);
    info.extend(tlv(0xa0, &tlv(0x30, &signed)));
    let der = tlv(0x30, &info);

    // Self-check with the cms crate (its decoder accepts an unsorted SET OF).
    use der::{Decode as _, Encode as _};
    let ci = cms::content_info::ContentInfo::from_der(&der).context("p7b: ContentInfo")?;
    let sd = ci
        .content
        .decode_as::<cms::signed_data::SignedData>()
        .context("p7b: SignedData")?;
    let n = sd.certificates.map(|c| c.0.len()).unwrap_or(0);
    ensure!(n == certs.len(), "p7b self-check: {n} certificates");
    let _ = ci.to_der()?;
    Ok(der)
}

fn zip_archive(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let stamp = zip::DateTime::from_date_and_time(2025, 6, 2, 10, 30, 0)
        .map_err(|e| anyhow!("zip timestamp: {e:?}"))?;
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(stamp)
        .unix_permissions(0o644);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, opts.unix_permissions(0o755))?;
        } else {
            w.start_file(*name, opts)?;
            w.write_all(data)?;
        }
    }
    let bytes = w.finish()?.into_inner();

    // Self-check: every entry reads back.
    let mut ar = zip::ZipArchive::new(Cursor::new(&bytes))?;
    ensure!(ar.len() == entries.len(), "zip self-check: entry count");
    for (i, (name, data)) in entries.iter().enumerate() {
        let mut buf = Vec::new();
        ar.by_index(i)?.read_to_end(&mut buf)?;
        ensure!(buf.as_slice() == *data, "zip self-check: {name}");
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Mail helpers
// ---------------------------------------------------------------------------

fn addr_domain(from: &str) -> &str {
    from.rsplit('@')
        .next()
        .unwrap_or("example.invalid")
        .trim_end_matches('>')
}

/// The RFC 5322 header block (without the blank line), lines ending in `\n`.
fn headers(from: &str, to: &str, subject: &str, date: OffsetDateTime, id: &str) -> Result<String> {
    Ok(format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nDate: {date}\nMessage-ID: <{stamp}.{id}@{domain}>\nMIME-Version: 1.0\n",
        date = date.format(&Rfc2822)?,
        stamp = date.unix_timestamp(),
        domain = addr_domain(from),
    ))
}

fn attachment(content_type: &str, name: &str, data: &[u8], width: usize) -> String {
    format!(
        "Content-Type: {content_type}; name=\"{name}\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"{name}\"\n\n{}",
        b64_lines(data, width)
    )
}

/// Writes files under the output directory.
struct Out {
    dir: PathBuf,
}

impl Out {
    fn write(&self, rel: &str, data: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
    }

    fn write_private(&self, rel: &str, data: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    fn eml(&self, name: &str, text: &str) -> Result<()> {
        self.write(name, crlf(text)?.as_bytes())?;
        println!("wrote {name}");
        Ok(())
    }

    /// Generate a key we "own", write `keys/<name>.key` and `keys/<name>.csr`.
    fn own_key(&self, names: &[&str], kind: KeyKind) -> Result<(OwnedKey, Vec<u8>)> {
        let key = gen_key(kind)?;
        let csr = make_csr(names, &key.kp)?;
        let stem = names[0].replace('*', "star");
        self.write_private(&format!("keys/{stem}.key"), key.file_pem.as_bytes())?;
        self.write(
            &format!("keys/{stem}.csr"),
            pem_block("CERTIFICATE REQUEST", &csr, 64).as_bytes(),
        )?;
        Ok((key, csr))
    }
}

/// A sample leaf issued by the test intermediate for a key we own.
struct Sample {
    leaf: Vec<u8>,
    csr: Vec<u8>,
}

fn standard_sample(
    out: &Out,
    pki: &Pki,
    names: &[&str],
    kind: KeyKind,
    explicit_no_ca: bool,
) -> Result<Sample> {
    let (key, csr) = out.own_key(names, kind)?;
    let leaf = issue_leaf(
        names,
        &key.kp,
        kind.is_rsa(),
        &pki.issuer,
        &LeafOpts::standard(explicit_no_ca),
    )?;
    Ok(Sample { leaf, csr })
}

// ---------------------------------------------------------------------------
// The samples
// ---------------------------------------------------------------------------

fn s01_geotrust_inline(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.alpha.example.com", "alpha.example.com"],
        KeyKind::RsaPkcs1,
        false,
    )?;
    let mut m = headers(
        "GeoTrust Order Processing <esslorders@geotrust.com>",
        "admin@alpha.example.com",
        "GeoTrust QuickSSL Premium certificate for www.alpha.example.com",
        datetime!(2025-06-02 09:14:07 UTC),
        "41880231",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&format!(
        "Dear Alex Admin,

Congratulations! GeoTrust has approved your request for a QuickSSL Premium
certificate. Your certificate is included at the end of this email.

Order number:      41880231
Common name:       www.alpha.example.com
Additional names:  alpha.example.com
Validity period:   01-Jun-2025 to 01-Jun-2045

INSTALLATION INSTRUCTIONS

1. Install the Intermediate CA certificate below on your web server. Copy
   it, including the BEGIN and END lines, into a text file.

2. Install your Web Server certificate. Copy it, including the BEGIN and
   END lines, into a text file named www_alpha_example_com.crt.

3. Restart your web server.

Web Server CERTIFICATE
----------------------

{leaf}
INTERMEDIATE CA
---------------

{int}
For installation help, visit https://knowledge.geotrust.com/ .

Thank you for choosing GeoTrust.

GeoTrust Customer Support
https://www.geotrust.com/support
",
        leaf = cert_pem(&s.leaf),
        int = cert_pem(&pki.intermediate),
    ));
    out.eml("01-geotrust-inline-pem.eml", &m)
}

/// PEM as an HTML fragment: every line ends in `br`.
fn html_pem(der: &[u8], br: &str) -> String {
    cert_pem(der)
        .lines()
        .map(|l| format!("{l}{br}\n"))
        .collect()
}

fn s02_html_br(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.bravo.example.com", "bravo.example.com"],
        KeyKind::RsaPkcs8,
        true,
    )?;
    let boundary = "b1_7c2f0e9a4d5b6c8e1f3a2b4c6d8e0f12";
    let mut m = headers(
        "DigiCert <no-reply@digicert.com>",
        "admin@bravo.example.com",
        "Your SSL certificate for www.bravo.example.com has been issued",
        datetime!(2025-06-02 11:02:45 UTC),
        "73310982",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}\"

This is a multi-part message in MIME format.

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

This message contains HTML. To see your certificate, please view this
message in an HTML-capable email client.

--{boundary}
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<!DOCTYPE html>
<html>
<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">
<title>Your SSL certificate</title></head>
<body style=\"font-family: Arial, sans-serif; font-size: 13px;\">
<p>Dear&nbsp;Administrator,</p>
<p>Your certificate for <b>www.bravo.example.com</b> has been issued.<br>
Order&nbsp;#&nbsp;73310982 &ndash; valid 01&nbsp;Jun&nbsp;2025 &rarr; 01&nbsp;Jun&nbsp;2045.</p>
<p>Copy each block below, including the BEGIN &amp; END lines, into a text
file. Save your certificate as <i>www_bravo_example_com.crt</i> and the
intermediate as <i>DigiCertCA.crt</i>.</p>
<p><b>Your&nbsp;certificate:</b>&nbsp;<br>
<span style=\"font-family: 'Courier New', monospace;\">
{leaf}</span></p>
<p><b>Intermediate&nbsp;CA&nbsp;certificate:</b>&nbsp;<br />
<tt>{int}</tt></p>
<p>Questions? Reply to &lt;support@digicert.com&gt; &amp; quote your order number.</p>
<p>Thank&nbsp;you,<br>The&nbsp;DigiCert&nbsp;Team</p>
</body>
</html>

--{boundary}--
",
        leaf = html_pem(&s.leaf, "<br>"),
        int = html_pem(&pki.intermediate, "<br />"),
    ));
    out.eml("02-html-br.eml", &m)
}

fn s03_quoted_printable(out: &Out, pki: &Pki) -> Result<()> {
    let names = ["www.charlie.example.com", "charlie.example.com"];
    let (key, _csr) = out.own_key(&names, KeyKind::P256Pkcs8)?;
    // Make sure the leaf's base64 ends in '=' padding, so QP has to write "=3D":
    // each extra serial byte changes the DER length by one.
    let mut leaf = Vec::new();
    for serial_len in 16..=18 {
        let opts = LeafOpts {
            serial_len,
            ..LeafOpts::standard(false)
        };
        leaf = issue_leaf(&names, &key.kp, false, &pki.issuer, &opts)?;
        if leaf.len() % 3 != 0 {
            break;
        }
    }
    ensure!(leaf.len() % 3 != 0, "could not get a padded leaf");

    // 76-column base64 lines: QP soft-breaks each of them; some lines carry
    // trailing spaces (QP writes the last one as "=20").
    let mut leaf_pem = String::new();
    for (i, line) in pem_block("CERTIFICATE", &leaf, 76).lines().enumerate() {
        leaf_pem.push_str(line);
        if i % 4 == 2 || line.starts_with("-----END") {
            leaf_pem.push(' ');
        }
        leaf_pem.push('\n');
    }
    // The intermediate with 100-column lines.
    let int_pem = pem_block("CERTIFICATE", &pki.intermediate, 100);

    let text = format!(
        "Dear Customer,

Thank you for choosing GlobalSign. Your AlphaSSL certificate for www.charlie.example.com has now been issued and is shown below together with the intermediate certificate that must be installed with it.

Order number: CE202506035521
Common name: www.charlie.example.com
Subject alternative names: www.charlie.example.com, charlie.example.com

Server certificate:

{leaf_pem}
Intermediate certificate:

{int_pem}
Kind regards / Mit freundlichen Grüßen,
GlobalSign Support Team
© GlobalSign
"
    );
    let encoded = qp_encode(&text);
    // Self-check: a QP decoder gives back the text (with CRLF line ends).
    let decoded = quoted_printable::decode(crlf(&encoded)?, quoted_printable::ParseMode::Strict)
        .map_err(|e| anyhow!("QP self-check: {e}"))?;
    ensure!(decoded == crlf(&text)?.into_bytes(), "QP self-check failed");
    ensure!(
        encoded.contains("=3D"),
        "QP self-check: no encoded '=' padding"
    );
    // Transport padding: trailing blanks on some prose lines, which QP decoders drop.
    let encoded: String = encoded
        .split('\n')
        .map(|l| {
            if l.starts_with("Order number") || l.starts_with("Dear") {
                format!("{l}   \n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();

    let mut m = headers(
        "GlobalSign Support <support@globalsign.com>",
        "admin@charlie.example.com",
        "Your AlphaSSL certificate for www.charlie.example.com",
        datetime!(2025-06-03 07:41:19 UTC),
        "CE202506035521",
    )?;
    m.push_str(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
    );
    m.push_str(&encoded);
    out.eml("03-quoted-printable.eml", &m)
}

fn s04_der_attachment(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.echo.example.com", "echo.example.com"],
        KeyKind::RsaPkcs8,
        false,
    )?;
    let boundary = "----=_Part_104417_1130718342.1748950000000";
    let mut m = headers(
        "Thawte Certificate Services <orders@thawte.com>",
        "admin@echo.example.com",
        "Thawte SSL123 certificate issued for www.echo.example.com",
        datetime!(2025-06-03 12:20:00 UTC),
        "thawte.88213455",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hello,

Your Thawte SSL123 certificate for www.echo.example.com (order 88213455)
has been issued. Your certificate and the Thawte intermediate CA
certificate are attached to this message in binary (DER) format.

Install the intermediate CA certificate first, then your certificate.

Regards,
Thawte Certificate Services

--{boundary}
{leaf}
--{boundary}
{int}
--{boundary}--
",
        leaf = attachment("application/octet-stream", "certificate.txt", &s.leaf, 72),
        int = attachment(
            "application/pkix-cert",
            "IntermediateCA.cer",
            &pki.intermediate,
            76
        ),
    ));
    out.eml("04-der-cer-attachment.eml", &m)
}

fn s05_p7b_der(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.foxtrot.example.com", "foxtrot.example.com"],
        KeyKind::P384Pkcs8,
        true,
    )?;
    let p7b = p7b_certs_only(&[&pki.root, &s.leaf, &pki.intermediate])?;
    let boundary = "=_rapidssl_0fd3a6b2c71e4f58";
    let mut m = headers(
        "RapidSSL <orderprocessing@rapidssl.com>",
        "admin@foxtrot.example.com",
        "RapidSSL certificate for www.foxtrot.example.com (Microsoft IIS)",
        datetime!(2025-06-04 08:05:33 UTC),
        "1557047801",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Website URL: www.foxtrot.example.com
Order number: 1557047801

Hello,

Your RapidSSL certificate is attached in PKCS#7 format for Microsoft IIS
(ssl_certificate.p7b). It contains your certificate and the intermediate
CA certificates. Open IIS Manager, choose Server Certificates and then
Complete Certificate Request, and select the attached file.

Thank you,
RapidSSL Customer Support

--{boundary}
{p7b}
--{boundary}--
",
        p7b = attachment(
            "application/x-pkcs7-certificates",
            "ssl_certificate.p7b",
            &p7b,
            76
        ),
    ));
    out.eml("05-p7b-der.eml", &m)
}

fn s06_p7b_pem(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.golf.example.com", "golf.example.com"],
        KeyKind::P256Sec1,
        false,
    )?;
    let p7b = p7b_certs_only(&[&pki.intermediate, &pki.root, &s.leaf])?;
    let boundary = "=-=-=_gogetssl_51a8";
    let mut m = headers(
        "GoGetSSL <noreply@gogetssl.com>",
        "admin@golf.example.com",
        "Certificate issued: www.golf.example.com",
        datetime!(2025-06-04 15:47:02 UTC),
        "GG-2209931",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Dear client,

The SSL certificate for www.golf.example.com (order GG-2209931) has been
issued. The attached www_golf_example_com.p7b file holds the certificate
together with the CA chain in PKCS#7 format.

Best regards,
GoGetSSL Team

--{boundary}
Content-Type: text/plain; charset=us-ascii; name=\"www_golf_example_com.p7b\"
Content-Transfer-Encoding: 7bit
Content-Disposition: attachment; filename=\"www_golf_example_com.p7b\"

{pem}
--{boundary}--
",
        pem = pem_block("PKCS7", &p7b, 64),
    ));
    out.eml("06-p7b-pem.eml", &m)
}

const SECTIGO_CHOOSING: &str = "Choosing the Right Files to Install

Your certificate files are provided in several formats. Which ones you need
depends on your server software.

www_delta_example_org.crt
    Your server certificate (PEM). Every server needs this file.

FulfillTestIssuingCARSA.crt
    The intermediate CA certificate that issued your certificate.

FulfillTestRootCA.crt
    The Fulfill Test Root CA, cross-signed by the Fulfill Test Legacy Root
    for compatibility with older clients.

FulfillTestLegacyRoot.crt
    The legacy root certificate. It is already in the trust store of the
    clients that need it; you normally do not install it on the server.

www_delta_example_org.ca-bundle
    The intermediate certificates in one file, for Apache
    (SSLCertificateChainFile) and nginx (append it to your certificate).
";

fn s07_sectigo_zip(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.delta.example.org", "delta.example.org"],
        KeyKind::RsaPkcs1,
        false,
    )?;
    // The leaf file uses CRLF like a Windows-built bundle, the others LF.
    let leaf_crt = cert_pem(&s.leaf).replace('\n', "\r\n");
    let bundle = format!(
        "{}{}",
        cert_pem(&pki.intermediate),
        cert_pem(&pki.root_cross)
    );
    let choosing = SECTIGO_CHOOSING.replace('\n', "\r\n");
    let zip = zip_archive(&[
        ("www_delta_example_org.crt", leaf_crt.as_bytes()),
        (
            "FulfillTestIssuingCARSA.crt",
            cert_pem(&pki.intermediate).as_bytes(),
        ),
        (
            "FulfillTestRootCA.crt",
            cert_pem(&pki.root_cross).as_bytes(),
        ),
        (
            "FulfillTestLegacyRoot.crt",
            cert_pem(&pki.legacy_root).as_bytes(),
        ),
        ("www_delta_example_org.ca-bundle", bundle.as_bytes()),
        (
            "Choosing the Right Files to Install.txt",
            choosing.as_bytes(),
        ),
    ])?;
    let boundary = "_003_SECTIGO9f2c1e7a44b8_";
    let mut m = headers(
        "Sectigo Certificate Services <noreply_support@sectigo.com>",
        "admin@delta.example.org",
        "ORDER #240117731 - Your PositiveSSL Certificate for www.delta.example.org",
        datetime!(2025-06-05 02:13:58 UTC),
        "240117731",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Dear Customer,

Congratulations - your PositiveSSL certificate for www.delta.example.org
has been issued.

Order Number: 240117731

Attached to this email you should find a .zip file containing:

  Root CA Certificate - FulfillTestLegacyRoot.crt
  Intermediate CA Certificate - FulfillTestRootCA.crt
  Intermediate CA Certificate - FulfillTestIssuingCARSA.crt
  Your PositiveSSL Certificate - www_delta_example_org.crt

You can also use the www_delta_example_org.ca-bundle file, which holds
the intermediate certificates in the right order.

Kind regards,
Sectigo Certificate Services

--{boundary}
{zip}
--{boundary}--
",
        zip = attachment("application/zip", "www_delta_example_org.zip", &zip, 76),
    ));
    out.eml("07-sectigo-zip.eml", &m)
}

const RAPIDSSL_GETTING_STARTED: &str = "Certificate Download and Installation

The certificates and instructions in this ZIP file are for server type
Other (X509).

BEFORE YOU BEGIN
You need admin access to the server where the certificate will be
installed. If someone else runs your server, send this ZIP file to them.
It contains:
- ssl_certificate.cer
- IntermediateCA.cer

TO INSTALL YOUR CERTIFICATE
Install the intermediate CA certificate in this ZIP file before you
install your SSL certificate.

CHECK YOUR INSTALLATION
Use the SSL checker on the RapidSSL web site once the certificate is in
place.
";

fn s08_rapidssl_zip(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.hotel.example.com", "hotel.example.com"],
        KeyKind::RsaPkcs8,
        true,
    )?;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend_from_slice(b"This program cannot be run in DOS mode.\r\r\n$\0\0\0\0");
    let getting_started = RAPIDSSL_GETTING_STARTED.replace('\n', "\r\n");
    let zip = zip_archive(&[
        ("ssl_certificate.cer", &s.leaf),
        ("IntermediateCA.cer", cert_pem(&pki.intermediate).as_bytes()),
        ("getting_started.txt", getting_started.as_bytes()),
        ("SSLAssistant/", b""),
        ("SSLAssistant/SSLAssistant.exe", &exe),
    ])?;
    let boundary = "=_rapidssl_77e09c3d15aa4b02";
    let mut m = headers(
        "RapidSSL <orderprocessing@rapidssl.com>",
        "admin@hotel.example.com",
        "RapidSSL certificate for www.hotel.example.com",
        datetime!(2025-06-05 16:30:12 UTC),
        "1557047808",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Website URL: www.hotel.example.com
Order number: 1557047808

Hello,

Your RapidSSL certificate is attached as a ZIP file with your certificate,
the intermediate CA certificate and installation instructions.

Thank you,
RapidSSL Customer Support

--{boundary}
{zip}
--{boundary}--
",
        zip = attachment("application/zip", "www_hotel_example_com.zip", &zip, 76),
    ));
    out.eml("08-rapidssl-zip.eml", &m)
}

fn s09_forwarded(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.india.example.com", "india.example.com"],
        KeyKind::P256Pkcs8,
        false,
    )?;
    let mut inner = headers(
        "GeoTrust Order Processing <esslorders@geotrust.com>",
        "pat.doe@india.example.com",
        "Your certificate for www.india.example.com",
        datetime!(2025-06-06 06:58:40 UTC),
        "41880299",
    )?;
    inner.push_str(
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n",
    );
    inner.push_str(&format!(
        "Dear Pat Doe,

Your certificate for www.india.example.com has been issued.

Order number: 41880299

Install the intermediate CA certificate together with your certificate.

{leaf}
{int}
GeoTrust Customer Support
",
        leaf = cert_pem(&s.leaf),
        int = cert_pem(&pki.intermediate),
    ));
    let boundary = "------------F0rw4rd3dM3ss4g3B0undary";
    let mut m = headers(
        "Pat Doe <pat.doe@india.example.com>",
        "admin@india.example.com",
        "Fwd: Your certificate for www.india.example.com",
        datetime!(2025-06-06 08:12:09 UTC),
        "fwd.6f1c2a",
    )?;
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"

This is a multi-part message in MIME format.
--{boundary}
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hi,

The certificate for the India site arrived in my mailbox, forwarding it
so it can be installed. The key is the one we made for the order.

Pat

--{boundary}
Content-Type: message/rfc822; name=\"Your certificate for www.india.example.com.eml\"
Content-Transfer-Encoding: 7bit
Content-Disposition: attachment; filename=\"Your certificate for www.india.example.com.eml\"

{inner}
--{boundary}--
"
    ));
    out.eml("09-forwarded.eml", &m)
}

fn s10_link_only(out: &Out) -> Result<()> {
    let digest = hex::encode(&sha2::Sha256::digest(b"www.juliet.example.com 1557047799")[..16]);
    let mut m = headers(
        "RapidSSL <no-reply@rapidssl.com>",
        "admin@juliet.example.com",
        "Your RapidSSL certificate is ready",
        datetime!(2025-06-06 13:26:31 UTC),
        "1557047799",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&format!(
        "Website URL: www.juliet.example.com
Order number: 1557047799

Hello Jules Admin,

Your RapidSSL certificate is ready.

Get your certificate and installation instructions:
https://getcert.rapidssl.com/process/trust/home?digest={digest}&language=en

To install your certificate you need admin access to the server where the
certificate will be used. If you will not install it yourself, forward this
email to your server admin.

Thank you,
RapidSSL Customer Support
https://www.rapidssl.com/support
"
    ));
    out.eml("10-link-only.eml", &m)
}

fn s11_quotes_csr(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.kilo.example.com", "kilo.example.com"],
        KeyKind::P256Sec1,
        false,
    )?;
    let mut m = headers(
        "Namecheap SSL <support@namecheap.com>",
        "admin@kilo.example.com",
        "Your certificate for www.kilo.example.com is issued",
        datetime!(2025-06-07 10:44:18 UTC),
        "ssl.9925871",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&format!(
        "Hello,

Your SSL certificate order 9925871 for www.kilo.example.com is complete.

For your reference, this is the request the certificate was issued for.

Your CSR:
{csr}
Your certificate:
{leaf}
CA bundle:
{int}
Regards,
Namecheap SSL Team
",
        csr = pem_block("CERTIFICATE REQUEST", &s.csr, 64),
        leaf = cert_pem(&s.leaf),
        int = cert_pem(&pki.intermediate),
    ));
    out.eml("11-quotes-csr.eml", &m)
}

fn s12_wildcard(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["*.wild.example.net", "wild.example.net"],
        KeyKind::P256Pkcs8,
        true,
    )?;
    let text = format!(
        "Hello,

Your wildcard certificate for *.wild.example.net has been issued.
It also covers wild.example.net.

Order number: 5531209

Certificate (star_wild_example_net.crt):

{leaf}
Intermediate (DigiCertCA.crt):

{int}
DigiCert Support
",
        leaf = cert_pem(&s.leaf),
        int = cert_pem(&pki.intermediate),
    );
    let mut m = headers(
        "DigiCert <admin@digicert.com>",
        "admin@wild.example.net",
        "Certificate for *.wild.example.net",
        datetime!(2025-06-07 18:09:51 UTC),
        "5531209",
    )?;
    m.push_str("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n");
    m.push_str(&b64_lines(crlf(&text)?.as_bytes(), 76));
    out.eml("12-wildcard.eml", &m)
}

fn s13_ec_p256(out: &Out, pki: &Pki) -> Result<()> {
    let s = standard_sample(
        out,
        pki,
        &["www.lima.example.com", "lima.example.com"],
        KeyKind::P256Sec1,
        false,
    )?;
    let int_pem = pem_block("CERTIFICATE", &pki.intermediate, 76);
    let int_no_end = int_pem
        .strip_suffix("-----END CERTIFICATE-----\n")
        .ok_or_else(|| anyhow!("internal: PEM without END"))?;
    let mut m = headers(
        "SSL.com Support <support@ssl.com>",
        "admin@lima.example.com",
        "Your ECDSA certificate for www.lima.example.com",
        datetime!(2025-06-08 05:37:26 UTC),
        "co-1a2b3c4d5e",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&format!(
        "Hello,

Your ECDSA certificate for www.lima.example.com is ready.
Order: co-1a2b3c4d5e

Certificate:
{leaf}
Chain:
{int_no_end}",
        leaf = pem_block("CERTIFICATE", &s.leaf, 76),
    ));
    out.eml("13-ec-p256.eml", &m)
}

fn inline_reject_body(greeting: &str, name: &str, order: &str, leaf: &str, int: &str) -> String {
    format!(
        "{greeting}

Your certificate for {name} has been issued.

Order number: {order}

Web Server CERTIFICATE
----------------------

{leaf}
INTERMEDIATE CA
---------------

{int}
Thank you for choosing GeoTrust.
"
    )
}

fn s20_expired(out: &Out, pki: &Pki) -> Result<()> {
    let names = ["www.expired.example.com", "expired.example.com"];
    let (key, _) = out.own_key(&names, KeyKind::RsaPkcs1)?;
    let opts = LeafOpts {
        not_before: datetime!(2020-01-01 0:00 UTC),
        not_after: datetime!(2021-01-01 0:00 UTC),
        explicit_no_ca: false,
        serial_len: 16,
    };
    let leaf = issue_leaf(&names, &key.kp, true, &pki.issuer, &opts)?;
    let mut m = headers(
        "GeoTrust Order Processing <esslorders@geotrust.com>",
        "admin@expired.example.com",
        "GeoTrust QuickSSL Premium certificate for www.expired.example.com",
        datetime!(2020-01-01 10:03:44 UTC),
        "40011876",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&inline_reject_body(
        "Dear Customer,",
        "www.expired.example.com",
        "40011876",
        &cert_pem(&leaf),
        &cert_pem(&pki.intermediate),
    ));
    out.eml("20-reject-expired.eml", &m)
}

fn s21_wrong_name(out: &Out, pki: &Pki) -> Result<()> {
    let (key, _) = out.own_key(&["shop.example.com"], KeyKind::P384Pkcs8)?;
    let leaf = issue_leaf(
        &["evil.example.net"],
        &key.kp,
        false,
        &pki.issuer,
        &LeafOpts::standard(false),
    )?;
    let mut m = headers(
        "GeoTrust Order Processing <esslorders@geotrust.com>",
        "admin@shop.example.com",
        "GeoTrust QuickSSL Premium certificate for shop.example.com",
        datetime!(2025-06-09 09:00:12 UTC),
        "41880410",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&inline_reject_body(
        "Dear Customer,",
        "shop.example.com",
        "41880410",
        &cert_pem(&leaf),
        &cert_pem(&pki.intermediate),
    ));
    out.eml("21-reject-wrong-name.eml", &m)
}

fn s22_key_mismatch(out: &Out, pki: &Pki) -> Result<()> {
    // A key that nobody keeps: it is dropped at the end of this function.
    let foreign = gen_key(KeyKind::RsaPkcs8)?;
    let leaf = issue_leaf(
        &["www.alpha.example.com", "alpha.example.com"],
        &foreign.kp,
        true,
        &pki.issuer,
        &LeafOpts::standard(false),
    )?;
    let mut m = headers(
        "GeoTrust Order Processing <esslorders@geotrust.com>",
        "admin@alpha.example.com",
        "GeoTrust QuickSSL Premium certificate for www.alpha.example.com (reissue)",
        datetime!(2025-06-09 22:47:05 UTC),
        "41880232",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&inline_reject_body(
        "Dear Alex Admin,\n\nAs requested, your certificate has been reissued. Please replace the\ncertificate on your server with the one below as soon as possible.",
        "www.alpha.example.com",
        "41880232",
        &cert_pem(&leaf),
        &cert_pem(&pki.intermediate),
    ));
    out.eml("22-reject-key-mismatch.eml", &m)
}

fn s23_broken_chain(out: &Out, pki: &Pki) -> Result<()> {
    let names = ["www.broken.example.com", "broken.example.com"];
    let (key, _) = out.own_key(&names, KeyKind::P256Sec1)?;
    let leaf = issue_leaf(
        &names,
        &key.kp,
        false,
        &pki.unknown_ca,
        &LeafOpts::standard(false),
    )?;
    let mut m = headers(
        "Certificate Services <certs@cheap-ssl.example>",
        "admin@broken.example.com",
        "Your certificate for www.broken.example.com",
        datetime!(2025-06-10 04:18:37 UTC),
        "CS-77120",
    )?;
    m.push_str("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n");
    m.push_str(&format!(
        "Hello,

Your certificate for www.broken.example.com (order CS-77120) is below.

{leaf}
Certificate Services
",
        leaf = cert_pem(&leaf),
    ));
    out.eml("23-reject-broken-chain.eml", &m)
}

const CONFIG_TOML: &str =
    "# Configuration for running fulfill on the samples; paths are relative to this file.
[keys]
dirs = [\"keys\"]

[validation]
trust_roots = [\"ca/root.pem\"]
";

const README: &str = r#"# Sample fulfillment emails

Test material for `fulfill`: CA fulfillment emails in the shapes real CAs and
resellers send, a small test PKI, and the private keys and CSRs "we" made for
the orders. Everything here is generated by `examples/gen_samples.rs`:

```sh
cargo run --example gen-samples -- samples
```

File names are stable, but keys, serial numbers and signatures are new on every
run, and the CA private keys are never written to disk. Regenerating therefore
replaces the whole set (CA certificates, keys, CSRs and emails) at once; you cannot
add one sample to an existing set.

To run fulfill on the samples, use `samples/config.toml` (key directory `keys/`,
trust root `ca/root.pem`; paths are relative to the config file).

## Test PKI (`ca/`)

| File | What it is |
|---|---|
| `root.pem` | "Fulfill Test Root CA", self-signed, EC P-384. The only trust root in `config.toml`. |
| `intermediate.pem` | "Fulfill Test Issuing CA RSA", RSA 2048, signed by the root (pathLen 0). Issues every leaf except sample 23. |
| `legacy-root.pem` | "Fulfill Test Legacy Root", self-signed, RSA 2048 (the "AAA Certificate Services" role). |
| `root-cross-signed.pem` | Same subject and key as `root.pem`, issued by the legacy root (the "USERTrust cross-signed by AAA" shape). |

CA certificates are valid 2024-01-01 to 2049-12-31; leaves 2025-06-01 to
2045-06-01 unless stated otherwise.

## Keys (`keys/`)

`<name>.key` and `<name>.csr` for every certificate whose key we own; `<name>` is
the certificate's first DNS name with `*` written as `star`. Keys are mode 0600.
CSRs carry CN = first name and all names in the extensionRequest.

## Emails

Outcome rules: **1** key (a key in `keys/` matches the certificate), **2** name
(the certificate's names match the request), **3** validity (the certificate is
within its validity period), **4** chain (the chain leads to a trusted root).

| File | Real-world shape | Certificate names; key format | Expected outcome |
|---|---|---|---|
| `01-geotrust-inline-pem.eml` | Older GeoTrust/Symantec issuance mail: `text/plain` 7bit prose, leaf PEM then intermediate PEM inline (under "Web Server CERTIFICATE" / "INTERMEDIATE CA" headings, which are not verified in public sources). | www.alpha.example.com, alpha.example.com; RSA 2048 PKCS#1 (`RSA PRIVATE KEY`) | imported |
| `02-html-br.eml` | `multipart/alternative`: the text part only says to view the HTML; the HTML part holds leaf and intermediate PEM with `<br>` / `<br />` at every line end, inside `<span>`/`<tt>`, with `&nbsp;` and other entities around. | www.bravo.example.com, bravo.example.com; RSA 2048 PKCS#8 (`PRIVATE KEY`) | imported |
| `03-quoted-printable.eml` | `text/plain` quoted-printable (utf-8). Leaf PEM in 76-column lines, intermediate in 100-column lines, so QP soft breaks (`=` CRLF) fall inside base64 lines and padding is written `=3D`; some PEM lines (and the leaf's END line) end in spaces (`=20`), and some prose lines carry transport trailing blanks. | www.charlie.example.com, charlie.example.com; P-256 PKCS#8 | imported |
| `04-der-cer-attachment.eml` | `multipart/mixed`: text body, leaf as DER in an attachment misleadingly named `certificate.txt` (`application/octet-stream`, base64 in 72-column lines), intermediate as DER `IntermediateCA.cer` (`application/pkix-cert`). | www.echo.example.com, echo.example.com; RSA 2048 PKCS#8 | imported |
| `05-p7b-der.eml` | RapidSSL/IIS style: `ssl_certificate.p7b` (`application/x-pkcs7-certificates`), DER PKCS#7 certs-only SignedData holding root, leaf, intermediate in that order. | www.foxtrot.example.com, foxtrot.example.com; P-384 PKCS#8 | imported |
| `06-p7b-pem.eml` | The same as a `-----BEGIN PKCS7-----` text attachment (`text/plain`, `www_golf_example_com.p7b`), order intermediate, root, leaf. | www.golf.example.com, golf.example.com; P-256 SEC1 (`EC PRIVATE KEY`) | imported |
| `07-sectigo-zip.eml` | Sectigo/Comodo: `www_delta_example_org.zip` with the leaf `.crt` (PEM, CRLF), the intermediate, the cross-signed root (`FulfillTestRootCA.crt`), the self-signed legacy root, a `.ca-bundle` (intermediate + cross-signed root) and "Choosing the Right Files to Install.txt". The self-signed root should be dropped from the imported chain. | www.delta.example.org, delta.example.org; RSA 2048 PKCS#1 | imported |
| `08-rapidssl-zip.eml` | RapidSSL "Other/X509" zip: `ssl_certificate.cer` (leaf, DER), `IntermediateCA.cer` (PEM), `getting_started.txt`, `SSLAssistant/SSLAssistant.exe` (junk bytes). | www.hotel.example.com, hotel.example.com; RSA 2048 PKCS#8 | imported |
| `09-forwarded.eml` | A colleague's "Fwd:" mail: short note plus a `message/rfc822` attachment holding the CA's original mail with inline leaf + intermediate PEM. | www.india.example.com, india.example.com; P-256 PKCS#8 | imported |
| `10-link-only.eml` | RapidSSL/DigiCert era "Your RapidSSL certificate is ready": no certificate, only a `getcert.rapidssl.com` link, "Order number: 1557047799" and "Website URL: www.juliet.example.com". | none | link-only (report the order number and the link; not "no certificate found") |
| `11-quotes-csr.eml` | Reseller mail that quotes the order's CSR first ("Your CSR:" + `CERTIFICATE REQUEST` block, identical to `keys/www.kilo.example.com.csr`), then the certificate and the intermediate. | www.kilo.example.com, kilo.example.com; P-256 SEC1 | imported (the CSR block must not be taken for the certificate) |
| `12-wildcard.eml` | Wildcard certificate; the `text/plain` body has `Content-Transfer-Encoding: base64`, inline leaf + intermediate PEM. | *.wild.example.net, wild.example.net (files `star.wild.example.net.*`); P-256 PKCS#8 | imported |
| `13-ec-p256.eml` | EC P-256 leaf inline; both PEM blocks wrapped at 76 columns instead of 64, and the intermediate block, the last thing in the body, has no END line. | www.lima.example.com, lima.example.com; P-256 SEC1 | imported |
| `20-reject-expired.eml` | GeoTrust-style inline mail from 2020; leaf valid 2020-01-01 to 2021-01-01. | www.expired.example.com, expired.example.com; RSA 2048 PKCS#1 | rejected, rule 3 (validity: expired) |
| `21-reject-wrong-name.eml` | Mail for "shop.example.com"; the certificate is for the key of `keys/shop.example.com.key` (CSR for shop.example.com) but names only evil.example.net. | evil.example.net; P-384 PKCS#8 (key filed as shop.example.com) | rejected, rule 2 (name) |
| `22-reject-key-mismatch.eml` | Forged "reissue" mail: a certificate for www.alpha.example.com, genuinely signed by the test intermediate, but for a key that is not in `keys/` (it was never saved). | www.alpha.example.com, alpha.example.com; RSA 2048, key not available | rejected, rule 1 (key) |
| `23-reject-broken-chain.eml` | Leaf only, issued by "Unknown Issuing CA" (a throwaway CA outside the test PKI); no chain in the mail. | www.broken.example.com, broken.example.com; P-256 SEC1 | rejected, rule 4 (chain) |

All emails use CRLF line ends and carry From, To, Subject, Date, Message-ID and
MIME-Version headers. The sender addresses imitate real CAs and resellers; the
certificates are all from the test PKI.
"#;

fn main() -> Result<()> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "samples".into()),
    );
    for sub in ["", "ca", "keys"] {
        fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    fs::set_permissions(dir.join("keys"), fs::Permissions::from_mode(0o700))?;
    let out = Out { dir };

    println!("generating the test PKI");
    let pki = Pki::new()?;
    out.write("ca/root.pem", cert_pem(&pki.root).as_bytes())?;
    out.write(
        "ca/intermediate.pem",
        cert_pem(&pki.intermediate).as_bytes(),
    )?;
    out.write("ca/legacy-root.pem", cert_pem(&pki.legacy_root).as_bytes())?;
    out.write(
        "ca/root-cross-signed.pem",
        cert_pem(&pki.root_cross).as_bytes(),
    )?;
    out.write("config.toml", CONFIG_TOML.as_bytes())?;

    s01_geotrust_inline(&out, &pki)?;
    s02_html_br(&out, &pki)?;
    s03_quoted_printable(&out, &pki)?;
    s04_der_attachment(&out, &pki)?;
    s05_p7b_der(&out, &pki)?;
    s06_p7b_pem(&out, &pki)?;
    s07_sectigo_zip(&out, &pki)?;
    s08_rapidssl_zip(&out, &pki)?;
    s09_forwarded(&out, &pki)?;
    s10_link_only(&out)?;
    s11_quotes_csr(&out, &pki)?;
    s12_wildcard(&out, &pki)?;
    s13_ec_p256(&out, &pki)?;
    s20_expired(&out, &pki)?;
    s21_wrong_name(&out, &pki)?;
    s22_key_mismatch(&out, &pki)?;
    s23_broken_chain(&out, &pki)?;

    out.write("README.md", README.as_bytes())?;
    println!("done: {}", out.dir.display());
    Ok(())
}

//! The Secrets Manager v2 shapes fulfill sends and reads (docs/secrets-manager.md §3–§5),
//! and the secret's name for a certificate.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::secret::Secret;

/// The secret type of an imported certificate (docs/secrets-manager.md §3).
pub const IMPORTED_CERT: &str = "imported_cert";

/// The label every secret fulfill creates carries, so a person can find them.
pub const LABEL: &str = "fulfill";

/// A certificate with its chain and private key: the body of a new version (§4), and
/// with the secret's fields around it, of a new secret (§3).
pub struct CertificateData {
    pub certificate: String,
    /// The chain, leaf's issuer first; empty when there is none.
    pub intermediate: String,
    pub private_key: Secret,
}

impl CertificateData {
    fn write_fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("certificate", &self.certificate)?;
        if !self.intermediate.is_empty() {
            map.serialize_entry("intermediate", &self.intermediate)?;
        }
        // The one place the key leaves a `Secret`: the request body, over verified TLS.
        map.serialize_entry("private_key", self.private_key.expose())
    }
}

impl Serialize for CertificateData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.write_fields(&mut map)?;
        map.end()
    }
}

/// `POST /api/v2/secrets` for an imported certificate (§3).
pub struct NewSecret<'a> {
    pub name: &'a str,
    pub secret_group_id: &'a str,
    pub data: &'a CertificateData,
    /// Shown in the Secrets Manager console: where the certificate came from.
    pub sha256: &'a str,
}

impl Serialize for NewSecret<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("secret_type", IMPORTED_CERT)?;
        map.serialize_entry("name", self.name)?;
        map.serialize_entry("secret_group_id", self.secret_group_id)?;
        map.serialize_entry("labels", &[LABEL])?;
        map.serialize_entry(
            "custom_metadata",
            &serde_json::json!({ "imported_by": "fulfill", "sha256": self.sha256 }),
        )?;
        self.data.write_fields(&mut map)?;
        map.end()
    }
}

/// A secret as the list and the create answer show it (§3, §5); only what is used.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretMetadata {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub secret_type: Option<String>,
    #[serde(default)]
    pub secret_group_id: Option<String>,
    /// How many versions the secret has (§5).
    #[serde(default)]
    pub versions_total: Option<i64>,
}

/// A page of `GET /api/v2/secrets` (§5).
#[derive(Debug, Deserialize)]
pub struct SecretsPage {
    #[serde(default)]
    pub secrets: Vec<SecretMetadata>,
    #[serde(default)]
    pub total_count: Option<usize>,
}

/// `GET /api/v2/secrets/{id}` of an imported certificate: its current version's
/// certificate (§6). The answer also holds the private key, which is not read into this
/// struct and is dropped with the body.
#[derive(Debug, Deserialize)]
pub struct ImportedCertificate {
    pub id: String,
    #[serde(default)]
    pub versions_total: Option<i64>,
    #[serde(default)]
    pub certificate: Option<String>,
}

/// A version's metadata: the answer of a new version (§4) and of
/// `GET /api/v2/secrets/{id}/versions/current/metadata` (§4a); only its id is read. The
/// new version's answer also holds the private key, which is not read into this struct.
#[derive(Debug, Deserialize)]
pub struct VersionMetadata {
    pub id: String,
}

/// The error body of the v2 API (§7).
#[derive(Debug, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub errors: Vec<ApiErrorItem>,
    #[serde(default)]
    pub trace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ApiErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// IAM's error body (§2).
#[derive(Debug, Deserialize)]
pub struct IamErrorBody {
    #[serde(default, rename = "errorCode")]
    pub error_code: Option<String>,
    #[serde(default, rename = "errorMessage")]
    pub error_message: Option<String>,
}

/// The secret's name for a certificate: `template` with `{common_name}` replaced, or the
/// common name itself; a wildcard's `*` written `wildcard`, and anything but letters,
/// digits, `.`, `-` and `_` written `-` (docs/secrets-manager.md §8, CHOICE).
pub fn secret_name(template: Option<&str>, common_name: &str) -> String {
    let common_name = common_name.replace('*', "wildcard");
    let name = match template {
        Some(template) => template.replace("{common_name}", &common_name),
        None => common_name,
    };
    let name: String = (name.chars())
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '-',
        })
        .collect();
    name.trim_matches(['-', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(secret_name(None, "www.example.com"), "www.example.com");
        assert_eq!(secret_name(None, "*.example.com"), "wildcard.example.com");
        assert_eq!(
            secret_name(Some("web-{common_name}"), "*.example.com"),
            "web-wildcard.example.com"
        );
        assert_eq!(secret_name(Some("one-name"), "a.example"), "one-name");
        assert_eq!(secret_name(None, "a/../b c"), "a-..-b-c");
    }

    #[test]
    fn the_private_key_is_in_the_body_and_nowhere_else() {
        let data = CertificateData {
            certificate: "CERT".into(),
            intermediate: String::new(),
            private_key: Secret::new("KEY"),
        };
        let body = serde_json::to_value(NewSecret {
            name: "n",
            secret_group_id: "default",
            data: &data,
            sha256: "ab",
        })
        .unwrap();
        assert_eq!(body["secret_type"], "imported_cert");
        assert_eq!(body["private_key"], "KEY");
        assert_eq!(body["labels"][0], "fulfill");
        assert!(body.get("intermediate").is_none());
        assert_eq!(serde_json::to_value(&data).unwrap()["private_key"], "KEY");
    }
}

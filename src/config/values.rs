//! The typed values of the config file: each string becomes a type when the file is
//! parsed, so a bad value is an error with its line and column at load time, never a
//! surprise under cron. Each parser has its tests below (as xh tests each of its parsers).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::mailbox::{AfterImport, FolderName, Security};

/// A length of time written the humantime way: "30s", "15m", "1h", "7d".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(HumanDuration)
    }
}

/// The longest duration any setting or flag takes. Times are computed as `now ± duration`
/// (`since`, `--expiring-within`), which panics past the calendar's range; a century is
/// more than any cooldown, window or timeout needs (humantime's year is 365.25 days).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// "30s", "15m", "1h": humantime's format, with an error that says what was expected,
/// and at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim().parse::<u64>().is_ok() {
        // humantime would suggest "30sec or 30ms"; a number here is almost always days.
        return Err(format!(
            "'{text}' needs a unit: {0}d for days, {0}h for hours, {0}m for minutes",
            text.trim()
        ));
    }
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 30s or 15m: {e}"))?;
    if duration > MAX_DURATION {
        return Err(format!("'{text}' is longer than the limit of 100 years"));
    }
    Ok(duration)
}

/// A byte count: "25MiB", "512 KiB", "1MB", "4096".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: usize = number
            .parse()
            .map_err(|_| format!("'{text}' is not a size like 25MiB"))?;
        let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1024,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB)"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is too large"))
    }
}

impl FromStr for Security {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            other => Err(format!(
                "security = \"{other}\": use \"tls\" (port 993) or \"starttls\" (port 143)"
            )),
        }
    }
}

impl FromStr for AfterImport {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "flag" => Ok(AfterImport::Flag),
            "seen" => Ok(AfterImport::Seen),
            "none" => Ok(AfterImport::Nothing),
            other => match other.strip_prefix("move:") {
                Some(folder) if !folder.is_empty() => FolderName::new(folder)
                    .map(AfterImport::Move)
                    .map_err(|e| format!("after_import: {e}")),
                _ => Err(format!(
                    "after_import = \"{other}\": use \"flag\", \"seen\", \"move:FOLDER\" or \"none\""
                )),
            },
        }
    }
}

impl FromStr for FolderName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        FolderName::new(text).map_err(|e| format!("folder: {e}"))
    }
}

/// A sender address for the server-side `FROM` search: it goes into an IMAP quoted
/// string, so quotes, backslashes and line breaks are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderAddress(pub String);

impl FromStr for SenderAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains(['"', '\\', '\r', '\n']) {
            return Err(format!("senders: '{text}' is not an address"));
        }
        Ok(SenderAddress(text.to_string()))
    }
}

/// Where trust anchors come from: `"system"` or the path of a PEM bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The operating system's bundle.
    System,
    /// A PEM bundle file.
    Bundle(std::path::PathBuf),
}

impl FromStr for TrustRoots {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "system" => Ok(TrustRoots::System),
            "" => Err("trust_roots: an empty path; use \"system\" or a PEM bundle".into()),
            path => Ok(TrustRoots::Bundle(path.into())),
        }
    }
}

/// An https URL (plain http only to this machine), checked when the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(pub String);

impl FromStr for EndpointUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::http::endpoint_url(text, "api_key_cmd")
            .map(|_| EndpointUrl(text.to_string()))
            .map_err(|why| {
                // A URL with a password in it is not echoed: the password is a secret.
                let has_credentials = (reqwest::Url::parse(text))
                    .is_ok_and(|url| !url.username().is_empty() || url.password().is_some());
                match has_credentials {
                    true => why,
                    false => format!("'{text}': {why}"),
                }
            })
    }
}

/// A Secrets Manager secret group: "default" or the group's id (docs/secrets-manager.md
/// §3). It goes into a query string, so only letters, digits and `-` are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGroupId(pub String);

impl FromStr for SecretGroupId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "secret_group_id '{text}': use \"default\" or the group's id (letters, digits and -)"
            ));
        }
        Ok(SecretGroupId(text.to_string()))
    }
}

/// The name a secret gets: letters, digits, `.`, `-`, `_`, and `{common_name}` for the
/// certificate's common name (docs/secrets-manager.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretNameTemplate(pub String);

impl FromStr for SecretNameTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text.replace("{common_name}", "");
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if text.is_empty() || !rest.chars().all(allowed) {
            return Err(format!(
                "name '{text}': use letters, digits, '.', '-', '_' and {{common_name}}"
            ));
        }
        Ok(SecretNameTemplate(text.to_string()))
    }
}

/// A value read as a string and parsed with its `FromStr`; the parser's message becomes
/// the error, and toml adds the line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Parsed).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("30s".parse(), Ok(HumanDuration(Duration::from_secs(30))));
        assert_eq!(" 15m ".parse(), Ok(HumanDuration(Duration::from_secs(900))));
        assert_eq!(
            "7d".parse(),
            Ok(HumanDuration(Duration::from_secs(7 * 86400)))
        );
        let error = "30 seconds please".parse::<HumanDuration>().unwrap_err();
        assert!(error.contains("not a duration like 30s"), "{error}");
        let bare = "30".parse::<HumanDuration>().unwrap_err();
        assert!(bare.contains("30d for days"), "{bare}");
        // Bounded, and never a panic, however large the number.
        assert_eq!(
            "100y".parse::<HumanDuration>().map(|d| d.0),
            Ok(MAX_DURATION)
        );
        for huge in ["101y", "100000000y", "99999999999999999999999s"] {
            assert!(huge.parse::<HumanDuration>().is_err(), "{huge}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("25MiB".parse(), Ok(ByteSize(25 * 1024 * 1024)));
        assert_eq!("512 KiB".parse(), Ok(ByteSize(512 * 1024)));
        assert_eq!("1MB".parse(), Ok(ByteSize(1_000_000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert!(
            "lots"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("not a size")
        );
        let unit = "3 parsecs".parse::<ByteSize>().unwrap_err();
        assert!(unit.contains("unknown size unit"), "{unit}");
        let huge = "99999999999999999999GiB".parse::<ByteSize>().unwrap_err();
        assert!(huge.contains("not a size"), "{huge}");
        let overflow = format!("{}GiB", usize::MAX / 2);
        assert!(
            overflow
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn security() {
        assert_eq!("tls".parse(), Ok(Security::Tls));
        assert_eq!("starttls".parse(), Ok(Security::StartTls));
        let error = "ssl".parse::<Security>().unwrap_err();
        assert!(error.contains("use \"tls\""), "{error}");
    }

    #[test]
    fn after_import() {
        assert_eq!("flag".parse(), Ok(AfterImport::Flag));
        assert_eq!("seen".parse(), Ok(AfterImport::Seen));
        assert_eq!("none".parse(), Ok(AfterImport::Nothing));
        assert_eq!(
            "move:Done".parse(),
            Ok(AfterImport::Move(FolderName::new("Done").unwrap()))
        );
        for bad in ["move:", "delete", ""] {
            let error = bad.parse::<AfterImport>().unwrap_err();
            assert!(error.contains("move:FOLDER"), "{error}");
        }
        for bad in ["move:Done\r\nA1 DELETE INBOX", "move:Do\0ne", "move:\n"] {
            let error = bad.parse::<AfterImport>().unwrap_err();
            assert!(error.contains("line break or NUL"), "{error}");
        }
    }

    #[test]
    fn folders() {
        assert_eq!(
            "Certs/Incoming"
                .parse::<FolderName>()
                .map(|f| f.to_string()),
            Ok("Certs/Incoming".into())
        );
        for bad in ["", "INBOX\r\nA1 LOGOUT", "IN\nBOX", "IN\0BOX"] {
            let error = bad.parse::<FolderName>().unwrap_err();
            assert!(error.starts_with("folder: "), "{error}");
        }
    }

    #[test]
    fn senders() {
        assert_eq!(
            "orders@ca.example".parse(),
            Ok(SenderAddress("orders@ca.example".into()))
        );
        for bad in ["", "a\"b", "a\\b", "a\nb"] {
            assert!(bad.parse::<SenderAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_manager_values() {
        assert!(
            "https://x.us-south.secrets-manager.appdomain.cloud"
                .parse::<EndpointUrl>()
                .is_ok()
        );
        assert!("http://127.0.0.1:8080".parse::<EndpointUrl>().is_ok());
        let clear = "http://sm.example".parse::<EndpointUrl>().unwrap_err();
        assert!(clear.contains("in clear"), "{clear}");
        let with_key = "https://me:s3cret@sm.example"
            .parse::<EndpointUrl>()
            .unwrap_err();
        assert!(with_key.contains("credentials"), "{with_key}");
        assert!(!with_key.contains("s3cret"), "{with_key}");
        assert!("default".parse::<SecretGroupId>().is_ok());
        assert!("d8f3-aa".parse::<SecretGroupId>().is_ok());
        assert!("a&b=c".parse::<SecretGroupId>().is_err());
        assert!("web-{common_name}".parse::<SecretNameTemplate>().is_ok());
        assert!("a b".parse::<SecretNameTemplate>().is_err());
        assert!("{other}".parse::<SecretNameTemplate>().is_err());
    }

    #[test]
    fn trust_roots() {
        assert_eq!("system".parse(), Ok(TrustRoots::System));
        assert_eq!("ca.pem".parse(), Ok(TrustRoots::Bundle("ca.pem".into())));
        assert!("".parse::<TrustRoots>().is_err());
    }
}

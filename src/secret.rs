//! A secret (API key, password, token) that cannot be printed by accident: `Debug` and
//! `Display` show a placeholder, so a secret inside an error or a log line stays hidden.

use std::fmt;

/// The environment variables a secret may come from. They are removed from the environment
/// of every child fulfill starts (`*_cmd` commands, the deploy hook): a secret goes only
/// where it is used, never to a program that merely inherits fulfill's environment.
pub const SECRET_ENV_VARS: [&str; 3] = ["SL_API_KEY", "FULFILL_IMAP_PASSWORD", "IBMCLOUD_API_KEY"];

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_formats_its_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret} {secret:#?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }
}

//! The IAM access token: asked for with the API key (docs/secrets-manager.md §2), kept
//! in memory only, as a `Secret`, and asked for again before it expires.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::secret::Secret;

/// The form grant for an API key (docs/secrets-manager.md §2).
pub const GRANT_TYPE_API_KEY: &str = "urn:ibm:params:oauth:grant-type:apikey";

/// IAM's public token endpoint (docs/secrets-manager.md §2).
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iam.cloud.ibm.com/identity/token";

/// What the token endpoint answers; only what is used is read.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    /// Seconds the token lives.
    pub expires_in: u64,
}

/// The longest life a token is taken to have. IAM's tokens live an hour in its examples
/// (docs/secrets-manager.md §2); a larger `expires_in` from a broken or hostile server
/// would otherwise overflow the `Instant` (a panic), and a token held for days would
/// outlive any revocation.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 60 * 60);

/// A token and when to stop using it.
pub struct Token {
    pub access: Secret,
    /// go-sdk-core asks for a new token once 80 % of its life has passed
    /// (docs/secrets-manager.md §2); so does fulfill, so a token never expires mid-call.
    refresh_at: Instant,
}

impl Token {
    pub fn new(answer: TokenAnswer, received: Instant) -> Token {
        let life = Duration::from_secs(answer.expires_in).min(MAX_TOKEN_LIFE);
        Token {
            access: Secret::new(answer.access_token),
            refresh_at: received + life.mul_f64(0.8),
        }
    }

    /// Whether the token can still be sent at `now`.
    pub fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// A custom `Debug`, so an answer never shows its token.
impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenAnswer {{ expires_in: {} }}", self.expires_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_after_80_percent_of_its_life() {
        let start = Instant::now();
        let token = Token::new(
            TokenAnswer {
                access_token: "t".into(),
                expires_in: 3600,
            },
            start,
        );
        assert!(token.fresh(start + Duration::from_secs(2879)));
        assert!(!token.fresh(start + Duration::from_secs(2880)));
        assert!(!token.fresh(start + Duration::from_secs(3600)));
    }

    #[test]
    fn a_huge_expires_in_is_capped_at_a_day() {
        let start = Instant::now();
        let token = Token::new(
            TokenAnswer {
                access_token: "t".into(),
                expires_in: u64::MAX,
            },
            start,
        );
        assert!(token.fresh(start + Duration::from_secs(3600)));
        assert!(!token.fresh(start + MAX_TOKEN_LIFE));
    }

    #[test]
    fn a_token_that_lives_no_time_is_never_fresh() {
        let start = Instant::now();
        let token = Token::new(
            TokenAnswer {
                access_token: "t".into(),
                expires_in: 0,
            },
            start,
        );
        assert!(!token.fresh(start));
    }
}

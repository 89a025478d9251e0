//! Who is asking: this daemon's operator tokens, and bearer tokens on API requests.
//!
//! The API takes `Authorization: Bearer <token>` on every request; the UI signs in with the
//! same tokens into a session (`super::session`). What a token's role allows is
//! `crate::access`'s. No GET request changes anything.

use crate::access::secret_hash;
use axum::http::HeaderMap;
use rand::RngExt;
use subtle::ConstantTimeEq;

/// This daemon's operator tokens, by the SHA-256 of each secret: a web session refers to the
/// token it was signed in with by that hash alone.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: Vec<(String, String)>,
}

impl Tokens {
    /// Parses a token file: one `TOKEN` or `NAME TOKEN` per line; `#` starts a comment.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut by_hash = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            let (name, token) = match words.as_slice() {
                [] => continue,
                [token] => ("operator", *token),
                [name, token] => (*name, *token),
                _ => anyhow::bail!(
                    "token file line {}: expected `TOKEN` or `NAME TOKEN`",
                    number + 1
                ),
            };
            anyhow::ensure!(
                token.len() >= 16,
                "token file line {}: a token needs at least 16 characters",
                number + 1
            );
            by_hash.push((secret_hash(token), name.to_string()));
        }
        anyhow::ensure!(!by_hash.is_empty(), "the token file has no token");
        Ok(Tokens { by_hash })
    }

    /// One token, taken verbatim (no `#` comments or `NAME TOKEN` words, unlike a token
    /// file), for the operator `operator`.
    pub fn single(token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            token.chars().count() >= 16,
            "a token needs at least 16 characters"
        );
        anyhow::ensure!(
            !token.chars().any(char::is_control) && token.trim() == token,
            "a token cannot hold control characters or start or end with whitespace \
             (HTTP clients would never send it as it is)"
        );
        Ok(Tokens {
            by_hash: vec![(secret_hash(token), "operator".into())],
        })
    }

    /// A fresh random token, for a server started without one.
    pub fn generate() -> (Self, String) {
        let token = random_hex(24);
        (
            Tokens {
                by_hash: vec![(secret_hash(&token), "operator".into())],
            },
            token,
        )
    }

    /// The operator whose token's secret hashes to `hash`, compared in constant time.
    pub fn operator_by_hash(&self, hash: &str) -> Option<&str> {
        self.by_hash
            .iter()
            .find(|(known, _)| bool::from(known.as_bytes().ct_eq(hash.as_bytes())))
            .map(|(_, name)| name.as_str())
    }
}

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    hex::encode((0..bytes).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_name_operators() {
        let tokens =
            Tokens::parse("# ops\nalice aaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbb\n").unwrap();
        let operator = |secret: &str| tokens.operator_by_hash(&secret_hash(secret));
        assert_eq!(operator("aaaaaaaaaaaaaaaaaaaa"), Some("alice"));
        assert_eq!(operator("bbbbbbbbbbbbbbbbbbbb"), Some("operator"));
        assert_eq!(operator("aaaaaaaaaaaaaaaaaaab"), None);
        assert!(
            Tokens::parse("short")
                .unwrap_err()
                .to_string()
                .contains("16 characters")
        );
        assert!(Tokens::parse("a b c").is_err());
        assert!(Tokens::parse("# nothing\n").is_err());
    }
}

//! Who is asking: operator tokens, cookie sessions for the web UI and CSRF tokens.
//!
//! The API takes `Authorization: Bearer <token>` on every request; the UI takes a session
//! cookie (`HttpOnly`, `SameSite=Strict`) set by signing in with a token, plus the session's
//! CSRF token in every form. What a token's role allows is `crate::access`'s. No GET request
//! changes anything.

use axum::http::HeaderMap;
use rand::RngExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "drydock_session";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Operator tokens: token → operator name.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: Vec<(String, String)>,
}

impl Tokens {
    /// Parses a token file: one `TOKEN` or `NAME TOKEN` per line; `#` starts a comment.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut by_token = Vec::new();
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
            by_token.push((token.to_string(), name.to_string()));
        }
        anyhow::ensure!(!by_token.is_empty(), "the token file has no token");
        Ok(Tokens { by_token })
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
            by_token: vec![(token.to_string(), "operator".into())],
        })
    }

    /// A fresh random token, for a server started without one.
    pub fn generate() -> (Self, String) {
        let token = random_hex(24);
        (
            Tokens {
                by_token: vec![(token.clone(), "operator".into())],
            },
            token,
        )
    }

    /// The operator a token belongs to, compared in constant time.
    pub fn operator(&self, token: &str) -> Option<&str> {
        self.by_token
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, name)| name.as_str())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, and what they may do.
    pub principal: crate::access::Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
    started: Instant,
}

/// Live sessions, in memory: a restart signs everyone out.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; returns its id for the cookie.
    pub fn start(&self, principal: crate::access::Principal) -> String {
        let id = random_hex(32);
        let session = Session {
            principal,
            csrf: random_hex(16),
            started: Instant::now(),
        };
        let mut live = self.live.lock().unwrap();
        live.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        live.insert(id.clone(), session);
        id
    }

    /// The session named by the request's cookie, if live.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let live = self.live.lock().unwrap();
        live.get(&id)
            .filter(|s| s.started.elapsed() < SESSION_LIFETIME)
            .cloned()
    }

    /// Ends the session named by the request's cookie.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.live.lock().unwrap().remove(&id);
        }
    }
}

/// A cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_string())
        })
}

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
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
        assert_eq!(tokens.operator("aaaaaaaaaaaaaaaaaaaa"), Some("alice"));
        assert_eq!(tokens.operator("bbbbbbbbbbbbbbbbbbbb"), Some("operator"));
        assert_eq!(tokens.operator("aaaaaaaaaaaaaaaaaaab"), None);
        assert!(
            Tokens::parse("short")
                .unwrap_err()
                .to_string()
                .contains("16 characters")
        );
        assert!(Tokens::parse("a b c").is_err());
        assert!(Tokens::parse("# nothing\n").is_err());
    }

    #[test]
    fn sessions_come_from_the_cookie() {
        let sessions = Sessions::default();
        let id = sessions.start(crate::access::Principal::operator("alice"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            format!("other=1; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        let session = sessions.from_headers(&headers).unwrap();
        assert_eq!(session.principal.name, "alice");
        sessions.end(&headers);
        assert!(sessions.from_headers(&headers).is_none());
    }
}

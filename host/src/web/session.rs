//! Web UI sessions, kept in the store so that every daemon on a database honours a sign-in.
//!
//! Signing in with a token makes a random session secret, sent back as an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` behind a proxy that says it took the request over
//! HTTPS). The store keeps the SHA-256 of that secret and the SHA-256 of the token signed in
//! with, masked by a pad made from the secret ([`seal`]): nothing there signs anyone in or
//! helps guess a token. Every request asks again who the token speaks for, so a session lasts
//! while its token does: revoking a token from the database ends its sessions on every daemon
//! at once, and a session signed in with an operator token from a daemon's file is honoured by
//! the daemons that hold that token. The CSRF token every form carries is derived from the
//! session's secret: nothing to store, and nothing to guess without the cookie.

use super::AppState;
use crate::access::{Principal, secret_hash};
use crate::store::NewSession;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use cookie::{Cookie, CookieBuilder, SameSite};
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "drydock_session";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, and what they may do.
    pub principal: Principal,
    /// The token every form of this session must carry.
    pub csrf: String,
}

impl Session {
    /// Whether a form's CSRF token is this session's, compared in constant time.
    pub fn carried_by(&self, csrf: &str) -> bool {
        self.csrf.as_bytes().ct_eq(csrf.as_bytes()).into()
    }
}

/// The session of a page request, if it is signed in. The pages' middleware looks it up once
/// and leaves it in the request's extensions; as an extractor it takes it from there (or looks
/// it up, outside that middleware).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Option<Session>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(signed_in) = parts.extensions.get::<SignedIn>() {
            return Ok(signed_in.clone());
        }
        let jar = CookieJar::from_headers(&parts.headers);
        lookup(state, &jar).await.map(SignedIn)
    }
}

/// The live session the request's cookie names, if any; a 503 when the store cannot say.
pub async fn lookup(state: &AppState, jar: &CookieJar) -> Result<Option<Session>, Response> {
    let Some(secret) = jar.get(SESSION_COOKIE).map(Cookie::value) else {
        return Ok(None);
    };
    let unreadable = |error: crate::store::Error| {
        tracing::error!(%error, "reading a web session");
        let message = "the database cannot be read just now: try again shortly";
        (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    };
    let id_hash = secret_hash(secret);
    let sealed = state.store().session_token_sealed(&id_hash).await;
    let Some(token_hash) = sealed.map_err(unreadable)?.and_then(|s| unseal(&s, secret)) else {
        return Ok(None);
    };
    match super::authenticate_hash(state, &token_hash, "web").await {
        Ok(principal) => Ok(Some(Session {
            principal,
            csrf: csrf_of(secret),
        })),
        Err(super::AuthError::Refused { .. }) => Ok(None),
        Err(super::AuthError::Store(error)) => Err(unreadable(error)),
    }
}

/// Starts a session for whoever holds the token `token_secret` (already authenticated), and
/// ends the one `jar` held, if any; returns the jar that names the new one.
pub async fn start(
    state: &AppState,
    token_secret: &str,
    jar: CookieJar,
    secure: bool,
) -> crate::store::Result<CookieJar> {
    let store = state.store();
    let token_hash = secret_hash(token_secret);
    let token_id = match state.tokens.operator_by_hash(&token_hash) {
        Some(_) => None,
        None => store.token_by_secret_hash(&token_hash).await?.map(|t| t.id),
    };
    if let Some(old) = jar.get(SESSION_COOKIE) {
        store.session_delete(&secret_hash(old.value())).await?;
    }
    let secret = super::auth::random_hex(32);
    let new = NewSession {
        id_hash: secret_hash(&secret),
        token_sealed: seal(&token_hash, &secret),
        token_id,
        expires_at: store.now() + SESSION_LIFETIME.as_millis() as u64,
    };
    store.session_insert(&new).await?;
    let lifetime = cookie::time::Duration::seconds(SESSION_LIFETIME.as_secs() as i64);
    let cookie = cookie_for(secret).max_age(lifetime).secure(secure);
    Ok(jar.add(cookie.build()))
}

/// Ends the request's session on every daemon; returns the jar that clears its cookie.
pub async fn end(state: &AppState, jar: CookieJar) -> crate::store::Result<CookieJar> {
    if let Some(secret) = jar.get(SESSION_COOKIE).map(Cookie::value) {
        state.store().session_delete(&secret_hash(secret)).await?;
    }
    Ok(jar.remove(cookie_for(String::new())))
}

/// Whether a proxy in front says the request came over HTTPS (`X-Forwarded-Proto` or
/// `Forwarded`): then the cookie is sent back over HTTPS only (`Secure`).
pub fn behind_https(headers: &axum::http::HeaderMap) -> bool {
    let said = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    said("x-forwarded-proto")
        .iter()
        .any(|v| v.trim() == "https")
        || said("forwarded")
            .iter()
            .flat_map(|v| v.split([';', ',']).map(str::trim).collect::<Vec<_>>())
            .any(|pair| pair == "proto=https")
}

/// The pad that masks a session's token hash: made from the session's secret, which the
/// store never holds.
fn pad(secret: &str) -> [u8; 32] {
    Sha256::digest(format!("drydock session pad {secret}")).into()
}

/// `token_hash` (hex SHA-256) masked with the pad of the session `secret`, as hex.
fn seal(token_hash: &str, secret: &str) -> String {
    masked(&hex::decode(token_hash).unwrap_or_default(), secret)
}

/// The token hash [`seal`] masked; `None` for what no seal made.
fn unseal(sealed: &str, secret: &str) -> Option<String> {
    let sealed = hex::decode(sealed).ok().filter(|m| m.len() == 32)?;
    Some(masked(&sealed, secret))
}

/// `bytes` XORed with the pad of the session `secret` (masking twice unmasks), as hex.
fn masked(bytes: &[u8], secret: &str) -> String {
    let masked: Vec<u8> = bytes.iter().zip(pad(secret)).map(|(a, b)| a ^ b).collect();
    hex::encode(masked)
}

/// The session cookie: for scripts out of reach, sent on this site's own requests only.
fn cookie_for(secret: String) -> CookieBuilder<'static> {
    Cookie::build((SESSION_COOKIE, secret))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
}

/// The CSRF token of the session whose secret is `secret`.
fn csrf_of(secret: &str) -> String {
    secret_hash(&format!("drydock csrf {secret}"))[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_s_csrf_token_comes_from_its_secret_alone() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a").len(), 32);
        let session = Session {
            principal: Principal::operator("alice"),
            csrf: csrf_of("a"),
        };
        assert!(session.carried_by(&csrf_of("a")));
        assert!(!session.carried_by(&csrf_of("b")));
        assert!(!session.carried_by(""));
    }

    #[test]
    fn a_sealed_token_hash_opens_with_its_session_s_secret_alone() {
        let hash = secret_hash("an operator's token");
        let sealed = seal(&hash, "s1");
        assert_ne!(sealed, hash);
        assert_ne!(sealed, seal(&hash, "s2"), "each session masks it anew");
        assert_eq!(unseal(&sealed, "s1").as_deref(), Some(hash.as_str()));
        assert_ne!(unseal(&sealed, "s2").as_deref(), Some(hash.as_str()));
        assert_eq!(unseal("not hex", "s1"), None);
        assert_eq!(unseal("abcd", "s1"), None);
    }

    #[test]
    fn a_proxy_saying_https_makes_the_cookie_secure() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, value.parse().unwrap());
            }
            headers
        };
        assert!(behind_https(&headers(&[("x-forwarded-proto", "https")])));
        assert!(behind_https(&headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=HTTPS"
        )])));
        assert!(!behind_https(&headers(&[("x-forwarded-proto", "http")])));
        assert!(!behind_https(&headers(&[])));
    }

    #[test]
    fn the_cookie_is_out_of_scripts_reach_and_same_site() {
        let text = cookie_for("s3cret".into()).build().to_string();
        for part in [
            "drydock_session=s3cret",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}

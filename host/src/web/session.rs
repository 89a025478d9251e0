//! Web UI sessions, kept in the store so that every daemon on a database honours a sign-in.
//!
//! Signing in with a token makes a random session secret, sent back as an `HttpOnly`,
//! `SameSite=Strict` cookie. The store keeps only the SHA-256 of that secret and of the token
//! signed in with, and every request asks again who the token speaks for: a session lasts while
//! its token does, so revoking a token (or its expiry, or its removal from a daemon's token
//! file) signs its sessions out on every daemon at once. The CSRF token every form carries is
//! derived from the session's secret: nothing to store, and nothing to guess without the cookie.

use super::AppState;
use crate::access::{Principal, secret_hash};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use cookie::{Cookie, CookieBuilder, SameSite};
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
        let message = format!("reading the session from the database: {error}");
        (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    };
    let store = state.store();
    let Some(token_hash) = store
        .session_token_hash(&secret_hash(secret))
        .await
        .map_err(unreadable)?
    else {
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

/// Starts a session for whoever holds the token `token_secret`; returns the cookie that
/// names it.
pub async fn start(state: &AppState, token_secret: &str) -> crate::store::Result<Cookie<'static>> {
    let secret = super::auth::random_hex(32);
    let store = state.store();
    let expires_at = store.now() + SESSION_LIFETIME.as_millis() as u64;
    store
        .session_insert(
            &secret_hash(&secret),
            &secret_hash(token_secret),
            expires_at,
        )
        .await?;
    let lifetime = cookie::time::Duration::seconds(SESSION_LIFETIME.as_secs() as i64);
    Ok(cookie_for(secret).max_age(lifetime).build())
}

/// Ends the request's session on every daemon; returns the jar that clears its cookie.
pub async fn end(state: &AppState, jar: CookieJar) -> crate::store::Result<CookieJar> {
    if let Some(secret) = jar.get(SESSION_COOKIE).map(Cookie::value) {
        state.store().session_delete(&secret_hash(secret)).await?;
    }
    Ok(jar.remove(cookie_for(String::new())))
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

//! Fetches registry tokens from a token endpoint (distribution token spec).
//!
//! Spec: `docs/spec/auth/token.md` of distribution. The response carries the
//! token as `token` or `access_token` (both may be present and are then equal),
//! `expires_in` in seconds (default 60 when absent) and optionally `issued_at`
//! (RFC 3339), from which the lifetime is counted.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::AuthError;
use crate::config::Credentials;
use crate::secret::Secret;

/// The token spec's default lifetime when `expires_in` is missing.
pub const DEFAULT_EXPIRES_IN: u64 = 60;

/// A token and how long it may be used from now.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: Secret,
    /// Remaining lifetime as of when the response arrived.
    pub lifetime: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<i64>,
    issued_at: Option<String>,
}

/// Requests a token for `scopes` from `realm`.
pub async fn fetch(
    http: &reqwest::Client,
    realm: &str,
    service: &str,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<IssuedToken, AuthError> {
    let mut url = url::Url::parse(realm).map_err(|_| AuthError::BadRealm)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AuthError::BadRealm);
    }
    {
        let mut q = url.query_pairs_mut();
        if !service.is_empty() {
            q.append_pair("service", service);
        }
        for s in scopes {
            q.append_pair("scope", s);
        }
        if let Some(c) = credentials {
            q.append_pair("account", &c.username);
        }
    }
    let mut req = http.get(url);
    if let Some(c) = credentials {
        req = req.basic_auth(&c.username, Some(c.password.expose()));
    }
    let resp = req.send().await.map_err(AuthError::from_transport)?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(AuthError::Rejected { status: status.as_u16() });
    }
    if !status.is_success() {
        return Err(AuthError::TokenEndpoint { status: status.as_u16() });
    }
    let body = resp.bytes().await.map_err(AuthError::from_transport)?;
    parse_response(&body, SystemTime::now())
}

/// Parses a token response body; `now` is when it arrived.
pub fn parse_response(body: &[u8], now: SystemTime) -> Result<IssuedToken, AuthError> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(|_| AuthError::BadTokenResponse)?;
    let token = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token.filter(|t| !t.is_empty()))
        .ok_or(AuthError::BadTokenResponse)?;
    let expires_in = match r.expires_in {
        Some(n) if n > 0 => n as u64,
        _ => DEFAULT_EXPIRES_IN,
    };
    let full = Duration::from_secs(expires_in);
    // Count from issued_at when given; a clock skewed into the future or the
    // past must not make a fresh token look expired or immortal, so the result
    // stays within (0, expires_in].
    let lifetime = match r.issued_at.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok()) {
        Some(issued) => match (issued + full).duration_since(now) {
            Ok(left) if left > Duration::ZERO => left.min(full),
            _ => full.min(Duration::from_secs(1)),
        },
        None => full,
    };
    Ok(IssuedToken { token: Secret::new(token), lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339_weak(s).expect("test timestamp")
    }

    #[test]
    fn token_or_access_token() {
        let now = SystemTime::now();
        let t = parse_response(br#"{"token":"a"}"#, now).expect("token");
        assert_eq!(t.token.expose(), "a");
        assert_eq!(t.lifetime, Duration::from_secs(60), "expires_in defaults to 60 s");
        let t = parse_response(br#"{"access_token":"b","expires_in":300}"#, now).expect("access_token");
        assert_eq!((t.token.expose(), t.lifetime), ("b", Duration::from_secs(300)));
        assert!(parse_response(br#"{"token":""}"#, now).is_err());
        assert!(parse_response(b"<html>", now).is_err());
    }

    #[test]
    fn issued_at_counts_the_lifetime() {
        let body = br#"{"token":"a","expires_in":100,"issued_at":"2026-01-01T00:00:00Z"}"#;
        let t = parse_response(body, at("2026-01-01T00:00:40Z")).expect("token");
        assert_eq!(t.lifetime, Duration::from_secs(60));
        // Issued "in the future" (skew): never longer than expires_in.
        let t = parse_response(body, at("2025-12-31T23:00:00Z")).expect("token");
        assert_eq!(t.lifetime, Duration::from_secs(100));
        // Already past: short, not zero, so the caller refetches soon.
        let t = parse_response(body, at("2026-01-02T00:00:00Z")).expect("token");
        assert_eq!(t.lifetime, Duration::from_secs(1));
    }
}

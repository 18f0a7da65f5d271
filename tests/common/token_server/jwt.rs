//! Signing tokens: claims, scopes, grants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use super::{State, TokenServerConfig};

/// One `access` entry of the claims.
#[derive(Serialize)]
pub(super) struct Access {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

static JTI: AtomicU64 = AtomicU64::new(0);

/// Signs a token for `sub` granting `access`, valid per `cfg`.
pub(super) fn sign(
    state: &State,
    cfg: &TokenServerConfig,
    sub: &str,
    access: Vec<Access>,
) -> jsonwebtoken::errors::Result<String> {
    let now = unix_now();
    let lifetime = cfg.jwt_lifetime.unwrap_or(cfg.expires_in.unwrap_or(60) as i64);
    let claims = Claims {
        iss: cfg.issuer.clone(),
        sub: sub.into(),
        aud: cfg.service.clone(),
        exp: now + lifetime,
        nbf: now - 1,
        iat: now,
        jti: format!("{}-{}", now, JTI.fetch_add(1, Ordering::SeqCst)),
        access,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(state.kid.clone());
    jsonwebtoken::encode(&header, &claims, &state.key)
}

/// `type:name:actions` -> parts; names may contain '/', actions are comma-separated.
pub(super) struct Scope<'a> {
    kind: &'a str,
    pub(super) name: &'a str,
    actions: Vec<&'a str>,
}

pub(super) fn parse_scope(scope: &str) -> Option<Scope<'_>> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(Scope { kind, name, actions })
}

/// Grants the requested actions the account may have; unknown scopes grant nothing.
pub(super) fn grant(scopes: &[String], allowed: &[String]) -> Vec<Access> {
    let may = |a: &str| allowed.iter().any(|x| x == "*" || x == a);
    scopes
        .iter()
        .filter_map(|s| parse_scope(s))
        .map(|s| Access {
            kind: s.kind.into(),
            name: s.name.into(),
            actions: s.actions.into_iter().filter(|a| may(a)).map(String::from).collect(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (Howard Hinnant's civil-from-days).
pub fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

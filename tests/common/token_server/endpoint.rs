//! The `/token` endpoint over hyper 1.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::jwt::{grant, rfc3339, sign, unix_now};
use super::{lock, Fault, Settings, State, TokenFields, TokenRequest, TokenServerConfig};

type Body = Full<Bytes>;

/// Serves connections until the task is aborted.
pub(super) async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new();
            let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/token" {
        return json(StatusCode::NOT_FOUND, error_body("NOT_FOUND", "no such endpoint"));
    }
    if req.method() != hyper::Method::GET {
        // The OAuth2 POST flow is not implemented; clients fall back to GET.
        return json(StatusCode::METHOD_NOT_ALLOWED, error_body("UNSUPPORTED", "GET only"));
    }
    let settings = lock(&state.settings).clone();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let user = basic_credentials(&req);
    let mut record = TokenRequest {
        user: user.as_ref().map(|(u, _)| u.clone()),
        account: query_value(&query, "account"),
        service: query_value(&query, "service"),
        scopes: scopes(&query),
        status: 0,
    };
    if !settings.delay.is_zero() {
        tokio::time::sleep(settings.delay).await;
    }
    let resp = answer(state, &settings, &record, user);
    record.status = resp.status().as_u16();
    count(state, record);
    resp
}

fn count(state: &State, record: TokenRequest) {
    state.total.fetch_add(1, Ordering::SeqCst);
    let mut counts = lock(&state.counts);
    // skopeo repeats a scope within one request (`scope=X&scope=X`); count requests.
    let mut seen: Vec<&String> = Vec::new();
    for scope in &record.scopes {
        if !seen.contains(&scope) {
            seen.push(scope);
            *counts.per_scope.entry(scope.clone()).or_default() += 1;
        }
    }
    counts.log.push(record);
}

fn answer(state: &State, s: &Settings, req: &TokenRequest, user: Option<(String, String)>) -> Response<Body> {
    if s.fault == Fault::Status500 {
        return json(StatusCode::INTERNAL_SERVER_ERROR, error_body("UNKNOWN", "injected failure"));
    }
    if req.service.as_deref() != Some(s.config.service.as_str()) {
        return json(StatusCode::BAD_REQUEST, error_body("UNSUPPORTED", "unknown service"));
    }
    let Some((sub, allowed)) = authenticate(&s.config, user) else {
        let mut resp = json(StatusCode::UNAUTHORIZED, error_body("UNAUTHORIZED", "authentication required"));
        let challenge = hyper::header::HeaderValue::from_static("Basic realm=\"token\"");
        resp.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, challenge);
        return resp;
    };
    let token = match s.fault {
        Fault::GarbageToken => Ok("garbage.not-a.jwt".to_string()),
        _ => sign(state, &s.config, &sub, grant(&req.scopes, &allowed)),
    };
    match token {
        Ok(token) => {
            lock(&state.issued).0.push(token.clone());
            json(StatusCode::OK, token_body(&s.config, &token))
        }
        Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, error_body("UNKNOWN", &e.to_string())),
    }
}

/// `(subject, allowed actions)`, or `None` for wrong/missing credentials.
fn authenticate(cfg: &TokenServerConfig, user: Option<(String, String)>) -> Option<(String, Vec<String>)> {
    match user {
        None if cfg.anonymous => Some((String::new(), vec!["pull".into()])),
        None => None,
        Some((name, password)) => {
            let account = cfg.users.get(&name).filter(|u| u.password == password)?;
            Some((name, account.allowed.clone()))
        }
    }
}

fn token_body(cfg: &TokenServerConfig, token: &str) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    if cfg.fields != TokenFields::AccessTokenOnly {
        body.insert("token".into(), token.into());
    }
    if cfg.fields != TokenFields::TokenOnly {
        body.insert("access_token".into(), token.into());
    }
    if let Some(secs) = cfg.expires_in {
        body.insert("expires_in".into(), secs.into());
    }
    body.insert("issued_at".into(), rfc3339(unix_now()).into());
    body.into()
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "code": code, "message": message }] })
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let ct = hyper::header::HeaderValue::from_static("application/json");
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
    resp
}

fn basic_credentials<B>(req: &Request<B>) -> Option<(String, String)> {
    let value = req.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, password))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn query_value(query: &[(String, String)], key: &str) -> Option<String> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// All `scope` values; one parameter may also hold several space-separated scopes.
fn scopes(query: &[(String, String)]) -> Vec<String> {
    let values = query.iter().filter(|(k, _)| k == "scope");
    values.flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(String::from)).collect()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------

//! Parses a registry's `WWW-Authenticate` challenge (RFC 7235 syntax).
//!
//! The token spec (distribution `docs/spec/auth/token.md`) sends
//! `Bearer realm="...",service="...",scope="..."`; parameter names are
//! case-insensitive and values may be tokens or quoted strings with `\` escapes.

/// What a registry demands before it serves a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// Token auth: get a token from `realm` for `service` and `scope`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// The `service` parameter to send back (may be empty).
        service: String,
        /// The scope the registry wants for the request that was refused, if given
        /// (space-separated scopes).
        scope: Option<String>,
        /// `error="insufficient_scope"` and friends, if given.
        error: Option<String>,
    },
    /// HTTP Basic with the connector's credentials.
    Basic,
}

/// Parses the first challenge we can answer (Bearer preferred over Basic).
/// Returns `None` for a header with neither.
pub fn parse(header: &str) -> Option<Challenge> {
    let challenges = parse_all(header);
    let mut basic = false;
    for (scheme, params) in challenges {
        if scheme.eq_ignore_ascii_case("bearer") {
            let get = |name: &str| {
                params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
            };
            let realm = get("realm")?;
            return Some(Challenge::Bearer {
                realm,
                service: get("service").unwrap_or_default(),
                scope: get("scope").filter(|s| !s.is_empty()),
                error: get("error"),
            });
        }
        basic |= scheme.eq_ignore_ascii_case("basic");
    }
    basic.then_some(Challenge::Basic)
}

type Params = Vec<(String, String)>;

/// Splits a header into `(scheme, params)` challenges.
fn parse_all(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let mut p = Cursor { s: header.as_bytes(), i: 0 };
    loop {
        p.skip_ws_and_commas();
        let Some(word) = p.token() else { break };
        p.skip_ws();
        if p.peek() == Some(b'=') {
            // `word=value` belongs to the current challenge.
            p.i += 1;
            p.skip_ws();
            let value = if p.peek() == Some(b'"') { p.quoted() } else { p.token().unwrap_or_default() };
            match out.last_mut() {
                Some((_, params)) => params.push((word, value)),
                None => break, // parameters before any scheme: malformed
            }
        } else {
            out.push((word, Vec::new()));
        }
    }
    out
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// An RFC 7230 token (plus `/` and `:` which registries put unquoted in scopes).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b) {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A quoted string starting at `"`; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut v = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                _ => v.push(b),
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_bearer_challenge() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: "registry.docker.io".into(),
                scope: Some("repository:library/alpine:pull".into()),
                error: None,
            })
        );
    }

    #[test]
    fn names_are_case_insensitive_and_values_may_be_tokens() {
        let c = parse("bearer REALM=http://127.0.0.1:1/token, Service=reg , error=\"insufficient_scope\"");
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: "reg".into(),
                scope: None,
                error: Some("insufficient_scope".into()),
            })
        );
    }

    #[test]
    fn escapes_in_quoted_strings() {
        let Some(Challenge::Bearer { realm, .. }) = parse(r#"Bearer realm="a\"b\\c""#) else { panic!() };
        assert_eq!(realm, r#"a"b\c"#);
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        let c = parse(r#"Basic realm="x", Bearer realm="https://t/token",service="s""#);
        assert!(matches!(c, Some(Challenge::Bearer { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        for h in [
            "",
            "Bearer",
            "Bearer realm",
            "=x",
            "Bearer realm=\"unterminated",
            ",,,",
            "Negotiate abc",
            "\u{0}\u{ff}",
        ] {
            let _ = parse(h);
        }
        assert_eq!(parse("Bearer service=x"), None, "Bearer without realm is unusable");
    }
}

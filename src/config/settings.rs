//! Validates the settings file into [`Settings`], including its humane durations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::files::read_text;
use super::location::SerdeProblem;
use super::model::{ClientAuthMode, ClientAuthSettings, ResolverKind, Settings, UpstreamSettings};
use super::names::validate_dns_name;
use super::raw::{RawClientAuthMode, RawResolver, RawSettings};

/// Reads the settings file. Returns the connector paths found (even if other
/// settings are invalid) and the settings when they are complete.
pub(super) fn read_settings(path: &Path, diags: &mut Diagnostics) -> (Vec<PathBuf>, Option<Settings>) {
    let Some(text) = read_text(path, diags) else { return (Vec::new(), None) };
    let raw = match serde_yaml::from_str::<Option<RawSettings>>(&text) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            diags.push(
                Diagnostic::new(path, "", "the settings file is empty")
                    .with_hint("at least `listen` and `connectors.paths` are required"),
            );
            return (Vec::new(), None);
        }
        Err(e) => {
            let problem = SerdeProblem::from_yaml(&e);
            diags.push(
                Diagnostic::new(path, problem.location(""), problem.message).with_optional_hint(problem.hint),
            );
            // Still find the connector files, so their problems are reported
            // in the same run instead of one fix at a time.
            return (lenient_connector_paths(&text, path), None);
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    validate_settings(&raw, path, base, diags)
}

/// `connectors.paths` read from an otherwise invalid settings file, if it is a
/// list of strings; resolved against the settings file's directory.
fn lenient_connector_paths(text: &str, path: &Path) -> Vec<PathBuf> {
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(text) else { return Vec::new() };
    let Some(list) = value.get("connectors").and_then(|c| c.get("paths")).and_then(|p| p.as_sequence())
    else {
        return Vec::new();
    };
    list.iter().filter_map(|p| p.as_str()).map(|p| base.join(p)).collect()
}

/// Turns raw settings into typed ones, recording every problem. Returns the
/// connector paths and, unless a required value is unusable, the settings; the
/// caller must still check `diags`.
fn validate_settings(
    raw: &RawSettings,
    file: &Path,
    base: &Path,
    diags: &mut Diagnostics,
) -> (Vec<PathBuf>, Option<Settings>) {
    let mut problem = |location: &str, message: String, hint: &str| {
        diags.push(Diagnostic::new(file, location, message).with_hint(hint));
    };

    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(addr)) => Some(addr),
        Some(Err(e)) => {
            problem(
                "listen",
                format!("invalid address {:?}: {e}", raw.listen.as_deref().unwrap_or("")),
                "write ip:port, e.g. 127.0.0.1:5000 or 0.0.0.0:5000",
            );
            None
        }
        None => {
            problem("listen", "`listen` is required".into(), "add e.g. `listen: 127.0.0.1:5000`");
            None
        }
    };

    let public_url = match (&raw.public_url, listen) {
        (Some(text), _) => match parse_public_url(text) {
            Ok(url) => Some(url),
            Err((message, hint)) => {
                problem("publicUrl", message, hint);
                None
            }
        },
        (None, Some(addr)) => Url::parse(&format!("http://{addr}")).ok(),
        (None, None) => None,
    };

    let admin_listen = match raw.admin.as_ref().and_then(|a| a.listen.as_deref()) {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                problem(
                    "admin.listen",
                    format!("invalid address {text:?}: {e}"),
                    "write ip:port, e.g. 127.0.0.1:9090",
                );
                None
            }
        },
    };

    let mut connector_paths = Vec::new();
    match raw.connectors.as_ref().and_then(|c| c.paths.as_ref()) {
        None => problem(
            "connectors.paths",
            "`connectors.paths` is required".into(),
            "list manifest files or directories, e.g. `connectors: {paths: [connectors.yaml]}`",
        ),
        Some(paths) if paths.is_empty() => problem(
            "connectors.paths",
            "`connectors.paths` is empty".into(),
            "list at least one manifest file or directory",
        ),
        Some(paths) => {
            for (i, p) in paths.iter().enumerate() {
                if p.trim().is_empty() {
                    problem(
                        &format!("connectors.paths[{i}]"),
                        "empty path".into(),
                        "remove it or name a file",
                    );
                } else {
                    connector_paths.push(base.join(p));
                }
            }
        }
    }

    let resolver = match raw.resolver {
        None | Some(RawResolver::Path) => ResolverKind::Path,
        Some(RawResolver::Host) => ResolverKind::Host,
    };
    let host_domain = match (raw.host_resolver.as_ref().and_then(|h| h.domain.as_deref()), resolver) {
        (Some(domain), _) => match validate_dns_name(domain) {
            Ok(()) => domain.to_ascii_lowercase(),
            Err(why) => {
                problem(
                    "hostResolver.domain",
                    format!("invalid domain {domain:?}: {why}"),
                    "write a DNS name such as proxy.local",
                );
                String::new()
            }
        },
        (None, ResolverKind::Host) => {
            problem(
                "hostResolver.domain",
                "`hostResolver.domain` is required with `resolver: host`".into(),
                "add e.g. `hostResolver: {domain: proxy.local}`",
            );
            String::new()
        }
        (None, ResolverKind::Path) => String::new(),
    };

    let raw_auth = raw.client_auth.as_ref();
    let mode = match raw_auth.and_then(|a| a.mode) {
        None | Some(RawClientAuthMode::None) => ClientAuthMode::None,
        Some(RawClientAuthMode::Token) => ClientAuthMode::Token,
    };
    let key_files: Vec<PathBuf> = raw_auth
        .and_then(|a| a.key_files.as_ref())
        .map(|files| files.iter().filter(|f| !f.trim().is_empty()).map(|f| base.join(f)).collect())
        .unwrap_or_default();
    if mode == ClientAuthMode::Token && key_files.is_empty() {
        problem(
            "clientAuth.keyFiles",
            "`clientAuth.keyFiles` must name at least one key with `mode: token`".into(),
            "generate one with `oci-connector keygen` and list it, e.g. `keyFiles: [keys/proxy.key]`",
        );
    }

    let allow_anonymous_clients = raw.allow_anonymous_clients.unwrap_or(false);
    if let Some(addr) = listen {
        if mode == ClientAuthMode::None && !addr.ip().is_loopback() && !allow_anonymous_clients {
            problem(
                "clientAuth.mode",
                format!("clients are not authenticated but the proxy listens on {addr}, reachable from other hosts"),
                "set `clientAuth.mode: token`, listen on 127.0.0.1, or set `allowAnonymousClients: true` if anyone who can reach the proxy may use every connector",
            );
        }
    }

    let defaults = UpstreamSettings::default();
    let raw_upstream = raw.upstream.as_ref();
    let mut duration = |key: &str, value: Option<&String>, default: Duration| match value {
        None => default,
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                problem(&format!("upstream.{key}"), format!("{key} must be greater than zero"), "e.g. 5s");
                default
            }
            Ok(d) => d,
            Err(why) => {
                problem(
                    &format!("upstream.{key}"),
                    format!("invalid duration {text:?}: {why}"),
                    "write a number and a unit: 500ms, 5s, 2m, 1h",
                );
                default
            }
        },
    };
    let upstream = UpstreamSettings {
        connect_timeout: duration(
            "connectTimeout",
            raw_upstream.and_then(|u| u.connect_timeout.as_ref()),
            defaults.connect_timeout,
        ),
        read_timeout: duration(
            "readTimeout",
            raw_upstream.and_then(|u| u.read_timeout.as_ref()),
            defaults.read_timeout,
        ),
        token_timeout: duration(
            "tokenTimeout",
            raw_upstream.and_then(|u| u.token_timeout.as_ref()),
            defaults.token_timeout,
        ),
        idle_timeout: duration(
            "idleTimeout",
            raw_upstream.and_then(|u| u.idle_timeout.as_ref()),
            defaults.idle_timeout,
        ),
        fast_lane: raw_upstream.and_then(|u| u.fast_lane).unwrap_or(defaults.fast_lane),
        receive_buffer: match raw_upstream.and_then(|u| u.receive_buffer.as_deref()) {
            None => defaults.receive_buffer,
            Some(text) if text.trim() == "auto" => None,
            Some(text) => match parse_size(text) {
                Ok(size) if (MIN_RECEIVE_BUFFER..=MAX_RECEIVE_BUFFER).contains(&size) => Some(size),
                Ok(_) => {
                    problem(
                        "upstream.receiveBuffer",
                        format!("receiveBuffer {text:?} is outside 64KiB..1GiB"),
                        "e.g. 4MiB, or `auto` for the kernel's autotuning",
                    );
                    defaults.receive_buffer
                }
                Err(why) => {
                    problem(
                        "upstream.receiveBuffer",
                        format!("invalid size {text:?}: {why}"),
                        "write a number and a unit: 512KiB, 4MiB, 1GiB; or `auto`",
                    );
                    defaults.receive_buffer
                }
            },
        },
    };

    let threads = match raw.threads {
        Some(0) => {
            problem("threads", "`threads` must be at least 1".into(), "omit it to use one thread per CPU");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };

    let settings = match (listen, public_url) {
        (Some(listen), Some(public_url)) => Some(Settings {
            listen,
            public_url,
            admin_listen,
            connector_paths: connector_paths.clone(),
            resolver,
            host_domain,
            client_auth: ClientAuthSettings { mode, key_files },
            allow_anonymous_clients,
            upstream,
            threads,
        }),
        _ => None,
    };
    (connector_paths, settings)
}

fn parse_public_url(text: &str) -> Result<Url, (String, &'static str)> {
    let hint = "write the proxy's root URL as clients reach it, e.g. http://proxy.example.com:5000";
    let url = Url::parse(text).map_err(|e| (format!("invalid URL {text:?}: {e}"), hint))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((
            format!("unsupported scheme {:?} in {text:?}", url.scheme()),
            "use http:// or https://",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err((format!("{text:?} has a path, query or fragment"), hint));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((format!("{text:?} contains credentials"), hint));
    }
    Ok(url)
}

/// Smallest `upstream.receiveBuffer`: below it a stream crawls.
const MIN_RECEIVE_BUFFER: usize = 64 << 10;
/// Largest `upstream.receiveBuffer`.
const MAX_RECEIVE_BUFFER: usize = 1 << 30;

/// A byte size: a number with an optional binary unit, `B`, `KiB`, `MiB` or `GiB`.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return Err("expected a number".into());
    }
    let (number, unit) = text.split_at(digits);
    let value: usize = number.parse().map_err(|_| format!("{number} is too large"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    value.checked_mul(scale).ok_or_else(|| format!("{text} is too large"))
}

/// A humane duration: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| format!("{number} is too large"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let part = match unit.trim() {
            "ms" => Some(Duration::from_millis(value)),
            "s" => Some(Duration::from_secs(value)),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "h" => value.checked_mul(3600).map(Duration::from_secs),
            "" => return Err(format!("{number} has no unit")),
            other => return Err(format!("unknown unit {other:?}")),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| "duration is too large".to_string())?;
        rest = next.trim_start();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Diagnostics;
    use crate::config::load::load;
    use crate::config::model::Config;
    use crate::config::test_support::{find, write};

    fn settings(text: &str) -> Result<Config, Diagnostics> {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "connectors.yaml", b"");
        let path = write(dir.path(), "settings.yaml", text.as_bytes());
        load(&path)
    }

    fn settings_problems(text: &str) -> Diagnostics {
        match settings(text) {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(d) => d,
        }
    }

    #[test]
    fn settings_defaults() {
        let config = settings("listen: 127.0.0.1:5000\nconnectors:\n  paths: [connectors.yaml]\n")
            .unwrap_or_else(|d| panic!("{d}"));
        let s = &config.settings;
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(s.resolver, ResolverKind::Path);
        assert_eq!(s.client_auth.mode, ClientAuthMode::None);
        assert_eq!(s.upstream.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.upstream.receive_buffer, Some(4 << 20));
        assert!(s.threads >= 1);
        assert!(s.admin_listen.is_none());
        assert!(s.connector_paths[0].is_absolute());
        assert!(config.connectors.is_empty());
    }

    #[test]
    fn settings_full() {
        let config = settings(
            "listen: '[::]:5000'\npublicUrl: https://proxy.example.com\nconnectors: {paths: [connectors.yaml]}\n\
             resolver: host\nhostResolver: {domain: Proxy.Local}\nclientAuth: {mode: token, keyFiles: [keys/a.key, /abs/b.key]}\n\
             upstream: {connectTimeout: 500ms, readTimeout: 2m, tokenTimeout: 1m30s, idleTimeout: 1h, fastLane: false, receiveBuffer: auto}\nthreads: 3\n",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let s = &config.settings;
        assert_eq!(s.resolver, ResolverKind::Host);
        assert_eq!(s.host_domain, "proxy.local");
        assert_eq!(s.client_auth.mode, ClientAuthMode::Token);
        assert!(
            s.client_auth.key_files[0].ends_with("keys/a.key") && s.client_auth.key_files[0].is_absolute()
        );
        assert_eq!(s.client_auth.key_files[1], PathBuf::from("/abs/b.key"));
        assert_eq!(s.upstream.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.upstream.token_timeout, Duration::from_secs(90));
        assert_eq!(s.upstream.idle_timeout, Duration::from_secs(3600));
        assert!(!s.upstream.fast_lane);
        assert_eq!(s.upstream.receive_buffer, None);
        assert_eq!(s.threads, 3);
    }

    #[test]
    fn settings_unknown_key_has_location_and_hint() {
        let d = settings_problems(
            "listen: 127.0.0.1:5000\nconnectors: {paths: [c.yaml]}\nclientAuth:\n  mdoe: token\n",
        );
        let problem = find(&d, "clientAuth.mdoe", "unknown field");
        assert!(problem.location.contains("line 4"), "{problem}");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `mode`?"));
        let d = settings_problems("listen: 127.0.0.1:5000\nresolver: hots\n");
        assert_eq!(find(&d, "resolver", "unknown variant").hint.as_deref(), Some("did you mean `host`?"));
    }

    #[test]
    fn settings_report_every_problem() {
        let d = settings_problems(
            "listen: localhost:5000\npublicUrl: http://x/path\nresolver: host\nclientAuth: {mode: token}\n\
             upstream: {connectTimeout: '5', readTimeout: 0s, tokenTimeout: 5y, receiveBuffer: 4MB}\nthreads: 0\nadmin: {listen: nope}\n",
        );
        for (location, message) in [
            ("listen", "invalid address"),
            ("publicUrl", "path"),
            ("connectors.paths", "required"),
            ("hostResolver.domain", "required"),
            ("clientAuth.keyFiles", "at least one key"),
            ("upstream.connectTimeout", "no unit"),
            ("upstream.readTimeout", "greater than zero"),
            ("upstream.tokenTimeout", "unknown unit"),
            ("upstream.receiveBuffer", "unknown unit"),
            ("threads", "at least 1"),
            ("admin.listen", "invalid address"),
        ] {
            assert!(find(&d, location, message).hint.is_some());
        }
        assert_eq!(d.len(), 11, "{d}");
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size(" 512 KiB "), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("100B"), Ok(100));
        assert!(parse_size("4MB").is_err_and(|e| e.contains("unknown unit")));
        assert!(parse_size("MiB").is_err_and(|e| e.contains("expected a number")));
        assert!(parse_size("99999999999999999999").is_err_and(|e| e.contains("too large")));
        assert!(parse_size("99999999999999GiB").is_err_and(|e| e.contains("too large")));
        let d = settings_problems(
            "listen: 127.0.0.1:5000\nconnectors: {paths: [c.yaml]}\nupstream: {receiveBuffer: 4KiB}\n",
        );
        assert!(find(&d, "upstream.receiveBuffer", "outside")
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("auto")));
    }

    #[test]
    fn anonymous_clients_on_a_public_listener_need_consent() {
        let d = settings_problems("listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\n");
        let problem = find(&d, "clientAuth.mode", "not authenticated");
        assert!(problem.hint.as_deref().is_some_and(|h| h.contains("allowAnonymousClients")));
        let allowed = settings(
            "listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\nallowAnonymousClients: true\n",
        );
        assert!(allowed.is_ok());
        let token = settings("listen: 0.0.0.0:5000\nconnectors: {paths: [connectors.yaml]}\nclientAuth: {mode: token, keyFiles: [k]}\n");
        assert!(token.is_ok());
    }

    #[test]
    fn missing_or_empty_settings_file() {
        let d = load(Path::new("/nonexistent/oci-connector.yaml")).err().unwrap_or_default();
        assert!(d.to_string().contains("cannot read"), "{d}");
        find(&settings_problems(""), "", "empty");
        find(&settings_problems("[1, 2]"), "", "invalid type");
        find(&settings_problems("a: [\n"), "line", "");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 2m3s"), Ok(Duration::from_secs(3723)));
        for bad in
            ["", "5", "s", "5 parsecs", "-1s", "1.5s", "99999999999999999999s", "18446744073709551615h"]
        {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

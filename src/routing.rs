//! Pure request routing: (host, path, query) -> which connector, repository and endpoint.
//!
//! Nothing here touches the network or the live snapshot: the result names a
//! connector by id (or by registry host, for containerd mirror requests), and the
//! proxy looks it up in the snapshot it pinned for the request.

use crate::config::{ConnectorId, ResolverKind};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/` (API version check), answered by the proxy itself.
    Base,
    /// A registry API call for one connector.
    Registry(RegistryRoute),
    /// A rendered client configuration:
    /// `/namespaces/<ns>/connectors/<name>/configurations/<config>`.
    Configuration {
        /// The connector the configuration is for.
        connector: ConnectorId,
        /// The configuration's name (`registry-config`, `dockerd`, ...).
        config: String,
    },
    /// Nothing we serve; the message says what was expected.
    NotFound(&'static str),
}

/// How the request names its connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By namespace and name (path or host resolver).
    Id(ConnectorId),
    /// By the registry host a containerd mirror request carries in `?ns=`.
    RegistryHost(String),
}

/// A registry API call, split into the parts the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRoute {
    /// Which connector serves it.
    pub selector: Selector,
    /// The repository as the client named it (before Docker Hub normalisation).
    pub repository: String,
    /// The API endpoint.
    pub endpoint: Endpoint,
    /// Path prefix the client used before the repository, without trailing slash
    /// (`/v2/namespaces/ns/connectors/name` or `/v2`); used to rewrite `Location`/`Link`.
    pub client_prefix: String,
}

/// The OCI distribution endpoints the proxy forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `manifests/<reference>`
    Manifest(String),
    /// `blobs/<digest>`
    Blob(String),
    /// `blobs/uploads/` (opens a session, or a monolithic/mount upload)
    UploadStart,
    /// `blobs/uploads/<session id>`
    UploadSession(String),
    /// `tags/list`
    Tags,
    /// `referrers/<digest>`
    Referrers(String),
}

impl Endpoint {
    /// The endpoint's path below `/v2/<repository>/`, as its two parts: what
    /// names the endpoint and its argument (reference, digest or session id).
    pub fn path_parts(&self) -> (&'static str, &str) {
        match self {
            Endpoint::Manifest(r) => ("manifests/", r),
            Endpoint::Blob(d) => ("blobs/", d),
            Endpoint::UploadStart => ("blobs/uploads/", ""),
            Endpoint::UploadSession(id) => ("blobs/uploads/", id),
            Endpoint::Tags => ("tags/list", ""),
            Endpoint::Referrers(d) => ("referrers/", d),
        }
    }

    /// A bounded label for metrics and logs (never a digest or tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Manifest(_) => "manifest",
            Endpoint::Blob(_) => "blob",
            Endpoint::UploadStart | Endpoint::UploadSession(_) => "upload",
            Endpoint::Tags => "tags",
            Endpoint::Referrers(_) => "referrers",
        }
    }
}

/// Routing inputs that come from the settings, not the request.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Path or host resolver.
    pub resolver: ResolverKind,
    /// The host resolver's domain (`c-<name>.<ns>.<domain>`).
    pub host_domain: String,
}

/// Routes one request. `host` is the `Host` header (or `:authority`), `query`
/// the raw query string without `?`.
pub fn route(cfg: &RouterConfig, host: &str, path: &str, query: Option<&str>) -> Route {
    if path == "/v2/" || path == "/v2" {
        return Route::Base;
    }
    if let Some(rest) = path.strip_prefix("/namespaces/") {
        return configuration_route(rest);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotFound("only the registry API under /v2/ is served");
    };
    let mirror_host = query.and_then(mirror_namespace);
    if let Some(rest) = rest.strip_prefix("namespaces/") {
        // The path resolver's prefix wins over `?ns=`: containerd with
        // `override_path` sends both, and the path names the connector exactly.
        return path_resolver_route(rest);
    }
    if let Some(registry) = mirror_host {
        return api_route(Selector::RegistryHost(registry), rest, "/v2".to_string());
    }
    match cfg.resolver {
        ResolverKind::Host => match host_connector(host, &cfg.host_domain) {
            Some(id) => api_route(Selector::Id(id), rest, "/v2".to_string()),
            None => {
                Route::NotFound("the Host header names no connector (expected c-<name>.<namespace>.<domain>)")
            }
        },
        ResolverKind::Path => {
            Route::NotFound("expected /v2/namespaces/<namespace>/connectors/<name>/<repository>/...")
        }
    }
}

/// `<ns>/connectors/<name>/<repo...>/<endpoint>` after `/v2/namespaces/`.
fn path_resolver_route(rest: &str) -> Route {
    let mut parts = rest.splitn(4, '/');
    let (Some(ns), Some("connectors"), Some(name), Some(api)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::NotFound("expected /v2/namespaces/<namespace>/connectors/<name>/<repository>/...");
    };
    if !is_k8s_name(ns) || !is_k8s_name(name) {
        return Route::NotFound("namespace and connector names must be lowercase DNS labels");
    }
    // `concat` sizes it once; `format!` costs more, and this runs for every request.
    let prefix = ["/v2/namespaces/", ns, "/connectors/", name].concat();
    api_route(Selector::Id(ConnectorId::new(ns, name)), api, prefix)
}

/// `/namespaces/<ns>/connectors/<name>/configurations/<config>`.
fn configuration_route(rest: &str) -> Route {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [ns, "connectors", name, "configurations", config]
            if is_k8s_name(ns) && is_k8s_name(name) && !config.is_empty() =>
        {
            Route::Configuration { connector: ConnectorId::new(*ns, *name), config: (*config).to_string() }
        }
        _ => Route::NotFound(
            "expected /namespaces/<namespace>/connectors/<name>/configurations/<configuration>",
        ),
    }
}

/// Splits `<repo...>/<endpoint>` (everything after the client prefix).
fn api_route(selector: Selector, api: &str, client_prefix: String) -> Route {
    match split_api_path(api) {
        Some((repository, endpoint)) => Route::Registry(RegistryRoute {
            selector,
            repository: repository.to_string(),
            endpoint,
            client_prefix,
        }),
        None => Route::NotFound(
            "expected <repository>/manifests/<ref>, blobs/<digest>, blobs/uploads/, tags/list or referrers/<digest>",
        ),
    }
}

/// Finds the endpoint from the end of the path: repository names may contain
/// slashes (and even words like `blobs`), references and digests never do.
pub fn split_api_path(api: &str) -> Option<(&str, Endpoint)> {
    // The last three segments, and whatever precedes them (no allocation:
    // this runs for every request).
    let (rest, last) = api.rsplit_once('/')?;
    let (rest2, second) = rest.rsplit_once('/').map_or((None, rest), |(r, s)| (Some(r), s));
    let (rest3, third) = match rest2 {
        Some(r) => r.rsplit_once('/').map_or((None, Some(r)), |(r3, t)| (Some(r3), Some(t))),
        None => (None, None),
    };
    // Repository = everything before the endpoint's two or three segments.
    let (repository, endpoint) = match (third, second, last) {
        (Some("blobs"), "uploads", "") => (rest3?, Endpoint::UploadStart),
        (Some("blobs"), "uploads", id) if !id.contains(':') => {
            (rest3?, Endpoint::UploadSession(id.to_string()))
        }
        (_, "manifests", r) if valid_reference(r) => (rest2?, Endpoint::Manifest(r.to_string())),
        (_, "blobs", d) if valid_digest(d) => (rest2?, Endpoint::Blob(d.to_string())),
        (_, "tags", "list") => (rest2?, Endpoint::Tags),
        (_, "referrers", d) if valid_digest(d) => (rest2?, Endpoint::Referrers(d.to_string())),
        _ => return None,
    };
    valid_repository(repository).then_some((repository, endpoint))
}

/// `?ns=<registry host>` as containerd sends it to a mirror.
fn mirror_namespace(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// `c-<name>.<ns>.<domain>[:port]` -> the connector id.
pub fn host_connector(host: &str, domain: &str) -> Option<ConnectorId> {
    let host = strip_port(host).to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label = host.trim_end_matches('.').strip_suffix(domain.as_str())?.strip_suffix('.')?;
    let label = label.strip_prefix("c-")?;
    let (name, ns) = label.rsplit_once('.')?;
    (is_k8s_name(name) && is_k8s_name(ns)).then(|| ConnectorId::new(ns, name))
}

/// Removes a trailing `:port` (keeps IPv6 literals intact).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A DNS-1123 label: what Kubernetes accepts for namespaces and our connector names.
fn is_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Repository name grammar of the distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn valid_repository(repo: &str) -> bool {
    !repo.is_empty() && repo.len() <= 255 && repo.split('/').all(valid_path_component)
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if alnum(f) && alnum(l) => {}
        _ => return false,
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A tag (`[\w][\w.-]{0,127}`) or a digest.
fn valid_reference(r: &str) -> bool {
    valid_digest(r) || valid_tag(r)
}

fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    matches!(t.as_bytes().first(), Some(&f) if word(f))
        && t.len() <= 128
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:encoded` as the OCI spec defines digests.
pub fn valid_digest(d: &str) -> bool {
    let Some((alg, enc)) = d.split_once(':') else { return false };
    !alg.is_empty()
        && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && !enc.is_empty()
        && enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_cfg() -> RouterConfig {
        RouterConfig { resolver: ResolverKind::Path, host_domain: "proxy.local".into() }
    }

    fn host_cfg() -> RouterConfig {
        RouterConfig { resolver: ResolverKind::Host, host_domain: "proxy.local".into() }
    }

    fn registry(r: Route) -> RegistryRoute {
        match r {
            Route::Registry(r) => r,
            other => panic!("expected a registry route, got {other:?}"),
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn base_is_answered_locally() {
        assert_eq!(route(&path_cfg(), "x", "/v2/", None), Route::Base);
        assert_eq!(route(&host_cfg(), "x", "/v2", None), Route::Base);
    }

    #[test]
    fn path_resolver_splits_connector_repository_and_endpoint() {
        let r = registry(route(
            &path_cfg(),
            "h",
            "/v2/namespaces/team-a/connectors/hub/library/alpine/manifests/3.19",
            None,
        ));
        assert_eq!(r.selector, Selector::Id(ConnectorId::new("team-a", "hub")));
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.endpoint, Endpoint::Manifest("3.19".into()));
        assert_eq!(r.client_prefix, "/v2/namespaces/team-a/connectors/hub");
    }

    #[test]
    fn every_endpoint_is_recognised() {
        let cases = [
            (format!("a/b/blobs/{D}"), "a/b", Endpoint::Blob(D.into())),
            ("a/blobs/uploads/".to_string(), "a", Endpoint::UploadStart),
            ("a/blobs/uploads/0f1e-2d".to_string(), "a", Endpoint::UploadSession("0f1e-2d".into())),
            ("a/tags/list".to_string(), "a", Endpoint::Tags),
            (format!("a/referrers/{D}"), "a", Endpoint::Referrers(D.into())),
            (format!("a/manifests/{D}"), "a", Endpoint::Manifest(D.into())),
            // A repository may contain endpoint words.
            ("x/blobs/y/manifests/latest".to_string(), "x/blobs/y", Endpoint::Manifest("latest".into())),
        ];
        for (api, repo, ep) in cases {
            let (r, e) = split_api_path(&api).unwrap_or_else(|| panic!("no route for {api}"));
            // The endpoint's path parts give back what followed the repository.
            let (endpoint, argument) = e.path_parts();
            assert_eq!(format!("{r}/{endpoint}{argument}"), api);
            assert_eq!((r, e), (repo, ep), "{api}");
        }
    }

    #[test]
    fn malformed_paths_are_not_found() {
        for p in [
            "/",
            "/v1/x",
            "/v2/namespaces/ns/connectors/hub",
            "/v2/namespaces/ns/connectors/hub/manifests/latest",
            "/v2/namespaces/NS/connectors/hub/a/manifests/latest",
            "/v2/namespaces/ns/connectors/hub/A/manifests/latest",
            "/v2/namespaces/ns/connectors/hub/a/blobs/notadigest",
            "/v2/namespaces/ns/connectors/hub/a/manifests/bad tag",
            "/v2/namespaces/ns/connectors/hub/a//manifests/latest",
            "/v2/namespaces/ns/connectors/hub/../manifests/latest",
            "/v2/library/alpine/manifests/latest",
        ] {
            assert!(matches!(route(&path_cfg(), "h", p, None), Route::NotFound(_)), "{p}");
        }
    }

    #[test]
    fn host_resolver_reads_the_host_header() {
        let r = registry(route(&host_cfg(), "c-hub.team-a.proxy.local:5000", "/v2/alpine/tags/list", None));
        assert_eq!(r.selector, Selector::Id(ConnectorId::new("team-a", "hub")));
        assert_eq!(r.repository, "alpine");
        assert_eq!(r.client_prefix, "/v2");
        assert!(matches!(
            route(&host_cfg(), "other.example", "/v2/alpine/tags/list", None),
            Route::NotFound(_)
        ));
        assert!(matches!(
            route(&host_cfg(), "c-hub.proxy.local", "/v2/a/tags/list", None),
            Route::NotFound(_)
        ));
    }

    #[test]
    fn containerd_mirror_requests_select_by_registry_host() {
        let r = registry(route(
            &path_cfg(),
            "proxy:5000",
            "/v2/library/alpine/manifests/latest",
            Some("ns=docker.io"),
        ));
        assert_eq!(r.selector, Selector::RegistryHost("docker.io".into()));
        // With override_path the path resolver prefix is authoritative.
        let r = registry(route(
            &path_cfg(),
            "proxy:5000",
            "/v2/namespaces/ns/connectors/hub/library/alpine/manifests/latest",
            Some("ns=docker.io"),
        ));
        assert_eq!(r.selector, Selector::Id(ConnectorId::new("ns", "hub")));
    }

    #[test]
    fn configuration_paths() {
        assert_eq!(
            route(&path_cfg(), "h", "/namespaces/ns/connectors/hub/configurations/dockerd", None),
            Route::Configuration { connector: ConnectorId::new("ns", "hub"), config: "dockerd".into() }
        );
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.b:5000"), "a.b");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.b"), "a.b");
    }

    #[test]
    fn repository_grammar() {
        for ok in ["a", "library/alpine", "a.b_c__d---e/f", "0"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in ["", "A", "a/", "/a", "a..b", "a___b", "-a", "a-", "a/./b", "a b"] {
            assert!(!valid_repository(bad), "{bad}");
        }
    }
}

//! Pure rewrites between the client's view and the registry's: repository names,
//! upstream paths and queries, `Location` and `Link` headers.

use url::Url;

use crate::config::{Connector, Upstream};

/// The upstream repository for a client repository: Docker Hub's single-name
/// repositories live under `library/`.
pub fn upstream_repository(connector: &Connector, client_repo: &str) -> String {
    if connector.docker_hub && !client_repo.contains('/') {
        format!("library/{client_repo}")
    } else {
        client_repo.to_string()
    }
}

/// Inputs to map registry URLs back to the client's view.
#[derive(Debug, Clone)]
pub struct ClientView<'a> {
    /// The registry the connector talks to.
    pub upstream: &'a Upstream,
    /// Repository name upstream (`library/alpine`).
    pub upstream_repo: &'a str,
    /// Repository name as the client wrote it (`alpine`).
    pub client_repo: &'a str,
    /// The client's path prefix before the repository (`/v2/namespaces/ns/connectors/hub`).
    pub client_prefix: &'a str,
    /// `scheme://host[:port]` the client used to reach the proxy.
    pub client_origin: &'a str,
}

impl ClientView<'_> {
    /// A registry response header's value as the client must see it, or `None`
    /// to keep it: `Location` always, `Link` only on tag listings (`tags`).
    pub fn header(&self, name: &str, value: &str, tags: bool) -> Option<String> {
        if name.eq_ignore_ascii_case("location") {
            self.location(value)
        } else if tags && name.eq_ignore_ascii_case("link") {
            self.link(value)
        } else {
            None
        }
    }

    /// Maps a registry `Location` (relative or absolute) to the proxy. Returns
    /// `None` when it points elsewhere (another host, or outside the repository):
    /// such a location is a redirect target, not something to rewrite.
    pub fn location(&self, location: &str) -> Option<String> {
        let base = Url::parse(&format!("{}/", self.upstream.base_url())).ok()?;
        let url = base.join(location).ok()?;
        if url.host_str().map(|h| h.trim_matches(['[', ']'])) != Some(self.upstream.host.as_str())
            || url.port_or_known_default() != Some(self.upstream.port)
        {
            return None;
        }
        let mapped = self.path(url.path())?;
        Some(match url.query() {
            Some(q) => format!("{}{mapped}?{q}", self.client_origin),
            None => format!("{}{mapped}", self.client_origin),
        })
    }

    /// Maps an upstream path `/v2/<upstream repo>/<rest>` to the client's path.
    pub fn path(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix("/v2/")?.strip_prefix(self.upstream_repo)?.strip_prefix('/')?;
        Some(format!("{}/{}/{rest}", self.client_prefix, self.client_repo))
    }

    /// Rewrites an RFC 8288 `Link` header (`<url>; rel="next"`) for `tags/list`
    /// pagination; the client keeps its relative, proxy-shaped URL.
    pub fn link(&self, link: &str) -> Option<String> {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let base = Url::parse(&format!("{}/", self.upstream.base_url())).ok()?;
        let url = base.join(target).ok()?;
        let mapped = self.path(url.path())?;
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("<{mapped}{query}>{params}"))
    }
}

/// What a client's upload query becomes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamQuery {
    /// The query string to send (without `?`), or `None` for no query.
    pub query: Option<String>,
    /// The mount source, upstream name, when the request mounts a blob.
    pub mount_from: Option<String>,
}

/// Rewrites a client query for upstream: drops containerd's `ns`, and maps a
/// cross-repository mount's `from` out of the client's namespace. A `from` that
/// names another connector cannot be mounted through this one, so `mount` and
/// `from` are dropped and the registry opens a normal upload session (the spec's
/// fallback for a refused mount).
pub fn upstream_query(query: Option<&str>, client_prefix: &str, connector: &Connector) -> UpstreamQuery {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return UpstreamQuery { query: None, mount_from: None };
    };
    // Work on the raw `k=v` pairs so everything we don't touch (`_state`,
    // `digest`) goes upstream byte for byte.
    let raw: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let key = |p: &str| p.split('=').next().unwrap_or_default().to_string();
    let value = |name: &str| {
        raw.iter().find(|p| key(p) == name).map(|p| {
            let v = p.split_once('=').map(|(_, v)| v).unwrap_or_default().replace('+', " ");
            percent_encoding::percent_decode_str(&v).decode_utf8_lossy().into_owned()
        })
    };
    let from = value("from")
        .and_then(|f| mount_source(&f, client_prefix, connector))
        .filter(|_| value("mount").is_some());
    let mut kept: Vec<String> = Vec::with_capacity(raw.len());
    for p in &raw {
        match (key(p).as_str(), &from) {
            ("ns", _) | ("mount" | "from", None) => {}
            ("from", Some(f)) => kept.push(format!(
                "from={}",
                url::form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
            )),
            _ => kept.push((*p).to_string()),
        }
    }
    UpstreamQuery { query: (!kept.is_empty()).then(|| kept.join("&")), mount_from: from }
}

/// The upstream repository a client's `from=` names, if it is this connector's.
fn mount_source(from: &str, client_prefix: &str, connector: &Connector) -> Option<String> {
    // Path resolver prefix `/v2/namespaces/ns/connectors/name` -> `namespaces/ns/connectors/name/`.
    let own = client_prefix.strip_prefix("/v2").unwrap_or(client_prefix).trim_start_matches('/');
    let repo = if own.is_empty() {
        if from.starts_with("namespaces/") {
            return None;
        }
        from
    } else {
        from.strip_prefix(own)?.strip_prefix('/')?
    };
    crate::routing::valid_repository(repo).then(|| upstream_repository(connector, repo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectorId, RedirectPolicy, Scheme};

    fn connector(docker_hub: bool) -> Connector {
        Connector {
            id: ConnectorId::new("ns", "hub"),
            address: "https://index.docker.io".into(),
            upstream: Upstream { scheme: Scheme::Http, host: "127.0.0.1".into(), port: 5001 },
            docker_hub,
            credentials: None,
            secret_name: None,
            ca_certs: None,
            health_repository: None,
            redirects: RedirectPolicy::Follow,
            description: None,
        }
    }

    fn view<'a>(c: &'a Connector) -> ClientView<'a> {
        ClientView {
            upstream: &c.upstream,
            upstream_repo: "library/alpine",
            client_repo: "alpine",
            client_prefix: "/v2/namespaces/ns/connectors/hub",
            client_origin: "http://proxy:5000",
        }
    }

    #[test]
    fn docker_hub_library_names() {
        assert_eq!(upstream_repository(&connector(true), "alpine"), "library/alpine");
        assert_eq!(upstream_repository(&connector(true), "org/app"), "org/app");
        assert_eq!(upstream_repository(&connector(false), "alpine"), "alpine");
    }

    #[test]
    fn upload_locations_keep_their_state() {
        let c = connector(true);
        let v = view(&c);
        let want =
            "http://proxy:5000/v2/namespaces/ns/connectors/hub/alpine/blobs/uploads/u-1?_state=a%2Bb%3D&x=1";
        assert_eq!(
            v.location("/v2/library/alpine/blobs/uploads/u-1?_state=a%2Bb%3D&x=1").as_deref(),
            Some(want)
        );
        assert_eq!(
            v.location("http://127.0.0.1:5001/v2/library/alpine/blobs/uploads/u-1?_state=a%2Bb%3D&x=1")
                .as_deref(),
            Some(want)
        );
    }

    #[test]
    fn foreign_locations_are_left_alone() {
        let c = connector(true);
        let v = view(&c);
        assert_eq!(v.location("https://s3.example/bucket/blob?sig=1"), None);
        assert_eq!(v.location("http://127.0.0.1:9999/v2/library/alpine/blobs/x"), None);
        assert_eq!(v.location("/v2/other/blobs/x"), None);
    }

    #[test]
    fn link_pagination() {
        let c = connector(true);
        let v = view(&c);
        assert_eq!(
            v.link(r#"</v2/library/alpine/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some(r#"</v2/namespaces/ns/connectors/hub/alpine/tags/list?last=b&n=2>; rel="next""#)
        );
    }

    #[test]
    fn header_maps_location_always_and_link_only_on_tag_listings() {
        let c = connector(true);
        let v = view(&c);
        let link = r#"</v2/library/alpine/tags/list?last=b&n=2>; rel="next""#;
        assert!(v.header("LINK", link, true).is_some());
        assert_eq!(v.header("Link", link, false), None);
        assert_eq!(
            v.header("location", "/v2/library/alpine/blobs/uploads/x", false),
            v.location("/v2/library/alpine/blobs/uploads/x")
        );
        assert!(v.header("Location", "/v2/library/alpine/blobs/uploads/x", false).is_some());
        assert_eq!(v.header("Content-Type", "text/plain", true), None);
    }

    #[test]
    fn mount_from_is_mapped_or_dropped() {
        let c = connector(false);
        let p = "/v2/namespaces/ns/connectors/hub";
        let q = upstream_query(Some("mount=sha256:ab&from=namespaces/ns/connectors/hub/src/app"), p, &c);
        assert_eq!(q.mount_from.as_deref(), Some("src/app"));
        assert_eq!(q.query.as_deref(), Some("mount=sha256:ab&from=src%2Fapp"));
        // Another connector's repository: plain upload.
        let q = upstream_query(Some("mount=sha256:ab&from=namespaces/ns/connectors/other/src"), p, &c);
        assert_eq!(q, UpstreamQuery { query: None, mount_from: None });
        // Host resolver / mirror: `from` is already a plain repository.
        let q = upstream_query(Some("mount=sha256:ab&from=src&ns=docker.io"), "/v2", &connector(true));
        assert_eq!(q.mount_from.as_deref(), Some("library/src"));
        assert_eq!(
            upstream_query(Some("digest=sha256:ab&ns=x"), "/v2", &c).query.as_deref(),
            Some("digest=sha256:ab")
        );
    }
}

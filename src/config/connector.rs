//! Validates a Connector's spec and annotations: upstream address, auth, CA reference.

use std::collections::BTreeMap;

use url::{Host, Url};

use super::diagnostics::{suggest, Diagnostics};
use super::location::Origin;
use super::model::{Connector, ConnectorId, RedirectPolicy, Scheme, Upstream};
use super::names::validate_repository;
use super::raw::RawConnectorSpec;
use super::secrets::SecretKey;

const CONNECTOR_CLASS: &str = "oci";
const AUTH_NAME: &str = "tokenAuth";
const KNOWN_PARAMS: [&str; 1] = ["repository"];
const REDIRECTS_ANNOTATION: &str = "oci-connector.io/redirects";
const DESCRIPTION_ANNOTATION: &str = "cpaas.io/description";
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";

/// A connector before its secrets are looked up.
pub(super) struct PendingConnector {
    /// The connector, without credentials and CA certificates.
    pub(super) connector: Connector,
    /// The secret holding the registry credentials.
    pub(super) secret_ref: Option<SecretKey>,
    /// The secret holding the CA bundle.
    pub(super) ca_ref: Option<SecretKey>,
}

/// Validates a Connector's spec and annotations, recording every problem; returns
/// a connector (with placeholders where values are unusable) for the duplicate check.
pub(super) fn validate_connector(
    id: ConnectorId,
    spec: RawConnectorSpec,
    annotations: &BTreeMap<String, String>,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> PendingConnector {
    match spec.connector_class_name.as_deref() {
        Some(CONNECTOR_CLASS) => {}
        Some(other) => diags.push(
            origin
                .diag("spec.connectorClassName", format!("unsupported connector class {other:?}"))
                .with_hint("this proxy serves `connectorClassName: oci` only"),
        ),
        None => diags.push(
            origin
                .diag("spec.connectorClassName", "`spec.connectorClassName` is missing")
                .with_hint("add `connectorClassName: oci`"),
        ),
    }

    let address = spec.address.unwrap_or_default();
    let (upstream, docker_hub) = if address.is_empty() {
        diags.push(
            origin
                .diag("spec.address", "`spec.address` is missing")
                .with_hint("the registry's URL, e.g. https://index.docker.io"),
        );
        (placeholder_upstream(), false)
    } else {
        match parse_address(&address) {
            Ok(parsed) => parsed,
            Err((message, hint)) => {
                diags.push(origin.diag("spec.address", message).with_hint(hint));
                (placeholder_upstream(), false)
            }
        }
    };

    let mut secret_ref = None;
    let mut health_repository = None;
    if let Some(auth) = spec.auth {
        if let Some(name) = auth.name.as_deref().filter(|n| *n != AUTH_NAME) {
            diags.push(origin.diag("spec.auth.name", format!("unsupported auth type {name:?}")).with_hint(
                format!(
                    "{}; `{AUTH_NAME}` is the only auth type of OCI connectors",
                    suggest(name, &[AUTH_NAME])
                ),
            ));
        }
        if let Some(r) = auth.secret_ref {
            match r.name.filter(|n| !n.is_empty()) {
                Some(name) => secret_ref = Some((r.namespace.unwrap_or_else(|| id.namespace.clone()), name)),
                None => diags.push(
                    origin
                        .diag("spec.auth.secretRef.name", "`secretRef.name` is missing")
                        .with_hint("name the Secret holding username and password, or remove secretRef for anonymous access"),
                ),
            }
        }
        for (i, param) in auth.params.unwrap_or_default().into_iter().enumerate() {
            let path = format!("spec.auth.params[{i}]");
            match param.name.as_deref() {
                Some("repository") => {
                    let value = param.value.unwrap_or_default();
                    if health_repository.is_some() {
                        diags.push(origin.diag(&path, "`repository` is given twice").with_hint("keep one"));
                    } else if let Err(why) = validate_repository(&value) {
                        diags.push(
                            origin
                                .diag(
                                    &format!("{path}.value"),
                                    format!("invalid repository {value:?}: {why}"),
                                )
                                .with_hint("a repository the credentials may pull, e.g. library/alpine"),
                        );
                    } else {
                        health_repository = Some(value);
                    }
                }
                Some(other) => diags.push(
                    origin
                        .diag(&format!("{path}.name"), format!("unknown parameter {other:?}"))
                        .with_hint(suggest(other, &KNOWN_PARAMS)),
                ),
                None => diags.push(
                    origin
                        .diag(&format!("{path}.name"), "parameter `name` is missing")
                        .with_hint(format!("known parameters: {}", KNOWN_PARAMS.join(", "))),
                ),
            }
        }
    }

    let ca_ref = match spec.ca_cert_secret_ref {
        None => None,
        Some(r) => match r.name.filter(|n| !n.is_empty()) {
            Some(name) => Some((id.namespace.clone(), name)),
            None => {
                diags.push(
                    origin
                        .diag("spec.caCertSecretRef.name", "`caCertSecretRef.name` is missing")
                        .with_hint("name a Secret with a `ca.crt` key"),
                );
                None
            }
        },
    };

    let redirects = match annotations.get(REDIRECTS_ANNOTATION).map(String::as_str) {
        None | Some("follow") => RedirectPolicy::Follow,
        Some("client") => RedirectPolicy::PassToClient,
        Some(other) => {
            diags.push(
                origin
                    .diag(
                        &format!("metadata.annotations[{REDIRECTS_ANNOTATION}]"),
                        format!("invalid value {other:?}"),
                    )
                    .with_hint(format!(
                        "{}; `follow` fetches redirects server-side, `client` hands them to the client",
                        suggest(other, &["follow", "client"])
                    )),
            );
            RedirectPolicy::Follow
        }
    };
    let description = annotations.get(DESCRIPTION_ANNOTATION).filter(|d| !d.is_empty()).cloned();

    let connector = Connector {
        id,
        address,
        upstream,
        docker_hub,
        credentials: None,
        secret_name: secret_ref.as_ref().map(|(_, name)| name.clone()),
        ca_certs: None,
        health_repository,
        redirects,
        description,
    };
    PendingConnector { connector, secret_ref, ca_ref }
}

fn placeholder_upstream() -> Upstream {
    Upstream { scheme: Scheme::Https, host: "invalid".into(), port: 443 }
}

/// Validates a registry address and derives the upstream, normalising Docker Hub.
fn parse_address(address: &str) -> Result<(Upstream, bool), (String, String)> {
    let example = "write the registry's root URL, e.g. https://registry.example.com".to_string();
    let url = match Url::parse(address) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err((format!("{address:?} is not a URL"), format!("add a scheme: https://{address}")))
        }
        Err(e) => return Err((format!("invalid URL {address:?}: {e}"), example)),
    };
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => {
            return Err((
                format!("unsupported scheme {other:?}"),
                "use https:// (or http:// for a plain-HTTP registry)".into(),
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "the address must not contain credentials".into(),
            "put them in a Secret referenced by spec.auth.secretRef".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err((format!("{address:?} has a query or fragment"), example));
    }
    if !matches!(url.path(), "" | "/") {
        return Err((
            format!("{address:?} has a path; registries under a path prefix are not supported"),
            "use the registry's root URL; the repository goes into the image name".into(),
        ));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err((format!("{address:?} has no host"), example)),
    };
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        return Ok((Upstream { scheme: Scheme::Https, host: DOCKER_HUB_UPSTREAM.into(), port: 443 }, true));
    }
    let port = url.port().unwrap_or_else(|| scheme.default_port());
    Ok((Upstream { scheme, host, port }, false))
}

#[cfg(test)]
mod tests {
    use crate::config::model::{ConnectorId, RedirectPolicy, Scheme, Upstream};
    use crate::config::test_support::{connector, find, ok, problems};

    #[test]
    fn minimal_connector() {
        let c = ok(&connector("reg", "http://localhost:5001", ""));
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.id, ConnectorId::new("default", "reg"));
        assert_eq!(c.address, "http://localhost:5001");
        assert_eq!(c.upstream, Upstream { scheme: Scheme::Http, host: "localhost".into(), port: 5001 });
        assert!(!c.docker_hub && c.credentials.is_none() && c.ca_certs.is_none() && c.secret_name.is_none());
        assert_eq!(c.redirects, RedirectPolicy::Follow);
    }

    #[test]
    fn upstream_from_address() {
        let up = |address: &str| ok(&connector("x", address, "")).remove(0).upstream;
        assert_eq!(up("https://[::1]"), Upstream { scheme: Scheme::Https, host: "::1".into(), port: 443 });
        assert_eq!(
            up("https://10.0.0.1:8443/"),
            Upstream { scheme: Scheme::Https, host: "10.0.0.1".into(), port: 8443 }
        );
        assert_eq!(up("https://Registry.Example.COM").host, "registry.example.com");
        assert_eq!(up("http://r.example:80").port, 80);
    }

    #[test]
    fn docker_hub_is_normalised() {
        for address in [
            "https://docker.io",
            "https://index.docker.io/",
            "https://registry-1.docker.io",
            "http://docker.io:8080",
        ] {
            let c = ok(&connector("hub", address, "")).remove(0);
            assert!(c.docker_hub, "{address}");
            assert_eq!(
                c.upstream,
                Upstream { scheme: Scheme::Https, host: "registry-1.docker.io".into(), port: 443 }
            );
            assert_eq!(c.address, address);
        }
        assert!(!ok(&connector("x", "https://ghcr.io", "")).remove(0).docker_hub);
    }

    #[test]
    fn invalid_addresses() {
        for (address, message) in [
            ("registry.example.com", "not a URL"),
            ("ftp://registry.example.com", "unsupported scheme"),
            ("https://u:p@registry.example.com", "credentials"),
            ("https://registry.example.com/v2/", "path"),
            ("https://registry.example.com?x=1", "query"),
            ("https://registry.example.com#frag", "fragment"),
            ("https://", "invalid URL"),
            ("'https://exa mple.com'", "invalid URL"),
        ] {
            let d = problems(&connector("x", address, ""));
            let problem = find(&d, "document 1 (Connector default/x), spec.address", message);
            assert!(problem.hint.is_some(), "{problem}");
            assert!(problem.file.ends_with("connectors.yaml"));
        }
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\nspec: {connectorClassName: oci}\n");
        find(&d, "spec.address", "missing");
    }

    #[test]
    fn unknown_spec_field_suggests_the_known_one() {
        let d = problems(&connector("x", "https://r.example", "  adress: https://r.example\n"));
        let problem = find(&d, "document 1 (Connector default/x), spec.adress", "unknown field `adress`");
        assert!(problem.location.contains("line 8"), "{problem}");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `address`?"));
        let d = problems(&connector("x", "https://r.example", "  auth:\n    secretRf: {name: a}\n"));
        assert_eq!(
            find(&d, "spec.auth.secretRf", "unknown field").hint.as_deref(),
            Some("did you mean `secretRef`?")
        );
        let d = problems(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - {name: repository, valeu: a}\n",
        ));
        find(&d, "spec.auth.params[0].valeu", "unknown field");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let d = problems(&connector("x", "[a, b]", ""));
        let problem = find(&d, "spec.address", "invalid type");
        assert!(problem.location.contains("line 7"), "{problem}");
    }

    #[test]
    fn auth_parameters() {
        let c = ok(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - name: repository\n      value: team/app\n",
        ));
        assert_eq!(c[0].health_repository.as_deref(), Some("team/app"));
        let d = problems(&connector("x", "https://r.example", "  auth:\n    params:\n    - name: repo\n      value: a\n    - value: b\n    - name: repository\n      value: Bad//Repo\n"));
        let unknown = find(&d, "spec.auth.params[0].name", "unknown parameter");
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `repository`?"));
        find(&d, "spec.auth.params[1].name", "missing");
        find(&d, "spec.auth.params[2].value", "invalid repository");
        let d = problems(&connector(
            "x",
            "https://r.example",
            "  auth:\n    params:\n    - {name: zzzzzzzzz, value: a}\n",
        ));
        assert_eq!(
            find(&d, "params[0].name", "unknown").hint.as_deref(),
            Some("expected one of: repository")
        );
    }

    #[test]
    fn auth_name_and_class_are_checked() {
        let d = problems(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\nspec:\n  connectorClassName: git\n  address: https://r.example\n  auth:\n    name: tokenauth\n",
        );
        find(&d, "spec.connectorClassName", "unsupported connector class");
        assert!(find(&d, "spec.auth.name", "unsupported auth type")
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("`tokenAuth`")));
        assert_eq!(d.len(), 2);
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: x}\n");
        find(&d, "spec", "missing");
    }

    #[test]
    fn annotations() {
        let c = ok(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: x\n  namespace: team-a\n  labels: {a: b}\n  uid: 123\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  annotations:\n    oci-connector.io/redirects: client\n    cpaas.io/description: hello\nspec: {connectorClassName: oci, address: 'https://r.example'}\nstatus:\n  conditions: [{type: Ready, status: 'True'}]\n",
        );
        assert_eq!(c[0].id, ConnectorId::new("team-a", "x"));
        assert_eq!(c[0].redirects, RedirectPolicy::PassToClient);
        assert_eq!(c[0].description.as_deref(), Some("hello"));
        let d = problems("apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: x\n  annotations: {oci-connector.io/redirects: folow}\nspec: {connectorClassName: oci, address: 'https://r.example'}\n");
        let problem = find(&d, "metadata.annotations[oci-connector.io/redirects]", "invalid value");
        assert!(problem.hint.as_deref().is_some_and(|h| h.starts_with("did you mean `follow`?")));
    }
}

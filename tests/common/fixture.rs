//! A real registry in one of its three auth modes, seeded with test images, plus
//! the connector manifest that points the proxy at it.

use super::images::TestImage;
use super::proxy::connector_yaml;
use super::registry::{Registry, RegistryAuth};
use super::skopeo::{self, Creds};
use super::token_server::{TokenServer, TokenServerConfig};

/// How the upstream registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No auth.
    Anonymous,
    /// htpasswd (HTTP Basic).
    Htpasswd,
    /// Token auth with our token server.
    Token,
}

/// The account the connector uses (push and pull).
pub const USER: &str = "ci-robot";
/// Its password; tests assert it never shows up in proxy output.
pub const PASSWORD: &str = "s3cret-Pa55word-never-logged";
/// A pull-only account (token mode).
pub const PULL_USER: &str = "reader";
/// Its password.
pub const PULL_PASSWORD: &str = "reader-Pa55word-never-logged";

/// A running registry (and token server) with known credentials.
pub struct Upstream {
    /// The registry.
    pub registry: Registry,
    /// The token server, in token mode.
    pub tokens: Option<TokenServer>,
    /// Credentials with pull and push rights (`None` when anonymous).
    pub creds: Option<Creds>,
}

impl Upstream {
    /// Starts a registry in `mode`.
    pub async fn start(mode: Mode) -> Upstream {
        Self::start_with(mode, TokenServerConfig::default()).await
    }

    /// Starts a registry; in token mode, the token server starts from `config`
    /// with the push and pull-only users added.
    pub async fn start_with(mode: Mode, config: TokenServerConfig) -> Upstream {
        match mode {
            Mode::Anonymous => {
                let registry = tokio::task::spawn_blocking(|| Registry::start(RegistryAuth::Anonymous))
                    .await
                    .expect("registry start");
                Upstream { registry, tokens: None, creds: None }
            }
            Mode::Htpasswd => {
                let auth = RegistryAuth::Htpasswd { user: USER.into(), password: PASSWORD.into() };
                let registry =
                    tokio::task::spawn_blocking(move || Registry::start(auth)).await.expect("registry start");
                Upstream { registry, tokens: None, creds: Some(Creds::new(USER, PASSWORD)) }
            }
            Mode::Token => {
                let config = config.user(USER, PASSWORD, &["*"]).user(PULL_USER, PULL_PASSWORD, &["pull"]);
                let tokens = TokenServer::start(config).await;
                let auth = tokens.registry_auth();
                let registry =
                    tokio::task::spawn_blocking(move || Registry::start(auth)).await.expect("registry start");
                Upstream { registry, tokens: Some(tokens), creds: Some(Creds::new(USER, PASSWORD)) }
            }
        }
    }

    /// Pushes `image` directly (no proxy) as `<repo>:v1`; returns its digest.
    pub async fn seed(&self, image: &TestImage, repo: &str) -> String {
        let dest = format!("docker://{}", self.registry.image_ref(repo, "v1"));
        let digest = skopeo::push_layout(image, &dest, self.creds.as_ref()).await.expect("seed push");
        assert_eq!(digest, image.manifest_digest, "seeded digest");
        digest
    }

    /// The connector (and secret) manifest for `ns/name` pointing at this registry.
    pub fn connector(&self, ns: &str, name: &str) -> String {
        let creds = self.creds.as_ref().map(|c| (c.user.as_str(), c.password.as_str()));
        connector_yaml(ns, name, &self.registry.url(), creds)
    }

    /// A connector with explicit credentials (e.g. wrong or pull-only).
    pub fn connector_as(&self, ns: &str, name: &str, user: &str, password: &str) -> String {
        connector_yaml(ns, name, &self.registry.url(), Some((user, password)))
    }
}

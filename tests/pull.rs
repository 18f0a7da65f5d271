//! Pulls through the proxy with a real client (skopeo) from the real distribution
//! registry in all three auth modes, through both resolvers.

mod common;

use common::fixture::{Mode, Upstream, PASSWORD};
use common::images::{self, TestImage};
use common::proxy::{Proxy, Resolver};
use common::skopeo::{self, CopyOpts};

/// Pulls `repo:v1` through `proxy` into a fresh OCI layout; returns the digest.
async fn pull_through(proxy: &Proxy, repo: &str, all: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = format!("docker://{}/{repo}:v1", proxy.image_prefix("team-a", "reg"));
    let dest = format!("oci:{}:v1", dir.path().display());
    let opts = CopyOpts { all, env: proxy.client_env(), ..CopyOpts::default() };
    match skopeo::copy(&src, &dest, &opts).await {
        Ok(d) => d,
        Err(e) => panic!("{e}\nproxy log:\n{}", proxy.log()),
    }
}

/// Seeds the three small images, then pulls each through both resolvers.
async fn pulls_everything(mode: Mode) {
    let up = Upstream::start(mode).await;
    let images: Vec<(TestImage, &str)> = vec![
        (images::tiny(), "tiny"),
        (images::multilayer(), "apps/multilayer"),
        (images::multiarch(), "multiarch"),
    ];
    for (image, repo) in &images {
        up.seed(image, repo).await;
    }
    for resolver in [Resolver::Path, Resolver::Host] {
        let proxy = Proxy::start(resolver, &up.connector("team-a", "reg"), "").await;
        for (image, repo) in &images {
            let digest = pull_through(&proxy, repo, image.is_index()).await;
            assert_eq!(digest, image.manifest_digest, "{mode:?} {resolver:?} {repo}");
        }
        assert!(!proxy.log().contains(PASSWORD), "the registry password reached the proxy log");
        if let Some(tokens) = &up.tokens {
            for t in tokens.issued_tokens() {
                assert!(!proxy.log().contains(&t), "a registry token reached the proxy log");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_from_an_anonymous_registry() {
    pulls_everything(Mode::Anonymous).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_from_an_htpasswd_registry() {
    pulls_everything(Mode::Htpasswd).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_from_a_token_registry() {
    pulls_everything(Mode::Token).await;
}

/// The 256 MiB layer streams through both resolvers; the proxy's peak RSS is
/// printed (run with `--nocapture` to see it) and must stay far below the blob size.
#[tokio::test(flavor = "multi_thread")]
async fn pulls_a_large_layer_with_flat_memory() {
    let image = tokio::task::spawn_blocking(images::large).await.expect("large image");
    let up = Upstream::start(Mode::Token).await;
    up.seed(&image, "big").await;
    for resolver in [Resolver::Path, Resolver::Host] {
        let proxy = Proxy::start(resolver, &up.connector("team-a", "reg"), "").await;
        let digest = pull_through(&proxy, "big", false).await;
        assert_eq!(digest, image.manifest_digest);
        let rss_mib = proxy.peak_rss_kib() / 1024;
        println!("peak RSS of the proxy after pulling a 256 MiB layer ({resolver:?}): {rss_mib} MiB");
        assert!(rss_mib < 128, "proxy peak RSS {rss_mib} MiB: the blob was buffered");
    }
}

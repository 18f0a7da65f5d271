//! Upstream behaviour the real distribution 2.8 cannot be made to show on
//! loopback, from in-process fakes: redirects to blob storage (as S3/CDN-backed
//! registries send them) and `tags/list` pagination (2.8 ignores `n`).

mod common;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use common::fake::{FakeServer, Handler};
use common::proxy::{connector_yaml, Proxy, Resolver};
use reqwest::StatusCode;

const DIGEST: &str = "sha256:4f1b0d0ee1b6b7d4c3cc7e5c3fbc4b0d4a8fc4a5e0b2b0b0e9c3d2b1a0f9e8d7";
const BLOB: &[u8] = b"the blob's bytes, served by storage";

/// A Basic-auth registry that redirects blob GETs to `storage`.
fn registry_handler(storage: String) -> Handler {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("robot:pw-redirect"));
    Arc::new(move |s| {
        if s.authorization.as_deref() != Some(expected.as_str()) {
            return (401, vec![("WWW-Authenticate".into(), r#"Basic realm="fake""#.into())], Bytes::new());
        }
        if s.uri.contains("/blobs/") {
            let loc = format!("{storage}/bucket/{DIGEST}?X-Signature=abc");
            return (307, vec![("Location".into(), loc)], Bytes::new());
        }
        (200, vec![], Bytes::from_static(b"{}"))
    })
}

fn storage_handler() -> Handler {
    Arc::new(|s| {
        if !s.uri.contains("X-Signature=abc") {
            return (403, vec![], Bytes::new());
        }
        (200, vec![("Content-Type".into(), "application/octet-stream".into())], Bytes::from_static(BLOB))
    })
}

fn connector(registry: &FakeServer, redirects: Option<&str>) -> String {
    let mut yaml = connector_yaml("team-a", "reg", &registry.url(), Some(("robot", "pw-redirect")));
    if let Some(policy) = redirects {
        yaml = yaml.replacen(
            "  namespace: team-a\n",
            &format!("  namespace: team-a\n  annotations:\n    oci-connector.io/redirects: {policy}\n"),
            1,
        );
    }
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_followed_without_credentials() {
    let storage = FakeServer::start(storage_handler()).await;
    let registry = FakeServer::start(registry_handler(storage.url())).await;
    let proxy = Proxy::start(Resolver::Path, &connector(&registry, None), "").await;

    let url = format!("{}/app/blobs/{DIGEST}", proxy.api_base("team-a", "reg"));
    let r = common::http_client().get(url).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "{}", proxy.log());
    assert_eq!(r.bytes().await.expect("body").as_ref(), BLOB);

    let fetched = storage.seen();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].authorization, None, "credentials must not follow a redirect to another host");
    let storage_host = storage.url().trim_start_matches("http://").to_string();
    assert_eq!(fetched[0].host.as_deref(), Some(storage_host.as_str()));
    assert!(registry.seen().iter().any(|s| s.uri.ends_with(&format!("/v2/app/blobs/{DIGEST}"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_can_be_handed_to_the_client() {
    let storage = FakeServer::start(storage_handler()).await;
    let registry = FakeServer::start(registry_handler(storage.url())).await;
    let proxy = Proxy::start(Resolver::Path, &connector(&registry, Some("client")), "").await;

    let url = format!("{}/app/blobs/{DIGEST}", proxy.api_base("team-a", "reg"));
    let client = common::http_client();
    let r = client.get(url).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = r.headers()["location"].to_str().expect("location").to_string();
    assert_eq!(location, format!("{}/bucket/{DIGEST}?X-Signature=abc", storage.url()));
    assert!(storage.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_loop_ends_in_a_clear_error() {
    let looping: Handler = Arc::new(|s| {
        if s.uri == "/v2/" {
            return (200, vec![], Bytes::from_static(b"{}"));
        }
        (302, vec![("Location".into(), format!("/v2/app/blobs/{DIGEST}"))], Bytes::new())
    });
    let registry = FakeServer::start(looping).await;
    let proxy =
        Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &registry.url(), None), "").await;
    let r =
        reqwest::get(format!("{}/app/blobs/{DIGEST}", proxy.api_base("team-a", "reg"))).await.expect("send");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("redirected too many times"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_pagination_links_point_back_through_the_proxy() {
    let paging: Handler = Arc::new(|s| {
        if s.uri == "/v2/" {
            return (200, vec![], Bytes::from_static(b"{}"));
        }
        let (tags, link) = if s.uri.contains("last=v1") {
            (r#"["v2"]"#, None)
        } else {
            (r#"["v1"]"#, Some(r#"</v2/library/app/tags/list?last=v1&n=1>; rel="next""#.to_string()))
        };
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(link.map(|l| ("Link".to_string(), l)));
        (200, headers, Bytes::from(format!(r#"{{"name":"library/app","tags":{tags}}}"#)))
    });
    let registry = FakeServer::start(paging).await;
    for resolver in [Resolver::Path, Resolver::Host] {
        let proxy = Proxy::start(resolver, &connector_yaml("team-a", "reg", &registry.url(), None), "").await;
        let client = reqwest::Client::new();
        let with_host = |r: reqwest::RequestBuilder| match proxy.host_header("team-a", "reg") {
            Some(h) => r.header("Host", h),
            None => r,
        };
        // The fake serves `library/app`; the client asks for `library/app` too.
        let r =
            with_host(client.get(format!("{}/library/app/tags/list?n=1", proxy.api_base("team-a", "reg"))))
                .send()
                .await
                .expect("tags");
        assert_eq!(r.status(), StatusCode::OK);
        let link = r.headers()["link"].to_str().expect("link").to_string();
        let want = match resolver {
            Resolver::Path => {
                r#"</v2/namespaces/team-a/connectors/reg/library/app/tags/list?last=v1&n=1>; rel="next""#
            }
            Resolver::Host => r#"</v2/library/app/tags/list?last=v1&n=1>; rel="next""#,
        };
        assert_eq!(link, want);
        let next = link.trim_start_matches('<').split('>').next().expect("url").to_string();
        let body: serde_json::Value = with_host(client.get(format!("http://{}{next}", proxy.addr())))
            .send()
            .await
            .expect("next page")
            .json()
            .await
            .expect("json");
        assert_eq!(body["tags"], serde_json::json!(["v2"]));
    }
}

/// A registry that accepts connections and then never answers, or drops them.
async fn misbehaving(reset: bool) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            if reset {
                // SO_LINGER 0: close with RST. (Deprecated because a non-zero
                // linger blocks on drop; zero never does.)
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(std::time::Duration::ZERO));
                drop(stream);
            } else {
                held.push(stream);
            }
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_gives_504_and_a_reset_502() {
    for (reset, want) in [(false, StatusCode::GATEWAY_TIMEOUT), (true, StatusCode::BAD_GATEWAY)] {
        let (url, task) = misbehaving(reset).await;
        let settings = "upstream:\n  readTimeout: 1s\n  tokenTimeout: 1s\n";
        let proxy =
            Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &url, None), settings).await;
        let r = reqwest::get(format!("{}/app/manifests/v1", proxy.api_base("team-a", "reg")))
            .await
            .expect("send");
        assert_eq!(r.status(), want, "reset={reset}");
        let body: serde_json::Value = r.json().await.expect("json");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("team-a/reg"), "{message}");
        task.abort();
    }
}

/// A registry that refuses every upload chunk with 401 after the proxy has
/// started streaming a body too large to replay: the client must get a clean
/// OCI error naming the connector, not a hang or a half-success.
#[tokio::test(flavor = "multi_thread")]
async fn a_401_in_the_middle_of_an_upload_is_a_clean_error() {
    let refusing: Handler = Arc::new(|s| {
        if s.uri == "/v2/" {
            return (200, vec![], Bytes::from_static(b"{}"));
        }
        let challenge = r#"Bearer realm="http://127.0.0.1:1/token",service="fake",error="invalid_token""#;
        (401, vec![("WWW-Authenticate".into(), challenge.into())], Bytes::from_static(br#"{"errors":[]}"#))
    });
    let registry = FakeServer::start(refusing).await;
    let proxy =
        Proxy::start(Resolver::Path, &connector_yaml("team-a", "reg", &registry.url(), None), "").await;
    let body = vec![7u8; 1 << 20];
    let r = reqwest::Client::new()
        .patch(format!("{}/app/blobs/uploads/some-session", proxy.api_base("team-a", "reg")))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", proxy.log());
    assert!(
        r.headers().get("www-authenticate").is_none(),
        "the registry's challenge must not reach the client"
    );
    let body: serde_json::Value = r.json().await.expect("an OCI error body");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("team-a/reg"), "{message}");
}

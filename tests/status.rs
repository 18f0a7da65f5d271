//! Connector conditions from the background prober against real registries, as
//! the admin API and the `status` command show them.

mod common;

use std::time::{Duration, Instant};

use common::fixture::{Mode, Upstream, PASSWORD, USER};
use common::proc::free_port;
use common::proxy::{connector_yaml, Proxy, Resolver};
use serde_json::Value;

/// A connector with the `repository` param the auth check probes.
fn with_repository(yaml: &str, repository: &str) -> String {
    yaml.replacen(
        "    name: tokenAuth\n",
        &format!("    name: tokenAuth\n    params:\n    - name: repository\n      value: {repository}\n"),
        1,
    )
}

/// Waits until every connector was probed and the listener check has seen the
/// proxy listening (the harness only returns once it is); returns `/connectors`.
async fn settled(proxy: &Proxy) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = proxy.connectors_status().await;
        let pending = list["items"].as_array().expect("items").iter().any(|i| {
            i["status"]["lastProbeTime"].is_null()
                || i["status"]["conditions"].as_array().is_none_or(|cs| {
                    cs.iter().any(|c| c["type"] == "ProxyServiceReady" && c["status"] != "True")
                })
        });
        if !pending {
            return list;
        }
        assert!(Instant::now() < deadline, "conditions did not settle: {list:#}\nlog:\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The condition `kind` of connector `name`: (status, reason, message).
fn condition(list: &Value, name: &str, kind: &str) -> (String, String, String) {
    let item = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == name))
        .unwrap_or_else(|| panic!("no connector {name} in {list:#}"));
    let c = item["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} on {name}: {item:#}"));
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    assert!(!s("lastTransitionTime").is_empty(), "{c}");
    (s("status"), s("reason"), s("message"))
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_good_wrong_password_and_unreachable() {
    let up = Upstream::start(Mode::Token).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let connectors = [
        with_repository(&up.connector("team-a", "good"), "library/tiny"),
        with_repository(&up.connector_as("team-a", "wrong", USER, "not-the-password"), "library/tiny"),
        connector_yaml("team-a", "dead", &dead, None),
    ]
    .concat();
    let proxy = Proxy::start_with_admin(Resolver::Path, &connectors, "").await;
    let list = settled(&proxy).await;
    let text = serde_json::to_string(&list).expect("json");
    assert!(!text.contains(PASSWORD) && !text.contains("not-the-password"), "a secret leaked: {text}");

    for kind in ["SecretReady", "LivenessReady", "AuthReady", "ProxyServiceReady", "Ready"] {
        assert_eq!(condition(&list, "good", kind).0, "True", "good {kind}: {list:#}");
    }
    let (_, reason, message) = condition(&list, "good", "AuthReady");
    assert_eq!(reason, "TokenIssued");
    assert!(message.contains("library/tiny") && message.contains(USER), "{message}");
    assert_eq!(condition(&list, "good", "SecretReady").1, "SecretFound");
    let good = list["items"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["metadata"]["name"] == "good"))
        .expect("good");
    assert_eq!(
        good["status"]["proxy"]["httpAddress"]["url"],
        format!("http://{}/namespaces/team-a/connectors/good", proxy.addr())
    );
    assert_eq!(good["spec"]["auth"]["secretRef"]["name"], "good-creds");

    let (status, reason, message) = condition(&list, "wrong", "AuthReady");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CredentialsRejected"), "{message}");
    assert!(
        message.contains(USER)
            && message.contains("401")
            && message.contains("check the username and password"),
        "{message}"
    );
    let (status, reason, _) = condition(&list, "wrong", "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CredentialsRejected"));
    assert_eq!(condition(&list, "wrong", "LivenessReady").0, "True");

    let (status, reason, message) = condition(&list, "dead", "LivenessReady");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unreachable"), "{message}");
    assert!(message.contains(&dead) && message.contains("connection"), "{message}");
    assert_eq!(condition(&list, "dead", "AuthReady").0, "Unknown");
    assert_eq!(condition(&list, "dead", "SecretReady").1, "SecretOptional");
    assert_eq!(condition(&list, "dead", "Ready").0, "False");

    assert_eq!(proxy.metric("oci_connector_connectors_ready").await, 1.0);
    assert_eq!(proxy.metric("oci_connector_connectors").await, 3.0);
    assert!(proxy
        .log()
        .contains("connector condition changed connector=team-a/wrong type=AuthReady status=False"));

    // The CLI reads the same API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oci-connector"))
        .args(["status", "--config"])
        .arg(proxy.settings_path())
        .output()
        .expect("run status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "NAMESPACE", "ADDRESS", "READY", "REASON", "AGE"]
    );
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("good")[1..5], ["team-a", up.registry.url().as_str(), "True", "Ready"]);
    assert_eq!(row("wrong")[3..5], ["False", "CredentialsRejected"]);
    assert_eq!(row("dead")[3..5], ["False", "Unreachable"]);
    println!("{table}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oci-connector"))
        .args(["status", "--output", "json", "--config"])
        .arg(proxy.settings_path())
        .output()
        .expect("run status");
    let json: Value = serde_json::from_slice(&out.stdout).expect("status --output json");
    assert_eq!(json["kind"], "ConnectorList");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_checks_the_credentials_at_v2() {
    let up = Upstream::start(Mode::Htpasswd).await;
    let connectors =
        [up.connector("team-a", "good"), up.connector_as("team-a", "wrong", USER, "nope")].concat();
    let proxy = Proxy::start_with_admin(Resolver::Path, &connectors, "").await;
    let list = settled(&proxy).await;
    let (status, reason, message) = condition(&list, "good", "AuthReady");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "CredentialsAccepted"), "{message}");
    assert_eq!(condition(&list, "good", "Ready").0, "True", "{list:#}");
    let (status, reason, message) = condition(&list, "wrong", "AuthReady");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CredentialsRejected"), "{message}");
    assert!(message.contains("check username and password"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_health_and_readiness() {
    let up = Upstream::start(Mode::Anonymous).await;
    let proxy = Proxy::start_with_admin(Resolver::Path, &up.connector("team-a", "anon"), "").await;
    assert_eq!(proxy.admin_get("/healthz").await, "ok\n");
    assert!(proxy.admin_get("/readyz").await.starts_with("ready"));
    let list = settled(&proxy).await;
    let (status, reason, _) = condition(&list, "anon", "AuthReady");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "NoAuthRequired"));
    assert_eq!(condition(&list, "anon", "SecretReady").1, "SecretOptional");
    let resp = reqwest::get(format!("{}/nope", proxy.admin_url())).await.expect("GET");
    assert_eq!(resp.status(), reqwest::StatusCode::NOT_FOUND);
}

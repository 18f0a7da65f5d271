//! The `status` subcommand's table, like `kubectl get`.

use std::time::{Duration, SystemTime};

use super::conditions::ConditionType;
use super::view::ConnectorList;

/// The `status` table: NAME NAMESPACE ADDRESS READY REASON AGE, like `kubectl get`.
pub fn table(list: &ConnectorList, now: SystemTime) -> String {
    let mut rows = vec![["NAME", "NAMESPACE", "ADDRESS", "READY", "REASON", "AGE"].map(String::from)];
    for item in &list.items {
        let ready = item.status.conditions.iter().find(|c| c.kind == ConditionType::Ready);
        let age = item
            .status
            .loaded_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(short_age)
            .unwrap_or_else(|| "<unknown>".into());
        rows.push([
            item.metadata.name.clone(),
            item.metadata.namespace.clone(),
            item.spec.address.clone(),
            ready.map(|c| format!("{:?}", c.status)).unwrap_or_else(|| "Unknown".into()),
            ready.map(|c| c.reason.clone()).unwrap_or_default(),
            age,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's short age: `45s`, `12m`, `5h`, `3d`.
fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::status::conditions::{merge, ConditionStatus, Finding};
    use crate::status::rfc3339;
    use crate::status::view::{
        ConnectorView, ObjectMeta, ProxyView, SpecView, StatusView, UrlView, API_VERSION,
    };
    use crate::status::ReloadStatus;
    use ConditionStatus::*;
    use ConditionType::*;

    fn f(kind: ConditionType, status: ConditionStatus, reason: &str) -> Finding {
        Finding::new(kind, status, reason, reason.to_lowercase())
    }

    #[test]
    fn table_looks_like_kubectl() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let conditions = merge(&[], vec![f(Ready, False, "CredentialsRejected")], now);
        let item = ConnectorView {
            api_version: API_VERSION.into(),
            kind: "Connector".into(),
            metadata: ObjectMeta {
                name: "hub".into(),
                namespace: "team-a".into(),
                annotations: BTreeMap::new(),
            },
            spec: SpecView {
                connector_class_name: "oci".into(),
                address: "https://index.docker.io".into(),
                auth: None,
            },
            status: StatusView {
                conditions,
                proxy: ProxyView { http_address: UrlView { url: "http://p/x".into() } },
                loaded_at: Some(rfc3339(now - Duration::from_secs(300))),
                last_probe_time: None,
            },
        };
        let list = ConnectorList {
            api_version: API_VERSION.into(),
            kind: "ConnectorList".into(),
            reload: ReloadStatus::default(),
            items: vec![item],
        };
        assert_eq!(
            table(&list, now),
            "NAME   NAMESPACE   ADDRESS                   READY   REASON                AGE\n\
             hub    team-a      https://index.docker.io   False   CredentialsRejected   5m\n"
        );
        assert_eq!(short_age(Duration::from_secs(3 * 86_400)), "3d");
    }
}

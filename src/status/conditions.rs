//! Condition types, probe findings, and how findings become conditions.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::rfc3339;

/// The condition types, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// The connector's secret is usable (or none is needed).
    SecretReady,
    /// The registry answers `GET /v2/`.
    LivenessReady,
    /// The credentials are accepted.
    AuthReady,
    /// The proxy listener accepts connections.
    ProxyServiceReady,
    /// All of the above.
    Ready,
}

/// A condition's status (Kubernetes spells them as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (not probed, or a prerequisite failed).
    Unknown,
}

/// One Knative-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Which condition.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase word saying why.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// What a probe found for one condition (no timestamp yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which condition.
    pub kind: ConditionType,
    /// Its status.
    pub status: ConditionStatus,
    /// Why.
    pub reason: String,
    /// For humans.
    pub message: String,
}

impl Finding {
    /// A finding with `reason` and `message`.
    pub(super) fn new(
        kind: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Finding { kind, status, reason: reason.to_string(), message: message.into() }
    }
}

/// Merges findings into conditions, keeping `lastTransitionTime` when the status is unchanged.
pub(super) fn merge(old: &[Condition], findings: Vec<Finding>, now: SystemTime) -> Vec<Condition> {
    findings
        .into_iter()
        .map(|f| {
            let last_transition_time = match old.iter().find(|o| o.kind == f.kind) {
                Some(o) if o.status == f.status => o.last_transition_time.clone(),
                _ => rfc3339(now),
            };
            Condition {
                kind: f.kind,
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_transition_time,
            }
        })
        .collect()
}

/// `Ready` from the other findings: True when all are True; otherwise the first
/// False (or, failing that, Unknown) one's reason.
pub fn ready_finding(findings: &[Finding]) -> Finding {
    let others = || findings.iter().filter(|f| f.kind != ConditionType::Ready);
    let failing = others()
        .find(|f| f.status == ConditionStatus::False)
        .or_else(|| others().find(|f| f.status == ConditionStatus::Unknown));
    match failing {
        None => Finding::new(ConditionType::Ready, ConditionStatus::True, "Ready", "the connector is ready"),
        Some(f) => {
            Finding::new(ConditionType::Ready, f.status, &f.reason, format!("{:?}: {}", f.kind, f.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use ConditionStatus::*;
    use ConditionType::*;

    fn f(kind: ConditionType, status: ConditionStatus, reason: &str) -> Finding {
        Finding::new(kind, status, reason, reason.to_lowercase())
    }

    #[test]
    fn ready_needs_everything_true() {
        let all = vec![f(SecretReady, True, "A"), f(LivenessReady, True, "B"), f(AuthReady, True, "C")];
        assert_eq!(ready_finding(&all).status, True);
        let mut some = all.clone();
        some[2] = f(AuthReady, False, "CredentialsRejected");
        some.push(f(ProxyServiceReady, Unknown, "Probing"));
        let r = ready_finding(&some);
        assert_eq!((r.status, r.reason.as_str()), (False, "CredentialsRejected"));
        assert!(r.message.starts_with("AuthReady: "), "{}", r.message);
        let unknown = vec![f(SecretReady, True, "A"), f(LivenessReady, Unknown, "Probing")];
        assert_eq!(ready_finding(&unknown).status, Unknown);
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(60);
        let first = merge(&[], vec![f(AuthReady, False, "X")], t0);
        let same = merge(&first, vec![f(AuthReady, False, "Y")], t1);
        assert_eq!(same[0].last_transition_time, first[0].last_transition_time);
        assert_eq!(same[0].reason, "Y", "reason and message follow the latest probe");
        let flipped = merge(&same, vec![f(AuthReady, True, "Z")], t1);
        assert_eq!(flipped[0].last_transition_time, rfc3339(t1));
    }

    #[test]
    fn conditions_serialize_like_kubernetes() {
        let c = merge(&[], vec![f(SecretReady, True, "SecretOptional")], SystemTime::UNIX_EPOCH);
        let json = serde_json::to_value(&c[0]).unwrap_or_default();
        assert_eq!(json["type"], "SecretReady");
        assert_eq!(json["status"], "True");
        assert_eq!(json["lastTransitionTime"], "1970-01-01T00:00:00Z");
    }
}

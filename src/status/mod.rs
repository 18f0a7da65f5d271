//! Connector status: a background prober sets Knative-style conditions per connector.
//!
//! Conditions (the original product's): `SecretReady` (reason `SecretOptional`
//! without a secret), `LivenessReady` (`GET /v2/` answers 200 or 401),
//! `AuthReady` (the credentials obtain a token for the `repository` param, or are
//! accepted at `/v2/` for Basic registries), `ProxyServiceReady` (the proxy
//! listener accepts connections) and `Ready` (all of them). A condition's
//! `lastTransitionTime` changes only when its status changes.
//!
//! The prober runs every [`PROBE_INTERVAL`], first immediately, and again right
//! after a reload for connectors that are new or whose fingerprint changed.
//!
//! # Layout
//! - `conditions`: condition and finding types, `Ready` from the others, transition times.
//! - `board`: [`StatusBoard`], the shared conditions of every connector plus the reload outcome.
//! - `probe`: the liveness, auth, secret and listener checks against a registry.
//! - `service`: [`Prober`], the background service that schedules probe rounds.
//! - `view`: the `/connectors` document types ([`ConnectorList`] and its parts).
//! - `table`: the `status` subcommand's kubectl-like table.

use std::time::{Duration, SystemTime};

mod board;
mod conditions;
mod probe;
mod service;
mod table;
mod view;

pub use board::{ReloadStatus, StatusBoard};
pub use conditions::{ready_finding, Condition, ConditionStatus, ConditionType, Finding};
pub use probe::{dialable, probe_connector, probe_listener};
pub use service::Prober;
pub use table::table;
pub use view::{
    AuthView, ConnectorList, ConnectorView, NameRef, ObjectMeta, ParamView, ProxyView, SpecView, StatusView,
    UrlView, API_VERSION,
};

/// How often every connector is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// RFC 3339 with seconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

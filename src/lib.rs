//! oci-connector: an authenticating, streaming OCI registry proxy built on Pingora.
//!
//! Clients pull and push images through the proxy; the proxy holds each
//! connector's registry credentials, runs the registry token flow itself, caches
//! tokens and streams blobs. No client ever sees a registry credential or token.
//!
//! # Layout
//! - [`alloc`]: the global allocator's tuning (mimalloc).
//! - [`cli`]: command line (serve, check, status, token, render, keygen) -> app.
//! - [`app`]: assembles the Pingora server (proxy, admin, reload, status prober, drain).
//! - [`config`]: settings and connector manifests: serde schema, validation, typed model.
//! - [`registry`]: the live connector snapshot, swapped whole on reload.
//! - [`reload`]: watch + debounce (or SIGHUP) -> load -> validate -> swap; keeps the last good one.
//! - [`status`]: the background prober and the connectors' Knative-style conditions.
//! - [`admin`]: the admin listener: `/healthz`, `/readyz`, `/connectors`, `/metrics`.
//! - [`metrics`]: every metric in one place, in the Prometheus text format.
//! - [`routing`]: pure request routing: (host, path, query) -> route.
//! - [`auth`]: registry challenges, scopes, the token client and cache, client tokens.
//! - [`proxy`]: the `ProxyHttp` implementation and its pure helpers (rewrites, errors, peers),
//!   and the fast lane that serves GET/HEAD on its own upstream connections (`proxy::fastlane`).
//! - [`clientconfig`]: renderers of client configuration files.
//! - [`secret`]: a string type that never prints its value.
//! - [`shard`]: per-thread shards of state written on every request.

#![warn(missing_docs)]

pub mod admin;
pub mod alloc;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clientconfig;
pub mod config;
pub mod metrics;
pub mod proxy;
pub mod registry;
pub mod reload;
pub mod routing;
pub mod secret;
pub mod shard;
pub mod status;

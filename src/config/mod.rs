//! Settings and connector manifests: the file schema, validation and the typed model.
//!
//! Two layers: [`raw`] mirrors the files (serde, unknown keys rejected), [`load`](mod@load)
//! validates them into [`model`] types and reports every problem at once.
//!
//! # Layout
//! - [`load`](mod@load): the entry points, [`load()`] and [`load_connectors()`]; orchestration only.
//! - `settings`: the settings file into [`Settings`], durations.
//! - `files`: reading text files, expanding manifest directories.
//! - `manifests`: multi-document YAML/JSON, each document a Connector or a Secret.
//! - `connector`: a Connector's spec and annotations, upstream address.
//! - `secrets`: Secret decoding, registry credentials, CA bundles.
//! - `catalog`: cross-references: duplicates, each connector's secrets.
//! - `location`: where a problem is (document origin, serde error location).
//! - `names`: DNS, Kubernetes and OCI repository name syntax.
//! - [`diagnostics`]: problems with file, location, message and hint.

mod catalog;
mod connector;
pub mod diagnostics;
mod files;
pub mod load;
mod location;
mod manifests;
pub mod model;
mod names;
pub mod raw;
mod secrets;
mod settings;
#[cfg(test)]
mod test_support;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{load, load_connectors};
pub use model::*;

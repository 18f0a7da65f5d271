//! Settings and connector manifests: the file schema, validation and the typed model.
//!
//! Two layers: [`raw`] mirrors the files (serde, unknown keys rejected), [`load`]
//! validates them into [`model`] types and reports every problem at once.

pub mod diagnostics;
pub mod load;
pub mod model;
pub mod raw;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{load, load_connectors};
pub use model::*;

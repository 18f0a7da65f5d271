//! Where a problem is: a manifest document's origin, and the parts of a serde error.

use std::path::PathBuf;

use super::diagnostics::{serde_hint, unknown_field_name, Diagnostic};

/// A serde error split into its parts: serde_yaml writes
/// `path: message at line L column C`, serde_json `message at line L column C`.
pub(super) struct SerdeProblem {
    path: Option<String>,
    /// What is wrong, without the path and position.
    pub(super) message: String,
    line_column: Option<(usize, usize)>,
    /// A hint derived from the message, when there is one.
    pub(super) hint: Option<String>,
}

impl SerdeProblem {
    /// Splits a serde_yaml error.
    pub(super) fn from_yaml(e: &serde_yaml::Error) -> Self {
        Self::split(e.to_string(), e.location().map(|l| (l.line(), l.column())))
    }

    /// Splits a serde_json error.
    pub(super) fn from_json(e: &serde_json::Error) -> Self {
        let line_column = (e.line() > 0).then(|| (e.line(), e.column()));
        Self::split(e.to_string(), line_column)
    }

    fn split(mut message: String, line_column: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = line_column {
            let suffix = format!(" at line {line} column {column}");
            if message.ends_with(&suffix) {
                message.truncate(message.len() - suffix.len());
            }
        }
        let mut path = None;
        if let Some((head, tail)) = message.split_once(": ") {
            // A path has no spaces; "invalid type: ..." is a message, not a path.
            if !head.is_empty() && !head.contains(' ') && !head.contains('`') {
                path = Some(head.to_string());
                message = tail.to_string();
            }
        }
        if let Some(field) = unknown_field_name(&message) {
            path = Some(match path {
                Some(parent) => format!("{parent}.{field}"),
                None => field.to_string(),
            });
        }
        let hint = serde_hint(&message);
        SerdeProblem { path, message, line_column, hint }
    }

    /// `prefix, path (line L, column C)`, leaving out what is unknown.
    pub(super) fn location(&self, prefix: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !prefix.is_empty() {
            parts.push(prefix.to_string());
        }
        if let Some(path) = &self.path {
            parts.push(path.clone());
        }
        let mut location = parts.join(", ");
        if let Some((line, column)) = self.line_column {
            if !location.is_empty() {
                location.push(' ');
            }
            location.push_str(&format!("(line {line}, column {column})"));
        }
        location
    }
}

/// Where a document sits: file, 1-based index, and a label like `Connector default/hub`.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// The manifest file.
    pub(super) file: PathBuf,
    /// The document's 1-based index in the file.
    pub(super) document: usize,
    /// Kind, namespace and name as far as known; may be empty.
    pub(super) label: String,
}

impl Origin {
    /// `document N (label)`, the start of every location in this document.
    pub(super) fn prefix(&self) -> String {
        if self.label.is_empty() {
            format!("document {}", self.document)
        } else {
            format!("document {} ({})", self.document, self.label)
        }
    }

    /// The location of `path` (e.g. `spec.address`) in this document.
    fn at(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix()
        } else {
            format!("{}, {path}", self.prefix())
        }
    }

    /// A problem at `path` in this document.
    pub(super) fn diag(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file.clone(), self.at(path), message)
    }
}

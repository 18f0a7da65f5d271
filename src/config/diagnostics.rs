//! Configuration problems: where each one is, what is wrong, and how to fix it.
//!
//! Loading never stops at the first problem; every problem found goes into one
//! [`Diagnostics`] list, which prints one line per problem.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Where in the file, e.g. `document 3 (Connector default/hub), spec.address`.
    /// Empty when the problem concerns the whole file.
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem without a hint.
    pub fn new(file: impl Into<PathBuf>, location: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.into(), location: location.into(), message: message.into(), hint: None }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint if there is one.
    pub fn with_optional_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.location.is_empty() {
            write!(f, "{}: ", self.location)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Every problem found while loading, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    /// Records a problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The candidate closest to `word` (ignoring case), if it is close enough to be a
/// plausible typo: a few edits or transpositions away, or a prefix of it.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let length = word.chars().count();
    let limit = (length / 3).max(1);
    candidates
        .iter()
        .filter_map(|c| {
            let candidate = c.to_ascii_lowercase();
            let distance = edit_distance(&word, &candidate);
            let prefix = length >= 3 && candidate.starts_with(&word);
            (distance <= limit || prefix).then_some((distance, *c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint for a value that is not one of `candidates`: "did you mean `x`?" when one is
/// close, otherwise the list of accepted values.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates) {
        Some(best) => format!("did you mean `{best}`?"),
        None if candidates.is_empty() => "nothing is accepted here".to_string(),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

/// Edit distance over chars counting an adjacent transposition as one edit
/// (optimal string alignment), so `mdoe` is one edit from `mode`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance matrix.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j - 1] + cost).min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A hint for serde's "unknown field" and "unknown variant" messages, whose wording
/// is fixed by serde: ``unknown field `x`, expected one of `a`, `b` `` (or
/// `` expected `a` or `b` ``, or `there are no fields`).
pub fn serde_hint(message: &str) -> Option<String> {
    let rest =
        message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected ").map(|(_, e)| e).unwrap_or("");
    if rest.contains("there are no fields") || rest.contains("there are no variants") {
        return Some("this section takes no keys".to_string());
    }
    // Backticked names sit at odd positions when splitting on backticks.
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if candidates.is_empty() {
        return None;
    }
    Some(suggest(word, &candidates))
}

/// The name in an ``unknown field `x`...`` message, to extend the location with.
pub(crate) fn unknown_field_name(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split_once('`').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_per_problem() {
        let mut d = Diagnostics::new();
        d.push(
            Diagnostic::new("a.yaml", "document 1 (Connector default/x), spec.address", "is missing")
                .with_hint("add it"),
        );
        d.push(Diagnostic::new("b.yaml", "", "cannot read"));
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.to_string(),
            "a.yaml: document 1 (Connector default/x), spec.address: is missing (hint: add it)\nb.yaml: cannot read"
        );
        assert_eq!(d.iter().count(), 2);
        let err: &dyn std::error::Error = &d;
        assert!(err.to_string().contains("cannot read"));
    }

    #[test]
    fn closest_finds_plausible_typos_only() {
        let known = ["connectorClassName", "address", "auth", "caCertSecretRef"];
        assert_eq!(closest("adress", &known), Some("address"));
        assert_eq!(closest("Address", &known), Some("address"));
        assert_eq!(closest("connectorClass", &known), Some("connectorClassName"));
        assert_eq!(closest("zzzzzz", &known), None);
        assert_eq!(closest("", &known), None);
        assert_eq!(closest("repo", &["repository"]), Some("repository"));
        assert_eq!(suggest("tokenauth", &["tokenAuth"]), "did you mean `tokenAuth`?");
        assert_eq!(suggest("xyz", &["follow", "client"]), "expected one of: follow, client");
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ünï", "uni"), 2);
        assert_eq!(edit_distance("mdoe", "mode"), 1);
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn hints_from_serde_messages() {
        assert_eq!(
            serde_hint("unknown field `adress`, expected one of `connectorClassName`, `address`").as_deref(),
            Some("did you mean `address`?")
        );
        assert_eq!(
            serde_hint("unknown field `valu`, expected `name` or `value`").as_deref(),
            Some("did you mean `value`?")
        );
        assert_eq!(
            serde_hint("unknown variant `hots`, expected `path` or `host`").as_deref(),
            Some("did you mean `host`?")
        );
        assert_eq!(
            serde_hint("unknown field `zzzzzzz`, expected `name` or `value`").as_deref(),
            Some("expected one of: name, value")
        );
        assert_eq!(
            serde_hint("unknown field `a`, there are no fields").as_deref(),
            Some("this section takes no keys")
        );
        assert_eq!(serde_hint("invalid type: sequence, expected a string"), None);
        assert_eq!(serde_hint("unknown field `unterminated"), None);
        assert_eq!(unknown_field_name("unknown field `x`, expected `y`"), Some("x"));
    }
}

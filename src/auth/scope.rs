//! Predicts the token scope a registry will demand for a request.
//!
//! Getting this right lets a warm request go upstream once with a cached token,
//! instead of taking a 401 round trip first. Distribution derives the actions
//! from the method: GET/HEAD need `pull`, POST/PUT/PATCH `pull,push`, DELETE
//! `delete` (registry/handlers/app.go, `appendAccessRecords`).

use http::Method;

/// The scopes (`repository:<name>:<actions>`) to request for one call.
pub fn predict(method: &Method, repository: &str, mount_from: Option<&str>) -> Vec<String> {
    let actions = if method == Method::GET || method == Method::HEAD {
        "pull"
    } else if method == Method::DELETE {
        "delete"
    } else {
        "pull,push"
    };
    let mut scopes = Vec::with_capacity(1 + usize::from(mount_from.is_some()));
    scopes.push(repository_scope(repository, actions));
    if let Some(from) = mount_from.filter(|f| *f != repository) {
        scopes.push(repository_scope(from, "pull"));
    }
    scopes
}

/// `repository:<name>:<actions>`, sized once (`concat`, not `format!`: this
/// runs for every request).
fn repository_scope(name: &str, actions: &str) -> String {
    ["repository:", name, ":", actions].concat()
}

/// Splits a challenge's `scope` parameter (space-separated) into scopes.
pub fn split(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_method() {
        assert_eq!(predict(&Method::HEAD, "a/b", None), ["repository:a/b:pull"]);
        assert_eq!(predict(&Method::PATCH, "a", None), ["repository:a:pull,push"]);
        assert_eq!(predict(&Method::DELETE, "a", None), ["repository:a:delete"]);
    }

    #[test]
    fn mounts_add_pull_on_the_source() {
        assert_eq!(
            predict(&Method::POST, "dst", Some("src")),
            ["repository:dst:pull,push", "repository:src:pull"]
        );
        assert_eq!(predict(&Method::POST, "dst", Some("dst")), ["repository:dst:pull,push"]);
    }
}

//! Syntax checks of names: DNS names, Kubernetes namespaces and names, OCI repositories.

/// A DNS name: dot-separated labels of letters, digits and `-`.
pub(super) fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "label {label:?} must be 1 to 63 letters, digits or '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 label as Kubernetes requires for namespaces: lowercase letters,
/// digits and `-`, at most 63 characters.
pub(super) fn validate_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err("must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
            .into())
    }
}

/// A DNS-1123 subdomain as Kubernetes requires for most names (secrets).
pub(super) fn validate_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    if name.split('.').all(|label| validate_dns_label(label).is_ok()) {
        Ok(())
    } else {
        Err("must be lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit"
            .into())
    }
}

/// An OCI repository name: `/`-separated components of lowercase letters and
/// digits joined by `.`, `_`, `__` or runs of `-` (distribution spec, "name").
pub(super) fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    match name.split('/').find(|component| !valid_repository_component(component)) {
        Some(component) => Err(format!(
            "component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
        )),
        None => Ok(()),
    }
}

fn valid_repository_component(component: &str) -> bool {
    let valid_separator = |sep: &str| matches!(sep, "." | "_" | "__") || sep.chars().all(|c| c == '-');
    let mut separator = String::new();
    let mut started = false;
    for c in component.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !separator.is_empty() {
                if !started || !valid_separator(&separator) {
                    return false;
                }
                separator.clear();
            }
            started = true;
        } else {
            separator.push(c);
        }
    }
    started && separator.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for good in ["alpine", "library/alpine", "a/b/c", "my-app", "my__app", "v1.2", "a---b"] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "A", "a//b", "-a", "a-", "a..b", "a___b", "a b", "ä"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }
}

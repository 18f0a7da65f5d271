//! Decodes Secrets and reads what connectors take from them: credentials and CA bundles.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use super::diagnostics::Diagnostics;
use super::location::Origin;
use super::model::Credentials;
use crate::secret::Secret;

const CREDENTIAL_SECRET_TYPES: [&str; 2] =
    ["cpaas.io/distribution-registry-token", "kubernetes.io/basic-auth"];
const CA_KEY: &str = "ca.crt";

/// (namespace, name) of a secret.
pub(super) type SecretKey = (String, String);

/// A secret's values, decoded.
pub(super) struct LoadedSecret {
    secret_type: String,
    values: BTreeMap<String, Vec<u8>>,
}

/// Decodes a Secret's `data` (base64) and `stringData`, recording invalid base64.
pub(super) fn validate_secret(
    secret_type: Option<String>,
    data: Option<BTreeMap<String, String>>,
    string_data: Option<BTreeMap<String, String>>,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> LoadedSecret {
    let mut values = BTreeMap::new();
    for (key, encoded) in data.unwrap_or_default() {
        let compact: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(bytes) => {
                values.insert(key, bytes);
            }
            Err(e) => diags.push(
                origin
                    .diag(&key_path("data", &key), format!("not valid base64: {e}"))
                    .with_hint("encode with `base64 -w0`, or put the plain value under stringData"),
            ),
        }
    }
    // As in Kubernetes, stringData wins over data.
    for (key, value) in string_data.unwrap_or_default() {
        values.insert(key, value.into_bytes());
    }
    LoadedSecret { secret_type: secret_type.unwrap_or_else(|| "Opaque".into()), values }
}

/// `data.username`, or `data["ca.crt"]` when the key would read as a path.
fn key_path(section: &str, key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        format!("{section}.{key}")
    } else {
        format!("{section}[{key:?}]")
    }
}

/// Reads `username` and `password` from a secret a connector names in `auth.secretRef`.
pub(super) fn read_credentials(
    secret: &LoadedSecret,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> Option<Credentials> {
    let mut ok = true;
    if !CREDENTIAL_SECRET_TYPES.contains(&secret.secret_type.as_str()) {
        diags.push(
            origin
                .diag(
                    "type",
                    format!("secret type {:?} cannot hold registry credentials", secret.secret_type),
                )
                .with_hint(format!(
                    "use `type: {}` (or {})",
                    CREDENTIAL_SECRET_TYPES[0], CREDENTIAL_SECRET_TYPES[1]
                )),
        );
        ok = false;
    }
    let mut field = |key: &str| -> Option<String> {
        let Some(bytes) = secret.values.get(key) else {
            diags.push(
                origin
                    .diag("", format!("the secret has no `{key}` key"))
                    .with_hint(format!("add stringData.{key} (or base64 data.{key})")),
            );
            return None;
        };
        let problem = match std::str::from_utf8(bytes) {
            Err(_) => Some(("is not UTF-8 text", "check the base64 encoding")),
            Ok("") => Some(("is empty", "set the registry account's value")),
            Ok(v) if v.contains(['\n', '\r']) => Some((
                "contains a line break",
                "encode it with `echo -n ... | base64 -w0` (no trailing newline)",
            )),
            Ok(_) => None,
        };
        match problem {
            Some((what, hint)) => {
                diags.push(origin.diag(&key_path("data", key), format!("`{key}` {what}")).with_hint(hint));
                None
            }
            None => String::from_utf8(bytes.clone()).ok(),
        }
    };
    let username = field("username");
    let password = field("password");
    match (username, password) {
        (Some(username), Some(password)) if ok => {
            Some(Credentials { username, password: Secret::new(password) })
        }
        _ => None,
    }
}

/// Reads the CA bundle of a secret that a connector names in `caCertSecretRef`.
pub(super) fn read_ca(
    secret: &LoadedSecret,
    origin: &Origin,
    diags: &mut Diagnostics,
) -> Option<Arc<Vec<Vec<u8>>>> {
    match secret.values.get(CA_KEY) {
        None => {
            diags.push(
                origin
                    .diag(
                        "",
                        format!(
                            "the secret has no `{CA_KEY}` key, but a connector uses it as caCertSecretRef"
                        ),
                    )
                    .with_hint("add the CA certificates (PEM) under stringData[\"ca.crt\"]"),
            );
            None
        }
        Some(pem) => match parse_ca_bundle(pem) {
            Ok(certs) => Some(Arc::new(certs)),
            Err(why) => {
                diags.push(
                    origin
                        .diag(&key_path("data", CA_KEY), why)
                        .with_hint("ca.crt must hold one or more PEM `-----BEGIN CERTIFICATE-----` blocks"),
                );
                None
            }
        },
    }
}

/// Parses a PEM bundle and checks each certificate is X.509 DER.
///
/// This check is what keeps bad input from reaching Pingora's rustls
/// `WrappedX509`, which panics on invalid DER.
fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    let mut reader = pem;
    for (i, item) in rustls_pemfile::certs(&mut reader).enumerate() {
        let der = item.map_err(|e| format!("certificate {}: invalid PEM: {e}", i + 1))?;
        match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok(([], _)) => certs.push(der.as_ref().to_vec()),
            Ok(_) => return Err(format!("certificate {}: trailing bytes after the certificate", i + 1)),
            Err(e) => return Err(format!("certificate {}: not a valid X.509 certificate: {e}", i + 1)),
        }
    }
    if certs.is_empty() {
        return Err("`ca.crt` contains no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use crate::config::test_support::{connector, find, ok, problems, secret, AUTH_REF, CREDS};

    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBejCCASGgAwIBAgIUXJ49XC6oAhzXR2F7rfHRJzUY2qcwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjExMjgxNjQyMjZaGA8yMTI2MTEwNDE2
NDIyNlowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABPGTOhy/n63Uy/3jLFRypeZgb3ScvUdq512BJKUgdRTHaRfB/GW/qQj+HoxZ
oF3dt7rG2tSF3WNGF0ij67e1AsqjUzBRMB0GA1UdDgQWBBRK4o1U6KJbvF7bgCAT
BPhvAD5M3zAfBgNVHSMEGDAWgBRK4o1U6KJbvF7bgCATBPhvAD5M3zAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCICaVm80TlMl1iBBf4VWclPuq2kIp
8jrtYH4N350c1qnKAiAKAH+GD0a3ICSRkqdJmO/mkmaS0a+bqwzpZEN48sjTBw==
-----END CERTIFICATE-----
";

    #[test]
    fn credentials_from_string_data() {
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "cpaas.io/distribution-registry-token", CREDS)
        );
        let c = ok(&text).remove(0);
        let creds = c.credentials.expect("credentials");
        assert_eq!(creds.username, "robot");
        assert_eq!(creds.password.expose(), "s3cret");
        assert_eq!(c.secret_name.as_deref(), Some("creds"));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn credentials_from_base64_data_and_basic_auth_type() {
        // cm9ib3Q= is "robot", czNjcmV0 is "s3cret"; stringData wins over data.
        let body = "data:\n  username: cm9ib3Q=\n  password: czNjcmV0\n";
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        );
        let creds = ok(&text).remove(0).credentials.expect("credentials");
        assert_eq!((creds.username.as_str(), creds.password.expose()), ("robot", "s3cret"));
        let body = "data:\n  password: czNjcmV0\nstringData:\n  username: robot\n  password: plain\n";
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        );
        assert_eq!(ok(&text).remove(0).credentials.expect("credentials").password.expose(), "plain");
    }

    #[test]
    fn invalid_base64_is_reported() {
        let body = "data:\n  username: cm9ib3Q=\n  password: '!!not base64!!'\n";
        let d = problems(&format!(
            "{}---\n{}",
            connector("x", "https://r.example", AUTH_REF),
            secret("creds", "kubernetes.io/basic-auth", body)
        ));
        let problem = find(&d, "document 2 (Secret default/creds), data.password", "base64");
        assert!(problem.hint.is_some());
    }

    fn ca_secret(pem: &str) -> String {
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        secret("ca", "Opaque", &format!("stringData:\n  ca.crt: |\n{indented}"))
    }

    const CA_REF: &str = "  caCertSecretRef:\n    name: ca\n";

    #[test]
    fn ca_certificates() {
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            ca_secret(&format!("{CA_PEM}{CA_PEM}"))
        );
        let c = ok(&text).remove(0);
        let cas = c.ca_certs.expect("ca certs");
        assert_eq!(cas.len(), 2);
        assert!(x509_parser::parse_x509_certificate(&cas[0]).is_ok());
        // Base64 in data works too.
        let data = base64::engine::general_purpose::STANDARD.encode(CA_PEM);
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            secret("ca", "Opaque", &format!("data:\n  ca.crt: {data}\n"))
        );
        assert_eq!(ok(&text)[0].ca_certs.as_ref().map(|c| c.len()), Some(1));
    }

    #[test]
    fn invalid_ca_certificates_are_caught_before_rustls() {
        // Valid PEM armour around bytes that are not DER: this would panic in Pingora.
        let garbage_der = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        for (pem, message) in [
            (garbage_der, "not a valid X.509 certificate"),
            ("just text\n", "no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "invalid PEM"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n", "invalid PEM"),
        ] {
            let text = format!("{}---\n{}", connector("x", "https://r.example", CA_REF), ca_secret(pem));
            let d = problems(&text);
            let problem = find(&d, "document 2 (Secret default/ca), data[\"ca.crt\"]", message);
            assert!(problem.hint.is_some());
        }
        let text = format!(
            "{}---\n{}",
            connector("x", "https://r.example", CA_REF),
            secret("ca", "Opaque", "stringData: {other: x}\n")
        );
        find(&problems(&text), "Secret default/ca", "no `ca.crt` key");
        find(
            &problems(&connector("x", "https://r.example", CA_REF)),
            "spec.caCertSecretRef.name",
            "not found",
        );
    }
}

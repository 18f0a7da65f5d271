//! Proxy tokens for clients: key files, minting, constant-time verification, header parsing.
//!
//! A client token is `ocit1.<key-id>.<payload>.<signature>`:
//! - `payload`: base64url (unpadded) JSON claims `sub`, `connectors` (`"ns/name"`),
//!   `actions` (`["pull"]` or `["pull", "push"]`), `iat` and `exp` (unix seconds), `jti`;
//! - `signature`: base64url HMAC-SHA256, under the key named by `key-id`, of everything
//!   before the last `.`, so the version tag and key id are signed too.
//!
//! The key id lets a verifier holding several keys (rotation: the first signs, all
//! verify) pick the right one without trying each.
//!
//! A key file holds one line `ocik1:<key-id>:<base64url key>`, where the key is 32
//! random bytes and the key id the first 8 hex digits of its SHA-256.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::model::ConnectorId;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// First field of a key file line.
const KEY_FILE_TAG: &str = "ocik1";
/// First segment of a token.
const TOKEN_TAG: &str = "ocit1";
/// Key length in bytes.
const KEY_LEN: usize = 32;
/// Longest token we look at; anything longer is rejected before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Action names in the claims.
const PULL: &str = "pull";
const PUSH: &str = "push";

/// Errors creating or loading key files. They name the file, never the key.
#[derive(Debug, thiserror::Error)]
pub enum ClientTokenError {
    /// The file could not be read, created or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `generate_key_file` refuses to replace a key.
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The file is not a key file.
    #[error("key file {path}: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without the key material.
        reason: &'static str,
    },
    /// Two different keys share an id, so tokens could not tell them apart.
    #[error("key file {path}: key id {id} is already used by {other}")]
    DuplicateKeyId {
        /// The later key file.
        path: PathBuf,
        /// The shared key id.
        id: String,
        /// The earlier key file.
        other: PathBuf,
    },
    /// No key file was given.
    #[error("no key files configured (clientAuth.keyFiles)")]
    NoKeys,
}

/// Why a presented token is not accepted. Never carries the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a token of ours: wrong shape, bad encoding or bad claims.
    #[error("malformed token")]
    Malformed,
    /// Signed by a key this proxy does not have (e.g. removed by rotation).
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not match (tampered or forged).
    #[error("bad token signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who the token was issued to (for logs).
    pub subject: String,
    /// The connectors it may use.
    pub connectors: Vec<ConnectorId>,
    /// Whether it may push (it may always pull).
    pub push: bool,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

impl Grant {
    /// Whether this grant covers `id`, for a push when `push` is true, else a pull.
    pub fn allows(&self, id: &ConnectorId, push: bool) -> bool {
        (self.push || !push) && self.connectors.iter().any(|c| c == id)
    }
}

/// The signed JSON payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    connectors: Vec<String>,
    actions: Vec<String>,
    iat: u64,
    exp: u64,
    jti: String,
}

/// One signing key.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; KEY_LEN],
    path: PathBuf,
}

impl Key {
    fn mac(&self) -> HmacSha256 {
        // HMAC zero-pads a key shorter than the hash block (RFC 2104 §2), so the
        // padded 64-byte block is the same key, and this constructor cannot fail
        // (unlike `new_from_slice`, whose error is unreachable for 32 bytes).
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        block[..KEY_LEN].copy_from_slice(&self.bytes);
        <HmacSha256 as hmac::digest::KeyInit>::new(&block)
    }
}

/// The keys of the proxy: the first signs, all verify.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeySet").field("key_ids", &ids).finish()
    }
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Creates a new key file at `path` with owner-only permissions (0600).
///
/// Refuses to overwrite an existing file: replacing a key silently would
/// invalidate every token issued with it.
pub fn generate_key_file(path: &Path) -> Result<(), ClientTokenError> {
    let mut key = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut key);
    let line = format!("{KEY_FILE_TAG}:{}:{}\n", key_id(&key), URL_SAFE_NO_PAD.encode(key));
    let io = |source| ClientTokenError::Io { path: path.to_path_buf(), source };
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::AlreadyExists => ClientTokenError::Exists { path: path.to_path_buf() },
                _ => io(e),
            }
        })?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn parse_key_file(path: &Path, text: &str) -> Result<Key, ClientTokenError> {
    let malformed = |reason| ClientTokenError::Malformed { path: path.to_path_buf(), reason };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines.next().ok_or_else(|| malformed("empty file"))?;
    if lines.next().is_some() {
        return Err(malformed("expected a single line"));
    }
    let mut parts = line.split(':');
    let (Some(tag), Some(id), Some(encoded), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected `ocik1:<key-id>:<key>`"));
    };
    if tag != KEY_FILE_TAG {
        return Err(malformed("not an oci-connector key file (expected prefix `ocik1:`)"));
    }
    let decoded = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed("key is not base64url"))?;
    let bytes: [u8; KEY_LEN] = decoded.try_into().map_err(|_| malformed("key is not 32 bytes"))?;
    if key_id(&bytes) != id {
        return Err(malformed("key id does not match the key"));
    }
    Ok(Key { id: id.to_string(), bytes, path: path.to_path_buf() })
}

/// Loads the key files: the first one signs, all of them verify.
pub fn load_keys(paths: &[PathBuf]) -> Result<KeySet, ClientTokenError> {
    if paths.is_empty() {
        return Err(ClientTokenError::NoKeys);
    }
    let mut keys: Vec<Key> = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClientTokenError::Io { path: path.clone(), source })?;
        let key = parse_key_file(path, &text)?;
        if let Some(other) = keys.iter().find(|k| k.id == key.id) {
            if other.bytes == key.bytes {
                continue; // the same key listed twice is harmless
            }
            return Err(ClientTokenError::DuplicateKeyId {
                path: path.clone(),
                id: key.id,
                other: other.path.clone(),
            });
        }
        keys.push(key);
    }
    Ok(KeySet { keys })
}

impl KeySet {
    /// Id of the key that signs new tokens.
    pub fn signing_key_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or("")
    }

    /// Ids of all keys that verify, signing key first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Mints a token for `subject` granting `connectors` (pull, plus push when
    /// `push`), valid for `ttl` from now.
    pub fn mint(&self, subject: &str, connectors: &[ConnectorId], push: bool, ttl: Duration) -> Secret {
        self.mint_at(subject, connectors, push, ttl, SystemTime::now())
    }

    /// [`KeySet::mint`] with an explicit issue time (tests, reproducible output).
    pub fn mint_at(
        &self,
        subject: &str,
        connectors: &[ConnectorId],
        push: bool,
        ttl: Duration,
        now: SystemTime,
    ) -> Secret {
        // A KeySet is only built by `load_keys`, which rejects an empty list.
        let Some(key) = self.keys.first() else {
            return Secret::default();
        };
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let iat = unix_secs(now);
        let mut actions = vec![PULL.to_string()];
        if push {
            actions.push(PUSH.to_string());
        }
        let claims = Claims {
            sub: subject.to_string(),
            connectors: connectors.iter().map(ToString::to_string).collect(),
            actions,
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{TOKEN_TAG}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(json));
        let mut mac = key.mac();
        mac.update(signed.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Secret::new(format!("{signed}.{sig}"))
    }

    /// Verifies `token` at time `now` and returns what it grants.
    ///
    /// The signature is checked (in constant time) before the payload is decoded,
    /// so nothing unauthenticated is parsed beyond the key id.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Grant, TokenRejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::Malformed);
        }
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenRejection::Malformed)?;
        let mut parts = signed.split('.');
        let (Some(tag), Some(id), Some(payload), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed);
        };
        if tag != TOKEN_TAG {
            return Err(TokenRejection::Malformed);
        }
        let key = self.keys.iter().find(|k| k.id == id).ok_or(TokenRejection::UnknownKey)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenRejection::Malformed)?;
        let mut mac = key.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenRejection::BadSignature)?;

        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenRejection::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)?;
        let mut push = false;
        for action in &claims.actions {
            match action.as_str() {
                PULL => {}
                PUSH => push = true,
                _ => return Err(TokenRejection::Malformed),
            }
        }
        let connectors = claims
            .connectors
            .iter()
            .map(|c| match c.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(ConnectorId::new(ns, name)),
                _ => Err(TokenRejection::Malformed),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if unix_secs(now) >= claims.exp {
            return Err(TokenRejection::Expired);
        }
        Ok(Grant {
            subject: claims.sub,
            connectors,
            push,
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
        })
    }
}

/// Extracts the client token from an `Authorization` header value.
///
/// Accepts `Basic base64(user:token)` (the username is ignored, so `docker login`
/// with any name works) and `Bearer <token>`; the scheme is case-insensitive
/// (RFC 9110 §11.1). Returns `None` for anything else or an empty token.
pub fn credential_from_authorization(header: &[u8]) -> Option<Secret> {
    let value = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':')?.1.to_string()
    } else if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_string()
    } else {
        return None;
    };
    if token.is_empty() {
        None
    } else {
        Some(Secret::new(token))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand::Rng;
    use std::os::unix::fs::PermissionsExt;

    const HOUR: Duration = Duration::from_secs(3600);

    fn keyfile(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        generate_key_file(&p).unwrap();
        p
    }

    fn ids() -> Vec<ConnectorId> {
        vec![ConnectorId::new("team", "hub"), ConnectorId::new("team", "private")]
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn key_file_is_private_single_line_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = keyfile(dir.path(), "k");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("ocik1:") && text.ends_with('\n') && text.lines().count() == 1);
        let before = text.clone();
        assert!(matches!(generate_key_file(&p), Err(ClientTokenError::Exists { .. })));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), before);
        let keys = load_keys(&[p]).unwrap();
        assert_eq!(keys.signing_key_id(), text.split(':').nth(1).unwrap());
    }

    #[test]
    fn load_errors_name_the_file_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = keyfile(dir.path(), "k");
        let text = std::fs::read_to_string(&p).unwrap();
        let key_b64 = text.trim().rsplit(':').next().unwrap().to_string();
        let bad = dir.path().join("bad");
        // Right shape, wrong id.
        let wrong_id = format!("ocik1:00000000:{key_b64}\n");
        std::fs::write(&bad, &wrong_id).unwrap();
        let err = load_keys(std::slice::from_ref(&bad)).unwrap_err().to_string();
        assert!(err.contains(bad.to_str().unwrap()), "{err}");
        assert!(!err.contains(&key_b64), "{err}");
        std::fs::write(&bad, "garbage").unwrap();
        assert!(matches!(load_keys(std::slice::from_ref(&bad)), Err(ClientTokenError::Malformed { .. })));
        assert!(matches!(load_keys(&[dir.path().join("missing")]), Err(ClientTokenError::Io { .. })));
        assert!(matches!(load_keys(&[]), Err(ClientTokenError::NoKeys)));
        // The same key twice is fine.
        assert_eq!(load_keys(&[p.clone(), p]).unwrap().key_ids().count(), 1);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_keys(&[keyfile(dir.path(), "k")]).unwrap();
        let token = keys.mint_at("ci-job", &ids(), false, HOUR, now());
        assert!(token.expose().starts_with(&format!("ocit1.{}.", keys.signing_key_id())));
        let grant = keys.verify(token.expose(), now()).unwrap();
        assert_eq!(grant.subject, "ci-job");
        assert_eq!(grant.connectors, ids());
        assert!(!grant.push);
        assert_eq!(grant.expires_at, now() + HOUR);
        assert!(grant.allows(&ids()[0], false));
        assert!(!grant.allows(&ids()[0], true));
        assert!(!grant.allows(&ConnectorId::new("team", "other"), false));

        let push = keys.verify(keys.mint_at("ci", &ids()[..1], true, HOUR, now()).expose(), now()).unwrap();
        assert!(push.allows(&ids()[0], true) && push.allows(&ids()[0], false));
        assert!(!push.allows(&ids()[1], false));
        // Two tokens for the same grant differ (jti).
        assert_ne!(
            keys.mint_at("ci", &ids(), false, HOUR, now()),
            keys.mint_at("ci", &ids(), false, HOUR, now())
        );
    }

    #[test]
    fn tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_keys(&[keyfile(dir.path(), "k")]).unwrap();
        let token = keys.mint_at("ci", &ids(), false, HOUR, now()).expose().to_string();
        let sig_start = token.rfind('.').unwrap() + 1;
        let payload_start = token[..sig_start - 1].rfind('.').unwrap() + 1;
        for pos in [payload_start, payload_start + 7, sig_start, token.len() - 2] {
            let mut bytes = token.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(keys.verify(&tampered, now()), Err(TokenRejection::BadSignature), "pos {pos}");
        }
        // A push grant forged by swapping in another payload is rejected too.
        let other = keys.mint_at("ci", &ids(), true, HOUR, now()).expose().to_string();
        let other_payload = &other[payload_start..other.rfind('.').unwrap()];
        let forged = format!("{}{}{}", &token[..payload_start], other_payload, &token[sig_start - 1..]);
        assert_eq!(keys.verify(&forged, now()), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn expired() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_keys(&[keyfile(dir.path(), "k")]).unwrap();
        let token = keys.mint_at("ci", &ids(), false, Duration::from_secs(60), now());
        assert!(keys.verify(token.expose(), now() + Duration::from_secs(59)).is_ok());
        assert_eq!(
            keys.verify(token.expose(), now() + Duration::from_secs(60)),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn rotation_and_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (keyfile(dir.path(), "old"), keyfile(dir.path(), "new"));
        let before = load_keys(std::slice::from_ref(&old)).unwrap();
        let token = before.mint_at("ci", &ids(), false, HOUR, now());
        // Rotation: the new key signs, the old one still verifies.
        let during = load_keys(&[new.clone(), old]).unwrap();
        assert!(during.verify(token.expose(), now()).is_ok());
        let fresh = during.mint_at("ci", &ids(), false, HOUR, now());
        assert!(fresh.expose().contains(during.signing_key_id()));
        // The old key removed: its tokens are rejected.
        let after = load_keys(&[new]).unwrap();
        assert_eq!(after.verify(token.expose(), now()), Err(TokenRejection::UnknownKey));
        assert!(after.verify(fresh.expose(), now()).is_ok());
    }

    #[test]
    fn malformed_inputs_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_keys(&[keyfile(dir.path(), "k")]).unwrap();
        let id = keys.signing_key_id().to_string();
        for bad in
            ["", ".", "...", "ocit1", "ocit1..", "ocit1...", "x.y.z.w", "ocit1.zzzzzzzz.a.b", "ocit1.ü.ü.ü"]
        {
            assert!(keys.verify(bad, now()).is_err(), "{bad:?}");
        }
        assert_eq!(keys.verify(&format!("ocit1.{id}.e30.!!"), now()), Err(TokenRejection::Malformed));
        assert_eq!(keys.verify(&"a".repeat(MAX_TOKEN_LEN + 1), now()), Err(TokenRejection::Malformed));
        let token = keys.mint_at("ci", &ids(), false, HOUR, now()).expose().to_string();
        let mut rng = rand::thread_rng();
        for _ in 0..2000 {
            let len = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let s = String::from_utf8_lossy(&bytes);
            assert!(keys.verify(&s, now()).is_err());
            let _ = credential_from_authorization(&bytes);
            // Random mutations of a valid token.
            let mut t = token.clone().into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..t.len());
                t[i] = rng.gen_range(0x21..0x7f);
            }
            if t != token.as_bytes() {
                let _ = keys.verify(&String::from_utf8_lossy(&t), now());
            }
        }
    }

    #[test]
    fn signed_but_bad_claims_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_keys(&[keyfile(dir.path(), "k")]).unwrap();
        let key = &keys.keys[0];
        let sign = |json: &str| {
            let signed = format!("ocit1.{}.{}", key.id, URL_SAFE_NO_PAD.encode(json));
            let mut mac = key.mac();
            mac.update(signed.as_bytes());
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        };
        let base = r#""sub":"s","iat":1,"exp":99999999999,"jti":"j""#;
        for json in [
            format!(r#"{{{base},"connectors":["nons"],"actions":["pull"]}}"#),
            format!(r#"{{{base},"connectors":["a/b"],"actions":["delete"]}}"#),
            r#"{"sub":"s"}"#.to_string(),
            "not json".to_string(),
        ] {
            assert_eq!(keys.verify(&sign(&json), now()), Err(TokenRejection::Malformed), "{json}");
        }
        let ok = format!(r#"{{{base},"connectors":["a/b"],"actions":["pull","push"]}}"#);
        assert!(keys.verify(&sign(&ok), now()).unwrap().push);
    }

    #[test]
    fn authorization_header_parsing() {
        let basic = format!("Basic {}", STANDARD.encode("anyone:ocit1.tok"));
        assert_eq!(credential_from_authorization(basic.as_bytes()).unwrap().expose(), "ocit1.tok");
        let basic = format!("bAsIc   {}  ", STANDARD.encode(":pass:with:colons"));
        assert_eq!(credential_from_authorization(basic.as_bytes()).unwrap().expose(), "pass:with:colons");
        assert_eq!(credential_from_authorization(b"Bearer ocit1.abc").unwrap().expose(), "ocit1.abc");
        assert_eq!(credential_from_authorization(b"BEARER\tocit1.abc ").unwrap().expose(), "ocit1.abc");
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Basic !!!",
            b"Digest abc",
            b"Basic dXNlcg==", // "user", no colon
            b"Basic dXNlcjo=", // "user:", empty token
            b"\xff\xfe",
        ] {
            assert!(credential_from_authorization(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn padded_key_is_plain_hmac() {
        let key = Key { id: String::new(), bytes: [7u8; KEY_LEN], path: PathBuf::new() };
        let mut ours = key.mac();
        let mut plain = <HmacSha256 as Mac>::new_from_slice(&key.bytes).unwrap();
        ours.update(b"message");
        plain.update(b"message");
        assert_eq!(ours.finalize().into_bytes(), plain.finalize().into_bytes());
    }

    #[test]
    fn debug_never_shows_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = keyfile(dir.path(), "k");
        let text = std::fs::read_to_string(&p).unwrap();
        let keys = load_keys(&[p]).unwrap();
        let dbg = format!("{keys:?}");
        assert!(dbg.contains(keys.signing_key_id()));
        assert!(!dbg.contains(text.trim().rsplit(':').next().unwrap()));
    }
}

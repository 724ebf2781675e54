//! Step 1: credential -> SHA-256 digest -> key entry.
//!
//! Only digests are stored. A wrong key costs the same as a right one up to the map
//! lookup (hash the presented string, look the digest up), and the entry found is
//! confirmed with a constant-time comparison, so timing says nothing about stored keys.

use crate::directory::Directory;
use crate::error::GatewayError;
use crate::snapshot::{Digest, KeyEntry, Snapshot};
use pingora_http::RequestHeader;
use rand::Rng;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Prefix of every tollgate key.
pub const KEY_PREFIX: &str = "tg-";
/// Base62 characters after the prefix: 43 * log2(62) ≈ 256 bits.
pub const KEY_RANDOM_LEN: usize = 43;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The presented credential: `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub fn credential(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
        let v = v.as_bytes();
        let rest = v
            .strip_prefix(b"Bearer ")
            .or_else(|| v.strip_prefix(b"bearer "))?;
        let rest = rest.trim_ascii();
        return (!rest.is_empty()).then_some(rest);
    }
    let v = req.headers.get("x-api-key")?.as_bytes().trim_ascii();
    (!v.is_empty()).then_some(v)
}

pub fn digest(key: &[u8]) -> Digest {
    Sha256::digest(key).into()
}

/// Finds the key for a request — the file's keys, then the API's — or the SPEC's 401,
/// and notes its use.
pub fn authenticate(
    snapshot: &Snapshot,
    directory: &Directory,
    req: &RequestHeader,
    now_s: u64,
) -> Result<Arc<KeyEntry>, GatewayError> {
    let presented = credential(req).ok_or(GatewayError::MissingApiKey)?;
    let d = digest(presented);
    let key = match snapshot.key(&d) {
        Some(k) if bool::from(k.digest.ct_eq(&d)) => k.clone(),
        _ => directory.lookup(&d, snapshot, now_s)?,
    };
    key.last_used.touch(now_s);
    Ok(key)
}

/// A fresh key: `tg-` + 43 base62 characters from the OS CSPRNG.
pub fn generate_key() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_LEN);
    s.push_str(KEY_PREFIX);
    for _ in 0..KEY_RANDOM_LEN {
        s.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
    }
    s
}

/// What lists show instead of a key: `tg-a1b2c3…`.
pub fn display_prefix(key: &str) -> String {
    let end = key
        .char_indices()
        .nth(KEY_PREFIX.len() + 6)
        .map_or(key.len(), |(i, _)| i);
    format!("{}…", &key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, value: &str) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        r.insert_header(name.to_string(), value).unwrap();
        r
    }

    #[test]
    fn credentials_from_either_header() {
        assert_eq!(
            credential(&req("authorization", "Bearer tg-abc")),
            Some(&b"tg-abc"[..])
        );
        assert_eq!(
            credential(&req("x-api-key", "tg-abc")),
            Some(&b"tg-abc"[..])
        );
        assert_eq!(credential(&req("authorization", "Basic xyz")), None);
        assert_eq!(credential(&req("authorization", "Bearer ")), None);
    }

    #[test]
    fn keys_are_long_base62_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("tg-"));
        assert_eq!(a.len(), 3 + KEY_RANDOM_LEN);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(display_prefix(&a).chars().count(), 10);
    }
}

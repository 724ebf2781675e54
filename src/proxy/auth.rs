//! Step 1: credential -> SHA-256 digest -> key entry.
//!
//! Only digests are stored. A wrong key costs the same as a right one up to the map
//! lookup (hash the presented string, look the digest up), and the entry found is
//! confirmed with a constant-time comparison, so timing says nothing about stored keys.

use crate::error::GatewayError;
use crate::policy::snapshot::{Digest, KeyEntry, Snapshot};
use crate::proxy::directory::Directory;
use pingora_http::RequestHeader;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Prefix of every tollgate key.
pub(crate) const KEY_PREFIX: &str = "tg-";
/// Base62 characters after the prefix: 43 * log2(62) ≈ 256 bits.
pub(crate) const KEY_RANDOM_LEN: usize = 43;

/// Why no key could be taken from a request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// Neither a Bearer credential nor `x-api-key` (an `Authorization` header with another
    /// scheme, such as Basic, is not a tollgate credential and counts as none).
    Missing,
    /// Two credentials that name different keys: which one was meant is not guessed.
    Conflicting,
}

/// The presented key, from `Authorization: Bearer <key>` and/or `x-api-key: <key>`.
///
/// Per RFC 9110 §11.1 the auth scheme is case-insensitive (`Bearer`, `bearer`, `BEARER`);
/// the scheme and the token are separated by spaces (a tab is tolerated too). Precedence:
/// every Bearer credential and every `x-api-key` value is read; they must all name the
/// same key, else the request is refused as [`CredentialError::Conflicting`]. `Authorization`
/// with any other scheme (Basic, Digest, …) and a Bearer header without a token are
/// ignored, so `Authorization: Basic …` next to a valid `x-api-key` authenticates with the
/// `x-api-key`.
pub(crate) fn parse_credentials<'a>(
    authorization: impl IntoIterator<Item = &'a [u8]>,
    api_key: impl IntoIterator<Item = &'a [u8]>,
) -> Result<&'a [u8], CredentialError> {
    let bearer = authorization.into_iter().filter_map(bearer_token);
    let plain = api_key
        .into_iter()
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty());
    let mut found: Option<&[u8]> = None;
    for c in bearer.chain(plain) {
        match found {
            None => found = Some(c),
            Some(f) if f == c => {}
            Some(_) => return Err(CredentialError::Conflicting),
        }
    }
    found.ok_or(CredentialError::Missing)
}

/// The token of a Bearer `Authorization` value (`None` for another scheme or no token).
fn bearer_token(v: &[u8]) -> Option<&[u8]> {
    let v = v.trim_ascii_start();
    let split = v.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = v.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The presented credential of a request (see [`parse_credentials`]).
pub(crate) fn credential(req: &RequestHeader) -> Result<&[u8], CredentialError> {
    let h = &req.headers;
    parse_credentials(
        h.get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes()),
        h.get_all(crate::proxy::headers::API_KEY.name())
            .iter()
            .map(|v| v.as_bytes()),
    )
}

pub fn digest(key: &[u8]) -> Digest {
    Sha256::digest(key).into()
}

/// Finds the key for a request — the file's keys, then the API's — or a 401,
/// and notes its use.
pub fn authenticate(
    snapshot: &Snapshot,
    directory: &Directory,
    req: &RequestHeader,
    now_s: u64,
) -> Result<Arc<KeyEntry>, GatewayError> {
    let presented = credential(req).map_err(|e| match e {
        CredentialError::Missing => GatewayError::MissingApiKey,
        CredentialError::Conflicting => GatewayError::ConflictingCredentials,
    })?;
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
    crate::secret::base62(KEY_PREFIX, KEY_RANDOM_LEN)
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
            Ok(&b"tg-abc"[..])
        );
        assert_eq!(credential(&req("x-api-key", "tg-abc")), Ok(&b"tg-abc"[..]));
        assert_eq!(
            credential(&req("authorization", "Basic xyz")),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            credential(&req("authorization", "Bearer ")),
            Err(CredentialError::Missing)
        );
    }

    fn parse<'a>(auth: &[&'a str], keys: &[&'a str]) -> Result<&'a [u8], CredentialError> {
        parse_credentials(
            auth.iter().map(|s| s.as_bytes()),
            keys.iter().map(|s| s.as_bytes()),
        )
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_spaces_or_tabs_separate_it() {
        for v in [
            "Bearer k1",
            "bearer k1",
            "BEARER k1",
            "bEaReR k1",
            "Bearer\tk1",
            "Bearer   k1  ",
            " Bearer k1",
        ] {
            assert_eq!(parse(&[v], &[]), Ok(&b"k1"[..]), "{v:?}");
        }
        for v in [
            "Bearerk1",
            "Bearer",
            "Bearer \t ",
            "Bear k1",
            "Token k1",
            "",
        ] {
            assert_eq!(parse(&[v], &[]), Err(CredentialError::Missing), "{v:?}");
        }
    }

    #[test]
    fn precedence_between_authorization_and_x_api_key() {
        // Another scheme is not a tollgate credential: x-api-key decides.
        assert_eq!(parse(&["Basic dXNlcjpwdw=="], &["k1"]), Ok(&b"k1"[..]));
        // Both headers naming the same key are fine, different keys are refused.
        assert_eq!(parse(&["Bearer k1"], &["k1"]), Ok(&b"k1"[..]));
        assert_eq!(
            parse(&["Bearer k1"], &["k2"]),
            Err(CredentialError::Conflicting)
        );
        assert_eq!(parse(&[], &["k1", "k2"]), Err(CredentialError::Conflicting));
        assert_eq!(
            parse(&["Bearer k1", "Bearer k2"], &[]),
            Err(CredentialError::Conflicting)
        );
        // A Bearer header without a token does not hide the x-api-key.
        assert_eq!(parse(&["Bearer "], &["k1"]), Ok(&b"k1"[..]));
        assert_eq!(parse(&[], &["  "]), Err(CredentialError::Missing));
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

//! A wrapper for secrets (provider keys, admin tokens) whose `Debug`/`Display` print `***`,
//! so a stray `{:?}` in a log line cannot leak one.

use rand::Rng;
use std::fmt;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` then `n` random base62 characters from the OS's generator: the one generator
/// of API keys, admin tokens and ids (key, token and webhook delivery ids).
pub(crate) fn base62(prefix: &str, n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    for _ in 0..n {
        s.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
    }
    s
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself: call only where it is sent (an upstream header).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_printed() {
        let s = super::Secret::new("sk-live-123".into());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn base62_tails() {
        let a = super::base62("tga-", 43);
        assert!(a.starts_with("tga-") && a.len() == 47);
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, super::base62("tga-", 43));
    }
}

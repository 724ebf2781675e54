//! `secrets`: credentials by their vendor's format. One regex of alternatives, each
//! starting with a literal (`sk-`, `AKIA`, `ghp_`, `-----BEGIN`, `eyJ`, …) so the regex
//! crate's literal prefilter skips ordinary text; the kind is read from the match's
//! prefix afterwards.

use super::Hit;
use regex::Regex;
use std::sync::LazyLock;

/// Alternatives, most specific first (leftmost-first: `sk-ant-` before `sk-`).
const PATTERN: &str = concat!(
    // Private key blocks: to the END line, or, when it is missing (a cut text, a stream
    // window), over the base64 body that follows.
    r"-----BEGIN[A-Z0-9 ]{0,32}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[A-Z0-9 ]{0,32}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:\-,]*)",
    r"|(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)[rs]k_live_[A-Za-z0-9]{20,}",
    r"|(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
    r#"|(?i:aws_?secret_?access_?key|aws_?secret_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}(?-u:\b)"#,
    r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}",
    r"|(?-u:\b)github_pat_[A-Za-z0-9_]{40,}",
    r"|(?-u:\b)xox[bpars]-[A-Za-z0-9\-]{10,}",
    r"|(?-u:\b)AIza[0-9A-Za-z_\-]{35}",
    r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"|(?-u:\b)(?i:bearer)[ \t]+[A-Za-z0-9._~+/=\-]{20,}",
    r"|(?-u:\b)tga-[A-Za-z0-9\-]{20,}",
    r"|(?-u:\b)tg-[A-Za-z0-9]{32,}",
);

static RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(PATTERN).ok());

/// Compiles the regex now (config load) rather than on the first request.
pub(crate) fn warm() {
    LazyLock::force(&RE);
}

/// The kind of a match, from its first bytes; and where the secret itself starts in it
/// (a label or `Bearer ` stays readable).
fn classify(m: &str) -> (&'static str, usize) {
    let kind = if m.starts_with("-----BEGIN") {
        "private_key"
    } else if m.starts_with("sk-ant-") {
        "anthropic_key"
    } else if m.starts_with("sk-") {
        "openai_key"
    } else if m.starts_with("sk_live_") || m.starts_with("rk_live_") {
        "stripe_key"
    } else if m.starts_with("AKIA") || m.starts_with("ASIA") {
        "aws_access_key"
    } else if m.starts_with("gh") || m.starts_with("github_pat_") {
        "github_token"
    } else if m.starts_with("xox") {
        "slack_token"
    } else if m.starts_with("AIza") {
        "google_api_key"
    } else if m.starts_with("eyJ") {
        "jwt"
    } else if m.starts_with("tga-") {
        "tollgate_admin_token"
    } else if m.starts_with("tg-") {
        "tollgate_key"
    } else if m.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("bearer")) {
        let token = m
            .get(6..)
            .unwrap_or_default()
            .trim_start_matches([' ', '\t']);
        return ("bearer_token", m.len() - token.len());
    } else {
        // The labelled AWS secret: the value is its last 40 characters.
        return ("aws_secret_key", m.len().saturating_sub(40));
    };
    (kind, 0)
}

/// Random-looking: the generic-tail formats (`sk-…`, `Bearer …`, `tg-…`) need a digit
/// and a letter, so slugs like `sk-learn-tutorial-for-beginners` are not secrets.
fn random_looking(s: &str) -> bool {
    s.bytes().any(|c| c.is_ascii_digit()) && s.bytes().any(|c| c.is_ascii_alphabetic())
}

pub(crate) fn scan(text: &str, out: &mut Vec<Hit>) {
    let Some(re) = RE.as_ref() else {
        return;
    };
    for m in re.find_iter(text) {
        let (kind, skip) = classify(m.as_str());
        let secret = &m.as_str()[skip..];
        let generic = matches!(
            kind,
            "openai_key"
                | "anthropic_key"
                | "bearer_token"
                | "tollgate_key"
                | "tollgate_admin_token"
        );
        if generic && !random_looking(secret.split_once('-').map_or(secret, |(_, t)| t)) {
            continue;
        }
        out.push(Hit {
            start: m.start() + skip,
            end: m.end(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        scan(text, &mut out);
        out.iter()
            .map(|h| (h.kind, text[h.start..h.end].to_string()))
            .collect()
    }

    fn kinds(text: &str) -> Vec<&'static str> {
        found(text).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn vendor_keys() {
        for (text, kind) in [
            (
                "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z end",
                "openai_key",
            ),
            (
                "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n",
                "openai_key",
            ),
            (
                "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z-AA",
                "anthropic_key",
            ),
            ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
            ("ASIAY34FZKBOKMUTVV7A,", "aws_access_key"),
            ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "github_token"),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH",
                "github_token",
            ),
            (
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
                "slack_token",
            ),
            ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google_api_key"),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"),
            (
                "tg-DemoKeyForTheLocalMockProviderOnly0000000",
                "tollgate_key",
            ),
            ("tga-demo-AbCdEf1234567890XyZw", "tollgate_admin_token"),
        ] {
            assert_eq!(kinds(text), [kind], "{text}");
        }
    }

    #[test]
    fn labelled_and_prefixed_keep_their_label() {
        assert_eq!(
            found("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            [(
                "aws_secret_key",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string()
            )]
        );
        assert_eq!(
            found("Authorization: Bearer abcDEF1234567890ghijKLMN"),
            [("bearer_token", "abcDEF1234567890ghijKLMN".to_string())]
        );
    }

    #[test]
    fn jwts_and_private_keys() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(kinds(&format!("token {jwt} ok")), ["jwt"]);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            found(&format!("x {pem} y")),
            [("private_key", pem.to_string())]
        );
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B";
        assert_eq!(found(cut), [("private_key", cut.to_string())]);
    }

    #[test]
    fn near_misses() {
        for miss in [
            "task-force-management-2024-overview",
            "sk-learn-tutorial-for-beginners-guide",
            "AKIA1234",
            "ghp_short",
            "the bearer of bad news arrived yesterday",
            "eyJ is how base64 JSON starts",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYH",
            "tg-short",
            "Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(kinds(miss).is_empty(), "{miss}");
        }
    }
}

//! Client certificates (docs/policy.md "Client certificates"): `require_client_cert` on
//! orgs, groups and keys, `client_cert_sha256` on keys, and the rules both the policy file
//! and the admin API check them by.

/// A key's own client-certificate rule. Most keys have none (`Option<Box<CertRule>>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRule {
    /// `require_client_cert = true` on the key itself.
    pub required: bool,
    /// `client_cert_sha256`: SHA-256 of the leaf certificate's DER, one of which must match.
    pub sha256: Box<[[u8; 32]]>,
}

impl CertRule {
    /// The rule for a key's two fields; `None` when neither asks for anything.
    pub fn new(required: Option<bool>, sha256: Vec<[u8; 32]>) -> Option<Box<CertRule>> {
        let required = required.unwrap_or(false);
        (required || !sha256.is_empty()).then(|| {
            Box::new(CertRule {
                required,
                sha256: sha256.into_boxed_slice(),
            })
        })
    }

    /// The fingerprints as written back (lowercase hex).
    pub fn sha256_hex(&self) -> Vec<String> {
        self.sha256.iter().map(hex::encode).collect()
    }
}

/// `"ab12…"` or `"AB:12:…"` (the form `openssl x509 -fingerprint -sha256` prints) → bytes.
pub(crate) fn fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex_digits: String = s.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    if hex_digits.len() != 64 || hex::decode_to_slice(&hex_digits, &mut out).is_err() {
        return Err(format!(
            "{s:?}: want the SHA-256 of the certificate's DER as 64 hex digits \
             (`openssl x509 -in client.pem -outform der | sha256sum`)"
        ));
    }
    Ok(out)
}

/// Every fingerprint of a list, or the first bad one's message.
pub(crate) fn fingerprints(list: &[String]) -> Result<Vec<[u8; 32]>, String> {
    if list.len() > 64 {
        return Err(format!("{} fingerprints: at most 64", list.len()));
    }
    list.iter().map(|s| fingerprint(s)).collect()
}

/// "Lower layers only tighten": a layer may not turn off what the layer above requires.
/// `parent` names the layer above and says whether it requires a certificate.
pub(crate) fn looser(own: Option<bool>, parent: (&str, bool)) -> Option<String> {
    match (own, parent) {
        (Some(false), (name, true)) => Some(format!(
            "require_client_cert false is looser than {name} require_client_cert true \
             (lower layers only tighten)"
        )),
        _ => None,
    }
}

/// A rule that needs a client certificate while the listener verifies none would refuse
/// every request: say so where it is written.
pub(crate) const NEEDS_CLIENT_CA: &str =
    "needs server.tls.client_ca (the CA that verifies client certificates); without it no request can present one";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_take_plain_and_colon_hex() {
        let plain = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let colons: String = plain
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(fingerprint(plain), fingerprint(&colons));
        assert!(fingerprint("abc").unwrap_err().contains("64 hex digits"));
        assert!(fingerprints(&vec![plain.to_string(); 65]).is_err());
    }

    #[test]
    fn only_turning_off_a_requirement_is_looser() {
        assert!(looser(Some(false), ("org o", true)).is_some());
        assert!(looser(None, ("org o", true)).is_none());
        assert!(looser(Some(true), ("org o", false)).is_none());
        assert!(looser(Some(false), ("org o", false)).is_none());
        assert!(CertRule::new(None, vec![]).is_none());
        assert!(CertRule::new(Some(false), vec![[0; 32]]).is_some());
    }
}

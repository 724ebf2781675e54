//! Client certificates on the request path (docs/policy.md "Client certificates").
//!
//! The TLS listener asks for a client certificate when `tls.client_ca` is set and verifies
//! it against that CA, but lets a connection without one through: only keys whose rules
//! ask for a certificate refuse it here. Pingora's TLS digest carries the SHA-256 of the
//! leaf certificate's DER (`SslDigest::cert_digest`, empty when none was presented), which
//! is exactly what `client_cert_sha256` lists.

use crate::error::GatewayError;
use crate::policy::snapshot::KeyEntry;
use pingora_proxy::Session;

/// Whether the key (or its group or org) has a certificate rule: one branch per request
/// for everyone else.
pub(crate) fn applies(key: &KeyEntry) -> bool {
    key.group.require_client_cert || key.client_cert().is_some()
}

/// The verified client certificate's SHA-256 on this connection, if any.
fn presented(session: &Session) -> Option<[u8; 32]> {
    let ssl = session.digest()?.ssl_digest.as_ref()?;
    <[u8; 32]>::try_from(ssl.cert_digest.as_slice()).ok()
}

/// Refuses a request whose connection does not satisfy the key's certificate rules.
pub(crate) fn check(key: &KeyEntry, session: &Session) -> Result<(), GatewayError> {
    check_digest(key, presented(session))
}

fn check_digest(key: &KeyEntry, cert: Option<[u8; 32]>) -> Result<(), GatewayError> {
    let rule = key.client_cert();
    let Some(cert) = cert else {
        let scope = if key.group.org.require_client_cert {
            format!("org {}", key.group.org.id)
        } else if key.group.require_client_cert {
            format!("group {}", key.group.id)
        } else {
            format!("key {}", key.id)
        };
        return Err(GatewayError::ClientCertRequired { scope });
    };
    match rule {
        Some(r) if !r.sha256.is_empty() && !r.sha256.contains(&cert) => {
            Err(GatewayError::ClientCertMismatch {
                key: key.id.to_string(),
                sha256: hex::encode(cert),
            })
        }
        _ => Ok(()),
    }
}

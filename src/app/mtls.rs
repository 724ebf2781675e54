//! The data-plane TLS listener with client certificates (`tls.client_ca`): asked for,
//! verified against the CA, and optional, so keys without a certificate rule keep working
//! over the same listener (the rules are enforced per key in `proxy::mtls`).

use crate::policy::config::TlsFiles;
use anyhow::Context;
use pingora_core::listeners::tls::TlsSettings;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::sync::Arc;

pub(super) fn tls_settings(tls: &TlsFiles) -> anyhow::Result<TlsSettings> {
    let mut settings = TlsSettings::intermediate(
        &tls.cert.display().to_string(),
        &tls.key.display().to_string(),
    )?;
    if let Some(ca) = &tls.client_ca {
        settings.set_client_cert_verifier(client_verifier(ca)?);
    }
    Ok(settings)
}

fn client_verifier(
    ca: &std::path::Path,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let pem = std::fs::read(ca).with_context(|| format!("tls.client_ca {}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.with_context(|| format!("tls.client_ca {}: bad PEM", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("tls.client_ca {}: not a CA certificate", ca.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "tls.client_ca {}: no certificate in the file",
        ca.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .with_context(|| format!("tls.client_ca {}", ca.display()))
}

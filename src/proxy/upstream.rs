//! Step 5: provider specifics — the peer (address, TLS, SNI, timeouts) and the upstream
//! request header (credential swap, Host, framing).

use crate::policy::config::Api;
use crate::policy::snapshot::{ProviderEntry, TargetEntry};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::time::Duration;

/// Client headers never sent upstream: credentials, hop-by-hop headers, and framing that
/// the gateway sets itself for the rewritten body.
const STRIP: &[&str] = &[
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "transfer-encoding",
    "accept-encoding",
    "x-forwarded-for",
    "forwarded",
];

pub(crate) const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The peer for one attempt. `read_timeout` bounds the wait for each upstream read, so it
/// is both the time-to-first-byte limit and the idle limit of a stream.
pub(crate) fn peer(target: &TargetEntry, timeout: Duration) -> Result<Box<HttpPeer>> {
    let p = &target.provider;
    let addr = *p.addrs.load().first().ok_or_else(|| {
        Error::explain(
            ErrorType::ConnectNoRoute,
            format!("provider {}: host {} did not resolve", p.id, p.base.host),
        )
    })?;
    let sni = if p.base.tls {
        p.base.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, p.base.tls, sni);
    peer.options.connection_timeout = Some(p.connect_timeout);
    peer.options.total_connection_timeout = Some(p.connect_timeout + Duration::from_secs(1));
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if p.base.tls {
        // An empty SNI would disable verification; ours is always the host name.
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        if let Some(ca) = &p.ca {
            peer.options.ca = Some(ca.0.clone());
        }
    }
    Ok(Box::new(peer))
}

/// Rewrites the client's request header for the provider. `api_path` replaces the client's
/// path when the request was translated to the provider's API.
pub(crate) fn rewrite_request(
    req: &mut RequestHeader,
    provider: &ProviderEntry,
    body_len: usize,
    request_id: &str,
    api_path: Option<&str>,
) -> Result<()> {
    // Translated: the client's API-specific headers mean nothing to the other API.
    let foreign: &[&str] = match (api_path.is_some(), provider.api) {
        (false, _) => &[],
        (true, Api::OpenAi) => &["anthropic-version", "anthropic-beta"],
        (true, Api::Anthropic) => &["openai-organization", "openai-project", "openai-beta"],
    };
    // One pass over the client's few headers per removal, not a name parse and a map lookup
    // for each of the ~20 names that are usually absent. A header set below replaces every
    // value the client sent (`insert` semantics), so those need no removal first:
    // `content-length` always, `authorization` when the provider's key goes there.
    let replaced_auth = provider.api == Api::OpenAi && provider.credential.is_some();
    while let Some(h) = req
        .headers
        .keys()
        .find(|k| {
            let n = k.as_str();
            (STRIP.contains(&n) && !(replaced_auth && *k == http::header::AUTHORIZATION))
                || n.starts_with("x-tollgate-")
                || foreign.contains(&n)
        })
        .cloned()
    {
        req.remove_header(&h);
    }
    req.insert_static_header(
        &crate::proxy::headers::HOST,
        crate::proxy::headers::prebuilt(&provider.host_value, &provider.host_header)?,
    );
    req.insert_static_header(&crate::proxy::headers::CONTENT_LENGTH, body_len.into());
    req.insert_static_header(
        &crate::proxy::headers::REQUEST_ID,
        crate::proxy::headers::value(request_id)?,
    );
    if let Some(c) = &provider.credential {
        // `auth_value` is `None` only when the key cannot be a header value: that error.
        let v = crate::proxy::headers::prebuilt(&provider.auth_value, c.expose())?;
        match provider.api {
            Api::OpenAi => req.insert_static_header(&crate::proxy::headers::AUTHORIZATION, v),
            Api::Anthropic => req.insert_static_header(&crate::proxy::headers::API_KEY, v),
        }
    }
    if provider.api == Api::Anthropic && req.headers.get("anthropic-version").is_none() {
        req.insert_header("anthropic-version", DEFAULT_ANTHROPIC_VERSION)?;
    }
    for (k, v) in &provider.headers {
        req.insert_header(k.clone(), v.clone())?;
    }
    let prefix = provider.base.path_prefix.as_str();
    if !prefix.is_empty() || api_path.is_some() {
        let path = api_path.unwrap_or_else(|| req.uri.path_and_query().map_or("/", |p| p.as_str()));
        // A base_url that already ends in /v1 is not doubled.
        let path = if prefix.ends_with("/v1") {
            path.strip_prefix("/v1").unwrap_or(path)
        } else {
            path
        };
        let uri: http::Uri = format!("{prefix}{path}")
            .parse()
            .map_err(|_| Error::explain(ErrorType::InternalError, "invalid upstream path"))?;
        req.set_uri(uri);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::snapshot::{Environment, Snapshot};
    use std::net::SocketAddr;

    struct Env;

    impl Environment for Env {
        fn var(&self, name: &str) -> Option<String> {
            (name == "PROVIDER_KEY").then(|| "sk-provider".to_string())
        }

        fn resolve(&self, _: &str, port: u16) -> Vec<SocketAddr> {
            vec![SocketAddr::from(([127, 0, 0, 1], port))]
        }
    }

    fn snapshot() -> Snapshot {
        let policy = r#"
[server]
listen = ["127.0.0.1:1"]

[[providers]]
id = "keyed"
api = "openai"
base_url = "http://127.0.0.1:2"
api_key_env = "PROVIDER_KEY"

[[providers]]
id = "open"
api = "openai"
base_url = "http://127.0.0.1:3"

[[providers]]
id = "anth"
api = "anthropic"
base_url = "http://127.0.0.1:4"
api_key_env = "PROVIDER_KEY"

[[models]]
name = "m"
targets = [{ provider = "keyed" }, { provider = "open" }, { provider = "anth" }]
"#;
        let cfg =
            crate::policy::config::parse_config(policy, std::path::Path::new("t")).expect("policy");
        Snapshot::build(cfg, &Default::default(), None, 1, &Env, &Default::default())
            .expect("snapshot")
    }

    #[test]
    fn the_client_key_never_reaches_any_provider() {
        let snap = snapshot();
        for p in &snap.providers {
            let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
            req.append_header("Authorization", "Bearer tg-client-key")
                .expect("h");
            req.append_header("authorization", "Bearer tg-second")
                .expect("h");
            req.append_header("x-api-key", "tg-client-key").expect("h");
            req.append_header("content-length", "999").expect("h");
            req.append_header("x-tollgate-tags", "a").expect("h");
            rewrite_request(&mut req, p, 12, "req_1", None).expect("rewrite");
            let mut wire = Vec::new();
            req.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).expect("utf8");
            assert!(!wire.contains("tg-"), "{}: {wire}", p.id);
            assert!(
                !wire.to_ascii_lowercase().contains("x-tollgate-"),
                "{}: {wire}",
                p.id
            );
            let auth: Vec<_> = req.headers.get_all("authorization").iter().collect();
            let key: Vec<_> = req.headers.get_all("x-api-key").iter().collect();
            let length: Vec<_> = req.headers.get_all("content-length").iter().collect();
            assert_eq!(length, ["12"], "{}", p.id);
            match &*p.id {
                "keyed" => {
                    assert_eq!(auth, ["Bearer sk-provider"]);
                    assert!(key.is_empty());
                }
                "open" => assert!(auth.is_empty() && key.is_empty(), "{wire}"),
                _ => {
                    assert!(auth.is_empty(), "{wire}");
                    assert_eq!(key, ["sk-provider"]);
                }
            }
        }
    }
}

//! Validation of `[server]`, `[[providers]]` and `[[models]]`.

use super::super::raw::*;
use super::super::*;
use super::{check_unique, cidrs, duration, usd_to_micros, Checker, Loc};
use std::collections::HashSet;

pub(super) fn check_server(c: &mut Checker, s: RawServer, loc: Loc, path: &str) -> ServerConfig {
    let RawServer {
        listen,
        admin_listen,
        threads,
        data_dir,
        admin_token_env,
        trusted_proxies,
        max_body,
        header_timeout,
        body_timeout,
        idle_timeout,
        max_connections,
        max_header_bytes,
        body_memory,
        grace_period,
        reload_settle,
        request_log,
        request_log_max_size,
        tls,
        pid_file,
        upgrade_sock,
        default_max_tokens,
        audit_retention,
        work_stealing,
        upstream_keepalive_pool_size,
    } = s;
    let addr = |c: &mut Checker, field: &str, a: &str| match a.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(
                loc,
                format!("{path}.{field}"),
                format!("invalid address {a:?}: want IP:PORT"),
            );
            None
        }
    };
    let listen_addrs: Vec<SocketAddr> =
        listen.iter().filter_map(|a| addr(c, "listen", a)).collect();
    if listen.is_empty() {
        c.problem(
            loc,
            format!("{path}.listen"),
            "at least one address is required",
        );
    }
    let admin_listen = admin_listen.and_then(|a| addr(c, "admin_listen", &a));
    let threads = in_range(c, loc, &format!("{path}.threads"), threads, 1..=256, 2) as usize;
    let max_body = check_max_body(c, loc, path, max_body.as_deref());
    let clients = super::clients::check(
        c,
        loc,
        path,
        max_body,
        super::clients::Raw {
            header_timeout,
            body_timeout,
            idle_timeout,
            max_connections,
            max_header_bytes,
            body_memory,
        },
    );
    let grace_period = duration(
        c,
        loc,
        &format!("{path}.grace_period"),
        grace_period.as_deref(),
        Duration::from_secs(30),
    );
    let reload_settle = duration(
        c,
        loc,
        &format!("{path}.reload_settle"),
        reload_settle.as_deref(),
        Duration::from_secs(1),
    );
    if reload_settle > Duration::from_secs(60) {
        c.problem(
            loc,
            format!("{path}.reload_settle"),
            format!(
                "{}: want at most 60s",
                humantime::format_duration(reload_settle)
            ),
        );
    }
    let request_log = check_request_log(c, loc, path, request_log.as_deref());
    let default_max_tokens = in_range(
        c,
        loc,
        &format!("{path}.default_max_tokens"),
        default_max_tokens,
        1..=10_000_000,
        4096,
    ) as u32;
    let upstream_keepalive_pool_size = in_range(
        c,
        loc,
        &format!("{path}.upstream_keepalive_pool_size"),
        upstream_keepalive_pool_size,
        0..=100_000,
        128,
    ) as usize;
    ServerConfig {
        listen: listen_addrs,
        admin_listen,
        threads,
        data_dir: PathBuf::from(data_dir.unwrap_or_else(|| "/var/lib/tollgate".into())),
        admin_token_env: admin_token_env.unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into()),
        trusted_proxies: cidrs(c, loc, &format!("{path}.trusted_proxies"), &trusted_proxies),
        max_body,
        clients,
        grace_period,
        reload_settle,
        request_log,
        request_log_max_size: request_log_max_size.and_then(|v| {
            super::log_sinks::size(c, loc, &format!("{path}.request_log_max_size"), &v)
        }),
        log_sinks: Arc::from(vec![]),
        tls: tls.map(
            |RawTls {
                 cert,
                 key,
                 client_ca,
             }| TlsFiles {
                cert: cert.into(),
                key: key.into(),
                client_ca: client_ca.map(Into::into),
            },
        ),
        pid_file: PathBuf::from(pid_file.unwrap_or_else(|| "/run/tollgate/tollgate.pid".into())),
        upgrade_sock: PathBuf::from(
            upgrade_sock.unwrap_or_else(|| "/run/tollgate/upgrade.sock".into()),
        ),
        default_max_tokens,
        audit_retention: super::duration(
            c,
            loc,
            &format!("{path}.audit_retention"),
            audit_retention.as_deref(),
            Duration::from_secs(400 * 86_400),
        ),
        work_stealing: work_stealing.unwrap_or(false),
        upstream_keepalive_pool_size,
        // The top-level `[smtp]` section, filled in by the caller.
        smtp: None,
        tracing: None,
    }
}

/// A whole number in `range`, or `default` (with a problem when it is outside).
fn in_range(
    c: &mut Checker,
    loc: Loc,
    field: &str,
    v: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> u64 {
    match v {
        None => default,
        Some(n) if range.contains(&n) => n,
        Some(n) => {
            c.problem(
                loc,
                field.to_string(),
                format!("{n}: want {}..={}", range.start(), range.end()),
            );
            default
        }
    }
}

fn check_max_body(c: &mut Checker, loc: Loc, path: &str, max_body: Option<&str>) -> u64 {
    match max_body {
        None => 8 * 1024 * 1024,
        Some(s) => match s.parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() > 0 && b.as_u64() <= MAX_BODY_CEILING => b.as_u64(),
            Ok(b) => {
                c.problem(
                    loc,
                    format!("{path}.max_body"),
                    format!("{b}: want more than 0 and at most 64MiB"),
                );
                8 * 1024 * 1024
            }
            Err(e) => {
                c.problem(
                    loc,
                    format!("{path}.max_body"),
                    format!("invalid size {s:?}: {e}"),
                );
                8 * 1024 * 1024
            }
        },
    }
}

fn check_request_log(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    request_log: Option<&str>,
) -> RequestLog {
    match request_log {
        None | Some("stdout") => RequestLog::Stdout,
        Some("off") => RequestLog::Off,
        Some("") => {
            c.problem(
                loc,
                format!("{path}.request_log"),
                "want \"stdout\", \"off\" or a path",
            );
            RequestLog::Off
        }
        Some(p) => RequestLog::File(PathBuf::from(p)),
    }
}

fn parse_base_url(s: &str) -> Result<BaseUrl, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{s:?}: scheme must be http or https")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{s:?}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.query().is_some() {
        return Err(format!("{s:?}: a query string is not allowed"));
    }
    Ok(BaseUrl {
        tls,
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        host,
        path_prefix: uri.path().trim_end_matches('/').to_string(),
    })
}

/// A provider's `usage_api`: an environment variable name (its value is read when a
/// reconciliation runs, never here) and the URL, the provider's own by default.
fn check_usage_api(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    u: RawUsageApi,
    provider_base: &str,
) -> Option<UsageApi> {
    let RawUsageApi {
        admin_key_env,
        base_url,
    } = u;
    let env_ok = !admin_key_env.is_empty()
        && !admin_key_env.contains('=')
        && !admin_key_env.contains('\0')
        && !admin_key_env.starts_with(|ch: char| ch.is_ascii_digit());
    if !env_ok {
        c.problem(
            loc,
            format!("{path}.usage_api.admin_key_env"),
            format!("{admin_key_env:?}: want the name of an environment variable"),
        );
    }
    let base_url = base_url.unwrap_or_else(|| provider_base.to_string());
    if let Err(e) = parse_base_url(&base_url) {
        c.problem(loc, format!("{path}.usage_api.base_url"), e);
        return None;
    }
    // The usage paths start with /v1, as the data-plane routes do: a base ending in /v1 is
    // not doubled.
    let trimmed = base_url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    env_ok.then(|| UsageApi {
        admin_key_env,
        base_url: trimmed.to_string(),
    })
}

pub(super) fn check_providers(
    c: &mut Checker,
    raw: Vec<(RawProvider, Loc, String)>,
) -> Vec<Provider> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (p, loc, path) in raw {
        let RawProvider {
            id,
            api,
            base_url,
            api_key_env,
            connect_timeout,
            headers,
            ca_file,
            usage_api,
            drift_alert,
        } = p;
        check_unique(c, loc, &path, "provider", &id, &mut seen);
        let path = format!("{path} ({id})");
        let api = match api.as_str() {
            "openai" => Api::OpenAi,
            "anthropic" => Api::Anthropic,
            other => {
                c.problem(
                    loc,
                    format!("{path}.api"),
                    format!("{other:?}: want \"openai\" or \"anthropic\""),
                );
                Api::OpenAi
            }
        };
        let base = match parse_base_url(&base_url) {
            Ok(b) => b,
            Err(e) => {
                c.problem(loc, format!("{path}.base_url"), e);
                continue;
            }
        };
        let connect_timeout = duration(
            c,
            loc,
            &format!("{path}.connect_timeout"),
            connect_timeout.as_deref(),
            Duration::from_secs(3),
        );
        let mut hs = vec![];
        for (k, v) in headers {
            match (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                (Ok(k), Ok(v)) => hs.push((k, v)),
                _ => c.problem(
                    loc,
                    format!("{path}.headers"),
                    format!("invalid header {k:?}"),
                ),
            }
        }
        let usage_api = usage_api.and_then(|u| check_usage_api(c, loc, &path, u, &base_url));
        let drift_alert_pct = match drift_alert {
            None => DEFAULT_DRIFT_ALERT_PCT,
            Some(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => p,
            Some(p) => {
                c.problem(
                    loc,
                    format!("{path}.drift_alert"),
                    format!("{p}: want a per cent between 0 and 1000"),
                );
                DEFAULT_DRIFT_ALERT_PCT
            }
        };
        out.push(Provider {
            id: id.into(),
            api,
            base,
            api_key_env,
            connect_timeout,
            headers: hs,
            ca_file: ca_file.map(PathBuf::from),
            usage_api,
            drift_alert_pct,
        });
    }
    out
}

/// The model's cache prices as written (`None`: the input price).
type CachePrices = (Option<f64>, Option<f64>);

fn price(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    input: f64,
    output: f64,
    (cache_read, cache_write): CachePrices,
) -> Price {
    let input_micros = usd_to_micros(c, loc, &format!("{path}.input_usd_per_mtok"), input);
    let output_micros = usd_to_micros(c, loc, &format!("{path}.output_usd_per_mtok"), output);
    let mut cache = |field: &str, v: Option<f64>| match v {
        Some(v) => usd_to_micros(c, loc, &format!("{path}.{field}"), v),
        None => input_micros,
    };
    Price {
        input_micros_per_mtok: input_micros,
        output_micros_per_mtok: output_micros,
        cache_read_micros_per_mtok: cache("cache_read_usd_per_mtok", cache_read),
        cache_write_micros_per_mtok: cache("cache_write_usd_per_mtok", cache_write),
    }
}

pub(super) fn check_models(
    c: &mut Checker,
    raw: Vec<(RawModel, Loc, String)>,
    providers: &[Provider],
) -> Vec<Model> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (m, loc, path) in raw {
        let RawModel {
            name,
            input_usd_per_mtok: model_in,
            output_usd_per_mtok: model_out,
            targets,
            cache_read_usd_per_mtok,
            cache_write_usd_per_mtok,
        } = m;
        let cache_prices = (cache_read_usd_per_mtok, cache_write_usd_per_mtok);
        if name.is_empty() || !seen.insert(name.clone()) {
            c.problem(
                loc,
                format!("{path}.name"),
                format!("model name {name:?} is empty or a duplicate"),
            );
        }
        let path = format!("{path} ({name})");
        let price = price(c, loc, &path, model_in, model_out, cache_prices);
        if targets.is_empty() {
            c.problem(
                loc,
                format!("{path}.targets"),
                "a model needs at least one target",
            );
        }
        let mut ts = vec![];
        for (i, t) in targets.into_iter().enumerate() {
            let RawTarget {
                provider,
                model,
                weight,
                tags,
                input_usd_per_mtok,
                output_usd_per_mtok,
            } = t;
            let tpath = format!("{path}.targets[{i}]");
            let Some(pi) = providers.iter().position(|p| *p.id == *provider) else {
                c.problem(
                    loc,
                    format!("{tpath}.provider"),
                    format!("unknown provider {provider:?}"),
                );
                continue;
            };
            let weight = match weight {
                None => 100,
                Some(w @ 0..=1_000_000) => w as u32,
                Some(w) => {
                    c.problem(
                        loc,
                        format!("{tpath}.weight"),
                        format!("{w}: want 0..=1000000"),
                    );
                    100
                }
            };
            let price = match (input_usd_per_mtok, output_usd_per_mtok) {
                (None, None) => None,
                (i, o) => Some(self::price(
                    c,
                    loc,
                    &tpath,
                    i.unwrap_or(model_in),
                    o.unwrap_or(model_out),
                    cache_prices,
                )),
            };
            ts.push(Target {
                provider: pi,
                model: model.unwrap_or_else(|| name.clone()).into(),
                weight,
                tags,
                price,
            });
        }
        if !ts.is_empty() && ts.iter().all(|t| t.weight == 0) {
            c.problem(loc, format!("{path}.targets"), "every target has weight 0");
        }
        out.push(Model {
            name: name.into(),
            price,
            targets: ts,
        });
    }
    out
}

#[cfg(test)]
mod usage_api_tests {
    use super::super::parse_config;
    use std::path::Path;

    fn text(provider_extra: &str, org_extra: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[providers]]\nid = \"p\"\napi = \"anthropic\"\nbase_url = \"http://127.0.0.1:2/\"\n{provider_extra}\n\n[[models]]\nname = \"m\"\ntargets = [{{ provider = \"p\" }}]\n\n[[orgs]]\nid = \"o\"\n{org_extra}\n"
        )
    }

    #[test]
    fn usage_api_defaults_to_the_providers_url_and_two_per_cent() {
        let cfg = parse_config(
            &text("usage_api = { admin_key_env = \"P_ADMIN\" }", ""),
            Path::new("t.toml"),
        )
        .expect("valid");
        let p = &cfg.providers[0];
        let u = p.usage_api.as_ref().expect("usage_api");
        assert_eq!(u.admin_key_env, "P_ADMIN");
        assert_eq!(u.base_url, "http://127.0.0.1:2");
        assert_eq!(p.drift_alert_pct, 2.0);
        let cfg = parse_config(
            &text(
                "usage_api = { admin_key_env = \"P_ADMIN\", base_url = \"https://admin.example/v1/\" }\ndrift_alert = 0.5",
                "",
            ),
            Path::new("t.toml"),
        )
        .expect("valid");
        let p = &cfg.providers[0];
        let u = p.usage_api.as_ref().expect("usage_api");
        assert_eq!(u.base_url, "https://admin.example");
        assert_eq!(p.drift_alert_pct, 0.5);
        let cfg = parse_config(&text("", ""), Path::new("t.toml")).expect("valid");
        assert!(cfg.providers[0].usage_api.is_none());
    }

    #[test]
    fn bad_usage_api_fields_are_reported_with_their_line() {
        let bad = text(
            "usage_api = { admin_key_env = \"\", base_url = \"ftp://x\" }\ndrift_alert = -1",
            "webhook = \"https://h.example\"",
        );
        let err = parse_config(&bad, Path::new("t.toml"))
            .expect_err("invalid")
            .to_string();
        for want in [
            "t.toml:4:1: providers[0] (p).usage_api.admin_key_env",
            "providers[0] (p).usage_api.base_url: \"ftp://x\": scheme must be http or https",
            "providers[0] (p).drift_alert: -1: want a per cent between 0 and 1000",
            "orgs[0] (o).webhook_secret_env: a webhook needs webhook_secret_env",
        ] {
            assert!(err.contains(want), "{want:?} not in:\n{err}");
        }
        let err = parse_config(
            &text("usage_api = { admin_key_env = \"X\", nope = 1 }", ""),
            Path::new("t.toml"),
        )
        .expect_err("unknown field")
        .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}

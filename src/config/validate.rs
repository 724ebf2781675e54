//! raw -> validated. Every cross-reference and inheritance bound is checked here, and every
//! problem is collected, so one `tollgate -t` run shows all of them.

use super::raw::*;
use super::*;
use globset::{Glob, GlobSetBuilder};
use serde::Deserialize;
use std::collections::HashSet;
use toml::Spanned;

/// The document with each section element kept as an untyped value plus its span, so a
/// bad element is reported with its line and the others are still checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    server: Option<Spanned<toml::Value>>,
    #[serde(default)]
    providers: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    models: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    orgs: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    groups: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    keys: Vec<Spanned<toml::Value>>,
}

type Loc = Option<(usize, usize)>;

struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&self, offset: usize) -> Loc {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Some((line, col))
    }

    fn problem(&mut self, line: Loc, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserializes every element of an array section (`[[name]]`), keeping the good ones.
    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        items: Vec<Spanned<toml::Value>>,
        name: &str,
    ) -> Vec<(T, Loc, String)> {
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.element::<T>(v, format!("{name}[{i}]")))
            .collect()
    }

    /// Deserializes one section element; on error records it and returns `None`.
    fn element<T: for<'de> Deserialize<'de>>(
        &mut self,
        v: Spanned<toml::Value>,
        path: String,
    ) -> Option<(T, Loc, String)> {
        let loc = self.at(v.span().start);
        match T::deserialize(v.into_inner()) {
            Ok(t) => Some((t, loc, path)),
            Err(e) => {
                let msg = e.message().trim().to_string();
                self.problem(loc, path, msg);
                None
            }
        }
    }
}

/// Parses and validates policy-file text. `path` is used for messages only.
pub fn parse_config(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let doc: Document = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let mut c = Checker {
                text,
                problems: vec![],
            };
            let loc = e.span().and_then(|s| c.at(s.start));
            c.problem(loc, "", e.message().trim().to_string());
            return Err(ConfigError {
                file,
                problems: c.problems,
            });
        }
    };
    let mut c = Checker {
        text,
        problems: vec![],
    };
    let Document {
        server,
        providers,
        models,
        orgs,
        groups,
        keys,
    } = doc;

    let server = match server {
        Some(s) => c.element::<RawServer>(s, "server".into()),
        None => {
            c.problem(None, "server", "missing [server] section");
            None
        }
    };
    let server = server.map(|(s, loc, p)| check_server(&mut c, s, loc, &p));

    let providers = c.section::<RawProvider>(providers, "providers");
    let providers = check_providers(&mut c, providers);

    let models = c.section::<RawModel>(models, "models");
    let models = check_models(&mut c, models, &providers);

    let orgs = c.section::<RawOrg>(orgs, "orgs");
    let orgs = check_orgs(&mut c, orgs);

    let groups = c.section::<RawGroup>(groups, "groups");
    let groups = check_groups(&mut c, groups, &orgs, &models);

    let keys = c.section::<RawKey>(keys, "keys");
    let keys = check_keys(&mut c, keys, &groups, &orgs);

    match server {
        Some(server) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            server,
            providers,
            models,
            orgs,
            groups,
            keys,
        }),
        _ => Err(ConfigError {
            file,
            problems: c.problems,
        }),
    }
}

fn duration(c: &mut Checker, loc: Loc, path: &str, v: Option<&str>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                c.problem(loc, path, format!("invalid duration {s:?}: {e}"));
                default
            }
        },
    }
}

fn cidrs(c: &mut Checker, loc: Loc, path: &str, list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            let parsed = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => Some(n),
                Err(_) => {
                    c.problem(loc, path, format!("invalid CIDR {s:?}"));
                    None
                }
            }
        })
        .collect()
}

fn globs(c: &mut Checker, loc: Loc, path: &str, list: &[String]) -> Option<GlobSet> {
    if list.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    for g in list {
        match Glob::new(g) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => c.problem(loc, path, format!("invalid glob {g:?}: {}", e.kind())),
        }
    }
    b.build().ok()
}

fn model_filter(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    allow: Option<Vec<String>>,
    deny: Vec<String>,
) -> ModelFilter {
    let allow_set = allow.as_ref().map(|a| {
        globs(c, loc, &format!("{path}.models"), a).unwrap_or_else(|| {
            // An explicit empty list allows nothing.
            GlobSetBuilder::new().build().unwrap_or_default()
        })
    });
    ModelFilter {
        allow: allow_set,
        deny: globs(c, loc, &format!("{path}.deny_models"), &deny),
        allow_src: allow,
        deny_src: deny,
    }
}

fn usd_to_micros(c: &mut Checker, loc: Loc, path: &str, usd: f64) -> u64 {
    if !usd.is_finite() || !(0.0..=1e12).contains(&usd) {
        c.problem(
            loc,
            path,
            format!("invalid amount {usd}: want 0 ..= 1e12 USD"),
        );
        return 0;
    }
    (usd * 1_000_000.0).round() as u64
}

fn check_server(c: &mut Checker, s: RawServer, loc: Loc, path: &str) -> ServerConfig {
    let RawServer {
        listen,
        admin_listen,
        threads,
        data_dir,
        admin_token_env,
        trusted_proxies,
        max_body,
        grace_period,
        request_log,
        tls,
        pid_file,
        upgrade_sock,
        default_max_tokens,
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
    let threads = match threads {
        None => 2,
        Some(t @ 1..=256) => t as usize,
        Some(t) => {
            c.problem(loc, format!("{path}.threads"), format!("{t}: want 1..=256"));
            2
        }
    };
    let max_body = match max_body.as_deref() {
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
    };
    let grace_period = duration(
        c,
        loc,
        &format!("{path}.grace_period"),
        grace_period.as_deref(),
        Duration::from_secs(30),
    );
    let request_log = match request_log.as_deref() {
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
    };
    let default_max_tokens = match default_max_tokens {
        None => 4096,
        Some(n @ 1..=10_000_000) => n as u32,
        Some(n) => {
            c.problem(
                loc,
                format!("{path}.default_max_tokens"),
                format!("{n}: want 1..=10000000"),
            );
            4096
        }
    };
    ServerConfig {
        listen: listen_addrs,
        admin_listen,
        threads,
        data_dir: PathBuf::from(data_dir.unwrap_or_else(|| "/var/lib/tollgate".into())),
        admin_token_env: admin_token_env.unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into()),
        trusted_proxies: cidrs(c, loc, &format!("{path}.trusted_proxies"), &trusted_proxies),
        max_body,
        grace_period,
        request_log,
        tls: tls.map(|RawTls { cert, key }| TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        pid_file: PathBuf::from(pid_file.unwrap_or_else(|| "/run/tollgate/tollgate.pid".into())),
        upgrade_sock: PathBuf::from(
            upgrade_sock.unwrap_or_else(|| "/run/tollgate/upgrade.sock".into()),
        ),
        default_max_tokens,
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

fn check_unique(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    kind: &str,
    id: &str,
    seen: &mut HashSet<String>,
) {
    if id.is_empty() {
        c.problem(
            loc,
            format!("{path}.id"),
            format!("{kind} id must not be empty"),
        );
    } else if !seen.insert(id.to_string()) {
        c.problem(
            loc,
            format!("{path}.id"),
            format!("duplicate {kind} id {id:?}"),
        );
    }
}

fn check_providers(c: &mut Checker, raw: Vec<(RawProvider, Loc, String)>) -> Vec<Provider> {
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
        out.push(Provider {
            id: id.into(),
            api,
            base,
            api_key_env,
            connect_timeout,
            headers: hs,
            ca_file: ca_file.map(PathBuf::from),
        });
    }
    out
}

fn price(c: &mut Checker, loc: Loc, path: &str, input: f64, output: f64) -> Price {
    Price {
        input_micros_per_mtok: usd_to_micros(c, loc, &format!("{path}.input_usd_per_mtok"), input),
        output_micros_per_mtok: usd_to_micros(
            c,
            loc,
            &format!("{path}.output_usd_per_mtok"),
            output,
        ),
    }
}

fn check_models(
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
        } = m;
        if name.is_empty() || !seen.insert(name.clone()) {
            c.problem(
                loc,
                format!("{path}.name"),
                format!("model name {name:?} is empty or a duplicate"),
            );
        }
        let path = format!("{path} ({name})");
        let price = price(c, loc, &path, model_in, model_out);
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

/// Converts the limit fields of one layer; `parent` is the nearest layer above (for the
/// "lower layers only tighten" rule) with its display name.
fn limits(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    raw: RawLimits,
    parent: Option<(&str, &Limits)>,
) -> Limits {
    let RawLimits {
        rpm,
        rph,
        rpd,
        tpm,
        tpd,
        max_parallel,
        max_tokens,
        budget_usd,
        budget_period,
        soft_budget_usd,
    } = raw;
    let nz = |c: &mut Checker, field: &str, v: Option<u64>| -> Option<NonZeroU64> {
        let v = v?;
        match NonZeroU64::new(v) {
            Some(n) => Some(n),
            None => {
                c.problem(
                    loc,
                    format!("{path}.{field}"),
                    "0 is not a limit; pause the group or disable the key instead",
                );
                None
            }
        }
    };
    let mut l = Limits {
        rpm: nz(c, "rpm", rpm),
        rph: nz(c, "rph", rph),
        rpd: nz(c, "rpd", rpd),
        tpm: nz(c, "tpm", tpm),
        tpd: nz(c, "tpd", tpd),
        max_parallel: nz(c, "max_parallel", max_parallel)
            .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX))),
        max_tokens: nz(c, "max_tokens", max_tokens)
            .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX))),
        budget: None,
    };
    let period = match budget_period.as_deref() {
        None | Some("monthly") => BudgetPeriod::Monthly,
        Some("daily") => BudgetPeriod::Daily,
        Some("weekly") => BudgetPeriod::Weekly,
        Some("never") => BudgetPeriod::Never,
        Some(other) => {
            c.problem(
                loc,
                format!("{path}.budget_period"),
                format!("{other:?}: want daily, weekly, monthly or never"),
            );
            BudgetPeriod::Monthly
        }
    };
    match (budget_usd, soft_budget_usd) {
        (Some(b), soft) => {
            let limit_micros = usd_to_micros(c, loc, &format!("{path}.budget_usd"), b);
            let soft_micros =
                soft.map(|s| usd_to_micros(c, loc, &format!("{path}.soft_budget_usd"), s));
            if soft_micros.is_some_and(|s| s > limit_micros) {
                c.problem(
                    loc,
                    format!("{path}.soft_budget_usd"),
                    format!("{} exceeds budget_usd {b}", soft.unwrap_or_default()),
                );
            }
            l.budget = Some(Budget {
                limit_micros,
                period,
                soft_micros,
            });
        }
        (None, Some(_)) => c.problem(loc, format!("{path}.soft_budget_usd"), "needs budget_usd"),
        (None, None) if budget_period.is_some() => {
            c.problem(loc, format!("{path}.budget_period"), "needs budget_usd")
        }
        (None, None) => {}
    }
    if let Some((pname, p)) = parent {
        let mut tighter = |field: &str, mine: Option<u64>, theirs: Option<u64>| {
            if let (Some(m), Some(t)) = (mine, theirs) {
                if m > t {
                    c.problem(
                        loc,
                        format!("{path}.{field}"),
                        format!("{m} exceeds {pname} {field} {t} (lower layers only tighten)"),
                    );
                }
            }
        };
        let g = |v: Option<NonZeroU64>| v.map(NonZeroU64::get);
        let g32 = |v: Option<NonZeroU32>| v.map(|n| u64::from(n.get()));
        tighter("rpm", g(l.rpm), g(p.rpm));
        tighter("rph", g(l.rph), g(p.rph));
        tighter("rpd", g(l.rpd), g(p.rpd));
        tighter("tpm", g(l.tpm), g(p.tpm));
        tighter("tpd", g(l.tpd), g(p.tpd));
        tighter("max_parallel", g32(l.max_parallel), g32(p.max_parallel));
        tighter("max_tokens", g32(l.max_tokens), g32(p.max_tokens));
        if let (Some(mine), Some(theirs)) = (l.budget, p.budget) {
            if mine.limit_micros > theirs.limit_micros {
                c.problem(
                    loc,
                    format!("{path}.budget_usd"),
                    format!(
                        "{} exceeds {pname} budget_usd {} (lower layers only tighten)",
                        mine.limit_micros as f64 / 1e6,
                        theirs.limit_micros as f64 / 1e6
                    ),
                );
            }
        }
    }
    l
}

/// Limits with each field taken from the nearest layer that sets it: the bound a child
/// layer is checked against.
pub(crate) fn tightest(a: &Limits, b: &Limits) -> Limits {
    fn min<T: Ord + Copy>(x: Option<T>, y: Option<T>) -> Option<T> {
        match (x, y) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }
    Limits {
        rpm: min(a.rpm, b.rpm),
        rph: min(a.rph, b.rph),
        rpd: min(a.rpd, b.rpd),
        tpm: min(a.tpm, b.tpm),
        tpd: min(a.tpd, b.tpd),
        max_parallel: min(a.max_parallel, b.max_parallel),
        max_tokens: min(a.max_tokens, b.max_tokens),
        budget: match (a.budget, b.budget) {
            (Some(x), Some(y)) => Some(if x.limit_micros <= y.limit_micros {
                x
            } else {
                y
            }),
            (x, y) => x.or(y),
        },
    }
}

fn check_orgs(c: &mut Checker, raw: Vec<(RawOrg, Loc, String)>) -> Vec<Org> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .map(|(o, loc, path)| {
            let lim = o.limits();
            let RawOrg { id, name, .. } = o;
            check_unique(c, loc, &path, "org", &id, &mut seen);
            let path = format!("{path} ({id})");
            Org {
                limits: limits(c, loc, &path, lim, None),
                id: id.into(),
                name,
            }
        })
        .collect()
}

fn check_groups(
    c: &mut Checker,
    raw: Vec<(RawGroup, Loc, String)>,
    orgs: &[Org],
    models: &[Model],
) -> Vec<Group> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    let catalogue = |name: &str| {
        models
            .iter()
            .find(|m| *m.name == *name)
            .map(|m| m.name.clone())
    };
    for (g, loc, path) in raw {
        let lim = g.limits();
        let RawGroup {
            id,
            org,
            name,
            state,
            models: allow,
            deny_models,
            default_model,
            aliases,
            routing,
            fallbacks,
            timeout,
            retries,
            allowed_cidrs,
            quarantine_cidrs,
            quarantine_models,
            key_ttl,
            idle_disable,
            tags,
            log_level,
            webhook,
            alert_thresholds,
            ..
        } = g;
        check_unique(c, loc, &path, "group", &id, &mut seen);
        let path = format!("{path} ({id})");
        let Some(oi) = orgs.iter().position(|o| *o.id == *org) else {
            c.problem(loc, format!("{path}.org"), format!("unknown org {org:?}"));
            continue;
        };
        let parent = format!("org {}", orgs[oi].id);
        let limits = limits(c, loc, &path, lim, Some((&parent, &orgs[oi].limits)));
        let state = match state.as_deref() {
            None | Some("active") => GroupState::Active,
            Some("paused") => GroupState::Paused,
            Some("quarantined") => GroupState::Quarantined,
            Some(o) => {
                c.problem(
                    loc,
                    format!("{path}.state"),
                    format!("{o:?}: want active, paused or quarantined"),
                );
                GroupState::Active
            }
        };
        let mut alias_map = HashMap::new();
        for (from, to) in aliases {
            match catalogue(&to) {
                Some(m) => {
                    alias_map.insert(from, m);
                }
                None => c.problem(
                    loc,
                    format!("{path}.aliases.{from}"),
                    format!("{to:?} is not in the model catalogue"),
                ),
            }
        }
        let default_model = default_model.and_then(|d| {
            let resolved = alias_map.get(&d).cloned().or_else(|| catalogue(&d));
            if resolved.is_none() {
                c.problem(
                    loc,
                    format!("{path}.default_model"),
                    format!("{d:?} is neither an alias nor in the model catalogue"),
                );
            }
            resolved
        });
        let mut fb = HashMap::new();
        for (from, chain) in fallbacks {
            let Some(from_m) = catalogue(&from) else {
                c.problem(
                    loc,
                    format!("{path}.fallbacks"),
                    format!("{from:?} is not in the model catalogue"),
                );
                continue;
            };
            let mut resolved = vec![];
            for to in chain {
                match catalogue(&to) {
                    Some(m) => resolved.push(m),
                    None => c.problem(
                        loc,
                        format!("{path}.fallbacks.{from}"),
                        format!("{to:?} is not in the model catalogue"),
                    ),
                }
            }
            fb.insert(from_m, resolved);
        }
        let routing = match routing.as_deref() {
            None | Some("weighted") => Routing::Weighted,
            Some("latency") => Routing::Latency,
            Some("cost") => Routing::Cost,
            Some("sticky") => Routing::Sticky,
            Some("tag") => Routing::Tag,
            Some(o) => {
                c.problem(
                    loc,
                    format!("{path}.routing"),
                    format!("{o:?}: want weighted, latency, cost, sticky or tag"),
                );
                Routing::Weighted
            }
        };
        let log_level = match log_level.as_deref() {
            None | Some("metadata") => LogLevel::Metadata,
            Some("prompt") => LogLevel::Prompt,
            Some("full") => LogLevel::Full,
            Some(o) => {
                c.problem(
                    loc,
                    format!("{path}.log_level"),
                    format!("{o:?}: want metadata, prompt or full"),
                );
                LogLevel::Metadata
            }
        };
        if let Some(w) = &webhook {
            if !(w.starts_with("http://") || w.starts_with("https://"))
                || w.parse::<http::Uri>().is_err()
            {
                c.problem(
                    loc,
                    format!("{path}.webhook"),
                    format!("{w:?} is not an http(s) URL"),
                );
            }
        }
        if alert_thresholds.iter().any(|t| !t.is_finite() || *t <= 0.0) {
            c.problem(
                loc,
                format!("{path}.alert_thresholds"),
                "thresholds are fractions of budget_usd above 0",
            );
        }
        if !alert_thresholds.is_empty() && limits.budget.is_none() {
            c.problem(loc, format!("{path}.alert_thresholds"), "needs budget_usd");
        }
        let retries = match retries {
            None => 2,
            Some(r @ 0..=10) => r as u32,
            Some(r) => {
                c.problem(loc, format!("{path}.retries"), format!("{r}: want 0..=10"));
                2
            }
        };
        let mut thresholds = alert_thresholds;
        thresholds.sort_by(f64::total_cmp);
        out.push(Group {
            org: oi,
            name,
            state,
            limits,
            models: model_filter(c, loc, &path, allow, deny_models),
            default_model,
            aliases: alias_map,
            routing,
            fallbacks: fb,
            timeout: duration(
                c,
                loc,
                &format!("{path}.timeout"),
                timeout.as_deref(),
                Duration::from_secs(60),
            ),
            retries,
            allowed_cidrs: allowed_cidrs
                .map(|l| cidrs(c, loc, &format!("{path}.allowed_cidrs"), &l)),
            quarantine_cidrs: cidrs(
                c,
                loc,
                &format!("{path}.quarantine_cidrs"),
                &quarantine_cidrs,
            ),
            quarantine_models: globs(
                c,
                loc,
                &format!("{path}.quarantine_models"),
                &quarantine_models,
            ),
            key_ttl: key_ttl
                .map(|t| duration(c, loc, &format!("{path}.key_ttl"), Some(&t), Duration::ZERO)),
            idle_disable: idle_disable.map(|t| {
                duration(
                    c,
                    loc,
                    &format!("{path}.idle_disable"),
                    Some(&t),
                    Duration::ZERO,
                )
            }),
            tags: tags.into_iter().collect(),
            log_level,
            webhook,
            alert_thresholds: thresholds,
            id: id.into(),
        });
    }
    out
}

fn check_keys(
    c: &mut Checker,
    raw: Vec<(RawKey, Loc, String)>,
    groups: &[Group],
    orgs: &[Org],
) -> Vec<KeyDef> {
    let mut seen = HashSet::new();
    let mut digests = HashSet::new();
    let mut out = vec![];
    for (k, loc, path) in raw {
        let lim = k.limits();
        let RawKey {
            id,
            name,
            group,
            sha256,
            expires_at,
            models,
            deny_models,
            allowed_cidrs,
            state,
            ..
        } = k;
        check_unique(c, loc, &path, "key", &id, &mut seen);
        let path = format!("{path} ({id})");
        let Some(gi) = groups.iter().position(|g| *g.id == *group) else {
            c.problem(
                loc,
                format!("{path}.group"),
                format!("unknown group {group:?}"),
            );
            continue;
        };
        let g = &groups[gi];
        let bound = tightest(&g.limits, &orgs[g.org].limits);
        let parent = format!("group {}", g.id);
        let limits = limits(c, loc, &path, lim, Some((&parent, &bound)));
        let mut digest = [0u8; 32];
        if sha256.len() != 64 || hex::decode_to_slice(&sha256, &mut digest).is_err() {
            c.problem(
                loc,
                format!("{path}.sha256"),
                "want 64 hex digits (see `tollgate keygen`)",
            );
        } else if !digests.insert(digest) {
            c.problem(
                loc,
                format!("{path}.sha256"),
                "the same key digest appears twice",
            );
        }
        let expires_at = expires_at.and_then(|e| match humantime::parse_rfc3339(&e) {
            Ok(t) => Some(t),
            Err(err) => {
                c.problem(
                    loc,
                    format!("{path}.expires_at"),
                    format!("{e:?}: {err} (want RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z)"),
                );
                None
            }
        });
        let state = match state.as_deref() {
            None | Some("active") => KeyState::Active,
            Some("disabled") => KeyState::Disabled,
            Some(o) => {
                c.problem(
                    loc,
                    format!("{path}.state"),
                    format!("{o:?}: want active or disabled"),
                );
                KeyState::Active
            }
        };
        out.push(KeyDef {
            name,
            group: gi,
            digest,
            expires_at,
            state,
            models: model_filter(c, loc, &path, models, deny_models),
            allowed_cidrs: allowed_cidrs
                .map(|l| cidrs(c, loc, &format!("{path}.allowed_cidrs"), &l)),
            limits,
            id: id.into(),
        });
    }
    out
}

//! The immutable policy snapshot behind one `ArcSwap`.
//!
//! Inheritance is resolved here, when the snapshot is built, so a request does one map
//! lookup (digest -> [`KeyEntry`]) and finds its group, org, effective model set and
//! effective `max_tokens` already computed. Counters, windows and spend are not here: they
//! are keyed by id elsewhere and survive a swap.

use crate::admission::Layer;
use crate::policy::config::{
    Api, BaseUrl, Config, Group, KeyDef, KeyState, Limits, ModelFilter, Price, ServerConfig,
};
use crate::proxy::last_seen::{LastSeen, LastUsed};
use crate::secret::Secret;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::digest::ByDigest;
pub(crate) use crate::digest::{Digest, DigestHash};

mod carry;
mod guards;
pub(crate) mod reqpolicy;

use crate::policy::config::guardrails::Guardrail;
use crate::policy::config::mtls::CertRule;
pub(crate) use guards::GuardSet;

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful reload.
    pub generation: u64,
    pub(crate) server: ServerConfig,
    /// The file's keys, found by digest (a set of entries: one pointer per slot instead of
    /// a copy of each 32-byte digest next to it).
    keys: HashSet<ByDigest<KeyEntry>, DigestHash>,
    /// Catalogue, by name and by index (`ModelEntry::index`).
    pub(crate) models: Vec<Arc<ModelEntry>>,
    models_by_name: HashMap<Arc<str>, usize>,
    pub(crate) providers: Vec<Arc<ProviderEntry>>,
    pub(crate) groups: HashMap<Arc<str>, Arc<GroupEntry>>,
    pub(crate) orgs: HashMap<Arc<str>, Arc<OrgEntry>>,
    /// `[[guardrails]]` by id (API keys name theirs by id).
    pub(crate) guardrails: HashMap<Arc<str>, Arc<Guardrail>>,
    /// Every origin a group or file key admits (`allowed_origins`): CORS preflights carry
    /// no key, so they are answered from this set (and the directory's for API keys).
    pub(crate) origins: HashSet<Box<str>>,
}

#[derive(Debug)]
pub(crate) struct OrgEntry {
    pub(crate) id: Arc<str>,
    pub(crate) limits: Limits,
    /// `[[orgs]] webhook` and its `webhook_secret_env`.
    pub(crate) webhook: Option<(String, String)>,
    /// The org's own guardrails.
    pub(crate) guardrails: Box<[Arc<Guardrail>]>,
    pub(crate) require_client_cert: bool,
    pub(crate) alerts: crate::policy::config::Alerts,
    /// The org's own request policy.
    pub(crate) req: Option<Arc<crate::policy::config::reqpolicy::ReqPolicy>>,
    /// `[[log_sinks]]` ids of the org (lines of groups not in the file go there).
    pub(crate) log_sinks: Box<[Arc<str>]>,
    pub(crate) log_retention: Option<std::time::Duration>,
}

/// A group as configured, plus what the snapshot resolved for it. Derefs to the
/// [`Group`] definition for everything else.
#[derive(Debug)]
pub struct GroupEntry {
    pub(crate) def: Group,
    pub(crate) org: Arc<OrgEntry>,
    /// `allowed[model.index]`: the group's allow/deny globs applied to the catalogue.
    pub(crate) allowed: Arc<[bool]>,
    /// The tightest `max_tokens` of group and org.
    pub max_tokens: Option<(u64, String)>,
    /// Org ∪ group guardrails (`None`: none attached).
    pub(crate) guards: Option<Arc<GuardSet>>,
    /// Org and group request policy, resolved (`None`: neither sets any).
    pub(crate) req: Option<Arc<reqpolicy::InForce>>,
}

impl std::ops::Deref for GroupEntry {
    type Target = Group;
    fn deref(&self) -> &Group {
        &self.def
    }
}

/// One per key: a million file keys hold a million of these, so rarely-used parts are
/// boxed and nothing is stored that can be derived (a test keeps it at 240 bytes).
#[derive(Debug)]
pub struct KeyEntry {
    pub(crate) id: Arc<str>,
    pub(crate) name: Option<Box<str>>,
    pub(crate) digest: Digest,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) state: KeyState,
    pub group: Arc<GroupEntry>,
    pub(crate) limits: Limits,
    /// The key's own address list and guardrails, boxed together (few keys have either).
    rare: Option<Box<KeyRare>>,
    /// `allowed[model.index]`: key ∩ group model lists (shared with the group when the key
    /// has no list of its own).
    pub(crate) allowed: Arc<[bool]>,
    /// Whether `allowed` was narrowed by the key's own lists (for error messages).
    pub(crate) own_models: bool,
    /// The tightest `max_tokens` of key, group and org, with the layer that set it.
    pub(crate) max_tokens: Option<MaxTokens>,
    /// Read from the file (`config`) or made through the admin API (`api`).
    pub source: KeySource,
    /// A file key's own model lists and tags, as written (for the admin API's views).
    pub(crate) written: Option<Box<Written>>,
    pub(crate) last_used: Arc<LastUsed>,
}

/// What few keys have.
#[derive(Debug)]
struct KeyRare {
    allowed_cidrs: Option<Box<[IpNet]>>,
    /// The key's own `require_client_cert` / `client_cert_sha256`.
    client_cert: Option<Box<CertRule>>,
    /// Org ∪ group ∪ key guardrails, when the key adds some to its group's.
    guards: Option<Arc<GuardSet>>,
    /// Org, group and key request policy, when the key sets some of its own.
    req: Option<Arc<reqpolicy::InForce>>,
    /// The key's own request policy, as set (for the admin API's views).
    own_req: Option<Arc<crate::policy::config::reqpolicy::ReqPolicy>>,
}

/// A key's `max_tokens` cap and the layer it comes from; the layer's id is the entry's own,
/// its group's or its org's ([`KeyEntry::scope`]), so no string is kept per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxTokens {
    pub(crate) limit: u32,
    pub(crate) layer: Layer,
}

/// A file key's lists as written in the file.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) models: Option<Vec<String>>,
    pub(crate) deny_models: Vec<String>,
    pub(crate) tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Config,
    Api,
}

/// What a key is before it is resolved against its group: the file's `[[keys]]` entry or
/// an API-made key. Owned parts move into the entry (a file key's id and name are not
/// copied).
pub(crate) struct KeyParts<'a> {
    pub(crate) id: Arc<str>,
    pub(crate) name: Option<Box<str>>,
    pub(crate) digest: Digest,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) state: KeyState,
    pub(crate) limits: Limits,
    pub(crate) models: Option<&'a ModelFilter>,
    pub(crate) allowed_cidrs: Option<Box<[IpNet]>>,
    pub(crate) source: KeySource,
    pub(crate) last_used: Arc<LastUsed>,
    /// The key's own guardrails (added to its group's).
    pub(crate) guardrails: Vec<Arc<Guardrail>>,
    pub(crate) client_cert: Option<Box<CertRule>>,
    /// The key's own request policy (narrowing its group's and org's).
    pub(crate) req: Option<Arc<crate::policy::config::reqpolicy::ReqPolicy>>,
}

impl KeyEntry {
    /// Resolves a key against its group in a snapshot: the effective model set (key ∩
    /// group) and the tightest `max_tokens` of the three layers.
    pub(crate) fn resolve(
        k: KeyParts<'_>,
        group: &Arc<GroupEntry>,
        catalogue: &[Arc<ModelEntry>],
    ) -> KeyEntry {
        let own_models = k
            .models
            .is_some_and(|m| m.allow.is_some() || m.deny.is_some());
        let allowed = match k.models {
            Some(m) if own_models => allowed_vector(catalogue, m, Some(&group.allowed)),
            _ => group.allowed.clone(),
        };
        // The first of the tightest wins: key, then group, then org.
        let max_tokens = [
            (k.limits.enforced().max_tokens, Layer::Key),
            (group.limits.enforced().max_tokens, Layer::Group),
            (group.org.limits.enforced().max_tokens, Layer::Org),
        ]
        .into_iter()
        .filter_map(|(v, layer)| {
            v.map(|v| MaxTokens {
                limit: v.get(),
                layer,
            })
        })
        .min_by_key(|m| m.limit);
        let guards = (!k.guardrails.is_empty()).then(|| {
            let group_set: &[Arc<Guardrail>] = group.guards.as_ref().map_or(&[], |g| &g.all);
            GuardSet::union([group_set, &k.guardrails])
        });
        let req = k.req.as_deref().and_then(|own| {
            let providers = catalogue
                .iter()
                .flat_map(|m| m.targets.iter().map(|t| &t.provider.id));
            reqpolicy::resolve(
                &[
                    group.org.req.as_deref(),
                    group.def.req.as_deref(),
                    Some(own),
                ],
                providers,
            )
        });
        let rare = (k.allowed_cidrs.is_some()
            || guards.is_some()
            || k.client_cert.is_some()
            || req.is_some())
        .then(|| {
            Box::new(KeyRare {
                allowed_cidrs: k.allowed_cidrs,
                client_cert: k.client_cert,
                guards: guards.flatten(),
                req,
                own_req: k.req,
            })
        });
        KeyEntry {
            rare,
            max_tokens,
            id: k.id,
            name: k.name,
            digest: k.digest,
            expires_at: k.expires_at,
            state: k.state,
            group: group.clone(),
            limits: k.limits,
            allowed,
            own_models,
            source: k.source,
            last_used: k.last_used,
            written: None,
        }
    }

    /// The key's own client-certificate rule.
    pub(crate) fn client_cert(&self) -> Option<&CertRule> {
        self.rare.as_ref()?.client_cert.as_deref()
    }

    /// The key's own `allowed_cidrs`.
    pub(crate) fn allowed_cidrs(&self) -> Option<&[IpNet]> {
        self.rare.as_ref()?.allowed_cidrs.as_deref()
    }

    /// The guardrails in force: org ∪ group ∪ key (`None`: none).
    pub(crate) fn guards(&self) -> Option<&Arc<GuardSet>> {
        match self.rare.as_ref().and_then(|r| r.guards.as_ref()) {
            Some(own) => Some(own),
            None => self.group.guards.as_ref(),
        }
    }

    /// The key's own request policy fields, as set.
    pub(crate) fn own_req(&self) -> Option<&crate::policy::config::reqpolicy::ReqPolicy> {
        self.rare.as_ref()?.own_req.as_deref()
    }

    /// The request policy in force: org, group and key resolved (`None`: none set).
    #[inline]
    pub(crate) fn req_policy(&self) -> Option<&reqpolicy::InForce> {
        match self.rare.as_ref().and_then(|r| r.req.as_deref()) {
            Some(own) => Some(own),
            None => self.group.req.as_deref(),
        }
    }

    /// `key k1`, `group g` or `org o`: a layer of this key, as error messages name it.
    pub(crate) fn scope(&self, layer: Layer) -> String {
        let id = match layer {
            Layer::Key => &self.id,
            Layer::Group => &self.group.id,
            Layer::Org => &self.group.org.id,
        };
        format!("{} {id}", layer.as_str())
    }
}

impl crate::digest::Keyed for KeyEntry {
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

#[derive(Debug)]
pub struct ModelEntry {
    pub(crate) index: usize,
    pub(crate) name: Arc<str>,
    pub(crate) price: Price,
    pub targets: Vec<TargetEntry>,
}

#[derive(Debug)]
pub struct TargetEntry {
    pub(crate) provider: Arc<ProviderEntry>,
    pub(crate) model: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) tags: Vec<String>,
    pub(crate) price: Price,
    /// `provider/model`, as shown in `x-tollgate-target` and metrics.
    pub(crate) label: Arc<str>,
    /// Passive health and latency, shared across snapshots.
    pub health: Arc<crate::proxy::route::health::TargetHealth>,
}

#[derive(Debug)]
pub(crate) struct ProviderEntry {
    pub(crate) id: Arc<str>,
    pub(crate) api: Api,
    pub(crate) base: BaseUrl,
    /// Resolved when the snapshot was built and refreshed in the background
    /// ([`refresh_addresses`]); empty while resolution fails.
    pub(crate) addrs: arc_swap::ArcSwap<Vec<SocketAddr>>,
    /// `host[:port]` for the upstream Host header.
    pub(crate) host_header: String,
    /// `host_header` as the header value, built once (`None` if it cannot be one).
    pub(crate) host_value: Option<http::HeaderValue>,
    /// The credential as the header that carries it (`Bearer <key>` in `authorization`
    /// for OpenAI, `x-api-key` for Anthropic), built once and marked sensitive (never
    /// printed by `Debug`). `None` without a credential or if it cannot be a header value.
    pub(crate) auth_value: Option<http::HeaderValue>,
    pub(crate) credential: Option<Secret>,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// CA bundle replacing the platform roots for this provider (parsed once, here).
    pub(crate) ca: Option<CaBundle>,
    /// Read by reconciliation only, never on the request path.
    pub(crate) usage_api: Option<crate::policy::config::UsageApi>,
    pub(crate) drift_alert_pct: f64,
}

/// Parsed `ca_file` certificates, in the form Pingora's peers take.
#[derive(Clone)]
pub(crate) struct CaBundle(pub Arc<[pingora_core::utils::tls::WrappedX509]>);

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({} certificates)", self.0.len())
    }
}

/// Where a snapshot's dynamic parts come from (environment, DNS); injectable for tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn resolve(&self, host: &str, port: u16) -> Vec<SocketAddr>;
}

/// No environment variables; every host is 127.0.0.1 (tests and benches).
pub struct Loopback;

impl Environment for Loopback {
    fn var(&self, _: &str) -> Option<String> {
        None
    }

    fn resolve(&self, _: &str, port: u16) -> Vec<SocketAddr> {
        vec![SocketAddr::from(([127, 0, 0, 1], port))]
    }
}

/// The real process environment and system resolver.
pub(crate) struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn resolve(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return vec![SocketAddr::new(ip, port)];
        }
        match (host, port).to_socket_addrs() {
            Ok(a) => {
                let mut a: Vec<SocketAddr> = a.collect();
                // Prefer IPv4: "localhost" often lists ::1 first while services bind 127.0.0.1.
                a.sort_by_key(|a| !a.is_ipv4());
                a
            }
            Err(e) => {
                log::warn!("cannot resolve provider host {host}: {e}");
                vec![]
            }
        }
    }
}

fn allowed_vector(
    models: &[Arc<ModelEntry>],
    filter: &ModelFilter,
    parent: Option<&[bool]>,
) -> Arc<[bool]> {
    models
        .iter()
        .map(|m| parent.is_none_or(|p| p[m.index]) && filter.permits(&m.name))
        .collect()
}

fn tightest_max_tokens(layers: &[(Option<std::num::NonZeroU32>, String)]) -> Option<(u64, String)> {
    layers
        .iter()
        .filter_map(|(v, scope)| v.map(|v| (u64::from(v.get()), scope.clone())))
        .min_by_key(|(v, _)| *v)
}

/// A provider's entry: its Host and credential header values built once.
fn provider_entry(
    p: &crate::policy::config::Provider,
    env: &dyn Environment,
) -> anyhow::Result<Arc<ProviderEntry>> {
    let default_port = if p.base.tls { 443 } else { 80 };
    let host_header = if p.base.port == default_port {
        p.base.host.clone()
    } else if p.base.host.contains(':') {
        format!("[{}]:{}", p.base.host, p.base.port)
    } else {
        format!("{}:{}", p.base.host, p.base.port)
    };
    let ca = match &p.ca_file {
        None => None,
        Some(path) => Some(load_ca(path)?),
    };
    let credential = p
        .api_key_env
        .as_ref()
        .and_then(|v| env.var(v))
        .map(Secret::new);
    if let (Some(v), None) = (&p.api_key_env, &credential) {
        log::warn!("provider {}: environment variable {v} is not set; requests go upstream without a provider key", p.id);
    }
    let auth_value = credential.as_ref().and_then(|c| {
        let text = match p.api {
            Api::OpenAi => format!("Bearer {}", c.expose()),
            Api::Anthropic => c.expose().to_string(),
        };
        let mut v = http::HeaderValue::from_str(&text).ok()?;
        v.set_sensitive(true);
        Some(v)
    });
    Ok(Arc::new(ProviderEntry {
        id: p.id.clone(),
        api: p.api,
        host_value: http::HeaderValue::from_str(&host_header).ok(),
        auth_value,
        addrs: arc_swap::ArcSwap::from_pointee(env.resolve(&p.base.host, p.base.port)),
        base: p.base.clone(),
        host_header,
        credential,
        connect_timeout: p.connect_timeout,
        headers: p.headers.clone(),
        ca,
        usage_api: p.usage_api.clone(),
        drift_alert_pct: p.drift_alert_pct,
    }))
}

/// The catalogue, each target with its health cell (kept across snapshots by label).
fn model_entries(
    model_defs: &[crate::policy::config::Model],
    providers: &[Arc<ProviderEntry>],
    health: &crate::proxy::route::health::Health,
) -> Vec<Arc<ModelEntry>> {
    model_defs
        .iter()
        .enumerate()
        .map(|(index, m)| {
            Arc::new(ModelEntry {
                index,
                name: m.name.clone(),
                price: m.price,
                targets: m
                    .targets
                    .iter()
                    .map(|t| {
                        let provider = providers[t.provider].clone();
                        let label: Arc<str> = format!("{}/{}", provider.id, t.model).into();
                        TargetEntry {
                            health: health.target(&label),
                            label,
                            provider,
                            model: t.model.clone(),
                            weight: t.weight,
                            tags: t.tags.clone(),
                            price: t.price.unwrap_or(m.price),
                        }
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Groups with their org, models and tightest `max_tokens` resolved.
fn group_entries(
    group_defs: &[Group],
    orgs: &[Arc<OrgEntry>],
    models: &[Arc<ModelEntry>],
    guardrails: &[Arc<Guardrail>],
) -> Vec<Arc<GroupEntry>> {
    group_defs
        .iter()
        .map(|g| {
            let org = orgs[g.org].clone();
            let own = pick(guardrails, &g.guardrails);
            let providers = models
                .iter()
                .flat_map(|m| m.targets.iter().map(|t| &t.provider.id));
            Arc::new(GroupEntry {
                req: reqpolicy::resolve(&[org.req.as_deref(), g.req.as_deref()], providers),
                guards: GuardSet::union([&org.guardrails[..], &own]),
                allowed: allowed_vector(models, &g.models, None),
                max_tokens: tightest_max_tokens(&[
                    (g.limits.enforced().max_tokens, format!("group {}", g.id)),
                    (org.limits.enforced().max_tokens, format!("org {}", org.id)),
                ]),
                def: g.clone(),
                org,
            })
        })
        .collect()
}

/// The file's keys, resolved against their group; the definitions are dropped a run at a
/// time as their entries are made.
/// The guardrails of a layer's index list.
fn pick(guardrails: &[Arc<Guardrail>], refs: &[u16]) -> Vec<Arc<Guardrail>> {
    refs.iter()
        .filter_map(|&i| guardrails.get(usize::from(i)).cloned())
        .collect()
}

fn key_entries(
    key_defs: crate::policy::config::KeyDefs,
    carry: &mut carry::Carry,
    groups: &[Arc<GroupEntry>],
    (models, guardrails): (&[Arc<ModelEntry>], &[Arc<Guardrail>]),
) -> HashSet<ByDigest<KeyEntry>, DigestHash> {
    let mut keys = HashSet::with_capacity_and_hasher(key_defs.len(), DigestHash);
    for run in key_defs.into_runs() {
        for k in run {
            let KeyDef {
                id,
                name,
                group,
                digest,
                expires_at,
                state,
                models: own,
                allowed_cidrs,
                limits,
                tags,
                guardrails: own_guards,
                client_cert,
                req,
            } = k;
            let parts = KeyParts {
                client_cert,
                req,
                guardrails: pick(guardrails, &own_guards),
                last_used: carry.cell(&id, &digest),
                id,
                name,
                digest,
                expires_at,
                state,
                limits,
                models: own.as_deref(),
                allowed_cidrs: allowed_cidrs.map(Vec::into_boxed_slice),
                source: KeySource::Config,
            };
            let mut entry = KeyEntry::resolve(parts, &groups[group], models);
            if own.is_some() || !tags.is_empty() {
                let (allow_src, deny_src) = own.map_or((None, vec![]), |m| {
                    let ModelFilter {
                        allow_src,
                        deny_src,
                        ..
                    } = *m;
                    (allow_src, deny_src)
                });
                entry.written = Some(Box::new(Written {
                    models: allow_src,
                    deny_models: deny_src,
                    tags,
                }));
            }
            keys.insert(ByDigest(Arc::new(entry)));
        }
    }

    keys
}

impl Snapshot {
    /// Builds a snapshot from a validated config. Blocking (DNS, CA files): call it off
    /// the request path.
    ///
    /// Takes the config whole: the key definitions are dropped a run at a time as their
    /// entries are made, so a million of each are never held together. File keys take
    /// their last-use cells from `previous` (the snapshot this one replaces) or `last_seen`.
    pub fn build(
        config: Config,
        last_seen: &LastSeen,
        previous: Option<&Snapshot>,
        generation: u64,
        env: &dyn Environment,
        health: &crate::proxy::route::health::Health,
    ) -> anyhow::Result<Snapshot> {
        let Config {
            path: _,
            server,
            providers: provider_defs,
            models: model_defs,
            guardrails: guard_defs,
            orgs: org_defs,
            groups: group_defs,
            keys: key_defs,
        } = config;
        let providers: Vec<Arc<ProviderEntry>> = provider_defs
            .iter()
            .map(|p| provider_entry(p, env))
            .collect::<anyhow::Result<_>>()?;

        let models = model_entries(&model_defs, &providers, health);
        let models_by_name = models.iter().map(|m| (m.name.clone(), m.index)).collect();

        let guardrails: Vec<Arc<Guardrail>> = guard_defs.into_iter().map(Arc::new).collect();
        for g in &guardrails {
            if let crate::policy::config::guardrails::Check::Builtin(r) = &g.check {
                // Compiled now, not on the first request that needs it.
                r.builtin.warm();
            }
        }
        let orgs: Vec<Arc<OrgEntry>> = org_defs
            .iter()
            .map(|o| {
                Arc::new(OrgEntry {
                    guardrails: pick(&guardrails, &o.guardrails).into_boxed_slice(),
                    id: o.id.clone(),
                    limits: o.limits.clone(),
                    webhook: o.webhook.clone(),
                    require_client_cert: o.require_client_cert,
                    alerts: o.alerts.clone(),
                    req: o.req.clone(),
                    log_sinks: o.log_sinks.clone(),
                    log_retention: o.log_retention,
                })
            })
            .collect();

        let groups = group_entries(&group_defs, &orgs, &models, &guardrails);
        let mut carry = carry::Carry::new(previous, &key_defs, last_seen);
        let keys = key_entries(key_defs, &mut carry, &groups, (&models, &guardrails));

        let snapshot = Snapshot {
            generation,
            server,
            keys,
            models,
            models_by_name,
            providers,
            groups: groups.iter().map(|g| (g.id.clone(), g.clone())).collect(),
            orgs: orgs.iter().map(|o| (o.id.clone(), o.clone())).collect(),
            guardrails: guardrails
                .iter()
                .map(|g| (g.id.clone(), g.clone()))
                .collect(),
            origins: HashSet::new(),
        };
        carry.finish(&snapshot);
        let mut snapshot = snapshot;
        snapshot.origins = reqpolicy::origins(
            snapshot
                .groups
                .values()
                .filter_map(|g| g.req.as_deref())
                .chain(snapshot.keys.iter().filter_map(|k| k.0.req_policy())),
        );
        Ok(snapshot)
    }

    pub(crate) fn key(&self, digest: &Digest) -> Option<&Arc<KeyEntry>> {
        self.keys.get(digest).map(|k| &k.0)
    }

    /// Ids of the keys from the policy file.
    pub(crate) fn key_ids(&self) -> HashSet<&str> {
        self.keys.iter().map(|k| &*k.0.id).collect()
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The file's keys, in no particular order.
    pub(crate) fn file_keys(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.keys.iter().map(|k| &k.0)
    }

    pub fn model(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.models_by_name.get(name).map(|&i| &self.models[i])
    }
}

fn load_ca(path: &std::path::Path) -> anyhow::Result<CaBundle> {
    let pem =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("ca_file {}: no certificate found", path.display());
    }
    // Check each certificate parses before Pingora's parser (which panics) sees it.
    let mut store = rustls::RootCertStore::empty();
    for der in &certs {
        store
            .add(rustls::pki_types::CertificateDer::from(der.as_slice()))
            .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
    }
    let wrapped: Vec<_> = certs
        .into_iter()
        .map(|der| {
            pingora_core::utils::tls::WrappedX509::new(der, pingora_core::utils::tls::parse_x509)
        })
        .collect();
    Ok(CaBundle(wrapped.into()))
}

/// Re-resolves provider host names (not IP literals) and swaps in changed addresses, so a
/// provider that moves its IPs keeps working without a reload. Blocking: run it off the
/// request path. Returns how many providers still have no address.
pub(crate) fn refresh_addresses(snapshot: &Snapshot, env: &dyn Environment) -> usize {
    let mut unresolved = 0;
    for p in &snapshot.providers {
        if p.base.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let fresh = env.resolve(&p.base.host, p.base.port);
        if fresh.is_empty() {
            // Keep what we had: a resolver hiccup must not take a provider away.
            unresolved += usize::from(p.addrs.load().is_empty());
            continue;
        }
        if **p.addrs.load() != fresh {
            log::info!(
                "provider {}: {} now resolves to {:?}",
                p.id,
                p.base.host,
                fresh
            );
            p.addrs.store(Arc::new(fresh));
        }
    }
    unresolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Flaky(Mutex<Vec<Vec<SocketAddr>>>);
    impl Environment for Flaky {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn resolve(&self, _: &str, _: u16) -> Vec<SocketAddr> {
            self.0.lock().unwrap().remove(0)
        }
    }

    #[test]
    fn provider_addresses_follow_dns_and_survive_failures() {
        let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"https://api.example.com\"\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n";
        let cfg =
            crate::policy::config::parse_config(text, std::path::Path::new("t.toml")).unwrap();
        let a: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let env = Flaky(Mutex::new(vec![vec![], vec![a], vec![], vec![b]]));
        let snap = Snapshot::build(
            cfg,
            &LastSeen::default(),
            None,
            1,
            &env,
            &Default::default(),
        )
        .unwrap();
        assert!(snap.providers[0].addrs.load().is_empty());
        assert_eq!(refresh_addresses(&snap, &env), 0);
        assert_eq!(**snap.providers[0].addrs.load(), vec![a]);
        refresh_addresses(&snap, &env); // resolver failure: keep a
        assert_eq!(**snap.providers[0].addrs.load(), vec![a]);
        refresh_addresses(&snap, &env);
        assert_eq!(**snap.providers[0].addrs.load(), vec![b]);
    }

    #[test]
    fn last_use_cells_follow_keys_across_reloads_by_id() {
        let head = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nname = \"a\"\ntargets = [{ provider = \"p\" }]\n[[orgs]]\nid = \"o\"\n[[groups]]\nid = \"g\"\norg = \"o\"\n";
        let file = |keys: &[(&str, u8)]| {
            let mut t = head.to_string();
            for (id, d) in keys {
                t += &format!(
                    "[[keys]]\nid = \"{id}\"\ngroup = \"g\"\nsha256 = \"{}\"\n",
                    hex::encode([*d; 32])
                );
            }
            crate::policy::config::parse_config(&t, std::path::Path::new("t.toml")).unwrap()
        };
        let seen = LastSeen::default();
        let build = |cfg, prev| {
            Snapshot::build(cfg, &seen, prev, 1, &Loopback, &Default::default()).unwrap()
        };
        let cell = |s: &Snapshot, d: u8| s.key(&[d; 32]).unwrap().last_used.clone();
        let s1 = build(file(&[("k1", 1), ("k2", 2), ("k3", 3)]), None);
        for d in 1..=3 {
            cell(&s1, d).touch(100 + u64::from(d));
        }
        // k1 unchanged, k2 with a new secret, k3 removed, k4 new, digest 3 now k5's.
        let s2 = build(
            file(&[("k1", 1), ("k2", 9), ("k4", 4), ("k5", 3)]),
            Some(&s1),
        );
        assert!(Arc::ptr_eq(&cell(&s2, 1), &cell(&s1, 1)));
        assert!(Arc::ptr_eq(&cell(&s2, 9), &cell(&s1, 2)));
        assert_eq!((cell(&s2, 4).get(), cell(&s2, 3).get()), (0, 0));
        // k3 put back (and k1 removed) two reloads later: its last use is still known.
        let s3 = build(file(&[("k2", 9), ("k4", 4)]), Some(&s2));
        let s4 = build(file(&[("k3", 7), ("k1", 1)]), Some(&s3));
        assert!(Arc::ptr_eq(&cell(&s4, 7), &cell(&s1, 3)));
        assert_eq!((cell(&s4, 7).get(), cell(&s4, 1).get()), (103, 101));
    }

    #[test]
    fn a_key_entry_fits_a_256_byte_allocation() {
        // With the Arc's two counts: one 256-byte allocator class per file key (280 bytes
        // took the 320-byte class: 64 MB more with a million keys).
        assert!(std::mem::size_of::<KeyEntry>() <= 240);
    }

    #[test]
    fn every_run_of_key_definitions_moves_into_the_snapshot() {
        let mut text = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n[[models]]\nname = \"a\"\ntargets = [{ provider = \"p\" }]\n[[models]]\nname = \"b\"\ntargets = [{ provider = \"p\" }]\n[[orgs]]\nid = \"o\"\nmax_tokens = 500\n[[groups]]\nid = \"g\"\norg = \"o\"\nmax_tokens = 400\n".to_string();
        let n = 2500;
        for i in 0..n {
            text += &format!(
                "[[keys]]\nid = \"k{i}\"\nname = \"n{i}\"\ngroup = \"g\"\nsha256 = \"{i:064x}\"\n"
            );
            if i == 1500 {
                text += "models = [\"a\"]\nmax_tokens = 300\ntags = { team = \"x\" }\n";
            }
        }
        let cfg =
            crate::policy::config::parse_config(&text, std::path::Path::new("t.toml")).unwrap();
        let name_at = cfg.keys[1500].name.as_deref().map(str::as_ptr);
        let snap = Snapshot::build(
            cfg,
            &LastSeen::default(),
            None,
            1,
            &Loopback,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(snap.key_count(), n);
        let digest = |i: usize| {
            let mut d = [0u8; 32];
            hex::decode_to_slice(format!("{i:064x}"), &mut d).unwrap();
            d
        };
        let k = snap.key(&digest(1500)).unwrap();
        // Moved, not copied.
        assert_eq!(k.name.as_deref().map(str::as_ptr), name_at);
        assert_eq!(
            (&*k.id, k.allowed.as_ref()),
            ("k1500", [true, false].as_slice())
        );
        let w = k.written.as_deref().unwrap();
        assert_eq!(w.models.as_deref(), Some(["a".to_string()].as_slice()));
        assert_eq!(w.tags, [("team".to_string(), "x".to_string())]);
        let cap = k.max_tokens.unwrap();
        assert_eq!(
            (cap.limit, k.scope(cap.layer)),
            (300, "key k1500".to_string())
        );
        let k = snap.key(&digest(n - 1)).unwrap();
        assert_eq!(k.name.as_deref(), Some(format!("n{}", n - 1).as_str()));
        assert!(k.written.is_none());
        let cap = k.max_tokens.unwrap();
        assert_eq!(
            (cap.limit, k.scope(cap.layer)),
            (400, "group g".to_string())
        );
    }
}

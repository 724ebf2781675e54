//! Validation of `[[orgs]]`, `[[groups]]` and `[[keys]]`: limits and the "lower layers
//! only tighten" rule, references, model lists and CIDRs.

use super::super::guardrails::Guardrail;
use super::super::raw::*;
use super::super::*;
use super::alerts::check_alerts;
use super::guardrails::guard_refs;
use super::limits::{layer_limits, tightest};
use super::reqpolicy::layer_req;
use super::{check_unique, cidrs, duration, globs, model_filter, Checker, Loc};
use crate::digest::DigestHash;
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;

pub(super) fn check_orgs(
    c: &mut Checker,
    raw: Vec<(RawOrg, Loc, String)>,
    guards: &[Guardrail],
) -> Vec<Org> {
    let mut seen = HashSet::new();
    raw.into_iter()
        .map(|(o, loc, path)| {
            let lim = o.limits();
            let req = o.req();
            let path_id = format!("{path} ({})", o.id);
            let req = layer_req(c, loc, &path_id, req, &[]);
            let RawOrg {
                id,
                name,
                webhook,
                webhook_secret_env,
                guardrails,
                require_client_cert,
                webhook_format,
                alert_email,
                ..
            } = o;
            check_unique(c, loc, &path, "org", &id, &mut seen);
            let path = format!("{path} ({id})");
            check_webhook(
                c,
                loc,
                &path,
                webhook.as_deref(),
                webhook_secret_env.as_deref(),
            );
            let alerts = check_alerts(
                c,
                loc,
                &path,
                (webhook.as_deref(), webhook_secret_env.as_deref()),
                webhook_format.as_deref(),
                alert_email,
            );
            Org {
                alerts,
                req,
                guardrails: guard_refs(c, loc, &path, &guardrails, guards),
                limits: bind_scopes(layer_limits(c, loc, &path, lim, None), &id),
                id: id.into(),
                name,
                // An unsigned format has no secret: "" (checked in alerts.rs).
                webhook: webhook.map(|w| (w, webhook_secret_env.unwrap_or_default())),
                require_client_cert: require_client_cert.unwrap_or(false),
                log_sinks: Box::default(),
                log_retention: None,
            }
        })
        .collect()
}

pub(super) fn check_groups(
    c: &mut Checker,
    raw: Vec<(RawGroup, Loc, String)>,
    orgs: &[Org],
    models: &[Model],
    guards: &[Guardrail],
) -> Vec<Group> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (g, loc, path) in raw {
        check_unique(c, loc, &path, "group", &g.id, &mut seen);
        let path = format!("{path} ({})", g.id);
        let Some(oi) = orgs.iter().position(|o| *o.id == *g.org) else {
            c.problem(
                loc,
                format!("{path}.org"),
                format!("unknown org {:?}", g.org),
            );
            continue;
        };
        let refs = guard_refs(c, loc, &path, &g.guardrails, guards);
        let org = &orgs[oi];
        let req = layer_req(
            c,
            loc,
            &path,
            g.req(),
            &[(format!("org {}", org.id), org.req.as_deref())],
        );
        let mut group = check_group(c, loc, &path, g, (oi, org), models);
        group.guardrails = refs;
        group.req = req;
        out.push(group);
    }
    out
}

/// One group, its org found (index and entry).
fn check_group(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    g: RawGroup,
    (oi, org): (usize, &Org),
    models: &[Model],
) -> Group {
    let lim = g.limits();
    let RawGroup {
        id,
        org: _,
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
        webhook_secret_env,
        alert_thresholds,
        error_rate_alert,
        self_service,
        markup_pct,
        invoice_to,
        guardrails: _,
        require_client_cert,
        preset,
        webhook_format,
        alert_email,
        budget_clamp,
        ..
    } = g;
    let parent = format!("org {}", org.id);
    if let Some(m) = mtls::looser(require_client_cert, (&parent, org.require_client_cert)) {
        c.problem(loc, format!("{path}.require_client_cert"), m);
    }
    let limits = layer_limits(c, loc, path, lim, Some((&parent, &org.limits)));
    let state = group_state(c, loc, path, state.as_deref());
    let alias_map = group_aliases(c, loc, path, aliases, models);
    let default_model = default_model.and_then(|d| {
        let resolved = alias_map.get(&d).cloned().or_else(|| catalogue(models, &d));
        if resolved.is_none() {
            c.problem(
                loc,
                format!("{path}.default_model"),
                format!("{d:?} is neither an alias nor in the model catalogue"),
            );
        }
        resolved
    });
    let fallbacks = group_fallbacks(c, loc, path, fallbacks, models);
    let routing = group_routing(c, loc, path, routing.as_deref());
    let log_level = group_log_level(c, loc, path, log_level.as_deref());
    check_webhook(
        c,
        loc,
        path,
        webhook.as_deref(),
        webhook_secret_env.as_deref(),
    );
    let alerts = check_alerts(
        c,
        loc,
        path,
        (webhook.as_deref(), webhook_secret_env.as_deref()),
        webhook_format.as_deref(),
        alert_email,
    );
    let error_rate_alert = error_rate_alert.and_then(|a| check_error_rate_alert(c, loc, path, a));
    let alert_thresholds = check_alert_thresholds(c, loc, path, alert_thresholds, &limits);
    let retries = match retries {
        None => 2,
        Some(r @ 0..=10) => r as u32,
        Some(r) => {
            c.problem(loc, format!("{path}.retries"), format!("{r}: want 0..=10"));
            2
        }
    };
    let self_service = self_service.map(|ss| check_self_service(c, loc, path, ss, &limits));
    let markup_millipct = markup_pct.map_or(0, |p| check_markup(c, loc, path, p));
    let invoice_to = invoice_to.and_then(|to| check_invoice_to(c, loc, path, to));
    let at = |field: &str| format!("{path}.{field}");
    Group {
        org: oi,
        name,
        state,
        models: model_filter(c, loc, path, allow, deny_models),
        default_model,
        aliases: alias_map,
        routing,
        fallbacks,
        timeout: duration(
            c,
            loc,
            &at("timeout"),
            timeout.as_deref(),
            Duration::from_secs(60),
        ),
        retries,
        allowed_cidrs: allowed_cidrs.map(|l| cidrs(c, loc, &at("allowed_cidrs"), &l)),
        quarantine_cidrs: cidrs(c, loc, &at("quarantine_cidrs"), &quarantine_cidrs),
        quarantine_models: globs(c, loc, &at("quarantine_models"), &quarantine_models),
        key_ttl: key_ttl.map(|t| duration(c, loc, &at("key_ttl"), Some(&t), Duration::ZERO)),
        idle_disable: idle_disable
            .map(|t| duration(c, loc, &at("idle_disable"), Some(&t), Duration::ZERO)),
        tags: tags.into_iter().collect(),
        log_level,
        webhook,
        webhook_secret_env,
        alert_thresholds,
        error_rate_alert,
        self_service,
        markup_millipct,
        invoice_to,
        guardrails: Box::default(),
        require_client_cert: require_client_cert.unwrap_or(false) || org.require_client_cert,
        // The fields it took are filled in by the caller (presets.rs).
        alerts,
        preset: preset.map(|id| GroupPreset {
            id: id.into(),
            fields: vec![],
        }),
        req: None,
        budget_clamp: budget_clamp.unwrap_or(false),
        limits: bind_scopes(limits, &id),
        log_sinks: Box::default(),
        log_retention: None,
        id: id.into(),
    }
}

/// The layer's limits with its pattern pools named after its id.
fn bind_scopes(mut limits: Limits, id: &str) -> Limits {
    limits.bind(id);
    limits
}

/// The largest `markup_pct`: ten times the cost.
const MAX_MARKUP_PCT: f64 = 1000.0;

/// `markup_pct` in thousandths of a per cent: a number in `0 ..= 1000` with at most three
/// decimals (so `12.5` is exactly 12 500 and no amount depends on float rounding).
fn check_markup(c: &mut Checker, loc: Loc, path: &str, pct: f64) -> u32 {
    let milli = pct * 1000.0;
    if !pct.is_finite() || !(0.0..=MAX_MARKUP_PCT).contains(&pct) {
        c.problem(
            loc,
            format!("{path}.markup_pct"),
            format!("{pct}: want a per cent in 0 ..= {MAX_MARKUP_PCT}"),
        );
        return 0;
    }
    if (milli - milli.round()).abs() > 1e-6 {
        c.problem(
            loc,
            format!("{path}.markup_pct"),
            format!("{pct}: at most three decimals"),
        );
        return 0;
    }
    milli.round() as u32
}

/// `invoice_to`: a name, not blank, without control characters (it is a CSV cell and a
/// heading in the console).
fn check_invoice_to(c: &mut Checker, loc: Loc, path: &str, to: String) -> Option<Arc<str>> {
    if to.trim().is_empty() || to.len() > 200 || to.chars().any(char::is_control) {
        c.problem(
            loc,
            format!("{path}.invoice_to"),
            format!("{to:?}: want a non-empty name of at most 200 bytes, no control characters"),
        );
        return None;
    }
    Some(to.into())
}

/// The catalogue's own name for `name`, if it is a catalogue model.
fn catalogue(models: &[Model], name: &str) -> Option<Arc<str>> {
    models
        .iter()
        .find(|m| *m.name == *name)
        .map(|m| m.name.clone())
}

fn group_state(c: &mut Checker, loc: Loc, path: &str, state: Option<&str>) -> GroupState {
    match state {
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
    }
}

fn group_aliases(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    aliases: impl IntoIterator<Item = (String, String)>,
    models: &[Model],
) -> HashMap<String, Arc<str>> {
    let mut alias_map = HashMap::new();
    for (from, to) in aliases {
        match catalogue(models, &to) {
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
    alias_map
}

fn group_fallbacks(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    fallbacks: impl IntoIterator<Item = (String, Vec<String>)>,
    models: &[Model],
) -> HashMap<Arc<str>, Vec<Arc<str>>> {
    let mut fb = HashMap::new();
    for (from, chain) in fallbacks {
        let Some(from_m) = catalogue(models, &from) else {
            c.problem(
                loc,
                format!("{path}.fallbacks"),
                format!("{from:?} is not in the model catalogue"),
            );
            continue;
        };
        let mut resolved = vec![];
        for to in chain {
            match catalogue(models, &to) {
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
    fb
}

fn group_routing(c: &mut Checker, loc: Loc, path: &str, routing: Option<&str>) -> Routing {
    match routing {
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
    }
}

fn group_log_level(c: &mut Checker, loc: Loc, path: &str, level: Option<&str>) -> LogLevel {
    match level {
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
    }
}

fn check_webhook(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    webhook: Option<&str>,
    secret_env: Option<&str>,
) {
    if let Some(w) = webhook {
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
    // Whether a secret is required depends on `webhook_format` (alerts.rs).
    if let (None, Some(_)) = (webhook, secret_env) {
        c.problem(loc, format!("{path}.webhook_secret_env"), "needs webhook");
    }
    if let Some(env) = secret_env {
        if env.is_empty() || env.contains('=') || env.contains('\0') {
            c.problem(
                loc,
                format!("{path}.webhook_secret_env"),
                format!("{env:?} is not an environment variable name"),
            );
        }
    }
}

fn check_error_rate_alert(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    a: RawErrorRateAlert,
) -> Option<ErrorRateAlert> {
    let RawErrorRateAlert {
        threshold,
        window,
        min_requests,
    } = a;
    let p = format!("{path}.error_rate_alert");
    let mut ok = true;
    if !(threshold.is_finite() && threshold > 0.0 && threshold < 1.0) {
        c.problem(
            loc,
            format!("{p}.threshold"),
            format!("{threshold}: want a fraction between 0 and 1"),
        );
        ok = false;
    }
    let window = duration(
        c,
        loc,
        &format!("{p}.window"),
        Some(&window),
        Duration::from_secs(60),
    );
    if window.is_zero() {
        c.problem(loc, format!("{p}.window"), "want a duration above 0");
        ok = false;
    }
    let min_requests = NonZeroU64::new(min_requests);
    if min_requests.is_none() {
        c.problem(loc, format!("{p}.min_requests"), "want at least 1");
    }
    Some(ErrorRateAlert {
        threshold,
        window,
        min_requests: min_requests?,
    })
    .filter(|_| ok)
}

/// `alert_thresholds`, checked and sorted.
fn check_alert_thresholds(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    mut thresholds: Vec<f64>,
    limits: &Limits,
) -> Vec<f64> {
    if thresholds.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        c.problem(
            loc,
            format!("{path}.alert_thresholds"),
            "thresholds are fractions of budget_usd above 0",
        );
    }
    if !thresholds.is_empty() && limits.budget.is_none() {
        c.problem(loc, format!("{path}.alert_thresholds"), "needs budget_usd");
    }
    thresholds.sort_by(f64::total_cmp);
    thresholds
}

fn check_self_service(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    ss: RawSelfService,
    limits: &Limits,
) -> SelfService {
    let RawSelfService {
        enabled,
        max_keys_per_owner,
        require_expiry,
        max_ttl,
        limits: raw,
    } = ss;
    let ss_path = format!("{path}.self_service.limits");
    let ceilings = layer_limits(c, loc, &ss_path, raw, Some(("the group", limits)));
    SelfService {
        enabled,
        max_keys_per_owner,
        require_expiry,
        max_ttl: max_ttl.map(|t| {
            duration(
                c,
                loc,
                &format!("{path}.self_service.max_ttl"),
                Some(&t),
                Duration::ZERO,
            )
        }),
        limits: ceilings,
    }
}

pub(super) fn check_keys(
    c: &mut Checker,
    raw: Vec<(RawKey, Loc, String)>,
    groups: &[Group],
    orgs: &[Org],
    guards: &[Guardrail],
) -> KeyDefs {
    let mut keys = KeyChecker::default();
    for (k, loc, path) in raw {
        keys.check(c, k, loc, path, (groups, orgs, guards));
    }
    keys.finish()
}

/// Checks `[[keys]]` elements one at a time (the fast path feeds it chunk by chunk, so the
/// raw form of a key is dropped as soon as it is checked).
#[derive(Default)]
pub(super) struct KeyChecker {
    /// Indices into `out` by id and by digest, for the duplicate checks: 4 bytes a slot
    /// instead of a copy of each id pointer or digest (at a million keys, sets of those took
    /// ~100 MB next to the definitions).
    ids: HashTable<u32>,
    digests: HashTable<u32>,
    /// Ids of keys not kept (unknown group): the file is refused anyway.
    dropped_ids: HashSet<Arc<str>>,
    id_hash: RandomState,
    out: KeyDefs,
}

/// Finds `id` or `digest` among the keys kept so far.
fn find_index<T: Eq + ?Sized>(
    table: &HashTable<u32>,
    hash: u64,
    out: &KeyDefs,
    field: impl Fn(&KeyDef) -> &T,
    want: &T,
) -> bool {
    table
        .find(hash, |&i| field(&out[i as usize]) == want)
        .is_some()
}

impl KeyChecker {
    pub(super) fn check(
        &mut self,
        c: &mut Checker,
        k: RawKey,
        loc: Loc,
        path: String,
        (groups, orgs, guards): (&[Group], &[Org], &[Guardrail]),
    ) {
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
            tags,
            guardrails,
            require_client_cert,
            client_cert_sha256,
            allowed_providers,
            required_params,
            fixed_params,
            allowed_origins,
            ..
        } = k;
        let raw_req = super::super::reqpolicy::RawReq {
            allowed_providers: allowed_providers.as_deref(),
            required_params: &required_params,
            fixed_params: fixed_params.as_ref(),
            allowed_origins: allowed_origins.as_deref(),
        };
        let id: Arc<str> = id.into();
        let hash = self.id_hash.hash_one(&*id);
        if id.is_empty() {
            c.problem(loc, format!("{path}.id"), "key id must not be empty");
        } else if self.dropped_ids.contains(&id)
            || find_index(&self.ids, hash, &self.out, |k| &*k.id, &*id)
        {
            c.problem(
                loc,
                format!("{path}.id"),
                format!("duplicate key id {id:?}"),
            );
        }
        let path = format!("{path} ({id})");
        let Some(gi) = groups.iter().position(|g| *g.id == *group) else {
            c.problem(
                loc,
                format!("{path}.group"),
                format!("unknown group {group:?}"),
            );
            if !id.is_empty() {
                self.dropped_ids.insert(id);
            }
            return;
        };
        // This key is kept: it will be `out[index]`.
        let index = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        let out = &self.out;
        if !id.is_empty() {
            let rehash = &self.id_hash;
            self.ids
                .insert_unique(hash, index, |&i| rehash.hash_one(&*out[i as usize].id));
        }
        let g = &groups[gi];
        let bound = tightest(&g.limits, &orgs[g.org].limits);
        let parent = format!("group {}", g.id);
        let limits = layer_limits(c, loc, &path, lim, Some((&parent, &bound)));
        let mut digest = [0u8; 32];
        if sha256.len() != 64 || hex::decode_to_slice(&sha256, &mut digest).is_err() {
            c.problem(
                loc,
                format!("{path}.sha256"),
                "want 64 hex digits (see `tollgate keygen`)",
            );
        } else {
            let hash = DigestHash.hash_one(digest);
            if find_index(&self.digests, hash, out, |k| &k.digest, &digest) {
                c.problem(
                    loc,
                    format!("{path}.sha256"),
                    "the same key digest appears twice",
                );
            }
            self.digests.insert_unique(hash, index, |&i| {
                DigestHash.hash_one(out[i as usize].digest)
            });
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
        let models = model_filter(c, loc, &path, models, deny_models);
        let own_models = models.allow_src.is_some() || !models.deny_src.is_empty();
        let parent_requires = (&*parent, g.require_client_cert);
        if let Some(m) = mtls::looser(require_client_cert, parent_requires) {
            c.problem(loc, format!("{path}.require_client_cert"), m);
        }
        let sha256 = match mtls::fingerprints(client_cert_sha256.as_deref().unwrap_or_default()) {
            Ok(l) => l,
            Err(m) => {
                c.problem(loc, format!("{path}.client_cert_sha256"), m);
                vec![]
            }
        };
        let org = &orgs[g.org];
        let req = layer_req(
            c,
            loc,
            &path,
            raw_req,
            &[
                (format!("group {}", g.id), g.req.as_deref()),
                (format!("org {}", org.id), org.req.as_deref()),
            ],
        );
        self.out.push(KeyDef {
            req,
            name: name.map(String::into_boxed_str),
            group: gi,
            digest,
            expires_at,
            state,
            models: own_models.then(|| Box::new(models)),
            allowed_cidrs: allowed_cidrs
                .map(|l| cidrs(c, loc, &format!("{path}.allowed_cidrs"), &l)),
            limits: bind_scopes(limits, &id),
            tags: tags.into_iter().collect(),
            guardrails: guard_refs(c, loc, &path, &guardrails, guards),
            client_cert: mtls::CertRule::new(require_client_cert, sha256),
            id,
        });
    }

    pub(super) fn finish(self) -> KeyDefs {
        self.out
    }
}

#[cfg(test)]
mod invoice_field_tests {
    use super::super::parse_config;
    use std::path::Path;

    const HEAD: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[providers]]\nid = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:2\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n[[orgs]]\nid = \"o\"\n";

    fn group(id: &str, extra: &str) -> String {
        format!("\n[[groups]]\nid = \"{id}\"\norg = \"o\"\n{extra}\n")
    }

    #[test]
    fn markup_and_invoice_to_are_read_exactly() {
        let text = HEAD.to_string()
            + &group("a", "markup_pct = 12.5\ninvoice_to = \"customer-acme\"")
            + &group("b", "markup_pct = 15")
            + &group("c", "markup_pct = 0.001")
            + &group("d", "");
        let cfg = parse_config(&text, Path::new("t.toml")).expect("valid");
        let got: Vec<(u32, Option<&str>)> = cfg
            .groups
            .iter()
            .map(|g| (g.markup_millipct, g.invoice_to.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (12_500, Some("customer-acme")),
                (15_000, None),
                (1, None),
                (0, None)
            ]
        );
    }

    #[test]
    fn bad_markup_and_invoice_to_name_the_field_and_line() {
        let text = HEAD.to_string()
            + &group("a", "markup_pct = -1")
            + &group("b", "markup_pct = 1000.5")
            + &group("c", "markup_pct = 12.3456")
            + &group("d", "invoice_to = \"  \"")
            + &group("e", "markup_pct = \"15\"");
        let err = parse_config(&text, Path::new("t.toml")).expect_err("problems");
        let got: Vec<String> = err
            .problems
            .iter()
            .map(|p| format!("{} {}", p.line.map_or(0, |l| l.0), p.path))
            .collect();
        let line = |id: &str| {
            let at = text.find(&format!("id = \"{id}\"")).expect("group");
            text[..at].matches('\n').count() // the `[[groups]]` line above it
        };
        for (id, field) in [
            ("a", "markup_pct"),
            ("b", "markup_pct"),
            ("c", "markup_pct"),
            ("d", "invoice_to"),
        ] {
            let want = format!(
                "{} groups[{}] ({id}).{field}",
                line(id),
                "abcd".find(id).expect("id")
            );
            assert!(got.contains(&want), "{want} in {got:?}");
        }
        // A string where a number belongs: the parser's own message, at its line.
        assert!(
            err.problems.iter().any(|p| p.path.starts_with("groups[4]")
                && p.message.contains("markup_pct")
                || p.message.contains("invalid type")),
            "{err}"
        );
    }
}

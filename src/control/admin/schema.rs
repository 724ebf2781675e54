//! `docs/openapi.json` against the answer and request types: for each documented schema, a
//! sample of its type with every field set serializes to exactly the schema's
//! `properties` (nested objects too), and a minimal sample — every optional field left
//! out — to exactly its `required`. A field added to a type or to the document alone
//! fails here; the samples are full struct literals, so a new field does not compile
//! until it is given a value.

use crate::control::groups::BulkResult;
use crate::control::invoices::{Invoice, InvoiceLine, InvoiceList};
use crate::control::keys::{BatchAnswer, BatchKey};
use crate::control::reconcile::view::DriftRow;
use crate::control::reconcile::{Reconciliation, RunView};
use crate::control::requests::{KeyPatch, MoveKey, NewBatch, NewKey, Patch, PatchKey, Regenerate};
use crate::control::spend::{
    GroupSpend, GroupSpendBy, GroupSpendTimeline, KeySpend, KeySpendRow, ModelSpendRow, OrgSpend,
    SpendTotals, TagSpend, TagSpendRow, TimelineBucket,
};
use crate::control::tokens::{NewToken, TokenView, TokenWithSecret, Whoami};
use crate::control::view::{
    GroupView, KeyCounts, KeyView, KeyWithSecret, LimitView, LimitsView, List, Refusals,
};
use crate::policy::config::raw::LimitField;
use crate::policy::snapshot::reqpolicy::ReqPolicyView;
use crate::storage::KeySpec;
use crate::storage::{DriftRecord, ProviderRun, RunRecord};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A schema with its local `$ref` followed and its `allOf` parts merged (`properties` and
/// `required` united).
fn schema(doc: &Value, s: &Value) -> Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .unwrap_or_else(|| panic!("$ref {r} does not resolve"));
        return schema(doc, target);
    }
    let Some(parts) = s.get("allOf").and_then(Value::as_array) else {
        return s.clone();
    };
    let mut props = serde_json::Map::new();
    let mut required = vec![];
    for part in parts.iter().map(|p| schema(doc, p)) {
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            props.extend(p.clone());
        }
        if let Some(r) = part.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    }
    json!({"type": "object", "properties": props, "required": required})
}

/// Differences between a sample and a schema, at `at`: with `minimal`, the sample's
/// fields against `required`, else against `properties`; nested objects and the first
/// item of arrays likewise, where the schema lists properties.
fn compare(doc: &Value, at: &str, sample: &Value, s: &Value, minimal: bool, out: &mut Vec<String>) {
    let s = schema(doc, s);
    match sample {
        Value::Object(fields) => {
            let Some(props) = s.get("properties").and_then(Value::as_object) else {
                return; // a map (tags, metadata, by_code): its keys are data
            };
            let have: BTreeSet<&str> = fields.keys().map(String::as_str).collect();
            let want: BTreeSet<&str> = if minimal {
                s.get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            } else {
                props.keys().map(String::as_str).collect()
            };
            let what = if minimal { "required" } else { "properties" };
            for f in have.difference(&want) {
                out.push(format!(
                    "{at}: the type has `{f}`, the document's {what} do not"
                ));
            }
            for f in want.difference(&have) {
                out.push(format!(
                    "{at}: the document's {what} have `{f}`, the type does not"
                ));
            }
            for (f, v) in fields {
                if let Some(fs) = props.get(f) {
                    compare(doc, &format!("{at}.{f}"), v, fs, minimal, out);
                }
            }
        }
        Value::Array(items) => {
            if let (Some(first), Some(item)) = (items.first(), s.get("items")) {
                compare(doc, &format!("{at}[]"), first, item, minimal, out);
            }
        }
        _ => {}
    }
}

fn key_spec() -> KeySpec {
    let limit = Some(LimitField::Plain(1));
    KeySpec {
        name: Some("k".into()),
        owner: Some("alice".into()),
        expires_at: Some("2030-01-01T00:00:00Z".into()),
        models: Some(vec!["gpt-*".into()]),
        deny_models: Some(vec!["o1".into()]),
        allowed_cidrs: Some(vec!["10.0.0.0/8".into()]),
        rpm: limit,
        rph: limit,
        rpd: limit,
        tpm: limit,
        tpd: limit,
        max_parallel: limit,
        max_tokens: limit,
        budget_usd: Some(LimitField::Plain(1.0)),
        budget_period: Some("monthly".into()),
        soft_budget_usd: Some(0.5),
        token_budget: limit,
        token_budget_period: Some("monthly".into()),
        model_limits: Some(BTreeMap::from([(
            "gpt-4o*".into(),
            crate::policy::config::raw::RawPatternLimits {
                rpm: limit,
                rph: limit,
                rpd: limit,
                tpm: limit,
                tpd: limit,
                max_parallel: limit,
                max_tokens: limit,
                budget_usd: Some(LimitField::Plain(1.0)),
                token_budget: limit,
            },
        )])),
        tags: Some(BTreeMap::from([("team".into(), "a".into())])),
        metadata: Some(serde_json::Map::new()),
        rotation_interval: Some("30d".into()),
        guardrails: Some(vec!["pii".into()]),
        require_client_cert: Some(true),
        client_cert_sha256: Some(vec!["ab".repeat(32)]),
        allowed_providers: Some(vec!["openai".into()]),
        required_params: Some(vec!["user".into()]),
        fixed_params: Some(BTreeMap::from([("store".into(), json!(false))])),
        allowed_origins: Some(vec!["https://app.example.com".into()]),
    }
}

fn req_view() -> ReqPolicyView {
    ReqPolicyView {
        allowed_providers: Some(vec!["openai".into()]),
        required_params: vec!["user".into()],
        fixed_params: serde_json::Map::from_iter([("store".to_string(), json!(false))]),
        allowed_origins: Some(vec!["https://app.example.com".into()]),
    }
}

fn limits() -> LimitsView {
    let l = Some(LimitView::Plain(1));
    LimitsView {
        rpm: l,
        rph: l,
        rpd: l,
        tpm: l,
        tpd: l,
        max_parallel: l,
        max_tokens: Some(LimitView::Shadow {
            value: 1,
            mode: "shadow",
        }),
        budget_usd: Some(LimitView::Plain(1.0)),
        budget_period: Some("monthly"),
        soft_budget_usd: Some(0.5),
        token_budget: l,
        token_budget_period: Some("monthly"),
        model_limits: Some(BTreeMap::from([(
            "gpt-4o*".into(),
            LimitsView {
                rpm: l,
                budget_usd: Some(LimitView::Plain(1.0)),
                budget_period: Some("monthly"),
                ..LimitsView::default()
            },
        )])),
    }
}

/// An API key's view (every field), or with `file`, a file key's (no `updated_at`,
/// `grace_until`).
fn key(file: bool) -> KeyView {
    let t = || Some("2030-01-01T00:00:00Z".to_string());
    KeyView {
        id: "key_1".into(),
        name: Some("k".into()),
        prefix: Some("tg-abc".into()),
        group: "grp".into(),
        org: Some("org".into()),
        owner: Some("alice".into()),
        source: "api",
        status: "active",
        created_at: t(),
        created_by: "root".into(),
        updated_at: if file { None } else { t() },
        expires_at: t(),
        last_used_at: t(),
        limits: if file {
            LimitsView::default()
        } else {
            limits()
        },
        models: Some(vec!["gpt-*".into()]),
        deny_models: Some(vec![]),
        allowed_cidrs: Some(vec![]),
        tags: BTreeMap::new(),
        metadata: None,
        rotation_interval: None,
        guardrails: None,
        guardrails_in_force: vec![],
        require_client_cert: false,
        client_cert_sha256: None,
        request_policy: req_view(),
        request_policy_in_force: req_view(),
        grace_until: if file { None } else { Some(t()) },
        spend_usd: 0.0,
        spend_all_time_usd: 0.0,
        budget_usd: Some(1.0),
        token_budget: Some(1000),
        tokens_used: 10,
        model_usage: BTreeMap::from([(
            "gpt-4o*".into(),
            crate::control::view::PatternUsage {
                spend_usd: 0.5,
                tokens_used: 10,
            },
        )]),
    }
}

/// A group; `full`: with every limit set.
fn group(full: bool) -> GroupView {
    GroupView {
        id: "grp".into(),
        name: Some("g".into()),
        org: "org".into(),
        state: "active",
        file_state: "active",
        state_source: "config",
        limits: if full {
            limits()
        } else {
            LimitsView::default()
        },
        models: None,
        deny_models: vec![],
        default_model: None,
        routing: "ordered".into(),
        retries: 1,
        timeout: "30s".into(),
        key_ttl: None,
        idle_disable: None,
        tags: BTreeMap::new(),
        log_level: "metadata".into(),
        markup_pct: 12.5,
        invoice_to: full.then(|| "customer-acme".into()),
        keys: KeyCounts::default(),
        budget_usd: None,
        budget_period: "monthly",
        spend_usd: 0.0,
        spend_all_time_usd: 0.0,
        token_budget: full.then_some(1000),
        tokens_used: 0,
        model_usage: BTreeMap::new(),
        refusals: Refusals {
            total: 1,
            by_code: BTreeMap::from([("rate_limited".into(), 1)]),
        },
        guardrails: vec!["pii".into()],
        guardrail_trips: crate::control::view::GuardrailTrips {
            total: 2,
            by_guardrail: BTreeMap::from([("pii".into(), BTreeMap::from([("redact".into(), 2)]))]),
        },
        require_client_cert: false,
        preset: full.then(|| "strict".into()),
        preset_fields: vec!["log_level".into()],
        request_policy: req_view(),
        request_policy_in_force: req_view(),
    }
}

fn token() -> TokenView {
    TokenView {
        id: "tok_1".into(),
        name: "t".into(),
        role: "viewer".into(),
        groups: Some(vec!["grp".into()]),
        owner: None,
        prefix: "tga-abc…".into(),
        created_at: "2030-01-01T00:00:00Z".into(),
        created_by: "root".into(),
        revoked_at: None,
    }
}

fn whoami(root: bool) -> Whoami {
    Whoami {
        id: "tok_1".into(),
        name: "t".into(),
        role: "viewer".into(),
        groups: None,
        owner: None,
        prefix: (!root).then(|| "tga-abc…".into()),
        may: vec!["GET /v1/keys".into()],
    }
}

fn totals() -> SpendTotals {
    SpendTotals {
        requests: 1,
        input_tokens: 2,
        cached_input_tokens: 1,
        cache_write_tokens: 0,
        output_tokens: 3,
        reasoning_tokens: 0,
        cost_usd: 0.1,
    }
}

fn p<T>(v: Option<T>) -> Patch<T> {
    v.map_or(Patch::Null, Patch::Value)
}

fn full_patch() -> KeyPatch {
    let KeySpec {
        name,
        owner,
        expires_at,
        models,
        deny_models,
        allowed_cidrs,
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
        token_budget,
        token_budget_period,
        model_limits,
        tags,
        metadata,
        rotation_interval,
        guardrails,
        require_client_cert,
        client_cert_sha256,
        allowed_providers,
        required_params,
        fixed_params,
        allowed_origins,
    } = key_spec();
    KeyPatch {
        name: p(name),
        owner: p(owner),
        expires_at: p(expires_at),
        models: p(models),
        deny_models: p(deny_models),
        allowed_cidrs: p(allowed_cidrs),
        rpm: p(rpm),
        rph: p(rph),
        rpd: p(rpd),
        tpm: p(tpm),
        tpd: p(tpd),
        max_parallel: p(max_parallel),
        max_tokens: p(max_tokens),
        budget_usd: p(budget_usd),
        budget_period: p(budget_period),
        soft_budget_usd: p(soft_budget_usd),
        token_budget: p(token_budget),
        token_budget_period: p(token_budget_period),
        model_limits: p(model_limits),
        tags: p(tags),
        metadata: p(metadata),
        rotation_interval: p(rotation_interval),
        guardrails: p(guardrails),
        require_client_cert: p(require_client_cert),
        client_cert_sha256: p(client_cert_sha256),
        allowed_providers: p(allowed_providers),
        required_params: p(required_params),
        fixed_params: p(fixed_params),
        allowed_origins: p(allowed_origins),
    }
}

fn v(x: impl Serialize) -> Value {
    serde_json::to_value(x).expect("a sample serializes")
}

/// `(schema, a sample with every field, a minimal sample)` for each typed answer and
/// request.
fn samples() -> Vec<(&'static str, Value, Value)> {
    let drift_row = DriftRow::from(DriftRecord {
        day: 20_000,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        provider_requests: Some(3),
        provider_input_tokens: 110,
        provider_output_tokens: 10,
        gateway_requests: 3,
        gateway_input_tokens: 100,
        gateway_output_tokens: 10,
        diff_pct: Some(9.09),
        drift_alert_pct: 2.0,
        alerted: true,
        checked_ms: 1,
    });
    let provider_run = ProviderRun {
        provider: "openai".into(),
        ok: false,
        error: Some("HTTP 500".into()),
        rows: 0,
        alerts: 0,
    };
    let run = RunView::from(RunRecord {
        id: "rec_1".into(),
        at_ms: 1,
        trigger: "api".into(),
        actor: "root".into(),
        from_day: 1,
        to_day: 2,
        providers: vec![provider_run.clone()],
    });
    let ttl = Some(Duration::from_secs(3600));
    let secret = |file| KeyWithSecret {
        view: key(file),
        key: "tg-x".into(),
    };
    let batch_key = BatchKey {
        id: "key_1".into(),
        name: Some("k-1".into()),
        prefix: "tg-abc".into(),
        key: "tg-x".into(),
    };
    let by_model = GroupSpendBy {
        group: "grp".into(),
        from: "a".into(),
        to: "b".into(),
        data: vec![ModelSpendRow {
            model: "gpt-4o".into(),
            totals: totals(),
        }],
    };
    let by_key = GroupSpendBy {
        group: "grp".into(),
        from: "a".into(),
        to: "b".into(),
        data: vec![KeySpendRow {
            key_id: "key_1".into(),
            totals: totals(),
        }],
    };
    let bucket = TimelineBucket {
        start: "a".into(),
        totals: totals(),
    };
    let tag_row = TagSpendRow {
        value: None,
        totals: totals(),
    };
    let invoice_line = InvoiceLine {
        group: "grp".into(),
        model: "gpt-4o".into(),
        requests: 1,
        input_tokens: 2,
        cached_input_tokens: 1,
        cache_write_tokens: 0,
        output_tokens: 3,
        reasoning_tokens: 0,
        cost_usd: 0.1,
        markup_pct: 10.0,
        markup_usd: 0.01,
        total_usd: 0.11,
    };
    let invoice = Invoice {
        invoice_to: "customer-acme".into(),
        groups: vec!["grp".into()],
        subtotal_usd: 0.1,
        markup_usd: 0.01,
        total_usd: 0.11,
        lines: vec![invoice_line.clone()],
    };
    let same = |name, x: Value| (name, x.clone(), x);
    let error = crate::control::admin::ErrorBody {
        error: crate::control::admin::ErrorDetail {
            message: "m",
            kind: "invalid_request_error",
            code: "invalid_request",
            param: None,
        },
    };
    let problem = super::introspect::PolicyProblem {
        line: Some(1),
        column: Some(2),
        path: "groups[0].rpm".into(),
        message: "m".into(),
    };
    let policy = super::introspect::PolicyInfo {
        path: "/etc/tollgate.toml".into(),
        generation: 1,
        counts: super::introspect::PolicyCounts {
            providers: 1,
            models: 1,
            orgs: 1,
            groups: 1,
            file_keys: 1,
        },
        reloads: super::introspect::Reloads { ok: 1, failed: 0 },
        file_ok: false,
        summary: None,
        problems: vec![problem.clone()],
    };
    vec![
        same("Error", v(&error)),
        ("Limits", v(limits()), v(LimitsView::default())),
        same(
            "ShadowLimit",
            v(LimitView::Shadow {
                value: 1,
                mode: "shadow",
            }),
        ),
        ("Key", v(key(false)), v(key(true))),
        ("KeyWithSecret", v(secret(false)), v(secret(true))),
        (
            "KeyList",
            v(List {
                data: vec![key(false)],
                next_cursor: None,
            }),
            v(List {
                data: vec![key(true)],
                next_cursor: None,
            }),
        ),
        (
            "CreateKeyRequest",
            v(NewKey {
                group: "grp".into(),
                ttl,
                spec: key_spec(),
            }),
            // `name` is optional in the stored KeySpec but required of a new key
            // (`spec::check_spec`, after the group is checked).
            v(NewKey {
                group: "grp".into(),
                ttl: None,
                spec: KeySpec {
                    name: Some("k".into()),
                    ..KeySpec::default()
                },
            }),
        ),
        (
            "BatchRequest",
            v(NewBatch {
                count: 2,
                group: "grp".into(),
                name_prefix: Some("k".into()),
                ttl,
                spec: KeySpec {
                    name: None,
                    ..key_spec()
                },
            }),
            v(NewBatch {
                count: 2,
                group: "grp".into(),
                name_prefix: None,
                ttl: None,
                spec: KeySpec::default(),
            }),
        ),
        same("BatchKey", v(&batch_key)),
        same(
            "BatchResponse",
            v(BatchAnswer {
                data: vec![batch_key.clone()],
            }),
        ),
        (
            "PatchKeyRequest",
            v(PatchKey {
                ttl,
                fields: full_patch(),
            }),
            v(PatchKey::default()),
        ),
        (
            "RegenerateRequest",
            v(Regenerate { grace_period: ttl }),
            v(Regenerate { grace_period: None }),
        ),
        same(
            "MoveRequest",
            v(MoveKey {
                group: "grp".into(),
            }),
        ),
        ("Group", v(group(true)), v(group(false))),
        same("KeyCounts", v(KeyCounts::default())),
        (
            "GroupList",
            v(List {
                data: vec![group(true)],
                next_cursor: None,
            }),
            v(List {
                data: vec![group(false)],
                next_cursor: None,
            }),
        ),
        same(
            "BulkResult",
            v(BulkResult {
                affected: 1,
                skipped: 0,
            }),
        ),
        same(
            "BulkPatchResult",
            v(crate::control::bulk_keys::BulkPatchResult {
                affected: 1,
                skipped: vec![crate::control::bulk_keys::BulkSkip {
                    id: "key_1".into(),
                    reason: "key_revoked: key key_1 has been revoked".into(),
                }],
            }),
        ),
        same(
            "ReloadResult",
            v(super::system::ReloadResult {
                reloaded: true,
                generation: 2,
            }),
        ),
        (
            "NewToken",
            v(NewToken {
                name: "t".into(),
                role: "developer".into(),
                groups: Some(vec!["grp".into()]),
                owner: Some("alice".into()),
            }),
            v(NewToken {
                name: "t".into(),
                role: "admin".into(),
                groups: None,
                owner: None,
            }),
        ),
        same("Token", v(token())),
        same(
            "TokenWithSecret",
            v(TokenWithSecret {
                view: token(),
                token: "tga-x".into(),
            }),
        ),
        same(
            "TokenList",
            v(List {
                data: vec![token()],
                next_cursor: None,
            }),
        ),
        ("Whoami", v(whoami(false)), v(whoami(true))),
        same("SpendTotals", v(totals())),
        same(
            "GroupSpend",
            v(GroupSpend {
                group: "grp".into(),
                from: "a".into(),
                to: "b".into(),
                totals: totals(),
            }),
        ),
        same(
            "KeySpend",
            v(KeySpend {
                key_id: "key_1".into(),
                group: "grp".into(),
                from: "a".into(),
                to: "b".into(),
                totals: totals(),
            }),
        ),
        same(
            "OrgSpend",
            v(OrgSpend {
                org: "org".into(),
                from: "a".into(),
                to: "b".into(),
                totals: totals(),
            }),
        ),
        same("ModelSpendRow", v(&by_model.data[0])),
        same("KeySpendRow", v(&by_key.data[0])),
        same("TimelineBucket", v(&bucket)),
        same("TagSpendRow", v(&tag_row)),
        same("GroupSpendByModel", v(&by_model)),
        same("GroupSpendByKey", v(&by_key)),
        same(
            "GroupSpendTimeline",
            v(GroupSpendTimeline {
                group: "grp".into(),
                grain: "day",
                from: "a".into(),
                to: "b".into(),
                data: vec![bucket.clone()],
            }),
        ),
        same(
            "TagSpend",
            v(TagSpend {
                tag: "team".into(),
                from: "a".into(),
                to: "b".into(),
                data: vec![tag_row.clone()],
            }),
        ),
        same("InvoiceLine", v(&invoice_line)),
        same("Invoice", v(&invoice)),
        same(
            "InvoiceList",
            v(InvoiceList {
                period: "2026-11".into(),
                from: "a".into(),
                to: "b".into(),
                data: vec![invoice.clone()],
            }),
        ),
        same("Refusals", v(group(true).refusals)),
        same("GuardrailTrips", v(group(true).guardrail_trips)),
        same("PolicyProblem", v(&problem)),
        same("PolicyInfo", v(&policy)),
        same("DriftRow", v(&drift_row)),
        same("ProviderRun", v(&provider_run)),
        same("ReconciliationRun", v(&run)),
        same(
            "Reconciliation",
            v(Reconciliation {
                from: "2026-12-01".into(),
                to: "2026-12-02".into(),
                data: vec![drift_row.clone()],
                runs: vec![run.clone()],
            }),
        ),
    ]
}

#[test]
fn documented_schemas_are_the_types_fields() {
    let doc = document();
    let mut problems = vec![];
    for (name, full, minimal) in samples() {
        let Some(s) = doc["components"]["schemas"].get(name) else {
            problems.push(format!("{name}: not in components.schemas"));
            continue;
        };
        compare(&doc, name, &full, s, false, &mut problems);
        compare(&doc, name, &minimal, s, true, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "docs/openapi.json and the admin API's types disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The comparison itself: a field on one side only is reported.
#[test]
fn a_field_on_one_side_only_is_found() {
    let doc = json!({});
    let s = json!({"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a"]});
    let mut out = vec![];
    compare(&doc, "T", &json!({"a": 1, "c": 2}), &s, false, &mut out);
    assert_eq!(
        out,
        [
            "T: the type has `c`, the document's properties do not",
            "T: the document's properties have `b`, the type does not",
        ]
    );
    out.clear();
    compare(&doc, "T", &json!({"a": 1}), &s, true, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

//! The request-shaping fields of a layer (org, group, key; docs/policy.md "Request
//! policy"): `allowed_providers`, `required_params`, `fixed_params`, `allowed_origins`.
//!
//! One checker serves the policy file and the admin API: [`check`] reads one layer's
//! fields, [`narrower`] says where a lower layer widens an upper one (naming both values).
//! What a request obeys is resolved in the snapshot (`snapshot::reqpolicy`).

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;
use std::collections::BTreeMap;

/// At most this many entries per list and per `fixed_params`.
const MAX_ENTRIES: usize = 64;
/// A `fixed_params` value takes at most this much JSON.
const MAX_VALUE: usize = 4096;

/// One layer's fields as written (file or admin API).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RawReq<'a> {
    pub(crate) allowed_providers: Option<&'a [String]>,
    pub(crate) required_params: &'a [String],
    pub(crate) fixed_params: Option<&'a BTreeMap<String, Value>>,
    pub(crate) allowed_origins: Option<&'a [String]>,
}

/// One layer's request policy, checked.
#[derive(Debug, Clone, Default)]
pub struct ReqPolicy {
    /// Provider id globs, as written, and compiled (`None`: every provider of the layer above).
    pub(crate) allowed_providers: Option<(Vec<String>, GlobSet)>,
    /// Top-level body fields a request must carry (not null).
    pub(crate) required_params: Vec<Box<str>>,
    /// Field name -> value, in name order.
    pub(crate) fixed_params: Vec<(Box<str>, Value)>,
    /// Origins (`scheme://host[:port]`, lower case); `None`: any.
    pub(crate) allowed_origins: Option<Vec<Box<str>>>,
}

impl ReqPolicy {
    pub(crate) fn is_empty(&self) -> bool {
        self.allowed_providers.is_none()
            && self.required_params.is_empty()
            && self.fixed_params.is_empty()
            && self.allowed_origins.is_none()
    }

    pub(crate) fn fixed(&self, name: &str) -> Option<&Value> {
        self.fixed_params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
}

/// `(field, message)` for each problem.
pub(crate) type Problems = Vec<(&'static str, String)>;

/// Fields the gateway owns (model, streaming, the prompt, the token cap): never fixed.
const GATEWAY_OWNED: [&str; 9] = [
    "model",
    "stream",
    "stream_options",
    "messages",
    "prompt",
    "input",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
];

/// Checks one layer; `None` when it sets none of the fields.
pub(crate) fn check(raw: RawReq<'_>) -> Result<Option<ReqPolicy>, Problems> {
    let mut problems = Problems::new();
    let mut out = ReqPolicy::default();
    if let Some(list) = raw.allowed_providers {
        if list.len() > MAX_ENTRIES {
            problems.push(("allowed_providers", format!("at most {MAX_ENTRIES} globs")));
        }
        let mut b = GlobSetBuilder::new();
        for g in list {
            match Glob::new(g) {
                Ok(glob) if !g.is_empty() => {
                    b.add(glob);
                }
                Ok(_) => problems.push(("allowed_providers", "an empty provider glob".into())),
                Err(e) => problems.push((
                    "allowed_providers",
                    format!("invalid glob {g:?}: {}", e.kind()),
                )),
            }
        }
        if let Ok(set) = b.build() {
            out.allowed_providers = Some((list.to_vec(), set));
        }
    }
    if raw.required_params.len() > MAX_ENTRIES {
        problems.push(("required_params", format!("at most {MAX_ENTRIES} fields")));
    }
    for p in raw.required_params {
        if p.is_empty() || p.len() > 256 {
            problems.push((
                "required_params",
                format!("{p:?}: want a top-level field name of 1 to 256 bytes"),
            ));
        } else if !out.required_params.iter().any(|q| **q == **p) {
            out.required_params.push(p.as_str().into());
        }
    }
    if let Some(fixed) = raw.fixed_params {
        if fixed.len() > MAX_ENTRIES {
            problems.push(("fixed_params", format!("at most {MAX_ENTRIES} fields")));
        }
        for (name, value) in fixed {
            if GATEWAY_OWNED.contains(&name.as_str()) {
                problems.push((
                    "fixed_params",
                    format!("{name:?} cannot be fixed: the gateway and the client's request set it (see max_tokens for a cap)"),
                ));
            } else if !super::api_fields::known_anywhere(name) {
                problems.push((
                    "fixed_params",
                    format!("{name:?} is not a request field of any API tollgate serves (docs/policy.md \"fixed_params\")"),
                ));
            } else if value.is_null() {
                problems.push(("fixed_params", format!("{name}: null cannot be fixed")));
            } else if serde_json::to_vec(value).map_or(usize::MAX, |v| v.len()) > MAX_VALUE {
                problems.push((
                    "fixed_params",
                    format!("{name}: at most {MAX_VALUE} bytes of JSON"),
                ));
            } else {
                out.fixed_params.push((name.as_str().into(), value.clone()));
            }
        }
    }
    if let Some(list) = raw.allowed_origins {
        if list.len() > MAX_ENTRIES {
            problems.push(("allowed_origins", format!("at most {MAX_ENTRIES} origins")));
        }
        let mut origins = Vec::with_capacity(list.len());
        for o in list {
            match origin(o) {
                Ok(o) => {
                    if !origins.contains(&o) {
                        origins.push(o);
                    }
                }
                Err(e) => problems.push(("allowed_origins", e)),
            }
        }
        out.allowed_origins = Some(origins);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// An origin as browsers send it: `scheme://host[:port]`, lower case, no path.
pub(crate) fn origin(o: &str) -> Result<Box<str>, String> {
    let bad = || {
        format!("{o:?}: want an origin such as \"https://app.example.com\" (scheme, host, optional port; no path)")
    };
    let lower = o.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(bad());
    }
    Ok(lower.into())
}

fn list(v: &[impl AsRef<str>]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{:?}", s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// Where `lower` widens `upper` (a layer named `upper_name`, e.g. `group grp_prod`): a
/// provider glob the upper list does not cover, an origin outside the upper list, a fixed
/// param given another value. Required params only add up: nothing to check.
pub(crate) fn narrower(lower: &ReqPolicy, upper: &ReqPolicy, upper_name: &str) -> Problems {
    let mut out = Problems::new();
    if let (Some((mine, _)), Some((theirs, set))) =
        (&lower.allowed_providers, &upper.allowed_providers)
    {
        // A glob is within the upper list when an upper glob matches its text ("azure-*"
        // covers "azure-east" and "azure-e*"; "*" is covered only by "*").
        if let Some(wide) = mine.iter().find(|g| !set.is_match(g.as_str())) {
            out.push((
                "allowed_providers",
                format!(
                    "allowed_providers {} ({wide:?}) is not within {upper_name} allowed_providers {} (lower layers only narrow)",
                    list(mine),
                    list(theirs)
                ),
            ));
        }
    }
    if let (Some(mine), Some(theirs)) = (&lower.allowed_origins, &upper.allowed_origins) {
        if let Some(wide) = mine.iter().find(|o| !theirs.contains(o)) {
            out.push((
                "allowed_origins",
                format!(
                    "allowed_origins {} ({wide:?}) is not within {upper_name} allowed_origins {} (lower layers only narrow)",
                    list(mine),
                    list(theirs)
                ),
            ));
        }
    }
    for (name, v) in &lower.fixed_params {
        if let Some(theirs) = upper.fixed(name) {
            if theirs != v {
                out.push((
                    "fixed_params",
                    format!(
                        "fixed_params.{name} = {v} differs from {upper_name} fixed_params.{name} = {theirs} (a lower layer may add fixed params, not change its upper layers')"
                    ),
                ));
            }
        }
    }
    out
}

/// A group's request policy as `tollgate -t` shows it (org's, then the group's; keys may
/// narrow further); `None` when neither sets any.
pub(crate) fn summary(org: Option<&ReqPolicy>, group: Option<&ReqPolicy>) -> Option<String> {
    let layers: Vec<&ReqPolicy> = [org, group].into_iter().flatten().collect();
    if layers.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    let globs: Vec<String> = layers
        .iter()
        .filter_map(|l| l.allowed_providers.as_ref().map(|(src, _)| list(src)))
        .collect();
    if !globs.is_empty() {
        parts.push(format!("allowed_providers {}", globs.join(" ∩ ")));
    }
    let mut required: Vec<&str> = Vec::new();
    let mut fixed: Vec<String> = Vec::new();
    for l in &layers {
        for r in &l.required_params {
            if !required.contains(&&**r) {
                required.push(r);
            }
        }
        for (n, v) in &l.fixed_params {
            let entry = format!("{n} = {v}");
            if !fixed.contains(&entry) {
                fixed.push(entry);
            }
        }
    }
    if !required.is_empty() {
        parts.push(format!("required_params {}", list(&required)));
    }
    if !fixed.is_empty() {
        parts.push(format!("fixed_params {{ {} }}", fixed.join(", ")));
    }
    if let Some(o) = layers.iter().rev().find_map(|l| l.allowed_origins.as_ref()) {
        parts.push(format!("allowed_origins {}", list(o)));
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(providers: &[&str], origins: &[&str], fixed: Value) -> ReqPolicy {
        let p: Vec<String> = providers.iter().map(|s| s.to_string()).collect();
        let o: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        let f: BTreeMap<String, Value> = serde_json::from_value(fixed).unwrap();
        check(RawReq {
            allowed_providers: (!p.is_empty()).then_some(&p[..]),
            required_params: &[],
            fixed_params: Some(&f),
            allowed_origins: (!o.is_empty()).then_some(&o[..]),
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn lower_layers_only_narrow_and_violations_name_both_values() {
        let org = layer(
            &["openai", "azure-*"],
            &["https://a.example"],
            json!({"store": false}),
        );
        let ok = layer(
            &["azure-east"],
            &["https://a.example"],
            json!({"store": false, "user": "x"}),
        );
        assert!(narrower(&ok, &org, "org o").is_empty());
        let wide = layer(
            &["anthropic"],
            &["https://b.example"],
            json!({"store": true}),
        );
        let p = narrower(&wide, &org, "org o");
        let text: Vec<String> = p.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        assert_eq!(p.len(), 3, "{text:?}");
        assert!(
            text[0].contains("[\"anthropic\"]")
                && text[0].contains("org o allowed_providers [\"openai\", \"azure-*\"]"),
            "{}",
            text[0]
        );
        assert!(
            text[1].contains("https://b.example") && text[1].contains("[\"https://a.example\"]"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("store = true") && text[2].contains("store = false"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        let f: BTreeMap<String, Value> =
            serde_json::from_value(json!({"model": "x", "colour": 1, "store": null})).unwrap();
        let o = vec!["ftp://x".to_string(), "https://a.example/path".to_string()];
        let e = check(RawReq {
            allowed_providers: Some(&["[".to_string()]),
            required_params: &[String::new()],
            fixed_params: Some(&f),
            allowed_origins: Some(&o),
        })
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "allowed_providers",
                "required_params",
                "fixed_params",
                "fixed_params",
                "fixed_params",
                "allowed_origins",
                "allowed_origins"
            ]
        );
        assert_eq!(
            origin("HTTPS://App.Example.com:8443").unwrap().as_ref(),
            "https://app.example.com:8443"
        );
    }
}

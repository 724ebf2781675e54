//! The request policy a key obeys: org, group and key layers resolved into one
//! [`InForce`] when the snapshot is built (or an API key is resolved), so a request reads
//! one pointer. `None` everywhere a layer sets nothing: an unconfigured policy costs one
//! branch per request.

use crate::policy::config::reqpolicy::ReqPolicy;
use serde_json::Value;
use std::sync::Arc;

/// What requests of a key (or of a group's keys) obey.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct InForce {
    /// Provider ids of the catalogue every layer's `allowed_providers` admits (`None`: any).
    pub(crate) providers: Option<Box<[Arc<str>]>>,
    /// The union of the layers' `required_params`.
    pub(crate) required: Box<[Box<str>]>,
    /// The layers' `fixed_params`; an upper layer's value wins.
    pub(crate) fixed: Box<[(Box<str>, Value)]>,
    /// Origins every layer's list admits (`None`: any).
    pub(crate) origins: Option<Box<[Box<str>]>>,
}

impl InForce {
    /// Whether a target of provider `id` may be chosen.
    #[inline]
    pub(crate) fn provider_allowed(&self, id: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| **x == *id))
    }

    pub(crate) fn origin_allowed(&self, origin: &[u8]) -> bool {
        self.origins.as_ref().is_none_or(|list| {
            list.iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
        })
    }
}

/// Resolves `layers` (upper first; `None` for a layer that sets nothing) over the
/// catalogue's provider ids. `None` when no layer sets anything.
pub(crate) fn resolve<'a>(
    layers: &[Option<&ReqPolicy>],
    provider_ids: impl Iterator<Item = &'a Arc<str>> + Clone,
) -> Option<Arc<InForce>> {
    let layers: Vec<&ReqPolicy> = layers.iter().flatten().copied().collect();
    if layers.is_empty() {
        return None;
    }
    let mut out = InForce::default();
    if layers.iter().any(|l| l.allowed_providers.is_some()) {
        let mut ids: Vec<Arc<str>> = Vec::new();
        for id in provider_ids {
            let ok = layers.iter().all(|l| {
                l.allowed_providers
                    .as_ref()
                    .is_none_or(|(_, set)| set.is_match(&**id))
            });
            if ok && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        out.providers = Some(ids.into_boxed_slice());
    }
    let mut required: Vec<Box<str>> = Vec::new();
    let mut fixed: Vec<(Box<str>, Value)> = Vec::new();
    let mut origins: Option<Vec<Box<str>>> = None;
    for l in &layers {
        for r in &l.required_params {
            if !required.contains(r) {
                required.push(r.clone());
            }
        }
        for (n, v) in &l.fixed_params {
            if !fixed.iter().any(|(m, _)| m == n) {
                fixed.push((n.clone(), v.clone()));
            }
        }
        if let Some(list) = &l.allowed_origins {
            origins = Some(match origins {
                None => list.clone(),
                Some(upper) => list.iter().filter(|o| upper.contains(o)).cloned().collect(),
            });
        }
    }
    out.required = required.into_boxed_slice();
    out.fixed = fixed.into_boxed_slice();
    out.origins = origins.map(Vec::into_boxed_slice);
    Some(Arc::new(out))
}

/// The fields as the admin API shows them (a layer's own, or those in force).
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub(crate) struct ReqPolicyView {
    pub(crate) allowed_providers: Option<Vec<String>>,
    pub(crate) required_params: Vec<String>,
    pub(crate) fixed_params: serde_json::Map<String, Value>,
    pub(crate) allowed_origins: Option<Vec<String>>,
}

impl ReqPolicyView {
    pub(crate) fn own(p: Option<&ReqPolicy>) -> ReqPolicyView {
        let Some(p) = p else {
            return ReqPolicyView::default();
        };
        ReqPolicyView {
            allowed_providers: p.allowed_providers.as_ref().map(|(src, _)| src.clone()),
            required_params: p.required_params.iter().map(|s| s.to_string()).collect(),
            fixed_params: p
                .fixed_params
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            allowed_origins: p
                .allowed_origins
                .as_ref()
                .map(|l| l.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub(crate) fn in_force(p: Option<&InForce>) -> ReqPolicyView {
        let Some(p) = p else {
            return ReqPolicyView::default();
        };
        ReqPolicyView {
            allowed_providers: p
                .providers
                .as_ref()
                .map(|l| l.iter().map(|s| s.to_string()).collect()),
            required_params: p.required.iter().map(|s| s.to_string()).collect(),
            fixed_params: p
                .fixed
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            allowed_origins: p
                .origins
                .as_ref()
                .map(|l| l.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// Every origin the policies in force admit (the set a CORS preflight is answered from).
pub(crate) fn origins<'a>(
    policies: impl Iterator<Item = &'a InForce>,
) -> std::collections::HashSet<Box<str>> {
    policies
        .filter_map(|p| p.origins.as_deref())
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::reqpolicy::{check, RawReq};
    use std::collections::BTreeMap;

    fn layer(
        providers: Option<&[&str]>,
        required: &[&str],
        fixed: Value,
        origins: Option<&[&str]>,
    ) -> ReqPolicy {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = providers.map(s);
        let o = origins.map(s);
        let r = s(required);
        let f: BTreeMap<String, Value> = serde_json::from_value(fixed).unwrap();
        check(RawReq {
            allowed_providers: p.as_deref(),
            required_params: &r,
            fixed_params: Some(&f),
            allowed_origins: o.as_deref(),
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn layers_intersect_add_up_and_the_upper_value_wins() {
        let ids: Vec<Arc<str>> = ["openai", "azure-east", "azure-west", "anthropic"]
            .into_iter()
            .map(Arc::from)
            .collect();
        let org = layer(
            Some(&["openai", "azure-*"]),
            &["user"],
            serde_json::json!({"store": false}),
            Some(&["https://a.example", "https://b.example"]),
        );
        let group = layer(
            Some(&["azure-*", "anthropic"]),
            &["metadata"],
            serde_json::json!({"store": true, "top_p": 0.5}),
            None,
        );
        let key = layer(
            None,
            &["user"],
            serde_json::json!({}),
            Some(&["https://b.example", "https://c.example"]),
        );
        let p = resolve(&[Some(&org), Some(&group), Some(&key)], ids.iter()).unwrap();
        let providers: Vec<&str> = p
            .providers
            .as_deref()
            .unwrap()
            .iter()
            .map(|s| &**s)
            .collect();
        assert_eq!(providers, ["azure-east", "azure-west"]);
        assert!(p.provider_allowed("azure-west") && !p.provider_allowed("openai"));
        let required: Vec<&str> = p.required.iter().map(|s| &**s).collect();
        assert_eq!(required, ["user", "metadata"]);
        assert_eq!(
            p.fixed[0],
            ("store".into(), Value::Bool(false)),
            "the org's value wins"
        );
        assert_eq!(p.fixed.len(), 2);
        let origins: Vec<&str> = p.origins.as_deref().unwrap().iter().map(|s| &**s).collect();
        assert_eq!(origins, ["https://b.example"]);
        assert!(p.origin_allowed(b"HTTPS://B.example") && !p.origin_allowed(b"https://c.example"));
        assert!(resolve(&[None, None], ids.iter()).is_none());
    }
}

//! The request policy fields of API keys (`allowed_providers`, `required_params`,
//! `fixed_params`, `allowed_origins`), with the policy file's rules: the same checker
//! (`config::reqpolicy`), and a key only narrows its group's and its org's.

use super::{ApiError, ApiResult};
use crate::policy::config::reqpolicy::{check, narrower, RawReq, ReqPolicy};
use crate::policy::snapshot::GroupEntry;
use crate::storage::KeySpec;
use std::sync::Arc;

/// The spec's own request policy, checked on its own (`None`: it sets none).
pub(crate) fn check_spec_req(spec: &KeySpec) -> ApiResult<Option<Arc<ReqPolicy>>> {
    let raw = RawReq {
        allowed_providers: spec.allowed_providers.as_deref(),
        required_params: spec.required_params.as_deref().unwrap_or_default(),
        fixed_params: spec.fixed_params.as_ref(),
        allowed_origins: spec.allowed_origins.as_deref(),
    };
    match check(raw) {
        Ok(p) => Ok(p.map(Arc::new)),
        Err(problems) => {
            let (field, message) = problems.into_iter().next().unwrap_or_default();
            Err(ApiError::bad_request(field, format!("{field}: {message}")))
        }
    }
}

/// "Lower layers only narrow": the key's request policy against its group's and org's,
/// the first violation named with both values.
pub(crate) fn check_in_group(own: Option<&ReqPolicy>, group: &GroupEntry) -> ApiResult<()> {
    let Some(own) = own else {
        return Ok(());
    };
    let layers = [
        (format!("group {}", group.id), group.def.req.as_deref()),
        (format!("org {}", group.org.id), group.org.req.as_deref()),
    ];
    for (name, upper) in layers {
        let Some(upper) = upper else { continue };
        if let Some((field, message)) = narrower(own, upper, &name).into_iter().next() {
            return Err(ApiError::bad_request(field, message));
        }
    }
    Ok(())
}

//! The request policy fields of `[[orgs]]`, `[[groups]]` and `[[keys]]`, checked with the
//! admin API's rules (`config::reqpolicy`) and reported at `<layer>.<field>`.

use super::super::raw::{RawGroup, RawOrg};
use super::super::reqpolicy::{check, narrower, RawReq, ReqPolicy};
use super::{Checker, Loc};
use std::sync::Arc;

macro_rules! raw_req {
    ($($t:ty),*) => {$(
        impl $t {
            pub(crate) fn req(&self) -> RawReq<'_> {
                RawReq {
                    allowed_providers: self.allowed_providers.as_deref(),
                    required_params: &self.required_params,
                    fixed_params: self.fixed_params.as_ref(),
                    allowed_origins: self.allowed_origins.as_deref(),
                }
            }
        }
    )*};
}

raw_req!(RawOrg, RawGroup);

/// One layer's fields, checked against the layers above it (`(name, policy)`, nearest
/// first): a lower layer only narrows.
pub(super) fn layer_req(
    c: &mut Checker,
    loc: Loc,
    path: &str,
    raw: RawReq<'_>,
    uppers: &[(String, Option<&ReqPolicy>)],
) -> Option<Arc<ReqPolicy>> {
    let mine = match check(raw) {
        Ok(p) => p?,
        Err(problems) => {
            for (field, message) in problems {
                c.problem(loc, format!("{path}.{field}"), message);
            }
            return None;
        }
    };
    for (name, upper) in uppers {
        if let Some(upper) = upper {
            for (field, message) in narrower(&mine, upper, name) {
                c.problem(loc, format!("{path}.{field}"), message);
            }
        }
    }
    Some(Arc::new(mine))
}

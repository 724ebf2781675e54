//! `model_limits`: the pattern pools of the request's three layers that its model falls
//! in, as extra admission scopes (docs/policy.md "Model limits"). A layer without
//! `model_limits` costs one pointer test; with patterns, a loop over them.

use crate::admission::{LayerLimits, ScopeKey, ShadowHit};
use crate::error::GatewayError;
use crate::policy::config::Shadow;

/// The matching pools, org's first (admission's lock order), and the shadow `max_tokens`
/// caps of those pools the request goes over; refuses a request whose `max_tokens` is
/// above an enforced pattern cap.
pub(crate) fn pools<'a>(
    layers: &[LayerLimits<'a>; 3],
    model: &str,
    requested: Option<u64>,
) -> Result<(Vec<LayerLimits<'a>>, Vec<ShadowHit>), GatewayError> {
    let mut out = Vec::new();
    let mut shadow = Vec::new();
    for l in layers {
        let limits: &'a crate::policy::config::Limits = l.limits;
        for e in limits
            .model_limits()
            .iter()
            .filter(|e| e.glob.is_match(model))
        {
            if let (Some(r), Some(cap)) = (requested, e.limits.max_tokens) {
                let cap = u64::from(cap.get());
                if r > cap {
                    let scope = format!(
                        "{} {} model_limits {:?}",
                        l.scope.layer.as_str(),
                        l.scope.id,
                        &*e.pattern
                    );
                    if !e.limits.shadow.has(Shadow::MAX_TOKENS) {
                        return Err(GatewayError::MaxTokensExceeded {
                            requested: r,
                            scope,
                            limit: cap,
                        });
                    }
                    shadow.push(ShadowHit {
                        scope: format!("{scope} max_tokens {cap}"),
                        code: "max_tokens_exceeded",
                    });
                }
            }
            out.push(LayerLimits {
                scope: ScopeKey {
                    layer: l.scope.layer,
                    id: e.scope_id.clone(),
                },
                limits: &e.limits,
                alert_thresholds: &[],
            });
        }
    }
    Ok((out, shadow))
}

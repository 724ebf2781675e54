//! Step 4: choose a target for a model among those that speak the route's API and have
//! not been tried yet in this request.
//!
//! This issue implements `weighted` (the default); the other strategies of SPEC §6 are
//! parsed and validated, and fall back to `weighted` until the routing work lands.

use crate::config::Api;
use crate::snapshot::{ModelEntry, TargetEntry};
use rand::Rng;

/// A target of a model: `(model index, target index)`.
pub type TargetRef = (usize, usize);

/// Weighted random choice over the model's eligible targets. Targets of weight 0 are only
/// chosen when nothing else is left (a drained canary still beats failing closed).
pub fn pick_weighted(
    model: &ModelEntry,
    api: Api,
    tried: &[TargetRef],
    rng: &mut impl Rng,
) -> Option<usize> {
    let eligible =
        |i: usize, t: &TargetEntry| t.provider.api == api && !tried.contains(&(model.index, i));
    let total: u64 = model
        .targets
        .iter()
        .enumerate()
        .filter(|(i, t)| eligible(*i, t))
        .map(|(_, t)| u64::from(t.weight))
        .sum();
    if total == 0 {
        return model
            .targets
            .iter()
            .enumerate()
            .position(|(i, t)| eligible(i, t));
    }
    let mut x = rng.gen_range(0..total);
    for (i, t) in model.targets.iter().enumerate() {
        if !eligible(i, t) {
            continue;
        }
        let w = u64::from(t.weight);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

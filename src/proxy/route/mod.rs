//! Step 4: choose a target. A request's [`Plan`] is its model followed by the group's
//! fallbacks for it (those the key may call and that can serve the route); each model
//! gets up to `1 + retries` attempts on distinct targets, chosen by the group's strategy
//! among healthy targets (all of them, if none is healthy: failing closed helps nobody).

pub mod health;

use crate::error::GatewayError;
use crate::llm::body::Serves;
use crate::policy::config::Routing;
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot, TargetEntry};
use rand::Rng;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// A target of a model: `(model index, target index)`.
pub(crate) type TargetRef = (usize, usize);

/// Share of `latency` picks sent to a random other target, so a recovered target is seen.
const EXPLORE: f64 = 0.05;

/// Request facts the strategies use.
pub struct Choice<'a> {
    /// The target APIs the route can use (translation makes either serve chat and messages).
    pub serves: Serves,
    pub routing: Routing,
    /// Hash of `x-tollgate-session`, else of the key id (`sticky`).
    pub affinity: u64,
    /// Tags from `x-tollgate-tags` (`tag`).
    pub tags: &'a [String],
    pub now_ms: u64,
    /// The key's `allowed_providers` in force, as provider ids (`None`: any).
    pub providers: Option<&'a [Arc<str>]>,
}

pub fn affinity(session: Option<&[u8]>, key_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    match session {
        Some(s) => s.hash(&mut h),
        None => key_id.as_bytes().hash(&mut h),
    }
    h.finish()
}

fn serves(t: &TargetEntry, c: &Choice<'_>) -> bool {
    c.serves.accepts(t.provider.api)
        && (c.routing != Routing::Tag || c.tags.iter().all(|tag| t.tags.contains(tag)))
        && c.providers
            .is_none_or(|p| p.iter().any(|id| **id == *t.provider.id))
}

/// Random in proportion to weight among `cands` (the first one if all weigh 0).
fn weighted<'a>(
    cands: impl Iterator<Item = (usize, &'a TargetEntry)> + Clone,
    rng: &mut impl Rng,
) -> Option<usize> {
    let total: u64 = cands.clone().map(|(_, t)| u64::from(t.weight)).sum();
    if total == 0 {
        return cands.clone().next().map(|(i, _)| i);
    }
    let mut x = rng.gen_range(0..total);
    for (i, t) in cands {
        let w = u64::from(t.weight);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

/// Weighted rendezvous hashing: losing a target moves only the sessions it had.
fn rendezvous<'a>(
    cands: impl Iterator<Item = (usize, &'a TargetEntry)>,
    affinity: u64,
) -> Option<usize> {
    cands
        .map(|(i, t)| {
            let mut h = DefaultHasher::new();
            affinity.hash(&mut h);
            t.label.hash(&mut h);
            // Uniform in (0, 1]; score = -w / ln(u): the highest wins.
            let u = ((h.finish() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let score = -f64::from(t.weight.max(1)) / u.ln();
            (i, score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Picks a target of `model` not in `tried`, by strategy. Allocation-free: candidates are
/// re-derived by iterator for each pass.
pub fn pick(
    model: &ModelEntry,
    tried: &[TargetRef],
    c: &Choice<'_>,
    rng: &mut impl Rng,
) -> Option<usize> {
    let open = |(i, t): &(usize, &TargetEntry)| serves(t, c) && !tried.contains(&(model.index, *i));
    let any_healthy = model
        .targets
        .iter()
        .enumerate()
        .filter(open)
        .any(|(_, t)| t.health.healthy(c.now_ms));
    // Healthy targets if there are any, else all of them: failing closed helps nobody.
    let cands = model
        .targets
        .iter()
        .enumerate()
        .filter(open)
        .filter(move |(_, t)| !any_healthy || t.health.healthy(c.now_ms));
    let n = cands.clone().count();
    if n <= 1 {
        return cands.clone().next().map(|(i, _)| i);
    }
    match c.routing {
        Routing::Weighted | Routing::Tag => weighted(cands, rng),
        Routing::Latency => {
            if rng.gen_bool(EXPLORE) {
                return cands.clone().nth(rng.gen_range(0..n)).map(|(i, _)| i);
            }
            cands
                .min_by_key(|(_, t)| t.health.latency_us())
                .map(|(i, _)| i)
        }
        Routing::Cost => {
            let cost =
                |t: &TargetEntry| t.price.input_micros_per_mtok + t.price.output_micros_per_mtok;
            let cheapest = cands.clone().map(|(_, t)| cost(t)).min()?;
            weighted(cands.filter(move |(_, t)| cost(t) == cheapest), rng)
        }
        Routing::Sticky => rendezvous(cands, c.affinity),
    }
}

/// The models a request may be served by, in order, and where it stands.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) models: Vec<Arc<ModelEntry>>,
    current: usize,
    attempts_on_current: u32,
    max_per_model: u32,
}

impl Plan {
    pub(crate) fn new(
        snapshot: &Snapshot,
        key: &KeyEntry,
        primary: Arc<ModelEntry>,
        serves: Serves,
    ) -> Plan {
        let mut models = vec![primary.clone()];
        if let Some(chain) = key.group.fallbacks.get(&primary.name) {
            for name in chain {
                if let Some(m) = snapshot.model(name) {
                    let callable = key.allowed[m.index]
                        && m.targets.iter().any(|t| {
                            serves.accepts(t.provider.api)
                                && key
                                    .req_policy()
                                    .is_none_or(|p| p.provider_allowed(&t.provider.id))
                        });
                    if callable && !models.iter().any(|x| x.index == m.index) {
                        models.push(m.clone());
                    }
                }
            }
        }
        Plan {
            models,
            current: 0,
            attempts_on_current: 0,
            max_per_model: 1 + key.group.retries,
        }
    }

    /// `allowed_providers`: whether some model of the plan has a target of an allowed
    /// provider that can serve the route (else the request is refused before admission).
    pub(crate) fn reachable(&self, key: &KeyEntry, serves: Serves) -> bool {
        let Some(p) = key.req_policy().filter(|p| p.providers.is_some()) else {
            return true;
        };
        self.models.iter().any(|m| {
            m.targets
                .iter()
                .any(|t| serves.accepts(t.provider.api) && p.provider_allowed(&t.provider.id))
        })
    }

    /// The next attempt, or the error that ends the request.
    pub(crate) fn next(
        &mut self,
        tried: &[TargetRef],
        c: &Choice<'_>,
        rng: &mut impl Rng,
    ) -> Result<(Arc<ModelEntry>, usize), GatewayError> {
        while let Some(model) = self.models.get(self.current) {
            if self.attempts_on_current < self.max_per_model {
                if let Some(t) = pick(model, tried, c, rng) {
                    self.attempts_on_current += 1;
                    return Ok((model.clone(), t));
                }
            }
            self.current += 1;
            self.attempts_on_current = 0;
        }
        let primary = &self.models[0];
        Err(
            if c.routing == Routing::Tag && !primary.targets.iter().any(|t| serves(t, c)) {
                GatewayError::NoHealthyTarget(format!(
                    "no target of model {} carries tags [{}]",
                    primary.name,
                    c.tags.join(", ")
                ))
            } else if tried.is_empty() {
                GatewayError::NoHealthyTarget(format!(
                    "model {} has no target for this API",
                    primary.name
                ))
            } else {
                GatewayError::UpstreamError(format!(
                    "every target and fallback of model {} failed",
                    primary.name
                ))
            },
        )
    }

    /// Whether [`next`](Self::next) would find another attempt.
    pub(crate) fn has_next(&self, tried: &[TargetRef], c: &Choice<'_>) -> bool {
        self.models
            .iter()
            .enumerate()
            .skip(self.current)
            .any(|(i, m)| {
                let budget_left = i > self.current || self.attempts_on_current < self.max_per_model;
                budget_left
                    && m.targets
                        .iter()
                        .enumerate()
                        .any(|(t, e)| serves(e, c) && !tried.contains(&(m.index, t)))
            })
    }
}

#[cfg(test)]
mod tests;

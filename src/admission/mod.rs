//! Step 3: admission. Sliding windows (requests and tokens), requests in flight and USD
//! budgets, for the key, its group and its org — each layer its own pool.
//!
//! Admission is a reservation: all three layers are locked (always org -> group -> key, so
//! concurrent admissions cannot deadlock), every limit is checked, and only if all pass is
//! anything counted. There is no check-then-act window between concurrent requests. The
//! returned [`Reservation`] is settled with the real usage; dropped unsettled, it charges
//! what it reserved and always gives back its in-flight slot.
//!
//! State lives here, keyed by layer and id, outside the policy snapshot: it survives
//! reloads. Idle entries are evicted by [`Admission::sweep`]; bounded by the number of
//! scopes active within the longest window (each entry: ~100 bytes plus ~500 per limited
//! window).

pub mod budget;
pub(crate) mod window;

use crate::clock::Clock;
use crate::digest::FastHash;
use crate::error::GatewayError;
use crate::policy::config::{BudgetPeriod, Limits, Shadow};
use budget::BudgetState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use window::{Slot, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Org,
    Group,
    Key,
}

impl Layer {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Layer::Org => "org",
            Layer::Group => "group",
            Layer::Key => "key",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    pub layer: Layer,
    pub id: Arc<str>,
}

/// The five sliding windows, in check order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Win {
    Rpm,
    Rph,
    Rpd,
    Tpm,
    Tpd,
}

const WINDOWS: [Win; 5] = [Win::Rpm, Win::Rph, Win::Rpd, Win::Tpm, Win::Tpd];

impl Win {
    fn name(self) -> &'static str {
        match self {
            Win::Rpm => "rpm",
            Win::Rph => "rph",
            Win::Rpd => "rpd",
            Win::Tpm => "tpm",
            Win::Tpd => "tpd",
        }
    }

    fn len_ms(self) -> u64 {
        match self {
            Win::Rpm | Win::Tpm => 60_000,
            Win::Rph => 3_600_000,
            Win::Rpd | Win::Tpd => 86_400_000,
        }
    }

    /// The limit as written, enforced or shadow: what the window counts against.
    fn counted(self, l: &Limits) -> Option<u64> {
        match self {
            Win::Rpm => l.rpm,
            Win::Rph => l.rph,
            Win::Rpd => l.rpd,
            Win::Tpm => l.tpm,
            Win::Tpd => l.tpd,
        }
        .map(|n| n.get())
    }

    fn shadow_bit(self) -> u16 {
        match self {
            Win::Rpm => Shadow::RPM,
            Win::Rph => Shadow::RPH,
            Win::Rpd => Shadow::RPD,
            Win::Tpm => Shadow::TPM,
            Win::Tpd => Shadow::TPD,
        }
    }

    /// The limit that refuses (none for a shadow limit).
    fn limit(self, l: &Limits) -> Option<u64> {
        self.counted(l).filter(|_| !l.shadow.has(self.shadow_bit()))
    }

    /// A shadow limit's value.
    fn shadow(self, l: &Limits) -> Option<u64> {
        self.counted(l).filter(|_| l.shadow.has(self.shadow_bit()))
    }

    fn is_tokens(self) -> bool {
        matches!(self, Win::Tpm | Win::Tpd)
    }
}

/// Counters of one scope (an org, a group or a key).
#[derive(Debug, Default)]
pub(crate) struct ScopeState {
    windows: [Option<Box<Window>>; 5],
    pub(crate) inflight: u32,
    pub(crate) budget: BudgetState,
    budget_kind: Option<BudgetPeriod>,
    /// `token_budget`: tokens (input + output) this period, reserved then settled.
    pub(crate) tokens: BudgetState,
    tokens_kind: Option<BudgetPeriod>,
    last_used_ms: u64,
}

impl ScopeState {
    fn window(&mut self, w: Win, scale: u64) -> &mut Window {
        self.windows[w as usize]
            .get_or_insert_with(|| Box::new(Window::new((w.len_ms() / scale).max(60))))
    }

    fn idle(&mut self, now_ms: u64) -> bool {
        self.inflight == 0
            && !self.budget.dirty
            && !self.tokens.dirty
            && now_ms.saturating_sub(self.last_used_ms) > 300_000
            && self.windows.iter_mut().flatten().all(|w| w.is_idle(now_ms))
    }
}

/// Where spend of past periods is kept (the ledger); `None` in pure unit tests.
pub trait SpendStore: Send + Sync {
    /// Settled spend of `scope` in period (`kind`, `period`), as last flushed.
    fn load_spend(&self, scope: &ScopeKey, kind: BudgetPeriod, period: u64) -> u64;
}

/// A budget threshold crossed for the first time this period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BudgetEvent {
    pub(crate) scope: ScopeKey,
    /// `budget.threshold` (soft budget or an alert fraction) or `budget.exhausted`.
    pub(crate) event: &'static str,
    pub(crate) spent_micros: u64,
    pub(crate) limit_micros: u64,
    pub(crate) threshold: f64,
}

/// One layer of a request: its scope and the limits the snapshot gives it.
pub struct LayerLimits<'a> {
    pub scope: ScopeKey,
    pub limits: &'a Limits,
    /// Alert fractions of the budget (groups only).
    pub alert_thresholds: &'a [f64],
}

/// What admission is asked for.
pub struct AdmitRequest<'a> {
    /// Org, group, key — in that order.
    pub layers: [LayerLimits<'a>; 3],
    /// The `model_limits` pools the request's model matches (org's, group's, key's
    /// patterns, in that order): each a scope of its own, checked and counted like a
    /// layer. Empty — no allocation — when no layer has a matching pattern.
    pub extra: Vec<LayerLimits<'a>>,
    pub est_tokens: u64,
    pub worst_cost_micros: u64,
    /// `budget_clamp`: lower the output to what the budgets can still pay for.
    pub clamp: Option<Clamp>,
}

/// What a clamped request may be lowered to: its input, its output as reserved, and the
/// dearest prices of its targets (micro-dollars per million tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    pub input_tokens: u64,
    /// The output reserved without clamping (`max_tokens`, or the server default).
    pub output_tokens: u64,
    /// Whether the client named `max_tokens` (else the default is sent as the cap).
    pub named: bool,
    pub input_micros_per_mtok: u64,
    pub output_micros_per_mtok: u64,
}

/// What one request reserves: tokens (windows, token budgets) and its worst-case cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Amounts {
    tokens: u64,
    cost: u64,
}

/// `kind scope` for messages: `key k1`, `key k1 model_limits "gpt-4o*"`.
fn scope_name(s: &ScopeKey) -> String {
    format!(
        "{} {}",
        s.layer.as_str(),
        crate::policy::config::model_limits::scope_display(&s.id)
    )
}

/// The output tokens every enforced budget of `layers` can still pay for (`u64::MAX`
/// when none applies).
fn affordable<'s>(c: &Clamp, layers: impl Iterator<Item = (&'s Limits, &'s ScopeState)>) -> u64 {
    let mut afford = u64::MAX;
    for (l, st) in layers {
        if let (Some(b), false) = (l.budget, l.shadow.has(Shadow::BUDGET)) {
            let rem = b
                .limit_micros
                .saturating_sub(st.budget.spent.saturating_add(st.budget.reserved));
            let room = u128::from(rem) * 1_000_000;
            let input = u128::from(c.input_tokens) * u128::from(c.input_micros_per_mtok);
            let out = match (room.checked_sub(input), c.output_micros_per_mtok) {
                (None, _) => 0,
                (Some(_), 0) => u64::MAX,
                (Some(left), p) => u64::try_from(left / u128::from(p)).unwrap_or(u64::MAX),
            };
            afford = afford.min(out);
        }
        if let Some(t) = l.enforced_token_budget() {
            let rem = t
                .limit
                .saturating_sub(st.tokens.spent.saturating_add(st.tokens.reserved));
            afford = afford.min(rem.saturating_sub(c.input_tokens));
        }
    }
    afford
}

/// The output a clamped request is sent with, and what it then reserves; `None` leaves
/// the request as it is (no budget applies, it fits, or not even its prompt fits — then
/// the checks refuse it).
fn clamped(c: &Clamp, afford: u64) -> Option<(u64, Amounts)> {
    if afford == u64::MAX || afford == 0 {
        return None;
    }
    let out = if c.named {
        (afford < c.output_tokens).then_some(afford)?
    } else {
        afford.min(c.output_tokens)
    };
    let cost = (u128::from(c.input_tokens) * u128::from(c.input_micros_per_mtok)
        + u128::from(out) * u128::from(c.output_micros_per_mtok))
    .div_ceil(1_000_000);
    Some((
        out,
        Amounts {
            tokens: c.input_tokens + out,
            cost: u64::try_from(cost).unwrap_or(u64::MAX),
        },
    ))
}

type Shard = Mutex<HashMap<ScopeKey, Arc<Mutex<ScopeState>>, FastHash>>;
/// A request's scopes: three layers and, with `model_limits`, a pattern pool or more (kept
/// inline up to six: the three layers and one pattern each).
type StateList = smallvec::SmallVec<[Arc<Mutex<ScopeState>>; 6]>;
/// Where each scope's windows counted the request.
type SlotList = smallvec::SmallVec<[[Option<Slot>; 5]; 6]>;

/// Where a scope's token budget is stored: its own id with a suffix no id can have.
fn tokens_key(scope: &ScopeKey) -> ScopeKey {
    ScopeKey {
        layer: scope.layer,
        id: crate::policy::config::model_limits::tokens_scope(&scope.id),
    }
}

pub struct Admission {
    shards: Box<[Shard]>,
    hasher: FastHash,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn SpendStore>>,
    /// Divides window lengths (test builds use it to run "minutes" in a second).
    scale: u64,
    /// Scopes whose spend changed since the last flush.
    dirty: Mutex<Vec<(ScopeKey, Arc<Mutex<ScopeState>>)>>,
    events: Mutex<Vec<BudgetEvent>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves counts that are still meaningful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    pub fn new(clock: Arc<dyn Clock>, store: Option<Arc<dyn SpendStore>>, scale: u64) -> Admission {
        Admission {
            shards: (0..64).map(|_| Mutex::new(HashMap::default())).collect(),
            hasher: Default::default(),
            clock,
            store,
            scale: scale.max(1),
            dirty: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn shard(&self, key: &ScopeKey) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    fn state(&self, key: &ScopeKey) -> Arc<Mutex<ScopeState>> {
        let mut map = lock(self.shard(key));
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        let s = Arc::new(Mutex::new(ScopeState::default()));
        map.insert(key.clone(), s.clone());
        s
    }

    /// Takes an in-flight slot in all three layers (`max_parallel`), before the request's
    /// body is read: a client cannot have more bodies in the gateway than it may have
    /// requests in flight. Hand the hold to [`Admission::admit_held`]; dropped, it gives
    /// the slots back.
    pub(crate) fn hold(
        self: &Arc<Self>,
        layers: &[LayerLimits<'_>; 3],
    ) -> Result<SlotHold, GatewayError> {
        let now = self.clock.now_ms();
        let states: [Arc<Mutex<ScopeState>>; 3] = [
            self.state(&layers[0].scope),
            self.state(&layers[1].scope),
            self.state(&layers[2].scope),
        ];
        let mut guards: [MutexGuard<'_, ScopeState>; 3] =
            [lock(&states[0]), lock(&states[1]), lock(&states[2])];
        for i in (0..3).rev() {
            check_parallel(&layers[i], &guards[i])?;
        }
        for st in guards.iter_mut() {
            st.inflight += 1;
            st.last_used_ms = now;
        }
        drop(guards);
        Ok(SlotHold {
            states: Some(states),
        })
    }

    /// Checks every limit of the three layers and, only if all pass, reserves.
    pub fn admit(self: &Arc<Self>, req: &AdmitRequest<'_>) -> Result<Reservation, GatewayError> {
        self.admit_inner(req, None)
    }

    /// [`Admission::admit`] for a request that already holds its in-flight slots: they are
    /// not checked again, and the reservation takes them over. `held` must come from
    /// [`Admission::hold`] with the same layers.
    pub(crate) fn admit_held(
        self: &Arc<Self>,
        req: &AdmitRequest<'_>,
        held: SlotHold,
    ) -> Result<Reservation, GatewayError> {
        self.admit_inner(req, Some(held))
    }

    fn admit_inner(
        self: &Arc<Self>,
        req: &AdmitRequest<'_>,
        mut held: Option<SlotHold>,
    ) -> Result<Reservation, GatewayError> {
        let now = self.clock.now_ms();
        let layer = |i: usize| -> &LayerLimits<'_> {
            match i {
                0..3 => &req.layers[i],
                _ => &req.extra[i - 3],
            }
        };
        let n = 3 + req.extra.len();
        let mut states: StateList = match held.as_ref().and_then(|h| h.states.clone()) {
            Some(s) => s.into_iter().collect(),
            None => req.layers.iter().map(|l| self.state(&l.scope)).collect(),
        };
        states.extend(req.extra.iter().map(|l| self.state(&l.scope)));
        // In-flight slots of the three layers may be held already; pattern pools never are.
        let counted = |i: usize| held.is_some() && i < 3;
        // Lock order: org, group, key, then the pattern pools (org's, group's, key's).
        let mut guards: smallvec::SmallVec<[MutexGuard<'_, ScopeState>; 6]> =
            states.iter().map(|s| lock(s)).collect();

        for (i, st) in guards.iter_mut().enumerate() {
            let l = layer(i);
            self.roll_budget(&l.scope, l.limits, st, now);
        }
        let mut amounts = Amounts {
            tokens: req.est_tokens,
            cost: req.worst_cost_micros,
        };
        let mut clamp_to = None;
        if let Some(c) = &req.clamp {
            let afford = affordable(c, (0..n).map(|i| (layer(i).limits, &*guards[i])));
            if let Some((out, a)) = clamped(c, afford) {
                clamp_to = Some(out);
                amounts = a;
            }
        }
        // Check: most specific first (pattern pools, then key, group, org), so the message
        // names the narrowest limit.
        for i in (0..n).rev() {
            self.check_layer(layer(i), &mut guards[i], amounts, now, counted(i))?;
        }
        // Shadow limits: what would have refused, reported, never refusing.
        let mut shadow = Vec::new();
        for i in (0..n).rev() {
            if layer(i).limits.shadow.any() {
                shadow_hits(
                    layer(i),
                    &mut guards[i],
                    amounts,
                    (now, self.scale, counted(i)),
                    &mut shadow,
                );
            }
        }
        // Reserve, noting the tightest window of each kind for the x-ratelimit headers.
        let mut slots: SlotList = smallvec::smallvec![[None; 5]; n];
        let mut rate = RateInfo::default();
        for (i, st) in guards.iter_mut().enumerate() {
            let limits = layer(i).limits;
            for w in WINDOWS {
                if let Some(counted) = w.counted(limits) {
                    let amount = if w.is_tokens() { amounts.tokens } else { 1 };
                    let win = st.window(w, self.scale);
                    slots[i][w as usize] = Some(win.add(now, amount));
                    // The x-ratelimit headers speak of enforced limits only.
                    let Some(limit) = w.limit(limits).filter(|l| *l == counted) else {
                        continue;
                    };
                    let remaining = limit.saturating_sub(win.used(now));
                    let tightest = if w.is_tokens() {
                        &mut rate.tokens
                    } else {
                        &mut rate.requests
                    };
                    if tightest.is_none_or(|(_, r)| remaining < r) {
                        *tightest = Some((limit, remaining));
                    }
                }
            }
            if !counted(i) {
                st.inflight += 1;
            }
            st.last_used_ms = now;
            if limits.budget.is_some() {
                st.budget.reserved += amounts.cost;
            }
            if limits.token_budget().is_some() {
                st.tokens.reserved += amounts.tokens;
            }
        }
        drop(guards);
        // The reservation gives the slots back from now on.
        if let Some(h) = held.as_mut() {
            h.states = None;
        }
        let scopes = states
            .into_iter()
            .zip(slots)
            .enumerate()
            .map(|(i, (state, slots))| {
                let l = layer(i);
                HeldScope {
                    scope: l.scope.clone(),
                    state,
                    slots,
                    thresholds: l.alert_thresholds.to_vec(),
                    budget: l.limits.budget,
                    shadow_budget: l.limits.shadow.has(Shadow::BUDGET),
                    tokens: l.limits.token_budget().is_some(),
                }
            })
            .collect();
        Ok(Reservation {
            admission: self.clone(),
            scopes,
            rate,
            shadow,
            est_tokens: amounts.tokens,
            worst_cost: amounts.cost,
            clamped_max_tokens: clamp_to,
            settled: false,
        })
    }

    fn roll_budget(&self, scope: &ScopeKey, limits: &Limits, st: &mut ScopeState, now: u64) {
        if let Some(t) = limits.token_budget() {
            let period = budget::period_id(t.period, now);
            if st.tokens_kind != Some(t.period) {
                st.tokens_kind = Some(t.period);
                st.tokens.period = u64::MAX;
            }
            st.tokens.roll(period, || {
                self.store
                    .as_ref()
                    .map_or(0, |s| s.load_spend(&tokens_key(scope), t.period, period))
            });
        }
        let Some(b) = limits.budget else { return };
        let period = budget::period_id(b.period, now);
        if st.budget_kind != Some(b.period) {
            // First use, or the period kind changed by a reload: start from the store.
            st.budget_kind = Some(b.period);
            st.budget.period = u64::MAX;
        }
        st.budget.roll(period, || {
            self.store
                .as_ref()
                .map_or(0, |s| s.load_spend(scope, b.period, period))
        });
    }

    fn check_layer(
        &self,
        layer: &LayerLimits<'_>,
        st: &mut ScopeState,
        amounts: Amounts,
        now: u64,
        slot_held: bool,
    ) -> Result<(), GatewayError> {
        // Formatted only when refusing: the common path allocates nothing.
        let scope = || scope_name(&layer.scope);
        for w in WINDOWS {
            let Some(limit) = w.limit(layer.limits) else {
                continue;
            };
            let amount = if w.is_tokens() { amounts.tokens } else { 1 };
            if let Err(wait_ms) = st.window(w, self.scale).check(now, amount, limit) {
                let scope = format!("{} {} {limit}", scope(), w.name());
                let retry_after = wait_ms.div_ceil(1000).max(1);
                return Err(if w.is_tokens() {
                    GatewayError::TokenLimitExceeded {
                        scope,
                        retry_after,
                        limit,
                    }
                } else {
                    GatewayError::RateLimitExceeded {
                        scope,
                        retry_after,
                        limit,
                    }
                });
            }
        }
        if !slot_held {
            check_parallel(layer, st)?;
        }
        let enforced = layer.limits.enforced();
        if let Some(b) = enforced.budget {
            if !st.budget.fits(amounts.cost, b.limit_micros) {
                return Err(GatewayError::BudgetExceeded {
                    scope: format!("{} budget_usd {}", scope(), micros_to_usd(b.limit_micros)),
                    retry_after: budget::until_next_period(b.period, now)
                        .map(|ms| ms.div_ceil(1000).max(1)),
                });
            }
        }
        if let Some(t) = layer.limits.enforced_token_budget() {
            if !st.tokens.fits(amounts.tokens, t.limit) {
                return Err(GatewayError::TokenBudgetExceeded {
                    scope: format!("{} token_budget {}", scope(), t.limit),
                    retry_after: budget::until_next_period(t.period, now)
                        .map(|ms| ms.div_ceil(1000).max(1)),
                });
            }
        }
        Ok(())
    }

    /// Scopes whose spend changed since the last call, with their current state, for the
    /// ledger's flush: USD spend under the scope, tokens under its [`tokens_key`]. Clears
    /// the dirty marks it returns.
    pub(crate) fn take_dirty(&self) -> Vec<(ScopeKey, BudgetPeriod, u64, u64)> {
        let list = std::mem::take(&mut *lock(&self.dirty));
        let mut out = Vec::with_capacity(list.len());
        for (k, s) in list {
            let mut st = lock(&s);
            if std::mem::take(&mut st.tokens.dirty) {
                if let Some(kind) = st.tokens_kind {
                    out.push((tokens_key(&k), kind, st.tokens.period, st.tokens.spent));
                }
            }
            if std::mem::take(&mut st.budget.dirty) {
                if let Some(kind) = st.budget_kind {
                    out.push((k, kind, st.budget.period, st.budget.spent));
                }
            }
        }
        out
    }

    /// Budget events since the last call.
    pub(crate) fn take_events(&self) -> Vec<BudgetEvent> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Drops idle entries (no window counts, nothing in flight, spend flushed, unused for
    /// five minutes). Returns how many remain.
    pub(crate) fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let mut left = 0;
        for shard in self.shards.iter() {
            let mut map = lock(shard);
            map.retain(|_, s| Arc::strong_count(s) > 1 || !lock(s).idle(now));
            left += map.len();
        }
        left
    }

    /// Current state of a scope, if tracked (admin API, tests).
    pub fn inspect(&self, key: &ScopeKey) -> Option<(u32, u64, u64)> {
        let s = lock(self.shard(key)).get(key)?.clone();
        let st = lock(&s);
        Some((st.inflight, st.budget.spent, st.budget.reserved))
    }
}

/// The layer's enforced `max_parallel` against the requests it has in flight.
fn check_parallel(layer: &LayerLimits<'_>, st: &ScopeState) -> Result<(), GatewayError> {
    if let Some(max) = layer.limits.enforced().max_parallel {
        if st.inflight >= max.get() {
            return Err(GatewayError::ConcurrencyLimitExceeded {
                scope: format!(
                    "{} {} max_parallel {max}",
                    layer.scope.layer.as_str(),
                    layer.scope.id
                ),
            });
        }
    }
    Ok(())
}

/// In-flight slots taken before the body is read ([`Admission::hold`]): handed over to
/// the reservation, or given back on drop.
#[must_use = "a slot hold is given back when dropped"]
pub(crate) struct SlotHold {
    states: Option<[Arc<Mutex<ScopeState>>; 3]>,
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        for s in self.states.iter().flatten() {
            let mut st = lock(s);
            st.inflight = st.inflight.saturating_sub(1);
        }
    }
}

pub(crate) use crate::policy::config::micros_to_usd;

/// One scope a reservation holds (a layer or a pattern pool).
struct HeldScope {
    scope: ScopeKey,
    state: Arc<Mutex<ScopeState>>,
    /// Where its windows counted the request.
    slots: [Option<Slot>; 5],
    /// Alert fractions of the budget.
    thresholds: Vec<f64>,
    budget: Option<crate::policy::config::Budget>,
    /// The budget is a shadow one: tracked, announcing nothing.
    shadow_budget: bool,
    /// The scope has a token budget.
    tokens: bool,
}

/// What one admitted request holds. Settle it with [`Reservation::settle`]; dropped
/// unsettled it charges its reservation (a stream that ended without usage) and frees
/// its in-flight slot.
#[must_use = "a reservation must be settled (or dropped to charge it in full)"]
pub struct Reservation {
    admission: Arc<Admission>,
    /// The three layers inline; pattern pools spill to the heap (one allocation).
    scopes: smallvec::SmallVec<[HeldScope; 3]>,
    /// For the `x-ratelimit-*` headers.
    pub rate: RateInfo,
    /// Shadow limits this request went over (it was admitted all the same).
    pub shadow: Vec<ShadowHit>,
    pub est_tokens: u64,
    pub worst_cost: u64,
    /// `budget_clamp`: the `max_tokens` the request is to be sent with (what the budgets
    /// can still pay for), when lowered or set by the gateway.
    pub clamped_max_tokens: Option<u64>,
    settled: bool,
}

/// A shadow limit a request went over: `scope` names it (`key k1 rpm 10`), `code` is the
/// refusal it would have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowHit {
    pub scope: String,
    pub code: &'static str,
}

/// Shadow limits of one layer that this request goes over (windows, in-flight, budget).
fn shadow_hits(
    layer: &LayerLimits<'_>,
    st: &mut ScopeState,
    amounts: Amounts,
    (now, scale, counted): (u64, u64, bool),
    out: &mut Vec<ShadowHit>,
) {
    let scope = || scope_name(&layer.scope);
    let l = layer.limits;
    for w in WINDOWS {
        let Some(limit) = w.shadow(l) else { continue };
        let amount = if w.is_tokens() { amounts.tokens } else { 1 };
        if st.window(w, scale).check(now, amount, limit).is_err() {
            out.push(ShadowHit {
                scope: format!("{} {} {limit}", scope(), w.name()),
                code: if w.is_tokens() {
                    "token_limit_exceeded"
                } else {
                    "rate_limit_exceeded"
                },
            });
        }
    }
    if let (Some(max), true) = (l.max_parallel, l.shadow.has(Shadow::MAX_PARALLEL)) {
        // A request holding its slot already is one of `inflight`.
        let others = st.inflight - u32::from(counted && st.inflight > 0);
        if others >= max.get() {
            out.push(ShadowHit {
                scope: format!("{} max_parallel {max}", scope()),
                code: "concurrency_limit_exceeded",
            });
        }
    }
    if let (Some(b), true) = (l.budget, l.shadow.has(Shadow::BUDGET)) {
        if !st.budget.fits(amounts.cost, b.limit_micros) {
            out.push(ShadowHit {
                scope: format!("{} budget_usd {}", scope(), micros_to_usd(b.limit_micros)),
                code: "budget_exceeded",
            });
        }
    }
    if let (Some(t), true) = (l.token_budget(), l.shadow.has(Shadow::TOKEN_BUDGET)) {
        if !st.tokens.fits(amounts.tokens, t.limit) {
            out.push(ShadowHit {
                scope: format!("{} token_budget {}", scope(), t.limit),
                code: "token_budget_exceeded",
            });
        }
    }
}

/// `(limit, remaining)` of the tightest request window and token window that apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateInfo {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

/// The real usage of a request, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub tokens: u64,
    pub cost_micros: u64,
}

impl Reservation {
    /// Replaces the reservation with `usage`; `None` charges the reservation in full.
    pub fn settle(mut self, usage: Option<Usage>) {
        self.finish(usage);
    }

    /// Releases without charging (the request never reached a provider).
    pub(crate) fn cancel(mut self) {
        self.finish(Some(Usage {
            tokens: 0,
            cost_micros: 0,
        }));
    }

    fn finish(&mut self, usage: Option<Usage>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let usage = usage.unwrap_or(Usage {
            tokens: self.est_tokens,
            cost_micros: self.worst_cost,
        });
        let now = self.admission.clock.now_ms();
        for held in self.scopes.iter() {
            let HeldScope {
                scope,
                state,
                slots,
                thresholds,
                budget,
                shadow_budget,
                tokens,
            } = held;
            let mut st = lock(state);
            for w in [Win::Tpm, Win::Tpd] {
                if let Some(slot) = slots[w as usize] {
                    st.window(w, self.admission.scale).adjust(
                        now,
                        slot,
                        self.est_tokens,
                        usage.tokens,
                    );
                }
            }
            st.inflight = st.inflight.saturating_sub(1);
            st.last_used_ms = now;
            if *tokens {
                st.tokens.reserved = st.tokens.reserved.saturating_sub(self.est_tokens);
                if usage.tokens > 0 {
                    st.tokens.spent += usage.tokens;
                    if !(st.budget.dirty || st.tokens.dirty) {
                        lock(&self.admission.dirty).push((scope.clone(), state.clone()));
                    }
                    st.tokens.dirty = true;
                }
            }
            let Some(b) = budget else { continue };
            st.budget.reserved = st.budget.reserved.saturating_sub(self.worst_cost);
            if usage.cost_micros == 0 {
                continue;
            }
            st.budget.spent += usage.cost_micros;
            let after = st.budget.spent;
            if !(st.budget.dirty || st.tokens.dirty) {
                lock(&self.admission.dirty).push((scope.clone(), state.clone()));
            }
            st.budget.dirty = true;
            // A shadow budget is tracked like any other but announces nothing.
            let events = if *shadow_budget {
                vec![]
            } else {
                crossings(&mut st.budget, b, thresholds, after)
            };
            drop(st);
            if !events.is_empty() {
                let mut q = lock(&self.admission.events);
                for (event, threshold) in events {
                    q.push(BudgetEvent {
                        scope: scope.clone(),
                        event,
                        spent_micros: after,
                        limit_micros: b.limit_micros,
                        threshold,
                    });
                }
            }
        }
    }
}

/// Thresholds crossed by a spend change, each at most once per period.
fn crossings(
    st: &mut BudgetState,
    b: &crate::policy::config::Budget,
    thresholds: &[f64],
    after: u64,
) -> Vec<(&'static str, f64)> {
    let mut out = vec![];
    if let Some(soft) = b.soft_micros {
        if !st.soft_fired && after >= soft {
            st.soft_fired = true;
            // Below `loaded`: announced before a restart (see `BudgetState::loaded`).
            if st.loaded < soft {
                out.push((
                    "budget.threshold",
                    soft as f64 / b.limit_micros.max(1) as f64,
                ));
            }
        }
    }
    while st.fired < thresholds.len() {
        let t = thresholds[st.fired];
        let at = (b.limit_micros as f64 * t) as u64;
        if after < at {
            break;
        }
        st.fired += 1;
        if st.loaded >= at {
            continue;
        }
        out.push((
            if t >= 1.0 {
                "budget.exhausted"
            } else {
                "budget.threshold"
            },
            t,
        ));
    }
    out
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests;

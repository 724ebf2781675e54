//! The state of one request as it goes through the Pingora phases.
//!
//! Fields are private: each phase changes the context through one method named after the
//! step (identified, body read, admitted, attempt started, answer started, settled), so
//! what a phase may change is visible here, and the phases in `gateway.rs` stay a few
//! lines each. The snapshot is loaded once: a reload mid-request does not change the
//! policy a request was admitted with.

use crate::admission::{Reservation, ShadowHit, SlotHold};
use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody, Serves};
use crate::llm::guard::{Format, ResponseGuard};
use crate::llm::translate::{self, Responder, Translation};
use crate::llm::usage::{Billed, Scanner};
use crate::observe::trace::{RequestTrace, Tracer};
use crate::observe::{Finished, Outcome};
use crate::policy::config::{Api, LogLevel, Routing};
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot, TargetEntry};
use crate::proxy::account::{self, Accounting, Estimate, InflightGuard, Served};
use crate::proxy::conn::body_memory::{BodyBudget, BodyHold};
use crate::proxy::guard::Trip;
use crate::proxy::route::{Choice, Plan, TargetRef};
use crate::proxy::{headers, upstream};
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use smallvec::SmallVec;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct RequestCtx {
    snapshot: Arc<Snapshot>,
    started: Instant,
    request_id: String,
    endpoint: Option<Endpoint>,
    client_ip: Option<IpAddr>,
    key: Option<Arc<KeyEntry>>,
    body: Option<RequestBody>,
    model: Option<Arc<ModelEntry>>,
    /// The body rendered for the current target.
    upstream_body: Bytes,
    target: Option<TargetRef>,
    /// Inline for the usual one or two attempts: no allocation.
    tried: SmallVec<[TargetRef; 2]>,
    error: Option<GatewayError>,
    /// In-flight slots taken before the body is read; admission takes them over.
    slots: Option<SlotHold>,
    /// The body's bytes in `server.body_memory`, held until the request ends.
    body_hold: Option<BodyHold>,
    /// What admission reserved; settled in `logging`, released on drop whatever happens.
    /// Boxed: 600 bytes the request's future would otherwise carry (and copy) inline.
    reservation: Option<Box<Reservation>>,
    /// Tokens reserved: what unknown usage is charged at.
    estimate: Estimate,
    /// The gateway asked for stream usage on the client's behalf.
    ask_usage: bool,
    upstream_status: Option<u16>,
    scanner: Option<Scanner>,
    /// The current attempt speaks the other API: how its request was translated.
    translation: Option<Translation>,
    /// Rewrites the current answer into the client's API.
    translator: Option<Responder>,
    /// Models and attempts left (primary, then fallbacks).
    plan: Option<Plan>,
    tags: Vec<String>,
    affinity: u64,
    attempt_started: Option<Instant>,
    /// Every upstream attempt: target and how it ended (request log).
    attempts: SmallVec<[(Arc<str>, Outcome); 2]>,
    /// When the first upstream attempt started: what came before is gateway overhead.
    first_attempt_at: Option<Instant>,
    /// The last attempt failed by timing out before the first byte.
    timed_out: bool,
    /// The client went away mid-answer; the upstream answer is still being read so its
    /// usage is seen (bounded by [`DRAIN_MAX_BYTES`] and the group's timeout).
    client_gone: Option<Instant>,
    /// Answer bytes read since the client went away.
    drained: usize,
    /// The group was quarantined when the request came (logged at `full`).
    quarantined: bool,
    /// Guardrail verdicts so far (request stage, then the answer's at the end).
    trips: Vec<Trip>,
    /// Checks the answer the client gets (after translation), when guardrails look there.
    response_guard: Option<Box<ResponseGuard>>,
    /// The request's `Origin` when its answer carries CORS headers (`allowed_origins`).
    cors: Option<http::HeaderValue>,
    /// The request had an `Origin` (a browser's): the provider's CORS headers are removed.
    origin_seen: bool,
    /// Trace ids and attempt instants, only when `[tracing]` is on.
    trace: Option<Box<RequestTrace>>,
    _inflight: InflightGuard,
}

/// What is read of an upstream answer after its client went away, at most: a long answer's
/// SSE is a few MB; past this the read stops and the rest is charged as counted.
pub(crate) const DRAIN_MAX_BYTES: usize = 8 << 20;

/// What stage 3 (reserve) hands the context when a request is admitted.
pub(crate) struct Admitted {
    pub(crate) plan: Plan,
    pub(crate) body: RequestBody,
    pub(crate) model: Arc<ModelEntry>,
    pub(crate) reservation: Reservation,
    pub(crate) estimate: Estimate,
    pub(crate) ask_usage: bool,
    pub(crate) tags: Vec<String>,
    pub(crate) affinity: u64,
}

impl RequestCtx {
    pub(crate) fn new(snapshot: Arc<Snapshot>, inflight: InflightGuard) -> RequestCtx {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            request_id: String::new(),
            endpoint: None,
            client_ip: None,
            key: None,
            body: None,
            model: None,
            upstream_body: Bytes::new(),
            target: None,
            tried: SmallVec::new(),
            error: None,
            slots: None,
            body_hold: None,
            reservation: None,
            estimate: Estimate::default(),
            ask_usage: false,
            upstream_status: None,
            scanner: None,
            translation: None,
            translator: None,
            plan: None,
            tags: Vec::new(),
            affinity: 0,
            attempt_started: None,
            attempts: SmallVec::new(),
            first_attempt_at: None,
            timed_out: false,
            client_gone: None,
            drained: 0,
            quarantined: false,
            trips: Vec::new(),
            response_guard: None,
            cors: None,
            origin_seen: false,
            trace: None,
            _inflight: inflight,
        }
    }

    // ---- reading ----

    pub(crate) fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    pub(crate) fn endpoint(&self) -> Option<Endpoint> {
        self.endpoint
    }

    pub(crate) fn key(&self) -> Option<&Arc<KeyEntry>> {
        self.key.as_ref()
    }

    pub(crate) fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The client's API: the route's, or the path's when the route is unknown.
    pub(crate) fn api(&self, path: &str) -> Api {
        self.endpoint
            .map_or_else(|| Endpoint::api_for_path(path), Endpoint::api)
    }

    pub(crate) fn target_label(&self) -> Option<Arc<str>> {
        Some(self.target_entry()?.label.clone())
    }

    fn target_entry(&self) -> Option<&TargetEntry> {
        let (m, t) = self.target?;
        Some(&self.snapshot.models[m].targets[t])
    }

    pub(crate) fn upstream_body(&self) -> &Bytes {
        &self.upstream_body
    }

    /// The `Origin` the answer's CORS headers name, if any.
    pub(crate) fn cors(&self) -> Option<&http::HeaderValue> {
        self.cors.as_ref()
    }

    /// Called for requests with an `Origin` only.
    pub(crate) fn set_cors(&mut self, origin: Option<http::HeaderValue>) {
        self.cors = origin;
        self.origin_seen = true;
    }

    pub(crate) fn first_byte_seen(&self) -> bool {
        self.upstream_status.is_some()
    }

    // ---- request_filter: identify, read body, reserve ----

    /// The request's id: the client's `x-request-id` when it is usable, else a new one;
    /// its trace (the client's `traceparent` continued) when tracing is on.
    pub(crate) fn begin(&mut self, req: &RequestHeader, tracer: Option<&Tracer>) {
        self.request_id = request_id(req);
        self.trace = tracer.map(|t| t.begin(req));
    }

    /// After admission: notes the `Origin` whose answer carries CORS headers, if any
    /// (nothing to do for requests without `Origin`, the non-browser ones).
    pub(crate) fn note_origin(
        &mut self,
        req: &pingora_http::RequestHeader,
        directory: &crate::proxy::directory::Directory,
    ) {
        if !req.headers.contains_key(http::header::ORIGIN) {
            return;
        }
        let snapshot = self.snapshot().clone();
        let key = self.key().cloned();
        let origin = crate::proxy::cors::answer_origin(req, key.as_deref(), &snapshot, directory);
        self.set_cors(origin);
    }

    /// `logging`: the request's spans to the tracer (nothing when tracing is off or the
    /// request was not sampled).
    pub(crate) fn export_trace(&self, tracer: Option<&Tracer>, f: &crate::observe::Finished<'_>) {
        let req = crate::observe::trace::Request {
            endpoint: self.endpoint(),
            snapshot: self.snapshot(),
        };
        crate::observe::trace::export(tracer, self.trace(), req, f);
    }

    pub(crate) fn trace(&self) -> Option<&RequestTrace> {
        self.trace.as_deref()
    }

    pub(crate) fn set_endpoint(&mut self, endpoint: Endpoint) {
        self.endpoint = Some(endpoint);
    }

    /// The key is known (even if a later check refuses it: the refusal is the key's).
    pub(crate) fn set_key(&mut self, key: Arc<KeyEntry>) {
        self.key = Some(key);
    }

    pub(crate) fn set_quarantined(&mut self, quarantined: bool) {
        self.quarantined = quarantined;
    }

    /// Guardrail verdicts of this request (the answer's once `end_guards` ran).
    pub(crate) fn trips(&self) -> &[Trip] {
        &self.trips
    }

    /// Where the guardrail stage writes its verdicts.
    pub(crate) fn guard_trips(&mut self) -> &mut Vec<Trip> {
        &mut self.trips
    }

    pub(crate) fn set_client_ip(&mut self, ip: Option<IpAddr>) {
        self.client_ip = ip;
    }

    pub(crate) fn hold_slots(&mut self, slots: SlotHold) {
        self.slots = Some(slots);
    }

    pub(crate) fn take_slots(&mut self) -> Option<SlotHold> {
        self.slots.take()
    }

    /// The request's share of `server.body_memory`, taken before its body is read.
    pub(crate) fn body_hold(&mut self, budget: &Arc<BodyBudget>) -> &mut BodyHold {
        self.body_hold.insert(BodyHold::new(budget))
    }

    /// A body read but refused before admission: kept for the request log.
    pub(crate) fn keep_body(&mut self, body: RequestBody) {
        self.body = Some(body);
    }

    /// The model a refused request named (for the request log).
    pub(crate) fn keep_model(&mut self, model: Arc<ModelEntry>) {
        self.model = Some(model);
    }

    pub(crate) fn admitted(&mut self, a: Admitted) {
        let Admitted {
            plan,
            body,
            model,
            reservation,
            estimate,
            ask_usage,
            tags,
            affinity,
        } = a;
        self.plan = Some(plan);
        self.body = Some(body);
        self.model = Some(model);
        self.reservation = Some(Box::new(reservation));
        self.estimate = estimate;
        self.ask_usage = ask_usage;
        self.tags = tags;
        self.affinity = affinity;
    }

    /// `count_tokens` forwarded: the plan and body, nothing reserved (never billed).
    pub(crate) fn counted_only(&mut self, plan: Plan, body: RequestBody, model: Arc<ModelEntry>) {
        self.plan = Some(plan);
        self.body = Some(body);
        self.model = Some(model);
    }

    pub(crate) fn refused(&mut self, e: GatewayError) {
        self.error = Some(e);
    }

    // ---- upstream_peer: the next target, its body, its peer ----

    fn choice(&self) -> Choice<'_> {
        Choice {
            serves: match self.endpoint {
                // Forwarded to Anthropic targets only (others are answered by estimate).
                Some(Endpoint::CountTokens) => Serves::Only(Api::Anthropic),
                e => e.map_or(Serves::Only(Api::OpenAi), Endpoint::serves),
            },
            routing: self
                .key
                .as_ref()
                .map_or(Routing::Weighted, |k| k.group.routing),
            affinity: self.affinity,
            tags: &self.tags,
            now_ms: now_ms(),
            providers: self
                .key
                .as_ref()
                .and_then(|k| k.req_policy())
                .and_then(|p| p.providers.as_deref()),
        }
    }

    /// Picks the next target of the plan, renders the body for it and starts the attempt.
    /// A target whose host does not resolve fails here, before any connection: it counts
    /// as a failed attempt and the next one is tried.
    pub(crate) fn next_peer(&mut self) -> Result<Box<HttpPeer>> {
        loop {
            let Some(mut plan) = self.plan.take() else {
                return Error::e_explain(ErrorType::InternalError, "upstream_peer without a plan");
            };
            let next = plan.next(&self.tried, &self.choice(), &mut rand::thread_rng());
            self.plan = Some(plan);
            let (model, t) = match next {
                Ok(x) => x,
                Err(e) => {
                    self.error = Some(if self.timed_out {
                        GatewayError::UpstreamTimeout(format!(
                            "{e}: no first byte within the group timeout"
                        ))
                    } else {
                        e
                    });
                    return Error::e_explain(ErrorType::HTTPStatus(502), "no target left");
                }
            };
            let (Some(key), Some(body), Some(endpoint)) = (&self.key, &self.body, self.endpoint)
            else {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "upstream_peer without an admitted request",
                );
            };
            let target = &model.targets[t];
            self.target = Some((model.index, t));
            self.tried.push((model.index, t));
            let client_model = body.model.as_deref().unwrap_or(&model.name);
            let rendered = translate::render(
                body,
                endpoint,
                target.provider.api,
                &target.model,
                client_model,
                self.ask_usage,
                translate::default_max_tokens(&self.snapshot.server, key),
            );
            let fixed = key.req_policy().map_or(&[][..], |p| &p.fixed[..]);
            let rendered = rendered.map(|(bytes, t)| {
                if fixed.is_empty() {
                    return (bytes, t);
                }
                // In the target's own format: after translation.
                match crate::llm::fixed::TargetApi::of(endpoint, target.provider.api) {
                    Some(api) => (crate::llm::fixed::apply(bytes, api, fixed), t),
                    None => (bytes, t),
                }
            });
            match rendered {
                Ok((bytes, t)) => (self.upstream_body, self.translation) = (bytes, t),
                Err(e) => {
                    self.error = Some(e);
                    return Error::e_explain(ErrorType::HTTPStatus(400), "cannot translate");
                }
            }
            let now = Instant::now();
            self.attempt_started = Some(now);
            self.first_attempt_at.get_or_insert(now);
            if let Some(trace) = self.trace.as_mut() {
                trace.attempt((model.index, t), now);
            }
            self.attempts.push((target.label.clone(), Outcome::Pending));
            self.timed_out = false;
            match upstream::peer(target, key.group.timeout) {
                Ok(peer) => return Ok(peer),
                Err(e) => {
                    log::warn!("{e}");
                    self.attempt_failed();
                    self.end_attempt(Outcome::ConnectFailed);
                }
            }
        }
    }

    /// `upstream_request_filter`: the credential swap, Host and framing for this target.
    pub(crate) fn rewrite_upstream_request(&self, req: &mut RequestHeader) -> Result<()> {
        let (m, t) = self
            .target
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let provider = &self.snapshot.models[m].targets[t].provider;
        let api_path = self
            .translation
            .as_ref()
            .map(|t| t.direction.upstream_path());
        let len = self.upstream_body.len();
        upstream::rewrite_request(req, provider, len, &self.request_id, api_path)?;
        if let Some(tp) = self.trace.as_ref().and_then(|t| t.upstream_traceparent()) {
            let v = http::HeaderValue::from_bytes(&tp)
                .map_err(|_| Error::new(ErrorType::InternalError))?;
            req.insert_static_header(&headers::TRACEPARENT, v);
        }
        Ok(())
    }

    // ---- attempts ----

    /// Whether another attempt is possible (`answered`: something reached the client).
    pub(crate) fn can_retry(&self, answered: bool) -> bool {
        !answered
            && self
                .plan
                .as_ref()
                .is_some_and(|p| p.has_next(&self.tried, &self.choice()))
    }

    pub(crate) fn end_attempt(&mut self, outcome: Outcome) {
        if let Some(last) = self.attempts.last_mut() {
            last.1 = outcome;
        }
    }

    /// Passive health: the current attempt failed.
    pub(crate) fn attempt_failed(&self) {
        if let Some(t) = self.target_entry() {
            let spent = self.attempt_started.map(|s| s.elapsed().as_micros() as u64);
            if t.health.record_failure(now_ms(), spent) {
                log::warn!("target {} ejected after repeated failures", t.label);
            }
        }
    }

    /// The attempt failed before its first byte: `timed_out` if it ran out of time.
    pub(crate) fn attempt_broke(&mut self, timed_out: bool) {
        self.attempt_failed();
        self.timed_out = timed_out;
        self.end_attempt(if timed_out {
            Outcome::TimedOut
        } else {
            Outcome::Failed
        });
    }

    /// Passive health: the current attempt answered.
    fn attempt_succeeded(&self) {
        if let (Some(t), Some(started)) = (self.target_entry(), self.attempt_started) {
            t.health
                .record_success(started.elapsed().as_micros() as u64);
        }
    }

    // ---- the answer ----

    /// `upstream_response_filter`: the provider answered with `resp`. An error to retry on
    /// (a 429/5xx with a target left, or a status that cannot be relayed) is returned as
    /// Pingora's error; otherwise the usage scanner and translator are set up.
    pub(crate) fn answer_started(
        &mut self,
        resp: &mut ResponseHeader,
        answered: bool,
        collect_completion: bool,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        self.end_attempt(Outcome::Status(status));
        if let Some(err) =
            crate::observe::fault::unrelayable(status, self.target_label().as_deref())
        {
            self.attempt_failed();
            let retry = self.can_retry(answered);
            self.error = (!retry).then_some(err);
            let mut e = Error::explain(ErrorType::HTTPStatus(502), "unrelayable upstream status");
            e.set_retry(retry);
            return Err(e.into_up());
        }
        if status == 429 || status >= 500 {
            self.attempt_failed();
            if self.can_retry(answered) {
                // Nothing has reached the client: try the next target or fallback.
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(status),
                    "upstream refused; trying the next target",
                );
                e.set_retry(true);
                return Err(e);
            }
        } else {
            self.attempt_succeeded();
        }
        self.upstream_status = Some(status);
        // A translated answer is scanned as the provider sent it; the translator drops the
        // usage chunk the client did not ask for.
        let strip_usage = self.ask_usage && self.translation.is_none();
        self.scanner = account::scanner_for(resp, strip_usage);
        self.response_guard = self.guard_for(resp);
        if let (Some(scanner), Some(key)) = (self.scanner.as_mut(), &self.key) {
            let full = key.group.log_level == LogLevel::Full || self.quarantined;
            // The scanner reads the provider's text: where response guardrails may change
            // it, the log would keep what the client never got. Not collected then.
            if full && collect_completion && self.response_guard.is_none() {
                scanner.collect_completion();
            }
        }
        let t = self.translation.as_ref();
        self.translator = t.map(|t| Responder::for_response(t, resp)).transpose()?;
        if self.response_guard.is_some() {
            // The answer may lose text (a redaction, a blocked ending): not the provider's length.
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        if strip_usage && self.scanner.is_some() {
            // We may drop the injected usage chunk: the length is no longer the provider's.
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        Ok(())
    }

    /// The response guard for a 2xx answer, when the key's guardrails look at answers.
    fn guard_for(&self, resp: &ResponseHeader) -> Option<Box<ResponseGuard>> {
        if !resp.status.is_success() {
            return None;
        }
        if self.endpoint == Some(Endpoint::CountTokens) {
            return None;
        }
        let rules = self.key.as_ref()?.guards()?.response.clone();
        if rules.is_empty() {
            return None;
        }
        let sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let format = if sse { Format::Sse } else { Format::Json };
        Some(Box::new(ResponseGuard::new(rules, self.endpoint?, format)))
    }

    /// `logging`: the answer's guardrail verdicts join the request's.
    pub(crate) fn end_guards(&mut self) {
        if let Some(g) = self.response_guard.take() {
            self.trips.extend(g.verdicts().iter().map(Trip::from));
        }
    }

    /// `response_filter`: `x-request-id`, `x-tollgate-target`, four `x-ratelimit-*`, in
    /// place of the provider's, written after its headers.
    pub(crate) fn answer_headers(&self, resp: &mut ResponseHeader) -> Result<()> {
        headers::remove_added(resp);
        match &self.cors {
            Some(origin) => crate::proxy::cors::add_headers(resp, origin)?,
            // Without `Origin` (server-side clients) nothing is looked up.
            None if self.origin_seen => crate::proxy::cors::strip(resp),
            None => {}
        }
        resp.append_wire_header(&headers::REQUEST_ID, self.request_id.as_bytes())?;
        if let Some(t) = self.target_entry() {
            resp.append_wire_header(&headers::TARGET, t.label.as_bytes())?;
        }
        if let Some(r) = &self.reservation {
            account::limit_headers(resp, r)?;
        }
        Ok(())
    }

    /// `response_body_filter`: usage scanning, then translation, chunk by chunk. Once the
    /// client is gone only the scanning is left, until the drain bounds end the read.
    pub(crate) fn answer_chunk(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<()> {
        if let Some(scanner) = self.scanner.as_mut() {
            scanner.chunk(body, end_of_stream);
        }
        if let Some(since) = self.client_gone {
            self.drained += body.as_ref().map_or(0, Bytes::len);
            *body = None;
            let timeout = self.key.as_ref().map(|k| k.group.timeout);
            if self.drained > DRAIN_MAX_BYTES || timeout.is_some_and(|t| since.elapsed() > t) {
                let e = Error::explain(
                    ErrorType::ReadError,
                    "client gone; stopped reading the upstream answer at the drain bound",
                );
                return Err(e.into_down());
            }
            return Ok(());
        }
        if let Some(t) = self.translator.as_mut() {
            t.chunk(body, end_of_stream);
        }
        // On the client's bytes, after translation: one checker for both APIs' shapes.
        if let Some(g) = self.response_guard.as_mut() {
            g.chunk(body, end_of_stream);
        }
        Ok(())
    }

    /// Pingora's `keep_reading_upstream`: the client went away after the answer started.
    /// An admitted request keeps reading the provider's answer to its end (within
    /// [`DRAIN_MAX_BYTES`] and the group's timeout), so what the provider bills — the usage
    /// it reports at the end — is what is charged.
    pub(crate) fn client_gone(&mut self) -> bool {
        if self.reservation.is_none() || self.upstream_status.is_none() {
            return false;
        }
        self.client_gone.get_or_insert_with(Instant::now);
        self.error.get_or_insert_with(|| {
            GatewayError::ClientClosed(
                "the client closed the connection mid-answer; the upstream answer was read to \
                 its end for its usage"
                    .into(),
            )
        });
        true
    }

    /// `fail_to_proxy`: the error to answer with — ours if a step set one, else Pingora's
    /// attributed to client, gateway or upstream.
    pub(crate) fn take_error_or(&mut self, e: &Error) -> GatewayError {
        self.error.take().unwrap_or_else(|| {
            let timed_out = self.timed_out
                || (matches!(e.etype(), ErrorType::ReadTimedout) && self.upstream_status.is_none());
            crate::observe::fault::attribute(e, self.target_label().as_deref(), timed_out)
        })
    }

    pub(crate) fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    // ---- logging ----

    /// The shadow limits this request went over (taken before the reservation is settled).
    pub(crate) fn take_shadow_hits(&mut self) -> Vec<ShadowHit> {
        self.reservation
            .as_mut()
            .map(|r| std::mem::take(&mut r.shadow))
            .unwrap_or_default()
    }

    /// Settles what admission reserved with what the upstream reported (once).
    pub(crate) fn settle(&mut self, acc: &Accounting) -> Option<Billed> {
        let reservation = *self.reservation.take()?;
        let (Some(key), Some(model)) = (&self.key, &self.model) else {
            reservation.cancel();
            return None;
        };
        let (served_model, price) = match self.target {
            Some((m, t)) => {
                let m = &self.snapshot.models[m];
                (&m.name, m.targets[t].price)
            }
            None => (&model.name, model.price),
        };
        let served = Served {
            status: self.upstream_status,
            model: served_model,
            price,
            scanner: self.scanner.as_ref(),
            target: self.target_entry().map(|t| (&t.provider.id, &t.model)),
        };
        Some(account::settle(
            acc,
            reservation,
            key,
            &served,
            self.estimate,
        ))
    }

    pub(crate) fn finished<'a>(
        &'a self,
        status: u16,
        billed: Option<Billed>,
        shadow: &'a [ShadowHit],
    ) -> Finished<'a> {
        Finished {
            request_id: &self.request_id,
            key: self.key.as_deref(),
            model: self.model.as_ref().map(|m| &*m.name),
            served_model: self.target.map(|(m, _)| &*self.snapshot.models[m].name),
            target: self.target_entry().map(|t| &*t.label),
            status,
            error: self.error.as_ref(),
            billed,
            started: self.started,
            ended: Instant::now(),
            first_attempt_at: self.first_attempt_at,
            attempt_started: self.attempt_started,
            client_ip: self.client_ip,
            stream: self.body.as_ref().is_some_and(|b| b.stream),
            attempts: &self.attempts,
            shadow,
            body: self.body.as_ref(),
            completion: self.scanner.as_ref().and_then(|s| s.completion.as_ref()),
            quarantined: self.quarantined,
            guardrails: &self.trips,
            count_tokens: self.endpoint == Some(Endpoint::CountTokens),
        }
    }
}

fn now_ms() -> u64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

fn request_id(req: &RequestHeader) -> String {
    match req
        .headers
        .get(headers::REQUEST_ID.name())
        .and_then(|v| v.to_str().ok())
    {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => new_request_id(rand::random::<u128>()),
    }
}

/// `req_` and the 32 hex digits of `n` (`format!("req_{n:032x}")` without the formatter).
fn new_request_id(n: u128) -> String {
    let mut id = [0u8; 36];
    id[..4].copy_from_slice(b"req_");
    // 16 bytes into 32 hex digits: the slice is exactly the right length.
    let _ = hex::encode_to_slice(n.to_be_bytes(), &mut id[4..]);
    // ASCII by construction.
    String::from_utf8(id.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_request_id_is_the_formatted_id() {
        for n in [
            0u128,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(super::new_request_id(n), format!("req_{n:032x}"));
        }
    }
}

//! The Pingora `ProxyHttp` implementation: each phase is a few lines calling one step.
//!
//! | Pingora phase             | tollgate step                                          |
//! |---------------------------|--------------------------------------------------------|
//! | `new_ctx`                 | load the policy snapshot once for this request          |
//! | `request_filter`          | route, (1) auth, (2) policy, body read, model gating;   |
//! |                           | every refusal is written here                          |
//! | `upstream_peer`           | (4) route: pick a target, render (translate) its body  |
//! | `upstream_request_filter` | (5) credential swap, Host, framing                     |
//! | `request_body_filter`     | hand out the rendered body (on every attempt)          |
//! | `upstream_response_filter`| note the status; start the usage scanner on 2xx        |
//! | `response_filter`         | `x-request-id`, `x-tollgate-target`, `x-ratelimit-*`   |
//! | `response_body_filter`    | (6) usage scanning, then translation, chunk by chunk   |
//! | `logging`                 | (7) settle the reservation, record usage               |
//! | `fail_to_connect` / `error_while_proxy` | retry on the next target              |
//! | `fail_to_proxy`           | upstream failures -> 502 / 503 / 504 in the SPEC shape |

use crate::admission::{Reservation, SlotHold};
use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody, Serves};
use crate::llm::translate::{self, Responder, Translation};
use crate::llm::usage::Scanner;
use crate::observe::metrics::Metrics;
use crate::observe::{record_metrics, Finished, Outcome, RequestLog};
use crate::policy::config::Routing;
use crate::policy::config::{Api, LogLevel};
use crate::policy::snapshot::TargetEntry;
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot};
use crate::proxy::account::{self, Accounting, Estimate, InflightGuard, Served};
use crate::proxy::conn::body_memory::BodyHold;
use crate::proxy::directory::Directory;
use crate::proxy::headers;
use crate::proxy::route::{self, Choice, Plan, TargetRef};
use crate::{observe::fault, proxy::auth, proxy::checks, proxy::respond, proxy::upstream};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use smallvec::SmallVec;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Gateway {
    pub policy: Arc<ArcSwap<Snapshot>>,
    /// API-made keys and group runtime state, updated in place by the admin API.
    pub directory: Arc<Directory>,
    pub accounting: Arc<Accounting>,
    pub request_log: Arc<RequestLog>,
    pub metrics: Arc<Metrics>,
    /// Counts for `error_rate.high` (checked by the webhook service).
    pub error_rates: Arc<crate::observe::error_rate::ErrorRates>,
}

/// Per-request state. The snapshot is loaded once: a reload mid-request does not change
/// the policy a request was admitted with.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: String,
    pub route: Option<Endpoint>,
    pub client_ip: Option<IpAddr>,
    pub key: Option<Arc<KeyEntry>>,
    pub body: Option<RequestBody>,
    pub model: Option<Arc<ModelEntry>>,
    /// The body rendered for the current target.
    pub upstream_body: Bytes,
    pub target: Option<TargetRef>,
    /// Inline for the usual one or two attempts: no allocation.
    pub tried: SmallVec<[TargetRef; 2]>,
    pub error: Option<GatewayError>,
    /// In-flight slots taken before the body is read; admission takes them over.
    pub slots: Option<SlotHold>,
    /// The body's bytes in `server.body_memory`, held until the request ends.
    pub body_hold: Option<BodyHold>,
    /// What admission reserved; settled in `logging`, released on drop whatever happens.
    /// Boxed: 600 bytes the request's future would otherwise carry (and copy) inline.
    pub reservation: Option<Box<Reservation>>,
    /// Tokens reserved: what unknown usage is charged at.
    pub estimate: Estimate,
    /// The gateway asked for stream usage on the client's behalf.
    pub ask_usage: bool,
    pub upstream_status: Option<u16>,
    pub scanner: Option<Scanner>,
    /// The current attempt speaks the other API: how its request was translated.
    pub translation: Option<Translation>,
    /// Rewrites the current answer into the client's API.
    pub translator: Option<Responder>,
    /// Models and attempts left (primary, then fallbacks).
    pub plan: Option<Plan>,
    pub tags: Vec<String>,
    pub affinity: u64,
    pub attempt_started: Option<Instant>,
    /// Every upstream attempt: target and how it ended (request log).
    pub attempts: SmallVec<[(Arc<str>, Outcome); 2]>,
    /// When the first upstream attempt started: what came before is gateway overhead.
    pub first_attempt_at: Option<Instant>,
    /// The last attempt failed by timing out before the first byte.
    pub timed_out: bool,
    pub _inflight: InflightGuard,
}

impl RequestCtx {
    fn api(&self) -> Api {
        self.route.map_or(Api::OpenAi, Endpoint::api)
    }

    pub fn target_label(&self) -> Option<Arc<str>> {
        Some(self.target_entry()?.label.clone())
    }

    fn target_entry(&self) -> Option<&TargetEntry> {
        let (m, t) = self.target?;
        Some(&self.snapshot.models[m].targets[t])
    }

    fn choice(&self) -> Choice<'_> {
        Choice {
            serves: self
                .route
                .map_or(Serves::Only(Api::OpenAi), Endpoint::serves),
            routing: self
                .key
                .as_ref()
                .map_or(Routing::Weighted, |k| k.group.routing),
            affinity: self.affinity,
            tags: &self.tags,
            now_ms: now_ms(),
        }
    }

    /// Whether another attempt is possible (and nothing has reached the client yet).
    fn can_retry(&self, session: &Session) -> bool {
        session.response_written().is_none()
            && self
                .plan
                .as_ref()
                .is_some_and(|p| p.has_next(&self.tried, &self.choice()))
    }

    fn end_attempt(&mut self, outcome: Outcome) {
        if let Some(last) = self.attempts.last_mut() {
            last.1 = outcome;
        }
    }

    /// The shadow limits this request went over (taken before the reservation is settled).
    fn take_shadow_hits(&mut self) -> Vec<crate::admission::ShadowHit> {
        self.reservation
            .as_mut()
            .map(|r| std::mem::take(&mut r.shadow))
            .unwrap_or_default()
    }

    /// Settles what admission reserved with what the upstream reported (once).
    fn settle(&mut self, acc: &Accounting) -> Option<crate::llm::usage::Billed> {
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
            reported: self.scanner.as_ref().map(|s| s.usage).unwrap_or_default(),
        };
        Some(account::settle(
            acc,
            reservation,
            key,
            &served,
            self.estimate,
        ))
    }

    fn finished(&self, status: u16, billed: Option<crate::llm::usage::Billed>) -> Finished<'_> {
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
            shadow: &[],
            body: self.body.as_ref(),
            completion: self.scanner.as_ref().and_then(|s| s.completion.as_ref()),
        }
    }

    /// Passive health: the current attempt failed.
    fn attempt_failed(&self) {
        if let Some(t) = self.target_entry() {
            let spent = self.attempt_started.map(|s| s.elapsed().as_micros() as u64);
            if t.health.record_failure(now_ms(), spent) {
                log::warn!("target {} ejected after repeated failures", t.label);
            }
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

impl Gateway {
    /// Steps 1-3 up to admission. `Ok(())` means forward the request.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<std::result::Result<(), GatewayError>> {
        let snapshot = ctx.snapshot.clone();
        let req = session.req_header();
        let route = match Endpoint::parse(&req.method, req.uri.path()) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        ctx.route = Some(route);
        let now = SystemTime::now();
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let key = match auth::authenticate(&snapshot, &self.directory, req, now_s) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        ctx.key = Some(key.clone());
        let group_state = self.directory.group_state(&key.group);
        if let Err(e) = checks::check_state(&key, group_state, now) {
            return Ok(Err(e));
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let xff = session
            .req_header()
            .headers
            .get(headers::FORWARDED_FOR.name())
            .map(|v| v.as_bytes());
        ctx.client_ip = checks::client_ip(peer, xff, &snapshot.server.trusted_proxies);
        if let Err(e) = checks::check_ip(&key, ctx.client_ip) {
            return Ok(Err(e));
        }
        if route == Endpoint::ListModels {
            return Ok(Ok(()));
        }
        // The slot first: a client cannot have more bodies in memory than requests in flight.
        match account::hold_slots(&self.accounting.admission, &key) {
            Ok(h) => ctx.slots = Some(h),
            Err(e) => return Ok(Err(e)),
        }
        let hold = ctx
            .body_hold
            .insert(BodyHold::new(&self.accounting.body_budget));
        let bytes = match respond::read_body(session, &snapshot.server, hold).await? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let body = match RequestBody::parse(bytes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let checked = checks::resolve_model(
            &snapshot,
            &key,
            body.model.as_deref(),
            route.serves(),
            ctx.client_ip,
            group_state,
        )
        .and_then(|m| checks::check_max_tokens(&key, body.max_tokens).map(|()| m));
        let model = match checked {
            Ok(m) => m,
            Err(e) => {
                ctx.body = Some(body);
                return Ok(Err(e));
            }
        };
        ctx.ask_usage = body.stream
            && matches!(route, Endpoint::ChatCompletions | Endpoint::Completions)
            && !body.client_wants_stream_usage();
        let plan = Plan::new(&snapshot, &key, model.clone(), route.serves());
        let headers = &session.req_header().headers;
        ctx.tags = headers
            .get(headers::TAGS.name())
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        ctx.affinity = route::affinity(
            headers
                .get(crate::proxy::headers::SESSION.name())
                .map(|v| v.as_bytes()),
            &key.id,
        );
        let admitted = account::admit(
            &self.accounting.admission,
            &snapshot,
            &key,
            &plan.models,
            &body,
            route,
            ctx.slots.take(),
        );
        ctx.plan = Some(plan);
        ctx.body = Some(body);
        ctx.model = Some(model);
        match admitted {
            Ok((mut r, estimate)) => {
                let max_tokens = ctx.body.as_ref().and_then(|b| b.max_tokens);
                checks::shadow_max_tokens(&key, max_tokens, &mut r.shadow);
                ctx.reservation = Some(Box::new(r));
                ctx.estimate = estimate;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            snapshot: self.policy.load_full(),
            started: Instant::now(),
            request_id: String::new(),
            route: None,
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
            _inflight: InflightGuard::new(&self.accounting.inflight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        let verdict = self.admit(session, ctx).await?;
        let api = ctx.route.map_or_else(
            || Endpoint::api_for_path(session.req_header().uri.path()),
            Endpoint::api,
        );
        match verdict {
            Err(e) => {
                let written = respond::refuse(session, &e, api, &ctx.request_id).await;
                ctx.error = Some(e);
                written.map(|()| true)
            }
            Ok(()) if ctx.route == Some(Endpoint::ListModels) => {
                let key = ctx
                    .key
                    .as_ref()
                    .ok_or_else(|| Error::new(ErrorType::InternalError))?;
                let body = respond::models_list(&ctx.snapshot, key);
                respond::write_json(session, 200, body, &ctx.request_id, None).await?;
                Ok(true)
            }
            Ok(()) => Ok(false),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // A target whose host does not resolve fails here, before any connection: count it
        // as a failed attempt and move on to the next one.
        loop {
            let Some(mut plan) = ctx.plan.take() else {
                return Error::e_explain(ErrorType::InternalError, "upstream_peer without a plan");
            };
            let next = plan.next(&ctx.tried, &ctx.choice(), &mut rand::thread_rng());
            ctx.plan = Some(plan);
            let (model, t) = match next {
                Ok(x) => x,
                Err(e) => {
                    ctx.error = Some(if ctx.timed_out {
                        GatewayError::UpstreamTimeout(format!(
                            "{e}: no first byte within the group timeout"
                        ))
                    } else {
                        e
                    });
                    return Error::e_explain(ErrorType::HTTPStatus(502), "no target left");
                }
            };
            let (Some(key), Some(body), Some(route)) = (&ctx.key, &ctx.body, ctx.route) else {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "upstream_peer without an admitted request",
                );
            };
            let target = &model.targets[t];
            ctx.target = Some((model.index, t));
            ctx.tried.push((model.index, t));
            let client_model = body.model.as_deref().unwrap_or(&model.name);
            let rendered = translate::render(
                body,
                route,
                target.provider.api,
                &target.model,
                client_model,
                ctx.ask_usage,
                translate::default_max_tokens(&ctx.snapshot.server, key),
            );
            match rendered {
                Ok((bytes, t)) => (ctx.upstream_body, ctx.translation) = (bytes, t),
                Err(e) => {
                    ctx.error = Some(e);
                    return Error::e_explain(ErrorType::HTTPStatus(400), "cannot translate");
                }
            }
            let now = Instant::now();
            ctx.attempt_started = Some(now);
            ctx.first_attempt_at.get_or_insert(now);
            ctx.attempts.push((target.label.clone(), Outcome::Pending));
            ctx.timed_out = false;
            match upstream::peer(target, key.group.timeout) {
                Ok(peer) => return Ok(peer),
                Err(e) => {
                    log::warn!("{e}");
                    ctx.attempt_failed();
                    ctx.end_attempt(Outcome::ConnectFailed);
                }
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (m, t) = ctx
            .target
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let provider = &ctx.snapshot.models[m].targets[t].provider;
        let api_path = ctx
            .translation
            .as_ref()
            .map(|t| t.direction.upstream_path());
        let len = ctx.upstream_body.len();
        upstream::rewrite_request(req, provider, len, &ctx.request_id, api_path)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Pingora replays the client's bytes from its retry buffer in one piece on every
        // attempt; we send the body rendered for this attempt's target instead.
        *body = end_of_stream.then(|| ctx.upstream_body.clone());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        ctx.end_attempt(Outcome::Status(status));
        if let Some(err) = fault::unrelayable(status, ctx.target_label().as_deref()) {
            ctx.attempt_failed();
            let retry = ctx.can_retry(session);
            ctx.error = (!retry).then_some(err);
            let mut e = Error::explain(ErrorType::HTTPStatus(502), "unrelayable upstream status");
            e.set_retry(retry);
            return Err(e.into_up());
        }
        if status == 429 || status >= 500 {
            ctx.attempt_failed();
            if ctx.can_retry(session) {
                // Nothing has reached the client: try the next target or fallback.
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(status),
                    "upstream refused; trying the next target",
                );
                e.set_retry(true);
                return Err(e);
            }
        } else if let (Some(t), Some(started)) = (ctx.target_entry(), ctx.attempt_started) {
            t.health
                .record_success(started.elapsed().as_micros() as u64);
        }
        ctx.upstream_status = Some(status);
        // A translated answer is scanned as the provider sent it; the translator drops the
        // usage chunk the client did not ask for.
        let strip_usage = ctx.ask_usage && ctx.translation.is_none();
        ctx.scanner = account::scanner_for(resp, strip_usage);
        if let (Some(scanner), Some(key)) = (ctx.scanner.as_mut(), &ctx.key) {
            if key.group.log_level == LogLevel::Full && self.request_log.enabled() {
                scanner.collect_completion();
            }
        }
        let t = ctx.translation.as_ref();
        ctx.translator = t.map(|t| Responder::for_response(t, resp)).transpose()?;
        if strip_usage && ctx.scanner.is_some() {
            // We may drop the injected usage chunk: the length is no longer the provider's.
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // x-request-id, x-tollgate-target, four x-ratelimit-*: in place of the provider's,
        // written after its headers.
        headers::remove_added(resp);
        resp.append_wire_header(&headers::REQUEST_ID, ctx.request_id.as_bytes())?;
        if let Some(t) = ctx.target_entry() {
            resp.append_wire_header(&headers::TARGET, t.label.as_bytes())?;
        }
        if let Some(r) = &ctx.reservation {
            account::limit_headers(resp, r)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(scanner) = ctx.scanner.as_mut() {
            scanner.chunk(body, end_of_stream);
        }
        if let Some(t) = ctx.translator.as_mut() {
            t.chunk(body, end_of_stream);
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::proxy::conn::request_finished();
        let shadow = ctx.take_shadow_hits();
        let billed = ctx.settle(&self.accounting);
        self.accounting
            .note_refusals(ctx.key.as_deref(), ctx.error.as_ref(), &shadow);
        let status = match session.response_written() {
            Some(h) if !h.status.is_informational() => h.status.as_u16(),
            _ => ctx.error.as_ref().map_or(0, GatewayError::status),
        };
        let mut finished = ctx.finished(status, billed);
        finished.shadow = &shadow;
        record_metrics(&self.metrics, &finished);
        self.error_rates
            .record(&finished, || self.accounting.admission.now_ms());
        self.request_log.write(&finished);
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.attempt_failed();
        ctx.end_attempt(Outcome::ConnectFailed);
        e.set_retry(ctx.can_retry(session));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if matches!(e.etype(), ErrorType::HTTPStatus(_)) {
            // Our own refusal of a 429/5xx: health already recorded, retry already decided.
            return e;
        }
        let before_first_byte = ctx.upstream_status.is_none();
        if before_first_byte && e.esource() == &ErrorSource::Upstream {
            ctx.attempt_failed();
            ctx.timed_out = matches!(e.etype(), ErrorType::ReadTimedout);
            ctx.end_attempt(if ctx.timed_out {
                Outcome::TimedOut
            } else {
                Outcome::Failed
            });
        }
        let client_gone = e.esource() == &ErrorSource::Downstream;
        if before_first_byte && client_gone {
            ctx.end_attempt(Outcome::ClientClosed);
        }
        // The body is replayed from our own copy, so a POST is safe to retry as long as
        // nothing has reached the client yet — and the client is still there.
        if before_first_byte && !client_gone && ctx.can_retry(session) {
            e.set_retry(true);
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.error.take().unwrap_or_else(|| {
            let timed_out = ctx.timed_out
                || (matches!(e.etype(), ErrorType::ReadTimedout) && ctx.upstream_status.is_none());
            fault::attribute(e, ctx.target_label().as_deref(), timed_out)
        });
        let unanswered = session
            .response_written()
            .is_none_or(|h| h.status.is_informational());
        let code = if unanswered && err.writable() {
            if let Err(w) = respond::write_error(session, &err, ctx.api(), &ctx.request_id).await {
                log::debug!("cannot write error response: {w}");
            }
            err.status()
        } else {
            0
        };
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
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

//! The Pingora `ProxyHttp` implementation: each phase is a few lines calling one step.
//!
//! | Pingora phase             | tollgate step                                          |
//! |---------------------------|--------------------------------------------------------|
//! | `new_ctx`                 | load the policy snapshot once for this request          |
//! | `request_filter`          | four stages (`admit`): identify, read body, guardrails |
//! |                           | (`guard`), reserve; every refusal is written here      |
//! | `upstream_peer`           | (4) route: pick a target, render (translate) its body  |
//! | `upstream_request_filter` | (5) credential swap, Host, framing                     |
//! | `request_body_filter`     | hand out the rendered body (on every attempt)          |
//! | `upstream_response_filter`| note the status; start the usage scanner on 2xx        |
//! | `response_filter`         | `x-request-id`, `x-tollgate-target`, `x-ratelimit-*`   |
//! | `response_body_filter`    | (6) usage scanning, translation, response guardrails   |
//! | `keep_reading_upstream`   | the client left mid-answer: read the rest for its usage |
//! | `logging`                 | (7) settle the reservation, record usage, log, trace   |
//! | `fail_to_connect` / `error_while_proxy` | retry on the next target              |
//! | `fail_to_proxy`           | upstream failures -> 502 / 503 / 504 in the documented error shape |
//!
//! The request's state lives in [`RequestCtx`] (`ctx.rs`), changed only through its
//! methods.

use crate::error::GatewayError;
use crate::llm::body::Endpoint;
use crate::observe::metrics::Metrics;
use crate::observe::{record_metrics, Outcome, RequestLog};
use crate::policy::snapshot::Snapshot;
use crate::proxy::account::{Accounting, InflightGuard};
use crate::proxy::admit;
pub(crate) use crate::proxy::ctx::RequestCtx;
use crate::proxy::directory::Directory;
use crate::proxy::{cors, respond};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

pub(crate) struct Gateway {
    pub(crate) policy: Arc<ArcSwap<Snapshot>>,
    /// API-made keys and group runtime state, updated in place by the admin API.
    pub(crate) directory: Arc<Directory>,
    pub(crate) accounting: Arc<Accounting>,
    pub(crate) request_log: Arc<RequestLog>,
    pub(crate) metrics: Arc<Metrics>,
    /// Counts for `error_rate.high` (checked by the webhook service).
    pub(crate) error_rates: Arc<crate::observe::error_rate::ErrorRates>,
    /// `[tracing]`, read at start (`None`: off, nothing done per request).
    pub(crate) tracer: Option<Arc<crate::observe::trace::Tracer>>,
}

enum Admission {
    Forward,
    ListModels,
    /// `count_tokens` answered by the gateway's estimate.
    CountEstimate(u64),
}

impl Gateway {
    /// `request_filter`'s stages: identify, read the body, reserve.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<Admission, GatewayError> {
        let acc = &self.accounting;
        // One handle for the three stages (each also needs the context mutably).
        let snapshot = ctx.snapshot().clone();
        let who = admit::identify(&self.directory, acc, session, ctx, &snapshot)?;
        if who.endpoint == Endpoint::ListModels {
            return Ok(Admission::ListModels);
        }
        let (mut body, model) = admit::read_body(acc, session, ctx, &snapshot, &who).await?;
        if who.endpoint == Endpoint::CountTokens {
            return Ok(
                match admit::count_tokens(ctx, &snapshot, who, body, model)? {
                    admit::Counted::Forward => Admission::Forward,
                    admit::Counted::Estimate(n) => Admission::CountEstimate(n),
                },
            );
        }
        admit::guard(acc, ctx, &snapshot, &who, &mut body, &model).await?;
        admit::reserve(acc, session, ctx, &snapshot, who, body, model)?;
        Ok(Admission::Forward)
    }
}

fn answered(session: &Session) -> bool {
    session.response_written().is_some()
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let inflight = InflightGuard::new(&self.accounting.inflight);
        RequestCtx::new(self.policy.load_full(), inflight)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.begin(session.req_header(), self.tracer.as_deref());
        if cors::is_preflight(session.req_header()) {
            return respond::preflight(session, ctx, &self.directory).await;
        }
        let admitted = self.admit(session, ctx).await;
        ctx.note_origin(session.req_header(), &self.directory);
        match admitted {
            Ok(Admission::Forward) => Ok(false),
            Ok(Admission::ListModels) => respond::list_models(session, ctx).await.map(|()| true),
            Ok(Admission::CountEstimate(n)) => respond::count_estimate(session, ctx, n)
                .await
                .map(|()| true),
            Err(e) => {
                let api = ctx.api(session.req_header().uri.path());
                let written = respond::refuse(session, &e, api, ctx.request_id(), ctx.cors()).await;
                ctx.refused(e);
                written.map(|()| true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.next_peer()
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.rewrite_upstream_request(req)
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
        *body = end_of_stream.then(|| ctx.upstream_body().clone());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.answer_started(resp, answered(session), self.request_log.enabled())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.answer_headers(resp)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        ctx.answer_chunk(body, end_of_stream)?;
        Ok(None)
    }

    fn keep_reading_upstream(&self, _session: &Session, ctx: &mut RequestCtx) -> bool {
        ctx.client_gone()
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        crate::proxy::conn::request_finished();
        let shadow = ctx.take_shadow_hits();
        let billed = ctx.settle(&self.accounting);
        ctx.end_guards();
        let key = ctx.key().map(|k| &**k);
        self.accounting.note_refusals(key, ctx.error(), &shadow);
        self.accounting.note_trips(key, ctx.trips());
        let status = match session.response_written() {
            Some(h) if !h.status.is_informational() => h.status.as_u16(),
            _ => ctx.error().map_or(0, GatewayError::status),
        };
        let finished = ctx.finished(status, billed, &shadow);
        record_metrics(&self.metrics, &finished);
        self.error_rates
            .record(&finished, || self.accounting.admission.now_ms());
        self.request_log.write(&finished);
        ctx.export_trace(self.tracer.as_deref(), &finished);
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
        e.set_retry(ctx.can_retry(answered(session)));
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
        let before_first_byte = !ctx.first_byte_seen();
        if before_first_byte && e.esource() == &ErrorSource::Upstream {
            ctx.attempt_broke(matches!(e.etype(), ErrorType::ReadTimedout));
        }
        let client_gone = e.esource() == &ErrorSource::Downstream;
        if before_first_byte && client_gone {
            ctx.end_attempt(Outcome::ClientClosed);
        }
        // The body is replayed from our own copy, so a POST is safe to retry as long as
        // nothing has reached the client yet — and the client is still there.
        if before_first_byte && !client_gone && ctx.can_retry(answered(session)) {
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
        let err = ctx.take_error_or(e);
        let code = respond::write_failure(session, &err, ctx).await;
        ctx.refused(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

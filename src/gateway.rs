//! The Pingora `ProxyHttp` implementation: each phase is a few lines calling one step.
//!
//! | Pingora phase             | tollgate step                                          |
//! |---------------------------|--------------------------------------------------------|
//! | `new_ctx`                 | load the policy snapshot once for this request          |
//! | `request_filter`          | route, (1) auth, (2) policy, body read, model gating;   |
//! |                           | every refusal is written here                          |
//! | `upstream_peer`           | (4) route: pick a target, render its body              |
//! | `upstream_request_filter` | (5) credential swap, Host, framing                     |
//! | `request_body_filter`     | hand out the rendered body (on every attempt)          |
//! | `upstream_response_filter`| note the status; start the usage scanner on 2xx        |
//! | `response_filter`         | `x-request-id`, `x-tollgate-target`, `x-ratelimit-*`   |
//! | `response_body_filter`    | (6) usage scanning, chunk by chunk                     |
//! | `logging`                 | (7) settle the reservation, record usage               |
//! | `fail_to_connect` / `error_while_proxy` | retry on the next target              |
//! | `fail_to_proxy`           | upstream failures -> 502 / 503 / 504 in the SPEC shape |

use crate::account::{self, Accounting};
use crate::admission::Reservation;
use crate::config::Api;
use crate::error::GatewayError;
use crate::request::{RequestBody, Route};
use crate::route::{self, TargetRef};
use crate::snapshot::{KeyEntry, ModelEntry, Snapshot};
use crate::usage::Scanner;
use crate::{auth, policy, respond, upstream};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Gateway {
    pub policy: Arc<ArcSwap<Snapshot>>,
    pub accounting: Arc<Accounting>,
}

/// Counts requests in the process (for draining on shutdown); released on drop.
pub struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> InflightGuard {
        counter.fetch_add(1, Ordering::SeqCst);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-request state. The snapshot is loaded once: a reload mid-request does not change
/// the policy a request was admitted with.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: String,
    pub route: Option<Route>,
    pub client_ip: Option<IpAddr>,
    pub key: Option<Arc<KeyEntry>>,
    pub body: Option<RequestBody>,
    pub model: Option<Arc<ModelEntry>>,
    /// The body rendered for the current target.
    pub upstream_body: Bytes,
    pub target: Option<TargetRef>,
    pub tried: Vec<TargetRef>,
    pub error: Option<GatewayError>,
    /// What admission reserved; settled in `logging`, released on drop whatever happens.
    pub reservation: Option<Reservation>,
    /// Reserved output tokens (the request's max_tokens or the default).
    pub est_output: u64,
    pub est_input: u64,
    /// The gateway asked for stream usage on the client's behalf.
    pub ask_usage: bool,
    pub upstream_status: Option<u16>,
    pub scanner: Option<Scanner>,
    pub _inflight: InflightGuard,
}

impl RequestCtx {
    fn api(&self) -> Api {
        self.route.map_or(Api::OpenAi, Route::api)
    }

    pub fn target_label(&self) -> Option<Arc<str>> {
        let (m, t) = self.target?;
        Some(self.snapshot.models[m].targets[t].label.clone())
    }
}

fn request_id(req: &RequestHeader) -> String {
    match req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => format!("req_{:032x}", rand::random::<u128>()),
    }
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
        let route = match Route::parse(&req.method, req.uri.path()) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        ctx.route = Some(route);
        let key = match auth::authenticate(&snapshot, req) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        ctx.key = Some(key.clone());
        if let Err(e) = policy::check_state(&key, SystemTime::now()) {
            return Ok(Err(e));
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let xff = session
            .req_header()
            .headers
            .get("x-forwarded-for")
            .map(|v| v.as_bytes());
        ctx.client_ip = policy::client_ip(peer, xff, &snapshot.server.trusted_proxies);
        if let Err(e) = policy::check_ip(&key, ctx.client_ip) {
            return Ok(Err(e));
        }
        if route == Route::ListModels {
            return Ok(Ok(()));
        }
        let bytes = match respond::read_body(session, snapshot.server.max_body).await? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let body = match RequestBody::parse(&bytes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let checked = policy::resolve_model(
            &snapshot,
            &key,
            body.model.as_deref(),
            route.api(),
            ctx.client_ip,
        )
        .and_then(|m| policy::check_max_tokens(&key, body.max_tokens).map(|()| m));
        let model = match checked {
            Ok(m) => m,
            Err(e) => {
                ctx.body = Some(body);
                return Ok(Err(e));
            }
        };
        ctx.ask_usage = body.stream
            && matches!(route, Route::ChatCompletions | Route::Completions)
            && !body.client_wants_stream_usage();
        let admitted = account::admit(
            &self.accounting.admission,
            &snapshot,
            &key,
            &model,
            &body,
            route,
            ctx,
        );
        ctx.body = Some(body);
        ctx.model = Some(model);
        match admitted {
            Ok(r) => {
                ctx.reservation = Some(r);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

/// Maps a Pingora failure that reached `fail_to_proxy` to the SPEC's upstream errors.
fn upstream_failure(e: &Error, ctx: &RequestCtx) -> Option<GatewayError> {
    if let Some(err) = &ctx.error {
        return Some(err.clone());
    }
    let target = ctx
        .target_label()
        .map_or_else(|| "upstream".to_string(), |l| l.to_string());
    match (e.esource(), e.etype()) {
        (ErrorSource::Downstream, _) => None,
        (_, ErrorType::ReadTimedout) | (_, ErrorType::ConnectTimedout)
            if ctx.target.is_some() && matches!(e.etype(), ErrorType::ReadTimedout) =>
        {
            Some(GatewayError::UpstreamTimeout(format!(
                "{target}: no response within the group timeout"
            )))
        }
        (_, ErrorType::HTTPStatus(503)) => Some(GatewayError::NoHealthyTarget(
            "no target can take the request".into(),
        )),
        _ => Some(GatewayError::UpstreamError(format!(
            "every target failed; last: {target}: {}",
            e.etype().as_str()
        ))),
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
            tried: Vec::new(),
            error: None,
            reservation: None,
            est_output: 0,
            est_input: 0,
            ask_usage: false,
            upstream_status: None,
            scanner: None,
            _inflight: InflightGuard::new(&self.accounting.inflight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        let verdict = self.admit(session, ctx).await?;
        let api = ctx.route.map_or_else(
            || Route::api_for_path(session.req_header().uri.path()),
            Route::api,
        );
        match verdict {
            Err(e) => {
                respond::write_error(session, &e, api, &ctx.request_id).await?;
                ctx.error = Some(e);
                Ok(true)
            }
            Ok(()) if ctx.route == Some(Route::ListModels) => {
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
        let (Some(model), Some(key), Some(body)) = (&ctx.model, &ctx.key, &ctx.body) else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream_peer without an admitted request",
            );
        };
        let Some(t) = route::pick_weighted(model, ctx.api(), &ctx.tried, &mut rand::thread_rng())
        else {
            ctx.error = Some(if ctx.tried.is_empty() {
                GatewayError::NoHealthyTarget(format!(
                    "model {} has no target for this API",
                    model.name
                ))
            } else {
                GatewayError::UpstreamError(format!("every target of model {} failed", model.name))
            });
            return Error::e_explain(ErrorType::HTTPStatus(502), "no target left");
        };
        let target = &model.targets[t];
        ctx.target = Some((model.index, t));
        ctx.tried.push((model.index, t));
        ctx.upstream_body = body.render(&target.model, ctx.ask_usage);
        upstream::peer(target, key.group.timeout)
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
        upstream::rewrite_request(req, provider, ctx.upstream_body.len(), &ctx.request_id)
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
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.scanner = account::scanner_for(resp, ctx.ask_usage);
        if ctx.ask_usage && ctx.scanner.is_some() {
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
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(label) = ctx.target_label() {
            resp.insert_header("x-tollgate-target", &*label)?;
        }
        if let Some(r) = &ctx.reservation {
            account::rate_headers(resp, &r.rate)?;
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
        Ok(None)
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        account::settle(&self.accounting, ctx);
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = ctx.key.as_ref().map_or(0, |k| k.group.retries as usize);
        e.set_retry(ctx.tried.len() <= retries);
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
        let retries = ctx.key.as_ref().map_or(0, |k| k.group.retries as usize);
        // The body is replayed from our own copy, so a POST is safe to retry as long as
        // nothing has reached the client yet.
        if session.response_written().is_some() || ctx.tried.len() > retries {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = upstream_failure(e, ctx);
        let code = match (&err, session.response_written()) {
            (Some(err), None) => {
                if let Err(w) = respond::write_error(session, err, ctx.api(), &ctx.request_id).await
                {
                    log::debug!("cannot write error response: {w}");
                }
                err.status()
            }
            _ => 0,
        };
        ctx.error = err;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

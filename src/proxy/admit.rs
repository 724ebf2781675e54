//! `request_filter`'s three stages, each refusing with a [`GatewayError`]:
//!
//! 1. [`identify`]: which endpoint, which key (file snapshot, then the directory), key and
//!    group state, the client's IP against the allow-lists;
//! 2. [`read_body`]: a `max_parallel` slot first (a client cannot have more bodies in
//!    memory than requests in flight), then the body within `max_body`, `body_timeout` and
//!    `server.body_memory`, then model gating and `max_tokens`;
//! 3. [`guard`]: the key's guardrails over the request's texts (redacting the body in
//!    place, or refusing); before the reservation, so a blocked request reserves nothing;
//! 4. [`reserve`]: routing plan, then windows, slots and budgets of all three layers,
//!    reserved at once.

use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody};
use crate::policy::snapshot::{KeyEntry, ModelEntry, Snapshot};
use crate::proxy::account::Accounting;
use crate::proxy::ctx::{Admitted, RequestCtx};
use crate::proxy::directory::Directory;
use crate::proxy::route::{self, Plan};
use crate::proxy::{account, auth, checks, headers, mtls, respond};
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What stage 1 found: the key and its group's runtime state.
pub(crate) struct Identified {
    pub(crate) endpoint: Endpoint,
    pub(crate) key: Arc<KeyEntry>,
    group_state: crate::policy::config::GroupState,
}

/// Stage 1: endpoint, credential → key, key and group state, client IP.
pub(crate) fn identify(
    directory: &Directory,
    acc: &Accounting,
    session: &Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
) -> Result<Identified, GatewayError> {
    let req = session.req_header();
    let endpoint = Endpoint::parse(&req.method, req.uri.path())?;
    ctx.set_endpoint(endpoint);
    // The gateway's one clock (expiry, state), as admission reads it.
    let now_ms = acc.admission.now_ms();
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms);
    let now_s = now_ms / 1000;
    let key = auth::authenticate(snapshot, directory, req, now_s)?;
    ctx.set_key(key.clone());
    let group_state = directory.group_state(&key.group);
    ctx.set_quarantined(group_state == crate::policy::config::GroupState::Quarantined);
    checks::check_state(&key, group_state, now)?;
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let xff = req
        .headers
        .get(headers::FORWARDED_FOR.name())
        .map(|v| v.as_bytes());
    let ip = checks::client_ip(peer, xff, &snapshot.server.trusted_proxies);
    ctx.set_client_ip(ip);
    checks::check_ip(&key, ip)?;
    if mtls::applies(&key) {
        mtls::check(&key, session)?;
    }
    if let Some(p) = key.req_policy() {
        crate::proxy::policy_checks::check_origin(p, &key, req)?;
    }
    Ok(Identified {
        endpoint,
        key,
        group_state,
    })
}

/// Stage 2: a slot, the body, then the model it names (gating and `max_tokens`).
pub(crate) async fn read_body(
    acc: &Accounting,
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    who: &Identified,
) -> Result<(RequestBody, Arc<ModelEntry>), GatewayError> {
    let key = &who.key;
    ctx.hold_slots(account::hold_slots(&acc.admission, key)?);
    let hold = ctx.body_hold(&acc.body_budget);
    let bytes = respond::read_body(session, &snapshot.server, hold).await?;
    let body = RequestBody::parse(bytes)?;
    let checked = checks::resolve_model(
        snapshot,
        key,
        body.model.as_deref(),
        who.endpoint.serves(),
        ctx.client_ip(),
        who.group_state,
    )
    .and_then(|m| checks::check_max_tokens(key, body.max_tokens).map(|()| m))
    .and_then(|m| {
        let p = key
            .req_policy()
            .filter(|_| who.endpoint != Endpoint::CountTokens);
        match p {
            Some(p) => crate::proxy::policy_checks::check_required(p, key, &body).map(|()| m),
            None => Ok(m),
        }
    });
    match checked {
        Ok(model) => Ok((body, model)),
        Err(e) => {
            ctx.keep_body(body);
            Err(e)
        }
    }
}

/// Stage 3: the guardrails in force for the key (org ∪ group ∪ key) over the request's
/// texts. A refused request keeps neither its body nor its verdicts' text: the log line
/// cannot carry what a guardrail blocked.
pub(crate) async fn guard(
    acc: &Accounting,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    who: &Identified,
    body: &mut RequestBody,
    model: &Arc<ModelEntry>,
) -> Result<(), GatewayError> {
    if who.key.guards().is_none() {
        return Ok(());
    }
    let checked = crate::proxy::guard::check_request(
        snapshot,
        &who.key,
        who.endpoint,
        &model.name,
        body,
        ctx.guard_trips(),
        || acc.admission.now_ms(),
    )
    .await;
    if checked.is_err() {
        ctx.keep_model(model.clone());
    }
    checked
}

/// Stage 4: the routing plan, then one reservation against all three layers.
pub(crate) fn reserve(
    acc: &Accounting,
    session: &Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    who: Identified,
    body: RequestBody,
    model: Arc<ModelEntry>,
) -> Result<(), GatewayError> {
    let Identified { endpoint, key, .. } = who;
    let ask_usage = body.stream
        && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
        && !body.client_wants_stream_usage();
    let plan = Plan::new(snapshot, &key, model.clone(), endpoint.serves());
    if !plan.reachable(&key, endpoint.serves()) {
        ctx.keep_body(body);
        ctx.keep_model(model.clone());
        return Err(crate::proxy::policy_checks::no_provider(&key, &model));
    }
    let req = &session.req_header().headers;
    let tags = req
        .get(headers::TAGS.name())
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let affinity = route::affinity(
        req.get(headers::SESSION.name()).map(|v| v.as_bytes()),
        &key.id,
    );
    let admitted = account::admit(
        &acc.admission,
        snapshot,
        &key,
        (&model.name, &plan.models),
        &body,
        endpoint,
        ctx.take_slots(),
    );
    let (mut reservation, estimate) = match admitted {
        Ok(r) => r,
        Err(e) => {
            ctx.keep_body(body);
            ctx.keep_model(model);
            return Err(e);
        }
    };
    checks::shadow_max_tokens(&key, body.max_tokens, &mut reservation.shadow);
    let mut body = body;
    if let Some(n) = reservation.clamped_max_tokens {
        clamp_body(&mut body, endpoint, n);
    }
    ctx.admitted(Admitted {
        plan,
        body,
        model,
        reservation,
        estimate,
        ask_usage,
        tags,
        affinity,
    });
    Ok(())
}

/// What `POST /v1/messages/count_tokens` gets after stage 2.
pub(crate) enum Counted {
    /// Forwarded to an Anthropic target of the model (uncounted: no reservation).
    Forward,
    /// Answered by the gateway: the model has no Anthropic target the key may reach.
    Estimate(u64),
}

/// `count_tokens`: gated like `/v1/messages` up to here (key, state, IP, origin, model
/// lists); never reserved, billed or counted against windows and budgets. Forwarded to an
/// Anthropic target of the model (or a fallback), else answered from the gateway's prompt
/// estimate (one token per 4 bytes of `system`, `messages`, `tools`).
pub(crate) fn count_tokens(
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    who: Identified,
    body: RequestBody,
    model: Arc<ModelEntry>,
) -> Result<Counted, GatewayError> {
    use crate::llm::body::Serves;
    use crate::policy::config::Api;
    // The in-flight slot held while the body was read is not kept.
    drop(ctx.take_slots());
    let key = who.key;
    let allowed = |t: &crate::policy::snapshot::TargetEntry| {
        key.req_policy()
            .is_none_or(|p| p.provider_allowed(&t.provider.id))
    };
    let plan = Plan::new(snapshot, &key, model.clone(), Serves::Only(Api::Anthropic));
    let anthropic = plan.models.iter().any(|m| {
        m.targets
            .iter()
            .any(|t| t.provider.api == Api::Anthropic && allowed(t))
    });
    if anthropic {
        ctx.counted_only(plan, body, model);
        return Ok(Counted::Forward);
    }
    if !model.targets.iter().any(allowed) {
        ctx.keep_body(body);
        ctx.keep_model(model.clone());
        return Err(crate::proxy::policy_checks::no_provider(&key, &model));
    }
    let prompt: usize = ["system", "messages", "tools", "tool_choice"]
        .iter()
        .filter_map(|f| body.get(f))
        .map(<[u8]>::len)
        .sum();
    ctx.keep_body(body);
    ctx.keep_model(model);
    Ok(Counted::Estimate(
        crate::llm::usage::estimate_input_tokens(prompt).max(1),
    ))
}

/// `budget_clamp`: the body sent upstream carries `max_tokens` = `n` under the name(s)
/// the client used, else the route's own (`max_completion_tokens` for chat, whose
/// `max_tokens` OpenAI deprecates; `max_output_tokens` for Responses; `max_tokens` for
/// completions and Anthropic messages).
fn clamp_body(body: &mut RequestBody, endpoint: Endpoint, n: u64) {
    let value = itoa::Buffer::new().format(n).as_bytes().to_vec();
    let mut named = false;
    for name in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        if body.get(name).is_some() {
            body.set_field(name, &value);
            named = true;
        }
    }
    if !named {
        let name = match endpoint {
            Endpoint::ChatCompletions => "max_completion_tokens",
            Endpoint::Responses => "max_output_tokens",
            _ => "max_tokens",
        };
        body.set_field(name, &value);
    }
    body.max_tokens = Some(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clamped(endpoint: Endpoint, body: &str) -> serde_json::Value {
        let mut b = RequestBody::parse(body.to_string()).unwrap();
        clamp_body(&mut b, endpoint, 42);
        assert_eq!(b.max_tokens, Some(42));
        serde_json::from_slice(&b.render("m", false)).unwrap()
    }

    #[test]
    fn the_clamp_keeps_the_clients_field_else_uses_the_routes() {
        let v = clamped(Endpoint::ChatCompletions, r#"{"max_tokens":900}"#);
        assert_eq!(
            (v["max_tokens"].as_u64(), v.get("max_completion_tokens")),
            (Some(42), None)
        );
        let v = clamped(
            Endpoint::ChatCompletions,
            r#"{"max_completion_tokens":900}"#,
        );
        assert_eq!(
            (v["max_completion_tokens"].as_u64(), v.get("max_tokens")),
            (Some(42), None)
        );
        let v = clamped(Endpoint::ChatCompletions, r#"{"messages":[]}"#);
        assert_eq!(v["max_completion_tokens"], 42);
        let v = clamped(Endpoint::Responses, r#"{"input":"hi"}"#);
        assert_eq!(v["max_output_tokens"], 42);
        let v = clamped(Endpoint::Messages, r#"{"messages":[]}"#);
        assert_eq!(v["max_tokens"], 42);
        let v = clamped(Endpoint::Completions, r#"{"prompt":"x","max_tokens":null}"#);
        assert_eq!(v["max_tokens"], 42);
    }
}

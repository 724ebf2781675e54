//! Who is calling: the root token from the environment (compared in constant time) or a
//! token made through the API (looked up by digest). A missing or wrong token is 401
//! `invalid_admin_token`.

use super::{err, AdminState};
use crate::control::Actor;
use axum::http::HeaderMap;
use axum::response::Response;
use subtle::ConstantTimeEq;

/// The caller, or the 401 to send.
pub(crate) fn actor(state: &AdminState, headers: &HeaderMap) -> Result<Actor, Box<Response>> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            let (scheme, rest) = v.split_at(v.len().min(7));
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
        })
        .map(<[u8]>::trim_ascii);
    match (&state.token, presented) {
        (Some(t), Some(p)) if bool::from(t.ct_eq(&crate::proxy::auth::digest(p))) => {
            Ok(Actor::root())
        }
        (_, Some(p)) if p.starts_with(crate::control::tokens::TOKEN_PREFIX.as_bytes()) => {
            match state.control.tokens().find(p) {
                Some(a) => Ok((*a).clone()),
                None => Err(Box::new(err(401, "invalid_admin_token", "invalid admin token"))),
            }
        }
        (_, None) => Err(Box::new(err(
            401,
            "invalid_admin_token",
            "send Authorization: Bearer <admin token>",
        ))),
        (None, _) => Err(Box::new(err(
            401,
            "invalid_admin_token",
            "no root admin token is configured (server.admin_token_env) and this is not an API-made token",
        ))),
        _ => Err(Box::new(err(
            401,
            "invalid_admin_token",
            "invalid admin token",
        ))),
    }
}

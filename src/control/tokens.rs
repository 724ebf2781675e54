//! Admin tokens (docs/admin-api.md "Tokens and roles"): `tga-` + 43 base62, shown once, SHA-256 at
//! rest; a role and optionally the groups the token is scoped to. Tokens take effect and
//! stop working on the next call: the in-memory table is updated after the commit.

use super::spec::{object, typed};
use super::view::List;
use super::{Actor, ApiError, ApiResult, Tokens};
use crate::control::events::{Event, EventKind};
use crate::policy::snapshot::{Digest, DigestHash};
use crate::storage::TokenRecord;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

pub(crate) const TOKEN_PREFIX: &str = "tga-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    GroupAdmin,
    Viewer,
    Developer,
}

impl Role {
    pub(crate) const ALL: [Role; 4] =
        [Role::Admin, Role::GroupAdmin, Role::Viewer, Role::Developer];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::GroupAdmin => "group_admin",
            Role::Viewer => "viewer",
            Role::Developer => "developer",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Live tokens by digest of their secret.
#[derive(Default)]
pub(crate) struct TokenTable(RwLock<HashMap<Digest, Arc<Actor>, DigestHash>>);

impl TokenTable {
    /// The token a presented secret belongs to.
    pub(crate) fn find(&self, presented: &[u8]) -> Option<Arc<Actor>> {
        let d = crate::proxy::auth::digest(presented);
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let (stored, actor) = map.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then(|| actor.clone())
    }

    fn insert(&self, digest: Digest, actor: Actor) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.insert(digest, Arc::new(actor));
    }

    fn remove(&self, digest: &Digest) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.remove(digest);
    }
}

fn actor_of(t: &TokenRecord) -> Option<Actor> {
    Some(Actor {
        id: t.id.clone(),
        role: Role::parse(&t.role)?,
        groups: t.groups.clone(),
        owner: t.owner.clone(),
    })
}

/// Fills the table from the store (live tokens only).
pub(crate) fn load(
    store: &dyn crate::storage::ControlStore,
    tokens: &TokenTable,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for t in store.tokens()? {
        if t.revoked_at.is_some() {
            continue;
        }
        match (actor_of(&t), super::spec::digest_hex(&t.sha256)) {
            (Some(a), Ok(d)) => {
                tokens.insert(d, a);
                n += 1;
            }
            _ => log::error!("store: token {} cannot be loaded", t.id),
        }
    }
    Ok(n)
}

/// An admin token as the API lists it, never the raw token (`Token`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TokenView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
    pub(crate) prefix: String,
    pub(crate) created_at: String,
    pub(crate) created_by: String,
    pub(crate) revoked_at: Option<String>,
}

/// A new token's answer: its view and the raw `token`, shown only here
/// (`TokenWithSecret`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TokenWithSecret {
    #[serde(flatten)]
    pub(crate) view: TokenView,
    pub(crate) token: String,
}

/// `GET /v1/whoami` (`Whoami`): the calling token as the list shows it; the root token has
/// no record, hence no `prefix`. `may` (the routes it may call) is filled in by the admin
/// listener, which holds the route table.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Whoami {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
    pub(crate) may: Vec<String>,
}

fn view(t: &TokenRecord) -> TokenView {
    let TokenRecord {
        id,
        name,
        role,
        groups,
        owner,
        sha256: _,
        prefix,
        created_at,
        created_by,
        revoked_at,
    } = t.clone();
    TokenView {
        id,
        name,
        role,
        groups,
        owner,
        prefix,
        created_at: crate::clock::rfc3339(created_at),
        created_by,
        revoked_at: revoked_at.map(crate::clock::rfc3339),
    }
}

/// `POST /v1/tokens` (`NewToken`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub(crate) name: String,
    pub(crate) role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
}

impl Tokens<'_> {
    /// The live token a presented secret belongs to.
    pub(crate) fn find(&self, presented: &[u8]) -> Option<Arc<Actor>> {
        self.table.find(presented)
    }

    fn event(&self, kind: EventKind, actor: &Actor, t: &TokenRecord) -> Event {
        Event {
            kind,
            at_ms: self.w.now_ms(),
            actor: actor.id.clone(),
            org: None,
            group: None,
            key_id: None,
            before: None,
            after: Some(
                json!({"token_id": t.id, "name": t.name, "role": t.role, "groups": t.groups, "owner": t.owner}),
            ),
            secret: None,
        }
    }

    /// `POST /v1/tokens` `{name, role, groups?, owner?}` → 201 with `token` (shown once).
    pub(crate) fn create(&self, actor: &Actor, body: &[u8]) -> ApiResult<TokenWithSecret> {
        let m = object(body)?;
        let n: NewToken = typed(Value::Object(m))?;
        let role = Role::parse(&n.role).ok_or_else(|| {
            ApiError::bad_request("role", "role: admin, group_admin, viewer or developer")
        })?;
        if n.name.is_empty() || n.name.len() > 256 {
            return Err(ApiError::bad_request("name", "name: 1 to 256 bytes"));
        }
        let snapshot = self.w.policy.load();
        if let Some(gs) = &n.groups {
            if let Some(g) = gs
                .iter()
                .find(|g| !snapshot.groups.contains_key(g.as_str()))
            {
                return Err(ApiError::bad_request(
                    "groups",
                    format!("unknown group {g:?}"),
                ));
            }
        }
        if role == Role::Admin && n.groups.is_some() {
            // An admin may do everything, tokens included: a group scope would be a fiction.
            return Err(ApiError::bad_request(
                "groups",
                "admin tokens are not scoped; use role group_admin for a group scope",
            ));
        }
        if role == Role::Developer && n.owner.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "owner",
                "a developer token needs an owner",
            ));
        }
        let secret = crate::secret::base62(TOKEN_PREFIX, crate::proxy::auth::KEY_RANDOM_LEN);
        let digest = crate::proxy::auth::digest(secret.as_bytes());
        let id = crate::secret::base62("tok_", 20);
        let t = TokenRecord {
            id,
            name: n.name,
            role: role.as_str().into(),
            groups: n.groups,
            owner: n.owner,
            sha256: hex::encode(digest),
            prefix: format!("{}…", &secret[..TOKEN_PREFIX.len() + 6]),
            created_at: self.w.now_s(),
            created_by: actor.id.clone(),
            revoked_at: None,
        };
        let _guard = self.w.lock();
        self.w.store.put_token(&t).map_err(ApiError::internal)?;
        self.w
            .emit(self.event(EventKind::TokenCreated, actor, &t))?;
        self.w.commit()?;
        if let Some(a) = actor_of(&t) {
            self.table.insert(digest, a);
        }
        Ok(TokenWithSecret {
            view: view(&t),
            token: secret,
        })
    }

    /// `GET /v1/tokens`: never the raw token.
    pub(crate) fn list(&self) -> ApiResult<List<TokenView>> {
        let mut all = self.w.store.tokens().map_err(ApiError::internal)?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(List {
            data: all.iter().map(view).collect(),
            next_cursor: None,
        })
    }

    /// `GET /v1/whoami`: the calling token as the list shows it (the root token has no
    /// record: `root`, role `admin`, every group).
    pub(crate) fn whoami(&self, actor: &Actor) -> ApiResult<Whoami> {
        if actor.id == "root" {
            return Ok(Whoami {
                id: "root".into(),
                name: "root".into(),
                role: "admin".into(),
                groups: None,
                owner: None,
                prefix: None,
                may: vec![],
            });
        }
        let t = self
            .w
            .store
            .tokens()
            .map_err(ApiError::internal)?
            .into_iter()
            .find(|t| t.id == actor.id)
            .ok_or_else(|| ApiError::not_found("token", &actor.id))?;
        Ok(Whoami {
            id: t.id,
            name: t.name,
            role: t.role,
            groups: t.groups,
            owner: t.owner,
            prefix: Some(t.prefix),
            may: vec![],
        })
    }

    /// `DELETE /v1/tokens/{id}`: stops working on the next call.
    pub(crate) fn revoke(&self, actor: &Actor, id: &str) -> ApiResult<TokenView> {
        let _guard = self.w.lock();
        let mut t = self
            .w
            .store
            .tokens()
            .map_err(ApiError::internal)?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ApiError::not_found("token", id))?;
        if t.revoked_at.is_none() {
            t.revoked_at = Some(self.w.now_s());
            self.w.store.put_token(&t).map_err(ApiError::internal)?;
            self.w
                .emit(self.event(EventKind::TokenRevoked, actor, &t))?;
            self.w.commit()?;
        }
        self.table.remove(&super::spec::digest_hex(&t.sha256)?);
        Ok(view(&t))
    }
}

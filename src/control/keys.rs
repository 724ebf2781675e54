//! Key operations of the admin API: create, batch, list, get, PATCH, revoke, disable,
//! enable, regenerate, move.

use super::requests::{MoveKey, NewBatch, NewKey, PatchKey, Regenerate};
use super::spec::{
    check_cert_in_group, check_future, check_guardrails, check_in_group, check_spec,
};
use super::view::{KeyView, KeyWithSecret, List};
use super::{parse_record, Actor, ApiError, ApiResult, Keys, Role, Writer};
use crate::control::events::{Event, EventKind};
use crate::policy::snapshot::{KeyEntry, Snapshot};
use crate::secret::Secret;
use crate::storage::{KeyRecord, KeySpec, KeyStatus, PreviousSecret};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Ids are not secrets, but unguessable all the same.
fn new_id() -> String {
    crate::secret::base62("key_", 20)
}

/// The record's audited form: everything but digests.
pub(super) fn audit_form(r: &KeyRecord) -> Value {
    json!({"group": r.group, "status": r.status, "spec": r.spec})
}

/// One key of a batch, with its secret (`BatchKey`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BatchKey {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) prefix: String,
    pub(crate) key: String,
}

/// `POST /v1/keys/batch`'s answer (`BatchResponse`).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BatchAnswer {
    pub(crate) data: Vec<BatchKey>,
}

/// List filters of `GET /v1/keys`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyQuery {
    pub(crate) group: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
}

impl Writer {
    /// Writes records, their events and commits; then the data plane sees them.
    pub(super) fn apply(
        &self,
        records: &[(Option<&KeyRecord>, &KeyRecord)],
        events: Vec<Event>,
    ) -> ApiResult<()> {
        let new: Vec<&KeyRecord> = records.iter().map(|(_, n)| *n).collect();
        self.store.put_keys(&new).map_err(ApiError::internal)?;
        let committed = events
            .into_iter()
            .try_for_each(|e| self.emit(e))
            .and_then(|()| self.commit());
        if let Err(e) = committed {
            // Put back what was there, so the store and the data plane still agree.
            let old: Vec<&KeyRecord> = records.iter().filter_map(|(o, _)| *o).collect();
            let made: Vec<&str> = records
                .iter()
                .filter(|(o, _)| o.is_none())
                .map(|(_, n)| n.id.as_str())
                .collect();
            if let Err(undo) = self
                .store
                .put_keys(&old)
                .and_then(|()| self.store.remove_keys(&made))
            {
                log::error!("store: cannot undo a failed write: {undo}");
            }
            return Err(e);
        }
        for (old, r) in records {
            let old = match old {
                Some(o) => self.directory.get(&super::spec::digest_hex(&o.sha256)?),
                None => None,
            };
            let cell = old
                .as_ref()
                .map(|o| o.last_used.clone())
                .unwrap_or_default();
            let key = parse_record(r, cell)?;
            self.directory.put(Arc::new(key), old.as_deref());
        }
        Ok(())
    }

    pub(super) fn event(
        &self,
        kind: EventKind,
        actor: &Actor,
        r: &KeyRecord,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Event {
        let org = self
            .policy
            .load()
            .groups
            .get(r.group.as_str())
            .map(|g| g.org.id.to_string());
        Event {
            kind,
            at_ms: self.now_ms(),
            actor: actor.id.clone(),
            org,
            group: Some(r.group.clone()),
            key_id: Some(r.id.clone()),
            before,
            after,
            secret: None,
        }
    }
}

impl Keys<'_> {
    fn file_key(snapshot: &Snapshot, id: &str) -> Option<Arc<KeyEntry>> {
        snapshot.file_keys().find(|k| &*k.id == id).cloned()
    }

    /// Reads a key's record for a write: 404 if unknown or outside the caller's scope, 409
    /// if it comes from the file.
    fn record_for_write(&self, actor: &Actor, id: &str) -> ApiResult<KeyRecord> {
        if let Some(r) = self.w.store.key(id).map_err(ApiError::internal)? {
            if actor.sees_key(&r.group, r.spec.owner.as_deref()) {
                return Ok(r);
            }
            return Err(ApiError::not_found("key", id));
        }
        match Self::file_key(&self.w.policy.load(), id) {
            Some(k) if actor.sees_key(&k.group.id, None) => Err(ApiError::managed_by_config(id)),
            _ => Err(ApiError::not_found("key", id)),
        }
    }

    /// The group of a new key, if the caller may see it (else 404, as if it did not exist).
    fn group_for_create<'s>(
        &self,
        actor: &Actor,
        snapshot: &'s Snapshot,
        group: &str,
    ) -> ApiResult<&'s Arc<crate::policy::snapshot::GroupEntry>> {
        if !actor.sees_group(group) {
            return Err(ApiError::not_found("group", group));
        }
        snapshot
            .groups
            .get(group)
            .ok_or_else(|| ApiError::bad_request("group", format!("unknown group {group:?}")))
    }

    /// Group, spec and secret of a new key from a create/batch body (fields already taken
    /// out: `group`, `ttl`, batch fields).
    fn new_record(
        &self,
        actor: &Actor,
        group: &str,
        mut spec: KeySpec,
        ttl: Option<Duration>,
        snapshot: &Snapshot,
    ) -> ApiResult<(KeyRecord, String)> {
        let g = self.group_for_create(actor, snapshot, group)?;
        let self_service = match actor.role {
            Role::Developer => Some(super::selfservice::before(actor, g, &mut spec)?),
            _ => None,
        };
        if spec.expires_at.is_some() && ttl.is_some() {
            return Err(ApiError::bad_request(
                "ttl",
                "give expires_at or ttl, not both",
            ));
        }
        // A key made without an expiry gets its group's key_ttl.
        if let Some(ttl) = ttl.or(if spec.expires_at.is_none() {
            g.key_ttl
        } else {
            None
        }) {
            let at = self.w.now() + ttl;
            spec.expires_at = Some(humantime::format_rfc3339_seconds(at).to_string());
        }
        let checked = check_spec(&spec)?;
        check_future(checked.expires_at, self.w.now())?;
        check_in_group(&checked.limits, g)?;
        check_cert_in_group(&spec, g, snapshot)?;
        super::reqpolicy::check_in_group(checked.req.as_deref(), g)?;
        check_guardrails(&spec, snapshot)?;
        if let Some(ss) = self_service {
            super::selfservice::after(self.w, ss, actor, g, &checked)?;
        }
        let secret = crate::proxy::auth::generate_key();
        let now = self.w.now_s();
        let record = KeyRecord {
            id: new_id(),
            group: group.to_string(),
            sha256: hex::encode(crate::proxy::auth::digest(secret.as_bytes())),
            prefix: crate::proxy::auth::display_prefix(&secret),
            status: KeyStatus::Active,
            created_at: now,
            created_by: actor.id.clone(),
            updated_at: now,
            secret_at: now,
            previous: None,
            spec,
        };
        Ok((record, secret))
    }

    /// `POST /v1/keys` → the key's view plus `key`, the raw secret (shown only here).
    pub(crate) fn create(&self, actor: &Actor, body: &[u8]) -> ApiResult<KeyWithSecret> {
        let NewKey { group, ttl, spec } = NewKey::parse(body)?;
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let (record, secret) = self.new_record(actor, &group, spec, ttl, &snapshot)?;
        let e = self.w.event(
            EventKind::KeyCreated,
            actor,
            &record,
            None,
            Some(audit_form(&record)),
        );
        self.w.apply(&[(None, &record)], vec![e])?;
        Ok(KeyWithSecret {
            view: self.w.api_key_view(&record, &snapshot),
            key: secret,
        })
    }

    /// `POST /v1/keys/batch` → `{data: [{id, name, prefix, key}]}`.
    pub(crate) fn batch(&self, actor: &Actor, body: &[u8]) -> ApiResult<BatchAnswer> {
        let NewBatch {
            count,
            group,
            name_prefix,
            ttl,
            spec,
        } = NewBatch::parse(body)?;
        let prefix = name_prefix.unwrap_or_else(|| "key".into());
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let width = count.to_string().len();
        let mut made = Vec::with_capacity(count as usize);
        for i in 1..=count {
            let spec = KeySpec {
                name: Some(format!("{prefix}-{i:0width$}")),
                ..spec.clone()
            };
            made.push(self.new_record(actor, &group, spec, ttl, &snapshot)?);
        }
        let events = made
            .iter()
            .map(|(r, _)| {
                self.w
                    .event(EventKind::KeyCreated, actor, r, None, Some(audit_form(r)))
            })
            .collect();
        let pairs: Vec<(Option<&KeyRecord>, &KeyRecord)> =
            made.iter().map(|(r, _)| (None, r)).collect();
        self.w.apply(&pairs, events)?;
        let data = made
            .into_iter()
            .map(|(r, key)| BatchKey {
                id: r.id,
                name: r.spec.name,
                prefix: r.prefix,
                key,
            })
            .collect();
        Ok(BatchAnswer { data })
    }

    /// `GET /v1/keys/{id}`.
    pub(crate) fn get(&self, actor: &Actor, id: &str) -> ApiResult<KeyView> {
        let snapshot = self.w.policy.load_full();
        if let Some(r) = self.w.store.key(id).map_err(ApiError::internal)? {
            if actor.sees_key(&r.group, r.spec.owner.as_deref()) {
                return Ok(self.w.api_key_view(&r, &snapshot));
            }
            return Err(ApiError::not_found("key", id));
        }
        match Self::file_key(&snapshot, id) {
            Some(k) if actor.sees_key(&k.group.id, None) => Ok(self.w.file_key_view(&k)),
            _ => Err(ApiError::not_found("key", id)),
        }
    }

    /// `GET /v1/keys`: API and file keys in id order, filtered, paginated by id.
    pub(crate) fn list(&self, actor: &Actor, q: &KeyQuery) -> ApiResult<List<KeyView>> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("limit", "limit: 1 to 1000"));
        }
        let after = match &q.cursor {
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::bad_request("cursor", "invalid cursor"))?,
            ),
            None => None,
        };
        if let Some(s) = &q.status {
            if !["active", "disabled", "expired", "revoked"].contains(&s.as_str()) {
                return Err(ApiError::bad_request(
                    "status",
                    "status: active, disabled, expired or revoked",
                ));
            }
        }
        let tag = match &q.tag {
            Some(t) => Some(
                t.split_once(':')
                    .ok_or_else(|| ApiError::bad_request("tag", "tag: name:value"))?,
            ),
            None => None,
        };
        let snapshot = self.w.policy.load_full();
        // A field that is null compares as "" (`owner=` lists the keys without an owner).
        let text = |f: &Option<String>| f.clone().unwrap_or_default();
        let matches = |v: &KeyView| -> bool {
            actor.sees_key(&v.group, v.owner.as_deref())
                && q.group.as_ref().is_none_or(|g| v.group == *g)
                && q.status.as_ref().is_none_or(|st| v.status == st.as_str())
                && q.owner.as_ref().is_none_or(|o| text(&v.owner) == *o)
                && tag.is_none_or(|(k, val)| v.tags.get(k).map(String::as_str) == Some(val))
                && q.q.as_ref().is_none_or(|needle| {
                    let n = needle.to_lowercase();
                    [v.id.clone(), text(&v.name), text(&v.prefix)]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&n))
                })
        };
        // File keys, sorted, merged with the store's id-ordered scan.
        let mut file: Vec<Arc<KeyEntry>> = snapshot
            .file_keys()
            .filter(|k| after.as_deref().is_none_or(|a| &*k.id > a))
            .filter(|k| q.group.as_ref().is_none_or(|g| *k.group.id == **g))
            .cloned()
            .collect();
        file.sort_by(|a, b| b.id.cmp(&a.id)); // popped from the end: ascending
        let mut page = Page {
            out: Vec::new(),
            limit,
            more: false,
        };
        let mut visit = |r: KeyRecord| -> bool {
            while file.last().is_some_and(|f| *f.id < *r.id) {
                let Some(f) = file.pop() else { break };
                if !page.push(f.id.to_string(), self.w.file_key_view(&f), &matches) {
                    return false;
                }
            }
            if q.group.as_ref().is_some_and(|g| *g != r.group) {
                return true;
            }
            let v = self.w.api_key_view(&r, &snapshot);
            page.push(r.id.clone(), v, &matches)
        };
        self.w
            .store
            .scan_keys(after.as_deref(), &mut visit)
            .map_err(ApiError::internal)?;
        if !page.more {
            while let Some(f) = file.pop() {
                if !page.push(f.id.to_string(), self.w.file_key_view(&f), &matches) {
                    break;
                }
            }
        }
        let next = if page.more {
            page.out.last().map(|(id, _)| hex::encode(id))
        } else {
            None
        };
        let data = page.out.into_iter().map(|(_, v)| v).collect();
        Ok(List {
            data,
            next_cursor: next,
        })
    }

    /// Loads, changes and writes one key; `change` returns the event kind.
    pub(super) fn update(
        &self,
        actor: &Actor,
        id: &str,
        change: impl FnOnce(&mut KeyRecord, &Snapshot) -> ApiResult<EventKind>,
        secret: Option<Secret>,
    ) -> ApiResult<KeyRecord> {
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let old = self.record_for_write(actor, id)?;
        let mut new = old.clone();
        let kind = change(&mut new, &snapshot)?;
        new.updated_at = self.w.now_s();
        let mut e = self.w.event(
            kind,
            actor,
            &new,
            Some(audit_form(&old)),
            Some(audit_form(&new)),
        );
        e.secret = secret;
        self.w.apply(&[(Some(&old), &new)], vec![e])?;
        Ok(new)
    }

    fn view(&self, r: &KeyRecord) -> KeyView {
        self.w.api_key_view(r, &self.w.policy.load())
    }

    /// `PATCH /v1/keys/{id}`: fields present replace, `null` clears, `group` is refused.
    pub(crate) fn patch(&self, actor: &Actor, id: &str, body: &[u8]) -> ApiResult<KeyView> {
        self.record_for_write(actor, id)?;
        let PatchKey { ttl, fields } = PatchKey::parse(body)?;
        let r = self.update(
            actor,
            id,
            |r, snapshot| {
                r.spec = self.patched(r, fields, ttl, snapshot)?;
                Ok(EventKind::KeyUpdated)
            },
            None,
        )?;
        Ok(self.view(&r))
    }

    /// A stored key's fields after a PATCH, checked like a new key's: formats, a future
    /// expiry, guardrails that exist, nothing looser than the group or the org.
    pub(super) fn patched(
        &self,
        r: &KeyRecord,
        fields: super::requests::KeyPatch,
        ttl: Option<Duration>,
        snapshot: &Snapshot,
    ) -> ApiResult<KeySpec> {
        not_revoked(r)?;
        let mut spec = fields.apply(r.spec.clone());
        if let Some(ttl) = ttl {
            let at = self.w.now() + ttl;
            spec.expires_at = Some(humantime::format_rfc3339_seconds(at).to_string());
        }
        let checked = check_spec(&spec)?;
        if spec.expires_at != r.spec.expires_at {
            check_future(checked.expires_at, self.w.now())?;
        }
        if spec.guardrails != r.spec.guardrails {
            check_guardrails(&spec, snapshot)?;
        }
        if let Some(g) = snapshot.groups.get(r.group.as_str()) {
            check_in_group(&checked.limits, g)?;
            super::reqpolicy::check_in_group(checked.req.as_deref(), g)?;
            if (&spec.require_client_cert, &spec.client_cert_sha256)
                != (&r.spec.require_client_cert, &r.spec.client_cert_sha256)
            {
                check_cert_in_group(&spec, g, snapshot)?;
            }
        }
        Ok(spec)
    }

    fn set_status(&self, actor: &Actor, id: &str, to: KeyStatus) -> ApiResult<KeyView> {
        let current = self.record_for_write(actor, id)?;
        if current.status == to {
            // Nothing to change, nothing to audit.
            return Ok(self.view(&current));
        }
        let r = self.update(
            actor,
            id,
            |r, _| {
                if r.status == KeyStatus::Revoked && to != KeyStatus::Revoked {
                    return Err(revoked(&r.id));
                }
                r.status = to;
                Ok(match to {
                    KeyStatus::Active => EventKind::KeyEnabled,
                    KeyStatus::Disabled => EventKind::KeyDisabled,
                    KeyStatus::Revoked => EventKind::KeyRevoked,
                })
            },
            None,
        )?;
        Ok(self.view(&r))
    }

    /// `DELETE /v1/keys/{id}`: permanent; the data plane answers 403 `key_revoked`.
    pub(crate) fn revoke(&self, actor: &Actor, id: &str) -> ApiResult<KeyView> {
        self.set_status(actor, id, KeyStatus::Revoked)
    }

    pub(crate) fn disable(&self, actor: &Actor, id: &str) -> ApiResult<KeyView> {
        self.set_status(actor, id, KeyStatus::Disabled)
    }

    pub(crate) fn enable(&self, actor: &Actor, id: &str) -> ApiResult<KeyView> {
        self.set_status(actor, id, KeyStatus::Active)
    }

    /// `POST /v1/keys/{id}/regenerate` `{grace_period?}` → view plus the new `key`.
    pub(crate) fn regenerate(
        &self,
        actor: &Actor,
        id: &str,
        body: &[u8],
    ) -> ApiResult<KeyWithSecret> {
        self.record_for_write(actor, id)?;
        let Regenerate { grace_period } = Regenerate::parse(body)?;
        let grace = grace_period.unwrap_or_default();
        let (r, secret) = self.rotate(actor, id, grace, EventKind::KeyRegenerated)?;
        Ok(KeyWithSecret {
            view: self.view(&r),
            key: secret,
        })
    }

    /// New secret, same id; the old one works for `grace` more (none: stops at once).
    /// `key.rotated` events carry the new secret (for the signed webhook only).
    pub(super) fn rotate(
        &self,
        actor: &Actor,
        id: &str,
        grace: Duration,
        kind: EventKind,
    ) -> ApiResult<(KeyRecord, String)> {
        let secret = crate::proxy::auth::generate_key();
        let for_event = (kind == EventKind::KeyRotated).then(|| Secret::new(secret.clone()));
        let r = self.update(
            actor,
            id,
            |r, _| {
                not_revoked(r)?;
                let now = self.w.now_s();
                r.previous = (!grace.is_zero()).then(|| PreviousSecret {
                    sha256: r.sha256.clone(),
                    until: now + grace.as_secs().max(1),
                });
                r.sha256 = hex::encode(crate::proxy::auth::digest(secret.as_bytes()));
                r.prefix = crate::proxy::auth::display_prefix(&secret);
                r.secret_at = now;
                Ok(kind)
            },
            for_event,
        )?;
        Ok((r, secret))
    }

    /// `POST /v1/keys/{id}/move` `{group}`: same secret and id, the new group's policy.
    pub(crate) fn move_to(&self, actor: &Actor, id: &str, body: &[u8]) -> ApiResult<KeyView> {
        self.record_for_write(actor, id)?;
        let MoveKey { group } = MoveKey::parse(body)?;
        let r = self.update(
            actor,
            id,
            |r, snapshot| {
                not_revoked(r)?;
                let g = self.group_for_create(actor, snapshot, &group)?;
                let checked = check_spec(&r.spec)?;
                check_in_group(&checked.limits, g)?;
                check_cert_in_group(&r.spec, g, snapshot)?;
                super::reqpolicy::check_in_group(checked.req.as_deref(), g)?;
                r.group = group.clone();
                Ok(EventKind::KeyMoved)
            },
            None,
        )?;
        Ok(self.view(&r))
    }
}

/// One page of a list: items that matched, until one more than fits shows there are more.
struct Page {
    out: Vec<(String, KeyView)>,
    limit: usize,
    more: bool,
}

impl Page {
    /// False once the page is full and another match was seen.
    fn push(&mut self, id: String, v: KeyView, matches: &dyn Fn(&KeyView) -> bool) -> bool {
        if !matches(&v) {
            return true;
        }
        if self.out.len() == self.limit {
            self.more = true;
            return false;
        }
        self.out.push((id, v));
        true
    }
}

fn revoked(id: &str) -> ApiError {
    ApiError {
        status: 409,
        code: "key_revoked",
        message: format!("key {id} is revoked; revocation is permanent"),
        param: None,
    }
}

fn not_revoked(r: &KeyRecord) -> ApiResult<()> {
    if r.status == KeyStatus::Revoked {
        return Err(revoked(&r.id));
    }
    Ok(())
}

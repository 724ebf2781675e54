//! `PATCH /v1/groups/{id}/keys`: one change to every API key of a group
//! (docs/admin-api.md "Bulk key updates").
//!
//! Each key is changed as `PATCH /v1/keys/{id}` would change it, with the same checks; a
//! key the change cannot apply to (revoked, or left looser than its group or org by it) is
//! skipped and listed with the reason. All changed keys are written together, one audit
//! event each, durable before the answer.

use super::keys::audit_form;
use super::requests::PatchKey;
use super::spec::check_spec;
use super::{Actor, ApiError, ApiResult, Keys};
use crate::control::events::EventKind;
use crate::storage::{KeyRecord, KeySpec};
use serde::Serialize;

/// A key the change was not applied to, and why (`BulkSkip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BulkSkip {
    pub(crate) id: String,
    pub(crate) reason: String,
}

/// `PATCH /v1/groups/{id}/keys`'s answer (`BulkPatchResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BulkPatchResult {
    pub(crate) affected: u64,
    pub(crate) skipped: Vec<BulkSkip>,
}

/// Fields whose check depends on the key's other fields: their refusal is per key.
const RELATIONAL: &[&str] = &["soft_budget_usd", "budget_period"];

impl Keys<'_> {
    pub(crate) fn patch_group(
        &self,
        actor: &Actor,
        group: &str,
        body: &[u8],
    ) -> ApiResult<BulkPatchResult> {
        let PatchKey { ttl, fields } = PatchKey::parse(body)?;
        if ttl.is_none() && serde_json::to_value(&fields).is_ok_and(|v| v == serde_json::json!({}))
        {
            return Err(ApiError::bad_request(
                "",
                "the body names no key field to change",
            ));
        }
        // A value that is wrong on its own (a bad CIDR, an unknown period) is the request's
        // fault, whatever the keys: 400, nothing changed.
        let alone = fields.clone().apply(KeySpec {
            name: Some("bulk".into()),
            ..KeySpec::default()
        });
        if let Err(e) = check_spec(&alone) {
            if !e.param.as_deref().is_some_and(|p| RELATIONAL.contains(&p)) {
                return Err(e);
            }
        }
        let _guard = self.w.lock();
        let snapshot = self.w.policy.load_full();
        let Some(g) = snapshot
            .groups
            .get(group)
            .filter(|_| actor.sees_group(group))
        else {
            return Err(ApiError::not_found("group", group));
        };
        let mut skipped: Vec<BulkSkip> = snapshot
            .file_keys()
            .filter(|k| k.group.id == g.id)
            .map(|k| BulkSkip {
                id: k.id.to_string(),
                reason: "managed_by_config: a file key changes in the policy file".into(),
            })
            .collect();
        let mut ids: Vec<String> = self
            .w
            .directory
            .keys()
            .into_iter()
            .filter(|k| k.group == g.id)
            .map(|k| k.id.to_string())
            .collect();
        ids.sort();
        let mut changed: Vec<(KeyRecord, KeyRecord)> = vec![];
        for id in ids {
            let Some(old) = self.w.store.key(&id).map_err(ApiError::internal)? else {
                continue;
            };
            if !actor.sees_key(&old.group, old.spec.owner.as_deref()) {
                continue;
            }
            match self.patched(&old, fields.clone(), ttl, &snapshot) {
                Ok(spec) if spec == old.spec => skipped.push(BulkSkip {
                    id,
                    reason: "unchanged: the key already has these values".into(),
                }),
                Ok(spec) => {
                    let mut new = old.clone();
                    new.spec = spec;
                    new.updated_at = self.w.now_s();
                    changed.push((old, new));
                }
                Err(e) => skipped.push(BulkSkip {
                    id,
                    reason: format!("{}: {}", e.code, e.message),
                }),
            }
        }
        let events = changed
            .iter()
            .map(|(o, n)| {
                self.w.event(
                    EventKind::KeyUpdated,
                    actor,
                    n,
                    Some(audit_form(o)),
                    Some(audit_form(n)),
                )
            })
            .collect();
        let pairs: Vec<(Option<&KeyRecord>, &KeyRecord)> =
            changed.iter().map(|(o, n)| (Some(o), n)).collect();
        self.w.apply(&pairs, events)?;
        Ok(BulkPatchResult {
            affected: changed.len() as u64,
            skipped,
        })
    }
}

//! The audit trail (SPEC §7 "Audit"): every lifecycle event of the control plane, reloads,
//! budget thresholds, webhook outcomes and refusals for limits and budgets (aggregated per
//! key, code and minute), appended to the store's `audit` tree.
//!
//! **Hash chain.** Each stored event carries `prev`, the `hash` of the event before it, and
//! its own `hash` = SHA-256(`prev` ‖ the event's JSON without `hash`). Appends are serialised
//! (one lock), so chain order is key order. [`AuditLog::verify`] walks the tree and names
//! the first event whose hash or link does not hold. Events past `audit_retention` are
//! pruned from the front; the last pruned hash is kept as the chain's anchor.

use crate::control::events::{Event, Subscriber};
use crate::storage::Store;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

const ANCHOR: &[u8] = b"audit_anchor";

struct Chain {
    prev: String,
    ms: u64,
    seq: u64,
}

pub struct AuditLog {
    store: Arc<Store>,
    chain: Mutex<Chain>,
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub group: Option<String>,
    pub key: Option<String>,
    pub actor: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

fn tree_key(ms: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ms.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn hash(prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// The event as stored, without its hash, and its serialization (what the hash covers).
fn without_hash(v: &Value) -> Option<(Map<String, Value>, Vec<u8>)> {
    let mut m = v.as_object()?.clone();
    m.remove("hash");
    let bytes = serde_json::to_vec(&m).ok()?;
    Some((m, bytes))
}

impl AuditLog {
    /// Continues the chain from the last stored event.
    pub fn open(store: Arc<Store>) -> anyhow::Result<AuditLog> {
        let mut chain = Chain {
            prev: String::new(),
            ms: 0,
            seq: 0,
        };
        if let Some(a) = store.meta.get(ANCHOR)? {
            chain.prev = String::from_utf8_lossy(&a).into_owned();
        }
        if let Some((k, v)) = store.audit.last()? {
            let v: Value = serde_json::from_slice(&v)?;
            chain.prev = v["hash"].as_str().unwrap_or_default().to_string();
            chain.ms = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            chain.seq = k
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
        }
        Ok(AuditLog {
            store,
            chain: Mutex::new(chain),
        })
    }

    /// Appends one event (not yet durable: the caller's commit or the next flush makes it so).
    pub fn append(&self, e: &Event) -> anyhow::Result<()> {
        let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        // Keys grow with the chain even if clocks or emitters disagree on the time.
        let ms = e.at_ms.max(c.ms);
        c.seq = if ms == c.ms { c.seq + 1 } else { 0 };
        c.ms = ms;
        let key = tree_key(ms, c.seq);
        let mut detail = Map::new();
        if let Some(b) = &e.before {
            detail.insert("before".into(), b.clone());
        }
        if let Some(a) = &e.after {
            detail.insert("after".into(), a.clone());
        }
        let mut v = json!({
            "id": format!("evt_{}", hex::encode(key)),
            "at": humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string(),
            "actor": e.actor,
            "type": e.kind,
            "org": e.org,
            "group": e.group,
            "key_id": e.key_id,
            "detail": detail,
            "prev": c.prev,
        });
        let body = serde_json::to_vec(&v)?;
        let h = hash(&c.prev, &body);
        v["hash"] = json!(h);
        self.store.audit.insert(key, serde_json::to_vec(&v)?)?;
        c.prev = h;
        Ok(())
    }

    /// `GET /v1/audit/verify`: `{ok, events, first_bad}`.
    pub fn verify(&self) -> Value {
        let _c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let mut prev = self
            .store
            .meta
            .get(ANCHOR)
            .ok()
            .flatten()
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let mut n = 0u64;
        for kv in self.store.audit.iter() {
            n += 1;
            let Ok((k, raw)) = kv else {
                return json!({"ok": false, "events": n, "first_bad": null});
            };
            let id = format!("evt_{}", hex::encode(&k));
            let good = serde_json::from_slice::<Value>(&raw).ok().and_then(|v| {
                let (m, body) = without_hash(&v)?;
                let ok = m.get("prev").and_then(Value::as_str) == Some(prev.as_str())
                    && m.get("id").and_then(Value::as_str) == Some(id.as_str())
                    && v["hash"].as_str() == Some(hash(&prev, &body).as_str());
                ok.then(|| v["hash"].as_str().unwrap_or_default().to_string())
            });
            match good {
                Some(h) => prev = h,
                None => return json!({"ok": false, "events": n, "first_bad": id}),
            }
        }
        json!({"ok": true, "events": n, "first_bad": null})
    }

    /// Drops events older than `cutoff_ms`, keeping the last dropped hash as the anchor.
    pub fn prune(&self, cutoff_ms: u64) -> anyhow::Result<usize> {
        let _c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        let mut anchor = None;
        for kv in self.store.audit.range(..tree_key(cutoff_ms, 0)) {
            let (k, v) = kv?;
            let v: Value = serde_json::from_slice(&v)?;
            anchor = v["hash"].as_str().map(str::to_string);
            self.store.audit.remove(k)?;
            n += 1;
        }
        if let Some(a) = anchor {
            self.store.meta.insert(ANCHOR, a.as_bytes())?;
        }
        Ok(n)
    }

    /// Events newest first, filtered; `visible(group)` says what the caller may see.
    pub fn list(
        &self,
        q: &AuditQuery,
        visible: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Value, (String, String)> {
        let bad = |f: &str, m: String| (f.to_string(), m);
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(bad("limit", "limit: 1 to 1000".into()));
        }
        let time = |f: &str, s: &Option<String>| -> Result<Option<u64>, (String, String)> {
            match s {
                None => Ok(None),
                Some(s) => humantime::parse_rfc3339_weak(s)
                    .map(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    })
                    .map(Some)
                    .map_err(|e| bad(f, format!("{s:?}: {e} (want RFC 3339 UTC)"))),
            }
        };
        let since = time("since", &q.since)?.unwrap_or(0);
        let until = time("until", &q.until)?.map_or(u64::MAX, |u| u.saturating_add(1));
        let mut upper = tree_key(until, 0).to_vec();
        if let Some(c) = &q.cursor {
            let k = c
                .strip_prefix("evt_")
                .and_then(|h| hex::decode(h).ok())
                .filter(|k| k.len() == 16)
                .ok_or_else(|| bad("cursor", "invalid cursor".into()))?;
            upper = upper.min(k);
        }
        let lower = tree_key(since, 0).to_vec();
        let mut out = vec![];
        let mut more = false;
        for kv in self.store.audit.range(lower..upper).rev() {
            let Ok((_, raw)) = kv else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
                continue;
            };
            let s = |f: &str| v[f].as_str().map(str::to_string);
            let keep = visible(v["group"].as_str())
                && q.group
                    .as_ref()
                    .is_none_or(|g| s("group").as_ref() == Some(g))
                && q.key
                    .as_ref()
                    .is_none_or(|k| s("key_id").as_ref() == Some(k))
                && q.actor
                    .as_ref()
                    .is_none_or(|a| s("actor").as_ref() == Some(a))
                && q.kind
                    .as_ref()
                    .is_none_or(|t| s("type").as_ref() == Some(t));
            if !keep {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(v);
        }
        let next = more
            .then(|| {
                out.last()
                    .and_then(|v| v["id"].as_str().map(str::to_string))
            })
            .flatten();
        Ok(json!({"data": out, "next_cursor": next}))
    }
}

impl Subscriber for AuditLog {
    fn on_event(&self, e: &Event) -> anyhow::Result<()> {
        self.append(e)
    }
}

/// Refusals for limits and budgets, counted per (key, code, minute) so a flood of 429s
/// becomes one audit event per key, code and minute, with a count. Recording is one short
/// lock per refused request; events are emitted once their minute has ended.
pub struct Refusals {
    minute_ms: u64,
    counts: Mutex<std::collections::HashMap<RefusalBucket, RefusalCount>>,
}

/// (key id, code, shadow, minute).
type RefusalBucket = (Arc<str>, &'static str, bool, u64);

struct RefusalCount {
    n: u64,
    group: Arc<str>,
    org: Arc<str>,
}

/// The codes whose refusals are audited (limits and budgets).
pub fn audited_refusal(code: &str) -> bool {
    matches!(
        code,
        "rate_limit_exceeded"
            | "token_limit_exceeded"
            | "concurrency_limit_exceeded"
            | "budget_exceeded"
    )
}

impl Refusals {
    /// `minute_ms` is 60 000 except in tests (`TOLLGATE_REFUSAL_MINUTE_MS`).
    pub fn new(minute_ms: u64) -> Refusals {
        Refusals {
            minute_ms: minute_ms.max(1),
            counts: Mutex::default(),
        }
    }

    /// One refusal (or, `shadow`, one request over a shadow limit).
    pub fn record(
        &self,
        key: &crate::policy::snapshot::KeyEntry,
        code: &'static str,
        shadow: bool,
        now_ms: u64,
    ) {
        let minute = now_ms / self.minute_ms;
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((key.id.clone(), code, shadow, minute))
            .or_insert_with(|| RefusalCount {
                n: 0,
                group: key.group.id.clone(),
                org: key.group.org.id.clone(),
            })
            .n += 1;
    }

    /// Events for minutes that ended before `now_ms` (all of them with `now_ms = u64::MAX`).
    pub fn take_closed(&self, now_ms: u64) -> Vec<Event> {
        let current = now_ms / self.minute_ms;
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let closed: Vec<_> = m
            .keys()
            .filter(|(_, _, _, min)| *min < current)
            .cloned()
            .collect();
        closed
            .into_iter()
            .filter_map(|k| m.remove(&k).map(|c| (k, c)))
            .map(|((key, code, shadow, minute), c)| Event {
                kind: if shadow {
                    crate::control::events::EventKind::RequestShadowLimited
                } else {
                    crate::control::events::EventKind::RequestRefused
                },
                at_ms: crate::control::now_ms(),
                actor: "system".into(),
                org: Some(c.org.to_string()),
                group: Some(c.group.to_string()),
                key_id: Some(key.to_string()),
                before: None,
                after: Some(json!({
                    "code": code,
                    "count": c.n,
                    "minute": crate::clock::rfc3339(minute * self.minute_ms / 1000),
                })),
                secret: None,
            })
            .collect()
    }
}

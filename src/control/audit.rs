//! The audit trail (docs/admin-api.md "Audit"): every lifecycle event of the control plane, reloads,
//! budget thresholds, webhook outcomes and refusals for limits and budgets (aggregated per
//! key, code and minute), appended to the store through [`AuditStore`].
//!
//! **Hash chain.** Each stored event carries `prev`, the `hash` of the event before it, and
//! its own `hash` = SHA-256(`prev` ‖ the event's JSON without `hash`). Appends are serialised
//! (one lock), so chain order is key order. [`AuditLog::verify`] walks the trail and names
//! the first event whose hash or link does not hold. Events past `audit_retention` are
//! pruned from the front; the last pruned hash is kept as the chain's anchor.

use crate::control::events::{Event, Subscriber};
use crate::storage::{AuditKey, AuditStore};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

struct Chain {
    prev: String,
    last: AuditKey,
}

pub(crate) struct AuditLog {
    store: Arc<dyn AuditStore>,
    chain: Mutex<Chain>,
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub(crate) group: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) actor: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
}

/// `evt_` and the event's place in the trail (ms and sequence, 16 hex digits each).
fn event_id(k: AuditKey) -> String {
    format!("evt_{:016x}{:016x}", k.ms, k.seq)
}

fn parse_event_id(id: &str) -> Option<AuditKey> {
    let h = id.strip_prefix("evt_")?;
    if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(AuditKey {
        ms: u64::from_str_radix(h.get(..16)?, 16).ok()?,
        seq: u64::from_str_radix(h.get(16..)?, 16).ok()?,
    })
}

/// The first key of millisecond `ms`.
fn at(ms: u64) -> AuditKey {
    AuditKey { ms, seq: 0 }
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
    pub(crate) fn open(store: Arc<dyn AuditStore>) -> anyhow::Result<AuditLog> {
        let mut chain = Chain {
            prev: store.anchor()?.unwrap_or_default(),
            last: AuditKey::default(),
        };
        if let Some((k, v)) = store.last()? {
            let v: Value = serde_json::from_slice(&v)?;
            chain.prev = v["hash"].as_str().unwrap_or_default().to_string();
            chain.last = k;
        }
        Ok(AuditLog {
            store,
            chain: Mutex::new(chain),
        })
    }

    /// Appends one event (not yet durable: the caller's commit or the next flush makes it so).
    pub(crate) fn append(&self, e: &Event) -> anyhow::Result<()> {
        let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        // Keys grow with the chain even if clocks or emitters disagree on the time.
        let ms = e.at_ms.max(c.last.ms);
        let key = AuditKey {
            ms,
            seq: if ms == c.last.ms { c.last.seq + 1 } else { 0 },
        };
        let mut detail = Map::new();
        if let Some(b) = &e.before {
            detail.insert("before".into(), b.clone());
        }
        if let Some(a) = &e.after {
            detail.insert("after".into(), a.clone());
        }
        let mut v = json!({
            "id": event_id(key),
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
        // The chain moves only once the event is stored.
        self.store.append(&[(key, serde_json::to_vec(&v)?)])?;
        c.last = key;
        c.prev = h;
        Ok(())
    }

    /// `GET /v1/audit/verify`: `{ok, events, first_bad}`.
    pub(crate) fn verify(&self) -> Value {
        let _c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let mut prev = self.store.anchor().ok().flatten().unwrap_or_default();
        let mut n = 0u64;
        let mut bad: Option<Value> = None;
        let scanned = self
            .store
            .scan(AuditKey::default(), AuditKey::MAX, false, &mut |row| {
                n += 1;
                let Ok((k, raw)) = row else {
                    bad = Some(Value::Null);
                    return false;
                };
                let id = event_id(k);
                let good = serde_json::from_slice::<Value>(raw).ok().and_then(|v| {
                    let (m, body) = without_hash(&v)?;
                    let ok = m.get("prev").and_then(Value::as_str) == Some(prev.as_str())
                        && m.get("id").and_then(Value::as_str) == Some(id.as_str())
                        && v["hash"].as_str() == Some(hash(&prev, &body).as_str());
                    ok.then(|| v["hash"].as_str().unwrap_or_default().to_string())
                });
                match good {
                    Some(h) => {
                        prev = h;
                        true
                    }
                    None => {
                        bad = Some(json!(id));
                        false
                    }
                }
            });
        if scanned.is_err() {
            bad = Some(Value::Null);
        }
        match bad {
            Some(first_bad) => json!({"ok": false, "events": n, "first_bad": first_bad}),
            None => json!({"ok": true, "events": n, "first_bad": null}),
        }
    }

    /// Drops events older than `cutoff_ms`, keeping the last dropped hash as the anchor.
    pub(crate) fn prune(&self, cutoff_ms: u64) -> anyhow::Result<usize> {
        let _c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let mut anchor = None;
        let mut unreadable = None;
        self.store
            .scan(AuditKey::default(), at(cutoff_ms), false, &mut |row| {
                let parsed = row.and_then(|(_, v)| Ok(serde_json::from_slice::<Value>(v)?));
                match parsed {
                    Ok(v) => {
                        anchor = v["hash"].as_str().map(str::to_string);
                        true
                    }
                    Err(e) => {
                        unreadable = Some(e);
                        false
                    }
                }
            })?;
        if let Some(e) = unreadable {
            return Err(e);
        }
        match anchor {
            Some(a) => self.store.prune(at(cutoff_ms), &a),
            None => Ok(0),
        }
    }

    /// Events newest first, filtered; `visible(group)` says what the caller may see.
    pub(crate) fn list(
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
        let mut upper = at(until);
        if let Some(c) = &q.cursor {
            let k = parse_event_id(c).ok_or_else(|| bad("cursor", "invalid cursor".into()))?;
            upper = upper.min(k);
        }
        let lower = at(since);
        let mut out = vec![];
        let mut more = false;
        let scanned = self.store.scan(lower, upper, true, &mut |row| {
            let Ok((_, raw)) = row else { return true };
            let Ok(v) = serde_json::from_slice::<Value>(raw) else {
                return true;
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
                return true;
            }
            if out.len() == limit {
                more = true;
                return false;
            }
            out.push(v);
            true
        });
        if let Err(e) = scanned {
            log::error!("audit: {e}");
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
pub(crate) struct Refusals {
    minute_ms: u64,
    /// The time of the events emitted.
    clock: Arc<dyn crate::clock::Clock>,
    counts: Mutex<std::collections::HashMap<RefusalBucket, RefusalCount>>,
    /// Guardrail verdicts, per (key, guardrail, action, minute): `guardrail.triggered`.
    trips: Mutex<std::collections::HashMap<TripBucket, RefusalCount>>,
}

/// (key id, guardrail id, action, minute).
type TripBucket = (Arc<str>, Arc<str>, &'static str, u64);

/// (key id, code, shadow, minute).
type RefusalBucket = (Arc<str>, &'static str, bool, u64);

struct RefusalCount {
    n: u64,
    group: Arc<str>,
    org: Arc<str>,
}

/// The codes whose refusals are audited (limits and budgets).
pub(crate) fn audited_refusal(code: &str) -> bool {
    matches!(
        code,
        "rate_limit_exceeded"
            | "token_limit_exceeded"
            | "concurrency_limit_exceeded"
            | "budget_exceeded"
            | "token_budget_exceeded"
    )
}

impl Refusals {
    /// `minute_ms` is 60 000 except in tests (`TOLLGATE_REFUSAL_MINUTE_MS`).
    pub(crate) fn new(minute_ms: u64, clock: Arc<dyn crate::clock::Clock>) -> Refusals {
        Refusals {
            minute_ms: minute_ms.max(1),
            clock,
            counts: Mutex::default(),
            trips: Mutex::default(),
        }
    }

    /// One guardrail verdict (`action`: block, redact, log, or error for a failed check).
    /// Never the text: only which guardrail did what.
    pub(crate) fn record_trip(
        &self,
        key: &crate::policy::snapshot::KeyEntry,
        guardrail: &Arc<str>,
        action: &'static str,
        now_ms: u64,
    ) {
        let minute = now_ms / self.minute_ms;
        let mut m = self.trips.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((key.id.clone(), guardrail.clone(), action, minute))
            .or_insert_with(|| RefusalCount {
                n: 0,
                group: key.group.id.clone(),
                org: key.group.org.id.clone(),
            })
            .n += 1;
    }

    fn take_closed_trips(&self, current: u64, at_ms: u64) -> Vec<Event> {
        let mut m = self.trips.lock().unwrap_or_else(|p| p.into_inner());
        let closed: Vec<_> = m
            .keys()
            .filter(|(_, _, _, min)| *min < current)
            .cloned()
            .collect();
        closed
            .into_iter()
            .filter_map(|k| m.remove(&k).map(|c| (k, c)))
            .map(|((key, guardrail, action, minute), c)| Event {
                kind: crate::control::events::EventKind::GuardrailTriggered,
                at_ms,
                actor: "system".into(),
                org: Some(c.org.to_string()),
                group: Some(c.group.to_string()),
                key_id: Some(key.to_string()),
                before: None,
                after: Some(json!({
                    "guardrail": &*guardrail,
                    "action": action,
                    "count": c.n,
                    "minute": crate::clock::rfc3339(minute * self.minute_ms / 1000),
                })),
                secret: None,
            })
            .collect()
    }

    /// One refusal (or, `shadow`, one request over a shadow limit).
    pub(crate) fn record(
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
    pub(crate) fn take_closed(&self, now_ms: u64) -> Vec<Event> {
        let current = now_ms / self.minute_ms;
        // `now_ms` may be `u64::MAX` (all of them, at shutdown): the events' time is the clock's.
        let at_ms = self.clock.now_ms();
        let mut trips = self.take_closed_trips(current, at_ms);
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
                at_ms,
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
            .chain(trips.drain(..))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn event(kind: &str, at_ms: u64) -> Event {
        Event {
            kind: crate::control::events::EventKind::parse(kind).expect("a known kind"),
            at_ms,
            actor: "root".into(),
            org: None,
            group: Some("g".into()),
            key_id: None,
            before: None,
            after: None,
            secret: None,
        }
    }

    /// Event times come from the emitter's clock: `at` and the id follow it, a clock that
    /// steps back cannot reorder the chain, and retention prunes by the clock's time.
    #[test]
    fn timestamps_follow_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::Store::open(dir.path(), std::time::Duration::ZERO).unwrap();
        let log = AuditLog::open(store.audit_store()).unwrap();
        let clock = ManualClock::new(1_767_225_600_000); // 2026-01-01T00:00:00Z
        log.append(&event("key.created", clock.now_ms())).unwrap();
        log.append(&event("key.updated", clock.now_ms())).unwrap();
        clock.advance(86_400_000 + 1_500);
        log.append(&event("key.revoked", clock.now_ms())).unwrap();
        clock.set(1_767_225_600_000 - 1); // back in time
        log.append(&event("key.enabled", clock.now_ms())).unwrap();
        let all = log.list(&AuditQuery::default(), &|_| true).unwrap();
        let at: Vec<(&str, &str, &str)> = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap(),
                    v["at"].as_str().unwrap(),
                    v["id"].as_str().unwrap(),
                )
            })
            .collect();
        let d1 = "0000019b76daa800";
        let d2 = "0000019b7c0109dc";
        let want = [
            (
                "key.enabled",
                "2026-01-02T00:00:01.500Z",
                format!("evt_{d2}{:016x}", 1),
            ),
            (
                "key.revoked",
                "2026-01-02T00:00:01.500Z",
                format!("evt_{d2}{:016x}", 0),
            ),
            (
                "key.updated",
                "2026-01-01T00:00:00.000Z",
                format!("evt_{d1}{:016x}", 1),
            ),
            (
                "key.created",
                "2026-01-01T00:00:00.000Z",
                format!("evt_{d1}{:016x}", 0),
            ),
        ];
        let want: Vec<(&str, &str, &str)> =
            want.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
        assert_eq!(at, want);
        assert_eq!(log.verify()["ok"], true);
        // A day's retention at the clock's time drops the first day only; the chain holds.
        clock.set(1_767_225_600_000 + 86_400_000 + 1_500);
        assert_eq!(log.prune(clock.now_ms() - 86_400_000).unwrap(), 2);
        let v = log.verify();
        assert_eq!(
            (v["ok"].clone(), v["events"].clone()),
            (json!(true), json!(2))
        );
        // The chain continues across a reopen.
        drop(log);
        let log = AuditLog::open(store.audit_store()).unwrap();
        log.append(&event("key.disabled", clock.now_ms())).unwrap();
        assert_eq!(log.verify()["events"], 3);
        assert_eq!(log.verify()["ok"], true);
    }
}

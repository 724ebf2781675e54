//! Alert channels (docs/operations.md "Alert channels"): the same events as the signed
//! JSON webhook, shaped for a chat service's incoming webhook or sent as mail.
//!
//! | `webhook_format` | body | signing (with `webhook_secret_env`) |
//! |---|---|---|
//! | `json` | the event (§9) | `x-tollgate-signature` (required) |
//! | `slack` | `{"text"}` | none: Slack incoming webhooks are not signed |
//! | `feishu` | `{"msg_type": "text", "content": {"text"}}` | body `timestamp` (s) and `sign` = base64(HMAC-SHA256(key = "<t>\n<secret>", msg = "")) |
//! | `dingtalk` | `{"msgtype": "text", "text": {"content"}}` | URL `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(key = secret, msg = "<t>\n<secret>"))) |
//!
//! Chat and mail messages never carry a rotated key's new secret: that goes to signed
//! JSON receivers only.

use super::signature;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// How a receiver is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Format {
    #[default]
    Json,
    Slack,
    Feishu,
    Dingtalk,
    /// `alert_email`: the queue entry's `url` is `mailto:a@x,b@y`.
    Email,
}

impl Format {
    /// A `webhook_format` value (mail is not one: it comes from `alert_email`).
    pub(crate) fn parse_webhook(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "slack" => Some(Format::Slack),
            "feishu" => Some(Format::Feishu),
            "dingtalk" => Some(Format::Dingtalk),
            _ => None,
        }
    }

    /// The queue entry's form (`None` for JSON, which older entries have).
    pub(crate) fn stored(self) -> Option<String> {
        match self {
            Format::Json => None,
            Format::Slack => Some("slack".into()),
            Format::Feishu => Some("feishu".into()),
            Format::Dingtalk => Some("dingtalk".into()),
            Format::Email => Some("email".into()),
        }
    }

    pub(crate) fn from_stored(s: Option<&str>) -> Format {
        match s {
            Some("email") => Format::Email,
            Some(f) => Format::parse_webhook(f).unwrap_or_default(),
            None => Format::Json,
        }
    }

    /// Whether `webhook_secret_env` is required (json), optional (feishu, dingtalk) or
    /// refused (slack: nothing would use it).
    pub(crate) fn secret(self) -> Secret {
        match self {
            Format::Json => Secret::Required,
            Format::Feishu | Format::Dingtalk => Secret::Optional,
            Format::Slack | Format::Email => Secret::Unused,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secret {
    Required,
    Optional,
    Unused,
}

/// A subject line and a text for people, from the event's JSON body.
pub(crate) fn text(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    let mut detail = v["detail"].clone();
    if let Some(d) = detail.as_object_mut() {
        if d.contains_key("key") {
            d.insert("key".into(), json!("(sent only to signed JSON webhooks)"));
        }
    }
    let subject = format!("[tollgate] {} in group {}", s("event"), s("group"));
    let text = format!(
        "tollgate: {} (org {}, group {}, key {}) at {}\n{}\nevent id {}",
        s("event"),
        s("org"),
        s("group"),
        s("key_id"),
        s("at"),
        serde_json::to_string(&detail).unwrap_or_default(),
        s("id"),
    );
    (subject, text)
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => vec![],
    }
}

/// Feishu's custom-bot signature for `t` (unix seconds).
pub(crate) fn feishu_sign(secret: &[u8], t: u64) -> String {
    let mut key = format!("{t}\n").into_bytes();
    key.extend_from_slice(secret);
    base64::engine::general_purpose::STANDARD.encode(hmac(&key, b""))
}

/// DingTalk's robot signature for `t` (unix milliseconds), URL-encoded.
pub(crate) fn dingtalk_sign(secret: &[u8], t_ms: u64) -> String {
    let mut msg = format!("{t_ms}\n").into_bytes();
    msg.extend_from_slice(secret);
    let b64 = base64::engine::general_purpose::STANDARD.encode(hmac(secret, &msg));
    percent_encoding::utf8_percent_encode(&b64, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One HTTP attempt: where, what, and the extra headers.
pub(crate) struct Outgoing {
    pub(crate) url: String,
    pub(crate) body: String,
    pub(crate) signature: Option<String>,
}

/// The request for an HTTP format; `now_ms` is the attempt's time.
pub(crate) fn request(
    format: Format,
    url: &str,
    body: &str,
    secret: Option<&[u8]>,
    now_ms: u64,
) -> Outgoing {
    let t = now_ms / 1000;
    match format {
        Format::Json | Format::Email => Outgoing {
            url: url.to_string(),
            body: body.to_string(),
            signature: secret.map(|s| signature(s, t, body.as_bytes())),
        },
        Format::Slack => Outgoing {
            url: url.to_string(),
            body: json!({"text": text(body).1}).to_string(),
            signature: None,
        },
        Format::Feishu => {
            let mut m = json!({"msg_type": "text", "content": {"text": text(body).1}});
            if let Some(s) = secret {
                m["timestamp"] = json!(t.to_string());
                m["sign"] = json!(feishu_sign(s, t));
            }
            Outgoing {
                url: url.to_string(),
                body: m.to_string(),
                signature: None,
            }
        }
        Format::Dingtalk => {
            let url = match secret {
                Some(s) => {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!(
                        "{url}{sep}timestamp={now_ms}&sign={}",
                        dingtalk_sign(s, now_ms)
                    )
                }
                None => url.to_string(),
            };
            Outgoing {
                url,
                body: json!({"msgtype": "text", "text": {"content": text(body).1}}).to_string(),
                signature: None,
            }
        }
    }
}

/// Whether a 2xx answer is a success: Feishu and DingTalk answer 200 with an error code
/// in the body (`{"code": 19021, "msg": "sign match fail"}`, `{"errcode": 310000, …}`).
pub(crate) fn accepted(format: Format, answer: &[u8]) -> Result<(), String> {
    let field = match format {
        Format::Feishu => "code",
        Format::Dingtalk => "errcode",
        _ => return Ok(()),
    };
    let v: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    match v.get(field).and_then(Value::as_i64) {
        None | Some(0) => Ok(()),
        Some(code) => {
            let msg = v
                .get("msg")
                .or_else(|| v.get("errmsg"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(format!("{field} {code}: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_services_published_recipes() {
        // Feishu: base64(HMAC-SHA256(key = "1700000000\nsecret", msg = "")).
        let want = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"1700000000\nsecret").unwrap();
            m.update(b"");
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        };
        assert_eq!(feishu_sign(b"secret", 1_700_000_000), want);
        // DingTalk: urlencode(base64(HMAC-SHA256(key = secret, msg = "<ms>\nsecret"))).
        let raw = {
            let mut m = Hmac::<Sha256>::new_from_slice(b"SECx").unwrap();
            m.update(b"1700000000123\nSECx");
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        };
        let got = dingtalk_sign(b"SECx", 1_700_000_000_123);
        assert_eq!(
            percent_encoding::percent_decode_str(&got)
                .decode_utf8()
                .unwrap(),
            raw
        );
        assert!(!got.contains('+') && !got.contains('/') && !got.contains('='));
    }

    #[test]
    fn chat_messages_never_carry_a_rotated_secret() {
        let body = json!({"id": "evt_1", "event": "key.rotated", "org": "o", "group": "g",
            "key_id": "k", "at": "2026-01-01T00:00:00Z", "detail": {"key": "tg-secret"}})
        .to_string();
        for f in [Format::Slack, Format::Feishu, Format::Dingtalk] {
            let out = request(f, "http://x/", &body, Some(b"s"), 1000);
            assert!(!out.body.contains("tg-secret"), "{}", out.body);
        }
        assert!(!text(&body).1.contains("tg-secret"));
    }

    #[test]
    fn service_error_codes_are_failures() {
        assert!(accepted(Format::Feishu, br#"{"code":0,"msg":"success"}"#).is_ok());
        assert!(accepted(Format::Feishu, br#"{"code":19021,"msg":"sign match fail"}"#).is_err());
        assert!(accepted(Format::Dingtalk, br#"{"errcode":310000,"errmsg":"sign"}"#).is_err());
        assert!(accepted(Format::Slack, b"ok").is_ok());
    }
}

use super::{pii, run, secrets};
use crate::llm::body::Endpoint;
use crate::llm::guard::{Action, Format, ResponseGuard, Rule};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

const KEY: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6h";

fn guard(endpoint: Endpoint, format: Format, rules: Vec<Arc<Rule>>) -> ResponseGuard {
    ResponseGuard::new(rules.into(), endpoint, format)
}

fn ev(name: Option<&str>, v: Value) -> String {
    match name {
        Some(n) => format!("event: {n}\ndata: {v}\n\n"),
        None => format!("data: {v}\n\n"),
    }
}

/// An OpenAI chat stream: role chunk, one chunk per text, the finish chunk, the usage
/// chunk, `[DONE]`.
pub(crate) fn chat_sse(texts: &[&str]) -> String {
    let c = |choices: Value| json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices});
    let mut s = ev(
        None,
        c(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        ),
    );
    for t in texts {
        s += &ev(
            None,
            c(json!([{"index": 0, "delta": {"content": t}, "finish_reason": null}])),
        );
    }
    s += &ev(
        None,
        c(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
    );
    let mut u = c(json!([]));
    u["usage"] = json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12});
    s += &ev(None, u);
    s + "data: [DONE]\n\n"
}

fn anthropic_sse(texts: &[&str]) -> String {
    let mut s = ev(
        Some("message_start"),
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    );
    s += &ev(
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    s += &ev(Some("ping"), json!({"type": "ping"}));
    for t in texts {
        s += &ev(
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        );
    }
    s += &ev(
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &ev(
        Some("message_delta"),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
    );
    s + &ev(Some("message_stop"), json!({"type": "message_stop"}))
}

fn responses_sse(texts: &[&str]) -> String {
    let full: String = texts.concat();
    let resp = |status: &str, text: Option<&str>| {
        let output = match text {
            Some(t) => {
                json!([{"type": "message", "id": "m1", "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]}])
            }
            None => json!([]),
        };
        json!({"id": "resp_1", "object": "response", "model": "m", "status": status, "output": output})
    };
    let mut s = ev(
        Some("response.created"),
        json!({"type": "response.created", "response": resp("in_progress", None)}),
    );
    for t in texts {
        s += &ev(
            Some("response.output_text.delta"),
            json!({"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "content_index": 0, "delta": t}),
        );
    }
    s += &ev(
        Some("response.output_text.done"),
        json!({"type": "response.output_text.done", "item_id": "m1", "output_index": 0, "content_index": 0, "text": full}),
    );
    s += &ev(
        Some("response.content_part.done"),
        json!({"type": "response.content_part.done", "part": {"type": "output_text", "text": full}}),
    );
    let mut done = resp("completed", Some(&full));
    done["usage"] = json!({"input_tokens": 5, "output_tokens": 7, "total_tokens": 12});
    s + &ev(
        Some("response.completed"),
        json!({"type": "response.completed", "response": done}),
    )
}

/// The `data:` JSON payloads of a stream.
fn events(s: &str) -> Vec<Value> {
    s.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// The text the client reads from a stream.
fn text_of(endpoint: Endpoint, s: &str) -> String {
    events(s)
        .iter()
        .filter_map(|v| match endpoint {
            Endpoint::ChatCompletions => v.pointer("/choices/0/delta/content"),
            Endpoint::Completions => v.pointer("/choices/0/text"),
            Endpoint::Messages => v.pointer("/delta/text"),
            _ => (v["type"] == "response.output_text.delta").then(|| &v["delta"]),
        })
        .filter_map(Value::as_str)
        .collect()
}

fn all_chunks(s: &str) -> Vec<&[u8]> {
    vec![s.as_bytes()]
}

#[test]
fn chat_stream_redacts_a_match_split_across_events() {
    let input = chat_sse(&["write to jane.d", "oe@exa", "mple.com please"]);
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Sse,
        vec![pii(Action::Redact)],
    );
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(
        text_of(Endpoint::ChatCompletions, &out),
        "write to [EMAIL] please"
    );
    assert!(!out.contains("mple.com"));
    assert_eq!(g.verdicts()[0].kinds, ["email"]);
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert!(out.contains("\"finish_reason\":\"stop\""));
}

#[test]
fn chat_stream_block_ends_with_content_filter_and_keeps_usage() {
    let (a, b) = KEY.split_at(20);
    let input = chat_sse(&[
        "here is ",
        &format!("the key {a}"),
        &format!("{b} and more"),
        " tail",
    ]);
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Sse,
        vec![secrets(Action::Block)],
    );
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::ChatCompletions, &out), "here is the key ");
    assert!(!out.contains(&KEY[..8]) && !out.contains("tail"));
    let evs = events(&out);
    let n = evs.len();
    assert_eq!(evs[n - 2]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(evs[n - 1]["usage"]["completion_tokens"], 7);
    assert_eq!(evs[n - 1]["choices"], json!([]));
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert!(!out.contains("\"finish_reason\":\"stop\""));
    assert_eq!(g.verdicts()[0].action, Action::Block);
    assert_eq!(g.verdicts()[0].kinds, ["openai_key"]);
}

#[test]
fn log_changes_no_byte() {
    let input = chat_sse(&["mail a@b.io ", "now"]);
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Sse,
        vec![pii(Action::Log)],
    );
    assert_eq!(run(&mut g, &all_chunks(&input)), input);
    assert_eq!(g.verdicts()[0].kinds, ["email"]);
    assert_eq!(g.verdicts()[0].action, Action::Log);
}

#[test]
fn events_before_text_pass_at_once_and_text_is_held_at_most_256_bytes() {
    let input = anthropic_sse(&[]);
    let first = input.split_inclusive("\n\n").next().unwrap();
    let mut g = guard(Endpoint::Messages, Format::Sse, vec![pii(Action::Redact)]);
    let mut body = Some(Bytes::copy_from_slice(first.as_bytes()));
    g.chunk(&mut body, false);
    assert_eq!(body.as_deref(), Some(first.as_bytes()));
    // Text: held while under the window, released beyond it.
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Sse,
        vec![pii(Action::Redact)],
    );
    let chunk = |t: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "choices": [{"index": 0, "delta": {"content": t}}]})
        )
    };
    let mut body = Some(Bytes::from(chunk(&"a".repeat(200))));
    g.chunk(&mut body, false);
    assert_eq!(body.as_deref(), Some(&b""[..]));
    let mut body = Some(Bytes::from(chunk(&"b".repeat(100))));
    g.chunk(&mut body, false);
    let out = String::from_utf8(body.unwrap().to_vec()).unwrap();
    // 300 bytes held: released down to 192, the long delta split (at an event's end
    // only 100 bytes would stay held).
    assert_eq!(text_of(Endpoint::ChatCompletions, &out), "a".repeat(108));
    // The partial event of a chunk waits for the rest of its event only.
    let mut body = Some(Bytes::from_static(b"data: {\"id\":"));
    g.chunk(&mut body, false);
    assert_eq!(body.as_deref(), Some(&b""[..]));
}

#[test]
fn chat_json_redact_and_block() {
    let answer = |text: &str| {
        json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        .to_string()
    };
    let body = answer("call (555) 123-4567 now");
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Json,
        vec![pii(Action::Redact)],
    );
    let (a, b) = body.split_at(10);
    let out: Value = serde_json::from_str(&run(&mut g, &[a.as_bytes(), b.as_bytes()])).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "call [PHONE] now");
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Json,
        vec![secrets(Action::Block)],
    );
    let out: Value = serde_json::from_str(&run(
        &mut g,
        &[answer(&format!("key: {KEY} ok")).as_bytes()],
    ))
    .unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "key: ");
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out["usage"]["completion_tokens"], 2);
    // Nothing to change: the bytes as they came.
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Json,
        vec![secrets(Action::Block)],
    );
    let clean = answer("fine");
    assert_eq!(run(&mut g, &[clean.as_bytes()]), clean);
}

#[test]
fn completions_stream_and_json() {
    let c = |t: &str| {
        ev(
            None,
            json!({"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": t, "finish_reason": null}]}),
        )
    };
    let input = c("ssn 123-4") + &c("5-6789 end") + "data: [DONE]\n\n";
    let mut g = guard(
        Endpoint::Completions,
        Format::Sse,
        vec![pii(Action::Redact)],
    );
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Completions, &out), "ssn [US_SSN] end");
    let mut g = guard(Endpoint::Completions, Format::Sse, vec![pii(Action::Block)]);
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Completions, &out), "ssn ");
    assert!(out.contains("\"finish_reason\":\"content_filter\""));
    assert!(out.ends_with("data: [DONE]\n\n"));
    let body = json!({"choices": [{"index": 0, "text": "ip 10.1.2.3", "finish_reason": "stop"}]})
        .to_string();
    let mut g = guard(
        Endpoint::Completions,
        Format::Json,
        vec![pii(Action::Redact)],
    );
    let out: Value = serde_json::from_str(&run(&mut g, &[body.as_bytes()])).unwrap();
    assert_eq!(out["choices"][0]["text"], "ip [IP_ADDRESS]");
}

#[test]
fn responses_stream_redacts_deltas_and_whole_texts() {
    let input = responses_sse(&["mail bob@exa", "mple.org thanks"]);
    let mut g = guard(Endpoint::Responses, Format::Sse, vec![pii(Action::Redact)]);
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Responses, &out), "mail [EMAIL] thanks");
    assert!(!out.contains("bob@"));
    let evs = events(&out);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        "mail [EMAIL] thanks"
    );
}

#[test]
fn responses_stream_block_ends_incomplete_with_usage() {
    let (a, b) = KEY.split_at(12);
    let input = responses_sse(&["ok ", a, b, " more"]);
    let mut g = guard(
        Endpoint::Responses,
        Format::Sse,
        vec![secrets(Action::Block)],
    );
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Responses, &out), "ok ");
    assert!(!out.contains(&KEY[..8]));
    let evs = events(&out);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "content_filter"
    );
    assert_eq!(last["response"]["usage"]["output_tokens"], 7);
    assert!(out.contains("event: response.incomplete\n"));
}

#[test]
fn responses_json() {
    let body = json!({"id": "r", "object": "response", "status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "key AKIAIOSFODNN7EXAMPLE x"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "later"}]}],
        "usage": {"input_tokens": 1, "output_tokens": 2}})
    .to_string();
    let mut g = guard(
        Endpoint::Responses,
        Format::Json,
        vec![secrets(Action::Redact)],
    );
    let out: Value = serde_json::from_str(&run(&mut g, &[body.as_bytes()])).unwrap();
    assert_eq!(out["output"][0]["content"][0]["text"], "key [SECRET] x");
    let mut g = guard(
        Endpoint::Responses,
        Format::Json,
        vec![secrets(Action::Block)],
    );
    let out: Value = serde_json::from_str(&run(&mut g, &[body.as_bytes()])).unwrap();
    assert_eq!(out["output"][0]["content"][0]["text"], "key ");
    assert_eq!(out["output"].as_array().unwrap().len(), 1);
    assert_eq!(out["status"], "incomplete");
    assert_eq!(out["incomplete_details"]["reason"], "content_filter");
    assert_eq!(out["usage"]["output_tokens"], 2);
}

#[test]
fn anthropic_stream_redact_and_block() {
    let input = anthropic_sse(&["card 4111 1111 ", "1111 1111 ok"]);
    let mut g = guard(Endpoint::Messages, Format::Sse, vec![pii(Action::Redact)]);
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Messages, &out), "card [CREDIT_CARD] ok");
    assert!(out.contains("\"stop_reason\":\"end_turn\""));

    let (a, b) = KEY.split_at(30);
    let input = anthropic_sse(&["fine. ", a, b, " rest"]);
    let mut g = guard(
        Endpoint::Messages,
        Format::Sse,
        vec![secrets(Action::Block)],
    );
    let out = run(&mut g, &all_chunks(&input));
    assert_eq!(text_of(Endpoint::Messages, &out), "fine. ");
    assert!(!out.contains(&KEY[..8]) && !out.contains("rest"));
    let types: Vec<String> = events(&out)
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_string())
        .collect();
    let n = types.len();
    assert_eq!(
        types[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let evs = events(&out);
    assert_eq!(evs[n - 2]["delta"]["stop_reason"], "refusal");
    assert_eq!(evs[n - 2]["usage"]["output_tokens"], 7);
    assert_eq!(
        types.iter().filter(|t| *t == "content_block_stop").count(),
        1
    );
}

#[test]
fn anthropic_stream_cut_short_after_a_block_still_ends() {
    let input = anthropic_sse(&["x ", KEY, " y"]);
    // The upstream stops right after the secret's event.
    let cut = input.find("\" y\"").unwrap();
    let cut = input[..cut].rfind("event:").unwrap();
    let mut g = guard(
        Endpoint::Messages,
        Format::Sse,
        vec![secrets(Action::Block)],
    );
    let out = run(&mut g, &[&input.as_bytes()[..cut]]);
    let types: Vec<String> = events(&out)
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_string())
        .collect();
    let n = types.len();
    assert_eq!(
        types[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
}

#[test]
fn anthropic_json_redact_and_block() {
    let body = json!({"id": "msg", "type": "message", "role": "assistant", "content": [
        {"type": "text", "text": "iban GB82WEST12345698765432 ok"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}})
    .to_string();
    let mut g = guard(Endpoint::Messages, Format::Json, vec![pii(Action::Redact)]);
    let out: Value = serde_json::from_str(&run(&mut g, &[body.as_bytes()])).unwrap();
    assert_eq!(out["content"][0]["text"], "iban [IBAN] ok");
    assert_eq!(out["stop_reason"], "tool_use");
    let mut g = guard(Endpoint::Messages, Format::Json, vec![pii(Action::Block)]);
    let out: Value = serde_json::from_str(&run(&mut g, &[body.as_bytes()])).unwrap();
    assert_eq!(out["content"], json!([{"type": "text", "text": "iban "}]));
    assert_eq!(out["stop_reason"], "refusal");
    assert_eq!(out["usage"]["output_tokens"], 2);
    assert_eq!(g.verdicts()[0].kinds, ["iban"]);
}

#[test]
fn chat_stream_without_usage_and_cut_short_still_ends() {
    // No usage chunk, and the upstream stops right after the secret's event.
    let input = chat_sse(&["a ", KEY]);
    let cut = input.find("\"finish_reason\":\"stop\"").unwrap();
    let cut = input[..cut].rfind("data:").unwrap();
    let mut g = guard(
        Endpoint::ChatCompletions,
        Format::Sse,
        vec![secrets(Action::Block)],
    );
    let out = run(&mut g, &[&input.as_bytes()[..cut]]);
    assert_eq!(text_of(Endpoint::ChatCompletions, &out), "a ");
    let evs = events(&out);
    assert_eq!(
        evs.last().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
    assert_eq!(evs.last().unwrap()["id"], "c1");
    assert!(out.ends_with("data: [DONE]\n\n"));
}

#[test]
fn responses_log_and_no_rules_change_no_byte() {
    let input = responses_sse(&["mail bob@exa", "mple.org thanks"]);
    let mut g = guard(Endpoint::Responses, Format::Sse, vec![pii(Action::Log)]);
    assert_eq!(run(&mut g, &all_chunks(&input)), input);
    assert_eq!(g.verdicts()[0].kinds, ["email"]);
    let mut g = guard(Endpoint::Responses, Format::Sse, vec![]);
    assert_eq!(run(&mut g, &all_chunks(&input)), input);
    assert!(g.verdicts().is_empty());
}

//! End to end: `/v1/chat/completions` served by an Anthropic-style target and
//! `/v1/messages` by an OpenAI-style one, through the real binary and the mock provider.
//! What the provider received, what the client got, and what was settled.

use crate::harness::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Instant;

/// `POST path` with key(1), the request id `id` and `headers`.
async fn post(
    g: &GatewayProc,
    path: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let headers = [&[("x-request-id", id)][..], headers].concat();
    g.post(path, &key(1), &headers, body).send().await.unwrap()
}

/// Usage the mock reported for the last request it received: (prompt, output).
fn mock_prompt_tokens(mock: &MockProvider) -> u64 {
    (mock.received().last().unwrap().body.len() as u64).div_ceil(4)
}

fn cost_usd(input: u64, output: u64, in_per_mtok: f64, out_per_mtok: f64) -> f64 {
    let micros = (input as f64 * in_per_mtok + output as f64 * out_per_mtok).ceil();
    micros / 1e6
}

async fn assert_settled(g: &GatewayProc, id: &str, input: u64, output: u64, prices: (f64, f64)) {
    let line = g.log_line(id).await;
    assert_eq!(line["input_tokens"], input, "{line}");
    assert_eq!(line["output_tokens"], output, "{line}");
    let want = cost_usd(input, output, prices.0, prices.1);
    assert!(
        (line["cost_usd"].as_f64().unwrap() - want).abs() < 1e-9,
        "{line} want {want}"
    );
}

const CLAUDE: (f64, f64) = (3.0, 15.0);
const MINI: (f64, f64) = (0.15, 0.60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_served_by_an_anthropic_target() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), "").with_request_log());
    let body = json!({"model": "smart", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hello"}], "temperature": 0.2});
    let r = post(&g, CHAT, "t-json", &[("x-mock-output-tokens", "5")], &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-tollgate-target"],
        "an/claude-sonnet-4-5-20250929"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "smart", "the name the client asked for");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 "
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, MESSAGES);
    assert_eq!(got.header("x-api-key"), Some("sk-provider-secret"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert!(got.header("authorization").is_none());
    let up = got.json().unwrap();
    assert_eq!(up["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(up["system"], json!([{"type": "text", "text": "Be terse."}]));
    assert_eq!(
        up["max_tokens"], 4000,
        "server default within the group's cap"
    );
    assert_eq!(up["temperature"], 0.2);
    let prompt = mock_prompt_tokens(&mock);
    assert_eq!(v["usage"]["prompt_tokens"], prompt);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_settled(&g, "t-json", prompt, 5, CLAUDE).await;
}

/// Reads an SSE answer, noting when the first text arrived.
async fn read_stream(r: reqwest::Response, marker: &str) -> (String, Option<Instant>) {
    let mut s = r.bytes_stream();
    let mut out = String::new();
    let mut first = None;
    while let Some(c) = s.next().await {
        out.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
        if first.is_none() && out.contains(marker) {
            first = Some(Instant::now());
        }
    }
    (out, first)
}

fn data_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_from_anthropic_is_translated_unbuffered_with_usage() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), "").with_request_log());
    for include_usage in [true, false] {
        let id = format!("t-stream-{include_usage}");
        let mut body = json!({"model": "claude-sonnet-4-5", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = post(
            &g,
            CHAT,
            &id,
            &[
                ("x-mock-output-tokens", "6"),
                ("x-mock-chunk-interval-ms", "120"),
            ],
            &body,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let (out, first) = read_stream(r, "tok0").await;
        let last_sent = mock.last_event_at().unwrap();
        assert!(
            first.unwrap() < last_sent,
            "first delta before the provider's last event"
        );
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        let chunks = data_lines(&out);
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 tok5 ");
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude-sonnet-4-5"));
        let finish: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["stop"]);
        let usage: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["usage"])
            .filter(|u| u.is_object())
            .collect();
        let prompt = mock_prompt_tokens(&mock);
        if include_usage {
            assert_eq!(usage.len(), 1, "{out}");
            assert_eq!(usage[0]["prompt_tokens"], prompt);
            assert_eq!(usage[0]["completion_tokens"], 6);
        } else {
            assert!(usage.is_empty(), "{out}");
        }
        assert_settled(&g, &id, prompt, 6, CLAUDE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tool_calls_and_stop_sequences_through_anthropic() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), ""));
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]);
    let mut body = json!({"model": "smart", "tools": tools, "messages": [{"role": "user", "content": "weather?"}]});
    let v: Value = post(&g, CHAT, "t1", &[], &body).await.json().await.unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(call["function"]["name"], "weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock-city", "days": 1}));
    assert_eq!(
        mock.received().pop().unwrap().json().unwrap()["tools"][0]["input_schema"]["properties"]
            ["days"]["type"],
        "integer"
    );
    // Streamed: argument fragments arrive as tool_calls deltas.
    body["stream"] = json!(true);
    let r = post(&g, CHAT, "t2", &[], &body).await;
    let (out, _) = read_stream(r, "").await;
    let chunks = data_lines(&out);
    let frags: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(frags.len() >= 3, "{out}");
    assert_eq!(frags[0]["function"]["name"], "weather");
    let joined: String = frags
        .iter()
        .filter_map(|f| f["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args);
    // The result goes back as a tool_result; the answer quotes it.
    body["stream"] = json!(false);
    body["messages"] = json!([{"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"}]);
    let v: Value = post(&g, CHAT, "t3", &[], &body).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The tool returned: sunny, 21C"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let up = mock.received().pop().unwrap().json().unwrap();
    assert_eq!(up["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(up["messages"][2]["content"][0]["tool_use_id"], call["id"]);
    // Stop sequence.
    let body = json!({"model": "smart", "stop": ["tok3"], "messages": [{"role": "user", "content": "count"}]});
    let v: Value = post(&g, CHAT, "t4", &[], &body).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        mock.received().pop().unwrap().json().unwrap()["stop_sequences"],
        json!(["tok3"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_served_by_an_openai_target() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), "").with_request_log());
    let body = json!({"model": "fast", "max_tokens": 100, "system": "Be terse.",
        "messages": [{"role": "user", "content": "hello"}]});
    let r = client()
        .post(g.url(MESSAGES))
        .header("x-api-key", key(1))
        .header("anthropic-version", "2023-06-01")
        .header("x-request-id", "m-json")
        .header("x-mock-output-tokens", "4")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "fast");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "tok0 tok1 tok2 tok3 "}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    let got = mock.received().pop().unwrap();
    assert_eq!(got.path, CHAT);
    assert_eq!(
        got.header("authorization"),
        Some("Bearer sk-provider-secret")
    );
    assert!(got.header("x-api-key").is_none());
    assert!(
        got.header("anthropic-version").is_none(),
        "Anthropic headers stay behind"
    );
    let up = got.json().unwrap();
    assert_eq!(up["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(
        up["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(up["max_completion_tokens"], 100);
    let prompt = mock_prompt_tokens(&mock);
    assert_eq!(v["usage"]["input_tokens"], prompt);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_settled(&g, "m-json", prompt, 4, MINI).await;

    // Streamed text arrives event by event: the first delta before the provider's last event.
    let body = json!({"model": "fast", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hello"}]});
    let r = client()
        .post(g.url(MESSAGES))
        .header("x-api-key", key(1))
        .header("x-mock-chunk-interval-ms", "120")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (out, first) = read_stream(r, "text_delta").await;
    assert!(first.unwrap() < mock.last_event_at().unwrap(), "{out}");
    let text: String = data_lines(&out)
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");

    // Streamed, with tools: the gateway asks the OpenAI target for usage.
    let body = json!({"model": "fast", "max_tokens": 100, "stream": true,
        "tools": [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let r = client()
        .post(g.url(MESSAGES))
        .header("x-api-key", key(1))
        .header("x-request-id", "m-stream")
        .header("x-mock-chunk-interval-ms", "60")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (out, _) = read_stream(r, "").await;
    let up = mock.received().pop().unwrap().json().unwrap();
    assert_eq!(up["stream_options"], json!({"include_usage": true}));
    let events: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    let data = data_lines(&out);
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "weather");
    let json_frags: String = data
        .iter()
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_frags).unwrap(),
        json!({"city": "mock-city"})
    );
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let prompt = mock_prompt_tokens(&mock);
    assert_eq!(delta["usage"]["input_tokens"], prompt);
    assert_eq!(delta["usage"]["output_tokens"], 8);
    assert_settled(&g, "m-stream", prompt, 8, MINI).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_fields_and_provider_errors_in_the_route_shape() {
    let mock = mock().await;
    let g = start_gateway(&basic_policy(mock.addr(), ""));
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (field, value) in [("n", json!(2)), ("logprobs", json!(true))] {
        let mut body = json!({"model": "smart", "messages": msgs});
        body[field] = value;
        let r = post(&g, CHAT, "u", &[], &body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_parameter");
        assert_eq!(v["error"]["param"], field);
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // The same fields are fine where no translation is needed.
    let r = post(
        &g,
        CHAT,
        "u",
        &[],
        &json!({"model": "fast", "n": 2, "messages": msgs}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &g,
        MESSAGES,
        "u",
        &[],
        &json!({"model": "fast", "max_tokens": 5, "top_k": 3, "messages": msgs}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("top_k"),
        "{v}"
    );

    // Anthropic errors on the OpenAI route.
    for (status, want, ty, code) in [
        (400, 400, "invalid_request_error", "invalid_request_error"),
        (429, 429, "rate_limit_error", "rate_limit_error"),
        (529, 503, "api_error", "overloaded_error"),
    ] {
        mock.fail_next(status);
        let r = post(
            &g,
            CHAT,
            "e",
            &[],
            &json!({"model": "smart", "messages": msgs}),
        )
        .await;
        assert_eq!(r.status(), want);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], ty, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["message"], format!("mock error {status}"));
    }
    // OpenAI errors on the Anthropic route, streamed requests too.
    for (status, want, ty) in [
        (400, 400, "invalid_request_error"),
        (429, 429, "rate_limit_error"),
        (503, 529, "overloaded_error"),
    ] {
        mock.fail_next(status);
        let body = json!({"model": "fast", "max_tokens": 5, "stream": true, "messages": msgs});
        let r = post(&g, MESSAGES, "e", &[], &body).await;
        assert_eq!(r.status(), want);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": ty, "message": format!("mock error {status}")}})
        );
    }
    // Routes that are not translated still need an OpenAI-style target.
    let r = post(
        &g,
        "/v1/completions",
        "c",
        &[],
        &json!({"model": "smart", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status(), 404);
    // /v1/models lists the models of both APIs.
    let v: Value = client()
        .get(g.url("/v1/models"))
        .bearer_auth(key(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"claude-sonnet-4-5") && ids.contains(&"gpt-4o-mini"),
        "{ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_from_a_failing_openai_target_to_an_anthropic_one_translates() {
    let failing = mock().await;
    failing.set_behaviour(answering(500));
    let good = mock().await;
    let policy = basic_policy(good.addr(), "")
        .replace(
            &format!(
                "id = \"oa\"\napi = \"openai\"\nbase_url = \"http://{}\"",
                good.addr()
            ),
            &format!(
                "id = \"oa\"\napi = \"openai\"\nbase_url = \"http://{}\"",
                failing.addr()
            ),
        )
        .replace(
            "aliases =",
            "fallbacks = { \"gpt-4o\" = [\"claude-sonnet-4-5\"] }\naliases =",
        );
    let g = start_gateway(&policy);
    for stream in [false, true] {
        let body = json!({"model": "gpt-4o", "stream": stream,
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]});
        let r = post(&g, CHAT, "f", &[], &body).await;
        assert_eq!(r.status(), 200, "{}", g.log_text());
        assert_eq!(
            r.headers()["x-tollgate-target"],
            "an/claude-sonnet-4-5-20250929"
        );
        let text = r.text().await.unwrap();
        if stream {
            let chunks = data_lines(&text);
            let t: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(t, "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["model"], "gpt-4o");
        }
        // The OpenAI attempt got the client's body as it was; the fallback a Messages body.
        let first = failing.received().pop().unwrap();
        assert_eq!(first.path, CHAT);
        assert_eq!(first.json().unwrap()["messages"][0]["role"], "system");
        let second = good.received().pop().unwrap();
        assert_eq!(second.path, MESSAGES);
        assert_eq!(second.json().unwrap()["system"][0]["text"], "sys");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2mib_chat_prompt_is_translated_streamed_and_not_and_after_a_retry() {
    let failing = mock().await;
    failing.set_behaviour(answering(503));
    let good = mock().await;
    // Two Anthropic targets: the first answers 503, the retry goes to the second.
    let extra = format!(
        "[[providers]]\nid = \"an_bad\"\napi = \"anthropic\"\nbase_url = \"http://{}\"\napi_key_env = \"TEST_PROVIDER_KEY\"\n\n[[models]]\nname = \"claude-big\"\ntargets = [{{ provider = \"an_bad\", weight = 1000000 }}, {{ provider = \"an\", weight = 1 }}]\n",
        failing.addr()
    );
    let policy = basic_policy(good.addr(), "").replace("[[orgs]]", &format!("{extra}\n[[orgs]]"));
    let g = start_gateway(&policy);
    let prompt = "a".repeat(2 * 1024 * 1024);
    for stream in [false, true] {
        let body = json!({"model": "claude-big", "stream": stream, "max_tokens": 10,
            "messages": [{"role": "user", "content": prompt}]});
        let r = post(&g, CHAT, "big", &[], &body).await;
        assert_eq!(r.status(), 200, "{}", g.log_text());
        let text = r.text().await.unwrap();
        assert!(text.contains("tok7"), "{text}");
        let up = good.received().pop().unwrap();
        assert_eq!(up.path, MESSAGES);
        let up = up.json().unwrap();
        assert_eq!(
            up["messages"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .len(),
            prompt.len()
        );
    }
    assert!(
        !failing.received().is_empty(),
        "the first attempt went to the failing target"
    );
}

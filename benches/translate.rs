//! Translation cost: a typical chat request into a Messages request (and back), one
//! streamed event in each direction, and a JSON answer. Run: `cargo bench --bench translate`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::hint::black_box;
use tollgate::llm::body::RequestBody;
use tollgate::llm::translate::{
    chat_to_messages, messages_json_to_chat, messages_to_chat, AnthropicToOpenAi, OpenAiToAnthropic,
};

// The binary's allocator (src/main.rs): translation allocates per request and per event.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A system prompt, six turns with a tool call and its result, one tool: about 2 KiB.
fn chat_request() -> Vec<u8> {
    let long =
        "Explain the difference between a mutex and a semaphore, with an example. ".repeat(4);
    json!({
        "model": "smart", "temperature": 0.3, "stream": true,
        "stream_options": {"include_usage": true}, "stop": ["\n\nUser:"],
        "messages": [
            {"role": "system", "content": "You are a careful assistant. Answer briefly."},
            {"role": "user", "content": long},
            {"role": "assistant", "content": "A mutex guards one resource; a semaphore counts."},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}],
    })
    .to_string()
    .into_bytes()
}

fn requests(c: &mut Criterion) {
    let bytes = chat_request();
    let body = RequestBody::parse(bytes.clone()).expect("body");
    let mut g = c.benchmark_group("request");
    g.bench_function(format!("chat_to_messages_{}B", bytes.len()), |b| {
        b.iter(|| black_box(chat_to_messages(&body, "claude-x", 4096)))
    });
    let messages = chat_to_messages(&body, "claude-x", 4096).expect("translated");
    let mbody = RequestBody::parse(messages.clone()).expect("body");
    g.bench_function(format!("messages_to_chat_{}B", messages.len()), |b| {
        b.iter(|| black_box(messages_to_chat(&mbody, "gpt-x")))
    });
    g.bench_function("untranslated_render", |b| {
        b.iter(|| black_box(body.render("gpt-x", true)))
    });
    g.finish();
    // A long conversation (~1 MiB of history): translation cost per byte.
    let turn =
        json!({"role": "user", "content": "lorem ipsum dolor sit amet, \"quoted\" ".repeat(100)});
    let big = json!({"model": "smart", "messages": vec![turn; 256]}).to_string();
    let body = RequestBody::parse(big.clone()).expect("body");
    let mut g = c.benchmark_group("request_large");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.sample_size(20);
    g.bench_function(format!("chat_to_messages_{}KiB", big.len() / 1024), |b| {
        b.iter(|| black_box(chat_to_messages(&body, "claude-x", 4096)))
    });
    g.finish();
}

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_event");
    let text = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, wor"}}"#;
    let mut a2o = AnthropicToOpenAi::new("smart", true);
    a2o.event(br#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"output_tokens":1}}}"#, &mut Vec::new());
    let mut out = Vec::with_capacity(512);
    g.bench_function("anthropic_text_delta_to_openai", |b| {
        b.iter(|| {
            out.clear();
            a2o.event(black_box(text), &mut out);
        })
    });
    let sse = Bytes::from(format!(
        "event: content_block_delta\ndata: {}\n\n",
        std::str::from_utf8(text).expect("utf8")
    ));
    g.bench_function("anthropic_sse_chunk_to_openai", |b| {
        b.iter(|| {
            let mut body = Some(sse.clone());
            a2o.chunk(&mut body, false);
            black_box(body)
        })
    });
    let chunk = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"g","choices":[{"index":0,"delta":{"content":"Hello, wor"},"finish_reason":null}],"usage":null}"#;
    let mut o2a = OpenAiToAnthropic::new("fast");
    o2a.event(chunk, &mut Vec::new());
    g.bench_function("openai_content_chunk_to_anthropic", |b| {
        b.iter(|| {
            out.clear();
            o2a.event(black_box(chunk), &mut out);
        })
    });
    g.finish();
    let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "text", "text": "word ".repeat(200)}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 100, "output_tokens": 200}})
    .to_string();
    c.bench_function(
        &format!("json_answer_messages_to_chat_{}B", msg.len()),
        |b| b.iter(|| black_box(messages_json_to_chat(msg.as_bytes(), "smart"))),
    );
}

criterion_group!(benches, requests, streams);
criterion_main!(benches);

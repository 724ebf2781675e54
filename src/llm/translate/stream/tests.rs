use super::to_chat::ToChat;
use super::to_messages::ToMessages;
use super::write_event;
use serde_json::{json, Value};

/// The typed fast paths write exactly what the general path writes.
#[test]
fn fast_paths_match_the_general_path() {
    let start = br#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":1}}}"#;
    let tool = br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#;
    for include_usage in [false, true] {
        let mut a = ToChat::new("m \"x\"", include_usage);
        a.event(start, &mut Vec::new());
        a.event(tool, &mut Vec::new());
        for ev in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\u00e9 \"q\"\n"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        ] {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            assert!(a.fast(ev.as_bytes(), &mut fast));
            let v: Value = serde_json::from_str(ev).unwrap();
            let d = &v["delta"];
            let delta = if d["type"] == "text_delta" {
                json!({"content": d["text"]})
            } else {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": d["partial_json"]}}]})
            };
            a.write_chunk(&mut slow, delta, None);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap()
            );
        }
    }
    let mut b = ToMessages::new("m");
    let mut out = Vec::new();
    b.event(
        br#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#,
        &mut out,
    );
    let ev = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"h\u00e9 \"q\""},"finish_reason":null}],"usage":null}"#;
    let mut fast = Vec::new();
    assert!(b.fast(ev, &mut fast));
    let mut slow = Vec::new();
    write_event(
        &mut slow,
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "hé \"q\""}}),
    );
    assert_eq!(
        String::from_utf8(fast).unwrap(),
        String::from_utf8(slow).unwrap()
    );
    // Anything else is not taken by the fast path.
    for ev in [
        &br#"{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}"#[..],
        br#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
        br#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
    ] {
        assert!(!b.fast(ev, &mut Vec::new()));
    }
}

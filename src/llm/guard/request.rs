//! The texts the model reads in a request, checked and rewritten in the body.
//!
//! Only the prompt fields of the route are parsed (`messages`, `system`, `prompt`,
//! `input`, `instructions`), into `Value`s; a field whose texts were redacted is written
//! back into the [`RequestBody`], so every later rendering — passed through or translated
//! — carries the placeholders.
//!
//! Texts: strings and `text` parts of `system`/`instructions`, of messages' `content`
//! (every role, so OpenAI `tool` messages too), Anthropic `tool_result` content (string
//! or text blocks), `prompt` (string or array of strings), `input` (a string, an array of
//! strings, or Responses items with string content, text parts, `function_call_output`).
//! Not texts: tool call arguments, tool definitions, images, token arrays.

use super::{record, redact, Action, Blocked, Hit, Rule, Verdict};
use crate::error::GatewayError;
use crate::llm::body::{Endpoint, RequestBody};
use serde_json::Value;
use std::sync::Arc;

/// Rounds of redaction after the first, at most (see `check_request`).
const REDACT_ROUNDS: usize = 3;

/// The top-level fields that carry what the model reads, per route.
fn prompt_fields(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::ChatCompletions => &["messages"],
        Endpoint::Messages => &["system", "messages"],
        Endpoint::Completions => &["prompt"],
        Endpoint::Responses => &["instructions", "input"],
        Endpoint::Embeddings => &["input"],
        Endpoint::ListModels | Endpoint::CountTokens => &[],
    }
}

/// The route's prompt fields present in the body, parsed, in the client's order.
fn parse_fields(body: &RequestBody, endpoint: Endpoint) -> Vec<(&'static str, Value)> {
    let wanted = prompt_fields(endpoint);
    let mut out = Vec::with_capacity(wanted.len());
    for name in body.names() {
        let Some(n) = wanted.iter().find(|w| **w == name) else {
            continue;
        };
        if out.iter().any(|(seen, _)| seen == n) {
            continue;
        }
        if let Some(v) = body.get(n).and_then(|raw| serde_json::from_slice(raw).ok()) {
            out.push((*n, v));
        }
    }
    out
}

/// A field's texts, in document order.
fn texts_of<'a>(field: &str, v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match field {
        "messages" => {
            if let Value::Array(messages) = v {
                for m in messages {
                    if let Some(c) = m.get_mut("content") {
                        content(c, out);
                    }
                }
            }
        }
        // system, instructions, prompt, input.
        _ => match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        Value::Object(_) => input_item(item, out),
                        _ => {}
                    }
                }
            }
            _ => {}
        },
    }
}

/// A message's content: a string, or parts whose `text` is read (text, input_text,
/// output_text parts) and Anthropic `tool_result` blocks with their own content.
fn content<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(parts) => {
            for p in parts {
                part(p, out);
            }
        }
        _ => {}
    }
}

fn part<'a>(p: &'a mut Value, out: &mut Vec<&'a mut String>) {
    let Value::Object(o) = p else {
        return;
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("text");
    match ty {
        "tool_result" => {
            if let Some(c) = o.get_mut("content") {
                content(c, out);
            }
        }
        "text" | "input_text" | "output_text" => {
            if let Some(Value::String(s)) = o.get_mut("text") {
                out.push(s);
            }
        }
        _ => {}
    }
}

/// A Responses input item: a message (`content`), a tool's output, or a bare part.
fn input_item<'a>(item: &'a mut Value, out: &mut Vec<&'a mut String>) {
    let is_output = item.get("type").and_then(Value::as_str) == Some("function_call_output");
    let has_content = item.get("content").is_some();
    if !is_output && !has_content {
        part(item, out);
        return;
    }
    let Value::Object(o) = item else {
        return;
    };
    if is_output {
        if let Some(Value::String(s)) = o.get_mut("output") {
            out.push(s);
        }
    } else if let Some(c) = o.get_mut("content") {
        content(c, out);
    }
}

/// Each text with the index of its field.
fn all_texts<'a>(fields: &'a mut [(&'static str, Value)]) -> Vec<(usize, &'a mut String)> {
    let mut out = Vec::new();
    for (i, (name, v)) in fields.iter_mut().enumerate() {
        let mut texts = Vec::new();
        texts_of(name, v, &mut texts);
        out.extend(texts.into_iter().map(|t| (i, t)));
    }
    out
}

/// Checks the request's texts with `rules`. Block rules run first, so a block is never
/// hidden by a redaction: one that matches → `Err(Blocked)` and nothing is rewritten.
/// Then redact and log rules all read each text as the client sent it; the redactions
/// are made together (a text then redacted until nothing more matches) and written back
/// into the body. Returns the verdicts of every rule that matched.
pub fn check_request(
    body: &mut RequestBody,
    endpoint: Endpoint,
    rules: &[Arc<Rule>],
) -> Result<Vec<Verdict>, Blocked> {
    let mut verdicts = Vec::new();
    if rules.is_empty() {
        return Ok(verdicts);
    }
    let mut fields = parse_fields(body, endpoint);
    let mut changed = vec![false; fields.len()];
    {
        let mut texts = all_texts(&mut fields);
        let mut hits: Vec<Hit> = Vec::new();
        for rule in rules.iter().filter(|r| r.action == Action::Block) {
            for (_, t) in &texts {
                hits.clear();
                rule.builtin.scan(t, &mut hits);
                if let Some(first) = hits.iter().min_by_key(|h| h.start) {
                    return Err(Blocked {
                        id: rule.id.clone(),
                        kind: first.kind,
                    });
                }
            }
        }
        let mut redactions: Vec<Hit> = Vec::new();
        for (field, t) in texts.iter_mut() {
            // Every rule reads the client's text; the redactions are made together.
            redactions.clear();
            for rule in rules.iter().filter(|r| r.action != Action::Block) {
                hits.clear();
                rule.builtin.scan(t, &mut hits);
                if hits.is_empty() {
                    continue;
                }
                record(&mut verdicts, rule, hits.iter().map(|h| h.kind));
                if rule.action == Action::Redact {
                    redactions.append(&mut hits);
                }
            }
            if redactions.is_empty() {
                continue;
            }
            let mut new = redact(t, &redactions);
            // A placeholder can complete a neighbour (`555-123-4567x…` becomes a phone
            // number once `x…` is `[REDACTED]`): redact until nothing more matches, so a
            // second check finds nothing (bounded; one more scan when something changed).
            for _ in 0..REDACT_ROUNDS {
                redactions.clear();
                for rule in rules.iter().filter(|r| r.action == Action::Redact) {
                    hits.clear();
                    rule.builtin.scan(&new, &mut hits);
                    record(&mut verdicts, rule, hits.iter().map(|h| h.kind));
                    redactions.append(&mut hits);
                }
                if redactions.is_empty() {
                    break;
                }
                new = redact(&new, &redactions);
            }
            **t = new;
            changed[*field] = true;
        }
    }
    write_back(body, &fields, &changed);
    Ok(verdicts)
}

fn write_back(body: &mut RequestBody, fields: &[(&'static str, Value)], changed: &[bool]) {
    for ((name, v), changed) in fields.iter().zip(changed) {
        if *changed {
            if let Ok(raw) = serde_json::to_vec(v) {
                body.replace_field(name, &raw);
            }
        }
    }
}

/// The texts (for external checkers: moderation, webhook), in document order.
pub fn request_texts(body: &RequestBody, endpoint: Endpoint) -> Vec<String> {
    let mut fields = parse_fields(body, endpoint);
    all_texts(&mut fields)
        .into_iter()
        .map(|(_, t)| std::mem::take(t))
        .collect()
}

/// Replaces the request's texts (same order and count as [`request_texts`]): a webhook
/// checker that answered `redact` with new texts. A different count is refused (the
/// checker's answer is wrong; the caller treats it as the checker failing).
pub fn replace_request_texts(
    body: &mut RequestBody,
    endpoint: Endpoint,
    texts: &[String],
) -> Result<(), GatewayError> {
    let mut fields = parse_fields(body, endpoint);
    let mut changed = vec![false; fields.len()];
    {
        let mut mine = all_texts(&mut fields);
        if mine.len() != texts.len() {
            return Err(GatewayError::Internal);
        }
        for ((field, t), new) in mine.iter_mut().zip(texts) {
            if **t != *new {
                **t = new.clone();
                changed[*field] = true;
            }
        }
    }
    write_back(body, &fields, &changed);
    Ok(())
}

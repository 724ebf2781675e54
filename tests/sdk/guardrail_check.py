"""Guardrail endings and refusals as the official SDKs see them.

Run by tests/e2e/sdk.rs with GATEWAY and KEY (a key of a group whose guardrails block
"bluebird" in answers and secrets in requests). A blocked answer must read as an
ordinary ending (OpenAI finish_reason "content_filter", Anthropic stop_reason "refusal"),
in JSON and in streams; a blocked request as the SDKs' BadRequestError.
"""
import os
import sys

import anthropic
import openai

gateway = os.environ["GATEWAY"]
key = os.environ["KEY"]
say = {"x-mock-reply-text": "the plan is called bluebird, keep it quiet"}
secret = "sk-proj-Zx81KqPw93LmNb27VcRt64YuHs05JdFg"


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


oa = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
msgs = [{"role": "user", "content": "hi"}]
r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, extra_headers=say)
check(r.choices[0].finish_reason == "content_filter", "openai JSON: content_filter")
check("bluebird" not in (r.choices[0].message.content or ""), "openai JSON: text removed")
check(r.usage is not None and r.usage.completion_tokens > 0, "openai JSON: usage kept")

stream = oa.chat.completions.create(
    model="gpt-4o-mini", messages=msgs, stream=True, extra_headers=say
)
text, reason = "", None
for c in stream:
    if c.choices:
        text += c.choices[0].delta.content or ""
        reason = c.choices[0].finish_reason or reason
check(reason == "content_filter", "openai stream: content_filter")
check("bluebird" not in text, "openai stream: text removed")

r = oa.chat.completions.create(model="claude-sonnet-4-5", messages=msgs, extra_headers=say)
check(r.choices[0].finish_reason == "content_filter", "openai SDK, Claude model: content_filter")

try:
    oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"key {secret}"}]
    )
    check(False, "openai: a blocked request raises")
except openai.BadRequestError as e:
    check(e.code == "guardrail_blocked", "openai: BadRequestError guardrail_blocked")
    check(secret not in str(e), "openai: the error holds no secret")

an = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
m = an.messages.create(
    model="claude-sonnet-4-5", max_tokens=32, messages=msgs, extra_headers=say
)
check(m.stop_reason == "refusal", "anthropic JSON: refusal")
check(all("bluebird" not in getattr(b, "text", "") for b in m.content), "anthropic JSON: text removed")

with an.messages.stream(
    model="claude-sonnet-4-5", max_tokens=32, messages=msgs, extra_headers=say
) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check(final.stop_reason == "refusal", "anthropic stream: refusal")
check("bluebird" not in text, "anthropic stream: text removed")

m = an.messages.create(model="gpt-4o-mini", max_tokens=32, messages=msgs, extra_headers=say)
check(m.stop_reason == "refusal", "anthropic SDK, GPT model: refusal")

try:
    an.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=32,
        messages=[{"role": "user", "content": f"key {secret}"}],
    )
    check(False, "anthropic: a blocked request raises")
except anthropic.BadRequestError as e:
    check(secret not in str(e), "anthropic: BadRequestError without the secret")

print("all guardrail SDK checks passed")

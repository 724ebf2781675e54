"""The official OpenAI and Anthropic SDKs against tollgate, changed only by base_url.

Run by tests/e2e/sdk.rs with GATEWAY (http://host:port) and KEY in the environment.
Exits non-zero with a message on the first failed check.
"""
import os
import sys

import anthropic
import openai

gateway = os.environ["GATEWAY"]
key = os.environ["KEY"]


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


oa = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
r = oa.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}])
check(r.choices[0].message.content, "openai chat completion has content")
check(r.usage is not None and r.usage.prompt_tokens > 0, "openai chat completion has usage")

stream = oa.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "hello"}], stream=True
)
text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
check(len(text) > 0, "openai streamed chat completion yields text")

emb = oa.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
check(len(emb.data) == 2, "openai embeddings")

try:
    oa.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model raises")
except openai.NotFoundError as e:
    check(e.status_code == 404 and "model_not_found" in str(e), "openai SDK parses tollgate's 404")

bad = openai.OpenAI(base_url=f"{gateway}/v1", api_key="tg-wrong", max_retries=0)
try:
    bad.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    check(False, "wrong key raises")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "openai SDK raises AuthenticationError for a wrong key")

an = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
m = an.messages.create(
    model="smart", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
)
check(m.content[0].text, "anthropic message has text")
check(m.usage.input_tokens > 0, "anthropic message has usage")

with an.messages.stream(
    model="smart", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check(len(text) > 0, "anthropic streamed message yields text")
check(final.usage.output_tokens > 0, "anthropic stream reports usage")

# count_tokens (Claude Code calls it): forwarded to the Anthropic target of "smart", and
# answered by the gateway's estimate for "fast" (OpenAI-style targets only).
for model in ["smart", "fast"]:
    c = an.messages.count_tokens(
        model=model, system="be brief", messages=[{"role": "user", "content": "hello there"}]
    )
    check(c.input_tokens > 0, f"anthropic count_tokens for {model}")

try:
    anthropic.Anthropic(base_url=gateway, api_key="tg-wrong", max_retries=0).messages.create(
        model="smart", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    check(False, "wrong key raises")
except anthropic.AuthenticationError as e:
    check(e.status_code == 401, "anthropic SDK raises AuthenticationError for a wrong key")

print("all SDK checks passed")

"""The official SDKs against a model served by the *other* API (tollgate translates).

The OpenAI SDK calls "smart" (an Anthropic-style target) and the Anthropic SDK calls
"fast" (an OpenAI-style target), changed only by base_url. `x-mock-echo: 1` makes the mock
answer with a JSON summary of the request it received in its own API, so the checks see
what the translated request looked like. Run by tests/e2e/sdk.rs with GATEWAY and KEY set.
"""
import base64
import json
import os
import sys
import time

import anthropic
import openai

gateway = os.environ["GATEWAY"]
key = os.environ["KEY"]
ECHO = {"x-mock-echo": "1"}
SLOW = {"x-mock-chunk-interval-ms": "150"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nnot-really-a-png").decode()
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


# ---------------------------------------------------------------- OpenAI SDK -> Anthropic
oa = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
user = {"role": "user", "content": "hello"}

r = oa.chat.completions.create(model="smart", messages=[user])
check(r.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ", "openai->anthropic: plain chat")
check(r.model == "smart" and r.choices[0].finish_reason == "stop", "openai->anthropic: model name and finish_reason")
check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 8, "openai->anthropic: usage")

r = oa.chat.completions.create(
    model="smart", extra_headers=ECHO,
    messages=[{"role": "system", "content": "Be terse."}, user],
)
seen = json.loads(r.choices[0].message.content)
check(seen["api"] == "anthropic" and seen["system"] == "Be terse.", "openai->anthropic: system prompt")

r = oa.chat.completions.create(
    model="smart", extra_headers=ECHO,
    messages=[user, {"role": "assistant", "content": "hi there"}, {"role": "user", "content": "again"}],
)
seen = json.loads(r.choices[0].message.content)
check(seen["roles"] == ["user", "assistant", "user"] and seen["texts"] == ["hello", "hi there", "again"],
      "openai->anthropic: multi-turn history")

r = oa.chat.completions.create(
    model="smart", extra_headers=ECHO,
    messages=[{"role": "user", "content": [
        {"type": "text", "text": "what are these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}],
)
seen = json.loads(r.choices[0].message.content)
check(seen["images"] == [{"kind": "url", "url": "https://example.com/cat.jpg"},
                         {"kind": "base64", "media_type": "image/png", "bytes": len(PNG)}],
      "openai->anthropic: images by URL and base64")

tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": WEATHER_SCHEMA}}]
ask = [{"role": "user", "content": "Weather in Paris?"}]
r = oa.chat.completions.create(model="smart", messages=ask, tools=tools)
msg = r.choices[0].message
check(r.choices[0].finish_reason == "tool_calls" and msg.tool_calls, "openai->anthropic: tool call")
call = msg.tool_calls[0]
check(call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "mock-city"},
      "openai->anthropic: tool call arguments parse")
r = oa.chat.completions.create(model="smart", tools=tools, messages=ask + [
    msg.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
])
check(r.choices[0].message.content == "The tool returned: sunny, 21C", "openai->anthropic: tool result round trip")

r = oa.chat.completions.create(model="smart", messages=ask, tools=tools,
                               tool_choice={"type": "function", "function": {"name": "get_weather"}},
                               extra_headers=ECHO)
seen = json.loads(r.choices[0].message.content)
check(seen["tool_choice"] == {"type": "tool", "name": "get_weather"}, "openai->anthropic: tool_choice")

t0 = time.monotonic()
first = None
text = ""
usage = None
stream = oa.chat.completions.create(model="smart", messages=[user], stream=True,
                                    stream_options={"include_usage": True}, extra_headers=SLOW)
for c in stream:
    if c.choices and c.choices[0].delta.content:
        if first is None:
            first = time.monotonic()
        text += c.choices[0].delta.content
    if c.usage is not None:
        usage = c.usage
end = time.monotonic()
check(text == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ", "openai->anthropic: streamed text")
check(first is not None and end - first > 0.6, f"openai->anthropic: deltas arrive incrementally ({end - first:.2f}s after the first)")
check(usage is not None and usage.completion_tokens == 8 and usage.prompt_tokens > 0,
      "openai->anthropic: include_usage chunk")

stream = oa.chat.completions.create(model="smart", messages=[user], stream=True)
check(all(c.usage is None for c in stream), "openai->anthropic: no usage chunk unless asked")

args = ""
name = None
n_frags = 0
for c in oa.chat.completions.create(model="smart", messages=ask, tools=tools, stream=True):
    for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
        name = name or tc.function.name
        if tc.function.arguments:
            args += tc.function.arguments
            n_frags += 1
check(name == "get_weather" and n_frags >= 2 and json.loads(args) == {"city": "mock-city"},
      "openai->anthropic: streamed tool call arguments")

r = oa.chat.completions.create(model="smart", messages=[user], stop=["tok3"])
check(r.choices[0].message.content == "tok0 tok1 tok2 " and r.choices[0].finish_reason == "stop",
      "openai->anthropic: stop sequence")

for field, extra in [("n", {"n": 2}), ("logprobs", {"logprobs": True})]:
    try:
        oa.chat.completions.create(model="smart", messages=[user], **extra)
        check(False, f"{field} refused")
    except openai.BadRequestError as e:
        check(e.code == "unsupported_parameter" and e.param == field, f"openai->anthropic: {field} -> 400 unsupported_parameter")

for status, exc in [(400, openai.BadRequestError), (429, openai.RateLimitError), (529, openai.InternalServerError)]:
    try:
        oa.chat.completions.create(model="smart", messages=[user], extra_headers={"x-mock-status": str(status)})
        check(False, f"upstream {status} raises")
    except exc as e:
        check(e.message and f"mock error {status}" in e.message, f"openai->anthropic: upstream {status} -> {e.status_code} in OpenAI shape")

# ---------------------------------------------------------------- Anthropic SDK -> OpenAI
an = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
m = an.messages.create(model="fast", max_tokens=64, messages=[user])
check(m.content[0].text == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ", "anthropic->openai: plain message")
check(m.model == "fast" and m.stop_reason == "end_turn", "anthropic->openai: model name and stop_reason")
check(m.usage.input_tokens > 0 and m.usage.output_tokens == 8, "anthropic->openai: usage")

m = an.messages.create(model="fast", max_tokens=64, system="Be terse.", messages=[user], extra_headers=ECHO)
seen = json.loads(m.content[0].text)
check(seen["api"] == "openai" and seen["system"] == "Be terse." and seen["max_tokens"] == 64,
      "anthropic->openai: system prompt and max_tokens")

m = an.messages.create(model="fast", max_tokens=64, extra_headers=ECHO, messages=[
    user, {"role": "assistant", "content": "hi there"}, {"role": "user", "content": "again"}])
seen = json.loads(m.content[0].text)
check(seen["roles"] == ["user", "assistant", "user"] and seen["texts"] == ["hello", "hi there", "again"],
      "anthropic->openai: multi-turn history")

m = an.messages.create(model="fast", max_tokens=64, extra_headers=ECHO, messages=[{"role": "user", "content": [
    {"type": "text", "text": "what are these?"},
    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
]}])
seen = json.loads(m.content[0].text)
check(seen["images"] == [{"kind": "url", "url": "https://example.com/cat.jpg"},
                         {"kind": "base64", "media_type": "image/png", "bytes": len(f"image/png;base64,{PNG}")}],
      "anthropic->openai: images by URL and base64")

atools = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA}]
ask = [{"role": "user", "content": "Weather in Paris?"}]
m = an.messages.create(model="fast", max_tokens=64, messages=ask, tools=atools)
uses = [b for b in m.content if b.type == "tool_use"]
check(m.stop_reason == "tool_use" and uses and uses[0].name == "get_weather" and uses[0].input == {"city": "mock-city"},
      "anthropic->openai: tool_use block")
m2 = an.messages.create(model="fast", max_tokens=64, tools=atools, messages=ask + [
    {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 21C"}]},
])
check(m2.content[0].text == "The tool returned: sunny, 21C" and m2.stop_reason == "end_turn",
      "anthropic->openai: tool result round trip")

m = an.messages.create(model="fast", max_tokens=64, messages=ask, tools=atools, extra_headers=ECHO,
                       tool_choice={"type": "any"})
seen = json.loads(m.content[0].text)
check(seen["tool_choice"] == "required", "anthropic->openai: tool_choice")

first = None
with an.messages.stream(model="fast", max_tokens=64, messages=[user], extra_headers=SLOW) as s:
    text = ""
    for t in s.text_stream:
        if first is None:
            first = time.monotonic()
        text += t
    end = time.monotonic()
    final = s.get_final_message()
check(text == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ", "anthropic->openai: messages.stream text")
check(first is not None and end - first > 0.6, f"anthropic->openai: deltas arrive incrementally ({end - first:.2f}s after the first)")
check(final.usage.output_tokens == 8 and final.usage.input_tokens > 0 and final.stop_reason == "end_turn",
      "anthropic->openai: stream final message usage")

with an.messages.stream(model="fast", max_tokens=64, messages=ask, tools=atools) as s:
    partial = [e.partial_json for e in s if e.type == "input_json"]
    final = s.get_final_message()
uses = [b for b in final.content if b.type == "tool_use"]
check(len(partial) >= 2 and uses and uses[0].input == {"city": "mock-city"} and final.stop_reason == "tool_use",
      "anthropic->openai: streamed tool_use input")

m = an.messages.create(model="fast", max_tokens=64, messages=[user], stop_sequences=["tok3"])
check(m.content[0].text == "tok0 tok1 tok2 " and m.stop_reason in ("end_turn", "stop_sequence"),
      "anthropic->openai: stop sequence")

for status, exc in [(400, anthropic.BadRequestError), (429, anthropic.RateLimitError), (503, anthropic.OverloadedError)]:
    try:
        an.messages.create(model="fast", max_tokens=8, messages=[user], extra_headers={"x-mock-status": str(status)})
        check(False, f"upstream {status} raises")
    except exc as e:
        check(e.body["type"] == "error" and f"mock error {status}" in e.message,
              f"anthropic->openai: upstream {status} -> {e.status_code} in Anthropic shape")

try:
    an.messages.create(model="fast", max_tokens=8, messages=[user], top_k=5)
    check(False, "top_k refused")
except anthropic.BadRequestError as e:
    check("top_k" in e.message, "anthropic->openai: top_k -> 400 unsupported_parameter")

print("all translation SDK checks passed")

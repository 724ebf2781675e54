-- wrk script: the same chat completion, to a model served by an Anthropic-style target (translated).
wrk.method = "POST"
wrk.body = '{"model":"claude-load","max_tokens":16,"messages":[{"role":"user","content":"hello, how are you today?"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer tg-LoadTestKeyLoadTestKeyLoadTestKey00000000"

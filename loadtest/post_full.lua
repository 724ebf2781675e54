-- wrk script: one small chat completion per request, from a key whose group logs at `full`.
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hello, how are you today?"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer tg-LoadTestKeyFullLogFullLogFullLog00000000"

#!/usr/bin/env bash
# Streaming time to first byte with and without response guardrails, in one run against one
# tollgate: loadtest/gen_policy.py's policy with GUARDS=response (the pii (redact), secrets
# and injection guardrails on requests and answers of org0; org1 has none). Key tg-load-0 is
# in grp0 (org0, guarded), tg-load-1 in grp1 (org1, plain). ROUNDS rounds of N sequential
# streamed chat requests per key, alternating, against `tollgate mock` streaming 20 words.
#   cargo build --release; bash loadtest/guardrails.sh
set -u
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4}; N=${N:-150}
BIN=target/release/tollgate
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port); TG=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" mock --listen "127.0.0.1:$UP" >/dev/null 2>&1 & pids+=($!)
GUARDS=response python3 loadtest/gen_policy.py 100 "127.0.0.1:$TG" "$work/data" \
  | sed "s#127.0.0.1:18181#127.0.0.1:$UP#" > "$work/policy.toml"
RUST_LOG=warn "$BIN" -c "$work/policy.toml" > "$work/tg.log" 2>&1 & pids+=($!)
for _ in $(seq 300); do curl -s -o /dev/null "127.0.0.1:$TG/" && break; sleep 0.1; done
sbody='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Write to jane.doe@example.com about the invoice, card 4111 1111 1111 1111, and say hello"}]}'
one() { # key -> N lines "ttfb total" in seconds
  for _ in $(seq "$N"); do
    curl -s -o /dev/null -w '%{time_starttransfer} %{time_total}\n' -X POST \
      "http://127.0.0.1:$TG/v1/chat/completions" -H "Authorization: Bearer $1" \
      -H 'content-type: application/json' -H 'x-mock-output-tokens: 20' -d "$sbody"
  done
}
one tg-load-0 >/dev/null; one tg-load-1 >/dev/null   # warm-up
: > "$work/guarded"; : > "$work/plain"
for _ in $(seq "$ROUNDS"); do
  one tg-load-1 >> "$work/plain"; one tg-load-0 >> "$work/guarded"
done
summary='import sys; r=[tuple(map(float,l.split())) for l in open(sys.argv[1])]; a=sorted(x[0] for x in r); b=sorted(x[1] for x in r); q=lambda v,f: v[min(len(v)-1,int(len(v)*f))]*1e3; print("n=%d ttfb p50=%.3fms p99=%.3fms  total p50=%.3fms p99=%.3fms" % (len(r), q(a,.5), q(a,.99), q(b,.5), q(b,.99)))'
echo "## streaming time to first byte, $ROUNDS x $N sequential requests per key, alternating"
echo "without response guardrails: $(python3 -c "$summary" "$work/plain")"
echo "with pii+secrets+injection on the answer: $(python3 -c "$summary" "$work/guarded")"

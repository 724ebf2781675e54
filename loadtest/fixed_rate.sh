#!/usr/bin/env bash
# Latency at a fixed 2k req/s (oha, latency-corrected) direct to the mock provider and through
# tollgate (10k keys, every limit on, request log to a file: loadtest/gen_policy.py), streaming
# time to first byte (curl, 300 sequential streamed requests each), and tollgate's RSS.
# When loadtest/bare-pingora has been built (loadtest/perf.sh builds it), the bare Pingora proxy
# is measured at the same rate too: what any Pingora proxy adds on this machine.
# PIN=1 (the default on a machine with 2+ cores) runs the load generator on CPU 0 and the
# servers (mock, tollgate, bare Pingora) on CPU 1, so that oha's threads do not preempt the
# proxy under test (what a separate load-generating host gives); PIN=0 lets them share.
#   cargo install oha; cargo build --release; bash loadtest/fixed_rate.sh [RATE] [SECONDS]
set -u
cd "$(dirname "$0")/.."
RATE=${1:-2000}; SECS=${2:-15}
BIN=target/release/tollgate
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then LOAD="taskset -c 0"; SERVE="taskset -c 1"; else LOAD=; SERVE=; fi
work=$(mktemp -d)
# The previous run's servers may still hold the ports for a moment.
for _ in $(seq 100); do ss -ltnH | grep -qE ':(18181|18190|18080|18081) ' || break; sleep 0.1; done
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
$SERVE "$BIN" mock --listen 127.0.0.1:18181 >/dev/null 2>&1 & pids+=($!)
python3 loadtest/gen_policy.py 10000 127.0.0.1:18190 "$work/data" \
  | sed "s#request_log = \"off\"#request_log = \"$work/requests.jsonl\"#" > "$work/policy.toml"
RUST_LOG=warn $SERVE "$BIN" -c "$work/policy.toml" > "$work/tg.log" 2>&1 & pids+=($!); TG=$!
for _ in $(seq 300); do curl -s -o /dev/null 127.0.0.1:18190/ && break; sleep 0.1; done
BARE=target/bare-pingora/release/bare-pingora
if [ -x "$BARE" ]; then # listens on 18080, proxies to 18081 (its defaults)
  $SERVE "$BIN" mock --listen 127.0.0.1:18081 >/dev/null 2>&1 & pids+=($!)
  printf 'version: 1\nthreads: 1\nwork_stealing: false\npid_file: %s/bp.pid\nupgrade_sock: %s/bp.sock\n' "$work" "$work" > "$work/bp.yaml"
  $SERVE "$BARE" -c "$work/bp.yaml" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18080/ && break; sleep 0.1; done
fi
body='{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
sbody='{"model":"gpt-4o-mini","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
rate() { # url -> p50 p99 p99.9 in ms
  $LOAD oha --no-tui --latency-correction -q "$RATE" -z "${SECS}s" -c 32 -m POST -T application/json \
      -H "Authorization: Bearer tg-load-7" -d "$body" --output-format json "$1" 2>/dev/null \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; s=d["summary"]; print("rps=%.0f p50=%.3fms p99=%.3fms p99.9=%.3fms ok=%s" % (s["requestsPerSec"], p["p50"]*1e3, p["p99"]*1e3, p["p99.9"]*1e3, d.get("statusCodeDistribution")))'
}
ttfb() { # url -> median / p99 time to first byte and total, ms, of streamed requests
  for _ in $(seq 300); do
    curl -s -o /dev/null -w '%{time_starttransfer} %{time_total}\n' -X POST "$1" \
      -H "Authorization: Bearer tg-load-7" -H 'content-type: application/json' -d "$sbody"
  done | python3 -c 'import sys; r=[tuple(map(float,l.split())) for l in sys.stdin]; a=sorted(x[0] for x in r); b=sorted(x[1] for x in r); q=lambda v,f: v[min(len(v)-1,int(len(v)*f))]*1e3; print("ttfb p50=%.3fms p99=%.3fms  total p50=%.3fms p99=%.3fms" % (q(a,.5), q(a,.99), q(b,.5), q(b,.99)))'
}
oha --no-tui -z 3s -c 8 -m POST -T application/json -H "Authorization: Bearer tg-load-7" -d "$body" http://127.0.0.1:18190/v1/chat/completions >/dev/null 2>&1
echo "## fixed rate $RATE req/s for ${SECS}s, 32 connections (oha --latency-correction), PIN=${PIN:-1}"
echo "direct:   $(rate http://127.0.0.1:18181/v1/chat/completions)"
echo "tollgate: $(rate http://127.0.0.1:18190/v1/chat/completions)"
[ -x "$BARE" ] && echo "bare Pingora: $(rate http://127.0.0.1:18080/v1/chat/completions)"
echo "## streaming (300 sequential requests)"
echo "direct:   $(ttfb http://127.0.0.1:18181/v1/chat/completions)"
echo "tollgate: $(ttfb http://127.0.0.1:18190/v1/chat/completions)"
echo "tollgate RSS: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$TG/status); request-log lines: $(wc -l < "$work/requests.jsonl")"

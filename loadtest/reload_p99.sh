#!/usr/bin/env bash
# Data-plane latency while the policy is reloaded: a 100k-key policy file (loadtest/gen_policy.py),
# wrk at a steady 8 connections for 25 s without reloads, then 25 s with 20 SIGHUPs (one a second).
# Also times validate+load of 10k / 100k / 1M-key files (`tollgate -t`) with their peak RSS.
#   bash loadtest/reload_p99.sh [KEYS]      (release build first: cargo build --release)
set -u
cd "$(dirname "$0")/.."
KEYS=${1:-100000}
BIN=target/release/tollgate
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
echo "## config load (tollgate -t: read, parse, validate, summary)"
for n in 10000 100000 1000000; do
  python3 loadtest/gen_policy.py "$n" > "$work/p$n.toml"
  /usr/bin/time -f "%U %S %e %M" "$BIN" -t -c "$work/p$n.toml" >/dev/null 2>"$work/t$n" || true
  read -r u s e m < <(tail -1 "$work/t$n")
  echo "keys=$n cpu_s=$(echo "$u + $s" | bc) wall_s=$e max_rss_mib=$((m / 1024))"
  rm -f "$work/p$n.toml"
done
"$BIN" mock --listen 127.0.0.1:18181 >/dev/null 2>&1 & pids+=($!)
python3 loadtest/gen_policy.py "$KEYS" 127.0.0.1:18190 "$work/data" > "$work/policy.toml"
RUST_LOG=info "$BIN" -c "$work/policy.toml" > "$work/tg.log" 2>&1 & pids+=($!); TG=$!
for _ in $(seq 600); do curl -s -o /dev/null 127.0.0.1:18190/ && break; sleep 0.1; done
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer tg-load-7"
LUA
lat() { awk '$1=="50%"{p50=$2} $1=="99%"{p99=$2} /Latency/ && $2 ~ /s$/ {max=$4} /Requests\/sec/{rps=$2} /Non-2xx/{bad=$NF} END{print "rps=" rps " p50=" p50 " p99=" p99 " max=" max " non2xx=" (bad?bad:0)}'; }
wrk -t1 -c8 -d3s -s "$work/post.lua" http://127.0.0.1:18190/v1/chat/completions >/dev/null
echo "## $KEYS keys, wrk -t1 -c8 -d25s"
echo "no reloads:  $(wrk -t1 -c8 -d25s --latency -s "$work/post.lua" http://127.0.0.1:18190/v1/chat/completions | lat)"
# Another key for the second run: at ~25k req/s one key reaches its own rpm (1M) within the
# minute, and 429s would pass for latency.
sed 's/tg-load-7/tg-load-8/' "$work/post.lua" > "$work/post8.lua"
( sleep 2; for _ in $(seq 20); do kill -HUP "$TG"; sleep 1; done ) & HUPS=$!
echo "20 reloads:  $(wrk -t1 -c8 -d25s --latency -s "$work/post8.lua" http://127.0.0.1:18190/v1/chat/completions | lat)"
wait "$HUPS"; sleep 2
echo "reloads logged: $(grep -c 'config.reloaded' "$work/tg.log")"
grep -E "policy reloaded" "$work/tg.log" | tail -3

#!/usr/bin/env bash
# Whole-system load test, everything on loopback: the mock provider called directly, through
# a bare Pingora proxy (examples/bare_proxy.rs) and through tollgate (every admission
# layer on), side by side in one run. Reports requests/s, p50/p99 latency and CPU time
# per request of the proxy process (from /proc/PID/stat). Results: loadtest/results/latest.md
#
#   bash loadtest/run.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-32}
bash scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin tollgate --example bare_proxy
BIN=target/release/tollgate
rm -rf target/loadtest-data
pids=()
# SIGKILL: Pingora would otherwise sit out its graceful-shutdown period.
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
$BIN mock --listen 127.0.0.1:18181 >/dev/null & pids+=($!); MOCK=$!
target/release/examples/bare_proxy 127.0.0.1:18182 127.0.0.1:18181 >/dev/null 2>&1 & pids+=($!); BARE=$!
RUST_LOG=warn $BIN -c loadtest/gateway.toml >/dev/null 2>&1 & pids+=($!); GW=$!
# The same policy with a request log file, on :18183: metadata vs full log level.
LOGDIR=target/loadtest-log; rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
sed -e 's/127.0.0.1:18180/127.0.0.1:18183/' -e "s#^data_dir = .*#data_dir = \"$LOGDIR/data\"#" \
    -e "s#^request_log = .*#request_log = \"$LOGDIR/requests.log\"#" \
    -e 's#tollgate-loadtest\.#tollgate-loadtest-log.#' loadtest/gateway.toml > "$LOGDIR/gateway.toml"
RUST_LOG=warn $BIN -c "$LOGDIR/gateway.toml" >/dev/null 2>&1 & pids+=($!); GWLOG=$!
for port in 18181 18182 18180 18183; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in ticks

run() { # name url proxy_pid [wrk script]
  local name=$1 url=$2 pid=$3 script=${4:-loadtest/post.lua}
  wrk -t2 -c"$CONN" -d2s -s "$script" "$url" >/dev/null   # warm-up
  local c0 m0; c0=$(cpu "$pid"); m0=$(cpu "$MOCK")
  local out; out=$(wrk -t2 -c"$CONN" -d"${DUR}s" --latency -s "$script" "$url")
  local c1 m1; c1=$(cpu "$pid"); m1=$(cpu "$MOCK")
  local reqs rps p50 p99 non2xx
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  local proxy_us mock_us
  proxy_us=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" -v t="$TCK" 'BEGIN { if ('"$pid"' == '"$MOCK"') print "-"; else printf "%.1f", (b-a)/t*1e6/n }')
  mock_us=$(awk -v a="$m0" -v b="$m1" -v n="$reqs" -v t="$TCK" 'BEGIN { printf "%.1f", (b-a)/t*1e6/n }')
  printf "| %-22s | %9s | %8s | %8s | %14s | %13s | %s |\n" "$name" "$rps" "$p50" "$p99" "$proxy_us" "$mock_us" "${non2xx:-0}"
}

{
  echo "# Load test $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); loopback; wrk -t2 -c$CONN -d${DUR}s; body: small chat completion (loadtest/post.lua)"
  echo "All processes share the machine's cores with wrk: compare ratios, not absolute numbers."
  echo
  echo "| path                   | req/s     | p50      | p99      | proxy CPU µs/req | mock CPU µs/req | non-2xx |"
  echo "|------------------------|-----------|----------|----------|------------------|-----------------|---------|"
  run "direct to mock" "http://127.0.0.1:18181/v1/chat/completions" "$MOCK"
  run "bare Pingora proxy" "http://127.0.0.1:18182/v1/chat/completions" "$BARE"
  run "tollgate (all layers)" "http://127.0.0.1:18180/v1/chat/completions" "$GW"
  run "tollgate chat->Anthropic" "http://127.0.0.1:18180/v1/chat/completions" "$GW" loadtest/post_translate.lua
  run "tollgate log=metadata" "http://127.0.0.1:18183/v1/chat/completions" "$GWLOG"
  run "tollgate log=full" "http://127.0.0.1:18183/v1/chat/completions" "$GWLOG" loadtest/post_full.lua
} | tee loadtest/results/latest.md

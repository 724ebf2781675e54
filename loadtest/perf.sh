#!/usr/bin/env bash
# CPU per request, side by side: tollgate vs a bare Pingora 0.9.1 proxy, both in front of one
# nginx mock provider, in one run. Prints the median ratio tollgate / bare Pingora last and
# exits 0 when it is <= MAX_RATIO (default 1.10).
#
#   bash loadtest/perf.sh                 (from anywhere in the checkout)
#
# What runs (all on loopback, ports picked free):
#   - nginx: the mock provider (a fixed 235-byte chat completion) and, for reference only,
#     an nginx proxy_pass in front of it (its CPU cannot be told apart from the mock's);
#   - loadtest/bare-pingora: stock Pingora 0.9.1, one upstream_peer, 1 thread, no work
#     stealing, mimalloc;
#   - tollgate (release build) on loadtest/gen_policy.py's policy: KEYS keys in 20 groups over
#     2 orgs, every limit type (rpm, rph, rpd, tpm, tpd, max_parallel, a monthly budget, a
#     monthly token_budget, model_limits with a pattern the requests fall in) on all three
#     layers and never hit, `latency` routing over two targets, the request log to
#     a file, threads = 1, the provider key injected upstream.
# wrk (1 thread, 32 connections) against each; bare Pingora and tollgate alternate for ROUNDS
# rounds of DUR each; CPU per request = (user + system time of the proxy process, all its
# threads, from /proc/PID/stat) / requests completed.
#
# Knobs (environment): KEYS (10000), LOG=file|off (file), LIMITS=all|basic|none (all: also a
# token_budget and model_limits on every layer; basic: without those two), ROUNDS (5),
# DUR (4s), MAX_RATIO (1.10), WORK_STEALING=true (tollgate on Pingora's work-stealing runtime),
# GUARDS=on (the pii, secrets and injection guardrails on every request),
# EXPORT=on (two log sinks on every line: s3 to a moto_server from .venv started here, and
# http to the nginx mock; EXPORT=s3: the s3 sink only),
# KEEP=1 keeps the work directory.
# Installs what it needs from Debian's packages when missing (scripts/setup.sh, nginx, wrk, bc).
set -u
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-perf.XXXXXX")
KEYS=${KEYS:-10000}; LOG=${LOG:-file}; LIMITS=${LIMITS:-all}
ROUNDS=${ROUNDS:-5}; DUR=${DUR:-4s}; MAX_RATIO=${MAX_RATIO:-1.10}

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  echo "perf.sh: installing $2" >&2
  $SUDO apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null 2>&1
  command -v "$1" >/dev/null 2>&1 || { echo "perf.sh: cannot install $2" >&2; exit 1; }
}
bash scripts/setup.sh || exit 1    # cmake and a C compiler for the Pingora build, python3
need nginx nginx; need wrk wrk; need bc bc; need curl curl
# nginx may live in /usr/sbin, outside a user's PATH.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

pids=()
cleanup() {
  for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port); PX=$(port); BP=$(port); TG=$(port); ADM=$(port)

# --- nginx: the mock provider, and nginx proxy_pass for reference ---------------------------
body='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}'
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NG
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream mock { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$body'; } }
  server { listen 127.0.0.1:$PX; location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NG
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" || { echo "nginx did not start"; exit 1; }

# --- builds -----------------------------------------------------------------------------------
echo "building tollgate and the bare Pingora proxy (release; several minutes the first time)" >&2
cargo build --release --quiet --bin tollgate || { echo "tollgate build failed"; exit 1; }
cargo build --release --quiet --manifest-path loadtest/bare-pingora/Cargo.toml \
  --target-dir target/bare-pingora || { echo "bare-pingora build failed"; exit 1; }

# --- the bare Pingora proxy -------------------------------------------------------------------
printf 'version: 1\nthreads: 1\nwork_stealing: false\npid_file: %s/bp.pid\nupgrade_sock: %s/bp.sock\n' \
  "$work" "$work" > "$work/bp.yaml"
BARE_LISTEN=127.0.0.1:$BP BARE_UPSTREAM=127.0.0.1:$UP \
  target/bare-pingora/release/bare-pingora -c "$work/bp.yaml" > "$work/bp.log" 2>&1 &
pids+=($!); BPPID=$!

# --- tollgate on the load-test policy ---------------------------------------------------------
EXPORT=${EXPORT:-off}
if [ "$EXPORT" != off ]; then
  [ -x .venv/bin/moto_server ] || bash scripts/setup-sdk.sh || exit 1
  S3P=$(port)
  .venv/bin/moto_server -H 127.0.0.1 -p "$S3P" > "$work/moto.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf -X PUT "http://127.0.0.1:$S3P/tollgate-logs" >/dev/null && break; sleep 0.2; done
  export EXPORT_S3="http://127.0.0.1:$S3P" EXPORT_HTTP="http://127.0.0.1:$UP/ingest"
  export TG_S3_ID=perf TG_S3_SECRET=perf-secret
fi
LIMITS=$LIMITS EXPORT=$EXPORT python3 loadtest/gen_policy.py "$KEYS" "127.0.0.1:$TG" "$work/data" > "$work/tollgate.toml" || exit 1
if [ "$LOG" = file ]; then log="$work/requests.jsonl"; else log=off; fi
sed -i -e "s#^request_log = .*#request_log = \"$log\"#" \
       -e "s#^listen = .*#&\nadmin_listen = \"127.0.0.1:$ADM\"\nadmin_token_env = \"TG_ADMIN\"#" \
       -e "s#^base_url = \"http://127.0.0.1:18181\"#base_url = \"http://127.0.0.1:$UP\"\napi_key_env = \"TG_PROVIDER\"#" \
       "$work/tollgate.toml"
if [ "${WORK_STEALING:-false}" = true ]; then
  sed -i -e 's#^threads = 1#&\nwork_stealing = true#' "$work/tollgate.toml"
fi
if [ "$LIMITS" = none ]; then
  sed -i -E '/^(rpm|rph|rpd|tpm|tpd|max_parallel|budget_usd|budget_period|token_budget|token_budget_period|model_limits) = /d' "$work/tollgate.toml"
fi
target/release/tollgate -t -c "$work/tollgate.toml" > /dev/null || exit 1
KEY=tg-load-0      # gen_policy.py: key k's secret is tg-load-k
TG_ADMIN=adm TG_PROVIDER=sk-up target/release/tollgate -c "$work/tollgate.toml" > "$work/tg.log" 2>&1 &
pids+=($!); TGPID=$!

for p in "$BP" "$TG"; do
  for _ in $(seq 1200); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
req='{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
for p in "$BP" "$TG"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$p/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$req")
  [ "$code" = 200 ] || { echo "port $p answered $code, not 200"; tail -5 "$work/tg.log" "$work/bp.log"; exit 1; }
done
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body   = '$req'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA

# --- measuring --------------------------------------------------------------------------------
TCK=$(getconf CLK_TCK)
# utime + stime of the whole process (every thread, live or exited), in clock ticks.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
measure() { # port [pid] -> "req/s p50 p99 cpu_us_per_req non2xx"
  local port=$1 pid=${2:-} t0=0 t1=0 out reqs cpu non2xx
  [ -n "$pid" ] && t0=$(ticks "$pid")
  out=$(wrk -t1 -c32 -d"$DUR" --latency -s "$work/post.lua" "http://127.0.0.1:$port/v1/chat/completions" 2>&1)
  [ -n "$pid" ] && t1=$(ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  if [ -n "$pid" ] && [ "${reqs:-0}" -gt 0 ]; then
    cpu=$(echo "($t1 - $t0) * 1000000 / $TCK / $reqs" | bc -l | awk '{printf "%.2f", $1}')
  else
    cpu=-
  fi
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="50%" {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}') $cpu ${non2xx:-0}"
}
# A short warm-up of each proxy (connection pools, allocator), not counted.
DUR=2s measure "$BP" > /dev/null; DUR=2s measure "$TG" > /dev/null

echo "machine: $(nproc) cores; wrk -t1 -c32 -d$DUR; KEYS=$KEYS LOG=$LOG LIMITS=$LIMITS WORK_STEALING=${WORK_STEALING:-false} GUARDS=${GUARDS:-off} EXPORT=$EXPORT"
echo "system rps p50 p99 cpu_us_per_req non2xx"
echo "direct $(measure "$UP")"
echo "nginx $(measure "$PX")"
ratios=(); bs=(); ts=()
for r in $(seq "$ROUNDS"); do
  b=$(measure "$BP" "$BPPID"); echo "bare-pingora $b"
  t=$(measure "$TG" "$TGPID"); echo "tollgate $t"
  bc_=$(echo "$b" | awk '{print $4}'); tc_=$(echo "$t" | awk '{print $4}')
  [ "$bc_" = - ] || [ "$tc_" = - ] && { echo "a round completed no request"; exit 1; }
  [ "$(echo "$t" | awk '{print $5}')" = 0 ] || echo "warning: tollgate answered non-2xx in round $r (see $work/tg.log; KEEP=1)"
  bs+=("$bc_"); ts+=("$tc_"); ratios+=("$(echo "$tc_ / $bc_" | bc -l)")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
ratio=$(med "${ratios[@]}" | awk '{printf "%.3f", $1}')
echo "per-round ratios: $(printf '%.3f ' "${ratios[@]}")"
echo "tollgate/bare-pingora CPU per request (median of $ROUNDS alternating rounds): $ratio (tollgate median $(med "${ts[@]}") us, bare median $(med "${bs[@]}") us)"
if [ "$EXPORT" != off ]; then
  # The export's work (writer thread, delivery tasks) is in the CPU above: same process.
  echo "log sinks: $(curl -s -H "Authorization: Bearer adm" "http://127.0.0.1:$ADM/v1/log_sinks")"
fi
awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r <= m) }'

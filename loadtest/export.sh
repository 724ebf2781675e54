#!/usr/bin/env bash
# Log export throughput: N request-log lines (default 1 000 000) through the s3 sink to an
# S3-compatible store on loopback (moto_server from .venv, see scripts/setup-sdk.sh), then
# waits until every line is delivered and counts them in the store. Prints the load's rate,
# the export's throughput (lines delivered per second, from the first request to the last
# line in the store), drops, and the lines and distinct request ids found in the objects.
#
#   bash loadtest/export.sh                        (release build; N=1000000)
#   N=5000 BIN=target/debug/tollgate bash loadtest/export.sh     (a quick check)
#
# Knobs: N (1000000), BIN (default: builds target/release/tollgate), CONNS (32),
# MAX_WAIT (the sink's batch.max_wait, "1s"), KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/.." || exit 1
N=${N:-1000000}; CONNS=${CONNS:-32}; MAX_WAIT=${MAX_WAIT:-1s}
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-export.XXXXXX")
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need() {
  command -v "$1" >/dev/null 2>&1 && return
  $SUDO apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null 2>&1
  command -v "$1" >/dev/null 2>&1 || { echo "export.sh: cannot install $2" >&2; exit 1; }
}
need nginx nginx; need wrk wrk; need curl curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x .venv/bin/moto_server ] || bash scripts/setup-sdk.sh || exit 1

pids=()
cleanup() {
  for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port); TG=$(port); ADM=$(port); S3P=$(port)

body='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}'
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<NG
worker_processes 1;
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
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$body'; } }
}
NG
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" || { echo "nginx did not start"; exit 1; }

.venv/bin/moto_server -H 127.0.0.1 -p "$S3P" > "$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -sf -X PUT "http://127.0.0.1:$S3P/tollgate-logs" >/dev/null && break; sleep 0.2; done

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin tollgate || { echo "tollgate build failed"; exit 1; }
  BIN=target/release/tollgate
fi

EXPORT=s3 EXPORT_S3="http://127.0.0.1:$S3P" \
  python3 loadtest/gen_policy.py 20 "127.0.0.1:$TG" "$work/data" > "$work/tollgate.toml" || exit 1
sed -i -E -e "s#^listen = .*#&\nadmin_listen = \"127.0.0.1:$ADM\"\nadmin_token_env = \"TG_ADMIN\"#" \
       -e "s#^base_url = \"http://127.0.0.1:18181\"#base_url = \"http://127.0.0.1:$UP\"#" \
       -e "s#^secret_key_env = \"TG_S3_SECRET\"#&\nbatch = { max_wait = \"$MAX_WAIT\" }#" \
       -e '/^(rpm|rph|rpd|tpm|tpd|max_parallel|budget_usd|budget_period) = /d' \
       -e 's#^threads = 1#threads = 2#' "$work/tollgate.toml"
export TG_S3_ID=load TG_S3_SECRET=load-secret TG_ADMIN=adm
"$BIN" -t -c "$work/tollgate.toml" > /dev/null || exit 1
RUST_LOG=warn "$BIN" -c "$work/tollgate.toml" > "$work/tg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADM/healthz" >/dev/null && break; sleep 0.1; done

per=$(( (N + 1) / 2 ))
cat > "$work/count.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer tg-load-0"
local n = 0
response = function(status, headers, body)
  n = n + 1
  if n >= $per then wrk.thread:stop() end
end
LUA
sinks() { curl -s -H "Authorization: Bearer adm" "http://127.0.0.1:$ADM/v1/log_sinks"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['data'][0]['$1'])"; }
requests() {
  curl -s -H "Authorization: Bearer adm" "http://127.0.0.1:$ADM/metrics" \
    | awk '/^tollgate_requests_total\{/ {s += $NF} END {printf "%d", s}'
}
t0=$(date +%s.%N)
# Each wrk thread stops sending after its share, but wrk itself runs until -d: stop it.
wrk -t2 -c"$CONNS" -d3600s -s "$work/count.lua" "http://127.0.0.1:$TG/v1/chat/completions" > "$work/wrk.txt" &
wrkpid=$!
while [ "$(requests)" -lt "$N" ]; do sleep 0.2; done
sleep 0.5; kill "$wrkpid" 2>/dev/null; wait "$wrkpid" 2>/dev/null
t1=$(date +%s.%N)
sent=$(requests)
echo "load: $sent requests in $(echo "$t1 - $t0" | bc -l | awk '{printf "%.1f", $1}') s"
# Every line delivered (or dropped).
while :; do
  s=$(sinks); d=$(echo "$s" | field delivered); x=$(echo "$s" | field dropped)
  [ $((d + x)) -ge "$sent" ] && break
  sleep 0.2
done
t2=$(date +%s.%N)
echo "sink: $(sinks)"
echo "export: $d lines delivered, $x dropped, $(echo "$d / ($t2 - $t0)" | bc -l | awk '{printf "%.0f", $1}') lines/s from the first request to the last line in the store ($(echo "$t2 - $t1" | bc -l | awk '{printf "%.1f", $1}') s after the load ended)"
.venv/bin/python - "$S3P" <<'PY'
import boto3, gzip, json, sys
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="load", aws_secret_access_key="load-secret")
lines, ids, objects = 0, set(), 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="tollgate-logs"):
    for o in page.get("Contents", []):
        objects += 1
        body = gzip.decompress(s3.get_object(Bucket="tollgate-logs", Key=o["Key"])["Body"].read())
        for l in body.splitlines():
            lines += 1
            ids.add(json.loads(l)["request_id"])
print(f"store: {objects} objects, {lines} lines, {len(ids)} distinct request ids")
PY

#!/usr/bin/env bash
# Time to listen and peak RSS (VmHWM once the port answers) of the gateway starting with many keys.
#   bash loadtest/startup_rss.sh file  [KEYS] [RUNS]   KEYS keys in the policy file (gen_policy.py)
#   bash loadtest/startup_rss.sh store [KEYS] [RUNS]   KEYS API keys in the store under data_dir
# Build first: cargo build --release (and for `store`: cargo build --release --example store_load).
# STORE_DIR=dir reuses a store filled earlier (`store_load fill dir N`: ~15 s and ~0.9 GB for 1M).
set -u
cd "$(dirname "$0")/.."
MODE=${1:-file}; KEYS=${2:-1000000}; RUNS=${3:-3}
BIN=target/release/tollgate
PORT=18490
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
case "$MODE" in
  file)
    python3 loadtest/gen_policy.py "$KEYS" "127.0.0.1:$PORT" "$work/data" > "$work/policy.toml"
    /usr/bin/time -f "%e %M" "$BIN" -t -c "$work/policy.toml" >/dev/null 2>"$work/t" || true
    read -r e m < <(tail -1 "$work/t")
    echo "tollgate -t: wall_s=$e max_rss_mib=$((m / 1024))"
    ;;
  store)
    data=${STORE_DIR:-$work/store}
    [ -d "$data/ledger" ] || target/release/examples/store_load fill "$data" "$KEYS"
    cat > "$work/policy.toml" <<EOF
[server]
listen = ["127.0.0.1:$PORT"]
data_dir = "$data"
request_log = "off"
threads = 1
[[providers]]
id = "p"
api = "openai"
base_url = "http://127.0.0.1:9"
[[models]]
name = "gpt-4o-mini"
targets = [{ provider = "p" }]
[[orgs]]
id = "o"
[[groups]]
id = "g"
org = "o"
EOF
    ;;
  *) echo "usage: $0 file|store [KEYS] [RUNS]"; exit 2 ;;
esac
for _ in $(seq "$RUNS"); do
  start=$(date +%s.%N)
  "$BIN" -c "$work/policy.toml" >"$work/log" 2>&1 & pid=$!
  deadline=$((SECONDS + 120))
  until curl -s -o /dev/null --max-time 1 "127.0.0.1:$PORT/"; do
    kill -0 "$pid" 2>/dev/null || { echo "the gateway exited:"; tail -5 "$work/log"; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "not listening after 120 s"; exit 1; }
    sleep 0.05
  done
  listen=$(echo "$(date +%s.%N) - $start" | bc)
  hwm=$(awk '/VmHWM/{print int($2 / 1024)}' "/proc/$pid/status")
  rss=$(awk '/VmRSS/{print int($2 / 1024)}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null; pid=
  echo "$MODE keys=$KEYS listen_s=$listen vmhwm_mib=$hwm vmrss_mib=$rss"
done

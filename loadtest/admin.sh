#!/usr/bin/env bash
# Admin writes while the data plane serves paced load, everything on loopback: the data
# plane's p50/p99 with no admin traffic, during 1000 key creations and during 1000
# PATCHes, and the admin write rates (examples/admin_load.rs). Also the start-up load of
# 1M API keys from the store (examples/store_load.rs). Results: loadtest/results/admin.md
#
#   bash loadtest/admin.sh [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}
bash scripts/setup.sh
cargo build --release --bin tollgate --example admin_load --example store_load
BIN=target/release/tollgate
DATA=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DATA"; }
trap cleanup EXIT
sed -e "s#target/loadtest-data#$DATA/gw#" -e 's#^listen = .*#&\nadmin_listen = "127.0.0.1:18189"\nadmin_token_env = "LOADTEST_ADMIN_TOKEN"#' \
  loadtest/gateway.toml > "$DATA/gateway.toml"
$BIN mock --listen 127.0.0.1:18181 >/dev/null & pids+=($!)
LOADTEST_ADMIN_TOKEN=loadtest-admin RUST_LOG=warn $BIN -c "$DATA/gateway.toml" >/dev/null 2>&1 & pids+=($!)
for port in 18181 18180 18189; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
{
  echo "# Admin writes under load $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "machine: $(nproc) cores; loopback; gateway threads = 2; every admin write is fsynced before its 2xx"
  echo
  target/release/examples/admin_load http://127.0.0.1:18180/v1/chat/completions http://127.0.0.1:18189 \
    loadtest-admin tg-LoadTestKeyLoadTestKeyLoadTestKey00000000 "$RATE"
  echo
  echo "Start-up load of API keys from the store:"
  echo
  target/release/examples/store_load fill "$DATA/store" 1000000 | sed 's/^/    /'
  target/release/examples/store_load load "$DATA/store" | sed 's/^/    /'
} | tee loadtest/results/admin.md

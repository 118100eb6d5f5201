#!/usr/bin/env bash
# Pull ingestion benchmark: 1,000 uploads x 100 records with embeddings from the shared
# clustered vectors, pulled from the local-filesystem store and from a real S3 server
# (moto_server on loopback, started here). Prints one JSON object per store.
#   scripts/bench-ingest.sh
# Needs python3 with numpy (installed with pip when missing) and moto (scripts/ensure-test-tools.sh).
# Node settings can be changed with AKOSHA__UPLOADS__WORKERS=... and friends.
set -euo pipefail
cd "$(dirname "$0")/.."
data="$(scripts/bench-data.sh 100000)"
PATH="$(scripts/ensure-test-tools.sh):$PATH"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
curl -sf -X PUT -o /dev/null "http://127.0.0.1:$port/akosha-bench"
cargo bench --bench ingest -- "$data" "http://127.0.0.1:$port"
# the S3 figure is bounded by the server: how much CPU moto_server spent (writes and reads)
echo "{\"figure\":\"moto_server_cpu_seconds\",\"seconds\":$(ps -o times= -p "$moto" | tr -d ' ')}"

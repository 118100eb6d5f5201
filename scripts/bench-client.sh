#!/usr/bin/env bash
# What the client library costs against HTTP: starts one release node with --listen on a
# temporary data directory, then runs examples/client_bench.rs against it on the shared
# vectors (half the records ingested through HTTP, half through the client; top-10
# searches of the shared queries through each, in turns). Prints records/s and p50/p99.
#   scripts/bench-client.sh [N]            (N records of ../shared/bench/vectors.py, 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
data="$(scripts/bench-data.sh "$n")"
scripts/fetch-model.sh >&2
cargo build --release --bin akosha-node --example client_bench >&2
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http="127.0.0.1:$(free_port)"
listen="127.0.0.1:$(free_port)"
dir="$(mktemp -d)"
export AKOSHA_COOKIE="bench-$RANDOM$RANDOM"
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 \
  target/release/akosha-node --data-dir "$dir/data" --http "$http" --listen "$listen" \
  --node-id bench >"$dir/node.log" 2>&1 &
node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 600); do
  curl -sf -o /dev/null "http://$http/ready" && break
  sleep 0.1
done
target/release/examples/client_bench "$listen" "$http" "$data" 500 2000

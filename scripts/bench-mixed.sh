#!/usr/bin/env bash
# Searches while ingest runs flat out: one release node over HTTP, a Python client on the
# same cores. Preloads N shared records (default 200000), measures 4 searchers alone, then
# 8 writers pushing batches of 500 new records as fast as they can beside the 4 searchers
# for S seconds (default 60). Prints records/s and search p50/p99 (by embedding, by text)
# of each phase, the most points waiting for a graph, and how long after the last write
# every point was in one.
#   scripts/bench-mixed.sh 200000 60
# Needs python3 with numpy, and the embedding model (scripts/fetch-model.sh) for text search.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200000}"
seconds="${2:-60}"
data="$(scripts/bench-data.sh 1000000)"
scripts/fetch-model.sh >&2
cargo build --release --bin akosha-node >&2
work="$(mktemp -d)"
trap 'kill "${node:-}" 2>/dev/null || true; wait "${node:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 \
  target/release/akosha-node --data-dir "$work/node" --http "127.0.0.1:$port" >"$work/node.log" 2>&1 &
node=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
python3 scripts/bench_mixed.py "$data" "http://127.0.0.1:$port" --preload "$n" --seconds "$seconds"

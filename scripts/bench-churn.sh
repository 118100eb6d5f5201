#!/usr/bin/env bash
# Memory that tracks live records: pushes the same N shared records (default 100000) ROUNDS
# times (default 10) into one release node over HTTP, each round replacing every record, and
# prints per round the index's live and held points, segments, merges and the node's RSS,
# then global recall@10 and p50/p99 over the last copy.
#   scripts/bench-churn.sh 100000 10
#   AKOSHA__INDEX__MERGE_MAX_POINTS=0 scripts/bench-churn.sh 100000 6   # without merging
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
rounds="${2:-10}"
data="$(scripts/bench-data.sh "$n")"
cargo build --release --bin akosha-node >&2
work="$(mktemp -d)"
trap 'kill "${node:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 \
  target/release/akosha-node --data-dir "$work/node" --http 127.0.0.1:8791 >"$work/node.log" 2>&1 &
node=$!
for _ in $(seq 1 300); do
  curl -fsS http://127.0.0.1:8791/ready >/dev/null 2>&1 && break
  sleep 0.2
done
python3 scripts/bench_churn.py "$data" http://127.0.0.1:8791 "$node" --rounds "$rounds"

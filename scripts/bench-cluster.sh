#!/usr/bin/env bash
# One node against a three-node cluster (replication factor 2, scripts/cluster.sh) on the same
# release binary and the same shared vectors (../shared/bench/vectors.py): ingest records/s
# pushed over HTTP through one node, and global top-10 search through another (p50/p99 on
# one client, QPS on four, recall@10 against the exact top-10). Then SIGKILLs n2 and times,
# from the kill, n3 declaring it dead, answering whole again, and every shard having two
# whole replicas again (the records counted exactly). Then a new member, n4, joins the two
# left and times every shard replicated again and the members holding exactly two copies of
# each record (the shards n4 took handed back and removed from their old holders).
#   scripts/bench-cluster.sh [N]        # N records, default 20000
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
data="$(scripts/bench-data.sh "$n")"
cargo build --release --bin akosha-node >&2
work="$(mktemp -d)"
trap 'kill "${single:-}" "${joiner:-}" 2>/dev/null || true; AKOSHA_CLUSTER_STATE="$work/cluster" scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench-cluster: $1 never became ready" >&2
  exit 1
}

echo "one node ..." >&2
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 \
  target/release/akosha-node --data-dir "$work/one" --http 127.0.0.1:8789 >"$work/one.log" 2>&1 &
single=$!
wait_ready http://127.0.0.1:8789
one="$(python3 scripts/bench_cluster.py "$data" http://127.0.0.1:8789 http://127.0.0.1:8789)"
kill "$single"
wait "$single" 2>/dev/null || true
single=""

echo "three nodes, replication factor 2 ..." >&2
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 AKOSHA_CLUSTER_FETCH_MODEL=0 \
  AKOSHA_CLUSTER_STATE="$work/cluster" scripts/cluster.sh up >&2
three="$(python3 scripts/bench_cluster.py "$data" http://127.0.0.1:8691 http://127.0.0.1:8693 \
  --kill-pid-file "$work/cluster/n2.pid")"

echo "n4 joins n1 and n3 ..." >&2
mkdir -p "$work/n4"
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__ENABLED=false AKOSHA__AUTH__RATE_PER_SECOND=0 AKOSHA_COOKIE="$(cat "$work/cluster/cookie")" \
  target/release/akosha-node --data-dir "$work/n4" --http 127.0.0.1:8694 --listen 127.0.0.1:7694 \
  --node-id n4 --join 127.0.0.1:7691 >"$work/n4.log" 2>&1 &
joiner=$!
join="$(python3 scripts/bench_cluster.py watch-join "$n" \
  http://127.0.0.1:8693 http://127.0.0.1:8691 http://127.0.0.1:8693 http://127.0.0.1:8694)"
echo "one node:                  $one"
echo "three nodes (RF 2, push through n1, search through n3, then SIGKILL n2): $three"
echo "n4 joins n1 and n3, from its start:  $join"

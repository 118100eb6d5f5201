#!/usr/bin/env bash
# Search benchmark at N records (default 100000): generates the shared clustered vectors,
# measures a single faiss HNSW index and a single usearch HNSW index (int8 as Akosha walks
# its graph, then f16 as it rescores) over them as references, then Akosha through its own
# write and search path, and again after a restart. Prints one JSON object per figure.
#   scripts/bench-search.sh 1000000
#   scripts/bench-search.sh 1000000 --warm   # records 30 days old: aging throughput and
#                                            # warm-tier search instead (no faiss or
#                                            # usearch run)
#   scripts/bench-search.sh 1000000 --due=1  # 1% of the records 30 days old: one aging run
#                                            # moves them (time proportional to what moves)
#   scripts/bench-search.sh 1000000 --cold   # 200 days old: on to cold Parquet files, and
#                                            # cold search over one month
#   scripts/bench-search.sh 1000000 --restarts=5 # the restart measured five times over
#   scripts/bench-search.sh 1000000 --load-only  # ingest, index, resident memory; no
#                                                # queries, references or restart
#   scripts/bench-search.sh 1000000 --load-only --names  # records name a user, project
#                                                # and session: the knowledge graph's
#                                                # share of the ingest's CPU (graph_feed)
# Needs python3 with numpy, faiss-cpu and usearch (installed with pip when missing).
# Settings of the node can be changed with AKOSHA__INDEX__EF_SEARCH=... and friends.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
python3 -c 'import numpy, faiss' 2>/dev/null || pip install --quiet numpy faiss-cpu
python3 -c 'import usearch' 2>/dev/null || pip install --quiet usearch
data="$(scripts/bench-data.sh "$n")"
shift || true
efs=32,64,96,128
if [ "${1:-}" != "--warm" ] && [ "${1:-}" != "--cold" ] && [ "${1:-}" != "--load-only" ]; then
  echo "== faiss HNSW reference (one unsharded index) ==" >&2
  python3 scripts/faiss_reference.py "$data" 10 "$efs"
  # int8 as Akosha walks its graph (usearch's coarser int8 caps its recall), and f16 as
  # Akosha rescores: the second shows usearch's graph without that cap
  for dtype in i8 f16; do
    echo "== usearch HNSW reference (one unsharded index, $dtype) ==" >&2
    python3 scripts/usearch_reference.py "$data" 10 "$efs" --dtype "$dtype"
  done
fi
echo "== akosha ==" >&2
cargo bench --bench search -- "$data" "$@"

#!/usr/bin/env bash
# Knowledge graph benchmark: builds a graph of RECORDS records (default 2350000: about 1M
# entities and 5M relations) through the graph's own write path, then prints find_path
# p50/p99 over QUERIES random user-to-project searches (default 100, max_hops 6).
#   scripts/bench-graph.sh 2350000 100
#   scripts/bench-graph.sh 300000 0 --uploads   # records as Session-Buddy uploads them:
#                                               # the feed's CPU per record (cpu_us_per_record)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench graph -- "${1:-2350000}" "${2:-100}" "${@:3}"

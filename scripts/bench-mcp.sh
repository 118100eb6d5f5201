#!/usr/bin/env bash
# MCP benchmark: memories/s through batch_store_memories (batches of 100, Session-Buddy's
# route and payload) with embeddings given (the shared clustered vectors) and without (the
# node embeds each text), then search_all_systems p50/p99 through MCP against the same text
# queries through REST on the same data. Prints one JSON object per figure.
#   scripts/bench-mcp.sh [WITH_EMBEDDINGS=100000] [WITHOUT_EMBEDDINGS=2000] [QUERIES=500]
# Needs python3 with numpy (installed with pip when missing) and the model (scripts/fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
data="$(scripts/bench-data.sh 100000)"
scripts/fetch-model.sh >&2
cargo bench --bench mcp -- "$data" "${1:-100000}" "${2:-2000}" "${3:-500}"

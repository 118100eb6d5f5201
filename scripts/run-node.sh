#!/usr/bin/env bash
# Starts a node on the embedded default (local directories, no services), fetching the
# embedding model first if it is missing. Extra arguments go to akosha-node,
# e.g. scripts/run-node.sh --data-dir /var/lib/akosha --http 127.0.0.1:8682
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
exec cargo run --release --bin akosha-node -- "$@"

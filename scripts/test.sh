#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the real-binary integration tests and doc tests
# (benchmarks run separately: scripts/bench-search.sh, scripts/bench-ingest.sh).
# Fetches the embedding model first (the tests check it against reference vectors) and makes
# sure the real peers the tests use (moto_server, pyarrow) are there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
PATH="$(scripts/ensure-test-tools.sh):$PATH"
export PATH
exec cargo test "$@"

#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the real-binary integration tests and doc tests
# (benchmarks run separately, see scripts/bench-search.sh).
# Fetches the embedding model first (the tests check it against reference vectors).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
exec cargo test "$@"

#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the real-binary integration tests and doc tests
# (benchmarks run separately: scripts/bench-search.sh, scripts/bench-ingest.sh).
# Fetches the embedding model first (the tests check it against reference vectors) and makes
# sure a real S3-compatible server (moto_server) is there for the object storage tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh
PATH="$(scripts/ensure-moto.sh):$PATH"
export PATH
exec cargo test "$@"

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
# a test that cannot run here (the partition test without network namespaces) leaves its
# reason under target/test-skips; say so at the end rather than pass silently
rm -rf target/test-skips
status=0
cargo test "$@" || status=$?
for skipped in target/test-skips/*; do
  [[ -f "$skipped" ]] && echo "SKIPPED $(basename "$skipped"): $(cat "$skipped")" >&2
done
exit "$status"

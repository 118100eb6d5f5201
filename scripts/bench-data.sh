#!/usr/bin/env bash
# Makes the shared benchmark data of N records (default 100000) with ../shared/bench/vectors.py:
# clustered 384-d vectors, queries with exact top-100, a Zipf-sized system per record.
# Generates it once into $AKOSHA_BENCH_DATA (default ${TMPDIR:-/tmp}/akosha-bench/N) and
# prints that directory. Installs numpy with pip when python3 lacks it.
#   data="$(scripts/bench-data.sh 100000)"
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
shared="${AKOSHA_SHARED:-../shared}"
data="${AKOSHA_BENCH_DATA:-${TMPDIR:-/tmp}/akosha-bench/$n}"
python3 -c 'import numpy' 2>/dev/null || pip install --quiet numpy >&2
if [ ! -f "$data/meta.json" ]; then
  echo "generating $n vectors into $data" >&2
  python3 "$shared/bench/vectors.py" "$n" "$data" >&2
fi
echo "$data"

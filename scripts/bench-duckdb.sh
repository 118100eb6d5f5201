#!/usr/bin/env bash
# Reading Session-Buddy's DuckDB uploads: makes a reflection.duckdb of N conversations
# (default 100000; 384 random floats each, a third with reasoning) with Session-Buddy's
# table, uploads it gzipped in its layout to a local object store, and times one release
# node reading it (records/s, from the manifest's arrival to the upload being done); then
# times the same snapshot uploaded again (unchanged bytes), and a snapshot with 10 more
# conversations (only rows changed since the last snapshot are read).
#   scripts/bench-duckdb.sh 100000
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
export PATH="$(scripts/ensure-test-tools.sh):$PATH"
cargo build --release --bin akosha-node >&2
work="$(mktemp -d)"
trap 'kill "${node:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=8793

duckdb "$work/reflection.duckdb" -c "$(cat tests/fixtures/session_buddy_reflection.sql)"
duckdb "$work/reflection.duckdb" -c "
INSERT INTO conversations_v2 (id, content, embedding, category, project, timestamp, session_id, reasoning, source_type)
SELECT 'c' || i,
       'conversation ' || i || ': ' || repeat('the assistant changed the shard loader and ran the tests again. ', 4),
       list_transform(range(384), lambda x: (random() - 0.5)::FLOAT)::FLOAT[384],
       'context', 'project-' || (i % 20),
       TIMESTAMP '2026-11-01 00:00:00' + INTERVAL (i) SECOND,
       's' || (i // 50),
       CASE WHEN i % 3 = 0 THEN 'because it mattered for run ' || i END,
       'claude_code'
FROM range($n) t(i);"
db_bytes=$(stat -c %s "$work/reflection.duckdb")

# gzips the database as Session-Buddy does (before the clock starts)
pack() {
  gzip -1 -c "$work/reflection.duckdb" >"$work/packed"
}

# puts the packed database and then its manifest, as Session-Buddy's cloud sync does
upload() {
  local stamp="$1" prefix="$work/objects/systems/bench/uploads/${1}_bench"
  mkdir -p "$prefix"
  mv "$work/packed" "$prefix/reflection.duckdb"
  cat >"$prefix/manifest.json" <<EOF
{"upload_id": "${stamp}_bench", "system_id": "bench", "timestamp": "$(date -u +%Y-%m-%dT%H:%M:%S.000000+00:00)",
 "files": [{"name": "reflection.duckdb", "path": "systems/bench/uploads/${stamp}_bench/reflection.duckdb",
            "size_bytes": 0, "compression": "gzip", "checksum": ""}],
 "metadata": {"uploader": "session-buddy", "version": "1.0.0"}}
EOF
}

done_count() {
  curl -fsS "http://127.0.0.1:$port/api/v1/uploads" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["done"], r["quarantined_total"])'
}

wait_done() {
  local want="$1"
  while :; do
    read -r done quarantined < <(done_count)
    if [ "$quarantined" != 0 ]; then
      curl -fsS "http://127.0.0.1:$port/api/v1/uploads" >&2
      echo "the upload was quarantined" >&2
      exit 1
    fi
    [ "$done" -ge "$want" ] && return
    sleep 0.05
  done
}

mkdir -p "$work/objects"
AKOSHA__AGING__ENABLED=false AKOSHA__UPLOADS__POLL_INTERVAL_MS=50 \
  AKOSHA__UPLOADS__MAX_DATA_BYTES=4294967296 \
  target/release/akosha-node --data-dir "$work/node" --http "127.0.0.1:$port" \
  --object-store "file://$work/objects" >"$work/node.log" 2>&1 &
node=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

pack
start=$(date +%s.%N)
upload 20261201_100000
wait_done 1
first=$(python3 -c "print($(date +%s.%N) - $start)")
pack
start=$(date +%s.%N)
upload 20261201_110000
wait_done 2
again=$(python3 -c "print($(date +%s.%N) - $start)")
duckdb "$work/reflection.duckdb" -c "
INSERT INTO conversations_v2 (id, content, embedding, category, timestamp)
SELECT 'new' || i, 'a new conversation ' || i, list_transform(range(384), lambda x: (random() - 0.5)::FLOAT)::FLOAT[384],
       'context', TIMESTAMP '2026-12-01 00:00:00' + INTERVAL (i) SECOND
FROM range(10) t(i);"
pack
start=$(date +%s.%N)
upload 20261201_120000
wait_done 3
more=$(python3 -c "print($(date +%s.%N) - $start)")
records=$(curl -fsS "http://127.0.0.1:$port/api/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"]["hot"])')
python3 - "$n" "$db_bytes" "$first" "$again" "$more" "$records" <<'EOF'
import json, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
first, again, more, records = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
print(json.dumps({"bench": "duckdb_upload", "conversations": n, "database_mb": round(size / 2**20, 1),
                  "first_read_s": round(first, 2), "records_per_s": round(n / first),
                  "same_snapshot_again_s": round(again, 2), "ten_more_rows_s": round(more, 2),
                  "records_stored": records}))
EOF

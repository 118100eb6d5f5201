#!/usr/bin/env bash
# Fuzzes the node's parsers with cargo-fuzz (libFuzzer), not part of the default CI run:
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default 600 s each, every target)
# Targets (fuzz/fuzz_targets/): manifest, memories, rest_bodies, mcp_messages,
# cluster_messages. Each starts from its committed seed corpus (fuzz/corpus/<target>/) and
# grows a working corpus under fuzz/target/corpus/<target>/ (not committed). A crash is
# saved under fuzz/artifacts/<target>/ and the script stops with its path; keep it as a
# regression test (tests/fuzz_regressions.rs) once fixed.
# cargo-fuzz needs nightly flags: the stable toolchain runs them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(manifest memories rest_bodies mcp_messages cluster_messages)
fi
tools="$PWD/target/check-tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz 0.13.2 into $tools (once)" >&2
  cargo install --quiet --locked --root "$tools" --version 0.13.2 cargo-fuzz >&2
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build --release
for t in "${targets[@]}"; do
  work="target/corpus/$t"
  mkdir -p "$work"
  echo "== $t: $seconds s ==" >&2
  cargo fuzz run --release "$t" "$work" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+.*(DONE|pulse)|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "FOUND: $(ls artifacts/$t/)" >&2
    exit 1
  fi
done

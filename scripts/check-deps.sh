#!/usr/bin/env bash
# Checks the dependency tree against deny.toml with cargo-deny (licenses, bans, sources,
# and advisories when the RustSec database can be had), and with cargo-audit when it can.
#   scripts/check-deps.sh
# The advisory database is a git repository on GitHub. It is used from, in order:
# AKOSHA_ADVISORY_DB (a path or URL git can clone), or GitHub itself when reachable;
# without either, advisories are skipped with a line that says so (this project's CI
# machine reaches crates.io but not GitHub).
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_VERSION="0.20.2"
AUDIT_VERSION="0.22.2"
tools="$PWD/target/check-tools"
export PATH="$tools/bin:$PATH"
if ! cargo-deny --version 2>/dev/null | grep -q "$DENY_VERSION"; then
  echo "installing cargo-deny $DENY_VERSION into $tools (once)" >&2
  cargo install --quiet --locked --root "$tools" --version "$DENY_VERSION" cargo-deny >&2
fi

db="target/advisory-db"
source=""
if [ -n "${AKOSHA_ADVISORY_DB:-}" ]; then
  source="$AKOSHA_ADVISORY_DB"
elif timeout 10 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  source="https://github.com/rustsec/advisory-db"
fi

echo "== cargo deny check licenses bans sources =="
cargo deny --log-level error check licenses bans sources

if [ -z "$source" ]; then
  echo "SKIPPED advisories (cargo deny check advisories, cargo audit): the RustSec database cannot be reached; set AKOSHA_ADVISORY_DB to a copy" >&2
  exit 0
fi
# cargo-deny 0.20 keeps the database of its default URL under db-path in a directory
# named for that URL's hash; the copy goes there and cargo-deny runs offline
copy="$db/advisory-db-3157b0e258782691"
rm -rf "$db"
mkdir -p "$db"
git clone --quiet "$source" "$copy"
echo "== cargo deny check advisories (database of $(git -C "$copy" log -1 --format=%cs)) =="
cargo deny --log-level warn --offline check advisories
if ! cargo-audit --version 2>/dev/null | grep -q "$AUDIT_VERSION"; then
  echo "installing cargo-audit $AUDIT_VERSION into $tools (once)" >&2
  cargo install --quiet --locked --root "$tools" --version "$AUDIT_VERSION" cargo-audit >&2
fi
echo "== cargo audit =="
cargo audit --no-fetch --db "$copy" --deny warnings

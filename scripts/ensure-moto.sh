#!/usr/bin/env bash
# Makes a real S3-compatible server (moto_server, from PyPI's moto[server]) available to the
# tests that exercise object storage: uses one on PATH, else installs a pinned one into
# .venv-s3/ (ignored by git). Prints the directory to put on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION="5.2.1"
if command -v moto_server >/dev/null 2>&1; then
    dirname "$(command -v moto_server)"
    exit 0
fi
VENV=".venv-s3"
if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "installing moto[server]==$MOTO_VERSION into $VENV for the S3 tests" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" >&2
fi
echo "$PWD/$VENV/bin"

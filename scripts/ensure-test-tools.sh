#!/usr/bin/env bash
# Makes the real peers the tests use available: an S3-compatible server (moto_server, from
# PyPI's moto[server]), pyarrow (to open the cold tier's Parquet files as a reader of ours
# would), the official MCP Python SDK (PyPI's mcp, a real MCP client) and the DuckDB
# command-line program (PyPI's duckdb-cli, which reads Session-Buddy's database uploads), the
# DuckDB Python package Session-Buddy itself writes them with (PyPI's duckdb, with the vss
# extension for HNSW indexes from PyPI's duckdb-extension-vss) and
# Prometheus' Python client (PyPI's prometheus-client, whose parser reads /metrics). Uses them when
# python3 and PATH already have them, else installs pinned versions into .venv-test/
# (ignored by git). Prints the directory to put first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION="5.2.1"
PYARROW_VERSION="22.0.0"
MCP_VERSION="2.3.0"
DUCKDB_CLI_VERSION="1.5.6"
DUCKDB_VERSION="1.5.5"
PROMETHEUS_CLIENT_VERSION="0.26.0"
HAVE="import pyarrow, mcp, prometheus_client, duckdb, duckdb_extension_vss"
if command -v moto_server >/dev/null 2>&1 && command -v duckdb >/dev/null 2>&1 && python3 -c "$HAVE" 2>/dev/null; then
    dirname "$(command -v python3)"
    exit 0
fi
VENV=".venv-test"
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/duckdb" ] || ! "$VENV/bin/python3" -c "$HAVE" 2>/dev/null; then
    echo "installing moto[server]==$MOTO_VERSION, pyarrow==$PYARROW_VERSION, mcp==$MCP_VERSION, duckdb-cli==$DUCKDB_CLI_VERSION, duckdb==$DUCKDB_VERSION, duckdb-extension-vss==$DUCKDB_VERSION and prometheus-client==$PROMETHEUS_CLIENT_VERSION into $VENV for the tests" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" "pyarrow==$PYARROW_VERSION" "mcp==$MCP_VERSION" "duckdb-cli==$DUCKDB_CLI_VERSION" "duckdb==$DUCKDB_VERSION" "duckdb-extension-vss==$DUCKDB_VERSION" "prometheus-client==$PROMETHEUS_CLIENT_VERSION" >&2
fi
echo "$PWD/$VENV/bin"

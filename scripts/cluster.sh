#!/usr/bin/env bash
# A local three-node Akosha cluster on loopback, in one command, gone in another.
#
# Usage:
#   scripts/cluster.sh up       build akosha-node, start n1 n2 n3, wait until all three are members
#   scripts/cluster.sh status   print each node's GET /api/v1/cluster
#   scripts/cluster.sh down     SIGTERM every node (SIGKILL after 15 s) and remove the data
#
# Each node gets its own data directory under one temporary directory, its own HTTP port
# (HTTP_BASE+1..3, default 8691..8693) and its own cluster port (LISTEN_BASE+1..3, default
# 7691..7693, TCP and UDP). n2 and n3 join n1. The cookie is $AKOSHA_COOKIE, or a random one
# kept (mode 600) in the state directory.
#
# Environment:
#   AKOSHA_CLUSTER_STATE   state directory (pids, logs, cookie)  [default: /tmp/akosha-cluster]
#   AKOSHA_CLUSTER_PROFILE cargo profile of the binary (release or dev) [default: release]
#   AKOSHA_CLUSTER_FETCH_MODEL  0 to skip scripts/fetch-model.sh  [default: 1]
#   HTTP_BASE, LISTEN_BASE port bases (see above)
#   Any AKOSHA__SECTION__KEY override reaches every node (e.g. AKOSHA__CLUSTER__REPLICATION_FACTOR=3).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly STATE="${AKOSHA_CLUSTER_STATE:-/tmp/akosha-cluster}"
readonly PROFILE="${AKOSHA_CLUSTER_PROFILE:-release}"
readonly HTTP_BASE="${HTTP_BASE:-8690}"
readonly LISTEN_BASE="${LISTEN_BASE:-7690}"
readonly NODES=(n1 n2 n3)

die() {
  echo "cluster.sh: error: $*" >&2
  exit 1
}

binary() {
  case "$PROFILE" in
    release) echo "target/release/akosha-node" ;;
    dev | debug) echo "target/debug/akosha-node" ;;
    *) die "expected AKOSHA_CLUSTER_PROFILE release or dev, got '$PROFILE'" ;;
  esac
}

http_of() { echo "127.0.0.1:$((HTTP_BASE + $1))"; }
listen_of() { echo "127.0.0.1:$((LISTEN_BASE + $1))"; }

running() {
  [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null
}

# Prints the member count every node agrees on as alive, or nothing.
alive_everywhere() {
  local i min=99
  for i in 1 2 3; do
    local n
    n=$(curl -sf "http://$(http_of "$i")/api/v1/cluster" | grep -o '"state":"alive"' | wc -l) || n=0
    ((n < min)) && min=$n
  done
  echo "$min"
}

up() {
  for name in "${NODES[@]}"; do
    running "$name" && die "$name is already running (pid $(cat "$STATE/$name.pid")); run '$0 down' first"
  done
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  if [[ "${AKOSHA_CLUSTER_FETCH_MODEL:-1}" != 0 ]]; then
    scripts/fetch-model.sh
  fi
  local profile_flag=(--release)
  [[ "$PROFILE" == release ]] || profile_flag=()
  cargo build "${profile_flag[@]}" --bin akosha-node
  local bin
  bin="$(binary)"
  [[ -x "$bin" ]] || die "expected a built binary at $bin, found none"

  local cookie="${AKOSHA_COOKIE:-}"
  if [[ -z "$cookie" ]]; then
    if [[ ! -s "$STATE/cookie" ]]; then
      (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/cookie")
    fi
    cookie="$(cat "$STATE/cookie")"
  fi
  local data
  data="$(mktemp -d "${TMPDIR:-/tmp}/akosha-cluster-data.XXXXXX")"
  echo "$data" >"$STATE/data_dir"

  local i=0
  for name in "${NODES[@]}"; do
    i=$((i + 1))
    local join=()
    ((i > 1)) && join=(--join "$(listen_of 1)")
    mkdir -p "$data/$name"
    AKOSHA_COOKIE="$cookie" nohup "$bin" \
      --data-dir "$data/$name" \
      --http "$(http_of "$i")" \
      --listen "$(listen_of "$i")" \
      --node-id "$name" \
      "${join[@]}" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    echo "started $name: http $(http_of "$i"), listen $(listen_of "$i"), data $data/$name, log $STATE/$name.log"
  done

  local deadline=$((SECONDS + 120))
  until [[ "$(alive_everywhere)" == 3 ]]; do
    for name in "${NODES[@]}"; do
      running "$name" || die "$name exited; see $STATE/$name.log"
    done
    ((SECONDS < deadline)) || die "the three nodes did not all see each other alive in 120 s; see $STATE/*.log"
    sleep 0.5
  done
  echo "cluster up: every node sees n1 n2 n3 alive (GET http://$(http_of 1)/api/v1/cluster)"
}

status() {
  for i in 1 2 3; do
    echo "== ${NODES[$((i - 1))]} (http $(http_of "$i"))"
    curl -sf "http://$(http_of "$i")/api/v1/cluster" || echo "(not answering)"
    echo
  done
}

down() {
  local name pids=()
  for name in "${NODES[@]}"; do
    if running "$name"; then
      local pid
      pid="$(cat "$STATE/$name.pid")"
      kill -TERM "$pid"
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 15))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        echo "pid $pid did not stop on SIGTERM in 15 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done
  if [[ -f "$STATE/data_dir" ]]; then
    local data
    data="$(cat "$STATE/data_dir")"
    case "$data" in
      */akosha-cluster-data.*) rm -rf -- "$data" ;;
      *) echo "not removing unexpected data directory '$data'" >&2 ;;
    esac
  fi
  rm -f "$STATE"/*.pid "$STATE/data_dir"
  echo "cluster down (${#pids[@]} node(s) stopped; logs kept in $STATE)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "expected 'up', 'status' or 'down', got '${1:-}'" ;;
esac

#!/usr/bin/env bash
# usage: [ONLY_LOGIN=1] cluster-ab.sh <before bin dir> <after bin dir> <rounds> <output dir>
# (PostgreSQL on 127.0.0.1:5432; ONLY_LOGIN=1 skips mixed-open, as for cluster-ab-3/)
# Interleaved three-node A/B of mixed-open and login (the figures that moved in issue 14's full runs).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
A=$1 B=$2 ROUNDS=${3:-2} OUT=$4
mkdir -p "$OUT"
eval "$("$A/tessera" secrets)"
export TESSERA_THROTTLE__REGISTRATIONS=1000000 TESSERA_THROTTLE__LOGIN_FAILURES=1000000 TESSERA_LOG=warn
PSQL="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q"
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap stop EXIT
ready() { for _ in $(seq 1 500); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return 0; sleep 0.02; done; return 1; }
one() { # label dir round
  local label=$1 dir=$2 round=$3 work; work=$(mktemp -d)
  $PSQL -c "DROP DATABASE IF EXISTS tessera_ab" -c "CREATE DATABASE tessera_ab"
  export TESSERA_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tessera_ab
  for n in 1 2 3; do
    extra=(); [ $n != 1 ] && extra=(TESSERA_BOOTSTRAP=false TESSERA_RESTORE=false)
    env TESSERA_NODE_ID=$n TESSERA_LISTEN=127.0.0.1:1809$n TESSERA_PEER_LISTEN=127.0.0.1:1709$n TESSERA_DATA_DIR="$work/n$n" "${extra[@]}" "$dir/tessera" serve >/dev/null 2>&1 & PIDS+=($!)
  done
  ready http://127.0.0.1:18091
  for n in 2 3; do
    "$dir/tessera" cluster --node 127.0.0.1:17091 add-learner --id $n --peer-addr 127.0.0.1:1709$n --public-addr 127.0.0.1:1809$n >/dev/null
    "$dir/tessera" cluster --node 127.0.0.1:17091 promote --id $n >/dev/null
  done
  for n in 1 2 3; do ready http://127.0.0.1:1809$n; done
  T=(--target http://127.0.0.1:18091 --target http://127.0.0.1:18092 --target http://127.0.0.1:18093)
  local scenarios=(login)
  if [ "${ONLY_LOGIN:-0}" != 1 ]; then
    scenarios=(mixed-open login)
    "$dir/tessera-loadtest" "${T[@]}" --scenario mixed --users 64 --accounts 64 --rate 1000 --duration 10 --out "$OUT/$label-$round/mixed-open" >/dev/null 2>&1
  fi
  "$dir/tessera-loadtest" "${T[@]}" --scenario login --users 8 --accounts 64 --duration 10 --out "$OUT/$label-$round/login" >/dev/null 2>&1
  stop; rm -rf "$work"
  for s in "${scenarios[@]}"; do
    jq -r --arg l "$label" --arg r "$round" --arg s "$s" '"\($l) round \($r) \($s) \(.throughput_per_second|floor)/s p99 \(.latency.p99_ms) ms"' "$OUT/$label-$round/$s/report.json"
  done
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one before "$A" $r; one after "$B" $r; else one after "$B" $r; one before "$A" $r; fi
done | tee "$OUT/runs.txt"
$PSQL -c "DROP DATABASE IF EXISTS tessera_ab"

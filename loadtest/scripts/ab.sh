#!/usr/bin/env bash
# Interleaved A/B runs on one node: the request paths a change may cost (verify, refresh,
# login), alternating between two builds for several rounds, so a noisy shared machine moves
# both builds alike. Prints one line per run and a median per build and scenario.
#
#   loadtest/scripts/ab.sh <before bin dir> <after bin dir> [rounds] [output directory]
#
# Each bin dir holds tessera and tessera-loadtest (a release build). SECONDS_PER_RUN=10.
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1 B=$2 ROUNDS=${3:-3}
OUT=$(realpath -m "${4:-loadtest-reports/ab-$(date +%Y%m%d-%H%M%S)}")
SECS=${SECONDS_PER_RUN:-10}
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
eval "$("$A/tessera" secrets)"
export TESSERA_THROTTLE__REGISTRATIONS=1000000 TESSERA_THROTTLE__LOGIN_FAILURES=1000000 TESSERA_LOG=warn

one() { # label, bin dir, round
  local label=$1 dir=$2 round=$3
  rm -rf "$WORK/data"
  TESSERA_LISTEN=127.0.0.1:18090 TESSERA_PEER_LISTEN=127.0.0.1:17090 TESSERA_DATA_DIR="$WORK/data" "$dir/tessera" serve &
  PID=$!
  for _ in $(seq 1 500); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18090/readyz)" = 200 ] && break
    sleep 0.02
  done
  for run in "verify --users 32 --accounts 32" "refresh --users 64 --accounts 64" "login --users 8 --accounts 64"; do
    set -- $run
    local name=$1
    "$dir/tessera-loadtest" --target http://127.0.0.1:18090 --server-pid "$PID" --out "$OUT/$label-$round/$name" \
      --scenario $run --duration "$SECS" > /dev/null
    echo "$label round $round $name $(jq '.throughput_per_second | floor' "$OUT/$label-$round/$name/report.json")/s" \
      "p99 $(jq '.latency.p99_ms * 100 | round / 100' "$OUT/$label-$round/$name/report.json") ms" | tee -a "$OUT/runs.txt"
    sleep 3
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then one before "$A" "$round"; one after "$B" "$round"
  else one after "$B" "$round"; one before "$A" "$round"; fi
done
echo "medians:" | tee -a "$OUT/runs.txt"
for label in before after; do
  for name in verify refresh login; do
    median=$(grep "^$label round [0-9]* $name " "$OUT/runs.txt" | awk '{print $5}' | tr -d '/s' | sort -n \
      | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$label $name $median/s" | tee -a "$OUT/runs.txt"
  done
done

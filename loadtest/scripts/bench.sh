#!/usr/bin/env bash
# Every figure of BENCHMARKS.md in one run: the machine's ceilings, then every load-generator
# scenario against one release node (embedded SQLite, durable redb log) and against a
# three-node cluster on this machine (Postgres snapshot store), plus verify latency during a
# login storm. Each run leaves report.json and chart.svg under the output directory, and the
# script ends with a Markdown summary (summary.md) that gives each figure as a ratio of its
# ceiling.
#
#   cargo build --release -p tessera -p tessera-loadtest
#   loadtest/scripts/bench.sh [output directory]       # SECONDS_PER_RUN=10 by default
#
# BIN_DIR=<dir> runs the binaries in <dir> instead of ./target/release (tessera,
# tessera-loadtest, tessera-ceilings), so a build of an earlier commit can be measured in the
# same sitting as the current one.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) for the cluster part, jq, curl, and
# nothing else listening on 127.0.0.1:1808[0-3] / 1707[0-3].
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-loadtest-reports/bench-$(date +%Y%m%d-%H%M%S)}")
SECS=${SECONDS_PER_RUN:-10}
BIN_DIR=${BIN_DIR:-./target/release}
BIN=$BIN_DIR/tessera LT=$BIN_DIR/tessera-loadtest CEIL=$BIN_DIR/tessera-ceilings
DB=tessera_bench
PSQL="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q"
WORK=$(mktemp -d)
PIDS=()
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_nodes; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

eval "$($BIN secrets)"
# Every generator connection comes from 127.0.0.1, one client network: lift the per-network
# limits, which would otherwise (correctly) throttle the benchmark itself.
export TESSERA_THROTTLE__REGISTRATIONS=1000000 TESSERA_THROTTLE__LOGIN_FAILURES=1000000 TESSERA_LOG=warn

wait_ready() { # url
  for _ in $(seq 1 500); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return 0
    sleep 0.02
  done
  echo "$1 never became ready" >&2
  return 1
}

node() { # id, port digit, extra env...
  local id=$1 port=$2
  shift 2
  env TESSERA_NODE_ID="$id" TESSERA_LISTEN=127.0.0.1:1808"$port" TESSERA_PEER_LISTEN=127.0.0.1:1707"$port" \
    TESSERA_DATA_DIR="$WORK/node$port" "$@" $BIN serve &
  PIDS+=($!)
}

# run <setup> <name> <loadtest args...>: one report under $OUT/<setup>/<name>.
run() {
  local setup=$1 name=$2
  shift 2
  echo "== $setup / $name" >&2
  $LT "${TARGETS[@]}" --out "$OUT/$setup/$name" $(printf -- ' --server-pid %s' "${PIDS[@]}") "$@" >/dev/null
  # Let the previous run's snapshot-store flush finish before the next one starts.
  sleep "${SETTLE:-3}"
}

# The scenarios, the same for one node and for the cluster. Closed loop finds the most a setup
# serves; open loop at the issue's target rates gives honest latency at that load.
suite() { # setup, refresh target rate
  local s=$1 refresh_rate=$2
  run "$s" trivial --scenario trivial --users 32 --duration "$SECS"
  run "$s" verify --scenario verify --users 32 --accounts 32 --duration "$SECS"
  run "$s" verify-8 --scenario verify --users 8 --accounts 8 --duration "$SECS"
  run "$s" verify-20k --scenario verify --users 32 --accounts 32 --rate 20000 --duration "$SECS"
  run "$s" refresh --scenario refresh --users 64 --accounts 64 --duration "$SECS"
  run "$s" refresh-open --scenario refresh --users 64 --accounts 64 --rate "$refresh_rate" --duration "$SECS"
  run "$s" login --scenario login --users 8 --accounts 64 --duration "$SECS"
  run "$s" mixed --scenario mixed --users 64 --accounts 64 --duration "$SECS"
  run "$s" mixed-open --scenario mixed --users 64 --accounts 64 --rate 1000 --duration "$SECS"
  run "$s" race --scenario race --users 16 --race-k 10 --accounts 16 --duration "$SECS"
  run "$s" lockout --scenario lockout --users 16 --accounts 1 --duration "$SECS"
  # RFC 7662 introspection by a resource-server client (builds that have it).
  if $LT --help | grep -q introspect; then
    run "$s" introspect --scenario introspect --users 32 --accounts 32 --duration "$SECS"
    run "$s" introspect-10k --scenario introspect --users 32 --accounts 32 --rate 10000 --duration "$SECS"
  fi
  # Verify at a fixed 2,000/s for 24 s; 32 users log in as fast as they can from second 10 to
  # second 20 (their accounts registered beforehand, so seeding does not shift the window).
  run "$s" storm-seed --scenario login --users 1 --accounts 32 --requests 1 --warmup 0 --run-id "storm$s"
  SETTLE=0 run "$s" storm-verify --scenario verify --users 16 --accounts 16 --rate 2000 --duration 24 &
  local verify=$!
  sleep 12
  run "$s" storm-login --scenario login --users 32 --accounts 32 --duration 10 --warmup 0 --run-id "storm$s"
  wait $verify
}

echo "== ceilings" >&2
$CEIL --out "$OUT/ceilings.json" >/dev/null

# One node: the two-command default (SQLite snapshot store), on the benchmark ports.
node 1 0
wait_ready http://127.0.0.1:18080
TARGETS=(--target http://127.0.0.1:18080)
suite single 5000
stop_nodes

# Three nodes on this machine, one Postgres database, as in the README quickstart.
$PSQL -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export TESSERA_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
node 1 1
for n in 2 3; do node $n $n TESSERA_BOOTSTRAP=false TESSERA_RESTORE=false; done
wait_ready http://127.0.0.1:18081
for n in 2 3; do
  $BIN cluster --node 127.0.0.1:17071 add-learner --id $n --peer-addr 127.0.0.1:1707$n --public-addr 127.0.0.1:1808$n >/dev/null
  $BIN cluster --node 127.0.0.1:17071 promote --id $n >/dev/null
done
for n in 1 2 3; do wait_ready http://127.0.0.1:1808$n; done
TARGETS=(--target http://127.0.0.1:18081 --target http://127.0.0.1:18082 --target http://127.0.0.1:18083)
suite cluster 3000
stop_nodes
$PSQL -c "DROP DATABASE IF EXISTS $DB"

# Summary: one row per run, ratios to the ceilings.
c() { jq -r "$1" "$OUT/ceilings.json"; }
{
  echo "Ceilings: Argon2id $(c '.argon2id_verifications_per_second_all_threads | floor')/s on all cores;" \
    "Ed25519 sign $(c '.ed25519_signatures_per_second_all_threads | floor')/s," \
    "verify $(c '.ed25519_verifications_per_second_all_threads | floor')/s on all cores."
  echo
  echo "| setup | run | mode | users | throughput /s | p50 ms | p99 ms | p99.9 ms | max ms | not ok | violations | generator CPU / server CPU | ratio |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for s in single cluster; do
    trivial=$(jq .throughput_per_second "$OUT/$s/trivial/report.json")
    for name in trivial verify verify-8 verify-20k refresh refresh-open login mixed mixed-open race lockout introspect introspect-10k storm-verify storm-login; do
      f=$OUT/$s/$name/report.json
      [ -f "$f" ] || continue
      ratio=""
      case $name in
        verify | verify-8 | verify-20k) ratio="$(jq -n "$(jq .throughput_per_second "$f") / $trivial * 100 | floor")% of trivial" ;;
        login | storm-login) ratio="$(jq -n "$(jq .throughput_per_second "$f") / $(c .argon2id_verifications_per_second_all_threads) * 100 | floor")% of Argon2id" ;;
        storm-verify) ratio="storm seconds p99 median $(jq '[.timeline[] | select(.t >= 11 and .t <= 19) | .p99_ms] | sort | .[length/2|floor]' "$f") ms" ;;
      esac
      jq -r --arg s "$s" --arg name "$name" --arg ratio "$ratio" '
        def r: . * 100 | round / 100;
        "| \($s) | \($name) | \(.mode) | \(.virtual_users) | \(.throughput_per_second | floor) | \(.latency.p50_ms | r) | \(.latency.p99_ms | r) | \(.latency.p999_ms | r) | \(.latency.max_ms | r) | \([.errors_by_status[], .errors_by_kind[]] | add // 0) | \(.violations) | \(if .server_cpu_seconds then (.generator_cpu_seconds / .server_cpu_seconds * 100 | round / 100) else "—" end) | \($ratio) |"' "$f"
    done
  done
} | tee "$OUT/summary.md"
echo "reports in $OUT" >&2

#!/usr/bin/env bash
# Cold start and memory per idle session family: seeds the Postgres snapshot store with N
# session families (default 1,000,000, five per synthetic user, each with its per-user index
# row, copied from a real family made through the API), then starts a release node with an
# empty data directory, which restores from Postgres. Reports the time from process start to
# /readyz = 200 and the node's resident memory against a baseline node restored from the same
# store without the extra families, then the CPU the session sweeper spends looking them over.
#
# With `ended`, the seeded families ended long ago: the script then reports how long the
# leader's sweeper takes to delete them all, and the CPU it used.
#
#   loadtest/scripts/coldstart.sh [families] [live|ended]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
MODE=${2:-live}
# Each seeded family: the template's record under a synthetic user (`t.value`, `uid` in the
# seeding SQL below), in `ended` mode with both deadlines at the epoch.
FAMILY="jsonb_set(t.value, '{Family,user}', to_jsonb(uid))"
case $MODE in
  live) ;;
  ended) FAMILY="jsonb_set(jsonb_set($FAMILY, '{Family,idle_deadline}', '1'), '{Family,absolute_deadline}', '1')" ;;
  *) echo "mode must be live or ended" >&2; exit 2 ;;
esac
BIN=./target/release/tessera
DB=tessera_coldstart
PSQL="psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

eval "$($BIN secrets)"
export TESSERA_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB TESSERA_LOG=warn
export TESSERA_LISTEN=127.0.0.1:18080 TESSERA_PEER_LISTEN=127.0.0.1:17070
URL=http://127.0.0.1:18080

$PSQL -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"

wait_ready() {
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' $URL/readyz)" = 200 ] && return 0
    sleep 0.02
  done
  echo "node never became ready" >&2; return 1
}
rss_kib() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
live_keys() { curl -s $URL/v1/cluster | sed -n 's/.*"live":\([0-9]*\).*/\1/p'; }

# 1. One real account and session, flushed to the store by a graceful stop.
TESSERA_DATA_DIR=$WORK/template $BIN serve & PID=$!
wait_ready
curl -s -o /dev/null $URL/v1/users -H 'content-type: application/json' \
  -d '{"email":"template@example.com","password":"correct horse battery staple"}'
curl -s -o /dev/null $URL/v1/login -H 'content-type: application/json' \
  -H 'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0' \
  -d '{"email":"template@example.com","password":"correct horse battery staple"}'
sleep 1.5; kill -TERM $PID; wait $PID || true

# 2. Baseline: a node restored from the store as it is.
TESSERA_DATA_DIR=$WORK/baseline $BIN serve & PID=$!
wait_ready; sleep 5; BASE=$(rss_kib $PID)
kill -TERM $PID; wait $PID || true

# 3. N families (and their per-user index rows) over N/5 synthetic users.
echo "seeding $N families..."
$PSQL -d $DB <<SQL
CREATE TEMP TABLE ids AS
  SELECT i,
         translate(rtrim(encode(decode(md5('f' || i), 'hex'), 'base64'), '='), '+/', '-_') AS fid,
         (substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-4' || substr(m, 14, 3) || '-8' || substr(m, 18, 3) || '-' || substr(m, 21, 12)) AS uid
  FROM (SELECT i, md5('u' || (i / 5)) AS m FROM generate_series(1, $N) i) s;
INSERT INTO kv_store (key, version, value)
  SELECT 'fam/' || fid, t.version, $FAMILY
  FROM ids, (SELECT version, value FROM kv_store WHERE key LIKE 'fam/%' LIMIT 1) t;
INSERT INTO kv_store (key, version, value)
  SELECT 'ufam/' || uid || '/' || fid, t.version, t.value
  FROM ids, (SELECT version, value FROM kv_store WHERE key LIKE 'ufam/%' LIMIT 1) t;
ANALYZE kv_store;
SQL
ROWS=$($PSQL -d $DB -At -c "SELECT count(*) FROM kv_store")

# 4. Cold start: empty data directory, restore from Postgres.
START=$(date +%s.%N)
TESSERA_DATA_DIR=$WORK/cold $BIN serve & PID=$!
wait_ready
READY=$(date +%s.%N) READY_CPU=$(cpu_ticks $PID)
sleep 5; LOADED=$(rss_kib $PID)
FAMILIES=$(live_keys)

# 5. The sweeper: with live families, the CPU it spends looking them over (10 s, otherwise
# idle); with ended ones, the time and CPU it takes to delete them all.
if [ "$MODE" = live ]; then
  T0=$(date +%s.%N) C0=$(cpu_ticks $PID)
  sleep 10
else
  T0=$READY C0=$READY_CPU # the sweeper starts once the node leads
  until [ "$(live_keys)" -lt 100 ]; do sleep 1; done
fi
T1=$(date +%s.%N) C1=$(cpu_ticks $PID) LEFT=$(live_keys) SWEPT_RSS=$(rss_kib $PID)
kill -TERM $PID; wait $PID || true

awk -v mode="$MODE" -v n="$N" -v rows="$ROWS" -v s="$START" -v r="$READY" -v base="$BASE" -v loaded="$LOADED" -v live="$FAMILIES" 'BEGIN {
  printf "store rows: %d (live keys after restore: %s)\n", rows, live
  printf "cold start to ready: %.2f s\n", r - s
  if (mode == "ended") exit # the sweeper is already deleting them
  printf "resident memory: baseline %.1f MiB, with %d families %.1f MiB\n", base / 1024, n, loaded / 1024
  printf "per family (record + per-user index row): %.0f bytes\n", (loaded - base) * 1024 / n
}'
awk -v mode="$MODE" -v t0="$T0" -v t1="$T1" -v c0="$C0" -v c1="$C1" -v left="$LEFT" -v rss="$SWEPT_RSS" -v tick="$(getconf CLK_TCK)" 'BEGIN {
  if (mode == "live") printf "sweeper over live families: %.1f%% of one core (%.2f s CPU in %.1f s)\n", (c1 - c0) / tick / (t1 - t0) * 100, (c1 - c0) / tick, t1 - t0
  else printf "sweeper: ended families deleted in %.1f s, %.2f s CPU; %d keys left, resident memory %.1f MiB\n", t1 - t0, (c1 - c0) / tick, left, rss / 1024
}'
[ -n "${KEEP:-}" ] || $PSQL -c "DROP DATABASE IF EXISTS $DB"

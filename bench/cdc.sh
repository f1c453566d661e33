#!/usr/bin/env bash
# Change data capture from PostgreSQL (`read = "cdc"`), hosted in `sluice server`, in one run:
#  1. the snapshot: pgbench's tables at SCALE (100 000 accounts per unit) copied to the shared
#     PostgreSQL, rows/s;
#  2. end-to-end lag at fixed change rates (RATES, one UPDATE per pgbench transaction, for
#     DURATION s each): `sluice_replication_lag_seconds` (source commit -> sink commit of the
#     oldest transaction of each checkpoint) sampled every 0.2 s from /metrics, p50 and p99; the rate
#     pgbench reached; the server's RSS;
#  3. catch-up: the job paused while pgbench writes as fast as it can for PAUSE s, then
#     resumed: changes/s until the confirmed position reaches the WAL end. Two references read
#     the same backlog, one after the other: PostgreSQL's own logical replication (a
#     subscription on the target server, disabled during the burst, into a copy of the
#     tables — decoding, transport and apply: what Sluice does) and pg_recvlogical with
#     test_decoding into /dev/null (decoding and transport only: the raw-protocol floor).
# Prints a summary table (bench/results/cdc-summary.md).
#
#   bash bench/cdc.sh                          # SCALE=10, RATES="1000 5000 10000", 30 s each
#   SCALE=50 DURATION=60 PAUSE=300 bash bench/cdc.sh
#
# Needs the private wal_level=logical PostgreSQL of scripts/test-services.sh (127.0.0.1:55432),
# the shared one (5432), curl, jq and pgbench. Work files under $BENCH_HOME/work/cdc.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE=${SCALE:-10}
RATES=${RATES:-1000 5000 10000}
DURATION=${DURATION:-30}
PAUSE=${PAUSE:-60}
CHECKPOINT=${CHECKPOINT:-200ms}   # the job's checkpoint_interval: lag includes it
CLIENTS=${CLIENTS:-4}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
WORK=$BENCH_HOME/work/cdc
RESULTS=$ROOT/bench/results
BASE=http://127.0.0.1:$PORT
SRC_DB=sluice_cdcbench
DST_DB=sluice_cdcbench_target
SUB_DB=sluice_cdcbench_sub
mkdir -p "$WORK" "$RESULTS"

command -v curl >/dev/null && command -v jq >/dev/null || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl jq; }
bash scripts/test-services.sh >/dev/null
SRC="psql -X -q -At -h 127.0.0.1 -p 55432 -U postgres"
DST="psql -X -q -At -h 127.0.0.1 -p 5432 -U postgres"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "building sluice (release)"
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice

SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  $DST -d "$SUB_DB" -c "ALTER SUBSCRIPTION cdcbench_sub DISABLE" -c "ALTER SUBSCRIPTION cdcbench_sub SET (slot_name = NONE)" \
    -c "DROP SUBSCRIPTION cdcbench_sub" >/dev/null 2>&1 || true
  $SRC -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
    WHERE slot_name IN ('sluice_cdcbench', 'cdcbench_ref', 'cdcbench_sub') AND NOT active" >/dev/null 2>&1 || true
}
trap cleanup EXIT
api() {
  curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$BASE$2"
}
metric() {  # metric NAME -> the job's value
  curl -s -H "Authorization: Bearer $TOKEN" "$BASE/metrics" |
    awk -v n="$1" '$1 ~ "^"n"\\{" && $1 ~ /job="cdcbench"/ {print $2}' | tail -1
}
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }
pct() {  # pct P < numbers
  sort -g | awk -v p="$1" '{a[NR]=$1} END{ if (!NR) {print "-"; exit} i=int(p/100*NR+0.999); if (i<1) i=1; printf "%.3f", a[i] }'
}
wal_num() { $SRC -d "$SRC_DB" -c "SELECT pg_current_wal_lsn() - '0/0'"; }

echo "== preparing: pgbench -i -s $SCALE on :55432, an empty target on :5432"
cleanup
$SRC -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('sluice_cdcbench', 'cdcbench_ref', 'cdcbench_sub')" >/dev/null
$DST -d postgres -c "DROP DATABASE IF EXISTS $SUB_DB WITH (FORCE)" -c "CREATE DATABASE $SUB_DB"
$SRC -d postgres -c "DROP DATABASE IF EXISTS $SRC_DB WITH (FORCE)" -c "CREATE DATABASE $SRC_DB"
$DST -d postgres -c "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)" -c "CREATE DATABASE $DST_DB"
"$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p 55432 -U postgres "$SRC_DB" 2>&1 | tail -1
ROWS=$($SRC -d "$SRC_DB" -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_tellers) + (SELECT count(*) FROM pgbench_branches)")
cat > "$WORK/update.sql" <<EOT
\set aid random(1, 100000 * $SCALE)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
EOT

st=$WORK/state; rm -rf "$st"; mkdir -p "$st"
TOKEN=$("$SLUICE" --state "$st" token create --role admin --name bench 2>/dev/null)
"$SLUICE" --state "$st" --log-level warn server --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$BASE/health" && break; sleep 0.1; done

SUMMARY=$WORK/summary.txt; : > "$SUMMARY"
row() { printf '%s|%s|%s|%s|%s\n' "$@" >> "$SUMMARY"; }

echo "== 1. snapshot of $ROWS rows, then streaming"
JOB=$(jq -nc --arg src "postgres://postgres@127.0.0.1:55432/$SRC_DB" --arg dst "postgres://postgres@127.0.0.1:5432/$DST_DB" --arg cp "$CHECKPOINT" \
  '{name: "cdcbench", config: {job: {checkpoint_interval: $cp},
    source: {type: "postgres", url: $src, read: "cdc", tables: ["public.pgbench_accounts", "public.pgbench_branches", "public.pgbench_tellers"]},
    sink: {type: "postgres", url: $dst, write: "upsert"}}}')
t0=$(date +%s.%N)
api POST /connectors "$JOB" >/dev/null
until [ -n "$(metric sluice_replication_confirmed_position)" ]; do
  kill -0 "$SERVER_PID" || { echo "the server died"; tail "$WORK/server.log"; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N)
snap=$(echo "$t1 - $t0" | bc -l)
got=$($DST -d "$DST_DB" -c "SELECT count(*) FROM pgbench_accounts")
[ "$got" = "$((100000 * SCALE))" ] || { echo "snapshot incomplete: $got accounts"; exit 1; }
printf '   %.1f s, %.0f rows/s, RSS %s MB\n' "$snap" "$(echo "$ROWS / $snap" | bc -l)" "$(rss_mb)"
row snapshot "$ROWS rows" "$(printf '%.1f s (%.0f rows/s)' "$snap" "$(echo "$ROWS / $snap" | bc -l)")" "-" "RSS $(rss_mb) MB"

echo "== 2. lag at fixed change rates ($DURATION s each, checkpoint_interval $CHECKPOINT)"
for rate in $RATES; do
  samples=$WORK/lag-$rate.txt; : > "$samples"; rss_max=0
  "$PGBIN/pgbench" -n -R "$rate" -T "$DURATION" -c "$CLIENTS" -j 2 -f "$WORK/update.sql" \
    -h 127.0.0.1 -p 55432 -U postgres "$SRC_DB" > "$WORK/pgbench-$rate.txt" 2>&1 &
  PB=$!
  sleep 1
  while kill -0 "$PB" 2>/dev/null; do
    metric sluice_replication_lag_seconds >> "$samples"
    r=$(rss_mb); rss_max=$(echo "if ($r > $rss_max) $r else $rss_max" | bc -l)
    sleep 0.2
  done
  wait "$PB" || true
  tps=$(awk '/^tps = /{printf "%.0f", $3}' "$WORK/pgbench-$rate.txt")
  p50=$(pct 50 < "$samples"); p99=$(pct 99 < "$samples"); mx=$(pct 100 < "$samples")
  echo "   target $rate/s: reached $tps/s, lag p50 $p50 s, p99 $p99 s, max $mx s, RSS max ${rss_max} MB"
  row "lag at $rate changes/s" "reached $tps/s" "p50 $p50 s, p99 $p99 s, max $mx s" "-" "RSS max ${rss_max} MB"
done

echo "== 3. catch-up after a ${PAUSE}s pause, against a subscription and pg_recvlogical on the same backlog"
# The reference subscriber: the same tables in $SUB_DB, filled by its own initial copy, then
# disabled (its slot keeps the backlog) until its turn.
$SRC -d "$SRC_DB" -c "DROP PUBLICATION IF EXISTS cdcbench_sub" \
  -c "CREATE PUBLICATION cdcbench_sub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers" >/dev/null
"$PGBIN/pg_dump" -s -h 127.0.0.1 -p 55432 -U postgres -t pgbench_accounts -t pgbench_branches \
  -t pgbench_tellers "$SRC_DB" | $DST -d "$SUB_DB" >/dev/null
$DST -d "$SUB_DB" -c "CREATE SUBSCRIPTION cdcbench_sub CONNECTION 'host=127.0.0.1 port=55432 user=postgres dbname=$SRC_DB' PUBLICATION cdcbench_sub WITH (slot_name = 'cdcbench_sub')" >/dev/null
until [ "$($DST -d "$SUB_DB" -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.5; done
$DST -d "$SUB_DB" -c "ALTER SUBSCRIPTION cdcbench_sub DISABLE" >/dev/null
until [ "$($SRC -d "$SRC_DB" -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'cdcbench_sub'")" = f ]; do sleep 0.2; done
api PUT /connectors/cdcbench/pause >/dev/null
sleep 2
$SRC -d "$SRC_DB" -c "SELECT 1 FROM pg_create_logical_replication_slot('cdcbench_ref', 'test_decoding')" >/dev/null
"$PGBIN/pgbench" -n -T "$PAUSE" -c "$CLIENTS" -j 2 -f "$WORK/update.sql" \
  -h 127.0.0.1 -p 55432 -U postgres "$SRC_DB" > "$WORK/pgbench-burst.txt" 2>&1
CHANGES=$(awk '/number of transactions actually processed/{split($0, a, ": "); split(a[2], b, "/"); print b[1]}' "$WORK/pgbench-burst.txt")
END_LSN=$($SRC -d "$SRC_DB" -c "SELECT pg_current_wal_lsn()")
END_NUM=$(wal_num)
t0=$(date +%s.%N)
api PUT /connectors/cdcbench/resume >/dev/null
while :; do
  c=$(metric sluice_replication_confirmed_position); c=${c:-0}
  [ "$(echo "$c >= $END_NUM" | bc -l)" = 1 ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
catch=$(echo "$t1 - $t0" | bc -l)
t0=$(date +%s.%N)
$DST -d "$SUB_DB" -c "ALTER SUBSCRIPTION cdcbench_sub ENABLE" >/dev/null
until [ "$($SRC -d "$SRC_DB" -c "SELECT confirmed_flush_lsn >= '$END_LSN' FROM pg_replication_slots WHERE slot_name = 'cdcbench_sub'")" = t ]; do
  sleep 0.1
done
t1=$(date +%s.%N)
sub=$(echo "$t1 - $t0" | bc -l)
t0=$(date +%s.%N)
"$PGBIN/pg_recvlogical" -h 127.0.0.1 -p 55432 -U postgres -d "$SRC_DB" --slot cdcbench_ref \
  --start --endpos "$END_LSN" -f /dev/null --no-loop
t1=$(date +%s.%N)
ref=$(echo "$t1 - $t0" | bc -l)
s_rate=$(echo "$CHANGES / $catch" | bc -l); r_rate=$(echo "$CHANGES / $ref" | bc -l)
u_rate=$(echo "$CHANGES / $sub" | bc -l)
printf '   %s changes: sluice %.1f s (%.0f/s), subscription %.1f s (%.0f/s), pg_recvlogical %.1f s (%.0f/s)\n' \
  "$CHANGES" "$catch" "$s_rate" "$sub" "$u_rate" "$ref" "$r_rate"
row "catch-up, $CHANGES changes" "$(printf '%.0f changes/s' "$s_rate")" "$(printf '%.1f s' "$catch")" \
  "$(printf 'subscription %.0f/s; pg_recvlogical %.0f/s' "$u_rate" "$r_rate")" \
  "$(printf '× %.2f of the subscription, × %.2f of the floor' "$(echo "$s_rate / $u_rate" | bc -l)" "$(echo "$s_rate / $r_rate" | bc -l)")"

# The target equals the source at the end (the benchmark measures a correct copy).
want=$($SRC -d "$SRC_DB" -c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
for _ in $(seq 100); do
  got=$($DST -d "$DST_DB" -c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
  [ "$got" = "$want" ] && break; sleep 0.2
done
[ "$got" = "$want" ] || { echo "target differs from source: $got vs $want"; exit 1; }
echo "   target equals source (sum of balances, count): $got"

OUT=$RESULTS/cdc-summary.md
{
  echo "| case | measure | value | reference | note |"
  echo "|---|---|---|---|---|"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$SUMMARY"
  echo
  echo "$(nproc) cores; SCALE=$SCALE, DURATION=${DURATION}s, PAUSE=${PAUSE}s, checkpoint_interval $CHECKPOINT, $(date -u +%Y-%m-%d)."
} > "$OUT"
cat "$OUT"

#!/usr/bin/env bash
# Change data capture from MariaDB's binary log (`type = "mysql"`, `read = "cdc"`) into
# PostgreSQL, in one run:
#  1. the snapshot: ROWS rows of a small table (id, varchar, int) read without locks and
#     written as upserts, rows/s and peak RSS;
#  2. catch-up: the job stopped while the source changes every row twice — one transaction of
#     ROWS updates (a large transaction) and ROWS/1000 transactions of 1000 updates — then
#     started again: changes/s until the target equals the source (sum of the counter column).
#     The reference reads the same binary log range with `mariadb-binlog
#     --read-from-remote-server -v` into /dev/null (transport and row decoding only, no apply:
#     the floor of what any binlog reader pays).
# Prints a summary table (bench/results/cdc-mysql-summary.md).
#
#   bash bench/cdc-mysql.sh              # ROWS=1000000
#   ROWS=200000 bash bench/cdc-mysql.sh
#
# Needs the private MariaDB with the binary log of scripts/test-services.sh (127.0.0.1:53306)
# and the shared PostgreSQL (5432). Work files under $BENCH_HOME/work/cdc-mysql.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-1000000}
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
WORK=$BENCH_HOME/work/cdc-mysql
RESULTS=$ROOT/bench/results
SRC_DB=sluice_cdcbench
DST_DB=sluice_cdcbench_target
mkdir -p "$WORK" "$RESULTS"
rm -rf "$WORK/state" "$WORK"/*.log

bash scripts/test-services.sh >/dev/null
MY="mariadb --no-defaults -h127.0.0.1 -P53306 -uroot -N -B"
DST="psql -X -q -At -h 127.0.0.1 -p 5432 -U postgres"

echo "building sluice (release)"
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice

PID=
cleanup() { [ -n "$PID" ] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; }
trap cleanup EXIT
now() { date +%s.%N; }
peak_mb() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$PID/status"; }
target_sum() { $DST -d "$DST_DB" -c "SELECT coalesce(sum(n), -1) FROM t" 2>/dev/null || echo -1; }
start() {
  SLUICE_LOG=info "$SLUICE" --state "$WORK/state" run "$WORK/job.toml" >/dev/null 2>"$WORK/run$1.log" &
  PID=$!
}

echo "== preparing: $ROWS rows on :53306, an empty target on :5432"
$MY -e "DROP DATABASE IF EXISTS $SRC_DB; CREATE DATABASE $SRC_DB"
$MY "$SRC_DB" -e "CREATE TABLE t (id int PRIMARY KEY, v varchar(40), n int NOT NULL);
  INSERT INTO t SELECT seq, concat('value ', seq), 0 FROM seq_1_to_$ROWS"
$DST -d postgres -c "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)" -c "CREATE DATABASE $DST_DB"
cat > "$WORK/job.toml" <<EOF
[job]
name = "cdcbench"
checkpoint_interval = "1s"
[source]
type = "mysql"
url = "mysql://root@127.0.0.1:53306/$SRC_DB"
read = "cdc"
[sink]
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/$DST_DB"
write = "upsert"
EOF

echo "== 1. snapshot"
t0=$(now)
start 1
# Until the target holds every row (the stream starts once the source side of the snapshot
# is read; the end of the snapshot is when its last rows are committed).
target_count() { $DST -d "$DST_DB" -c "SELECT count(*) FROM t" 2>/dev/null || echo 0; }
until grep -q "Streaming changes" "$WORK/run1.log" && [ "$(target_count)" = "$ROWS" ]; do
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/run1.log"; exit 1; }
  sleep 0.2
done
t1=$(now)
snap_s=$(echo "$t1 - $t0" | bc -l)
snap_rate=$(echo "$ROWS / $snap_s" | bc -l)
snap_rss=$(peak_mb)
printf "snapshot: %d rows in %.1f s = %.0f rows/s, peak RSS %s MB\n" "$ROWS" "$snap_s" "$snap_rate" "$snap_rss"
kill -TERM "$PID"; wait "$PID" || true; PID=

echo "== 2. catch-up: $((2 * ROWS)) changes written while the job is stopped"
read -r FILE0 POS0 _ < <($MY -e "SHOW MASTER STATUS")
$MY "$SRC_DB" -e "UPDATE t SET n = n + 1"
for ((k = 1; k <= ROWS; k += 1000)); do
  echo "UPDATE t SET n = n + 1 WHERE id BETWEEN $k AND $((k + 999));"
done | $MY "$SRC_DB"
want=$($MY "$SRC_DB" -e "SELECT sum(n) FROM t")
changes=$((2 * ROWS))
t0=$(now)
start 2
until [ "$(target_sum)" = "$want" ]; do
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/run2.log"; exit 1; }
  sleep 0.2
done
t1=$(now)
catch_s=$(echo "$t1 - $t0" | bc -l)
catch_rate=$(echo "$changes / $catch_s" | bc -l)
catch_rss=$(peak_mb)
printf "catch-up: %d changes in %.1f s = %.0f changes/s, peak RSS %s MB\n" "$changes" "$catch_s" "$catch_rate" "$catch_rss"
kill -TERM "$PID"; wait "$PID" || true; PID=

echo "== reference: mariadb-binlog reads and decodes the same range"
t0=$(now)
mariadb-binlog --no-defaults --read-from-remote-server -h127.0.0.1 -P53306 -uroot \
  --start-position="$POS0" --to-last-log --base64-output=DECODE-ROWS -v "$FILE0" >/dev/null
t1=$(now)
ref_s=$(echo "$t1 - $t0" | bc -l)
ref_rate=$(echo "$changes / $ref_s" | bc -l)
printf "mariadb-binlog: %.1f s = %.0f changes/s\n" "$ref_s" "$ref_rate"

ratio=$(echo "$catch_rate / $ref_rate" | bc -l)
{
  echo "# MySQL/MariaDB change capture ($(date -u +%F), $(nproc) cores, ROWS=$ROWS)"
  echo
  echo "| measure | Sluice | reference | ratio |"
  echo "| --- | --- | --- | --- |"
  printf "| snapshot rows/s (peak RSS) | %.0f (%s MB) | - | - |\n" "$snap_rate" "$snap_rss"
  printf "| catch-up changes/s, MariaDB → PostgreSQL (peak RSS) | %.0f (%s MB) | mariadb-binlog -v to /dev/null: %.0f | ×%.2f |\n" \
    "$catch_rate" "$catch_rss" "$ref_rate" "$ratio"
} | tee "$RESULTS/cdc-mysql-summary.md"

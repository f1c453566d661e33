#!/usr/bin/env bash
# Crash soak: copy a PostgreSQL table into another database (and into MariaDB), SIGKILL the
# copy at random moments for DURATION seconds, resume until done, then compare source and
# target row for row. Prints the number of kills and the verdict; exits 1 on any difference.
#
#   bash bench/soak.sh                        # 200k rows, 300 s, PG -> PG append
#   ROWS=2000000 DURATION=1800 SINK=mysql WRITE=upsert bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-200000}
DURATION=${DURATION:-300}
SINK=${SINK:-postgres}       # postgres | mysql
WRITE=${WRITE:-append}       # append | upsert | overwrite
MAX_DELAY_MS=${MAX_DELAY_MS:-800}
bash scripts/test-services.sh >/dev/null
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
WORK=$(mktemp -d /var/tmp/sluice-soak.XXXXXX)
SRC=sluice_soak_src_$$; DST=sluice_soak_dst_$$
PSQL="psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres"
MARIADB="mariadb -h127.0.0.1 -uroot -N -B --default-character-set=utf8mb4"
cleanup() {
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null 2>&1 || true
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS $DST WITH (FORCE)" >/dev/null 2>&1 || true
  $MARIADB -e "DROP DATABASE IF EXISTS $DST" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

$PSQL -d postgres -c "CREATE DATABASE $SRC"
$PSQL -d "$SRC" -c "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text, at timestamptz);
  INSERT INTO t SELECT g, g * 7, md5(g::text), '2020-01-01'::timestamptz + g * interval '1 second'
  FROM generate_series(1, $ROWS) g; ANALYZE t;"
if [ "$SINK" = mysql ]; then
  $MARIADB -e "CREATE DATABASE $DST CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
  SINK_BLOCK="type = \"mysql\"
url = \"mysql://root@127.0.0.1:3306/$DST\"
table_map = { \"public.t\" = \"t\" }"
else
  $PSQL -d postgres -c "CREATE DATABASE $DST"
  SINK_BLOCK="type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/$DST\""
fi
cat > "$WORK/job.toml" <<EOT
[job]
name = "soak"
parallelism = 2
[source]
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/$SRC"
tables = ["public.t"]
chunk_rows = 10000
[sink]
$SINK_BLOCK
write = "$WRITE"
EOT

cd "$WORK"
checksum_src() { $PSQL -d "$SRC" -c "SELECT count(*), sum(id), sum(v), md5(string_agg(note, '' ORDER BY id)) FROM t"; }
checksum_dst() {
  if [ "$SINK" = mysql ]; then
    $MARIADB "$DST" -e "SET SESSION group_concat_max_len = 1 << 30; SELECT count(*), sum(id), sum(v), md5(group_concat(note ORDER BY id SEPARATOR '')) FROM t" | tr '\t' '|'
  else
    $PSQL -d "$DST" -c "SELECT count(*), sum(id), sum(v), md5(string_agg(note, '' ORDER BY id)) FROM t"
  fi
}
drop_dst() {
  if [ "$SINK" = mysql ]; then $MARIADB "$DST" -e "DROP TABLE IF EXISTS t"; else $PSQL -d "$DST" -c "DROP TABLE IF EXISTS t"; fi
}
want=$(checksum_src)
kills=0; rounds=0; end=$((SECONDS + DURATION))
# Each round copies the table from scratch, SIGKILLing the copy at random moments and
# resuming it until it finishes, then compares source and target.
while [ $SECONDS -lt $end ]; do
  drop_dst; flag=--from-scratch
  while :; do
    "$SLUICE" run --no-progress $flag job.toml >run.log 2>&1 & pid=$!; flag=
    sleep "$(( 50 + RANDOM % MAX_DELAY_MS ))e-3"
    if kill -9 "$pid" 2>/dev/null; then
      rc=0; wait "$pid" 2>/dev/null || rc=$?
      [ $rc = 137 ] && kills=$((kills + 1))   # else it had just ended by itself
      [ $rc = 0 ] || [ $rc = 137 ] || { echo "a run failed ($rc):"; tail -5 run.log; exit 1; }
    else
      rc=0; wait "$pid" || rc=$?
      [ $rc = 0 ] || { echo "a run failed ($rc):"; tail -5 run.log; exit 1; }
      break
    fi
    state=$("$SLUICE" status soak --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["runs"][0]["state"])')
    [ "$state" = FINISHED ] && break
  done
  rounds=$((rounds + 1))
  got=$(checksum_dst)
  if [ "$got" != "$want" ]; then
    echo "DIFFERENT after round $rounds ($kills kills so far)"; echo "source: $want"; echo "target: $got"; exit 1
  fi
done
echo "rows=$ROWS sink=$SINK write=$WRITE duration=${DURATION}s rounds=$rounds kills=$kills: every round IDENTICAL"

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
MAX_DELAY_MS=${MAX_DELAY_MS:-1500}
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
kills=0; end=$((SECONDS + DURATION)); finished=0
while [ $SECONDS -lt $end ]; do
  "$SLUICE" run --no-progress job.toml >/dev/null 2>&1 & pid=$!
  sleep "$(awk -v m="$MAX_DELAY_MS" 'BEGIN{srand(); printf "%.3f", (50 + rand() * m) / 1000}')"
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null || true; kills=$((kills + 1)); else
    wait "$pid" && { finished=1; break; }
  fi
  state=$("$SLUICE" status soak --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["runs"][0]["state"])')
  [ "$state" = FINISHED ] && { finished=1; break; }
done
[ $finished = 1 ] || "$SLUICE" run --no-progress job.toml >/dev/null
src_sum=$($PSQL -d "$SRC" -c "SELECT count(*), sum(id), sum(v), md5(string_agg(note, '' ORDER BY id)) FROM t")
if [ "$SINK" = mysql ]; then
  dst_sum=$($MARIADB "$DST" -e "SET SESSION group_concat_max_len = 1 << 30; SELECT count(*), sum(id), sum(v), md5(group_concat(note ORDER BY id SEPARATOR '')) FROM t" | tr '\t' '|')
else
  dst_sum=$($PSQL -d "$DST" -c "SELECT count(*), sum(id), sum(v), md5(string_agg(note, '' ORDER BY id)) FROM t")
fi
echo "rows=$ROWS sink=$SINK write=$WRITE duration=${DURATION}s kills=$kills"
echo "source: $src_sum"
echo "target: $dst_sum"
if [ "$src_sum" = "$dst_sum" ]; then echo "IDENTICAL"; else echo "DIFFERENT"; exit 1; fi

#!/usr/bin/env bash
# `sluice verify` against reladiff on TPC-H lineitem (loaded by bench/databases.sh), in one
# run: PostgreSQL↔PostgreSQL and PostgreSQL↔MariaDB, with exactly 100 injected differences
# (40 updated, 30 deleted, 30 inserted rows). Both tools compare `li` = lineitem plus an
# integer key `id` (row_number), since sluice verify chunks by a single integer key.
# Prints wall times, the ratio and whether each tool found exactly the 100 keys.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
WORK=$BENCH_HOME/work/verify
VENV=$BENCH_HOME/venv-reladiff
mkdir -p "$WORK"
export PGPASSWORD=postgres
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
MY=(mariadb -h127.0.0.1 -ubench -pbench --local-infile=1)

if pgrep -f bench/databases.sh >/dev/null; then
  echo "bench/databases.sh is running; run this afterwards" >&2; exit 1
fi
if [ ! -x "$VENV/bin/reladiff" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "reladiff[postgresql,mysql]"
fi
cargo build -q --release -p sluice
SLUICE=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice

# 100 differences: 40 updated, 30 deleted, 30 inserted (copies of rows 1..30 with new ids).
UPD=$(seq -s, 100003 100003 4000120)
DEL=$(seq -s, 150001 150001 4500030)
INJECT="UPDATE li SET l_quantity = l_quantity + 1 WHERE id IN ($UPD);
DELETE FROM li WHERE id IN ($DEL);
INSERT INTO li SELECT id + 10000000, l_orderkey, l_partkey, l_suppkey, l_linenumber,
  l_quantity, l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate,
  l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode, l_comment FROM li WHERE id <= 30"
# SKIP_PREP=1: reuse the tables (and their injected differences) of an earlier run.
if [ -z "${SKIP_PREP:-}" ]; then
echo "== preparing li (lineitem + id) in PG src, PG dst, MariaDB vdst"
"${PSQL[@]}" -d src -c "DROP TABLE IF EXISTS li; CREATE TABLE li AS
  SELECT row_number() OVER () AS id, * FROM lineitem; ALTER TABLE li ADD PRIMARY KEY (id)"
"${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'dst'" | grep -q 1 \
  || "${PSQL[@]}" -d postgres -c "CREATE DATABASE dst"
"${PSQL[@]}" -d dst -c "DROP TABLE IF EXISTS li; CREATE TABLE li (id bigint PRIMARY KEY,
  l_orderkey bigint, l_partkey int, l_suppkey int, l_linenumber int, l_quantity numeric(15,2),
  l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2),
  l_returnflag char(1), l_linestatus char(1), l_shipdate date, l_commitdate date,
  l_receiptdate date, l_shipinstruct char(25), l_shipmode char(10), l_comment varchar(44))"
"${PSQL[@]}" -d src -c "COPY li TO STDOUT" > "$WORK/li.tsv"
"${PSQL[@]}" -d dst -c "\\copy li FROM '$WORK/li.tsv'"
"${MY[@]}" -e "CREATE DATABASE IF NOT EXISTS vdst; USE vdst; DROP TABLE IF EXISTS li;
  CREATE TABLE li (id bigint PRIMARY KEY, l_orderkey bigint, l_partkey int, l_suppkey int,
  l_linenumber int, l_quantity decimal(15,2), l_extendedprice decimal(15,2),
  l_discount decimal(15,2), l_tax decimal(15,2), l_returnflag char(1), l_linestatus char(1),
  l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct char(25),
  l_shipmode char(10), l_comment varchar(44)) CHARACTER SET utf8mb4;
  LOAD DATA LOCAL INFILE '$WORK/li.tsv' INTO TABLE li"
rm -f "$WORK/li.tsv"

"${PSQL[@]}" -d dst -c "$INJECT"
"${MY[@]}" vdst -e "$INJECT"
# Statistics, as autovacuum / InnoDB would have them on a table in use.
"${PSQL[@]}" -d src -c "ANALYZE li"
"${PSQL[@]}" -d dst -c "ANALYZE li"
"${MY[@]}" vdst -e "ANALYZE TABLE li" >/dev/null
fi
WANT=$( (echo "$UPD,$DEL" | tr , '\n'; seq 10000001 10000030) | sort -n | tr '\n' ' ')

cat > "$WORK/pg.toml" <<TOML
[job]
name = "verify-bench-pg"
[source]
type = "postgres"
url = "postgres://postgres:postgres@127.0.0.1:5432/src"
tables = ["public.li"]
[sink]
type = "postgres"
url = "postgres://postgres:postgres@127.0.0.1:5432/dst"
TOML
cat > "$WORK/my.toml" <<TOML
[job]
name = "verify-bench-my"
[source]
type = "postgres"
url = "postgres://postgres:postgres@127.0.0.1:5432/src"
tables = ["public.li"]
[sink]
type = "mysql"
url = "mysql://bench:bench@127.0.0.1:3306/vdst"
table_map = { "public.li" = "vdst.li" }
TOML

now() { date +%s.%N; }
sluice_run() { # job -> seconds, keys found
  local t0 t1
  t0=$(now)
  "$SLUICE" verify "$1" --format json --max-diffs 1000 > "$WORK/out.json" || [ $? -eq 4 ]
  t1=$(now)
  S_SECS=$(echo "$t1 - $t0" | bc)
  S_KEYS=$(python3 -c "import json;d=json.load(open('$WORK/out.json'));print(' '.join(str(k) for k in sorted(x['key'] for t in d['tables'] for x in t['diffs'])))")
}
reladiff_run() { # target url -> seconds, keys found
  local t0 t1
  t0=$(now)
  "$VENV/bin/reladiff" postgresql://postgres:postgres@127.0.0.1/src li "$1" li \
    -k id -c '%' > "$WORK/reladiff.txt" || true
  t1=$(now)
  R_SECS=$(echo "$t1 - $t0" | bc)
  R_KEYS=$(python3 -c "
import re
ks=set()
for l in open('$WORK/reladiff.txt'):
    m=re.match(r\"^[-+] \\(?['\\\"]?(\\d+)\", l)
    if m: ks.add(int(m.group(1)))
print(' '.join(str(k) for k in sorted(ks)))")
}
report() { # name
  local s_ok r_ok
  s_ok=no; [ "$S_KEYS " = "$WANT" ] && s_ok=yes
  r_ok=no; [ "$R_KEYS " = "$WANT" ] && r_ok=yes
  printf '%-14s sluice verify %8.2fs (exact 100: %s, %s keys)   reladiff %8.2fs (exact 100: %s, %s keys)   ratio %.1fx\n' \
    "$1" "$S_SECS" "$s_ok" "$(wc -w <<<"$S_KEYS")" "$R_SECS" "$r_ok" "$(wc -w <<<"$R_KEYS")" \
    "$(echo "$R_SECS / $S_SECS" | bc -l)"
}

echo "== lineitem SF1: $("${PSQL[@]}" -d src -tAc 'SELECT count(*) FROM li') rows, 100 injected differences"
sluice_run "$WORK/pg.toml"
reladiff_run postgresql://postgres:postgres@127.0.0.1/dst
report "PG -> PG"
sluice_run "$WORK/my.toml"
reladiff_run mysql://bench:bench@127.0.0.1/vdst
report "PG -> MariaDB"

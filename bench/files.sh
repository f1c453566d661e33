#!/usr/bin/env bash
# File benchmarks: TPC-H lineitem CSV -> Parquet and CSV -> SQLite, Sluice beside the
# reference tools measured in the same run (DuckDB from PyPI; the sqlite3 shell's .import).
# Prints wall time, peak RSS and the ratio to the reference, at 1M rows and at the full SF.
#
#   bash bench/files.sh            # SF=1 (6,001,215 rows), one round
#   SF=1 ROUNDS=3 bash bench/files.sh
#
# Big files live under $BENCH_HOME (default /var/tmp/etlbench, shared with ../shared/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SF=${SF:-1}
ROUNDS=${ROUNDS:-1}
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
VENV=$BENCH_HOME/venv-files
DATA=$BENCH_HOME/data/sf$SF
WORK=$BENCH_HOME/work/files
RESULTS=$ROOT/bench/results
mkdir -p "$DATA" "$WORK" "$RESULTS"

command -v sqlite3 >/dev/null && [ -x /usr/bin/time ] || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlite3 time; }
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check tpchgen-cli==4.0.0 duckdb==1.4.1 ||
  "$VENV/bin/pip" install -q --disable-pip-version-check tpchgen-cli duckdb

if [ ! -s "$DATA/lineitem.csv" ]; then
  echo "generating lineitem SF=$SF in $DATA"
  "$VENV/bin/tpchgen-cli" csv -s "$SF" -T lineitem -o "$DATA" --overwrite
fi
ONE_M=$BENCH_HOME/data/lineitem-1m.csv
[ -s "$ONE_M" ] || head -n 1000001 "$DATA/lineitem.csv" > "$ONE_M"

echo "building sluice (release)"
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice

timed() {   # timed NAME CMD... -> appends "name wall_s rss_mb" to $RUNS
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$WORK/$name.log" 2>&1 || {
    echo "FAILED: $name (see $WORK/$name.log)"; tail -5 "$WORK/$name.log"; return 1; }
  t1=$(date +%s.%N)
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$WORK/$name.time")
  printf '%s %.2f %s\n' "$name" "$(echo "$t1 - $t0" | bc -l)" "$rss" >> "$RUNS"
}

job() {     # job FILE CSV SINKTOML
  cat > "$1" <<EOT
[job]
name = "bench-$(basename "$1" .toml)"
[source]
type = "csv"
path = "$2"
table = "lineitem"
[sink]
$3
EOT
}

RUNS=$WORK/runs.txt; : > "$RUNS"
for round in $(seq "$ROUNDS"); do
  for size in 1m sf$SF; do
    csv=$([ "$size" = 1m ] && echo "$ONE_M" || echo "$DATA/lineitem.csv")
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"
    # CSV -> Parquet (snappy, both tools' default)
    timed "duckdb_parquet_$size" "$VENV/bin/python" -c "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_csv('$csv')) TO '$WORK/out/duck.parquet' (FORMAT parquet)\")"
    job "$WORK/pq.toml" "$csv" "type = \"parquet\"
path = \"$WORK/out/pq\""
    timed "sluice_parquet_$size" "$SLUICE" --state "$WORK/state" run --no-progress "$WORK/pq.toml"
    # CSV -> SQLite (the shell's .import into a fresh table; Sluice creates typed columns)
    rm -f "$WORK/out/ref.db" "$WORK/out/sl.db"*
    timed "sqlite3_import_$size" sqlite3 "$WORK/out/ref.db" ".import --csv $csv lineitem"
    job "$WORK/sq.toml" "$csv" "type = \"sqlite\"
url = \"sqlite://$WORK/out/sl.db\""
    timed "sluice_sqlite_$size" "$SLUICE" --state "$WORK/state" run --no-progress "$WORK/sq.toml"
    rows_ref=$(sqlite3 "$WORK/out/ref.db" "select count(*) from lineitem")
    rows_sl=$(sqlite3 "$WORK/out/sl.db" "select count(*) from lineitem")
    [ "$rows_ref" = "$rows_sl" ] || { echo "ROW COUNT MISMATCH: sqlite3 $rows_ref vs sluice $rows_sl"; exit 1; }
  done
done

{
  echo "| case | rows | wall s (median) | peak RSS MB | × reference |"
  echo "|---|---:|---:|---:|---:|"
  for size in 1m sf$SF; do
    rows=$([ "$size" = 1m ] && echo 1,000,000 || echo "SF$SF")
    for pair in "duckdb_parquet sluice_parquet" "sqlite3_import sluice_sqlite"; do
      set -- $pair
      ref=$(awk -v n="$1_$size" '$1==n{print $2}' "$RUNS" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
      for c in "$1" "$2"; do
        w=$(awk -v n="${c}_$size" '$1==n{print $2}' "$RUNS" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
        r=$(awk -v n="${c}_$size" '$1==n{print $3}' "$RUNS" | sort -n | tail -1)
        printf '| %s | %s | %s | %s | %.2f |\n' "$c" "$rows" "$w" "$r" "$(echo "$w / $ref" | bc -l)"
      done
    done
  done
} | tee "$RESULTS/files-summary.md"

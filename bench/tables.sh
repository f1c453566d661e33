#!/usr/bin/env bash
# Many small tables: a directory of N two-row CSV files copied into SQLite, one table per file,
# beside the sqlite3 shell importing the same files (one `.import` per file) in the same run.
# What it watches is growth: the time per table must stay flat as N grows (it once grew
# quadratically: 1,000 tables 4 s, 2,000 tables 13.4 s, 10,000 tables 451 s).
#
#   bash bench/tables.sh                  # N = 1000 2000 10000
#   COUNTS="1000 5000" bash bench/tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COUNTS=${COUNTS:-1000 2000 10000}
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
WORK=$BENCH_HOME/work/tables
RESULTS=$ROOT/bench/results
mkdir -p "$WORK" "$RESULTS"

command -v sqlite3 >/dev/null || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlite3; }

echo "building sluice (release)"
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice

seconds() { # seconds CMD... -> wall seconds on stdout, the command's output in $WORK/last.log
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$WORK/last.log" 2>&1 || { echo "FAILED: $* (see $WORK/last.log)" >&2; tail -5 "$WORK/last.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

{
  echo "| tables | sqlite3 .import s | sluice s | sluice ms/table | × reference |"
  echo "|---:|---:|---:|---:|---:|"
} > "$RESULTS/tables-summary.md"

for n in $COUNTS; do
  dir=$WORK/in-$n
  if [ ! -d "$dir" ] || [ "$(ls "$dir" | wc -l)" != "$n" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    for i in $(seq "$n"); do printf 'id,name\n%d,a\n%d,b\n' "$((2*i))" "$((2*i+1))" > "$dir/t$i.csv"; done
  fi
  rm -rf "$WORK/out" "$WORK/state"; mkdir -p "$WORK/out"
  # The reference: one .import per file into its own table, in one sqlite3 process.
  for i in $(seq "$n"); do echo ".import --csv $dir/t$i.csv t$i"; done > "$WORK/import.sql"
  ref=$(seconds sqlite3 "$WORK/out/ref.db" ".read $WORK/import.sql")
  cat > "$WORK/job.toml" <<EOT
[job]
name = "bench-tables-$n"
[source]
type = "csv"
path = "$dir"
[sink]
type = "sqlite"
url = "sqlite://$WORK/out/sl.db"
EOT
  sl=$(seconds "$SLUICE" --state "$WORK/state" run --no-progress "$WORK/job.toml")
  rows=$(sqlite3 "$WORK/out/sl.db" "select count(*) from sqlite_master where type='table' and name not like '\\_sluice%' escape '\\'")
  [ "$rows" = "$n" ] || { echo "TABLE COUNT MISMATCH: $rows tables for $n files"; exit 1; }
  printf '| %s | %.2f | %.2f | %.2f | %.2f |\n' "$n" "$ref" "$sl" "$(echo "$sl * 1000 / $n" | bc -l)" \
    "$(echo "$sl / $ref" | bc -l)" | tee -a "$RESULTS/tables-summary.md"
done
cat "$RESULTS/tables-summary.md"

#!/usr/bin/env bash
# Database benchmarks: TPC-H lineitem copied PG->PG, MySQL->PG and PG->MySQL by Sluice, beside
# the reference pipes and peer tools measured in the same run with ../shared/bench.
# Prints wall time, peak RSS (mover only) and the ratio to the reference of each pair.
#
#   bash bench/databases.sh                    # SF=1, Sluice and the pipes
#   PEERS="ingestr_pg2pg sling_pg2pg ingestr_my2pg pgloader_my2pg" bash bench/databases.sh
#   SF=3 bash bench/databases.sh               # memory must not grow with SF
#   SKIP_SETUP=1 bash bench/databases.sh       # servers tuned and data loaded already
#
# ../shared/bench/setup.sh tunes and restarts the local servers and installs the peers;
# ../shared/bench/gen.sh loads lineitem into PostgreSQL db `src` and MariaDB db `src`.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
SF=${SF:-1}
PEERS=${PEERS:-}
[ -d "$SHARED" ] || { echo "error: $SHARED not found (set SHARED_BENCH)"; exit 2; }
source "$SHARED/common.sh"
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS" "$WORK/sluice"

# Set-up without touching the servers' configuration (../shared/bench/setup.sh tunes and
# restarts them, which needs the Debian layout of /etc/mysql): databases, the `bench` MariaDB
# user the peers log in with, the peers' venvs, then TPC-H loaded by ../shared/bench/gen.sh.
if [ -z "${SKIP_SETUP:-}" ]; then
  bash scripts/test-services.sh >/dev/null
  for db in src dst; do
    psql -X -At -d postgres -c "select 1 from pg_database where datname='$db'" | grep -q 1 ||
      psql -X -q -d postgres -c "CREATE DATABASE $db"
  done
  psql -X -q -d postgres -c "ALTER USER postgres PASSWORD 'postgres'"
  mariadb -h127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS src; CREATE DATABASE IF NOT EXISTS dst;
    CREATE USER IF NOT EXISTS '$MY_USER'@'127.0.0.1' IDENTIFIED BY '$MY_PASS';
    CREATE USER IF NOT EXISTS '$MY_USER'@'localhost' IDENTIFIED BY '$MY_PASS';
    GRANT ALL ON *.* TO '$MY_USER'@'127.0.0.1'; GRANT ALL ON *.* TO '$MY_USER'@'localhost';"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  [ -x "$VENV/bin/tpchgen-cli" ] || "$VENV/bin/pip" install -q --disable-pip-version-check tpchgen-cli==4.0.0
  if [[ " $PEERS " == *ingestr* ]]; then
    [ -x "$VENV_INGESTR/bin/python" ] || python3 -m venv "$VENV_INGESTR"
    [ -x "$VENV_INGESTR/bin/ingestr" ] || "$VENV_INGESTR/bin/pip" install -q --disable-pip-version-check ingestr==1.1.19
  fi
  [ "$(cat "$BENCH_HOME/sf" 2>/dev/null)" = "$SF" ] || bash "$SHARED/gen.sh" "$SF" || exit 1
fi
cargo build --release -q -p sluice || exit 1
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice
RUNS=$WORK/sluice/runs-sf$SF.txt; : > "$RUNS"

pgq() { psql -X -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
myq() { $MY -N "$1" -e "$2"; }
quiesce() { pgq postgres "CHECKPOINT" >/dev/null; sync; sleep 2; }

timed() {   # timed NAME 'command' -> appends "name wall_s rss_mb rows" to $RUNS
  local name=$1 cmd=$2 t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/sluice/$name.time" bash -o pipefail -c "$cmd" > "$WORK/sluice/$name.log" 2>&1 ||
    { echo "FAILED: $name (see $WORK/sluice/$name.log)"; tail -5 "$WORK/sluice/$name.log"; }
  t1=$(date +%s.%N)
  rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$WORK/sluice/$name.time")
  WALL=$(echo "$t1 - $t0" | bc -l)
  printf '%s %.2f %s\n' "$name" "$WALL" "$rss" >> "$RUNS"
  printf '%-22s %7.2f s  %5s MB\n' "$name" "$WALL" "$rss"
}

job() {  # job NAME SOURCE-BLOCK SINK-BLOCK
  printf '[job]\nname = "%s"\nparallelism = 2\n\n[source]\n%s\n\n[sink]\n%s\n' "$1" "$2" "$3" > "$WORK/sluice/$1.toml"
}
pg_dst_fresh() { pgq dst "DROP TABLE IF EXISTS public.lineitem CASCADE; DROP TABLE IF EXISTS public._sluice_checkpoints; DROP TABLE IF EXISTS public._sluice_jobs" >/dev/null 2>&1; }
my_dst_fresh() { myq dst "DROP TABLE IF EXISTS lineitem; DROP TABLE IF EXISTS _sluice_checkpoints; DROP TABLE IF EXISTS _sluice_jobs"; }

ROWS=$(pgq src "select count(*) from lineitem") || { echo "error: no lineitem in PostgreSQL db src; run without SKIP_SETUP"; exit 1; }
[ "$(myq src 'select count(*) from lineitem')" = "$ROWS" ] || { echo "error: MariaDB src.lineitem does not match PostgreSQL's"; exit 1; }
echo "lineitem SF$SF: $ROWS rows"

# --- PG -> PG: the binary COPY pipe into a table with the primary key, then Sluice ---
pg_dst_fresh; psql -X -q -d dst -f "$SHARED/ddl/pg_lineitem.sql"; quiesce
timed pg_copy_bin_pipe 'psql -X -d src -c "COPY lineitem TO STDOUT (FORMAT binary)" | psql -X -d dst -c "COPY lineitem FROM STDIN (FORMAT binary)"'
pg_dst_fresh; quiesce
job sluice_pg2pg "type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/src\"
tables = [\"public.lineitem\"]" "type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/dst\""
timed sluice_pg2pg "'$SLUICE' --state '$WORK/sluice/state' run --no-progress --from-scratch '$WORK/sluice/sluice_pg2pg.toml'"
[ "$(pgq dst 'select count(*) from lineitem')" = "$ROWS" ] || echo "!! sluice_pg2pg row count differs"

# --- MySQL -> PG: the mariadb client piped into COPY, then Sluice ---
pg_dst_fresh; psql -X -q -d dst -f "$SHARED/ddl/pg_lineitem.sql"; quiesce
timed my2pg_pipe "$MY --quick -N -B src -e 'select * from lineitem' | psql -X -d dst -c \"COPY lineitem FROM STDIN\""
pg_dst_fresh; quiesce
job sluice_my2pg "type = \"mysql\"
url = \"$MY_SRC_URL\"
tables = [\"lineitem\"]" "type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/dst\""
timed sluice_my2pg "'$SLUICE' --state '$WORK/sluice/state' run --no-progress --from-scratch '$WORK/sluice/sluice_my2pg.toml'"
[ "$(pgq dst 'select count(*) from lineitem')" = "$ROWS" ] || echo "!! sluice_my2pg row count differs"

# --- PG -> MySQL: Sluice (peers: ingestr, sling through PEERS) ---
my_dst_fresh
job sluice_pg2my "type = \"postgres\"
url = \"postgres://postgres@127.0.0.1:5432/src\"
tables = [\"public.lineitem\"]" "type = \"mysql\"
url = \"mysql://$MY_USER:$MY_PASS@127.0.0.1:3306/dst\"
table_map = { \"public.lineitem\" = \"lineitem\" }"
timed sluice_pg2my "'$SLUICE' --state '$WORK/sluice/state' run --no-progress --from-scratch '$WORK/sluice/sluice_pg2my.toml'"
[ "$(myq dst 'select count(*) from lineitem')" = "$ROWS" ] || echo "!! sluice_pg2my row count differs"

# --- peers, timed by ../shared/bench/peers.sh in this same run ---
for c in $PEERS; do
  line=$(bash "$SHARED/peers.sh" "$c" | grep "^$c ")
  echo "$line"
  wall=$(sed -n 's/.*wall=\([0-9.]*\)s.*/\1/p' <<<"$line"); rss=$(sed -n 's/.*rss=\([0-9]*\)MB.*/\1/p' <<<"$line")
  [ -n "$wall" ] && printf '%s %s %s\n' "$c" "$wall" "$rss" >> "$RUNS"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
get() { awk -v n="$1" -v f="$2" '$1==n{print $f}' "$RUNS"; }
{
  echo "| case (SF$SF, $ROWS rows) | wall s | peak RSS MB | × reference |"
  echo "|---|---:|---:|---:|"
  for pair in "pg_copy_bin_pipe sluice_pg2pg ingestr_pg2pg sling_pg2pg" "my2pg_pipe sluice_my2pg ingestr_my2pg pgloader_my2pg sling_my2pg" "sluice_pg2my"; do
    set -- $pair; ref=$1
    for c in "$@"; do
      w=$(get "$c" 2); [ -n "$w" ] || continue
      echo "| $c | $w | $(get "$c" 3) | $(ratio "$w" "$(get "$ref" 2)") |"
    done
  done
} | tee "$RESULTS/databases-sf$SF.md"

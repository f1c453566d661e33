#!/usr/bin/env bash
# The server (`sluice server`, Kafka Connect's REST API over Sluice jobs), in one run:
#  1. idle memory: VmRSS right after start with no jobs, with IDLE_JOBS jobs created PAUSED
#     (no run), and with IDLE_JOBS streaming generate jobs at `rate = 1` (a live run each);
#  2. API latency (oha, latency-corrected) of GET /connectors?expand=status,
#     PUT /connectors/{c}/pause (idempotent) and PUT pause|stop (state changes) at QPS
#     requests/s, and of a 10 requests/s single-connection probe, first on the idle server (the reference), then while COPIES generate -> jsonl
#     batch copies run in the same server;
#  3. the cost of hosting a copy: one generate -> jsonl job timed with `sluice run` (the
#     reference) and through the server (POST until status FINISHED), alternated RUNS times.
# Prints a summary table (bench/results/server-summary.md) with ratios to the references.
#
#   bash bench/server.sh                       # ROWS=20000000, RUNS=3, QPS=500, 20 s per case
#   ROWS=10000000 RUNS=5 DURATION=30 bash bench/server.sh
#   SKIP="idle" bash bench/server.sh           # leave out parts: idle, api, overhead
#
# Needs curl, jq, GNU time and oha (installed with `cargo install oha --locked` when missing).
# Everything it writes lives under $BENCH_HOME/work/server (default /var/tmp/etlbench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-20000000}        # rows of the part-3 copy (~12 s on a 2-core machine)
RUNS=${RUNS:-3}               # part 3: runs of each way
IDLE_JOBS=${IDLE_JOBS:-100}   # part 1
COPIES=${COPIES:-10}          # part 2: copies running during the loaded measurement
COPY_ROWS=${COPY_ROWS:-}      # part 2: rows per copy (default: sized from part 3's speed)
QPS=${QPS:-500}               # part 2: requests per second
CONNS=${CONNS:-16}            # part 2: oha connections
DURATION=${DURATION:-20}      # part 2: seconds per case at QPS
PROBE=${PROBE:-10}            # part 2: seconds of the 10 req/s single-connection probe
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
SERVER_LOG=${SERVER_LOG:-info}  # the server's --log-level (info logs every request)
SKIP=${SKIP:-}
BENCH_HOME=${BENCH_HOME:-/var/tmp/etlbench}
WORK=$BENCH_HOME/work/server
RESULTS=$ROOT/bench/results
BASE=http://127.0.0.1:$PORT
OUT=${OUT_DIR:-$WORK/out}     # where the jsonl sinks write (OUT_DIR=/dev/shm/x: no disk)
mkdir -p "$WORK" "$RESULTS"

command -v curl >/dev/null && command -v jq >/dev/null && [ -x /usr/bin/time ] || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl jq time; }
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v oha >/dev/null && [[ " $SKIP " != *" api "* ]]; then
  echo "installing oha (cargo install oha --locked: about 16 CPU-minutes)"
  cargo install -q oha --locked
fi

echo "building sluice (release)"
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice

SERVER_PID=
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

start_server() {  # start_server NAME: a fresh state dir $WORK/NAME, sets SERVER_PID and TOKEN
  stop_server
  local st=$WORK/$1
  if curl -s -o /dev/null "$BASE/health"; then echo "port $PORT is taken: set PORT"; exit 1; fi
  rm -rf "$st"; mkdir -p "$st"
  TOKEN=$("$SLUICE" --state "$st" token create --role admin --name bench 2>/dev/null)
  "$SLUICE" --state "$st" --log-level "$SERVER_LOG" server --listen "127.0.0.1:$PORT" \
    > "$WORK/$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$BASE/health" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start (see $WORK/$1.log)"; tail -5 "$WORK/$1.log"; exit 1
}

api() {  # api METHOD PATH [JSON] -> the body on stdout; fails on an HTTP error
  curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$BASE$2"
}
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }
hwm_mb() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
cpu_pct() {  # cpu_pct TICKS0 TICKS1 SECONDS: the server's CPU use (100 = one core)
  awk -v a="$1" -v b="$2" -v s="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (b-a)/hz/s*100}'
}
median() { sort -n | awk '{a[NR]=$1} END{ if (NR) print a[int((NR+1)/2)]; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0>0) printf "%.2f", a/b; else print "-" }'; }
# A generate -> jsonl batch job as the API takes it (nested): NAME ROWS [INITIAL_STATE]
gen_job() {
  local name=$1 rows=$2 initial=${3:-}
  jq -nc --arg n "$name" --argjson rows "$rows" --arg out "$OUT/$name" --arg init "$initial" \
    '{name: $n, config: {source: {type: "generate", table: "t", rows: $rows},
      sink: {type: "jsonl", path: $out}}} + (if $init == "" then {} else {initial_state: $init} end)'
}
stream_job() {  # a never-ending generate -> jsonl job at `rate` rows/s
  jq -nc --arg n "$1" --argjson rate "$2" --arg out "$OUT/$1" \
    '{name: $n, config: {job: {mode: "streaming"}, source: {type: "generate", table: "t", rate: $rate},
      sink: {type: "jsonl", path: $out, write: "append"}}}'
}

SUMMARY=$WORK/summary.txt; : > "$SUMMARY"   # "part|case|value|reference|ratio|note"
row() { printf '%s|%s|%s|%s|%s|%s\n' "$@" >> "$SUMMARY"; }
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $(nproc) cores, load average $LOAD0 at start"

# ---------------------------------------------------------------- 3 first: it sizes part 2
RUN_MED=; SRV_MED=
if [[ " $SKIP " != *" overhead "* ]]; then
  echo "== 3. one copy of $ROWS rows (generate -> jsonl): sluice run vs the server, $RUNS runs each"
  cat > "$WORK/copy.toml" <<EOT
[job]
name = "bench-server-copy"
[source]
type = "generate"
table = "t"
rows = $ROWS
[sink]
type = "jsonl"
path = "$OUT/cli-copy"
EOT
  start_server copy
  TIMES=$WORK/copy-times.txt; : > "$TIMES"
  quiet() { rm -rf "$OUT"; sync; sleep 2; }
  by_run() {
    quiet
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$WORK/cli.time" "$SLUICE" --state "$WORK/cli-state" run --no-progress \
      --from-scratch "$WORK/copy.toml" > "$WORK/cli.log" 2>&1 ||
      { echo "FAILED: sluice run (see $WORK/cli.log)"; tail -5 "$WORK/cli.log"; exit 1; }
    t1=$(date +%s.%N)
    local w rss
    w=$(echo "$t1 - $t0" | bc -l)
    rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$WORK/cli.time")
    printf 'run %.2f %s\n' "$w" "$rss" >> "$TIMES"
    printf '  sluice run   %7.2f s  peak RSS %4s MB\n' "$w" "$rss"
  }
  by_server() {  # by_server I: from just before the POST to the run's recorded end
    quiet
    local name=copy-$1 t0 t1 st w
    t0=$(date +%s.%N)
    api POST /connectors "$(gen_job "$name" "$ROWS")" > /dev/null
    while :; do   # polled gently: the end time comes from the run's record, not the poll
      sleep 1
      st=$(api GET "/connectors/$name/status" | jq -r '.sluice.state + " " + (.sluice.last_run.ended_at // "")')
      case ${st% *} in
        FINISHED) break ;;
        FAILED|ABORTED|STOPPED|INTERRUPTED)
          echo "FAILED: $name ended $st"; api GET "/connectors/$name/status"; exit 1 ;;
      esac
    done
    t1=$(date -d "${st#* }" +%s.%N)
    w=$(echo "$t1 - $t0" | bc -l)
    printf 'server %.2f %s %s\n' "$w" "$(hwm_mb)" "$(rss_mb)" >> "$TIMES"
    printf '  server       %7.2f s  server VmHWM %s MB, VmRSS after %s MB\n' "$w" "$(hwm_mb)" "$(rss_mb)"
    api DELETE "/connectors/$name" > /dev/null
  }
  for i in $(seq "$RUNS"); do   # alternated, and who goes first alternates too
    if [ $((i % 2)) = 1 ]; then by_run; by_server "$i"; else by_server "$i"; by_run; fi
  done
  stop_server; rm -rf "$OUT"
  RUN_MED=$(awk '$1=="run"{print $2}' "$TIMES" | median)
  SRV_MED=$(awk '$1=="server"{print $2}' "$TIMES" | median)
  RUN_RSS=$(awk '$1=="run"{print $3}' "$TIMES" | sort -n | tail -1)
  SRV_RSS=$(awk '$1=="server"{print $3}' "$TIMES" | sort -n | tail -1)
  all_run=$(awk '$1=="run"{printf "%s%s", s, $2; s=", "}' "$TIMES")
  all_srv=$(awk '$1=="server"{printf "%s%s", s, $2; s=", "}' "$TIMES")
  row 3 "copy $ROWS rows: sluice run (s; runs: $all_run)" "$RUN_MED" "$RUN_MED" 1.00 "peak RSS $RUN_RSS MB"
  rss_after=$(awk '$1=="server"{printf "%s%s", s, $4; s=", "}' "$TIMES")
  row 3 "copy $ROWS rows: server, POST -> FINISHED (s; runs: $all_srv)" "$SRV_MED" "$RUN_MED" \
    "$(ratio "$SRV_MED" "$RUN_MED")" "goal ≤ 1.03×; server VmHWM $SRV_RSS MB, VmRSS after each copy (deleted): $rss_after MB"
fi

# ---------------------------------------------------------------- 1. idle memory
if [[ " $SKIP " != *" idle "* ]]; then
  echo "== 1. idle server memory"
  start_server idle-empty
  sleep 3
  api GET '/connectors?expand=status' > /dev/null
  sleep 1
  rss0=$(rss_mb)
  echo "  no jobs: VmRSS $rss0 MB"
  row 1 "idle, no jobs: VmRSS MB" "$rss0" "" "" "goal ≤ 30 MB"

  t0=$(date +%s.%N)
  for i in $(seq "$IDLE_JOBS"); do api POST /connectors "$(gen_job "paused-$i" 1000000 PAUSED)" > /dev/null; done
  t1=$(date +%s.%N)
  sleep 3
  api GET '/connectors?expand=status' > /dev/null
  sleep 1
  rss1=$(rss_mb)
  n=$(api GET '/connectors?expand=status' | jq '[.[] | select(.status.connector.state == "PAUSED")] | length')
  echo "  $IDLE_JOBS PAUSED jobs ($n PAUSED; created in $(printf '%.1f' "$(echo "$t1 - $t0" | bc -l)") s): VmRSS $rss1 MB"
  row 1 "idle, $IDLE_JOBS jobs created PAUSED (no run): VmRSS MB" "$rss1" "$rss0" "$(ratio "$rss1" "$rss0")" \
    "$(awk -v a="$rss1" -v b="$rss0" -v n="$IDLE_JOBS" 'BEGIN{printf "%.0f KB per job", (a-b)*1024/n}')"

  start_server idle-stream
  sleep 2
  rss2a=$(rss_mb)
  for i in $(seq "$IDLE_JOBS"); do api POST /connectors "$(stream_job "stream-$i" 1)" > /dev/null; done
  sleep 10
  c0=$(cpu_ticks); rss2=$(rss_mb)
  sleep 20
  c1=$(cpu_ticks); rss3=$(rss_mb)
  n=$(api GET '/connectors?expand=status' | jq '[.[] | select(.status.sluice.state == "RUNNING")] | length')
  echo "  $IDLE_JOBS streaming jobs at 1 row/s ($n RUNNING): VmRSS $rss2 MB after 10 s, $rss3 MB 20 s later, CPU $(cpu_pct "$c0" "$c1" 20)%"
  row 1 "idle, $IDLE_JOBS streaming generate jobs at rate 1/s ($n RUNNING): VmRSS MB" "$rss3" "$rss2a" \
    "$(ratio "$rss3" "$rss2a")" "$rss2 MB 10 s after creating them, $rss3 MB 20 s later; server CPU $(cpu_pct "$c0" "$c1" 20)% of a core"
  stop_server; rm -rf "$OUT"
fi

# ---------------------------------------------------------------- 2. API latency
fsync_probe() {  # p50 and p99 ms of 200 fsyncs of a 4 KB write beside the state store
  python3 - "$WORK" <<'EOT'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
ts = []
for i in range(200):
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    t = time.perf_counter(); os.fsync(fd); ts.append((time.perf_counter() - t) * 1000)
ts.sort(); os.close(fd); os.unlink(p)
print(f"{ts[99]:.2f} {ts[197]:.2f}")
EOT
}
oha_case() {  # oha_case LABEL QPS CONNS SECONDS METHOD PATH -> P50 P99 NOTE, prints a line
  local label=$1 qps=$2 conns=$3 secs=$4 method=$5 out=$WORK/oha-$1.json c0 c1 fs
  shift 5   # the rest: a path, or oha options that make the URL
  local target=("$@")
  [[ ${target[0]} == /* ]] && target=("$BASE${target[0]}")
  local rps codes cpu
  fs=$(fsync_probe)
  c0=$(cpu_ticks)
  oha --no-tui --output-format json -z "${secs}s" -q "$qps" -c "$conns" --latency-correction \
    -m "$method" -H "Authorization: Bearer $TOKEN" "${target[@]}" > "$out"
  c1=$(cpu_ticks)
  P50=$(jq '.latencyPercentiles.p50 * 1000 * 100 | round / 100' "$out")
  P99=$(jq '.latencyPercentiles.p99 * 1000 * 100 | round / 100' "$out")
  rps=$(jq '.summary.requestsPerSec' "$out")
  codes=$(jq -c '.statusCodeDistribution' "$out")
  cpu=$(cpu_pct "$c0" "$c1" "$secs")
  NOTE="$(printf '%.0f of %s req/s, status %s, server CPU %s%%, %s threads, VmRSS %s MB, fsync p50/p99 %s/%s ms' \
    "$rps" "$qps" "$codes" "$cpu" "$(awk '/^Threads/{print $2}' "/proc/$SERVER_PID/status")" \
    "$(rss_mb)" "${fs% *}" "${fs#* }")"
  printf '  %-22s p50 %9.2f ms  p99 %9.2f ms  %s\n' "$label" "$P50" "$P99" "$NOTE"
}
running_copies() { api GET '/connectors?expand=status' | jq '[.[] | select(.status.sluice.state == "RUNNING")] | length'; }
if [[ " $SKIP " != *" api "* ]]; then
  if [ -z "$COPY_ROWS" ]; then
    # Long enough to outlast the loaded cases with a margin: the copies share the cores with
    # each other and with the load generator.
    if [ -n "$RUN_MED" ]; then
      COPY_ROWS=$(awk -v r="$ROWS" -v s="$RUN_MED" -v d="$DURATION" -v p="$PROBE" -v n="$COPIES" \
        'BEGIN{printf "%d", r/s * (3*d + 2*p + 20) * 1.5 / n}')
    else
      COPY_ROWS=20000000
    fi
  fi
  echo "== 2. API latency: $QPS req/s over $CONNS connections for ${DURATION} s, and 10 req/s over 1 connection for ${PROBE} s,"
  echo "   on the idle server ($((COPIES + 11)) jobs, none running), then with $COPIES copies of $COPY_ROWS rows running"
  start_server api
  for i in $(seq "$COPIES"); do api POST /connectors "$(gen_job "copy-$i" "$COPY_ROWS" PAUSED)" > /dev/null; done
  # PUT pause goes to a job of its own, already PAUSED: what is measured is the request
  # (the target state and an audit entry persisted), and the copies keep running.
  api POST /connectors "$(gen_job pause-target 1000 PAUSED)" > /dev/null
  # ... and jobs that random PUT pause / PUT stop move between PAUSED and STOPPED: about half
  # of those requests change the target state, which is persisted and audited.
  for i in $(seq 0 9); do api POST /connectors "$(gen_job "flip-$i" 1000 PAUSED)" > /dev/null; done
  sleep 2
  declare -A R
  cases() {  # cases idle|copies
    local phase=$1 c ep what kinds
    for ep in list pause flip; do
      kinds="load probe"
      case $ep in
        list) set -- GET '/connectors?expand=status'; what='GET /connectors?expand=status' ;;
        pause) set -- PUT /connectors/pause-target/pause; what='PUT /connectors/{c}/pause (already PAUSED)' ;;
        flip) set -- PUT --rand-regex-url "http://127[.]0[.]0[.]1:$PORT/connectors/flip-[0-9]/(pause|stop)"
          what='PUT /connectors/flip-N/pause or /stop, 10 jobs (about half change the state)'; kinds=load ;;
      esac
      for c in $kinds; do
        local before after
        before=$(running_copies)
        if [ $c = load ]; then oha_case "$phase-$ep-$QPS" "$QPS" "$CONNS" "$DURATION" "$@"
        else oha_case "$phase-$ep-probe" 10 1 "$PROBE" "$@"; fi
        after=$(running_copies)
        R[$phase,$ep,$c]="$P50|$P99|$NOTE|$before/$after|$what"
      done
    done
  }
  cases idle
  for i in $(seq "$COPIES"); do api PUT "/connectors/copy-$i/resume" > /dev/null; done
  sleep 3
  cases copies
  for ep in list pause flip; do
    for c in load probe; do
      [ -n "${R[idle,$ep,$c]:-}" ] || continue
      IFS='|' read -r ip50 ip99 inote _ what <<<"${R[idle,$ep,$c]}"
      IFS='|' read -r p50 p99 note ran _ <<<"${R[copies,$ep,$c]}"
      how=$([ $c = load ] && echo "$QPS req/s, $CONNS conns" || echo "10 req/s, 1 conn")
      row 2 "$what, $how, idle: p50 / p99 ms" "$ip50 / $ip99" "" "" "$inote"
      row 2 "$what, $how, $COPIES copies running: p50 ms" "$p50" "$ip50" "$(ratio "$p50" "$ip50")" "$note"
      row 2 "$what, $how, $COPIES copies running: p99 ms" "$p99" "$ip99" "$(ratio "$p99" "$ip99")" \
        "copies RUNNING before/after: $ran"
    done
  done
  rows_done=$(api GET '/connectors?expand=status' | jq '[.[] | .status.sluice.run.rows_written // .status.sluice.last_run.rows_written // 0] | add')
  echo "  rows written by the copies so far: $rows_done of $((COPIES * COPY_ROWS)); server VmHWM $(hwm_mb) MB"
  stop_server; rm -rf "$OUT"
fi

# ---------------------------------------------------------------- summary
{
  echo "| part | case | value | reference | × reference | note |"
  echo "|---|---|---:|---:|---:|---|"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$SUMMARY"
  echo
  echo "$(date +%F), $(nproc) cores, load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
} | tee "$RESULTS/server-summary.md"

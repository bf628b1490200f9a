#!/usr/bin/env bash
# Measures rta on this machine and prints one table: every figure, the
# baseline measured in the same run where there is one, the target, and the
# exact command. `bench/run.sh` writes BENCHMARKS.md; `bench/run.sh --smoke`
# runs the same steps at tiny sizes (CI does, so the harness cannot rot).
# Needs: wrk (apt-get install wrk), a release build (made here).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=BENCHMARKS.md
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1; OUT=/dev/null ;;
    --out=*) OUT="${arg#--out=}" ;;
    *) echo "usage: bench/run.sh [--smoke] [--out=FILE]" >&2; exit 2 ;;
  esac
done

if [ "$SMOKE" = 1 ]; then
  DUR=2s; ROUNDS=1; SINGLE_ROUNDS=2; BATCH_ROUNDS=1; N_SMALL=20000; N_LARGE=60000; DISTINCT=20000; WS_CLIENTS=20; PROBES=10; REPLAY=20000; N_QUERY=40000
else
  DUR=10s; ROUNDS=3; SINGLE_ROUNDS=5; BATCH_ROUNDS=5; N_SMALL=1000000; N_LARGE=10000000; DISTINCT=1000000; WS_CLIENTS=500; PROBES=100; REPLAY=1000000; N_QUERY=10000000
fi
ONLY=${BENCH_ONLY:-all}  # BENCH_ONLY=queries runs section 8 alone; =cluster section 9; =ingest sections 0-2

command -v wrk >/dev/null || { echo "bench/run.sh needs wrk: apt-get install wrk" >&2; exit 2; }
command -v clickhouse-server >/dev/null || { echo "bench/run.sh needs clickhouse-server: apt-get install clickhouse-server" >&2; exit 2; }
command -v nats-server >/dev/null || { echo "bench/run.sh needs nats-server: apt-get install nats-server" >&2; exit 2; }
# The smoke run checks the harness, not speed: the debug build CI already has will do.
if [ "$SMOKE" = 1 ]; then PROFILE=debug; FLAGS=(); else PROFILE=release; FLAGS=(--release); fi
cargo build "${FLAGS[@]}" --locked --bin rta --example baseline_server --example bench_client >&2
RTA=target/$PROFILE/rta
BASE=target/$PROFILE/examples/baseline_server
CLIENT=target/$PROFILE/examples/bench_client
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/lib.sh
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
total_events() { curl -sf "http://127.0.0.1:$1/api/metrics?top=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalEvents"])'; }

# Starts rta on a data directory; sets RTA_PID and RTA_PORT.
start_rta() { # DIR [PORT]
  RTA_PORT=${2:-$(free_port)}
  "$RTA" serve --addr "127.0.0.1:$RTA_PORT" --data-dir "$1" 2>>"$WORK/rta.log" &
  RTA_PID=$!; PIDS+=("$RTA_PID")
  wait_up "$RTA_PORT"
}
stop_rta() { kill -TERM "$RTA_PID"; wait "$RTA_PID" 2>/dev/null || true; }
start_base() {
  BASE_PORT=$(free_port)
  "$BASE" "127.0.0.1:$BASE_PORT" 2>/dev/null &
  BASE_PID=$!; PIDS+=("$BASE_PID")
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$BASE_PORT/" && break; sleep 0.05; done
}
# The durable baseline: group commit into a preallocated log, on the same disk as rta's data.
start_durable() {
  DURABLE_PORT=$(free_port)
  "$BASE" "127.0.0.1:$DURABLE_PORT" --durable "$WORK/durable.log" 2>/dev/null &
  DURABLE_PID=$!; PIDS+=("$DURABLE_PID")
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$DURABLE_PORT/" && break; sleep 0.05; done
}

source bench/clickhouse.sh
source bench/nats.sh

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | \`$6\` |"); printf '[%4ss] %-48s %-22s %-22s %-8s\n' "$SECONDS" "$1" "$2" "$3" "$4" >&2; }

# wrk scripts: one event per request, and 1,000-event NDJSON bodies.
printf '%s' "$ONE_EVENT" > "$WORK/one.json"
post_script "$WORK/one.json" application/json > "$WORK/one.lua"
"$RTA" generate --count 1000 --batch 1000 --seed 1 --output "$WORK/batch.ndjson" --quiet
post_script "$WORK/batch.ndjson" application/x-ndjson > "$WORK/batch.lua"
# CPU time (clock ticks: user, system) of a process's threads, summed by thread name.
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ < "$t/comm")" "$(awk '{print $14, $15}' "$t/stat")"
  done 2>/dev/null | awk '{u[$1] += $2; s[$1] += $3} END {for (k in u) print k, u[k], s[k]}' | sort
}
# Requests/s of one wrk run; answers other than 2xx and socket errors are
# added up per port in $WORK/errors (a figure with errors in it is no figure).
# Given a PID and a name, each thread's CPU time over the run and the
# requests are added to $WORK/cpu-NAME.
rps() { # PORT CONNS SCRIPT [PID NAME]
  local out
  [ -n "${4:-}" ] && thread_ticks "$4" > "$WORK/ticks-before"
  out=$(wrk -t2 -c"$2" -d"$DUR" -s "$3" "http://127.0.0.1:$1/api/ingest")
  if [ -n "${4:-}" ]; then
    thread_ticks "$4" | join "$WORK/ticks-before" - |
      awk -v n="$(echo "$out" | awk '/requests in/ {print $1}')" '{print $1, $4 - $2, $5 - $3, n}' >> "$WORK/cpu-$5"
  fi
  echo "$out" | awk -v port="$1" '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print port, n + 0}' >> "$WORK/errors"
  echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}
# CPU per request (us, user+system) by thread group, from $WORK/cpu-NAME:
# the HTTP workers, the writer (rta's, or the durable baseline's, which
# bears the process's name), and the rest.
cpu_per_request() { # NAME WRITER_THREAD
  awk -v w="$2" -v hz="$(getconf CLK_TCK)" '
    { g = ($1 == "tokio-rt-worker") ? "HTTP" : ($1 == w) ? "writer" : "other"; u[g] += $2; s[g] += $3; n[$1] += $4 }
    END { for (k in n) if (n[k] > req) req = n[k]
          split("HTTP writer other", order, " ")
          for (i = 1; i <= 3; i++) { g = order[i]; printf "%s%s %.0f+%.0f", (i > 1 ? ", " : ""), g, u[g] * 1e6 / hz / req, s[g] * 1e6 / hz / req } }' "$WORK/cpu-$1"
}
errors_of() { awk -v port="$1" '$1 == port {n += $2} END {print n + 0}' "$WORK/errors" 2>/dev/null || echo 0; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ "$ONLY" = all ] || [ "$ONLY" = ingest ]; then
echo "== 0: what one flush costs on this disk" >&2
# Every acknowledged ingest waits for one; its CPU time is taken from the
# same two cores as everything else (the baseline never flushes).
N_SYNC=$([ "$SMOKE" = 1 ] && echo 200 || echo 5000)
dd if=/dev/zero of="$WORK/flush" bs=4k count="$N_SYNC" status=none
sync
TIMEFORMAT='%R %S'
flush=$( { time dd if=/dev/zero of="$WORK/flush" bs=4k count="$N_SYNC" oflag=dsync conv=notrunc status=none; } 2>&1 | tail -1)
unset TIMEFORMAT
rm -f "$WORK/flush"
row "0. one durable 4 KiB write on this disk (us: wall, kernel CPU)" "$(echo "$flush" | awk -v n="$N_SYNC" '{printf "%.0f, %.0f", $1 * 1e6 / n, $2 * 1e6 / n}')" "" "" "context" "dd bs=4k count=$N_SYNC oflag=dsync conv=notrunc"

echo "== 1, 2: ingest throughput, rta and the baselines in alternation" >&2
start_rta "$WORK/throughput"
start_base
start_durable
# The plain baseline runs between the two that flush, so neither starts
# while the disk still works off the other's flushes; rta and the durable
# baseline take turns at going first. Five rounds: within one run a round's
# ratio moves by a tenth or more either way (the VM's two cores are shared
# with its host).
durable_round() { d+=("$(rps "$DURABLE_PORT" "$conns" "$WORK/one.lua" "$DURABLE_PID" "durable-$conns")"); }
rta_round() { r+=("$(rps "$RTA_PORT" "$conns" "$WORK/one.lua" "$RTA_PID" "rta-$conns")"); settle "$RTA_PORT" >/dev/null; }
for conns in 8 64; do
  r=(); b=(); d=(); ratios=()
  for i in $(seq 1 "$SINGLE_ROUNDS"); do
    if [ $(( i % 2 )) = 1 ]; then durable_round; else rta_round; fi
    b+=("$(rps "$BASE_PORT" "$conns" "$WORK/one.lua")")
    if [ $(( i % 2 )) = 1 ]; then rta_round; else durable_round; fi
    ratios+=("$(awk -v a="${r[-1]}" -v b="${d[-1]}" 'BEGIN {printf "%.2f", a/b}')")
  done
  R=$(median "${r[@]}"); B=$(median "${b[@]}"); D=$(median "${d[@]}")
  row "1. single-event ingest, $conns connections (req/s)" "$R" "$B" "$(awk -v r="$R" -v b="$B" 'BEGIN {printf "%.2f", r/b}')" ">= 0.6x baseline" "wrk -t2 -c$conns -d$DUR -s one.lua URL/api/ingest"
  row "    the same against the durable baseline (group commit, one fdatasync per group)" "$R" "durable: $D" "$(awk -v r="$R" -v d="$D" 'BEGIN {printf "%.2f", r/d}')" ">= 0.8x durable" "baseline_server ADDR --durable FILE; rta, plain and durable in alternation"
  row "    each round's ratio to the durable baseline" "rounds: ${ratios[*]}" "" "" "context" "the row above, $SINGLE_ROUNDS rounds in alternation"
  row "    CPU per request by thread, user+system (us): rta, durable" "$(cpu_per_request "rta-$conns" rta-writer)" "$(cpu_per_request "durable-$conns" baseline_server)" "" "context" "utime, stime of /proc/PID/task/* over the rounds above"
done
# What Prometheus costs: the same load with /metrics scraped every second,
# in alternation with none (each first in every other round).
# A scraper that, like Prometheus, is one long-lived process (bash's /dev/tcp, no curl per scrape).
scraper() {
  while true; do
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    while read -r -u 3 _; do :; done
    exec 3<&-
    sleep 1
  done
}
scraped_rps() { scraper "$RTA_PORT" >/dev/null & local pid=$!; rps "$RTA_PORT" 8 "$WORK/one.lua"; kill "$pid"; wait "$pid" 2>/dev/null || true; }
r=(); s=()
for i in $(seq 1 $(( ROUNDS * 2 ))); do
  if [ $(( i % 2 )) = 1 ]; then r+=("$(rps "$RTA_PORT" 8 "$WORK/one.lua")"); s+=("$(scraped_rps)")
  else s+=("$(scraped_rps)"); r+=("$(rps "$RTA_PORT" 8 "$WORK/one.lua")"); fi
  settle "$RTA_PORT" >/dev/null
done
R=$(median "${r[@]}"); S=$(median "${s[@]}")
row "    the same, 8 connections, /metrics scraped every second (req/s)" "$S" "not scraped: $R" "$(awk -v s="$S" -v r="$R" 'BEGIN {printf "%.3f", s/r}')" "within 2%" "wrk -t2 -c8 -d$DUR -s one.lua URL/api/ingest, with and without GET /metrics every 1 s"
# Batched ingest with 4 and with 16 clients, in alternation (each first in
# every other round): the two figures are compared with each other, so they
# are measured in the same minutes, like the servers of row 1. Five rounds:
# a round's 4-client figure moves by a tenth either way. The durable
# baseline takes the same bodies, so its own 4 against 16 shows what
# waiting for a flush costs 4 clients, whatever the server does besides.
r4=(); b4=(); d4=(); r16=(); b16=(); d16=(); caught=(); ratios=(); dratios=()
batched_round() { # CONNS: the durable baseline, the plain one, rta, then rta's summaries let finish
  local d b r s
  d=$(rps "$DURABLE_PORT" "$1" "$WORK/batch.lua"); b=$(rps "$BASE_PORT" "$1" "$WORK/batch.lua")
  r=$(rps "$RTA_PORT" "$1" "$WORK/batch.lua"); s=$(settle "$RTA_PORT")
  if [ "$1" = 4 ]; then d4+=("$d"); b4+=("$b"); r4+=("$r"); caught+=("$s"); else d16+=("$d"); b16+=("$b"); r16+=("$r"); fi
}
for i in $(seq 1 "$BATCH_ROUNDS"); do
  if [ $(( i % 2 )) = 1 ]; then batched_round 4; batched_round 16; else batched_round 16; batched_round 4; fi
  ratios+=("$(awk -v a="${r4[-1]}" -v b="${r16[-1]}" 'BEGIN {printf "%.2f", a/b}')")
  dratios+=("$(awk -v a="${d4[-1]}" -v b="${d16[-1]}" 'BEGIN {printf "%.2f", a/b}')")
done
kill -9 "$DURABLE_PID" 2>/dev/null || true
R4=$(( $(median "${r4[@]}") * 1000 )); B4=$(( $(median "${b4[@]}") * 1000 )); D4=$(( $(median "${d4[@]}") * 1000 ))
R16=$(( $(median "${r16[@]}") * 1000 )); B16=$(( $(median "${b16[@]}") * 1000 )); D16=$(( $(median "${d16[@]}") * 1000 ))
row "2. batched ingest, 1,000-event NDJSON, 4 clients (events/s)" "$R4" "$B4" "$(awk -v r="$R4" -v b="$B4" 'BEGIN {printf "%.2f", r/b}')" ">= 1,000,000" "wrk -t2 -c4 -d$DUR -s batch.lua URL/api/ingest"
row "    hour summaries built after such a run (s)" "$(median "${caught[@]}")" "" "" "" "POST /api/query until read.eventsRead <= 1000"
# With more clients the two cores, not the round trips, are the limit.
row "    the same, 16 clients (events/s)" "$R16" "$B16" "$(awk -v r="$R16" -v b="$B16" 'BEGIN {printf "%.2f", r/b}')" ">= 1,000,000" "wrk -t2 -c16 -d$DUR -s batch.lua URL/api/ingest"
row "    4 clients against 16, rta (median against median; each round's ratio)" "$(awk -v a="$R4" -v b="$R16" 'BEGIN {printf "%.2f", a/b}')" "rounds: ${ratios[*]}" "" ">= 0.90" "the two rows above, $BATCH_ROUNDS rounds, 4 and 16 clients in alternation"
row "    the durable baseline, 4 and 16 clients (events/s)" "$D4, $D16" "" "" "context" "baseline_server ADDR --durable FILE, in the same rounds"
row "    4 clients against 16, durable baseline (median against median; each round's ratio)" "$(awk -v a="$D4" -v b="$D16" 'BEGIN {printf "%.2f", a/b}')" "rounds: ${dratios[*]}" "" "context" "the row above: what waiting for a flush costs 4 clients"
row "    answers other than 2xx, and socket errors, in these runs: rta, plain, durable" "$(errors_of "$RTA_PORT"), $(errors_of "$BASE_PORT"), $(errors_of "$DURABLE_PORT")" "" "" "0" "wrk's Non-2xx and socket error counts"
stop_rta; kill -9 "$BASE_PID" 2>/dev/null || true
fi

if [ "$ONLY" = all ]; then
echo "== 3: memory after $N_SMALL and $N_LARGE events, and with $DISTINCT distinct values" >&2
start_rta "$WORK/big"
rss0=$(rss_mb "$RTA_PID")
"$RTA" generate --url "http://127.0.0.1:$RTA_PORT" --interval 0 --batch 1000 --count "$N_SMALL" --quiet 2>"$WORK/gen1.txt"
rss1=$(rss_mb "$RTA_PID")
"$RTA" generate --url "http://127.0.0.1:$RTA_PORT" --interval 0 --batch 1000 --count $(( N_LARGE - N_SMALL )) --quiet 2>"$WORK/gen2.txt"
settle "$RTA_PORT" >/dev/null  # the summaries of the burst, built behind it
rss2=$(rss_mb "$RTA_PID")
row "3a. server RSS after $N_SMALL events (MB)" "$rss1" "at start: $rss0" "" "< 100, flat" "rta generate --interval 0 --batch 1000 --count $N_SMALL"
row "3b. server RSS after $N_LARGE events (MB)" "$rss2" "" "" "< 100, flat" "rta generate --interval 0 --batch 1000 --count $(( N_LARGE - N_SMALL )) (more)"
row "    data directory after $N_LARGE events (MB)" "$(du -sm "$WORK/big" | cut -f1)" "" "" "" "du -sm DATA_DIR"
row "    rta generate end to end (events/s)" "$(grep -o '[0-9]* events/s' "$WORK/gen2.txt" | head -1)" "" "" "" "same"

echo "== 4: /api/metrics latency with $N_LARGE events stored" >&2
lat=$(wrk -t2 -c4 -d"$DUR" --latency "http://127.0.0.1:$RTA_PORT/api/metrics")
p50=$(echo "$lat" | awk '$1=="50%" {print $2}'); p99=$(echo "$lat" | awk '$1=="99%" {print $2}')
row "4. GET /api/metrics latency, $N_LARGE events" "p50 $p50, p99 $p99" "" "" "p99 < 5ms" "wrk -t2 -c4 -d$DUR --latency URL/api/metrics"

echo "== 7: start-up with $N_LARGE events" >&2
stop_rta
port=$(free_port); t0=$(date +%s%N); start_rta "$WORK/big" "$port"; t1=$(date +%s%N)
n=$(total_events "$RTA_PORT")
row "7a. start-up after a clean stop, $n events (ms)" "$(( (t1 - t0) / 1000000 ))" "" "" "< 1000" "rta serve (until /healthz answers)"
"$RTA" generate --url "http://127.0.0.1:$RTA_PORT" --interval 0 --batch 1000 --count $(( N_SMALL / 10 )) --quiet 2>/dev/null
kill -9 "$RTA_PID"; wait "$RTA_PID" 2>/dev/null || true
port=$(free_port); t0=$(date +%s%N); start_rta "$WORK/big" "$port"; t1=$(date +%s%N)
n=$(total_events "$RTA_PORT")
row "7b. start-up after kill -9, $n events (ms)" "$(( (t1 - t0) / 1000000 ))" "" "" "< 1000" "kill -9, then rta serve"
stop_rta

echo "== 3c: $DISTINCT distinct values of one dimension" >&2
start_rta "$WORK/distinct"
rss0=$(rss_mb "$RTA_PID")
"$CLIENT" distinct "http://127.0.0.1:$RTA_PORT" "$DISTINCT" >&2
rss1=$(rss_mb "$RTA_PID")
size=$(curl -sf "http://127.0.0.1:$RTA_PORT/api/metrics" | wc -c)
row "3c. server RSS with $DISTINCT distinct values (MB)" "$rss1" "at start: $rss0" "" "bounded" "bench_client distinct URL $DISTINCT"
row "    /api/metrics size then (bytes)" "$size" "" "" "small" "curl URL/api/metrics | wc -c"
stop_rta

echo "== 5: ingest-to-WebSocket latency, $WS_CLIENTS clients, background load" >&2
start_rta "$WORK/ws"
"$RTA" generate --url "http://127.0.0.1:$RTA_PORT" --rate 2000 --batch 100 --quiet 2>/dev/null &
LOAD=$!; PIDS+=("$LOAD")
ws=$("$CLIENT" ws-latency "http://127.0.0.1:$RTA_PORT" "$WS_CLIENTS" "$PROBES")
kill -INT "$LOAD" 2>/dev/null || true; wait "$LOAD" 2>/dev/null || true
row "5. ingest to WebSocket update, $WS_CLIENTS clients, 2,000 events/s load" "$(echo "$ws" | sed 's/.*deliveries (\(.*\)): \(.*\)/\2 (\1)/')" "" "" "p99 < 300ms" "bench_client ws-latency URL $WS_CLIENTS $PROBES"
stop_rta

echo "== 6: rta replay of $REPLAY lines" >&2
"$RTA" generate --count "$REPLAY" --batch 1000 --seed 7 --output "$WORK/replay.jsonl" --quiet
start_rta "$WORK/replay"
t0=$(date +%s%N)
"$RTA" replay "$WORK/replay.jsonl" --url "http://127.0.0.1:$RTA_PORT" --quiet 2>"$WORK/replay.txt"
t1=$(date +%s%N)
row "6. rta replay of a $REPLAY-line JSONL file (events/s)" "$(awk -v n="$REPLAY" -v ns=$(( t1 - t0 )) 'BEGIN {printf "%.0f", n / (ns / 1e9)}')" "" "" "" "rta replay replay.jsonl"
stop_rta

fi

if [ "$ONLY" = all ] || [ "$ONLY" = queries ]; then
echo "== 8: queries over $N_QUERY stored events, rta and ClickHouse in the same run" >&2
# The same events in both: 30 days up to now, two types, four dimensions.
# rta is asked for the same statistics as ClickHouse ("defaults": false).
best_ms() { # best of 3 wall times of a POST
  local best=
  for _ in 1 2 3; do
    t=$(curl -sS -o "$WORK/answer" -w '%{time_total}' -X POST "$1" -H "content-type: ${3:-application/json}" --data-binary "$2")
    grep -q '"error"\|Exception' "$WORK/answer" && { echo "query failed: $(head -c 300 "$WORK/answer")" >&2; return 1; }
    best=$(awk -v t="$t" -v b="$best" 'BEGIN {ms = t * 1000; if (b == "" || ms < b) b = ms; printf "%.0f", b}')
  done
  echo "$best"
}
start_rta "$WORK/query"
# One end for both loaders, so both hold the same events.
export QUERY_END_MS=$(( $(date +%s) * 1000 ))
"$CLIENT" query-data rta "http://127.0.0.1:$RTA_PORT" "$N_QUERY" 2>"$WORK/qload-rta.txt"
rss_load=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$RTA_PID/status")
start_clickhouse "$WORK/clickhouse"
ch "CREATE TABLE events (type String, ts DateTime, dim_keys Array(String), dim_values Array(String), measure_keys Array(String), measure_values Array(Float64)) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (type, ts)"
"$CLIENT" query-data clickhouse "$CH_URL" "$N_QUERY" 2>"$WORK/qload-ch.txt"
ch "OPTIMIZE TABLE events FINAL" || true
# rta's hour summaries trail ingest (their builder gives way while the
# loads keep the cores busy): queries are timed once they have caught up.
t0=$SECONDS
for _ in $(seq 1 360); do
  left=$(curl -sS -X POST "http://127.0.0.1:$RTA_PORT/api/query" -H 'content-type: application/json' \
    --data-binary '{"window":"all","stats":["distinct:user"],"defaults":false}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["read"]["eventsRead"])')
  [ "$left" -le $(( N_QUERY / 100 )) ] && break
  sleep 0.5
done
echo "hour summaries caught up $(( SECONDS - t0 )) s after the loads ($left events left to read)" >&2
M="measure_values[indexOf(measure_keys, 'latency_ms')]"
D() { echo "dim_values[indexOf(dim_keys, '$1')]"; }
QUERIES=(
  "1. count by type, all time|{\"window\":\"all\",\"by\":[\"type\"],\"defaults\":false}|SELECT type, count() FROM events GROUP BY type"
  "2. sum, mean, p99 of a measure by region, one type, last hour|{\"window\":\"1h\",\"type\":\"pageview\",\"by\":[\"region\"],\"stats\":[\"sum:latency_ms\",\"mean:latency_ms\",\"p99:latency_ms\"],\"defaults\":false}|SELECT $(D region) AS region, sum($M), avg($M), quantile(0.99)($M) FROM events WHERE type = 'pageview' AND ts >= now() - 3600 GROUP BY region"
  "3. the same with device=mobile, 30 days|{\"window\":\"30d\",\"type\":\"pageview\",\"where\":[\"device=mobile\"],\"by\":[\"region\"],\"stats\":[\"sum:latency_ms\",\"mean:latency_ms\",\"p99:latency_ms\"],\"defaults\":false}|SELECT $(D region) AS region, sum($M), avg($M), quantile(0.99)($M) FROM events WHERE type = 'pageview' AND ts >= now() - 30 * 86400 AND $(D device) = 'mobile' GROUP BY region"
  "4. per-hour count and mean of a measure, one type, 30 days|{\"window\":\"30d\",\"type\":\"pageview\",\"by\":[\"time:hour\"],\"stats\":[\"count:latency_ms\",\"mean:latency_ms\"],\"defaults\":false}|SELECT toStartOfHour(ts) AS h, count(), avg($M) FROM events WHERE type = 'pageview' AND ts >= now() - 30 * 86400 GROUP BY h ORDER BY h"
  "5. distinct users, 30 days|{\"window\":\"30d\",\"stats\":[\"distinct:user\"],\"defaults\":false}|SELECT uniq($(D user)) FROM events WHERE ts >= now() - 30 * 86400"
)
for q in "${QUERIES[@]}"; do
  IFS='|' read -r name body sql <<<"$q"
  r=$(best_ms "http://127.0.0.1:$RTA_PORT/api/query" "$body")
  # How rta found it: hours from summaries, events read one at a time.
  how=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["read"]; print(r["summaryHours"], "summary hours +", r["eventsRead"], "events read")' "$WORK/answer")
  c=$(best_ms "$CH_URL/" "$sql" "text/plain")
  row "8.$name, $N_QUERY events (ms)" "$r" "ClickHouse $c" "$(awk -v r="$r" -v c="$c" 'BEGIN {printf "%.2f", r / (c > 0 ? c : 1)}')" "< 1000; goal <= ClickHouse" "POST /api/query $body ($how)"
done
# A live view with a filter is recomputed from the store on each push: its cost.
view_ms() {
  local best=
  for _ in 1 2 3; do
    t=$(curl -sSf -o /dev/null -w '%{time_total}' "$1")
    best=$(awk -v t="$t" -v b="$best" 'BEGIN {ms = t * 1000; if (b == "" || ms < b) b = ms; printf "%.0f", b}')
  done
  echo "$best"
}
for w in 1h 30d; do
  v=$(view_ms "http://127.0.0.1:$RTA_PORT/api/metrics?window=$w&where=device%3Dmobile")
  row "8.6. a filtered live view, window $w: one push's computation (ms)" "$v" "" "" "pushes spaced 10x this" "GET /api/metrics?window=$w&where=device=mobile (what /api/ws pushes)"
done
c=$(best_ms "$CH_URL/" "SELECT uniqExact($(D user)) FROM events WHERE ts >= now() - 30 * 86400" "text/plain")
row "    ClickHouse's exact distinct count, for reference (ms)" "" "ClickHouse $c" "" "" "SELECT uniqExact(user) ..."
row "8. rta peak RSS, loading and querying $N_QUERY events (MB)" "$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$RTA_PID/status")" "after loading: $rss_load" "" "< 200" "VmHWM of rta serve"
row "    loading: rta (durable ingest) and ClickHouse (insert)" "$(grep -o '[0-9]* events/s' "$WORK/qload-rta.txt")" "ClickHouse $(grep -o '[0-9]* events/s' "$WORK/qload-ch.txt")" "" "" "bench_client query-data rta (or clickhouse) URL $N_QUERY"
stop_clickhouse
stop_rta
fi

if [ "$ONLY" = all ] || [ "$ONLY" = cluster ]; then
echo "== 9: a cluster: nodes on ClickHouse and NATS JetStream, all on this machine" >&2
start_clickhouse "$WORK/cluster-ch"
start_nats "$WORK/cluster-nats"
STORE="clickhouse://${CH_URL#http://}/rta"
start_node() { # NAME [PORT]: sets NODE_PID and NODE_PORT
  NODE_PORT=${2:-$(free_port)}
  "$RTA" serve --addr "127.0.0.1:$NODE_PORT" --store "$STORE" --bus "$NATS_URL" --node-id "$1" 2>>"$WORK/cluster.log" &
  NODE_PID=$!; PIDS+=("$NODE_PID")
  wait_up "$NODE_PORT"
}
status_of() { curl -sf "http://127.0.0.1:$1/api/status" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2', 0))"; }
# Waits until ClickHouse holds every message the node has seen; prints the seconds.
caught_up() {
  local t0; t0=$(date +%s%N)
  until [ "$(status_of "$1" loaded)" -ge "$(status_of "$1" followed)" ]; do sleep 0.05; done
  awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.1f", ns / 1e9}'
}
ticks() { local t=0; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
us_per_event() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'; }
start_node a; A_PID=$NODE_PID; A_PORT=$NODE_PORT
R1=$(( $(rps "$A_PORT" 16 "$WORK/batch.lua") * 1000 ))
c1=$(caught_up "$A_PORT")
start_node b; B_PID=$NODE_PID; B_PORT=$NODE_PORT
# A third node only watches: what every node pays for every event (its live view).
start_node c; C_PID=$NODE_PID
before=("$(ticks "$A_PID" "$B_PID")" "$(ticks "$C_PID")" "$(ticks "$NATS_PID")" "$(ticks "$CH_PID")")
seq0=$(status_of "$A_PORT" followed)
wrk -t1 -c8 -d"$DUR" -s "$WORK/batch.lua" "http://127.0.0.1:$A_PORT/api/ingest" > "$WORK/wrk-a.txt" &
WA=$!
wrk -t1 -c8 -d"$DUR" -s "$WORK/batch.lua" "http://127.0.0.1:$B_PORT/api/ingest" > "$WORK/wrk-b.txt"
wait "$WA"
R2=$(awk '/Requests\/sec/ {s += $2} END {printf "%.0f", s * 1000}' "$WORK/wrk-a.txt" "$WORK/wrk-b.txt")
c2=$(caught_up "$A_PORT")
n2=$(( ( $(status_of "$A_PORT" followed) - seq0 ) * 1000 ))
after=("$(ticks "$A_PID" "$B_PID")" "$(ticks "$C_PID")" "$(ticks "$NATS_PID")" "$(ticks "$CH_PID")")
watch_us=$(us_per_event $(( after[1] - before[1] )) "$n2")
take_us=$(awk -v ab="$(us_per_event $(( after[0] - before[0] )) "$n2")" -v w="$watch_us" 'BEGIN {printf "%.1f", ab - 2 * w}')
nats_us=$(us_per_event $(( after[2] - before[2] )) "$n2")
ch_us=$(us_per_event $(( after[3] - before[3] )) "$n2")
ch "CREATE TABLE events (type String, ts DateTime, dim_keys Array(String), dim_values Array(String), measure_keys Array(String), measure_values Array(Float64)) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (type, ts)"
"$CLIENT" query-data clickhouse "$CH_URL" "$N_SMALL" 2>"$WORK/cluster-ch-insert.txt"
row "9. batched ingest through 2 cluster nodes (a third watching), 16 clients (events/s)" "$R2" "1 node: $R1; ClickHouse alone: $(grep -o '[0-9]* events/s' "$WORK/cluster-ch-insert.txt")" "$(awk -v r="$R2" -v b="$R1" 'BEGIN {printf "%.2f", r/b}')" "" "wrk -t1 -c8 -d$DUR -s batch.lua NODE/api/ingest, on nodes a and b at once"
row "    ClickHouse caught up after the run (s): 1 node, 2 nodes" "$c1, $c2" "" "" "" "GET /api/status until loaded >= followed"
row "    CPU per event (us): taking it (once), watching it (every node), NATS, ClickHouse" "$take_us, $watch_us, $nats_us, $ch_us" "" "" "context" "utime+stime from /proc/PID/stat over the 2-node run and its catch-up"
ws=$("$CLIENT" ws-latency "http://127.0.0.1:$A_PORT" "$WS_CLIENTS" "$PROBES" "http://127.0.0.1:$B_PORT")
row "    ingest on node b to WebSocket update on node a, $WS_CLIENTS clients" "$(echo "$ws" | sed 's/.*deliveries (\(.*\)): \(.*\)/\2 (\1)/')" "" "" "< 1 s" "bench_client ws-latency URL_A $WS_CLIENTS $PROBES URL_B"
# What N machines of 2 cores would carry: each node takes 1/N of the events
# and watches all of them; one stream lives on one NATS server; ClickHouse
# machines share inserts only with a Distributed table over shards (not here).
model() { awk -v t="$take_us" -v w="$watch_us" -v n="$1" 'BEGIN {printf "%.0f", 2e6 / (t / n + w)}'; }
row "    model: events/s that N 2-core nodes carry: N = 2, 4, 8, any" "$(model 2), $(model 4), $(model 8), $(awk -v w="$watch_us" 'BEGIN {printf "%.0f", 2e6 / w}')" "NATS $(awk -v u="$nats_us" 'BEGIN {printf "%.0f", 2e6 / u}'), ClickHouse $(awk -v u="$ch_us" 'BEGIN {printf "%.0f", 2e6 / u}') per 2 cores" "" "context" "2e6 / (take / N + watch)"
# A node starting with all of the above stored: from the live view's state
# that a node stopping cleanly (here c) leaves in NATS, or after kill -9 from
# the one the loading node saves every 30 s.
kill -TERM "$C_PID" 2>/dev/null || true; wait "$C_PID" 2>/dev/null || true
# Measured once the loading node's hour summaries have caught up (they read
# every new row once), as start-up is in a cluster that is not catching up.
t0=$(date +%s%N)
last=-1; until [ "$(status_of "$A_PORT" summarised)" = "$last" ]; do last=$(status_of "$A_PORT" summarised); sleep 3; done
row "    hour summaries caught up after the runs (s)" "$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN {printf "%.0f", ns / 1e9}')" "" "" "" "GET /api/status until summarised stays put for 3 s"
stored=$(status_of "$A_PORT" events)
port=$(free_port); t0=$(date +%s%N); start_node d "$port"; t1=$(date +%s%N)
row "    start-up of a node after another's clean stop, $stored events stored (ms)" "$(( (t1 - t0) / 1000000 ))" "" "" "< 1000" "rta serve --store URL --bus URL (until /healthz answers)"
kill -9 "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
port=$(free_port); t0=$(date +%s%N); start_node e "$port"; t1=$(date +%s%N)
row "    start-up after kill -9 (ms), the same events" "$(( (t1 - t0) / 1000000 ))" "" "" "< 1000" "kill -9, then rta serve --store URL --bus URL"
kill -TERM "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true
kill -TERM "$A_PID" "$B_PID" 2>/dev/null || true; wait "$A_PID" "$B_PID" 2>/dev/null || true
stop_nats
stop_clickhouse
fi

CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`bench/run.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)."
  echo "Machine: $(nproc) cores ($CPU), $MEM, $(uname -sr). The load generator (wrk, \`rta generate\`) shares the cores with the server."
  echo "The baseline is \`examples/baseline_server.rs\`: the same \`POST /api/ingest\` parsed into the same \`Event\` type and discarded, run in alternation with rta."
  echo
  echo "| figure | rta | baseline (same run) | ratio | target | command |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  # The reading of the figures is written by hand, next to this script.
  [ -f bench/analysis.md ] && cat bench/analysis.md
} > "$OUT"
[ "$OUT" = /dev/null ] || echo "wrote $OUT" >&2
echo "bench: $(( ${#ROWS[@]} )) figures measured" >&2

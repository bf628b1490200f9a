#!/usr/bin/env bash
# Compares two rta binaries on one ingest load, in short rounds that take
# turns, both servers running throughout (each on its own data directory
# on the same disk). A full `bench/run.sh` round lasts 10 s and its ratios
# move by about 0.09 from round to round; two servers alternated in 3 s
# rounds pair up far more tightly (about 0.03), so a few percent between
# two builds shows in a few minutes. Judge a change by this, then confirm
# it with full runs.
#
#   bench/ab.sh [--load=batched|single] [--pairs=N] [--dur=3s] [--smoke] A B
#
# --load=batched (default): 1,000-event NDJSON bodies, 4 and 16 clients;
# also prints each binary's 4-against-16 ratio, both ways (median of the
# paired rounds, ratio of the medians).
# --load=single: one event per request, 8 and 64 connections.
# Prints each round, then per client count B's throughput over A's: the
# median, mean and spread of the paired rounds. Answers other than 2xx
# make the run fail: a figure with errors in it is no figure.
# Needs: wrk, python3.
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$0")/.."

LOAD=batched; PAIRS=12; DUR=3s; BINS=()
for arg in "$@"; do
  case "$arg" in
    --load=batched|--load=single) LOAD="${arg#--load=}" ;;
    --pairs=*) PAIRS="${arg#--pairs=}" ;;
    --dur=*) DUR="${arg#--dur=}" ;;
    --smoke) PAIRS=1; DUR=1s ;;
    -*) echo "bench/ab.sh: unknown option $arg" >&2; exit 2 ;;
    *) BINS+=("$(cd "$CALLER_DIR" && realpath -m -- "$arg")") ;;
  esac
done
if [ "${#BINS[@]}" != 2 ]; then
  echo "usage: bench/ab.sh [--load=batched|single] [--pairs=N] [--dur=3s] [--smoke] A_BINARY B_BINARY" >&2
  exit 2
fi
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "bench/ab.sh: $b is not an executable" >&2; exit 2; }; done
command -v wrk >/dev/null || { echo "bench/ab.sh needs wrk: apt-get install wrk" >&2; exit 2; }
if [ "$LOAD" = batched ]; then COUNTS=(4 16); else COUNTS=(8 64); fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/lib.sh
PORTS=()
for i in 0 1; do
  port=$(free_port)
  "${BINS[$i]}" serve --addr "127.0.0.1:$port" --data-dir "$WORK/data$i" 2>>"$WORK/server$i.log" &
  PIDS+=("$!"); PORTS+=("$port")
  disown "$!"  # killed at the end: no "Killed" notice
  wait_up "$port" || { echo "bench/ab.sh: ${BINS[$i]} did not start; its log:" >&2; cat "$WORK/server$i.log" >&2; exit 1; }
done

if [ "$LOAD" = batched ]; then
  "${BINS[0]}" generate --count 1000 --batch 1000 --seed 1 --output "$WORK/body" --quiet
  post_script "$WORK/body" application/x-ndjson > "$WORK/load.lua"
else
  printf '%s' "$ONE_EVENT" > "$WORK/body"
  post_script "$WORK/body" application/json > "$WORK/load.lua"
fi
# Requests/s of one round; answers other than 2xx and socket errors fail the run.
round() { # SERVER CONNS
  local out
  out=$(wrk -t2 -c"$2" -d"$DUR" -s "$WORK/load.lua" "http://127.0.0.1:${PORTS[$1]}/api/ingest")
  if echo "$out" | grep -q -e "Non-2xx" -e "Socket errors"; then
    echo "bench/ab.sh: ${BINS[$1]} answered with errors at $2 connections:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$out" | awk '/Requests\/sec/ {printf "%.1f", $2}'
  # The next round, on either server, does not pay for this one's summaries.
  settle "${PORTS[$1]}" >/dev/null
}

echo "# bench/ab.sh --load=$LOAD --pairs=$PAIRS --dur=$DUR; $(nproc) cores; $(date -u +%FT%TZ)"
echo "# A: ${BINS[0]}"
echo "# B: ${BINS[1]}"
echo "# pair conns A_req/s B_req/s"
: > "$WORK/rounds"
for pair in $(seq 1 "$PAIRS"); do
  for conns in "${COUNTS[@]}"; do
    # Each binary goes first in every other round.
    if [ $(( (pair + conns) % 2 )) = 0 ]; then
      a=$(round 0 "$conns"); b=$(round 1 "$conns")
    else
      b=$(round 1 "$conns"); a=$(round 0 "$conns")
    fi
    echo "$pair $conns $a $b" | tee -a "$WORK/rounds"
  done
done

python3 - "$WORK/rounds" "$LOAD" <<'PY'
import statistics as st
import sys

rows = [line.split() for line in open(sys.argv[1])]
rounds = {}
for pair, conns, a, b in rows:
    rounds.setdefault(int(conns), {})[pair] = (float(a), float(b))
spread = lambda xs: st.pstdev(xs) if len(xs) > 1 else 0.0
for conns, by_pair in sorted(rounds.items()):
    ratios = [b / a for a, b in by_pair.values()]
    a_med = st.median(a for a, _ in by_pair.values())
    b_med = st.median(b for _, b in by_pair.values())
    print(f"{conns:>3} conns: A {a_med:,.0f} req/s, B {b_med:,.0f} req/s (medians); "
          f"B/A over {len(ratios)} pairs: median {st.median(ratios):.3f}, "
          f"mean {st.mean(ratios):.3f}, sd {spread(ratios):.3f}")
if sys.argv[2] == "batched":
    few, many = sorted(rounds)
    for side, name in ((0, "A"), (1, "B")):
        paired = [rounds[few][p][side] / rounds[many][p][side]
                  for p in rounds[few] if p in rounds[many]]
        medians = (st.median(r[side] for r in rounds[few].values())
                   / st.median(r[side] for r in rounds[many].values()))
        print(f"{name}: {few} against {many} clients: median of the paired rounds "
              f"{st.median(paired):.3f}, ratio of the medians {medians:.3f}")
PY

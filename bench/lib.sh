# Helpers shared by bench/run.sh and bench/ab.sh (sourced, not run).

# The single-event body both load one event per request with.
ONE_EVENT='{"type":"sales","source":"wrk","values":{"amount":150,"units":5,"region":"North America"}}'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.01; done; return 1; }

# Writes a wrk script that POSTs the bytes of BODY_FILE with CONTENT_TYPE.
post_script() { # BODY_FILE CONTENT_TYPE > SCRIPT
  cat <<LUA
wrk.method = "POST"
local f = io.open("$1", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "$2"
LUA
}

# rta builds its hour summaries after a burst of ingest: it is let finish
# (so the next run, or the baseline's, has the machine to itself); prints
# the seconds it took.
settle() { # PORT
  local t0=$SECONDS left
  for _ in $(seq 1 600); do
    left=$(curl -sS -X POST "http://127.0.0.1:$1/api/query" -H 'content-type: application/json' \
      --data-binary '{"window":"all","by":["time:hour"],"defaults":false}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["read"]["eventsRead"])')
    [ "$left" -le 1000 ] && break
    sleep 0.5
  done
  echo $(( SECONDS - t0 ))
}

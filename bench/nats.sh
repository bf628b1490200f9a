# Debian's nats-server (2.9) with JetStream on its own port in a directory of
# its own, never as a system service. Sourced by bench/run.sh:
#   start_nats DIR   sets NATS_PID and NATS_URL
#   stop_nats        stops it by PID
start_nats() {
  local dir=$1 port
  port=$(free_port)
  mkdir -p "$dir"
  nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/jetstream" >"$dir/nats.log" 2>&1 &
  NATS_PID=$!; PIDS+=("$NATS_PID")
  NATS_URL="nats://127.0.0.1:$port"
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.05; done
  echo "nats-server did not start; its log:" >&2; tail -20 "$dir/nats.log" >&2
  return 1
}
stop_nats() { kill -TERM "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; }

# Debian's clickhouse-server (18.16) on its own ports in a directory of its
# own, never as a system service. Sourced by bench/run.sh:
#   start_clickhouse DIR   sets CH_PID and CH_URL (its HTTP interface)
#   ch "SQL"               runs a statement, prints the answer
#   stop_clickhouse        stops it by PID
start_clickhouse() {
  local dir=$1 http tcp interserver
  http=$(free_port); tcp=$(free_port); interserver=$(free_port)
  mkdir -p "$dir"/{data,tmp,user_files,format_schemas,log}
  cat > "$dir/config.xml" <<XML
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$http</http_port>
  <tcp_port>$tcp</tcp_port>
  <interserver_http_port>$interserver</interserver_http_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>1073741824</mark_cache_size>
  <max_concurrent_queries>16</max_concurrent_queries>
</yandex>
XML
  cat > "$dir/users.xml" <<XML
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  clickhouse-server --config-file="$dir/config.xml" >/dev/null 2>&1 &
  CH_PID=$!; PIDS+=("$CH_PID")
  CH_URL="http://127.0.0.1:$http"
  for _ in $(seq 1 600); do [ "$(curl -s "$CH_URL/ping" 2>/dev/null)" = "Ok." ] && return 0; sleep 0.1; done
  echo "clickhouse-server did not start; its log:" >&2; tail -20 "$dir/log/error.log" >&2
  return 1
}
ch() { curl -sS --fail-with-body "$CH_URL/" --data-binary "$1"; }
stop_clickhouse() { kill -TERM "$CH_PID" 2>/dev/null || true; wait "$CH_PID" 2>/dev/null || true; }

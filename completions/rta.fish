# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rta_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_rta_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rta_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rta_using_subcommand
    set -l cmd (__fish_rta_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rta -n "__fish_rta_needs_command" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_needs_command" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_needs_command" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_needs_command" -f -a "serve" -d 'Run the server: ingest API, metrics API, WebSocket and dashboard'
complete -c rta -n "__fish_rta_needs_command" -f -a "generate" -d 'Stream synthetic events to a server (or to a file)'
complete -c rta -n "__fish_rta_needs_command" -f -a "replay" -d 'Push the events of a JSONL or CSV file to a server'
complete -c rta -n "__fish_rta_needs_command" -f -a "query" -d 'Print metrics as a table, JSON, CSV or TSV'
complete -c rta -n "__fish_rta_needs_command" -f -a "alerts" -d 'Add, list and remove alert rules (webhooks told when a number goes wrong)'
complete -c rta -n "__fish_rta_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c rta -n "__fish_rta_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rta -n "__fish_rta_using_subcommand serve" -l addr -d 'Address to listen on. Use 0.0.0.0:PORT to accept connections from other machines' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l data-dir -d 'Directory holding the event database (created if missing) [default: ./rta-data]' -r -F
complete -c rta -n "__fish_rta_using_subcommand serve" -l store -d 'Where events are kept: sqlite:DIR (the default, the same as --data-dir DIR) or, for several nodes behind a load balancer, clickhouse://HOST:PORT/DATABASE (its HTTP port, 8123 by default; needs --bus). ClickHouse\'s user and password go in the URL or in RTA_CLICKHOUSE_USER and RTA_CLICKHOUSE_PASSWORD; ?timeout=30s (the default) is how long ClickHouse may stay silent before rta gives up on a statement' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l bus -d 'NATS JetStream between the nodes of a cluster, such as nats://127.0.0.1:4222: takes every acknowledged event and feeds every node\'s live view. Needed with a ClickHouse store; the SQLite store takes none' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l node-id -d 'This node\'s name in logs and in /api/status [default: host name, process id and a random suffix]' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l bus-keep -d 'How long the bus keeps events after ClickHouse has them, for nodes whose live view lags (a cluster only)' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l retention -d 'Delete events older than this, such as 7d or 12h (default: keep everything)' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l token -d 'Require `Authorization: Bearer TOKEN` on ingest' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l read-token -d 'Require this token (or the --token one) to read metrics, events and the WebSocket. The dashboard asks for it and keeps it in the browser' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l cors-origin -d 'Let pages from this origin call the API (CORS) and open the WebSocket, such as `https://intranet.example.com`, or `*` for any. Repeat for several. Off by default' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l allowed-host -d 'Also answer requests whose Host is this name (IP addresses, localhost and *.localhost always work). Repeat for several; `*.example.com` for a domain, `*` for any (behind a proxy that sets Host itself). Guards against DNS rebinding' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-connections -d 'Open connections at most; further ones wait until one closes' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l request-timeout -d 'Close a connection whose request does not arrive in full this long after its first byte' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l idle-timeout -d 'Close connections with no traffic for this long' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-body -d 'Largest request body accepted, after decompression, such as 16MiB' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l push-interval -d 'How often WebSocket clients get updates at most, such as 200ms' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l alert-interval -d 'How often every alert rule is evaluated' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l public-url -d 'The dashboard\'s address as its users reach it (`https://rta.example.com`), for the link in each notification' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l webhook-retry-for -d 'How long a notification whose webhook fails is retried (with growing pauses) before it is given up' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-type-len -d 'Longest event type name' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-source-len -d 'Longest source' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-field-name-len -d 'Longest field name (after flattening nested objects)' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-string-len -d 'Longest string value' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l max-fields -d 'Most fields in one event\'s values' -r
complete -c rta -n "__fish_rta_using_subcommand serve" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand serve" -l allow-private-webhooks -d 'Let webhooks point at loopback, link-local and private addresses (refused by default, so that a rule cannot reach the services next to rta)'
complete -c rta -n "__fish_rta_using_subcommand serve" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_using_subcommand serve" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand generate" -s n -l count -d 'How many events in all (default: endless, until Ctrl-C)' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -s i -l interval -d 'Time between batches: seconds (3, 0.5) or a duration (250ms); 0 sends as fast as possible' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l rate -d 'Events per second, instead of --interval' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -s b -l batch -d 'Events per request' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l types -d 'Which kinds of events to make' -r -f -a "sales\t'Orders: amount, units, region, channel'
users\t'Activity: active, new, returning users per region'
pageview\t'Web requests: latency_ms (long-tailed), bytes, path, device'"
complete -c rta -n "__fish_rta_using_subcommand generate" -l seed -d 'Seed for reproducible data' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l source -d 'The events\' source' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -s o -l output -d 'Write JSONL (or CSV, for a .csv name) to this file, `-` for stdout, instead of sending. Timestamps are then simulated, ending now, one --interval apart per batch' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l start -d 'Timestamp of the first event (RFC 3339, or a date for its midnight UTC); later batches are one --interval apart' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l concurrency -d 'Requests in flight at once' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand generate" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand generate" -s q -l quiet -d 'No progress output, only the summary and errors'
complete -c rta -n "__fish_rta_using_subcommand generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rta -n "__fish_rta_using_subcommand generate" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand replay" -l format -d 'The file\'s format (default: from the extension, JSONL unless .csv)' -r -f -a "jsonl\t'One JSON event per line'
csv\t'A header row; `timestamp`, `source`, `type` columns, every other column a value (or one `values` column holding a JSON object)'"
complete -c rta -n "__fish_rta_using_subcommand replay" -s b -l batch -d 'Events per request' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l speed -d 'Keep the original spacing between timestamps, sped up by this factor (1 = real time)' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand replay" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand replay" -l shift-to-now -d 'Move every timestamp so the file\'s latest event happens now'
complete -c rta -n "__fish_rta_using_subcommand replay" -s q -l quiet -d 'No progress output, only the summary and errors'
complete -c rta -n "__fish_rta_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rta -n "__fish_rta_using_subcommand replay" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand query" -s t -l type -d 'Only this event type; without --by, one row per field' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l by -d 'Break down by up to three dimensions (comma-separated; `type` and `source` too) and/or a time bucket: time:minute, time:hour, time:day' -r
complete -c rta -n "__fish_rta_using_subcommand query" -s w -l window -d 'Only events of the last 10s, 5m, 24h, 30d... (by event time), or `all`' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l from -d 'Only events from this time on (RFC 3339, or a date for 00:00 UTC)' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l to -d 'Only events before this time (default: now)' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l where -d 'A filter; repeat for several (all must hold). See below' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l stat -d 'Add a statistic column, stat:field: count, sum, min, max, mean, last, p50, p90, p95, p99 of a measure; distinct, top of a dimension. Repeatable' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l order -d 'Order rows by a column, then asc or desc (default: events, most first; time, oldest first); with --events, newest (default) or oldest' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l limit -d 'With --events: at most this many (default: all for jsonl, csv and tsv; 1000 otherwise)' -r
complete -c rta -n "__fish_rta_using_subcommand query" -s f -l format -d 'Output format (default: a table)' -r -f -a "table\t'Aligned columns for people (boxes only on a terminal)'
json\t'An array of objects, one per row, keyed by the CSV\'s column names'
jsonl\t'One JSON object a line (events as `rta replay` reads them)'
csv\t'Comma-separated, with a header row'
tsv\t'Tab-separated, with a header row; tabs, newlines and backslashes in values escaped'"
complete -c rta -n "__fish_rta_using_subcommand query" -l top -d 'With --by: how many rows (default 10, or every time bucket); the rest are summed in one `(others)` row' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l watch -d 'Refresh every SECONDS until Ctrl-C' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand query" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand query" -l events -d 'Print the matching events themselves instead of aggregates; `--format jsonl` is read back unchanged by `rta replay -`'
complete -c rta -n "__fish_rta_using_subcommand query" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rta -n "__fish_rta_using_subcommand query" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -f -a "add" -d 'Add a rule: a statistic over a window, a condition, and the webhook told when it fires and when it resolves'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -f -a "list" -d 'List the rules and where each stands (ok, pending, firing)'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -f -a "rm" -d 'Remove a rule'
complete -c rta -n "__fish_rta_using_subcommand alerts; and not __fish_seen_subcommand_from add list rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l name -d 'The rule\'s name: 1-64 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -s t -l type -d 'Only events of this type' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -s w -l where -d 'A filter that must hold (repeatable), as in `rta query --where`: device=mobile, amount>100' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l stat -d 'What to watch: count (events in the window), rate (events per second) or STAT:FIELD (p95:latency_ms, mean:amount, max:amount, distinct:user)' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l window -d 'The window the statistic is computed over, up to now: 10s and up' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l above -d 'Fire while the value is above this' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l below -d 'Fire while the value is below this' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l for -d 'How long the condition must hold before the rule fires' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l webhook -d 'The http(s) URL told of each change' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -l absent -d 'Fire while the window holds no matching event at all'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l format -d 'Output format' -r -f -a "table\t'Aligned columns for people (boxes only on a terminal)'
json\t'An array of objects, one per row, keyed by the CSV\'s column names'
jsonl\t'One JSON object a line (events as `rta replay` reads them)'
csv\t'Comma-separated, with a header row'
tsv\t'Tab-separated, with a header row; tabs, newlines and backslashes in values escaped'"
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -l url -d 'The server\'s base URL' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -l token -d 'Bearer token, for a server started with --token' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -l retry-for -d 'Keep retrying a refused connection, 429 or 503 this long before giving up' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -l timeout -d 'Give up on one request after this long' -r
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from rm" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a rule: a statistic over a window, a condition, and the webhook told when it fires and when it resolves'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the rules and where each stands (ok, pending, firing)'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a rule'
complete -c rta -n "__fish_rta_using_subcommand alerts; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rta -n "__fish_rta_using_subcommand completions" -l log-format -d 'How log lines are written to stderr: `text` for people, `json` for log collectors (one JSON object a line)' -r -f -a "text\t''
json\t''"
complete -c rta -n "__fish_rta_using_subcommand completions" -s h -l help -d 'Print help'
complete -c rta -n "__fish_rta_using_subcommand completions" -s V -l version -d 'Print version'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "serve" -d 'Run the server: ingest API, metrics API, WebSocket and dashboard'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "generate" -d 'Stream synthetic events to a server (or to a file)'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "replay" -d 'Push the events of a JSONL or CSV file to a server'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "query" -d 'Print metrics as a table, JSON, CSV or TSV'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "alerts" -d 'Add, list and remove alert rules (webhooks told when a number goes wrong)'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c rta -n "__fish_rta_using_subcommand help; and not __fish_seen_subcommand_from serve generate replay query alerts completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rta -n "__fish_rta_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "add" -d 'Add a rule: a statistic over a window, a condition, and the webhook told when it fires and when it resolves'
complete -c rta -n "__fish_rta_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "list" -d 'List the rules and where each stands (ok, pending, firing)'
complete -c rta -n "__fish_rta_using_subcommand help; and __fish_seen_subcommand_from alerts" -f -a "rm" -d 'Remove a rule'

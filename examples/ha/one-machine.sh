#!/usr/bin/env bash
# Two watchdog replicas, Postgres and an Alertmanager pair on this machine,
# with no container: what README "High availability" describes, to try.
#
#   examples/ha/one-machine.sh start    # everything, in $HA_DIR (default /tmp/watchdog-ha)
#   examples/ha/one-machine.sh status   # each replica's role
#   examples/ha/one-machine.sh kill a   # kill -9 a replica: the other takes over
#   examples/ha/one-machine.sh stop     # everything, and its files
#
# Needs Debian's postgresql and prometheus-alertmanager packages, and the
# project installed with its postgres extra (make install does it: .venv).
# Ports: Postgres 5433, Alertmanagers 9093 and 9094 (cluster 9095, 9096),
# replicas a and b on 9120 and 9121, the demo's targets on 8180 and 8181.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${HA_DIR:-/tmp/watchdog-ha}
PG=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
AM=$(command -v prometheus-alertmanager || command -v alertmanager || true)
WATCHDOG=${WATCHDOG:-$ROOT/.venv/bin/watchdog}
export WATCHDOG_DB_PASSWORD=${WATCHDOG_DB_PASSWORD:-ha-demo-password}

as_postgres() {
    # initdb and the server refuse to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

background() {  # NAME COMMAND...: started, its PID kept, its output in NAME.log
    local name=$1; shift
    nohup "$@" >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
}

start() {
    [ -n "$PG" ] || { echo "postgresql not installed: apt-get install postgresql" >&2; exit 1; }
    [ -n "$AM" ] || { echo "alertmanager not installed: apt-get install prometheus-alertmanager" >&2; exit 1; }
    mkdir -p "$DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; chmod 0777 "$DIR"; fi
    as_postgres "$PG/initdb" -D "$DIR/pg" -U postgres --auth=trust >/dev/null
    as_postgres "$PG/pg_ctl" -D "$DIR/pg" -l "$DIR/postgres.log" -w \
        -o "-p 5433 -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
    as_postgres "$PG/psql" -h "$DIR" -p 5433 -U postgres -q \
        -c "CREATE ROLE watchdog LOGIN PASSWORD '$WATCHDOG_DB_PASSWORD'" \
        -c "CREATE DATABASE watchdog OWNER watchdog"
    for i in 1 2; do
        background "alertmanager-$i" "$AM" --config.file="$HERE/alertmanager.yml" \
            --storage.path="$DIR/alertmanager-$i" \
            --web.listen-address="127.0.0.1:909$((i + 2))" \
            --cluster.listen-address="127.0.0.1:909$((i + 4))" \
            --cluster.peer="127.0.0.1:909$((7 - i))"
    done
    background targets "$ROOT/.venv/bin/python" "$ROOT/examples/demo/targets.py" --port 8180
    background replica-a "$WATCHDOG" run "$HERE/estate.yaml" --listen 127.0.0.1:9120 --replica a
    background replica-b "$WATCHDOG" run "$HERE/estate.yaml" --listen 127.0.0.1:9121 --replica b
    echo "started in $DIR: replicas on http://127.0.0.1:9120 and :9121, Alertmanagers on :9093 and :9094"
}

status() {
    for port in 9120 9121; do
        role=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^watchdog_cluster_role\{/ && $2 == 1 {print $1}' || true)
        echo "127.0.0.1:$port ${role:-not answering}"
    done
}

kill_replica() {
    kill -9 "$(cat "$DIR/replica-$1.pid")" && echo "replica $1 killed"
}

stop() {
    local pids=()
    for file in "$DIR"/*.pid; do
        [ -e "$file" ] && pids+=("$(cat "$file")")
    done
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do  # up to 10 s for them to finish, then SIGKILL
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 1 ] || break
        sleep 0.2
    done
    [ ${#pids[@]} -gt 0 ] && kill -9 "${pids[@]}" 2>/dev/null || true
    [ -d "$DIR/pg" ] && as_postgres "$PG/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null || true
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    status) status ;;
    kill) kill_replica "${2:?a or b}" ;;
    stop) stop ;;
    *) echo "usage: $0 start|status|kill a|b|stop" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for trying volley's shared
# mode and for its tests. Uses Debian's postgresql package (installed when
# missing, as root).
#
#   scripts/pg.sh start [DIR] [--until PID] [--fast]
#       initdb's a cluster in DIR (default: a new /tmp/volley-pg.*), starts it
#       on a free port of 127.0.0.1 and prints its URL:
#       postgres://volley@127.0.0.1:PORT/volley
#       --until PID: stop it and remove DIR once process PID has exited.
#       --fast: fsync off (for tests: a crash of the server loses data).
#   scripts/pg.sh restart DIR
#       restarts it (pg_ctl restart -m fast), cutting every connection.
#   scripts/pg.sh stop DIR
#
# initdb refuses to run as root, so as root the server runs as `postgres`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$bin" ]; then
        ensure_packages postgresql >&2
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    echo "$bin"
}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:-}
shift || true
case "$cmd" in
start)
    dir="" until="" fast=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --until) until=$2; shift 2 ;;
        --fast) fast=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off); shift ;;
        *) dir=$1; shift ;;
        esac
    done
    bin=$(pg_bin)
    [ -n "$dir" ] || dir=$(mktemp -d /tmp/volley-pg.XXXXXX)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U volley --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 ${fast[*]}" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U volley volley
    if [ -n "$until" ]; then
        nohup bash -c "while kill -0 $until 2>/dev/null; do sleep 1; done; '$0' stop '$dir'" \
            >/dev/null 2>&1 &
    fi
    echo "postgres://volley@127.0.0.1:$port/volley"
    ;;
restart)
    # As a database restart in production: every connection is cut.
    dir=${1:?usage: scripts/pg.sh restart DIR}
    bin=$(pg_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w restart >/dev/null
    ;;
stop)
    dir=${1:?usage: scripts/pg.sh stop DIR}
    bin=$(pg_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: scripts/pg.sh start [DIR] [--until PID] [--fast] | scripts/pg.sh restart DIR | scripts/pg.sh stop DIR" >&2
    exit 2
    ;;
esac

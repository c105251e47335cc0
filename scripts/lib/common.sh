# Shared shell helpers for volley's scripts: Debian packages, and nginx on
# loopback serving a directory (plus /tiny, a fixed 3-byte response).
# Source this file; it defines functions only.

# ensure_packages PKG...: installs the Debian packages that are missing.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "installing ${missing[*]} ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# python_venv DIR PKG...: a venv at DIR holding the pinned PKGs from PyPI,
# made again when the list changes.
python_venv() {
    local venv=$1
    shift
    if [ "$(cat "$venv/pinned.txt" 2>/dev/null)" != "$*" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
        echo "$*" > "$venv/pinned.txt"
    fi
}

# build_volley ROOT: builds the release binary of the checkout at ROOT and
# sets VOLLEY to its path.
build_volley() {
    (cd "$1" && cargo build --release --locked -p volley-cli)
    VOLLEY="$1/target/release/volley"
}

# summary_figures FILE: "WALL_S REQUESTS_PER_S" from a `volley fetch`
# summary's "this run" line.
summary_figures() {
    awk '/this run/ {for (i=1;i<=NF;i++) { if ($i=="in") {w=$(i+1); sub("s,","",w)} if ($i ~ /requests\/s/) r=$(i-1) } print w, r}' "$1"
}

# port_is_free PORT: true if nothing listens on 127.0.0.1:PORT. Connections
# of an earlier server left in TIME_WAIT do not count: nginx binds with
# SO_REUSEADDR, and so does this check.
port_is_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# nginx_start ROOT WORKDIR PORT: serves ROOT on 127.0.0.1:PORT with one
# worker, access log off, keep-alive connections reused without limit.
# Sets NGINX_PID. Waits until nginx answers. NGINX_EXTRA, if set, is added
# to the server block (a location of a generated site, for example).
nginx_start() {
    local root=$1 work=$2 port=$3 nginx user_line="" echo_line="" delay_line=""
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    # /delay answers after 100 ms where the echo module is installed
    # (libnginx-mod-http-echo).
    if [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
        echo_line="load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;"
        delay_line='location = /delay { echo_sleep 0.1; echo "ok"; }'
    fi
    mkdir -p "$work/tmp"
    # As root, nginx's workers would drop to 'nobody', which cannot read a
    # toolchain under /root.
    [ "$(id -u)" -eq 0 ] && user_line="user root;"
    cat > "$work/nginx.conf" <<CONF
$echo_line
worker_processes 1;
daemon off;
$user_line
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
    server {
        listen ${NGINX_LISTEN:-127.0.0.1:$port};
        root $root;
        location = /tiny { return 200 "ok\n"; }
        $delay_line
        ${NGINX_EXTRA:-}
    }
}
CONF
    if ! port_is_free "$port"; then
        echo "port $port on 127.0.0.1 is in use by another server; stop it, or choose another port (${NGINX_PORT_HINT:-set the PORT variable})" >&2
        return 1
    fi
    "$nginx" -c "$work/nginx.conf" -e "$work/error.log" &
    NGINX_PID=$!
    local i
    for i in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/tiny" 2>/dev/null; then
            return 0
        fi
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "nginx did not start; see $work/error.log" >&2
    return 1
}

# nginx_stop: stops the nginx started by nginx_start.
nginx_stop() {
    if [ -n "${NGINX_PID:-}" ]; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=""
    fi
}

# docs_urls DOCS PORT [LIMIT]: the URL on 127.0.0.1:PORT of every file under
# DOCS, in byte order (the first LIMIT only, when LIMIT > 0), one per line.
# awk reads to the end where `head` would close the pipe early: under
# pipefail, sort's SIGPIPE would end the calling script.
docs_urls() {
    local docs=$1 port=$2 limit=${3:-0}
    (cd "$docs" && find . -type f -printf '%P\n' | LC_ALL=C sort) \
        | awk -v limit="$limit" -v base="http://127.0.0.1:$port/" \
            'limit == 0 || NR <= limit {print base $0}'
}

# median: the median of the numbers on stdin, one per line.
median() {
    sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

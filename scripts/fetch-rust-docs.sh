#!/usr/bin/env bash
# volley's main job on real input: every file of the Rust documentation that
# ships with the toolchain (about 52,000 files), served by nginx on loopback,
# fetched with `volley fetch`, bodies saved by SHA-256.
#
#   scripts/fetch-rust-docs.sh           run (or resume) the job
#   scripts/fetch-rust-docs.sh --fresh   start over
#
# Environment: PORT (default 18765; a job keeps the port it started with, so
# its URL list stays the same across resumes), LIMIT (fetch only the first N
# files), CONCURRENCY (default 64). State lives in target/demo/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"

fresh=0
[ "${1:-}" = "--fresh" ] && fresh=1
limit=${LIMIT:-0}
concurrency=${CONCURRENCY:-64}
work="$root/target/demo"
docs="$(rustc --print sysroot)/share/doc/rust/html"
if [ ! -d "$docs" ]; then
    echo "no Rust documentation at $docs; install it with: rustup component add rust-docs" >&2
    exit 1
fi

ensure_packages nginx-light time curl
build_volley "$root"
volley=$VOLLEY

[ "$fresh" = 1 ] && rm -rf "$work"
mkdir -p "$work"
# The port is part of every URL: a job resumes on the port it started with.
if [ -f "$work/port" ]; then
    port=$(cat "$work/port")
    if [ -n "${PORT:-}" ] && [ "$PORT" != "$port" ]; then
        echo "this job runs on port $port (its URLs name it); PORT=$PORT applies after --fresh" >&2
    fi
    NGINX_PORT_HINT="the job's URLs name port $port: free it, or start over with PORT=N $0 --fresh"
else
    port=${PORT:-18765}
    echo "$port" > "$work/port"
fi
nginx_start "$docs" "$work/nginx" "$port"
trap nginx_stop EXIT

docs_urls "$docs" "$port" "$limit" > "$work/urls.txt.new"
if cmp -s "$work/urls.txt.new" "$work/urls.txt" 2>/dev/null; then
    rm "$work/urls.txt.new"
else
    if [ -f "$work/volley.db" ]; then
        echo "the URL list changed since the last run; starting over" >&2
        rm -rf "$work/volley.db"* "$work/bodies"
    fi
    mv "$work/urls.txt.new" "$work/urls.txt"
fi
echo "fetching $(wc -l < "$work/urls.txt") URLs from $docs via nginx on 127.0.0.1:$port" >&2

set +e
/usr/bin/time -v -o "$work/time.txt" "$volley" --db "$work/volley.db" fetch "$work/urls.txt" \
    --job rust-docs --concurrency "$concurrency" --per-host "$concurrency" \
    --save-bodies "$work/bodies"
status=$?
set -e
echo "peak RSS: $(awk -F': ' '/Maximum resident/ {printf "%.1f MB", $2/1024}' "$work/time.txt")" >&2
echo "look inside: $volley --db $work/volley.db status   (or export, or: sqlite3 $work/volley.db)" >&2
exit "$status"

#!/usr/bin/env bash
# volley's archives and datasets read by the tools their users read them
# with: WARC files checked and indexed by warcio, indexed by pywb's own
# indexer (compared with `volley export --cdxj`) and replayed through pywb;
# Parquet exports read by DuckDB and pyarrow and compared with the JSON
# Lines export. The readers come from PyPI into a venv under target/; the
# site is served by nginx on loopback, with gzip on (so payloads are
# recorded encoded and chunked). Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages python3-venv nginx-light curl
cd "$root"
venv=target/venv-readers
python_venv "$venv" 'warcio==1.8.1' 'pywb==2.10.0' 'duckdb==2.0.1' 'pyarrow==26.0.1' 'pytest==9.2.0'
# The debug binary `cargo test` built (built here if it is missing).
cargo build --locked --quiet -p volley-cli
work=$(mktemp -d)
trap 'nginx_stop; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/site"
NGINX_EXTRA="gzip on; gzip_min_length 1; gzip_types text/plain text/css application/json;" \
    nginx_start "$work/site" "$work/nginx" "$port"
VOLLEY="$root/target/debug/volley" SITE="$work/site" BASE="http://127.0.0.1:$port" WORK="$work" \
    "$venv/bin/pytest" -q -p no:cacheprovider crates/volley-cli/tests/readers "$@"

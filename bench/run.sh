#!/usr/bin/env bash
# volley and its peers on the same workloads, in one run: writes
# bench/RESULTS.md (bench/RESULTS-quick.md with --quick).
#
#   bench/run.sh [--quick] [--runs N] [--only W1,W2,...]
#
# Installs what it needs: nginx with the echo module, wrk, curl (Debian), and
# aiohttp, uvloop, httpx and Scrapy in a virtualenv under target/, and
# volley's Python package built there with maturin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages nginx-light libnginx-mod-http-echo wrk curl time openssl
build_volley "$root"
# W14's latency: a TCP proxy that delays each chunk (no netem on this kernel).
cargo build --quiet --release --locked -p delay-proxy --manifest-path "$root/Cargo.toml"
venv="$root/target/bench-venv"
if [ ! -x "$venv/bin/scrapy" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'aiohttp==3.*' 'uvloop==0.*' 'httpx==0.*' 'scrapy==2.*'
fi
# The Python package (W11), built for release into the same venv.
if [ ! -x "$venv/bin/maturin" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'maturin==1.16.0'
fi
VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --release --quiet -m "$root/crates/volley-py/Cargo.toml"
exec "$venv/bin/python" "$root/bench/harness.py" "$@"

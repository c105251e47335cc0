#!/usr/bin/env bash
# volley's tests: installs the Debian packages they use when missing (as
# root: jq, which reads an export, dnsmasq-base, a real DNS server on
# loopback, postgresql, whose initdb and pg_ctl start a throwaway server
# through scripts/pg.sh, chromium for the dashboard, tinyproxy and microsocks,
# real HTTP and SOCKS5 proxies), then runs every test of the workspace, then fuzzes
# the serve API against its OpenAPI description (scripts/api-fuzz.sh, with
# schemathesis from PyPI in a venv under target/), then builds the Python
# package with maturin and runs its pytest suite (scripts/py-test.sh), then
# reads volley's WARC files and Parquet exports with warcio, pywb, DuckDB
# and pyarrow (scripts/archive-test.sh).
# Extra arguments go to `cargo test`, and skip the fuzzing and Python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages jq dnsmasq-base postgresql chromium tinyproxy microsocks nginx-light
cd "$root"
cargo test --workspace "$@"
if [ $# -eq 0 ]; then
    scripts/api-fuzz.sh
    scripts/py-test.sh
    scripts/archive-test.sh
fi

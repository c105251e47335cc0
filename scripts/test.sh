#!/usr/bin/env bash
# volley's tests: installs the Debian packages they use when missing (as
# root: jq, which reads an export, dnsmasq-base, a real DNS server on
# loopback, and postgresql, whose initdb and pg_ctl start a throwaway server
# through scripts/pg.sh), then runs every test of the workspace. Extra
# arguments go to `cargo test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages jq dnsmasq-base postgresql chromium
cd "$root"
exec cargo test --workspace "$@"

#!/usr/bin/env bash
# volley's tests: installs the Debian packages they use when missing (as
# root: jq, which reads an export, and dnsmasq-base, a real DNS server on
# loopback), then runs every test of the workspace. Extra arguments go to
# `cargo test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages jq dnsmasq-base
cd "$root"
exec cargo test --workspace "$@"

#!/usr/bin/env bash
# Fuzzes `volley serve`'s API with schemathesis (from PyPI, in a venv under
# target/) against its own /openapi.json: no 5xx, every answer as the
# description declares it (status, content type, schema, headers), invalid
# input rejected, valid input accepted, auth enforced. The endless event
# stream is left out. Called by scripts/test.sh; extra arguments go to
# `schemathesis run` (e.g. --seed 7, --max-examples 200).
#
# The server runs in a network namespace of its own with only loopback
# (when `unshare` is allowed), and asks a dead name server either way, so
# the jobs the fuzzer creates never reach beyond 127.0.0.0/8.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages python3-venv iproute2 util-linux
cd "$root"

venv=target/venv-schemathesis
python_venv "$venv" 'schemathesis==4.32.5'
cargo build --quiet --locked -p volley-cli
work=$(mktemp -d)
trap '[ -n "${KEEP_FUZZ:-}" ] || rm -rf "$work"' EXIT; echo "api-fuzz: work in $work" >&2
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

cat > "$work/run.sh" <<RUN
set -euo pipefail
if [ -n "\${FUZZ_NETNS:-}" ]; then ip link set lo up; fi
VOLLEY_TOKEN=$token "$root/target/debug/volley" serve --db "$work/fuzz.db" \
    --listen 127.0.0.1:0 --dns-server 127.0.0.1:9 --retries 0 --timeout 2 \
    2> "$work/server.log" &
server=\$!
for _ in \$(seq 100); do
    grep -q 'on http://' "$work/server.log" && break
    sleep 0.1
done
url=\$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)
status=0
"$root/$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "\$url/openapi.json" \
    --header "Authorization: Bearer $token" --exclude-path "/v1/jobs/{name}/events" \
    "\$@" || status=\$?
kill -TERM \$server
wait \$server || { echo "volley serve exited \$? at the end of the run" >&2; status=1; }
if grep -q 'panicked' "$work/server.log"; then
    echo "volley serve panicked:" >&2; cat "$work/server.log" >&2; status=1
fi
exit \$status
RUN
if unshare --net true 2>/dev/null; then
    FUZZ_NETNS=1 exec unshare --net bash "$work/run.sh" "$@"
else
    echo "api-fuzz: no network namespace here (unshare refused); the dead name server still keeps jobs on loopback" >&2
    bash "$work/run.sh" "$@"
fi

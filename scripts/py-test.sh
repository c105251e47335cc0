#!/usr/bin/env bash
# The Python package's tests: builds crates/volley-py into a venv under
# target/ with maturin (from PyPI), then runs its pytest suite, which
# starts its own loopback servers. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages python3-venv
cd "$root"
venv=target/venv-py
if [ ! -x "$venv/bin/maturin" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'maturin==1.16.0' 'pytest==9.2.0' 'pytest-asyncio==1.5.0' \
        'aiohttp==3.14.5' 'mypy==2.4.1'
fi
# The debug build shares target/ with `cargo test`, so little is rebuilt.
VIRTUAL_ENV="$root/$venv" "$venv/bin/maturin" develop --quiet -m crates/volley-py/Cargo.toml
"$venv/bin/mypy" --strict --no-error-summary crates/volley-py/python/volley crates/volley-py/tests/typed.py
"$venv/bin/pytest" -q -p no:cacheprovider crates/volley-py/tests "$@"

#!/usr/bin/env bash
# The Python package's tests, on the wheel a user installs: builds it
# (scripts/wheel.sh: a release build, maturin from PyPI), installs it into a
# new venv under target/ with no Rust toolchain on PATH, and runs mypy and
# the pytest suite there, still without one. The suite starts its own
# loopback servers and runs the installed `volley` command as well as the
# package. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
ensure_packages python3-venv
cd "$root"
started=$SECONDS
wheel=$(scripts/wheel.sh)
echo "py-test: built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB) in $((SECONDS - started)) s" >&2

# PATH without the directories that hold cargo or rustc.
bare=""
IFS=: read -ra dirs <<< "$PATH"
for dir in "${dirs[@]}"; do
    if [ -n "$dir" ] && [ ! -x "$dir/cargo" ] && [ ! -x "$dir/rustc" ]; then
        bare="${bare:+$bare:}$dir"
    fi
done

venv=target/venv-wheel
rm -rf "$venv"
python3 -m venv "$venv"
export PATH="$root/$venv/bin:$bare"
if command -v cargo >/dev/null; then
    echo "py-test: cargo is still on PATH ($(command -v cargo))" >&2
    exit 1
fi
pip install --quiet 'pytest==9.2.0' 'pytest-asyncio==1.5.0' 'aiohttp==3.14.5' 'mypy==2.4.1'
pip install --quiet --no-deps "$wheel"
mypy --strict --no-error-summary crates/volley-py/python/volley crates/volley-py/tests/typed.py
VOLLEY_WHEEL_TEST=1 pytest -q -p no:cacheprovider crates/volley-py/tests "$@"

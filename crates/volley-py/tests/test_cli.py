"""The ``volley`` command the wheel installs (its console script), run as a
user runs it: from the environment's ``bin``, against a real loopback
server (conftest.Server). scripts/py-test.sh runs these against the
installed release wheel, with no Rust toolchain on PATH."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import volley

from conftest import Server


def command() -> str:
    """The ``volley`` console script of the environment running the tests."""
    found = shutil.which("volley", path=sysconfig.get_path("scripts"))
    if found is None:
        pytest.fail("no volley command in this environment's scripts directory: install the wheel (scripts/wheel.sh)")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_version_agrees_with_the_package() -> None:
    out = run("--version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"volley {volley.__version__}"
    assert any(line.startswith("commit:") for line in lines), out.stdout
    assert "features: postgresql, warc, parquet" in out.stdout
    assert any(line.startswith("sqlite:   3.") for line in lines), out.stdout


def test_a_job_gets_one_outcome_per_input(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/ok/{n}") for n in range(40)] + [server.url("/status/404"), "not a url"]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    out = run("--db", "jobs.db", "fetch", "urls.txt", "--job", "t", "--quiet", "--retries", "0", cwd=tmp_path)
    # A 404 and an invalid line are outcomes: every input has one, exit 0.
    assert out.returncode == 0, out.stderr
    exported = run("--db", "jobs.db", "export", "--job", "t", "--format", "jsonl", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["url"] for r in rows] == urls
    classes = [r["class"] for r in rows]
    assert classes == ["ok"] * 40 + ["http_4xx", "invalid_url"]


def test_a_bad_flag_exits_2_naming_it(tmp_path: Path) -> None:
    out = run("fetch", "-", "--per-host", "many", cwd=tmp_path)
    assert out.returncode == 2
    assert "--per-host" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_drains_and_exits_130_without_a_traceback(server: Server, tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("".join(f"{server.url(f'/slow/{n}?ms=300&from=ctrl_c')}\n" for n in range(200)))
    proc = subprocess.Popen(
        [command(), "--db", "jobs.db", "fetch", "urls.txt", "--concurrency", "2", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupted once the job is fetching (the server has its first
    # requests): the engine watches for signals by then. Before, SIGINT
    # ends the process as it ends the Rust binary, with nothing recorded.
    deadline = time.monotonic() + 30
    while sum(n for path, n in server.hits.items() if path.endswith("from=ctrl_c")) < 2:
        assert time.monotonic() < deadline, "no request reached the server in 30 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # Rerunning resumes the job to the end.
    out = run("--db", "jobs.db", "fetch", "urls.txt", "--concurrency", "64", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_man_pages_and_completions_are_installed() -> None:
    share = Path(sys.prefix) / "share"
    page = share / "man" / "man1" / "volley-fetch.1"
    assert page.is_file(), f"no {page}"
    assert "\\-\\-per\\-host" in page.read_text()
    for script, marker in [
        (share / "bash-completion" / "completions" / "volley", "_volley()"),
        (share / "zsh" / "site-functions" / "_volley", "#compdef volley"),
        (share / "fish" / "vendor_completions.d" / "volley.fish", "complete -c volley"),
    ]:
        assert script.is_file(), f"no {script}"
        assert marker in script.read_text(), script


def test_the_package_comes_from_the_installed_wheel() -> None:
    """Under scripts/py-test.sh (VOLLEY_WHEEL_TEST=1) the tests must run on the
    installed wheel, not on a development build of the source tree."""
    if os.environ.get("VOLLEY_WHEEL_TEST") != "1":
        pytest.skip("only under scripts/py-test.sh")
    assert Path(volley.__file__).resolve().is_relative_to(Path(sysconfig.get_path("purelib")).resolve()), volley.__file__
    assert shutil.which("cargo") is None, "cargo is on PATH"

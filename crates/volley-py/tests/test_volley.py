"""volley from asyncio, against a real loopback server (conftest.Server)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import volley

from conftest import Server

FAST = {"backoff_base": "10ms", "backoff_max": "50ms"}


async def test_fetch_all_gives_one_outcome_per_input_in_order(server: Server) -> None:
    urls = [
        server.url("/ok/1"),
        server.url("/status/404"),
        server.url("/flaky/a"),
        server.url("/stall"),
        "not a url",
        server.url("/ok/2"),
    ]
    outcomes = await volley.fetch_all(urls, concurrency=8, retries=2, timeout=0.5, **FAST)
    assert [o.url for o in outcomes] == urls
    assert [o.line for o in outcomes] == [1, 2, 3, 4, 5, 6]
    assert [o.outcome_class for o in outcomes] == [
        "ok",
        "http_4xx",
        "ok",
        "total_timeout",
        "invalid_url",
        "ok",
    ]
    ok, missing, flaky, stalled, invalid, _ = outcomes
    assert ok.ok and ok.error_class is None and ok.status == 200 and ok.bytes == 4
    assert missing.status == 404 and missing.error_class == "http_4xx" and not missing.ok
    assert flaky.attempts == 2, "503 then 200: retried once"
    assert stalled.attempts == 3 and stalled.status is None
    assert invalid.attempts == 0 and invalid.message
    assert ok.headers is not None and ok.headers["content-type"].startswith("text/plain")
    assert ok.elapsed_ms is not None and ok.finished_at_ms > 0
    with pytest.raises(ValueError, match="not saved"):
        ok.read()


async def test_a_wrong_option_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="concurency"):
        await volley.fetch_all(["http://127.0.0.1:9/"], concurency=4)
    with pytest.raises(ValueError, match="timeout"):
        await volley.fetch_all(["http://127.0.0.1:9/"], timeout="soon")
    # Named as the caller wrote them, not as the command line's flags.
    with pytest.raises(ValueError, match="^per_host must be at least 1$"):
        await volley.fetch_all(["http://127.0.0.1:9/"], per_host=0)
    with pytest.raises(ValueError, match="keyword argument timeout: "):
        await volley.fetch_all(["http://127.0.0.1:9/"], timeout="soon")


def test_the_option_docs_are_the_engines_table_with_its_real_defaults() -> None:
    doc = volley.fetch_all.__doc__ or ""
    assert "``per_host``: Most requests in flight at once to one host [default: 8]." in doc
    assert "``timeout``: " in doc and "[default: 60s]" in doc
    assert volley.Engine.fetch.__doc__ is not None and "``retries``" in volley.Engine.fetch.__doc__
    for keyword, _ in volley._volley.OPTIONS:
        assert f"``{keyword}``: " in doc
        # Options named in the help are respelled as keywords.
        assert "--" + keyword.replace("_", "-") not in doc


async def test_a_job_streams_outcomes_as_they_are_recorded(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/slow/{i}?ms={20 * (i % 5)}") for i in range(40)] + ["bad url"]
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch(urls, job="stream", concurrency=4)
        seen = []
        first_at = None
        async for outcome in job:
            if first_at is None:
                first_at = job.done
            seen.append(outcome)
        summary = await job.wait()
    assert first_at is False, "the first outcome arrived while the run went on"
    assert sorted(o.line or 0 for o in seen) == list(range(1, 42)), "each outcome once"
    assert seen[-1].outcome_class == "invalid_url", "ingest outcomes come last"
    assert summary.total == 41 and summary.done == 40 and summary.failed == 1
    assert summary.classes == {"ok": 40, "invalid_url": 1}
    assert not summary.interrupted and job.summary() == summary


async def test_saved_bodies_read_back_and_parse_as_json(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/json/{n}") for n in range(3)]
    outcomes = await volley.fetch_all(urls, save_bodies=tmp_path / "bodies")
    assert [o.json() for o in outcomes] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert outcomes[0].read() == b'{"n": 0}'
    assert Path(outcomes[0].body_path or "").is_file()


async def test_items_of_a_paginated_job(server: Server, tmp_path: Path) -> None:
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch([server.url("/api?page=1&pages=3")], job="api", paginate="link", items="/data")
        summary = await job.wait()
        items = [item async for item in engine.items("api")]
    assert summary.classes == {"ok": 3}
    assert items == [{"id": n} for n in range(1, 7)]


async def test_a_job_exports_to_parquet(server: Server, tmp_path: Path) -> None:
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch([server.url("/api?page=1&pages=3")], job="api", paginate="link", items="/data")
        await job.wait()
        outcomes = await engine.export_parquet("api", tmp_path / "o.parquet")
        items = await engine.export_parquet("api", tmp_path / "i.parquet", items=True)
        with pytest.raises(volley.VolleyError):
            await engine.export_parquet("nope", tmp_path / "x.parquet")
    assert (outcomes, items) == (3, 6)
    for name in ("o.parquet", "i.parquet"):
        data = (tmp_path / name).read_bytes()
        assert data[:4] == data[-4:] == b"PAR1"


async def test_a_crawl_finds_each_page_once_and_the_broken_link(server: Server, tmp_path: Path) -> None:
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.crawl([server.url("/site/0")], job="site", retries=0)
        pages = sorted([[o.url.removeprefix(server.url("")), o.outcome_class] async for o in job])
        summary = await job.wait()
    assert pages == sorted([[f"/site/{n}", "ok"] for n in range(10)] + [["/status/404", "http_4xx"]])
    assert summary.classes == {"ok": 10, "http_4xx": 1}
    for n in range(10):
        assert server.hits[f"/site/{n}"] == 1, "each page fetched once"


async def test_cancelling_stops_the_job_and_a_later_fetch_resumes_it(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/slow/{i}?ms=100") for i in range(60)]
    db = tmp_path / "v.db"
    async with volley.Engine(db=db) as engine:
        job = await engine.fetch(urls, job="nightly", concurrency=2, grace="5s")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await job.wait()
        assert job.done, "stopped and drained before the cancel returned"
        summary = await job.wait()
        assert summary.interrupted and 0 < summary.done < 60
    async with volley.Engine(db=db) as engine:
        again = await engine.fetch(urls, job="nightly", concurrency=8)
        resumed = await again.wait()
        lines = [o.line for o in await again.outcomes()]
    assert not resumed.interrupted and resumed.done == 60
    assert resumed.fetched == 60 - summary.done, "only what was left"
    assert lines == list(range(1, 61))


async def test_an_abandoned_iterator_stops_the_run(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/slow/{i}?ms=50") for i in range(400)]
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch(urls, job="abandoned", concurrency=4)
        async for _ in job:
            break
        await job.aclose()
        summary = await asyncio.wait_for(job.wait(), timeout=30)
    assert summary.interrupted and summary.done < 400


async def test_the_event_loop_keeps_ticking_while_a_job_runs(server: Server) -> None:
    ticks = 0
    late = 0.0
    running = True

    async def ticker() -> None:
        nonlocal ticks, late
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            late = max(late, time.perf_counter() - before - 0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    outcomes = await volley.fetch_all([server.url(f"/slow/{i}?ms=20") for i in range(300)], concurrency=16)
    took = time.perf_counter() - started
    running = False
    await task
    assert len(outcomes) == 300
    assert ticks >= 0.5 * took / 0.01, f"{ticks} ticks in {took:.2f} s"
    assert late < 0.25, f"the loop was blocked for {late:.3f} s"


async def test_run_failures_are_typed_exceptions(server: Server, tmp_path: Path) -> None:
    with pytest.raises(volley.InputError):
        async with volley.Engine(db=tmp_path / "v.db") as engine:
            await engine.fetch(tmp_path / "missing.txt")
    async with volley.Engine(db=tmp_path / "v.db") as engine:
        await (await engine.fetch([server.url("/ok/1")], job="same")).wait()
        job = await engine.fetch([server.url("/ok/2")], job="same")
        with pytest.raises(volley.InputError, match="changed"):
            await job.wait()
        bad = await engine.fetch([server.url("/ok/1")], job="tls", ca_cert=tmp_path / "none.pem")
        with pytest.raises(volley.ClientError, match="none.pem"):
            await bad.wait()


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    import volley

    async def main():
        urls = [f"{sys.argv[2]}/slow/{i}?ms=100" for i in range(80)]
        async with volley.Engine(db=sys.argv[1]) as engine:
            job = await engine.fetch(urls, job="crash", concurrency=2)
            async for outcome in job:
                print(outcome.line, flush=True)

    asyncio.run(main())
    """
)


async def test_a_job_killed_with_sigkill_resumes_without_duplicates(server: Server, tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    base = server.url("")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db), base], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    streamed = [child.stdout.readline() for _ in range(6)]
    assert all(line.strip() for line in streamed), streamed
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with sqlite3.connect(db) as conn:
        (before,) = conn.execute("SELECT count(*) FROM outcomes").fetchone()
    assert 6 <= before < 80
    urls = [f"{base}/slow/{i}?ms=100" for i in range(80)]
    async with volley.Engine(db=db) as engine:
        job = await engine.fetch(urls, job="crash", concurrency=8)
        summary = await job.wait()
        lines = [o.line for o in await job.outcomes()]
    assert summary.done == 80 and not summary.interrupted
    assert summary.fetched <= 80 - before + 2, "what was recorded is not fetched again"
    assert lines == list(range(1, 81)), "one outcome per input"


async def test_fetch_all_returns_outcomes_read_from_disk_as_a_list_would(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    n = 2500  # more than two pages
    outcomes = await volley.fetch_all((server.url(f"/ok/{i}") for i in range(n)), concurrency=32)
    assert len(outcomes) == n
    assert outcomes[0].url == server.url("/ok/0") and outcomes[-1].url == server.url(f"/ok/{n - 1}")
    assert [o.line for o in outcomes[995:1005]] == list(range(996, 1006)), "a slice across pages"
    assert outcomes[2100].line == 2101 and outcomes[5].line == 6, "back to an earlier page"
    assert [o.line for o in outcomes] == list(range(1, n + 1)), "iteration, twice"
    assert sum(o.ok for o in outcomes) == n
    with pytest.raises(IndexError):
        outcomes[n]
    assert [p.name for p in tmp_path.iterdir()] != [], "the throwaway database lives with the outcomes"
    del outcomes
    gc.collect()
    assert list(tmp_path.iterdir()) == [], "and goes with them"


class Address:
    """Not a str: sent as str(item)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return self.url


async def test_a_generator_input_is_read_as_lines_and_its_failure_is_an_input_error(
    server: Server, tmp_path: Path
) -> None:
    def urls() -> Iterator[object]:
        yield server.url("/ok/1")
        yield "not a url"
        yield Address(server.url("/ok/3"))

    outcomes = await volley.fetch_all(urls())
    assert [(o.line, o.outcome_class) for o in outcomes] == [(1, "ok"), (2, "invalid_url"), (3, "ok")]

    def broken() -> Iterator[str]:
        for i in range(1500):
            yield server.url(f"/ok/{i}")
        raise OSError("the list's disk went away")

    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch(broken(), job="broken")
        with pytest.raises(volley.InputError, match="went away"):
            await job.wait()
        again = await engine.fetch((server.url(f"/ok/{i}") for i in range(2000)), job="broken")
        summary = await again.wait()
        lines = [o.line for o in await again.outcomes()]
    assert summary.done == 2000 and lines == list(range(1, 2001))


async def test_a_job_stopped_while_its_generator_is_read_resumes_the_rest(server: Server, tmp_path: Path) -> None:
    n = 6000
    stop_at = 1500

    def urls(stopper: list[volley.Job]) -> Iterator[str]:
        for i in range(n):
            if i == stop_at and stopper:
                stopper[0].stop()
            yield server.url(f"/ok/{i}")

    async with volley.Engine(db=tmp_path / "v.db") as engine:
        first: list[volley.Job] = []
        job = await engine.fetch(urls(first), job="lazy", concurrency=4)
        first.append(job)
        summary = await job.wait()
        assert summary.interrupted and summary.total < n, "stopped before the input was read"
        # A generator again: a job whose input looked complete would not read it.
        again = await engine.fetch(urls([]), job="lazy", concurrency=32)
        resumed = await again.wait()
        lines = [o.line for o in await again.outcomes()]
    assert not resumed.interrupted and resumed.done == n
    assert lines == list(range(1, n + 1)), "one outcome per input, none twice"


EXITS = textwrap.dedent(
    """
    import asyncio, sys
    import volley

    async def main():
        async with volley.Engine(db=sys.argv[1]) as engine:
            job = await engine.fetch([sys.argv[2]] * 100, job="x", concurrency=8)
            await job.wait()

    asyncio.run(main())
    """
)


def test_a_script_exits_cleanly_right_after_its_last_await(server: Server, tmp_path: Path) -> None:
    # Engine threads that took the GIL to complete a future raced the
    # interpreter's shutdown: "Fatal Python error: PyGILState_Release" or
    # a segfault, in about one short script in five.
    for run in range(30):
        done = subprocess.run(
            [sys.executable, "-c", EXITS, str(tmp_path / f"{run}.db"), server.url("/ok/1")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), f"run {run}"


async def test_an_async_generator_input_streams_every_outcome(server: Server, tmp_path: Path) -> None:
    async def produce() -> AsyncIterator[str]:
        for i in range(1, 1201):
            if i == 1150:
                # A trickle: what came before is sent without waiting for a full chunk.
                await asyncio.sleep(0.5)
            yield server.url(f"/ok/{i}")

    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch(produce(), job="produced", concurrency=16)
        lines = sorted([o.line or 0 async for o in job])
        summary = await job.wait()
    assert lines == list(range(1, 1201)), "each outcome once"
    assert not summary.interrupted and summary.done == 1200

    async def broken() -> AsyncIterator[str]:
        yield server.url("/ok/1")
        raise OSError("the producer's socket closed")

    async with volley.Engine(db=tmp_path / "w.db") as engine:
        job = await engine.fetch(broken(), job="broken")
        with pytest.raises(volley.InputError, match="socket closed"):
            async for _ in job:
                pass

    outcomes = await volley.fetch_all(produce())
    assert len(outcomes) == 1200


async def test_leaving_the_loop_early_stops_the_run(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/slow/{i}?ms=50") for i in range(300)]

    async def take(job: volley.Job, n: int) -> int:
        seen = 0
        async for _ in job:
            seen += 1
            if seen == n:
                break
        return seen

    async with volley.Engine(db=tmp_path / "v.db") as engine:
        job = await engine.fetch(urls, job="broken-off", concurrency=4)
        assert await take(job, 20) == 20
        summary = await asyncio.wait_for(job.wait(), timeout=30)
        assert summary.interrupted and summary.done < 300, "break stopped the run"

        # An exception out of the loop's body stops it as well.
        job = await engine.fetch(urls, job="raised", concurrency=4)
        with pytest.raises(KeyError):
            async for _ in job:
                raise KeyError("the caller's bug")
        summary = await asyncio.wait_for(job.wait(), timeout=30)
        assert summary.interrupted and summary.done < 300

        # Cancelling the task that iterates stops it.
        job = await engine.fetch(urls, job="cancelled", concurrency=4)
        task = asyncio.ensure_future(take(job, 1000))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        summary = await asyncio.wait_for(job.wait(), timeout=30)
        assert summary.interrupted and summary.done < 300

        # A job nobody holds any more is stopped when it is collected.
        job = await engine.fetch(urls, job="dropped", concurrency=4)
        native = job._native
        del job
        gc.collect()
        summary_text = await asyncio.wait_for(volley._call(native.wait), timeout=30)
        assert json.loads(summary_text)["interrupted"]

        # Iterated to its end, the run completes.
        job = await engine.fetch(urls[:30], job="whole", concurrency=8)
        assert len([o async for o in job]) == 30
        assert not (await job.wait()).interrupted


async def test_the_stub_names_every_field_of_an_outcome(server: Server) -> None:
    # An Outcome's fields are written twice by hand: the Rust class and the
    # type stub that mypy reads. Each is held against the other.
    import ast

    stub = Path(volley.__file__).with_name("_volley.pyi")
    tree = ast.parse(stub.read_text())
    outcome = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Outcome")
    stubbed = {n.target.id for n in outcome.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    stubbed |= {n.name for n in outcome.body if isinstance(n, ast.FunctionDef)}
    runtime = {name for name in dir(volley.Outcome) if not name.startswith("_")}
    assert stubbed == runtime, f"stub only: {stubbed - runtime}; class only: {runtime - stubbed}"
    # The fields are the export's columns, in order, under Python names.
    renamed = {"class": "outcome_class", "headers": "headers_json", "meta": "meta_json", "extracted": "extracted_json"}
    fields = [n.target.id for n in outcome.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    columns = [renamed.get(c, c) for c in volley._volley.EXPORT_COLUMNS]
    assert [f for f in fields if f in columns] == columns, f"stub fields {fields}; export columns {columns}"
    (row,) = await volley.fetch_all([server.url("/ok/1")])
    for field in stubbed - {"read", "json"}:
        getattr(row, field)  # every field reads on a real outcome

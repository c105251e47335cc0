"""volley's WARC files and Parquet exports, read by third-party tools:
warcio (check, index), pywb (its own indexer, and replay), DuckDB and
pyarrow. Run by scripts/archive-test.sh, which serves $SITE with nginx
(gzip on) at $BASE and gives the volley binary as $VOLLEY."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

VOLLEY = os.environ["VOLLEY"]
SITE = Path(os.environ["SITE"])
BASE = os.environ["BASE"]
WORK = Path(os.environ["WORK"])
DB = WORK / "volley.db"
BIN = Path(sys.executable).parent
PAGES = 20


def volley(*args: str) -> str:
    out = subprocess.run(
        [VOLLEY, "--db", str(DB), *args], capture_output=True, check=False, cwd=WORK
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def warc_files(job: str) -> list[Path]:
    with sqlite3.connect(DB) as db:
        rows = db.execute(
            "SELECT path FROM warc_files f JOIN jobs j ON j.id = f.job_id "
            "WHERE j.name = ? ORDER BY f.id",
            (job,),
        ).fetchall()
    return [WORK / row[0] for row in rows]


def page_text(i: int) -> str:
    return f"<html><body><h1>page {i}</h1>" + f"<p>text of page {i}. </p>" * 200 + "</body></html>\n"


@pytest.fixture(scope="module")
def jobs() -> Iterator[None]:
    """Job `first` archives the site, `second` refreshes it (304s), and
    `items` reads a JSON array as items."""
    (SITE / "dir").mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="page-{i}.html">{i}</a>' for i in range(PAGES))
    (SITE / "index.html").write_text(f"<html><body>{links}</body></html>\n")
    for i in range(PAGES):
        (SITE / f"page-{i}.html").write_text(page_text(i))
    (SITE / "same.html").write_text(page_text(0))
    (SITE / "style.css").write_text("body { color: black; }\n" * 50)
    (SITE / "dir" / "index.html").write_text("<p>a directory</p>\n")
    items = [
        {"id": 1, "name": "a", "score": 1.5, "tags": ["x", "y"], "mixed": 1},
        {"id": 2, "name": "b", "score": 2, "mixed": "two", "flag": True},
        {"id": 3, "name": None, "score": 3.25, "mixed": {"n": 3}, "big": 2**70},
    ]
    (SITE / "data.json").write_text(json.dumps({"data": items}))
    urls = [f"{BASE}/", *[f"{BASE}/page-{i}.html" for i in range(PAGES)]]
    urls += [f"{BASE}/same.html", f"{BASE}/style.css", f"{BASE}/dir", f"{BASE}/missing"]
    (WORK / "urls.txt").write_text("\n".join(urls) + "\n")
    (WORK / "api.txt").write_text(f"{BASE}/data.json\n")
    volley("fetch", "urls.txt", "--quiet", "--job", "first", "--warc", "warc/first")
    # Not a wait for an event: the refresh's captures must fall in a later
    # second than the first job's, as pywb tells captures by their
    # 14-digit timestamp.
    time.sleep(1.1)
    volley("fetch", "urls.txt", "--quiet", "--job", "second", "--refresh", "--warc", "warc/second")
    volley("fetch", "api.txt", "--quiet", "--job", "items", "--items", "/data")
    yield


def test_warcio_checks_every_record_and_digest(jobs: None) -> None:
    files = warc_files("first") + warc_files("second")
    assert len(files) == 2
    out = subprocess.run(
        [BIN / "warcio", "check", "-v", *map(str, files)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "digest pass" in out.stdout
    assert "fail" not in out.stdout


def warcio_index(files: list[Path]) -> list[dict[str, str]]:
    out = subprocess.run(
        [
            BIN / "warcio",
            "index",
            "-f",
            "warc-type,warc-target-uri,warc-profile,warc-refers-to-target-uri,content-encoding",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_first_job_archives_responses_hops_and_a_revisit(jobs: None) -> None:
    records = warcio_index(warc_files("first"))
    kinds = [r["warc-type"] for r in records]
    assert kinds[0] == "warcinfo"
    assert kinds.count("request") == kinds.count("response") + kinds.count("revisit")
    targets = {r["warc-target-uri"] for r in records if r["warc-type"] == "response"}
    assert f"{BASE}/dir" in targets and f"{BASE}/dir/" in targets, "each hop its own pair"
    same = [r for r in records if r.get("warc-target-uri") == f"{BASE}/same.html"]
    assert same[0]["warc-type"] == "revisit"
    assert same[0]["warc-profile"].endswith("/identical-payload-digest")
    assert same[0]["warc-refers-to-target-uri"] == f"{BASE}/page-0.html"


def test_a_refresh_archives_only_revisits(jobs: None) -> None:
    records = warcio_index(warc_files("second"))
    answered = [r for r in records if r["warc-type"] in ("response", "revisit")]
    # The 404 page and the directory's 301 have no validators: they come
    # again in full, and their payloads, archived already, are revisits too.
    full = [r for r in answered if r["warc-type"] == "response"]
    assert full == [], full
    not_modified = [
        r for r in answered if r.get("warc-profile", "").endswith("/server-not-modified")
    ]
    assert len(not_modified) == PAGES + 4  # index, pages, same, css, dir/
    first = sum(p.stat().st_size for p in warc_files("first"))
    second = sum(p.stat().st_size for p in warc_files("second"))
    print(f"first WARC {first} bytes, refresh {second} bytes")


def cdxj_lines(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    lines = []
    for line in text.splitlines():
        key, stamp, fields = line.split(" ", 2)
        lines.append((key, stamp, json.loads(fields)))
    return lines


def test_the_cdxj_export_equals_pywbs_own_index(jobs: None) -> None:
    for job in ("first", "second"):
        ours = cdxj_lines(volley("export", "--job", job, "--cdxj"))
        out = subprocess.run(
            [BIN / "cdx-indexer", "-j", "-s", *map(str, warc_files(job))],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = cdxj_lines(out.stdout)
        for _, _, fields in theirs:
            fields["filename"] = Path(fields["filename"]).name
        assert sorted(ours, key=repr) == sorted(theirs, key=repr), job
        assert [(k, s) for k, s, _ in ours] == sorted((k, s) for k, s, _ in ours)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        response = urllib.request.urlopen(url, timeout=30)
    except urllib.error.HTTPError as e:
        response = e
    with response:
        body = response.read()
        if response.headers.get("Content-Encoding") == "gzip" and body:
            body = gzip.decompress(body)
        return response.status, body


def test_pywb_replays_captures_and_revisits_from_the_exported_index(jobs: None) -> None:
    root = WORK / "pywb"
    root.mkdir()
    subprocess.run([BIN / "wb-manager", "init", "volley"], cwd=root, check=True, capture_output=True)
    archive = root / "collections" / "volley" / "archive"
    for f in warc_files("first") + warc_files("second"):
        shutil.copy(f, archive / f.name)
    lines = volley("export", "--job", "first", "--cdxj") + volley("export", "--job", "second", "--cdxj")
    index = root / "collections" / "volley" / "indexes" / "index.cdxj"
    index.write_text("".join(sorted(lines.splitlines(keepends=True))))
    port = free_port()
    server = subprocess.Popen(
        [BIN / "wayback", "-p", str(port), "-b", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "pywb did not start"
                assert server.poll() is None, "pywb exited"
                time.sleep(0.2)
        stamps = {
            job: cdxj_lines(volley("export", "--job", job, "--cdxj"))[0][1] for job in ("first", "second")
        }
        assert stamps["first"] < stamps["second"]
        for i in (0, 7):
            status, body = get(f"http://127.0.0.1:{port}/volley/{stamps['first']}id_/{BASE}/page-{i}.html")
            assert status == 200
            assert body.decode() == page_text(i), f"page {i}"
        status, body = get(f"http://127.0.0.1:{port}/volley/{stamps['first']}id_/{BASE}/same.html")
        assert status == 200
        assert body.decode() == page_text(0), "an identical-payload revisit replays the original"
        # A server-not-modified revisit replays as what was captured: the
        # 304 (its headers), resolved to the original capture by pywb.
        status, _ = get(f"http://127.0.0.1:{port}/volley/{stamps['second']}id_/{BASE}/page-3.html")
        assert status == 304
    finally:
        server.terminate()
        server.wait(10)


def test_parquet_outcomes_equal_the_jsonl_export(jobs: None) -> None:
    import duckdb
    import pyarrow.parquet as pq

    path = WORK / "outcomes.parquet"
    with open(path, "wb") as out:
        subprocess.run(
            [VOLLEY, "--db", str(DB), "export", "--job", "first", "--format", "parquet"],
            stdout=out,
            check=True,
        )
    rows = [json.loads(line) for line in volley("export", "--job", "first").splitlines()]
    table = pq.read_table(path)
    schema = {f.name: str(f.type) for f in table.schema}
    assert schema["status"] == "int32"
    assert schema["bytes"] == "int64"
    assert schema["changed"] == "bool"
    assert schema["finished_at_ms"] == "timestamp[ms, tz=UTC]"
    assert schema["headers"] == "string"
    assert list(schema) == list(rows[0].keys()), "the columns of the JSON Lines export, in order"
    assert duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall() == [(len(rows),)]
    assert duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE class = 'ok'").fetchall() == [
        (sum(r["class"] == "ok" for r in rows),)
    ]
    for got, want in zip(table.to_pylist(), rows, strict=True):
        for key, value in want.items():
            cell = got[key]
            if key in ("started_at_ms", "finished_at_ms") and cell is not None:
                cell = int(cell.timestamp() * 1000 + 0.5)
            if key in ("headers", "meta", "extracted") and cell is not None:
                cell = json.loads(cell)
            assert cell == value, (key, cell, value)


def test_parquet_items_take_every_key_typed_by_its_values(jobs: None) -> None:
    import pyarrow.parquet as pq

    path = WORK / "items.parquet"
    with open(path, "wb") as out:
        subprocess.run(
            [VOLLEY, "--db", str(DB), "export", "--job", "items", "--items", "--format", "parquet"],
            stdout=out,
            check=True,
        )
    table = pq.read_table(path)
    schema = {f.name: str(f.type) for f in table.schema}
    assert schema == {
        "line": "int64",
        "page": "int32",
        "url": "string",
        "idx": "int64",
        "id": "int64",
        "name": "string",
        "score": "double",
        "tags": "string",
        "mixed": "string",
        "flag": "bool",
        "big": "string",
    }
    got = table.to_pylist()
    assert [r["id"] for r in got] == [1, 2, 3]
    assert [r["score"] for r in got] == [1.5, 2.0, 3.25]
    assert [r["mixed"] for r in got] == ["1", '"two"', '{"n":3}'], "mixed types: JSON text"
    assert got[0]["tags"] == '["x","y"]'
    assert got[2]["big"] == str(2**70), "an integer past INT64 keeps its digits"
    assert got[1]["name"] == "b" and got[2]["name"] is None

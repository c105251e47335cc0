"""A real loopback HTTP server (aiohttp) for the tests, on a thread and
event loop of its own, so that it answers whatever the test's loop does."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Iterator

import pytest
from aiohttp import web


class Server:
    """Routes:

    - ``/ok/{n}``: 200 ``ok {n}``.
    - ``/status/{code}``: that status.
    - ``/flaky/{key}``: 503 the first time, then 200.
    - ``/slow/{n}?ms=D``: 200 after D ms.
    - ``/stall``: headers never come (an hour).
    - ``/json/{n}``: ``{"n": n}``.
    - ``/api?page=P&pages=N``: ``{"data": [...]}`` with a Link ``rel="next"``
      header (RFC 8288) up to page N.
    - ``/site/{n}``: HTML page n of 10, linking to pages 2n+1 and 2n+2 (a
      tree), to page 0 (a cycle) and to ``/status/404`` (a broken link).
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.middlewares.append(self._count)
        app.router.add_get("/ok/{n}", self._ok)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/flaky/{key}", self._flaky)
        app.router.add_get("/slow/{n}", self._slow)
        app.router.add_get("/stall", self._stall)
        app.router.add_get("/json/{n}", self._json)
        app.router.add_get("/api", self._api)
        app.router.add_get("/site/{n}", self._site)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Server:
        self._thread.start()
        self._ready.wait(10)
        return self

    @web.middleware
    async def _count(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.hits[request.path_qs] += 1
        return await handler(request)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text=f"ok {request.match_info['n']}")

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.hits[request.path_qs] == 1:
            return web.Response(status=503)
        return web.Response(text="recovered")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
        return web.Response(text="slow")

    async def _stall(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"n": int(request.match_info["n"])})

    async def _site(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        links = [f'<a href="/site/{to}">{to}</a>' for to in (2 * n + 1, 2 * n + 2) if to < 10]
        links += ['<a href="/site/0#top">home</a>', '<a href="/status/404">gone</a>']
        return web.Response(text=f"<html><body>{' '.join(links)}</body></html>", content_type="text/html")

    async def _api(self, request: web.Request) -> web.Response:
        page, pages = int(request.query.get("page", "1")), int(request.query.get("pages", "3"))
        headers = {}
        if page < pages:
            headers["Link"] = f'</api?page={page + 1}&pages={pages}>; rel="next"'
        data = [{"id": (page - 1) * 2 + i} for i in (1, 2)]
        return web.json_response({"data": data}, headers=headers)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    yield Server().start()

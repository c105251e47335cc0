"""volley for asyncio: fetch very many URLs concurrently and politely, with
exactly one recorded outcome per input, on the same engine as the ``volley``
command.

Two ways in:

* :func:`fetch_all` replaces ``asyncio.gather(..., return_exceptions=True)``
  over an aiohttp session: one :class:`Outcome` per input, in input order,
  failures included (a failed fetch is an outcome, never an exception).
* :class:`Engine` runs durable jobs on a database (SQLite by default, or
  PostgreSQL): resumable after a crash or a cancel, streamed as outcomes are
  recorded.

Options are keyword arguments with the names of ``volley fetch``'s flags
(``per_host`` for ``--per-host``) and the same units: durations in seconds
(``timeout=30.0``) or as text (``"500ms"``), rates as ``"10/s"``, sizes as
``"10M"``. A wrong one raises :class:`ValueError` naming it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import os
import tempfile
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Union, overload

from . import _volley
from ._volley import (
    CLASSES,
    ClientError,
    InputError,
    Outcome,
    StoreError,
    VolleyError,
    __version__,
)

__all__ = [
    "CLASSES",
    "ClientError",
    "Engine",
    "InputError",
    "Job",
    "Outcome",
    "Outcomes",
    "StoreError",
    "Summary",
    "VolleyError",
    "__version__",
    "fetch_all",
]

Urls = Union[Iterable[str], AsyncIterable[str], str, "os.PathLike[str]"]

#: Lease of a PostgreSQL engine, in seconds: how long its tasks stay its own
#: after its last heartbeat. A job's ``timeout`` must be shorter.
DEFAULT_LEASE_S = 120.0

#: URLs of an iterable input sent to the engine at a time.
_CHUNK = 1000

#: Longest an async iterable's URLs wait for their chunk to fill, in
#: seconds: URLs that trickle in are fetched without waiting for 1,000.
_LINGER_S = 0.2

#: Outcomes read from the database at a time.
_PAGE = 1000


class _Bridge:
    """Delivers the native calls' results on one event loop: the engine
    signals a socket the loop watches, and the results become Python
    objects here, on the loop's thread (see the native ``bridge`` module:
    no engine thread ever takes the GIL)."""

    __slots__ = ("native", "pending", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.native = _volley.Bridge()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        loop.add_reader(self.native.fileno(), self._deliver)

    def _deliver(self) -> None:
        for ticket, ok, value in self.native.take():
            future = self.pending.pop(ticket, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _settled(self, ticket: int, future: asyncio.Future[Any]) -> None:
        # A future cancelled before its result came: drop the native call.
        if self.pending.pop(ticket, None) is not None and future.cancelled():
            self.native.cancel(ticket)


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = weakref.WeakKeyDictionary()


def _call(method: Callable[..., int], *args: Any) -> asyncio.Future[Any]:
    """Starts native call ``method(bridge, *args)``; a future of its result.
    Cancelling the future cancels the call."""
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
    ticket = method(bridge.native, *args)
    future: asyncio.Future[Any] = loop.create_future()
    bridge.pending[ticket] = future
    future.add_done_callback(functools.partial(bridge._settled, ticket))
    return future


async def _feed(native: _volley.NativeJob, urls: Iterable[Any] | AsyncIterable[Any]) -> None:
    """Sends an iterable (or async iterable) input to the run, a chunk at
    a time, as fast as ingest stores it (items that are not ``str`` count
    as ``str(item)``, as in :func:`_volley.list_stamp`)."""
    try:
        chunks = _async_chunks(urls) if isinstance(urls, AsyncIterable) else _chunks(urls)
        async for chunk in chunks:
            if not await _call(native.feed, chunk):
                return  # the run no longer reads its input
    except asyncio.CancelledError:
        # Stopped: the run keeps its place; the input must not look ended.
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the caller's iterable
        await _call(native.fail_input, f"reading the URLs failed: {type(e).__name__}: {e}")
    native.end_input()


async def _chunks(urls: Iterable[Any]) -> AsyncIterator[list[Any]]:
    """The items of ``urls`` in lists of up to :data:`_CHUNK`."""
    items = iter(urls)
    while chunk := list(itertools.islice(items, _CHUNK)):
        yield chunk


async def _async_chunks(urls: AsyncIterable[Any]) -> AsyncIterator[list[Any]]:
    """The items of ``urls`` in lists of up to :data:`_CHUNK`, each sent
    at most :data:`_LINGER_S` after its first item arrived. The producer is
    never cancelled mid-item: a late item is awaited across chunks."""
    items = aiter(urls)
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            chunk: list[Any] = []
            deadline: float | None = None
            while len(chunk) < _CHUNK:
                if pending is None:
                    pending = asyncio.ensure_future(anext(items))
                timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if not done:
                    break  # lingered long enough: send what there is
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    pending = None
                    if chunk:
                        yield chunk
                    return
                pending = None
                chunk.append(item)
                if deadline is None:
                    deadline = asyncio.get_running_loop().time() + _LINGER_S
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


class Outcomes(Sequence[Outcome]):
    """A job's outcomes in input order (pages of a paginated input after
    the inputs), read from its database a page (1,000) at a time as they
    are used: a million outcomes cost the memory of one page, not of a
    million objects. Works as a read-only list: ``len``, indexing (negative
    too), slices (lists), iteration; ``list(outcomes)`` makes a real
    list.

    Pages are read on the calling thread, a few milliseconds each, with the
    GIL released. Outcomes of a job run by an :class:`Engine` can be read
    while the engine is open; those of :func:`fetch_all` while this object
    lives (its throwaway database goes with it).
    """

    def __init__(self, native: _volley.NativeJob, length: int, keep: object = None) -> None:
        self._native = native
        self._len = length
        self._keep = keep
        #: ``after`` of page k, for the pages seen so far.
        self._starts = [0]
        self._page_no = -1
        self._page: list[Outcome] = []

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Outcome: ...

    @overload
    def __getitem__(self, index: slice) -> list[Outcome]: ...

    def __getitem__(self, index: int | slice) -> Outcome | list[Outcome]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("outcome index out of range")
        page_no, offset = divmod(index, _PAGE)
        if page_no != self._page_no:
            # Pages are found by their first task id: walk to an unseen one.
            while len(self._starts) <= page_no:
                self._page, after = self._native.outcome_page(self._starts[-1], _PAGE)
                self._page_no = len(self._starts) - 1
                self._starts.append(after)
            if page_no != self._page_no:
                self._page, _ = self._native.outcome_page(self._starts[page_no], _PAGE)
                self._page_no = page_no
        return self._page[offset]

    def __iter__(self) -> Iterator[Outcome]:
        after, left = 0, self._len
        while left > 0:
            page, after = self._native.outcome_page(after, min(_PAGE, left))
            if not page:
                return
            yield from page
            left -= len(page)

    def __repr__(self) -> str:
        return f"<Outcomes of job {self._native.name!r}: {self._len}>"


def _options(options: dict[str, Any]) -> str:
    """The keyword arguments as the engine's option layer (JSON text)."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or value is False:
            continue
        name = key.replace("_", "-")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if name == "save-bodies":
            # Saved paths are recorded as given: absolute, they stay valid
            # whatever the caller's working directory is later.
            value = os.path.abspath(value)
        if isinstance(value, (list, tuple)):
            value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        values[name] = value
    return json.dumps(values)


@dataclass(frozen=True)
class Summary:
    """How a run ended. Counts cover the whole job (earlier runs included)
    unless noted."""

    job: str
    #: Tasks in the job.
    total: int
    #: Tasks with a successful outcome.
    done: int
    #: Tasks with a failed outcome.
    failed: int
    #: Tasks without an outcome yet (the run was stopped).
    pending: int
    #: Whether the run stopped before the job was finished.
    interrupted: bool
    #: Requests made by this run.
    fetched: int
    #: Body bytes received by this run.
    bytes: int
    #: This run's wall time, in seconds.
    elapsed_s: float
    #: This run's requests per second.
    requests_per_s: float
    #: This run's outcomes by class.
    classes: dict[str, int] = field(default_factory=dict)


class Job:
    """A running job: an async iterator over its outcomes as they are
    recorded (each once, in the order they commit; outcomes recorded while
    the input is read, such as invalid lines, come at the end).

    Leaving an ``async for`` over the job early (``break``, ``return`` or
    an exception in its body), :meth:`aclose`, dropping the job, or
    cancelling the task that awaits it (``asyncio.timeout`` included) stops
    the run as Ctrl-C does: requests in flight get the grace period,
    unfinished tasks stay pending, and a later :meth:`Engine.fetch` of the
    same job resumes it. An ``async for`` that runs to its end has seen
    every outcome of the run; if the run failed (its input could not be
    read, the database failed), the loop raises that failure instead of
    ending quietly.
    """

    def __init__(self, native: _volley.NativeJob, feeding: asyncio.Task[None] | None = None) -> None:
        self._native = native
        self._feeding = feeding
        self._buffer: deque[Outcome] = deque()
        self._summary: Summary | None = None
        self._exhausted = False

    @property
    def name(self) -> str:
        """The job's name."""
        return self._native.name

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._native.done

    def __aiter__(self) -> AsyncIterator[Outcome]:
        # An async generator, so that leaving the loop early closes it (at
        # once in CPython, through the event loop's async generator hooks),
        # and closing it stops the run.
        return self._stream()

    async def _stream(self) -> AsyncIterator[Outcome]:
        ended = False
        try:
            while True:
                while self._buffer:
                    yield self._buffer.popleft()
                try:
                    await self._refill()
                except StopAsyncIteration:
                    ended = True
                    return
        finally:
            if not ended:
                self._close()

    async def __anext__(self) -> Outcome:
        """The next outcome; at the end of the run, raises the run's
        failure if it failed, else :class:`StopAsyncIteration`. Calling it
        directly (``anext(job)``) does not stop the run when you stop."""
        while not self._buffer:
            await self._refill()
        return self._buffer.popleft()

    async def _refill(self) -> None:
        """Reads the next batch of outcomes into the buffer. At the end of
        the run raises its failure (a run that failed must not look like
        one that ended), else :class:`StopAsyncIteration`."""
        if self._exhausted:
            raise StopAsyncIteration
        try:
            batch = await _call(self._native.next_batch)
        except asyncio.CancelledError:
            await self._stop_on_cancel()
            raise
        if not batch:
            self._exhausted = True
            await self.wait()
            raise StopAsyncIteration
        self._buffer.extend(batch)

    async def aclose(self) -> None:
        """Stops the run (see the class docs) and the stream."""
        self._close()

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None and not native.done:
            native.close()

    def stop(self) -> None:
        """Asks the run to stop gracefully; :meth:`wait` returns when it has."""
        self._native.stop()
        self._stop_feeding()

    def _close(self) -> None:
        self._native.close()
        self._stop_feeding()

    def _stop_feeding(self) -> None:
        if self._feeding is not None and not self._feeding.done():
            self._feeding.cancel()

    async def wait(self) -> Summary:
        """Waits for the run to end; its summary.

        Raises the run's own failure (:class:`StoreError`,
        :class:`InputError`, :class:`ClientError`, :class:`VolleyError`).
        """
        if self._summary is None:
            try:
                text = await _call(self._native.wait)
            except asyncio.CancelledError:
                await self._stop_on_cancel()
                raise
            self._summary = Summary(**json.loads(text))
        return self._summary

    def summary(self) -> Summary:
        """The summary of a run that has ended (see :meth:`wait`)."""
        if self._summary is None:
            raise RuntimeError("the run has not ended: await job.wait() first")
        return self._summary

    async def outcomes(self) -> Outcomes:
        """The job's outcomes recorded so far, in input order (pages of a
        paginated input after the inputs), read from the database as they
        are used (see :class:`Outcomes`); readable while the engine is
        open."""
        return Outcomes(self._native, await _call(self._native.outcome_count))

    async def _ended(self) -> None:
        """Waits for the run to end, whatever its result (the result is
        for :meth:`wait` to raise)."""
        await _run_ended(self._native)

    async def _stop_on_cancel(self) -> None:
        # The caller is being cancelled: stop the run and let it drain
        # (the grace period), so that it can be resumed cleanly.
        self._close()
        try:
            await self._ended()
        except asyncio.CancelledError:
            pass


async def _run_ended(native: _volley.NativeJob) -> None:
    """Waits for a run to end, whatever its result."""
    try:
        await asyncio.shield(_call(native.wait))
    except (VolleyError, ValueError):
        pass


class Engine:
    """A database of jobs, used as ``async with Engine(db="volley.db") as
    engine``. ``db`` is a SQLite file (created if missing) or a
    ``postgres://`` URL (this process is then one of the job's workers).

    Leaving the ``async with`` stops the jobs still running (gracefully, as
    Ctrl-C does) and waits for them.
    """

    def __init__(self, db: str | os.PathLike[str] = "volley.db", *, lease: float = DEFAULT_LEASE_S) -> None:
        self._db = os.fspath(db)
        self._lease = lease
        self._native: _volley.NativeEngine | None = None
        # The jobs handed out, held weakly so that one its caller drops is
        # stopped (Job.__del__); their runs, held here until they end.
        self._jobs: weakref.WeakSet[Job] = weakref.WeakSet()
        self._runs: list[_volley.NativeJob] = []

    async def __aenter__(self) -> Engine:
        self._native = await _call(_volley.open_engine, self._db, float(self._lease))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for job in list(self._jobs):
                if not job.done:
                    job.stop()
            for native in self._runs:
                if not native.done:
                    native.stop()
            for native in self._runs:
                await _run_ended(native)
        finally:
            await _call(self._engine().close)

    def _engine(self) -> _volley.NativeEngine:
        if self._native is None:
            raise RuntimeError("use the engine as: async with Engine(...) as engine")
        return self._native

    async def fetch(self, urls: Urls, *, job: str | None = None, **options: Any) -> Job:
        """Starts job ``job`` over ``urls``, or resumes it if it exists with
        the same input. Returns at once; iterate or :meth:`Job.wait`.

        ``urls`` is the path of a file of URLs (one a line), or any iterable
        of URL strings: a list, a generator that reads them lazily, or an
        async iterable (``async def produce(): yield url``). The iterable is
        read on this event loop as fast as the engine stores the URLs (a
        chunk of 1,000 at a time; an async iterable's chunk also goes after
        0.2 s, so URLs that trickle in are fetched at once), so a generator
        costs no memory per URL. A list is checked against the job's tasks when a
        job is resumed with another one; an iterable of unknown contents is
        not read again when the job read all of it before.

        Raises :class:`ValueError` for a wrong option, :class:`StoreError`
        when the job exists with another input, :class:`InputError` for a
        file that cannot be read. A failure of the iterable fails the run
        with :class:`InputError` (raised by :meth:`Job.wait` and by the
        ``async for`` over the job).
        """
        native = self._engine()
        feeding = None
        if isinstance(urls, (str, os.PathLike)):
            path = os.fspath(urls)
            name = job or os.path.basename(path)
            started = await _call(native.start, name, path, None, _options(options))
        else:
            # A sequence can be stamped up front; an iterator cannot.
            stamp = _volley.list_stamp(urls) if isinstance(urls, (list, tuple)) else None
            started = await _call(native.start, job or "python", None, stamp, _options(options))
            if started.reads_input:
                feeding = asyncio.ensure_future(_feed(started, urls))
        handle = Job(started, feeding)
        self._jobs.add(handle)
        self._runs = [native for native in self._runs if not native.done]
        self._runs.append(started)
        return handle

    async def crawl(self, seeds: Urls, *, job: str | None = None, **options: Any) -> Job:
        """Starts (or resumes) a crawl from ``seeds``: :meth:`fetch` with
        ``follow=True``. The links of each fetched HTML page (and the
        entries of each sitemap) that are in ``scope`` become tasks of the
        job, each URL once, in the same transaction as the page's outcome,
        so a crawl killed at any moment resumes where it stopped. The crawl
        options (``max_depth``, ``scope``, ``include``, ``exclude``,
        ``check_external``, ``strip_query``, ``sitemaps``) are listed under
        :meth:`fetch`. Outcomes stream as for :meth:`fetch`: one per
        page found, the seeds first."""
        return await self.fetch(seeds, job=job, follow=True, **options)

    async def items(self, job: str) -> AsyncIterator[Any]:
        """The items (``items="/data"``) of job ``job``, page by page in
        input order, each parsed from JSON."""
        native = self._engine()
        after = (0, 0)
        while True:
            page = await _call(native.item_page, job, after, 1000)
            for task, idx, item in page:
                yield json.loads(item)
                after = (task, idx)
            if len(page) < 1000:
                return


    async def export_parquet(
        self, job: str, path: str | os.PathLike[str], *, items: bool = False
    ) -> int:
        """Writes the outcomes of job ``job`` (or, with ``items=True``, its
        items) to a Parquet file at ``path`` with typed columns, as
        ``volley export --format parquet`` does: integers, UTC timestamps
        for ``started_at_ms`` and ``finished_at_ms``, JSON values as JSON
        text; items get a column per key of any item. Returns the number
        of rows written. Read it with pandas, DuckDB or pyarrow."""
        written: int = await _call(
            self._engine().export_parquet, job, os.fspath(path), items
        )
        return written


async def fetch_all(urls: Iterable[str] | AsyncIterable[str], **options: Any) -> Outcomes:
    """Fetches every URL of ``urls`` (any iterable, read lazily: see
    :meth:`Engine.fetch`); one :class:`Outcome` per input, in input order,
    failures included, as a read-only list (:class:`Outcomes`) read from
    disk as it is used, so memory stays flat however many URLs there are.

    The job runs on a throwaway SQLite database, removed when the returned
    :class:`Outcomes` is; use :class:`Engine` for one that survives.
    Cancelling the awaiting task stops the run (the grace period applies)
    and raises :class:`asyncio.CancelledError`.

    The options are those of :meth:`Engine.fetch`, listed below; with
    ``save_bodies`` (a directory), :meth:`Outcome.read` works.
    """
    scratch = tempfile.TemporaryDirectory(prefix="volley-")
    engine = Engine(os.path.join(scratch.name, "volley.db"))
    try:
        await engine.__aenter__()
        job = await engine.fetch(urls, job="fetch_all", **options)
        summary = await job.wait()
    except BaseException:
        try:
            if engine._native is not None:
                await engine.__aexit__(None, None, None)
        finally:
            scratch.cleanup()
        raise
    # The engine and the directory live as long as the outcomes read them.
    return Outcomes(job._native, summary.done + summary.failed, keep=(engine, scratch))


def _options_doc() -> str:
    """The options section of the docstrings, from the engine's option
    table (``_volley.OPTIONS``): each keyword with its help and its real
    default, so that the docs cannot drift from the engine."""
    lines = ["Options (keyword arguments):", ""]
    for keyword, text in _volley.OPTIONS:
        lines.append(f"``{keyword}``: {text}")
    return "\n".join(lines)


for _documented in (Engine.fetch, fetch_all):
    _documented.__doc__ = inspect.cleandoc(_documented.__doc__ or "") + "\n\n" + _options_doc()

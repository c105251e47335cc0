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
import json
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Union

from . import _volley
from ._volley import (
    CLASSES,
    ClientError,
    InputError,
    Outcome,
    StoreError,
    VolleyError,
)

__all__ = [
    "CLASSES",
    "ClientError",
    "Engine",
    "InputError",
    "Job",
    "Outcome",
    "StoreError",
    "Summary",
    "VolleyError",
    "fetch_all",
]

Urls = Union[Iterable[str], str, "os.PathLike[str]"]

#: Lease of a PostgreSQL engine, in seconds: how long its tasks stay its own
#: after its last heartbeat. A job's ``timeout`` must be shorter.
DEFAULT_LEASE_S = 120.0


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

    Leaving the iteration early (``break``, :meth:`aclose`, dropping the
    job) or cancelling the task that awaits it stops the run as Ctrl-C
    does: requests in flight get the grace period, unfinished tasks stay
    pending, and a later :meth:`Engine.fetch` of the same job resumes it.
    """

    def __init__(self, native: _volley.NativeJob) -> None:
        self._native = native
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

    def __aiter__(self) -> Job:
        return self

    async def __anext__(self) -> Outcome:
        while not self._buffer:
            if self._exhausted:
                raise StopAsyncIteration
            try:
                batch = await self._native.next_batch()
            except asyncio.CancelledError:
                await self._stop_on_cancel()
                raise
            if not batch:
                self._exhausted = True
                raise StopAsyncIteration
            self._buffer.extend(batch)
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stops the run (see the class docs) and the stream."""
        self._native.close()

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None and not native.done:
            native.close()

    def stop(self) -> None:
        """Asks the run to stop gracefully; :meth:`wait` returns when it has."""
        self._native.stop()

    async def wait(self) -> Summary:
        """Waits for the run to end; its summary.

        Raises the run's own failure (:class:`StoreError`,
        :class:`InputError`, :class:`ClientError`, :class:`VolleyError`).
        """
        if self._summary is None:
            try:
                text = await self._native.wait()
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

    async def outcomes(self) -> list[Outcome]:
        """Every outcome of the job, in input order (pages of a paginated
        input after the inputs)."""
        return await self._native.all_outcomes()

    async def _stop_on_cancel(self) -> None:
        # The caller is being cancelled: stop the run and let it drain
        # (the grace period), so that it can be resumed cleanly.
        self._native.close()
        try:
            await asyncio.shield(self._native.wait())
        except (asyncio.CancelledError, VolleyError, ValueError):
            # The run's own failure is for wait() to raise, not the cancel.
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
        self._jobs: list[Job] = []

    async def __aenter__(self) -> Engine:
        self._native = await _volley.open_engine(self._db, float(self._lease))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for job in self._jobs:
                if not job.done:
                    job.stop()
            for job in self._jobs:
                try:
                    await asyncio.shield(job._native.wait())
                except VolleyError:
                    pass
        finally:
            await self._engine().close()

    def _engine(self) -> _volley.NativeEngine:
        if self._native is None:
            raise RuntimeError("use the engine as: async with Engine(...) as engine")
        return self._native

    async def fetch(self, urls: Urls, *, job: str | None = None, **options: Any) -> Job:
        """Starts job ``job`` over ``urls`` (an iterable of URL strings, or
        the path of a file of them, one a line), or resumes it if it exists
        with the same input. Returns at once; iterate or :meth:`Job.wait`.

        Raises :class:`ValueError` for a wrong option, :class:`StoreError`
        when the job exists with another input, :class:`InputError` for a
        file that cannot be read.
        """
        native = self._engine()
        if isinstance(urls, (str, os.PathLike)):
            path = os.fspath(urls)
            name = job or os.path.basename(path)
            started = await native.start(name, None, path, _options(options))
        else:
            url_list = [u if isinstance(u, str) else str(u) for u in urls]
            started = await native.start(job or "python", url_list, None, _options(options))
        handle = Job(started)
        self._jobs.append(handle)
        return handle

    async def items(self, job: str) -> AsyncIterator[Any]:
        """The items (``items="/data"``) of job ``job``, page by page in
        input order, each parsed from JSON."""
        native = self._engine()
        after = (0, 0)
        while True:
            page = await native.item_page(job, after, 1000)
            for task, idx, item in page:
                yield json.loads(item)
                after = (task, idx)
            if len(page) < 1000:
                return


async def fetch_all(urls: Iterable[str], **options: Any) -> list[Outcome]:
    """Fetches every URL of ``urls``; one :class:`Outcome` per input, in
    input order, failures included.

    The job runs on a throwaway SQLite database; use :class:`Engine` for one
    that survives. Cancelling the awaiting task stops the run (the grace
    period applies) and raises :class:`asyncio.CancelledError`.

    Common options: ``concurrency`` (requests in flight, default 64),
    ``per_host`` (per host, default 8), ``retries`` (default 3), ``timeout``
    (seconds per attempt, default 30), ``rate`` (per host, ``"10/s"``),
    ``save_bodies`` (a directory; then :meth:`Outcome.read` works).
    """
    with tempfile.TemporaryDirectory(prefix="volley-") as scratch:
        async with Engine(os.path.join(scratch, "volley.db")) as engine:
            job = await engine.fetch(urls, job="fetch_all", **options)
            await job.wait()
            return await job.outcomes()

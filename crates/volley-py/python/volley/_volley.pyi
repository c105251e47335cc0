"""Type stubs of the native half of volley (see volley/__init__.py)."""

import builtins
from typing import Any, Iterable

CLASSES: list[str]
EXPORT_COLUMNS: list[str]
"""The fields of a recorded outcome, in order, as ``volley export`` writes them."""
OPTIONS: list[tuple[str, str]]
"""Every option keyword with its help and real default, from the engine's option table."""

class VolleyError(Exception):
    """A failure of a run itself (failed fetches are outcomes, never exceptions)."""

class StoreError(VolleyError):
    """The database failed, or holds the job with another input."""

class InputError(VolleyError):
    """The input could not be read, or changed since the job read it."""

class ClientError(VolleyError):
    """The HTTP client could not be set up (certificate, proxy, token or cookie files)."""

class Outcome:
    """One recorded outcome: the fields ``volley export`` writes. Frozen."""

    line: int | None
    """The input line (from 1); None for pages found by pagination or a crawl."""
    page: int
    """The page of a paginated chain (1 for the input's own URL)."""
    url: str
    outcome_class: str
    """``ok``, ``not_modified``, ``fresh``, or what went wrong (see CLASSES)."""
    status: int | None
    """The final HTTP status, if a response came."""
    http_version: str | None
    message: str | None
    """What went wrong, for a person."""
    attempts: int
    """Requests made, retries included."""
    bytes: int | None
    """Decoded body bytes."""
    wire_bytes: int | None
    """Body bytes on the wire (before decoding)."""
    elapsed_ms: int | None
    """The final attempt, from sending the request to the end of the body (ms)."""
    ttfb_ms: int | None
    """From sending the request to the response headers (ms)."""
    final_url: str | None
    content_type: str | None
    body_sha256: str | None
    body_path: str | None
    """Where the body was saved (with ``save_bodies``)."""
    changed: bool | None
    """With ``refresh``: whether the body differs from the last one."""
    headers_json: str | None
    """The response headers as JSON text (``headers`` parses it)."""
    meta_json: str | None
    """The task's metadata as JSON text (``meta`` parses it)."""
    extracted_json: str | None
    """The ``extract`` fields as JSON text (``extracted`` parses it)."""
    duplicate_of_line: int | None
    started_at_ms: int | None
    """When the first attempt started (Unix ms)."""
    finished_at_ms: int
    """When the outcome was decided (Unix ms)."""
    @property
    def ok(self) -> bool:
        """Whether the outcome is a success (ok, not_modified, fresh)."""
    @property
    def error_class(self) -> str | None:
        """The class of a failure; None for a success."""
    @property
    def headers(self) -> dict[str, str] | None:
        """The response headers, lower-case names."""
    @property
    def meta(self) -> Any:
        """The task's metadata (a CSV row or JSONL record), if any."""
    @property
    def extracted(self) -> Any:
        """The values ``extract`` took from the body, if any."""
    def read(self) -> builtins.bytes:
        """The saved body. ValueError if it was not saved, OSError if unreadable."""
    def json(self) -> Any:
        """The saved body parsed as JSON."""

class Bridge:
    """Delivers native results on one event loop (see volley._Bridge)."""

    def __init__(self) -> None: ...
    def fileno(self) -> int: ...
    def take(self) -> list[tuple[int, bool, Any]]: ...
    def cancel(self, ticket: int) -> None: ...

class NativeJob:
    @property
    def name(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def reads_input(self) -> bool: ...
    def feed(self, bridge: Bridge, urls: list[Any]) -> int: ...
    def fail_input(self, bridge: Bridge, why: str) -> int: ...
    def end_input(self) -> None: ...
    def next_batch(self, bridge: Bridge) -> int: ...
    def wait(self, bridge: Bridge) -> int: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def outcome_page(self, after: int, limit: int) -> tuple[list[Outcome], int]: ...
    def outcome_count(self, bridge: Bridge) -> int: ...

class NativeEngine:
    def start(
        self, bridge: Bridge, name: str, path: str | None, stamp: str | None, options: str
    ) -> int: ...
    def item_page(self, bridge: Bridge, name: str, after: tuple[int, int], limit: int) -> int: ...
    def export_parquet(self, bridge: Bridge, name: str, path: str, items: bool) -> int: ...
    def close(self, bridge: Bridge) -> int: ...

def open_engine(bridge: Bridge, db: str, lease_s: float) -> int: ...
def list_stamp(urls: Iterable[Any]) -> str: ...
def cli_main(argv: list[str]) -> int: ...

__version__: str

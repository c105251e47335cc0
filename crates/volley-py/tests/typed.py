"""Checked by mypy --strict in scripts/py-test.sh: the public API as a user
writes it, so that a stub that drifts from it fails the check."""

from __future__ import annotations

import volley


async def example(urls: list[str]) -> int:
    outcomes: volley.Outcomes = await volley.fetch_all(urls, concurrency=64, per_host=8, retries=3, timeout=30.0)
    failed = [o.error_class for o in outcomes if not o.ok]
    first: volley.Outcome = outcomes[0]
    some: list[volley.Outcome] = outcomes[1:3]
    print(first.url, len(some), len(outcomes))
    async with volley.Engine(db="volley.db") as engine:
        job = await engine.fetch(urls, job="nightly", rate="10/s", save_bodies="bodies/")
        async for outcome in job:
            status: int | None = outcome.status
            elapsed: int | None = outcome.elapsed_ms
            print(outcome.url, status, outcome.error_class, elapsed)
        summary: volley.Summary = await job.wait()
        async for item in engine.items("api-sync"):
            print(item)
    return len(failed) + summary.done

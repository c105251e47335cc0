"""volley's Python package on the same job as aiohttp_fetch.py.

    python volley_py_fetch.py URLS_FILE CONCURRENCY [--stream]

Default: ``volley.fetch_all`` (one Outcome per URL, in input order, as
gather returns; read from disk as they are used). With ``--stream``: an
Engine job on a throwaway database, its outcomes iterated and counted, none
kept. Either way the URLs are read from the file by a generator, as volley
takes any iterable lazily (aiohttp's pattern needs every coroutine up front,
so aiohttp_fetch.py reads a list). Prints the counts by status to stderr."""
import asyncio
import collections
import os
import sys
import tempfile

import volley


async def main(path: str, concurrency: int, stream: bool) -> None:
    f = open(path)
    urls = (line.strip() for line in f if line.strip())
    options = {"concurrency": concurrency, "per_host": concurrency}
    counts: collections.Counter = collections.Counter()
    if stream:
        with tempfile.TemporaryDirectory(prefix="volley-bench-") as scratch:
            async with volley.Engine(os.path.join(scratch, "v.db")) as engine:
                job = await engine.fetch(urls, job="bench", **options)
                async for outcome in job:
                    counts[outcome.status or outcome.outcome_class] += 1
    else:
        for outcome in await volley.fetch_all(urls, **options):
            counts[outcome.status or outcome.outcome_class] += 1
    print(dict(counts), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), "--stream" in sys.argv))

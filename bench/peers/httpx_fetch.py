"""The same pattern with httpx.AsyncClient.

    python httpx_fetch.py URLS_FILE CONCURRENCY"""
import asyncio
import collections
import sys

import httpx


async def main(path: str, concurrency: int) -> None:
    with open(path) as f:
        urls = [line.strip() for line in f if line.strip()]
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def fetch(url: str) -> int:
            async with semaphore:
                response = await client.get(url)
                return response.status_code

        results = await asyncio.gather(*(fetch(u) for u in urls), return_exceptions=True)
    counts = collections.Counter(r if isinstance(r, int) else type(r).__name__ for r in results)
    print(dict(counts), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

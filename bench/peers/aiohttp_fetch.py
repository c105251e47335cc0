"""The asyncio pattern people write by hand: one shared aiohttp.ClientSession,
a Semaphore for the concurrency cap, asyncio.gather(..., return_exceptions=True).

    python aiohttp_fetch.py URLS_FILE CONCURRENCY [--uvloop]

Reads each body to the end; prints the counts by status to stderr."""
import asyncio
import collections
import sys

import aiohttp


async def main(path: str, concurrency: int) -> None:
    with open(path) as f:
        urls = [line.strip() for line in f if line.strip()]
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(url: str) -> int:
            async with semaphore:
                async with session.get(url) as response:
                    await response.read()
                    return response.status

        results = await asyncio.gather(*(fetch(u) for u in urls), return_exceptions=True)
    counts = collections.Counter(r if isinstance(r, int) else type(r).__name__ for r in results)
    print(dict(counts), file=sys.stderr)


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

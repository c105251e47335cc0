"""The asyncio pattern people write by hand: one shared aiohttp.ClientSession,
a Semaphore for the concurrency cap, asyncio.gather(..., return_exceptions=True).

    python aiohttp_fetch.py URLS_FILE CONCURRENCY [--uvloop] [--ca PEM] [--per-host N]

--ca trusts a test certificate authority (HTTPS workloads); --per-host caps
the connections to one host (aiohttp's limit_per_host). Reads each body to
the end; prints the counts by status to stderr."""
import argparse
import asyncio
import collections
import ssl
import sys

import aiohttp


async def main(path: str, concurrency: int, ca: str | None, per_host: int) -> None:
    with open(path) as f:
        urls = [line.strip() for line in f if line.strip()]
    semaphore = asyncio.Semaphore(concurrency)
    context = ssl.create_default_context(cafile=ca) if ca else None
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host, ssl=context or True)
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
    parser = argparse.ArgumentParser()
    parser.add_argument("urls")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--ca")
    parser.add_argument("--per-host", type=int, default=0)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args.urls, args.concurrency, args.ca, args.per_host))

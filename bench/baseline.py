"""The non-durable baseline: copy every record from source to target, keep nothing.

The simplest fast script a team would write instead of Data JellyFish: one
aiohttp session, each shard's pages fetched one after another (keyset on
``id``), each page's records posted one by one or in batches with at most
``--concurrency`` requests in flight. No ledger, no retries, no audit trail:
a crash loses whatever was in flight and the next run starts over.

    python bench/baseline.py --source http://127.0.0.1:8001 \
        --target http://127.0.0.1:8002 --shards 2 --batch-size 500 --concurrency 8

It prints one JSON line: records fetched and posted, failed requests, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import orjson

_HEADERS = {"Content-Type": "application/json"}


class Copier:
    """Fetches shard pages into a bounded queue; posters drain it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(
            maxsize=4 * args.concurrency
        )
        self.fetched = self.posted = self.failed = 0

    async def fetch_shard(self, session: aiohttp.ClientSession, part: int) -> None:
        args = self.args
        after = 0
        while True:
            params = {
                "part": part,
                "parts": args.shards,
                "limit": args.page_size,
                "after_id": after,
            }
            async with session.get(f"{args.source}/flights", params=params) as answer:
                records: list[dict[str, Any]] = orjson.loads(await answer.read())[
                    "data"
                ]
            self.fetched += len(records)
            await self._enqueue(records)
            if len(records) < args.page_size:
                return
            after = int(records[-1]["id"])

    async def _enqueue(self, records: list[dict[str, Any]]) -> None:
        size = self.args.batch_size
        if size == 1:
            for record in records:
                await self.queue.put(orjson.dumps(record))
            return
        for start in range(0, len(records), size):
            await self.queue.put(orjson.dumps(records[start : start + size]))

    async def post_until_done(self, session: aiohttp.ClientSession) -> None:
        url = self.args.target + (
            "/records" if self.args.batch_size == 1 else "/records/batch"
        )
        while (body := await self.queue.get()) is not None:
            try:
                async with session.post(url, data=body, headers=_HEADERS) as answer:
                    await answer.read()
                    ok = answer.status < 300
            except aiohttp.ClientError:
                ok = False
            if ok:
                self.posted += 1 if self.args.batch_size == 1 else body.count(b'"id":')
            else:
                self.failed += 1

    async def run(self) -> None:
        args = self.args
        limits = aiohttp.TCPConnector(limit=args.concurrency + args.shards)
        async with aiohttp.ClientSession(connector=limits) as session:
            posters = [
                asyncio.create_task(self.post_until_done(session))
                for _ in range(args.concurrency)
            ]
            await asyncio.gather(
                *(self.fetch_shard(session, part) for part in range(args.shards))
            )
            for _ in posters:
                await self.queue.put(None)
            await asyncio.gather(*posters)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="bench source base URL")
    parser.add_argument("--target", required=True, help="bench target base URL")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    copier = Copier(args)
    clock = time.perf_counter()
    asyncio.run(copier.run())
    print(
        json.dumps(
            {
                "fetched": copier.fetched,
                "posted": copier.posted,
                "failed_requests": copier.failed,
                "seconds": round(time.perf_counter() - clock, 3),
            }
        )
    )
    return 0 if not copier.failed else 1


if __name__ == "__main__":
    sys.exit(main())

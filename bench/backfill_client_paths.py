"""Where a durable push spends its CPU: the target client path against plain aiohttp.

Posts the same record bodies to the bench target two ways, in one process,
interleaved: through ``TargetClient.push`` (as the push loops do: headers,
idempotency key, verdicts and attempt results) and through a bare ``aiohttp``
session with the same number of requests in flight. Reports records/s and
CPU microseconds per request, the figure that bounds a single-record target
on a small machine.

    .venv/bin/python bench/backfill_client_paths.py --requests 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from continuous_procs import ROOT, Proc  # noqa: E402

sys.path.insert(0, str(ROOT))

from jellyfish.job import TargetSpec  # noqa: E402
from jellyfish.target.client import TargetClient  # noqa: E402
from ledger.types import DueDelivery  # noqa: E402


def deliveries(count: int) -> list[DueDelivery]:
    body = {"year": 2013, "carrier": "UA", "origin": "EWR", "dest": "IAH"}
    return [
        DueDelivery(
            delivery_id=i,
            record_key=str(i),
            content_hash=f"{i:064x}",
            payload=orjson.dumps({"id": i, **body}).decode(),
            attempts_before=0,
            record_version_id=i,
        )
        for i in range(1, count + 1)
    ]


async def through_target_client(url: str, due: list[DueDelivery], c: int) -> None:
    spec = TargetSpec(name="bench", url=url, concurrency=c)
    async with TargetClient.open_http(spec) as http:
        await TargetClient("bench", spec, http).push(due)


async def through_aiohttp(url: str, due: list[DueDelivery], c: int) -> None:
    headers = {"Content-Type": "application/json"}
    queue = iter(due)

    async def sender(session: aiohttp.ClientSession) -> None:
        for delivery in queue:
            body = delivery.payload.encode()
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()

    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(c)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp())
    apps = str(ROOT / "bench" / "backfill_apps.py")
    target = Proc.start("target", [sys.executable, apps, "target"], scratch, {})
    try:
        url = target.wait_listening() + "/records"
        due = deliveries(args.requests)
        paths = {"target_client": through_target_client, "aiohttp": through_aiohttp}
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                wall, cpu = time.perf_counter(), time.process_time()
                asyncio.run(path(url, due, args.concurrency))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                figures[name].append((args.requests / wall, cpu / args.requests * 1e6))
        print("| path | records/s | CPU µs per request |")
        print("|---|---|---|")
        for name, runs in figures.items():
            rate = statistics.median(r for r, _ in runs)
            cpu_us = statistics.median(c for _, c in runs)
            print(f"| {name} | {rate:.0f} | {cpu_us:.0f} |")
    finally:
        target.stop()


if __name__ == "__main__":
    main()

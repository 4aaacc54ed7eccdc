"""Bench-only source and target apps, each run in its own process.

The source serves any number of records (the 336,776 flights repeated with
new ids) on the same keyset contract as the demo source, and can release them
at a chosen rate, so a record's ``visible_at`` is when the source first shows
it. The target counts what it receives and, for each record, the seconds from
``visible_at`` to its arrival: both apps run on one machine, one clock.

    python bench/backfill_apps.py source --port 0
    python bench/backfill_apps.py target --port 0

The first stdout line is ``listening http://HOST:PORT``. Routes::

    source  GET  /flights?part=0&parts=2&after_id=17&limit=1000
                 {"data": [{"id": 19, "updated_at": "...", "visible_at": ..}]}
            POST /admin/release?count=N&rate=R   start showing N records, R a
                 second (0: all at once); ids start at 1, nothing is shown
                 before the first release
            GET  /admin/stats  {"requests": 5, "first_data_at": 1.7e9, ...}
    target  POST /records (one object), /records/batch (a JSON array)
            POST /admin/reset  forget everything
            GET  /stats  {"records": 6, "distinct": 6, "duplicates": 0,
                          "first_at": ..., "last_at": ...}
            GET  /latency  {"count": 6, "p50": 0.41, "p95": ..., "p99": ...}

Both are plain aiohttp servers, a few times faster than the demo apps on
uvicorn's pure-Python HTTP parser, so that neither contender of the bench is
held back by the apps it talks to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field

import orjson
from aiohttp import web

_JSON = "application/json"
_OK = b'{"ok":true}'
_FLIGHTS = 336_776


def _templates() -> list[bytes]:
    """Each flight's JSON without its id and updated_at, from its first field on."""
    from jellyfish.demo.data import load_flights

    rows = []
    for record in load_flights(None):
        body = {k: v for k, v in record.items() if k not in ("id", "updated_at")}
        rows.append(orjson.dumps(body)[1:])  # drop the opening brace
    return rows


@dataclass
class Release:
    """Which records the source shows, and from when."""

    count: int = 0
    rate: float = 0.0
    started: float = 0.0

    def visible(self, now: float) -> int:
        """How many records (ids 1..n) are visible at ``now``."""
        if not self.count or self.rate <= 0:
            return self.count
        return min(self.count, int((now - self.started) * self.rate) + 1)

    def visible_at(self, record_id: int) -> float:
        if self.rate <= 0:
            return self.started
        return self.started + (record_id - 1) / self.rate


@dataclass
class SourceState:
    templates: list[bytes]
    release: Release = field(default_factory=Release)
    requests: int = 0
    records_served: int = 0
    first_data_at: float | None = None


def _stamp(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_source(templates: list[bytes]) -> web.Application:
    state = SourceState(templates)

    async def flights(request: web.Request) -> web.Response:
        now = time.time()
        state.requests += 1
        query = request.query
        part, parts = int(query.get("part", 0)), int(query.get("parts", 1))
        limit = min(int(query.get("limit", 1000)), 5000)
        after = int(query.get("after_id", 0) or 0)
        first = after + 1
        first += (part - (first - 1) % parts) % parts
        last = state.release.visible(now)
        ids = range(first, min(last, first + (limit - 1) * parts) + 1, parts)
        chunks = []
        for record_id in ids:
            seen = state.release.visible_at(record_id)
            head = (
                f'{{"id":{record_id},"updated_at":"{_stamp(seen)}",'
                f'"visible_at":{seen:.6f},'
            )
            chunks.append(head.encode() + templates[(record_id - 1) % len(templates)])
        if chunks and state.first_data_at is None:
            state.first_data_at = now
        state.records_served += len(chunks)
        body = b'{"data":[' + b",".join(chunks) + b"]}"
        return web.Response(body=body, content_type=_JSON)

    async def release(request: web.Request) -> web.Response:
        state.release = Release(
            count=int(request.query["count"]),
            rate=float(request.query.get("rate", 0)),
            started=time.time(),
        )
        state.first_data_at = None
        state.records_served = 0
        return web.json_response({"ok": True, "started": state.release.started})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": state.requests,
                "records_served": state.records_served,
                "first_data_at": state.first_data_at,
                "visible": state.release.visible(time.time()),
            }
        )

    app = web.Application()
    app.router.add_get("/flights", flights)
    app.router.add_post("/admin/release", release)
    app.router.add_get("/admin/stats", stats)
    app.router.add_get("/health", stats)
    return app


@dataclass
class TargetState:
    seen: bytearray = field(default_factory=lambda: bytearray(_FLIGHTS))
    latencies: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    requests: int = 0
    records: int = 0
    distinct: int = 0
    duplicates: int = 0
    first_at: float | None = None
    last_at: float | None = None


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_target() -> web.Application:
    state = TargetState()

    def store(records: list[dict[str, object]], now: float) -> None:
        seen = state.seen
        for record in records:
            record_id = int(record["id"])  # type: ignore[call-overload]
            if record_id >= len(seen):
                seen.extend(bytes(max(record_id + 1 - len(seen), len(seen))))
            if seen[record_id]:
                state.duplicates += 1
            else:
                seen[record_id] = 1
                state.distinct += 1
            visible_at = record.get("visible_at")
            if isinstance(visible_at, float):
                state.latencies.append(now - visible_at)
        state.records += len(records)
        state.requests += 1
        if state.first_at is None:
            state.first_at = now
        state.last_at = now

    async def one(request: web.Request) -> web.Response:
        store([orjson.loads(await request.read())], time.time())
        return web.Response(body=_OK, content_type=_JSON)

    async def batch(request: web.Request) -> web.Response:
        store(orjson.loads(await request.read()), time.time())
        return web.Response(body=_OK, content_type=_JSON)

    async def reset(request: web.Request) -> web.Response:
        nonlocal state
        state = TargetState()
        return web.Response(body=_OK, content_type=_JSON)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": state.requests,
                "records": state.records,
                "distinct": state.distinct,
                "duplicates": state.duplicates,
                "first_at": state.first_at,
                "last_at": state.last_at,
            }
        )

    async def latency(request: web.Request) -> web.Response:
        ordered = sorted(state.latencies)
        if not ordered:
            return web.json_response({"count": 0})
        return web.json_response(
            {
                "count": len(ordered),
                "p50": _percentile(ordered, 0.50),
                "p95": _percentile(ordered, 0.95),
                "p99": _percentile(ordered, 0.99),
                "max": ordered[-1],
                "mean": sum(ordered) / len(ordered),
            }
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/records", one)
    app.router.add_post("/records/batch", batch)
    app.router.add_post("/admin/reset", reset)
    app.router.add_get("/stats", stats)
    app.router.add_get("/latency", latency)
    app.router.add_get("/health", stats)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["source", "target"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    app = build_source(_templates()) if args.app == "source" else build_target()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"listening http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

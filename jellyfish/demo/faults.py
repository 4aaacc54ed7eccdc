"""Misbehave on purpose: wrap any ASGI app so that some requests fail.

Each kind of fault has its own rate; one seeded random draw per request picks
at most one of them. The kinds are the ways real targets fail:

    500, 503, 429    the status, with Retry-After: 1 on 503 and 429
    slow             answer only after ``slow_s`` (longer than a client timeout)
    drop             let the app handle the request, then cut the connection
                     before the answer: the sender cannot know it arrived
    html             200 with an HTML page where JSON was expected
    code1            200 with {"code": "1"}: the Data JellyFish "try again"
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_KINDS = ("500", "503", "429", "slow", "drop", "html", "code1")


class ConnectionDropped(Exception):
    """Raised after the answer has started, so the server cuts the connection."""


@dataclass
class FaultPlan:
    """Rates per fault kind (0..1 each, summing to at most 1)."""

    rates: dict[str, float] = field(default_factory=dict)
    slow_s: float = 3.0
    seed: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rates) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(
                f"unknown fault kinds {unknown}; valid kinds: {', '.join(FAULT_KINDS)}"
            )
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        data = json.loads(text)
        return cls(
            rates={str(k): float(v) for k, v in data.get("rates", {}).items()},
            slow_s=float(data.get("slow_s", 3.0)),
            seed=int(data.get("seed", 1)),
        )


class FaultInjector:
    """An ASGI wrapper that fails POST requests at the plan's rates."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self._app = app
        self._plan = plan
        self._rng = random.Random(plan.seed)
        self.injected: Counter[str] = Counter()

    def pause(self) -> None:
        """Stop injecting faults; requests pass straight through."""
        self._plan = FaultPlan(rates={}, slow_s=self._plan.slow_s, seed=self._plan.seed)

    def _draw(self) -> str | None:
        roll = self._rng.random()
        for kind in FAULT_KINDS:
            rate = self._plan.rates.get(kind, 0.0)
            if roll < rate:
                return kind
            roll -= rate
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        kind = self._draw()
        if kind is None:
            await self._app(scope, receive, send)
            return
        self.injected[kind] += 1
        if kind == "drop":
            await self._app(scope, receive, _swallow)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionDropped("fault injected: connection dropped mid-answer")
        if kind == "slow":
            await asyncio.sleep(self._plan.slow_s)
            await self._app(scope, receive, send)
            return
        status, body, media = _canned(kind)
        headers = [(b"content-type", media)]
        if kind in ("503", "429"):
            headers.append((b"retry-after", b"1"))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


async def _swallow(message: Message) -> None:
    """Discard what the wrapped app answers; the client never sees it."""


def _canned(kind: str) -> tuple[int, bytes, bytes]:
    if kind == "html":
        return 200, b"<html><body>Service maintenance</body></html>", b"text/html"
    if kind == "code1":
        return 200, b'{"code": "1", "message": "busy"}', b"application/json"
    return int(kind), b'{"error": "fault injected"}', b"application/json"

"""Helpers for the target client tests: specs, deliveries, and test targets.

``RecordingTarget`` is a tiny Starlette app that keeps every request it gets and
answers what the test tells it to, for the answers the demo target cannot give
(a 404, an HTML page with a 200, a slow answer, an echoed token...).
``raw_server`` answers below HTTP: it hangs up, or sends bytes that are not HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jellyfish.demo.data import content_hash
from jellyfish.job import TargetSpec
from jellyfish.target.client import TargetClient
from ledger.types import AttemptResult, DueDelivery

JOB = "flights"
TARGET = "warehouse"


def target_spec(url: str, **fields: Any) -> TargetSpec:
    """A target called ``warehouse`` at ``url``, with ``fields`` on top."""
    return TargetSpec.model_validate({"name": TARGET, "url": url, **fields})


def flight(number: int) -> dict[str, Any]:
    """One small flight record keyed by ``id``."""
    return {"id": number, "origin": "EWR", "dep_delay": number / 2}


def due_deliveries(
    count: int, *, first: int = 1, attempts_before: int = 0
) -> list[DueDelivery]:
    """``count`` deliveries of flights ``first``...; delivery ids are 1000 + id.

    Record version ids are 5000 + id, so they differ from delivery ids.
    """
    return [
        DueDelivery(
            delivery_id=1000 + number,
            record_key=str(number),
            content_hash=content_hash(flight(number)),
            payload=json.dumps(flight(number)),
            attempts_before=attempts_before,
            record_version_id=5000 + number,
        )
        for number in range(first, first + count)
    ]


def push(
    spec: TargetSpec, due: Sequence[DueDelivery], job: str = JOB
) -> list[AttemptResult]:
    """Run one ``TargetClient.push`` on its own event loop and close its client."""

    async def run() -> list[AttemptResult]:
        async with TargetClient.open_http(spec) as http:
            return await TargetClient(job, spec, http).push(due)

    return asyncio.run(run())


@dataclass(frozen=True)
class Received:
    """One request as the test target saw it; header names are lowercase."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    """What the test target sends back, after ``delay_s``."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class RecordingTarget:
    """Keeps every request and answers with ``answer`` (or ``answer(request)``).

    Handlers run on the server's one event loop, so the counters need no lock.
    """

    def __init__(self, answer: Answer | Callable[[Received], Answer] = Answer()):
        self.received: list[Received] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._answer = answer
        self.app = Starlette(
            routes=[Route("/{path:path}", self._receive, methods=["POST", "PUT"])]
        )

    async def _receive(self, request: Request) -> Response:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            seen = Received(
                method=request.method,
                path=request.url.path,
                body=await request.body(),
                headers=dict(request.headers.items()),
            )
            self.received.append(seen)
            answer = self._answer(seen) if callable(self._answer) else self._answer
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            return Response(
                answer.body,
                status_code=answer.status,
                media_type=answer.content_type,
                headers=answer.headers,
            )
        finally:
            self.in_flight -= 1


def closed_port_url() -> str:
    """A loopback URL on a port that was bound and then closed: nobody listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/records"


@contextmanager
def raw_server(reply: bytes | None) -> Iterator[str]:
    """A TCP server that reads each request, sends ``reply`` (if any) and hangs up."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                if reply is not None:
                    connection.sendall(reply)

    thread = threading.Thread(target=serve, name="raw-target", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/records"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()

"""The demo target: an HTTP API that keeps what it receives and counts duplicates.

It receives records one by one or in batches, over a plain REST contract and
over the original Data JellyFish target contract (``{"code": "0"}`` means
stored, anything else means try again later). ``POST /admin/faults`` makes a
seeded share of requests fail, so retries and dead letters can be shown, and
``GET /received`` lets the demo summary compare what arrived with the source.

It is built for hundreds of thousands of single-record posts: one handler does
a ``json.loads``, one hash per record and a few dict updates, and answers with
pre-encoded bytes. Handlers run on one event loop, so the state needs no lock.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jellyfish.demo.data import content_hash

logger = logging.getLogger(__name__)

_JSON = "application/json"
_OK_BODY = b'{"ok":true}'
_JELLYFISH_OK_BODY = b'{"code":"0"}'
_JELLYFISH_FAULT_BODY = b'{"code":"1"}'


class _BodyError(ValueError):
    """A posted body has the wrong shape; the message says how."""


@dataclass
class _Faults:
    """Which share of requests fails, with what status, from which seed."""

    fail_rate: float = 0.0
    status: int = 503
    rng: random.Random = field(default_factory=lambda: random.Random(1))


@dataclass
class _TargetState:
    """Everything the target received, and its counters."""

    key_field: str
    received: dict[str, str] = field(default_factory=dict)
    seen_versions: set[tuple[str, str]] = field(default_factory=set)
    requests: int = 0
    records: int = 0
    duplicates: int = 0
    faulted: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    faults: _Faults = field(default_factory=_Faults)

    def reset(self) -> None:
        """Forget every record, counter, header and fault setting."""
        self.received.clear()
        self.seen_versions.clear()
        self.requests = self.records = self.duplicates = self.faulted = 0
        self.last_headers = {}
        self.faults = _Faults()


def build_target_app(key_field: str = "id") -> Starlette:
    """Build the demo target app.

    Args:
        key_field: The record field that identifies a record; a record received
            again with the same key and the same content counts as a duplicate.

    Returns:
        A Starlette app with these routes::

            GET  /health                   {"ok": true}
            POST /records                  one object     -> {"ok": true}
            POST /records/batch            [...] or {"records": [...]}
                                                          -> {"ok": true, "accepted": 2}
            POST /jellyfish/records        one object     -> {"code": "0"}
            POST /jellyfish/records/batch  as /records/batch -> {"code": "0"}
            GET  /stats     {"requests": 5, "records": 6, "distinct_keys": 4,
                             "duplicates": 2, "faulted": 0}
            GET  /received  {"1": "<content_hash of the latest content>", ...}
            GET  /headers/last             {"idempotency-key": "...", ...}
            POST /admin/reset              {"ok": true}
            POST /admin/faults  {"fail_rate": 0.5, "status": 503, "seed": 1}
                                           -> {"ok": true}

        A body that is not JSON, or a record without the key field, gets a 400
        with a JSON error and nothing is stored.
    """
    state = _TargetState(key_field=key_field)
    app = Starlette(
        routes=[
            Route("/health", _health, methods=["GET"]),
            Route(
                "/records",
                _receiver(state, batch=False, jellyfish=False),
                methods=["POST"],
            ),
            Route(
                "/records/batch",
                _receiver(state, batch=True, jellyfish=False),
                methods=["POST"],
            ),
            Route(
                "/jellyfish/records",
                _receiver(state, batch=False, jellyfish=True),
                methods=["POST"],
            ),
            Route(
                "/jellyfish/records/batch",
                _receiver(state, batch=True, jellyfish=True),
                methods=["POST"],
            ),
            Route("/stats", _stats_handler(state), methods=["GET"]),
            Route("/received", _received_handler(state), methods=["GET"]),
            Route("/headers/last", _headers_handler(state), methods=["GET"]),
            Route("/admin/reset", _reset_handler(state), methods=["POST"]),
            Route("/admin/faults", _faults_handler(state), methods=["POST"]),
        ]
    )
    app.state.target = state
    return app


Handler = Callable[[Request], Awaitable[Response]]


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _receiver(state: _TargetState, *, batch: bool, jellyfish: bool) -> Handler:
    """Build the handler for one of the four receiving routes."""

    async def receive(request: Request) -> Response:
        state.requests += 1
        state.last_headers = dict(request.headers.items())
        faults = state.faults
        if faults.fail_rate > 0 and faults.rng.random() < faults.fail_rate:
            state.faulted += 1
            if jellyfish:
                return Response(
                    _JELLYFISH_FAULT_BODY, status_code=faults.status, media_type=_JSON
                )
            return JSONResponse(
                {"ok": False, "error": "fault injected by /admin/faults"},
                status_code=faults.status,
            )

        try:
            records = _parse_records(await request.body(), state.key_field, batch)
        except _BodyError as exc:
            if jellyfish:
                return JSONResponse(
                    {"code": "400", "message": str(exc)}, status_code=400
                )
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        for key, record in records:
            _store(state, key, record)

        if jellyfish:
            return Response(_JELLYFISH_OK_BODY, media_type=_JSON)
        if batch:
            return JSONResponse({"ok": True, "accepted": len(records)})
        return Response(_OK_BODY, media_type=_JSON)

    return receive


def _parse_records(
    body: bytes, key_field: str, batch: bool
) -> list[tuple[str, dict[str, object]]]:
    """Check a whole body before anything is stored; pair each record with its key."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise _BodyError("the body is not valid JSON") from None

    if not batch:
        items = [payload]
    elif isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict) and isinstance(payload.get("records"), list):
        items = payload["records"]
    else:
        raise _BodyError(
            "a batch body must be a JSON array of objects or "
            f'{{"records": [...]}}, got {type(payload).__name__}'
        )

    keyed: list[tuple[str, dict[str, object]]] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _BodyError(
                f"record {position} must be a JSON object, got {type(item).__name__}"
            )
        key = item.get(key_field)
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise _BodyError(
                f"record {position} needs the key field {key_field!r} as a string "
                f"or integer, got {type(key).__name__}"
            )
        keyed.append((str(key), item))
    return keyed


def _store(state: _TargetState, key: str, record: dict[str, object]) -> None:
    """Keep the latest content of a key and count a version seen before."""
    digest = content_hash(record)
    version = (key, digest)
    if version in state.seen_versions:
        state.duplicates += 1
    else:
        state.seen_versions.add(version)
    state.received[key] = digest
    state.records += 1


def _stats_handler(state: _TargetState) -> Handler:
    async def stats(request: Request) -> Response:
        return JSONResponse(
            {
                "requests": state.requests,
                "records": state.records,
                "distinct_keys": len(state.received),
                "duplicates": state.duplicates,
                "faulted": state.faulted,
            }
        )

    return stats


def _received_handler(state: _TargetState) -> Handler:
    async def received(request: Request) -> Response:
        return JSONResponse(state.received)

    return received


def _headers_handler(state: _TargetState) -> Handler:
    async def headers(request: Request) -> Response:
        return JSONResponse(state.last_headers)

    return headers


def _reset_handler(state: _TargetState) -> Handler:
    async def reset(request: Request) -> Response:
        state.reset()
        logger.info("reset demo target")
        return Response(_OK_BODY, media_type=_JSON)

    return reset


def _faults_handler(state: _TargetState) -> Handler:
    async def set_faults(request: Request) -> Response:
        try:
            state.faults = _parse_faults(await request.body())
        except _BodyError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        logger.info(
            "set demo target faults fail_rate=%s status=%d",
            state.faults.fail_rate,
            state.faults.status,
        )
        return Response(_OK_BODY, media_type=_JSON)

    return set_faults


def _parse_faults(body: bytes) -> _Faults:
    """Read ``{"fail_rate": 0.0..1.0, "status": 503, "seed": 1}``."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise _BodyError("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _BodyError(
            f"the body must be a JSON object, got {type(payload).__name__}"
        )

    fail_rate = payload.get("fail_rate", 0.0)
    status = payload.get("status", 503)
    seed = payload.get("seed", 1)
    if isinstance(fail_rate, bool) or not isinstance(fail_rate, int | float):
        raise _BodyError(f"fail_rate must be a number, got {type(fail_rate).__name__}")
    if not 0.0 <= fail_rate <= 1.0:
        raise _BodyError(f"fail_rate must be between 0 and 1, got {fail_rate}")
    if isinstance(status, bool) or not isinstance(status, int):
        raise _BodyError(f"status must be an integer, got {type(status).__name__}")
    if not 100 <= status <= 599:
        raise _BodyError(f"status must be an HTTP status (100-599), got {status}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _BodyError(f"seed must be an integer, got {type(seed).__name__}")
    return _Faults(fail_rate=float(fail_rate), status=status, rng=random.Random(seed))

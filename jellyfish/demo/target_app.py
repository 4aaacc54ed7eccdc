"""The demo target: an HTTP API that keeps what it receives and counts duplicates.

It receives records one by one or in batches, over a plain REST contract and
over the original Data JellyFish target contract (``{"code": "0"}`` means
stored, anything else means try again later), and over a batch route that
answers record by record. ``POST /admin/faults`` makes a seeded share of
requests fail, or of batch records be refused, so retries and dead letters can
be shown, and ``GET /received`` lets the demo summary compare what arrived with
the source.

It checks what a careful receiver would: per key, the record version ids
(``X-JellyFish-Record-Version(s)``) must never go down, and, when built with a
signing secret, every request must carry a valid HMAC signature. It counts what
fails those checks in ``/stats`` rather than hiding it.

It is built for hundreds of thousands of single-record posts: one handler does
a ``json.loads``, one hash per record and a few dict updates, and answers with
pre-encoded bytes. Handlers run on one event loop, so the state needs no lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jellyfish.demo.data import content_hash
from jellyfish.demo.target_checks import (
    BodyError,
    Faults,
    parse_faults,
    parse_records,
    parse_versions,
    signature_problem,
)

logger = logging.getLogger(__name__)

_JSON = "application/json"
_OK_BODY = b'{"ok":true}'
_JELLYFISH_OK_BODY = b'{"code":"0"}'
_JELLYFISH_FAULT_BODY = b'{"code":"1"}'

# How a route answers: plain REST, the original Data JellyFish contract, or a
# batch answered record by record ({"results": [{"ok": true}, ...]}).
Contract = Literal["plain", "jellyfish", "items"]


@dataclass
class _TargetState:
    """Everything the target received, and its counters."""

    key_field: str
    signing_secret: str | None = None
    received: dict[str, str] = field(default_factory=dict)
    seen_versions: set[tuple[str, str]] = field(default_factory=set)
    highest_version: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    records: int = 0
    duplicates: int = 0
    faulted: int = 0
    refused_items: int = 0
    older_after_newer: int = 0
    bad_signatures: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    def reset(self) -> None:
        """Forget every record, counter, header and fault setting."""
        self.received.clear()
        self.seen_versions.clear()
        self.highest_version.clear()
        self.requests = self.records = self.duplicates = self.faulted = 0
        self.refused_items = self.older_after_newer = self.bad_signatures = 0
        self.last_headers = {}
        self.faults = Faults()


def build_target_app(
    key_field: str = "id", signing_secret: str | None = None
) -> Starlette:
    """Build the demo target app.

    Args:
        key_field: The record field that identifies a record; a record received
            again with the same key and the same content counts as a duplicate.
        signing_secret: When given, every receiving route answers 401 unless
            the request carries ``X-JellyFish-Timestamp`` (within 300 s of now)
            and ``X-JellyFish-Signature: sha256=<hex HMAC-SHA256(secret,
            timestamp + "." + body)>``.

    Returns:
        A Starlette app with these routes::

            GET  /health                   {"ok": true}
            POST /records                  one object     -> {"ok": true}
            POST /records/batch            [...] or {"records": [...]}
                                                          -> {"ok": true, "accepted": 2}
            POST /records/batch/items      as /records/batch
                -> {"results": [{"ok": true},
                                {"ok": false, "error": "key 7 refused by ..."}]}
            POST /jellyfish/records        one object     -> {"code": "0"}
            POST /jellyfish/records/batch  as /records/batch -> {"code": "0"}
            GET  /stats     {"requests": 5, "records": 6, "distinct_keys": 4,
                             "duplicates": 2, "faulted": 0, "refused_items": 0,
                             "older_after_newer": 0, "bad_signatures": 0}
            GET  /received  {"1": "<content_hash of the latest content>", ...}
            GET  /headers/last             {"idempotency-key": "...", ...}
            POST /admin/reset              {"ok": true}
            POST /admin/faults  {"fail_rate": 0.5, "status": 503, "seed": 1,
                                 "reject_keys": ["7"], "reject_rate": 0.1}
                                           -> {"ok": true}

        ``fail_rate`` fails whole requests on every receiving route;
        ``reject_keys`` and ``reject_rate`` refuse single records, and only on
        ``/records/batch/items``, which stores the others.

        A body that is not JSON, a record without the key field, or a record
        version header that does not fit the body gets a 400 with a JSON error
        and nothing is stored. A record whose version id is below one already
        received for its key is stored and counted in ``older_after_newer``.
    """
    state = _TargetState(key_field=key_field, signing_secret=signing_secret)
    receivers: list[tuple[str, bool, Contract]] = [
        ("/records", False, "plain"),
        ("/records/batch", True, "plain"),
        ("/records/batch/items", True, "items"),
        ("/jellyfish/records", False, "jellyfish"),
        ("/jellyfish/records/batch", True, "jellyfish"),
    ]
    app = Starlette(
        routes=[
            Route("/health", _health, methods=["GET"]),
            *(
                Route(path, _receiver(state, batch, contract), methods=["POST"])
                for path, batch, contract in receivers
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


def _receiver(state: _TargetState, batch: bool, contract: Contract) -> Handler:
    """Build the handler for one of the receiving routes."""

    async def receive(request: Request) -> Response:
        state.requests += 1
        state.last_headers = dict(request.headers.items())
        body = await request.body()
        if state.signing_secret is not None:
            problem = signature_problem(
                request.headers, body, state.signing_secret, time.time()
            )
            if problem is not None:
                state.bad_signatures += 1
                return _refusal(contract, 401, problem)
        faults = state.faults
        if faults.fail_rate > 0 and faults.rng.random() < faults.fail_rate:
            state.faulted += 1
            if contract == "jellyfish":
                return Response(
                    _JELLYFISH_FAULT_BODY, status_code=faults.status, media_type=_JSON
                )
            return JSONResponse(
                {"ok": False, "error": "fault injected by /admin/faults"},
                status_code=faults.status,
            )

        try:
            records = parse_records(body, state.key_field, batch)
            versions = parse_versions(request.headers, batch, len(records))
        except BodyError as exc:
            return _refusal(contract, 400, str(exc))
        if contract == "items":
            return _receive_items(state, records, versions)
        for (key, record), version in zip(records, versions, strict=True):
            _store(state, key, record, version)

        if contract == "jellyfish":
            return Response(_JELLYFISH_OK_BODY, media_type=_JSON)
        if batch:
            return JSONResponse({"ok": True, "accepted": len(records)})
        return Response(_OK_BODY, media_type=_JSON)

    return receive


def _refusal(contract: Contract, status: int, error: str) -> JSONResponse:
    """A 4xx answer in the route's contract, with the reason."""
    if contract == "jellyfish":
        return JSONResponse({"code": str(status), "message": error}, status_code=status)
    return JSONResponse({"ok": False, "error": error}, status_code=status)


def _receive_items(
    state: _TargetState,
    records: list[tuple[str, dict[str, object]]],
    versions: list[int | None],
) -> JSONResponse:
    """Store the records the faults do not refuse; answer one entry per record."""
    results: list[dict[str, object]] = []
    for (key, record), version in zip(records, versions, strict=True):
        if state.faults.is_refused(key):
            state.refused_items += 1
            error = f"key {key} refused by /admin/faults"
            results.append({"ok": False, "error": error})
        else:
            _store(state, key, record, version)
            results.append({"ok": True})
    return JSONResponse({"results": results})


def _store(
    state: _TargetState, key: str, record: dict[str, object], version: int | None
) -> None:
    """Keep the latest content of a key; count a version seen before or late."""
    digest = content_hash(record)
    seen = (key, digest)
    if seen in state.seen_versions:
        state.duplicates += 1
    else:
        state.seen_versions.add(seen)
    if version is not None:
        highest = state.highest_version.get(key)
        if highest is not None and version < highest:
            state.older_after_newer += 1
        else:
            state.highest_version[key] = version
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
                "refused_items": state.refused_items,
                "older_after_newer": state.older_after_newer,
                "bad_signatures": state.bad_signatures,
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
            state.faults = parse_faults(await request.body())
        except BodyError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        logger.info(
            "set demo target faults fail_rate=%s status=%d reject_keys=%d "
            "reject_rate=%s",
            state.faults.fail_rate,
            state.faults.status,
            len(state.faults.reject_keys),
            state.faults.reject_rate,
        )
        return Response(_OK_BODY, media_type=_JSON)

    return set_faults

"""The demo source: an HTTP API serving flights page by page, newest changes last.

It speaks two contracts over the same records, ordered by (``updated_at``,
``id``):

- ``GET /flights``: a keyset-paged REST endpoint with a ``next`` cursor.
- ``POST /jellyfish/flights``: the original Data JellyFish source contract,
  which answers errors in the body with HTTP 200.

``POST /admin/change`` makes new record versions so incremental sync can be
shown, and ``GET /admin/digest`` lets the demo summary compare both ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jellyfish.demo.flight_store import FlightStore, Key, field_text, instant_us

logger = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 500
MAX_PAGE_LIMIT = 5000
DEFAULT_CHANGE_COUNT = 10

_QUERY_CURSOR_NAMES = frozenset({"limit", "after_updated_at", "after_id"})
_BODY_CURSOR_NAMES = frozenset({"offset", "id", "uId", "limit"})


class _RequestError(ValueError):
    """A request parameter has the wrong shape; the message says which."""


def build_source_app(records: Sequence[Mapping[str, object]]) -> Starlette:
    """Build the demo source app over a copy of ``records``.

    Args:
        records: Records with an int ``id`` and an ISO-8601 ``updated_at``,
            such as :func:`jellyfish.demo.data.load_flights` returns. They are
            copied; ``POST /admin/change`` never touches the caller's records.

    Returns:
        A Starlette app with these routes::

            GET  /health             {"ok": true}
            GET  /flights            {"data": [...], "next": {"after_updated_at":
                                      "2013-01-01T10:00:00Z", "after_id": 7} | null}
            POST /jellyfish/flights  {"code": "0", "data": [...]}
            POST /admin/change       {"changed_ids": [1, 11, 21]}
            GET  /admin/digest       {"records": 3, "hashes": {"1": "9f86d0...", ...}}
            GET  /admin/stats        {"pages_served": 4, "records": 3}

    Raises:
        ValueError: A record lacks an int ``id`` or an ISO-8601 ``updated_at``,
            or two records share an ``id``.
    """
    app = Starlette(
        routes=[
            Route("/health", _health, methods=["GET"]),
            Route("/flights", _list_flights, methods=["GET"]),
            Route("/jellyfish/flights", _jellyfish_flights, methods=["POST"]),
            Route("/admin/change", _change, methods=["POST"]),
            Route("/admin/digest", _digest, methods=["GET"]),
            Route("/admin/stats", _stats, methods=["GET"]),
        ]
    )
    app.state.store = FlightStore(records)
    app.state.pages_served = 0
    logger.info("built demo source records=%d", len(app.state.store))
    return app


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _list_flights(request: Request) -> JSONResponse:
    """Serve one keyset page; shard filters come as ``?field=value``."""
    store: FlightStore = request.app.state.store
    params = request.query_params
    try:
        limit = _parse_limit(params.get("limit"))
        after = _parse_after(params.get("after_updated_at"), params.get("after_id"))
        filters = _parse_filters(
            {k: v for k, v in params.items() if k not in _QUERY_CURSOR_NAMES},
            store,
            reserved=_QUERY_CURSOR_NAMES,
        )
    except _RequestError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)

    page = store.page(after, filters, limit)
    request.app.state.pages_served += 1
    logger.debug("served page records=%d filters=%s", len(page), sorted(filters))
    next_cursor = None
    if len(page) == limit:
        next_cursor = {
            "after_updated_at": page[-1]["updated_at"],
            "after_id": page[-1]["id"],
        }
    return JSONResponse({"data": page, "next": next_cursor})


async def _jellyfish_flights(request: Request) -> JSONResponse:
    """Serve one page of the original contract: errors go in the body, HTTP 200."""
    store: FlightStore = request.app.state.store
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _jellyfish_error("the body must be a JSON object, got invalid JSON")
    if not isinstance(body, dict):
        return _jellyfish_error(
            f"the body must be a JSON object, got {type(body).__name__}"
        )

    try:
        limit = _parse_limit(body.get("limit"))
        offset = body.get("offset")
        if offset is not None and not isinstance(offset, str):
            raise _RequestError(
                f"offset must be an ISO-8601 string, got {type(offset).__name__}"
            )
        # Some deployments of the original contract name the last id "uId".
        last_id = body["id"] if "id" in body else body.get("uId")
        after = _parse_after(offset or None, last_id)
        filters = _parse_filters(
            {k: v for k, v in body.items() if k not in _BODY_CURSOR_NAMES},
            store,
            reserved=_BODY_CURSOR_NAMES,
        )
    except _RequestError as exc:
        return _jellyfish_error(str(exc))

    page = store.page(after, filters, limit)
    request.app.state.pages_served += 1
    logger.debug("served page records=%d filters=%s", len(page), sorted(filters))
    return JSONResponse({"code": "0", "data": page})


async def _change(request: Request) -> JSONResponse:
    """Make new versions of ``?count=`` evenly spaced records."""
    store: FlightStore = request.app.state.store
    raw_count = request.query_params.get("count", str(DEFAULT_CHANGE_COUNT))
    try:
        changed_ids = store.change(int(raw_count), datetime.now(UTC))
    except ValueError:
        return JSONResponse(
            {"error": f"count must be an integer of at least 1, got {raw_count!r}"},
            status_code=400,
        )
    return JSONResponse({"changed_ids": changed_ids})


async def _digest(request: Request) -> JSONResponse:
    store: FlightStore = request.app.state.store
    return JSONResponse({"records": len(store), "hashes": store.digest()})


async def _stats(request: Request) -> JSONResponse:
    store: FlightStore = request.app.state.store
    return JSONResponse(
        {"pages_served": request.app.state.pages_served, "records": len(store)}
    )


def _jellyfish_error(message: str) -> JSONResponse:
    """The original contract's error answer: HTTP 200 with a non-zero code."""
    return JSONResponse({"code": "400", "message": message})


def _parse_limit(raw: object) -> int:
    """Read a page size; above the maximum is clamped, the client follows on."""
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    if isinstance(raw, bool):
        raise _RequestError(f"limit must be an integer, got {type(raw).__name__}")
    try:
        limit = int(raw) if isinstance(raw, int | str) else None
    except ValueError:
        limit = None
    if limit is None or limit < 1:
        raise _RequestError(f"limit must be an integer of at least 1, got {raw!r}")
    return min(limit, MAX_PAGE_LIMIT)


def _parse_after(raw_stamp: str | None, raw_id: object) -> Key | None:
    """Read the compound cursor; no timestamp means from the start."""
    if raw_stamp is None:
        return None
    try:
        after_us = instant_us(raw_stamp)
    except ValueError:
        raise _RequestError(
            f"the cursor timestamp must be ISO-8601, got {raw_stamp!r}"
        ) from None
    if raw_id is None:
        return (after_us, 0)
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
        raise _RequestError(f"the cursor id must be an integer, got {raw_id!r}")
    try:
        return (after_us, int(raw_id))
    except ValueError:
        raise _RequestError(
            f"the cursor id must be an integer, got {raw_id!r}"
        ) from None


def _parse_filters(
    raw: Mapping[str, object], store: FlightStore, reserved: frozenset[str]
) -> dict[str, str]:
    """Turn shard filter fields into field texts; unknown names are refused."""
    unknown = sorted(name for name in raw if name not in store.fields)
    if unknown:
        valid = ", ".join(sorted(store.fields | reserved))
        raise _RequestError(
            f"unknown parameter {unknown[0]!r}; valid names are: {valid}"
        )
    return {name: field_text(value) for name, value in raw.items()}

"""A small source app for the pagination kinds and hostile answers the demo lacks.

It serves 23 records whose ``updated_at`` values tie and carry mixed offsets,
so that the newest record by instant is not the newest by text:

    GET  /offset?offset=5&limit=5        {"items": [...]}
    GET  /pages?page=2&per_page=5        {"items": [...]}
    GET  /token?size=5&page_token=...    {"items": [...], "meta": {"next_token": ...}}
    GET  /next-body?size=5&start=5       {"items": [...], "links": {"next": url}}
    GET  /next-link?size=5&start=5       [...], next page in a relative Link header
    GET  /keyset?after_updated_at=..&after_id=..&limit=5   {"items": [...]}
                                         (``after_id`` missing reads as 0)
    POST /admin/load                     a JSON list replaces the records
    GET  /admin/requests?run=abc         the query of every request tagged ``run``

``/hostile/...`` routes each misbehave in one way; see ``HOSTILE_ROUTES``.

``/offset`` and ``/keyset`` also take ``group`` (serve only records whose
``group`` field matches, so each shard of a job reads its own) and
``misbehave``, applied only to a request that carries a cursor
(``changed_since`` or ``after_updated_at``), so a pass's first page is sound:

- ``backwards``: the group's oldest record is slipped in as the page's second;
- ``latin1``: the body is encoded as Latin-1, not UTF-8.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

Record = dict[str, Any]

# (id, updated_at): ties at 08:00Z, 09:00Z, 11:00Z and 11:30Z written with
# different offsets; "...T13:00:00+02:00" (11:00Z) sorts after "...T11:30:00Z"
# as text.
_STAMPS = [
    (1, "2024-01-01T08:00:00Z"),
    (2, "2024-01-01T10:00:00+02:00"),
    (3, "2024-01-01T03:00:00-05:00"),
    (4, "2024-01-01T09:00:00"),
    (5, "2024-01-01T11:30:00Z"),
    (6, "2024-01-01T13:00:00+02:00"),
    (7, "2024-01-01T09:00:00Z"),
    (8, "2024-01-01T10:15:00+05:30"),
    (9, "2024-01-01T08:00:00.000+00:00"),
    (10, "2024-01-01T11:00:00Z"),
    (11, "2024-01-01T07:45:00Z"),
    (12, "2024-01-01T12:00:00+02:00"),
    (13, "2024-01-01T11:00:00+00:00"),
    (14, "2024-01-01T05:00:00-03:00"),
    (15, "2024-01-01T09:59:59.999999Z"),
    (16, "2024-01-01T11:29:59+00:00"),
    (17, "2024-01-01T12:30:00+01:00"),
    (18, "2024-01-01T01:00:00Z"),
    (19, "2024-01-01T10:00:00Z"),
    (20, "2024-01-01T14:00:00+04:00"),
    (21, "2024-01-01T06:30:00-05:00"),
    (22, "2024-01-01T08:00:00Z"),
    (23, "2024-01-01T06:00:00+01:00"),
]

#: The newest record by (instant, id): id 21, at 11:30Z like ids 5 and 17.
NEWEST = ("2024-01-01T06:30:00-05:00", 21)


def paged_records() -> list[Record]:
    """The 23 records the app serves, in the order it serves them."""
    return [
        {"id": record_id, "updated_at": stamp, "name": f"record-{record_id:02d}"}
        for record_id, stamp in _STAMPS
    ]


def instant(stamp: str) -> dt.datetime:
    """An ISO-8601 text as a UTC instant; no offset means UTC."""
    parsed = dt.datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def keyset_order(records: list[Record]) -> list[Record]:
    """Records in (``updated_at`` as an instant, ``id``) order."""
    return sorted(records, key=lambda r: (instant(r["updated_at"]), r["id"]))


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


def _note(request: Request) -> None:
    run = request.query_params.get("run")
    if run is not None:
        request.app.state.requests.setdefault(run, []).append(
            dict(request.query_params)
        )


def _records(request: Request) -> list[Record]:
    records: list[Record] = request.app.state.records
    group = request.query_params.get("group")
    if group is None:
        return records
    return [r for r in records if r.get("group") == group]


def _answer(request: Request, page: list[Record]) -> Response:
    """The page as ``{"items": [...]}``, misbehaving if the request asks so."""
    carries_cursor = {"changed_since", "after_updated_at"} & set(request.query_params)
    misbehave = request.query_params.get("misbehave") if carries_cursor else None
    if misbehave == "backwards":
        page = [*page[:1], keyset_order(_records(request))[0], *page[1:]]
    body = json.dumps({"items": page}, ensure_ascii=False, separators=(",", ":"))
    encoding = "latin-1" if misbehave == "latin1" else "utf-8"
    return Response(body.encode(encoding), media_type="application/json")


async def _offset(request: Request) -> Response:
    """Offset pages; ``changed_since`` keeps records after that instant."""
    _note(request)
    records = _records(request)
    since = request.query_params.get("changed_since")
    if since is not None:
        records = [r for r in records if instant(r["updated_at"]) > instant(since)]
    start = _int(request, "offset", 0)
    return _answer(request, records[start : start + _int(request, "limit", 5)])


async def _pages(request: Request) -> JSONResponse:
    size = _int(request, "per_page", 5)
    start = (_int(request, "page", 1) - 1) * size
    return JSONResponse({"items": _records(request)[start : start + size]})


async def _token(request: Request) -> JSONResponse:
    records = _records(request)
    size = _int(request, "size", 5)
    token = request.query_params.get("page_token", "tok-0000")
    start = int(token.removeprefix("tok-"))
    end = start + size
    next_token = f"tok-{end:04d}" if end < len(records) else None
    return JSONResponse(
        {"items": records[start:end], "meta": {"next_token": next_token}}
    )


async def _next_body(request: Request) -> JSONResponse:
    records = _records(request)
    size, start = _int(request, "size", 5), _int(request, "start", 0)
    end = start + size
    following = None
    if end < len(records):
        following = str(request.url.include_query_params(start=end))
    return JSONResponse({"items": records[start:end], "links": {"next": following}})


async def _next_link(request: Request) -> JSONResponse:
    """A bare list; the next page is a relative URL in the Link header (RFC 8288)."""
    records = _records(request)
    size, start = _int(request, "size", 5), _int(request, "start", 0)
    end = start + size
    headers = {}
    if end < len(records):
        headers["Link"] = (
            f'</next-link?size={size}&start=0>; rel="first", '
            f'</next-link?size={size}&start={end}>; rel="next"'
        )
    return JSONResponse(records[start:end], headers=headers)


async def _keyset(request: Request) -> Response:
    _note(request)
    ordered = keyset_order(_records(request))
    after = request.query_params.get("after_updated_at")
    if after is not None:
        mark = (instant(after), _int(request, "after_id", 0))
        ordered = [r for r in ordered if (instant(r["updated_at"]), r["id"]) > mark]
    return _answer(request, ordered[: _int(request, "limit", 5)])


async def _load(request: Request) -> JSONResponse:
    records = await request.json()
    request.app.state.records = records
    return JSONResponse({"records": len(records)})


async def _requests(request: Request) -> JSONResponse:
    run = request.query_params["run"]
    return JSONResponse({"requests": request.app.state.requests.get(run, [])})


async def _html(request: Request) -> HTMLResponse:
    return HTMLResponse("<html><body>Maintenance</body></html>")


async def _no_records(request: Request) -> JSONResponse:
    return JSONResponse({"data": _records(request)[:2]})


async def _not_objects(request: Request) -> JSONResponse:
    return JSONResponse({"items": [_records(request)[0], ["id", 2]]})


async def _key_missing(request: Request) -> JSONResponse:
    first, second = _records(request)[:2]
    return JSONResponse({"items": [first, {"updated_at": second["updated_at"]}]})


async def _key_null(request: Request) -> JSONResponse:
    first, second = _records(request)[:2]
    return JSONResponse({"items": [first, {**second, "id": None}]})


async def _cursor_null(request: Request) -> JSONResponse:
    first, second, third = _records(request)[:3]
    return JSONResponse({"items": [first, second, {**third, "updated_at": None}]})


async def _cursor_not_integer(request: Request) -> JSONResponse:
    first, second = _records(request)[:2]
    return JSONResponse({"items": [first, {**second, "id": "two"}]})


async def _jellyfish_busy(request: Request) -> JSONResponse:
    return JSONResponse({"code": "1", "message": "busy, try later", "data": []})


async def _repeat_token(request: Request) -> JSONResponse:
    """Page 1 hands out a token; the page it names hands out the same one."""
    records = _records(request)
    page = records[5:10] if "page_token" in request.query_params else records[:5]
    return JSONResponse({"items": page, "meta": {"next_token": "tok-again"}})


async def _repeat_url(request: Request) -> JSONResponse:
    """Page 1 names page 2, and page 2 names itself."""
    records = _records(request)
    page = records[5:10] if "p" in request.query_params else records[:5]
    following = str(request.url.replace(query="p=2"))
    return JSONResponse({"items": page, "links": {"next": following}})


async def _ignores_keyset(request: Request) -> JSONResponse:
    ordered = keyset_order(_records(request))
    return JSONResponse({"items": ordered[: _int(request, "limit", 5)]})


async def _flaky(request: Request) -> Response:
    """Answers 500 ``failures`` times per ``run``, then every record."""
    run = request.query_params["run"]
    failures: Counter[str] = request.app.state.failures
    if failures[run] < _int(request, "failures", 0):
        failures[run] += 1
        return JSONResponse({"error": "internal"}, status_code=500)
    return JSONResponse({"items": _records(request)})


HOSTILE_ROUTES = [
    Route("/hostile/html", _html),
    Route("/hostile/no-records", _no_records),
    Route("/hostile/not-objects", _not_objects),
    Route("/hostile/key-missing", _key_missing),
    Route("/hostile/key-null", _key_null),
    Route("/hostile/cursor-null", _cursor_null),
    Route("/hostile/cursor-not-integer", _cursor_not_integer),
    Route("/hostile/jellyfish-busy", _jellyfish_busy, methods=["POST"]),
    Route("/hostile/repeat-token", _repeat_token),
    Route("/hostile/repeat-url", _repeat_url),
    Route("/hostile/ignores-keyset", _ignores_keyset),
    Route("/hostile/flaky", _flaky),
]


def build_paged_app() -> Starlette:
    """A fresh app over :func:`paged_records`."""
    app = Starlette(
        routes=[
            Route("/offset", _offset),
            Route("/pages", _pages),
            Route("/token", _token),
            Route("/next-body", _next_body),
            Route("/next-link", _next_link),
            Route("/keyset", _keyset),
            Route("/admin/load", _load, methods=["POST"]),
            Route("/admin/requests", _requests),
            *HOSTILE_ROUTES,
        ]
    )
    app.state.records = paged_records()
    app.state.requests = {}
    app.state.failures = Counter()
    return app

"""Read a shard's pages from the source, one pass at a time.

A pass starts from the saved cursor and ends when the paginator says there is
no next page. Each page comes back with the cursor state that follows it, so
the caller stages the page and saves that state in one transaction.

A typical keyset answer:

    {"data": [{"id": 17, "updated_at": "2013-01-01T10:00:00Z", ...}, ...]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from jellyfish.job import Job, KeysetPagination, ShardSpec
from jellyfish.secrets import auth_headers
from jellyfish.source.cursor import CursorState
from jellyfish.source.paginators import PageAnswer, lookup, make_paginator
from jellyfish.source.records import (
    JsonScalar,
    RecordShapeError,
    cursor_order,
    cursor_values,
    shift_instant,
    stage_or_reject,
)
from ledger.errors import PaginationLoopError, SourceError
from ledger.types import RejectedRecord, StagedVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedPage:
    """One staged-to-be page and the cursor state that follows it."""

    number: int
    records: list[StagedVersion]
    fetched: int
    cursor_before: CursorState
    cursor_after: CursorState
    # Records kept only with a reason (e.g. too large); the cursor moves past them.
    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _ReadPage:
    """What a page's records came to, before the pass decides to yield it."""

    records: list[StagedVersion]
    rejected: list[RejectedRecord]
    newest: tuple[Any, ...] | None
    # Why the first record that sorts before the requested cursor is wrong.
    behind: str | None


class _TransientAnswer(Exception):
    """A 429 or 5xx answer, worth another try within the same page."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class SourceClient:
    """Fetches the pages of one shard of one job."""

    def __init__(self, job: Job, shard: ShardSpec, http: httpx.Client) -> None:
        self._job = job
        self._spec = job.source
        self._shard = shard
        self._http = http
        self._headers = {**self._spec.headers, **auth_headers(self._spec.auth)}

    @classmethod
    def open_http(cls, job: Job) -> httpx.Client:
        """The HTTP client a shard reads with; the caller closes it."""
        return httpx.Client(timeout=job.source.timeout_s, follow_redirects=True)

    def pages(self, saved: CursorState) -> Iterator[FetchedPage]:
        """The pages of one pass, each with the cursor state that follows it.

        A new pass asks from the high-water mark, or ``lookback_s`` behind it
        (see ``_look_back``). Records larger than ``max_record_bytes`` come back
        as the page's ``rejected`` list; they still move the cursor.

        Raises:
            SourceError: naming job, shard and cursor; nothing of that page is
                returned, so the saved cursor stays where it was. This includes
                a body that is not UTF-8 JSON and a record whose cursor sorts
                before the cursor the page was asked for.
        """
        incremental = self._spec.mode == "incremental"
        paginator = make_paginator(self._spec.pagination, list(self._spec.cursor))
        try:
            state = self._start(saved)
        except RecordShapeError as exc:
            raise self._error(saved, exc) from exc
        number = 0
        previous_keys: tuple[str, ...] | None = None
        while True:
            number += 1
            try:
                request = paginator.request(state)
                answer = self._fetch(request.url, self._params(request, state))
                read = self._stage(answer.records, self._floor(state))
                keys = tuple(r.key for r in read.records)
                if keys and keys == previous_keys:
                    raise PaginationLoopError("the source served the same page twice")
                if read.behind is not None:
                    raise SourceError(read.behind)
                position = paginator.advance(state, answer)
            except (SourceError, RecordShapeError) as exc:
                raise self._error(state, exc) from exc
            previous_keys = keys
            after = CursorState(
                high_water=self._high_water(state.high_water, read.newest)
                if incremental
                else None,
                since=state.since if position is not None else None,
                position=position,
            )
            yield FetchedPage(
                number, read.records, len(answer.records), state, after, read.rejected
            )
            if position is None:
                return
            state = after

    def _start(self, saved: CursorState) -> CursorState:
        """Where a pass begins: mid-pass as saved, else from the (looked-back) mark."""
        state = saved.start_pass(self._spec.mode == "incremental")
        if saved.is_mid_pass or state.since is None or self._spec.lookback_s == 0:
            return state
        return replace(state, since=self._look_back(state.since))

    def _look_back(self, mark: tuple[Any, ...]) -> tuple[Any, ...]:
        """The mark moved ``lookback_s`` back; later cursor fields become None.

        The first cursor field is a timestamp (the job model checks it), so the
        pass asks from ``high_water - lookback_s``, written in the mark's own
        offset style. A tie-break value (e.g. an id) of the mark means nothing
        at the earlier instant, so later fields are None and their parameters
        are not sent: the source answers from the first record at that instant.
        Records re-read in the window and unchanged create nothing, because
        staging compares content hashes.
        """
        earlier = shift_instant(mark[0], -self._spec.lookback_s)
        return (earlier, *([None] * (len(mark) - 1)))

    def _floor(self, state: CursorState) -> tuple[JsonScalar, ...] | None:
        """The cursor values the page's request carried, leading fields only.

        A keyset page asks for what follows its position; the first page of an
        incremental pass asks for what follows ``since``, as far as the keyset
        or since parameters carry it. A source that got neither may answer
        anything, so there is no floor then.
        """
        pagination = self._spec.pagination
        keyset = (
            set(pagination.params.values())
            if isinstance(pagination, KeysetPagination)
            else set()
        )
        if keyset and state.position is not None:
            values, carried = tuple(state.position), keyset
        elif state.since is not None:
            since_fields = set(self._spec.since_params.values())
            values, carried = state.since, keyset | since_fields
        else:
            return None
        floor: list[JsonScalar] = []
        for cursor_field, value in zip(self._spec.cursor, values, strict=False):
            if cursor_field.name not in carried or value is None:
                break
            floor.append(value)
        return tuple(floor) or None

    def _params(self, request: Any, state: CursorState) -> dict[str, Any]:
        if request.is_follow_up:
            return {}
        params: dict[str, Any] = {**self._spec.params, **self._shard.params}
        if state.since is not None:
            names = [c.name for c in self._spec.cursor]
            for param, name in self._spec.since_params.items():
                value = state.since[names.index(name)]
                # None: a look-back reset this field, so the source gets no value.
                if value is not None:
                    params[param] = value
        params.update(request.params)
        return params

    def _fetch(self, url: str | None, params: dict[str, Any]) -> PageAnswer:
        response = self._send(url or self._spec.url, params)
        body = self._decode(response)
        self._check_success(body)
        records = lookup(body, self._spec.records_path)
        if not isinstance(records, list):
            where = self._spec.records_path or "the top level"
            found = "nothing" if records is None else type(records).__name__
            raise SourceError(f"expected a list of records at {where}, found {found}")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise SourceError(
                    f"record {index} of the page is a {type(record).__name__}, "
                    "not an object"
                )
        return PageAnswer(
            records=records,
            body=body,
            headers=response.headers,
            url=str(response.url),
        )

    def _decode(self, response: httpx.Response) -> Any:
        """The JSON body; JSON between systems is UTF-8 (RFC 8259, section 8.1)."""
        kind = response.headers.get("content-type", "no content-type")
        try:
            text = response.content.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"the page is not valid UTF-8 at byte {exc.start} "
                f"(HTTP {response.status_code}, {kind}); the source must send "
                "UTF-8 JSON"
            ) from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SourceError(
                f"the page is not JSON (HTTP {response.status_code}, {kind})"
            ) from exc

    def _send(self, url: str, params: dict[str, Any]) -> httpx.Response:
        try:
            return self._send_with_retries(url, params)
        except httpx.HTTPError as exc:
            raise SourceError(
                f"the source did not answer ({type(exc).__name__})"
            ) from exc
        except _TransientAnswer as exc:
            raise SourceError(
                f"the source kept answering HTTP {exc.status} after 3 tries"
            ) from exc

    @retry(
        retry=retry_if_exception_type((httpx.TransportError, _TransientAnswer)),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=4),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )
    def _send_with_retries(self, url: str, params: dict[str, Any]) -> httpx.Response:
        if self._spec.method == "GET":
            # httpx 0.28 replaces a URL's query with `params`, even with an empty
            # dict (https://github.com/encode/httpx/issues/3433), which would drop
            # the query of a next-page URL: merge the two here instead.
            merged = httpx.URL(url).copy_merge_params(params)
            response = self._http.get(merged, headers=self._headers)
        else:
            response = self._http.post(url, json=params, headers=self._headers)
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientAnswer(response.status_code)
        if response.status_code >= 400:
            raise SourceError(
                f"the source answered HTTP {response.status_code}; "
                "check the URL, parameters and credentials"
            )
        return response

    def _check_success(self, body: Any) -> None:
        rule = self._spec.success
        if rule is None:
            return
        value = lookup(body, rule.field)
        if value != rule.equals:
            raise SourceError(
                f"the answer's {rule.field!r} is {value!r}, expected {rule.equals!r}"
            )

    def _stage(
        self, records: list[dict[str, Any]], floor: tuple[JsonScalar, ...] | None
    ) -> _ReadPage:
        """The page's versions and rejections, its newest cursor values, and
        what is wrong with the first record that sorts before ``floor``."""
        fields = self._spec.cursor
        floor_order = None
        if floor is not None:
            floor_order = cursor_order(floor, fields[: len(floor)])
        staged: list[StagedVersion] = []
        rejected: list[RejectedRecord] = []
        newest: tuple[Any, ...] | None = None
        newest_order: tuple[Any, ...] | None = None
        behind: str | None = None
        for index, record in enumerate(records):
            try:
                read = stage_or_reject(
                    record, self._spec.key, self._spec.max_record_bytes
                )
                if isinstance(read, StagedVersion):
                    staged.append(read)
                else:
                    rejected.append(read)
                if not fields:
                    continue
                values = cursor_values(record, fields)
                order = cursor_order(values, fields)
                if newest_order is None or order > newest_order:
                    newest, newest_order = values, order
                if behind is None and floor_order is not None:
                    behind = _behind(index, read, values, order, floor_order, floor)
            except RecordShapeError as exc:
                raise RecordShapeError(f"record {index} of the page: {exc}") from exc
        return _ReadPage(staged, rejected, newest, behind)

    def _high_water(
        self, current: tuple[Any, ...] | None, newest: tuple[Any, ...] | None
    ) -> tuple[Any, ...] | None:
        if current is None or newest is None:
            return newest if current is None else current
        fields = self._spec.cursor
        if cursor_order(newest, fields) > cursor_order(current, fields):
            return newest
        return current

    def _error(self, state: CursorState, exc: Exception) -> SourceError:
        # A loop keeps its own type, so callers can tell it from a failed page.
        is_loop = isinstance(exc, PaginationLoopError)
        kind = PaginationLoopError if is_loop else SourceError
        return kind(
            f"job {self._job.name} shard {self._shard.name} at cursor "
            f"{state.describe()}: {exc}"
        )


def _behind(
    index: int,
    read: StagedVersion | RejectedRecord,
    values: tuple[JsonScalar, ...],
    order: tuple[Any, ...],
    floor_order: tuple[Any, ...],
    floor: tuple[JsonScalar, ...] | None,
) -> str | None:
    """Why a record sorting before the requested cursor is an error, or None."""
    if order[: len(floor_order)] >= floor_order:
        return None
    key = read.key if isinstance(read, StagedVersion) else read.record_key
    return (
        f"record {index} of the page (key {key}) has cursor {list(values)}, "
        f"before the requested {list(floor or ())}; the source ignored the cursor or "
        "its clock went back, so nothing of the page was staged"
    )

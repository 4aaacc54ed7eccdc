"""Read a shard's pages from the source, one pass at a time.

A pass starts from the saved cursor and ends when the paginator says there is
no next page. Each page comes back with the cursor state that follows it, so
the caller stages the page and saves that state in one transaction.

A typical keyset answer:

    {"data": [{"id": 17, "updated_at": "2013-01-01T10:00:00Z", ...}, ...]}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from jellyfish.job import Job, ShardSpec
from jellyfish.secrets import auth_headers
from jellyfish.source.cursor import CursorState
from jellyfish.source.paginators import PageAnswer, lookup, make_paginator
from jellyfish.source.records import (
    RecordShapeError,
    cursor_order,
    cursor_values,
    stage_record,
)
from ledger.errors import PaginationLoopError, SourceError
from ledger.types import StagedVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedPage:
    """One staged-to-be page and the cursor state that follows it."""

    number: int
    records: list[StagedVersion]
    fetched: int
    cursor_before: CursorState
    cursor_after: CursorState


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

        Raises:
            SourceError: naming job, shard and cursor; nothing of that page is
                returned, so the saved cursor stays where it was.
        """
        incremental = self._spec.mode == "incremental"
        paginator = make_paginator(self._spec.pagination, list(self._spec.cursor))
        state = saved.start_pass(incremental)
        number = 0
        previous_keys: tuple[str, ...] | None = None
        while True:
            number += 1
            try:
                request = paginator.request(state)
                answer = self._fetch(request.url, self._params(request, state))
                records, newest = self._stage(answer.records)
                keys = tuple(r.key for r in records)
                if keys and keys == previous_keys:
                    raise PaginationLoopError("the source served the same page twice")
                position = paginator.advance(state, answer)
            except (SourceError, RecordShapeError) as exc:
                raise self._error(state, exc) from exc
            previous_keys = keys
            after = CursorState(
                high_water=self._high_water(state.high_water, newest)
                if incremental
                else None,
                since=state.since if position is not None else None,
                position=position,
            )
            yield FetchedPage(number, records, len(answer.records), state, after)
            if position is None:
                return
            state = after

    def _params(self, request: Any, state: CursorState) -> dict[str, Any]:
        if request.is_follow_up:
            return {}
        params: dict[str, Any] = {**self._spec.params, **self._shard.params}
        if state.since is not None:
            names = [c.name for c in self._spec.cursor]
            for param, field in self._spec.since_params.items():
                params[param] = state.since[names.index(field)]
        params.update(request.params)
        return params

    def _fetch(self, url: str | None, params: dict[str, Any]) -> PageAnswer:
        response = self._send(url or self._spec.url, params)
        try:
            body = response.json()
        except ValueError as exc:
            kind = response.headers.get("content-type", "no content-type")
            raise SourceError(
                f"the page is not JSON (HTTP {response.status_code}, {kind})"
            ) from exc
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
        self, records: list[dict[str, Any]]
    ) -> tuple[list[StagedVersion], tuple[Any, ...] | None]:
        """The page's record versions and its newest cursor values."""
        fields = self._spec.cursor
        staged = []
        newest: tuple[Any, ...] | None = None
        newest_order: tuple[Any, ...] | None = None
        for index, record in enumerate(records):
            try:
                staged.append(stage_record(record, self._spec.key))
                if fields:
                    values = cursor_values(record, fields)
                    order = cursor_order(values, fields)
                    if newest_order is None or order > newest_order:
                        newest, newest_order = values, order
            except RecordShapeError as exc:
                raise RecordShapeError(f"record {index} of the page: {exc}") from exc
        return staged, newest

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

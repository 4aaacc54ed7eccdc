"""One class per way of reaching the next page.

Each paginator answers two questions: what to add to the next request, given
where the pass stands; and, given the answer, where the pass stands next (None
when the pass is over). The fetch loop knows nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from jellyfish.job import (
    CursorField,
    KeysetPagination,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
    Pagination,
    TokenPagination,
)
from jellyfish.source.cursor import CursorState
from jellyfish.source.records import cursor_values
from ledger.errors import PaginationLoopError


@dataclass(frozen=True)
class PageRequest:
    """What a paginator adds to the source's fixed request."""

    params: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    @property
    def is_follow_up(self) -> bool:
        """A full URL from the source already carries every parameter."""
        return self.url is not None


@dataclass(frozen=True)
class PageAnswer:
    records: list[dict[str, Any]]
    body: Any
    headers: httpx.Headers
    url: str = ""  # the URL that answered; relative next-page URLs resolve on it


class Paginator(Protocol):
    def request(self, state: CursorState) -> PageRequest: ...

    def advance(self, state: CursorState, answer: PageAnswer) -> Any: ...


def lookup(body: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document, or None."""
    value = body
    for part in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class KeysetPaginator:
    """Send the last record's cursor values; the source answers what follows."""

    def __init__(self, spec: KeysetPagination, fields: list[CursorField]) -> None:
        self._spec = spec
        names = [f.name for f in fields]
        self._fields = fields
        self._index = {param: names.index(name) for param, name in spec.params.items()}

    def request(self, state: CursorState) -> PageRequest:
        values = state.position if state.position is not None else state.since
        params: dict[str, Any] = {}
        if values is not None:
            # None: a look-back reset this field, so the source gets no value.
            params = {
                param: values[i]
                for param, i in self._index.items()
                if values[i] is not None
            }
        if self._spec.page_size_param:
            params[self._spec.page_size_param] = self._spec.page_size
        return PageRequest(params=params)

    def advance(self, state: CursorState, answer: PageAnswer) -> Any:
        if not answer.records:
            return None
        if (
            self._spec.stop == "short_page"
            and len(answer.records) < self._spec.page_size
        ):
            return None
        last = list(cursor_values(answer.records[-1], self._fields))
        if state.position is not None and last == list(state.position):
            raise PaginationLoopError(
                f"the page after cursor {last} ended on the same cursor; "
                "the source ignores the keyset parameters"
            )
        return last


class OffsetPaginator:
    def __init__(self, spec: OffsetPagination) -> None:
        self._spec = spec

    def request(self, state: CursorState) -> PageRequest:
        offset = state.position or 0
        return PageRequest(
            params={
                self._spec.offset_param: offset,
                self._spec.limit_param: self._spec.page_size,
            }
        )

    def advance(self, state: CursorState, answer: PageAnswer) -> Any:
        if len(answer.records) < self._spec.page_size:
            return None
        return (state.position or 0) + len(answer.records)


class PageNumberPaginator:
    def __init__(self, spec: PageNumberPagination) -> None:
        self._spec = spec

    def request(self, state: CursorState) -> PageRequest:
        page = state.position if state.position is not None else self._spec.first_page
        params: dict[str, Any] = {self._spec.page_param: page}
        if self._spec.size_param:
            params[self._spec.size_param] = self._spec.page_size
        return PageRequest(params=params)

    def advance(self, state: CursorState, answer: PageAnswer) -> Any:
        if len(answer.records) < self._spec.page_size:
            return None
        page = state.position if state.position is not None else self._spec.first_page
        return page + 1


class _SeenGuard:
    """Stops a pass that is handed a token or URL it has already followed."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._seen: set[str] = set()

    def check(self, value: str) -> str:
        if value in self._seen:
            raise PaginationLoopError(
                f"the source repeated a {self._what} it had already served"
            )
        self._seen.add(value)
        return value


class TokenPaginator:
    def __init__(self, spec: TokenPagination) -> None:
        self._spec = spec
        self._guard = _SeenGuard("next-page token")

    def request(self, state: CursorState) -> PageRequest:
        if state.position is None:
            return PageRequest()
        return PageRequest(params={self._spec.token_param: state.position})

    def advance(self, state: CursorState, answer: PageAnswer) -> Any:
        token = lookup(answer.body, self._spec.token_path)
        if token is None or token == "":
            return None
        return self._guard.check(str(token))


class NextUrlPaginator:
    def __init__(self, spec: NextUrlPagination) -> None:
        self._spec = spec
        self._guard = _SeenGuard("next-page URL")

    def request(self, state: CursorState) -> PageRequest:
        return PageRequest(url=state.position) if state.position else PageRequest()

    def advance(self, state: CursorState, answer: PageAnswer) -> Any:
        if self._spec.next_path is not None:
            url = lookup(answer.body, self._spec.next_path)
        else:
            url = _link_next(answer.headers)
        if not url:
            return None
        # A relative URL (RFC 8288 allows it in Link) names a page of this source.
        return self._guard.check(str(httpx.URL(answer.url).join(str(url))))


def _link_next(headers: httpx.Headers) -> str | None:
    for part in headers.get("link", "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params:
            return str(url.strip().strip("<>"))
    return None


def make_paginator(spec: Pagination, fields: list[CursorField]) -> Paginator:
    """A fresh paginator for one pass (token and URL guards are per pass)."""
    if isinstance(spec, KeysetPagination):
        return KeysetPaginator(spec, fields)
    if isinstance(spec, OffsetPagination):
        return OffsetPaginator(spec)
    if isinstance(spec, PageNumberPagination):
        return PageNumberPaginator(spec)
    if isinstance(spec, TokenPagination):
        return TokenPaginator(spec)
    return NextUrlPaginator(spec)

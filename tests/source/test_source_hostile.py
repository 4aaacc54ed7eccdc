"""Hostile source answers fail the page with a message naming job, shard and cause."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.settings import (
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
    temporary_settings,
)
from source_passes import keys_of, make_job, read_pass

from jellyfish.job import Job
from jellyfish.source.cursor import CursorState
from ledger.errors import PaginationLoopError, SourceError

CURSOR = ["updated_at:timestamp", "id:integer"]
AT_START = "job hostile shard all at cursor start: "


def hostile_job(url: str, **source: Any) -> Job:
    spec = {"url": url, "key": ["id"], "cursor": CURSOR, "records_path": "items"}
    return make_job({**spec, **source}, name="hostile")


def whole(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def test_pages_html_answer_raises_not_json(paged_url: str) -> None:
    job = hostile_job(f"{paged_url}/hostile/html", pagination={"kind": "offset"})

    with pytest.raises(
        SourceError,
        match=whole(
            AT_START + "the page is not JSON (HTTP 200, text/html; charset=utf-8)"
        ),
    ):
        read_pass(job)


def test_pages_records_path_missing_raises_found_nothing(paged_url: str) -> None:
    job = hostile_job(f"{paged_url}/hostile/no-records", pagination={"kind": "offset"})

    with pytest.raises(
        SourceError,
        match=whole(AT_START + "expected a list of records at items, found nothing"),
    ):
        read_pass(job)


def test_pages_records_path_not_a_list_raises_found_type(paged_url: str) -> None:
    job = hostile_job(
        f"{paged_url}/hostile/no-records",
        records_path="",
        pagination={"kind": "offset"},
    )

    with pytest.raises(
        SourceError,
        match=whole(
            AT_START + "expected a list of records at the top level, found dict"
        ),
    ):
        read_pass(job)


def test_pages_record_not_an_object_raises_naming_its_index(paged_url: str) -> None:
    job = hostile_job(f"{paged_url}/hostile/not-objects", pagination={"kind": "offset"})

    with pytest.raises(
        SourceError,
        match=whole(AT_START + "record 1 of the page is a list, not an object"),
    ):
        read_pass(job)


@pytest.mark.parametrize(
    ("route", "state"),
    [
        pytest.param("key-missing", "missing", id="missing"),
        pytest.param("key-null", "null", id="null"),
    ],
)
def test_pages_key_field_absent_raises_naming_field(
    paged_url: str, route: str, state: str
) -> None:
    job = hostile_job(f"{paged_url}/hostile/{route}", pagination={"kind": "offset"})

    with pytest.raises(
        SourceError,
        match=whole(AT_START + f"record 1 of the page: key field 'id' is {state}"),
    ):
        read_pass(job)


def test_pages_cursor_field_null_raises_naming_field(paged_url: str) -> None:
    job = hostile_job(f"{paged_url}/hostile/cursor-null", pagination={"kind": "offset"})

    with pytest.raises(
        SourceError,
        match=whole(
            AT_START + "record 2 of the page: cursor field 'updated_at' is null"
        ),
    ):
        read_pass(job)


def test_pages_integer_cursor_field_not_numeric_raises_source_error(
    paged_url: str,
) -> None:
    """Regression: int("two") escaped as a bare ValueError naming no job or shard."""
    job = hostile_job(
        f"{paged_url}/hostile/cursor-not-integer", pagination={"kind": "offset"}
    )

    with pytest.raises(
        SourceError,
        match=whole(
            AT_START + "record 1 of the page: cursor field 'id' should be an integer, "
            "got a str that is not one"
        ),
    ):
        read_pass(job)


def test_pages_jellyfish_preset_code_1_raises_naming_code(paged_url: str) -> None:
    job = make_job(
        {
            "preset": "jellyfish",
            "url": f"{paged_url}/hostile/jellyfish-busy",
            "key": ["id"],
            "cursor": CURSOR,
        },
        name="hostile",
    )

    with pytest.raises(
        SourceError, match=whole(AT_START + "the answer's 'code' is '1', expected '0'")
    ):
        read_pass(job)


def test_pages_repeated_token_raises_pagination_loop(paged_url: str) -> None:
    job = hostile_job(
        f"{paged_url}/hostile/repeat-token",
        pagination={
            "kind": "token",
            "token_path": "meta.next_token",
            "token_param": "page_token",
        },
    )

    with pytest.raises(
        PaginationLoopError,
        match=whole(
            "job hostile shard all at cursor high_water=['2024-01-01T11:30:00Z', 5] "
            'position="tok-again": the source repeated a next-page token it had '
            "already served"
        ),
    ):
        read_pass(job)


def test_pages_repeated_next_url_raises_pagination_loop(paged_url: str) -> None:
    job = hostile_job(
        f"{paged_url}/hostile/repeat-url",
        pagination={"kind": "next_url", "next_path": "links.next"},
    )

    with pytest.raises(
        PaginationLoopError,
        match=whole(
            "job hostile shard all at cursor high_water=['2024-01-01T11:30:00Z', 5] "
            f'position="{paged_url}/hostile/repeat-url?p=2": the source repeated a '
            "next-page URL it had already served"
        ),
    ):
        read_pass(job)


def test_pages_source_ignoring_keyset_raises_pagination_loop(paged_url: str) -> None:
    """Regression: the same page twice raised a plain SourceError, not a loop."""
    job = hostile_job(
        f"{paged_url}/hostile/ignores-keyset",
        pagination={
            "kind": "keyset",
            "params": {"after_updated_at": "updated_at", "after_id": "id"},
            "page_size": 4,
        },
    )

    with pytest.raises(
        PaginationLoopError,
        match=whole(
            "job hostile shard all at cursor "
            "high_water=['2024-01-01T07:45:00Z', 11] "
            'position=["2024-01-01T07:45:00Z", 11]: '
            "the source served the same page twice"
        ),
    ):
        read_pass(job)


@pytest.fixture
def outside_run() -> Iterator[None]:
    """Retry warnings here are logged outside any flow run; once a flow module
    is imported, Prefect's API handler would turn them into a UserWarning."""
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        yield


def flaky_job(url: str, failures: int) -> Job:
    run = uuid.uuid4().hex
    return hostile_job(
        f"{url}/hostile/flaky",
        params={"run": run, "failures": failures},
        pagination={"kind": "offset", "page_size": 50},
    )


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "jellyfish.source.client"
    ]


RETRY_LINE = (
    "Retrying jellyfish.source.client.SourceClient._send_with_retries in {} seconds "
    "as it raised _TransientAnswer: HTTP 500."
)


@pytest.mark.usefixtures("outside_run")
def test_pages_500_three_times_raises_after_three_tries(
    paged_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = flaky_job(paged_url, failures=3)

    with (
        caplog.at_level(logging.WARNING, logger="jellyfish.source.client"),
        pytest.raises(
            SourceError,
            match=whole(AT_START + "the source kept answering HTTP 500 after 3 tries"),
        ),
    ):
        read_pass(job)

    assert retry_lines(caplog) == [
        (logging.WARNING, RETRY_LINE.format("0.5")),
        (logging.WARNING, RETRY_LINE.format("1")),
    ]


@pytest.mark.usefixtures("outside_run")
def test_pages_500_once_then_200_retries_with_warning(
    paged_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = flaky_job(paged_url, failures=1)

    with caplog.at_level(logging.WARNING, logger="jellyfish.source.client"):
        pages = read_pass(job)

    assert keys_of(pages) == [str(i) for i in range(1, 24)]
    assert pages[-1].cursor_after == CursorState(
        high_water=("2024-01-01T06:30:00-05:00", 21)
    )
    assert retry_lines(caplog) == [(logging.WARNING, RETRY_LINE.format("0.5"))]

"""Delivery guarantees on the source side, through the fetch task into real ledgers.

Issue "Delivery guarantees": an oversized record is rejected and the page goes
on; a cursor that goes backwards or a body that is not UTF-8 fails the page
with a message naming job, shard and cursor, the cursor stays before the page,
and the job's other shard stages as usual; a look-back window catches late
writes; records that share a cursor value are never skipped or doubled, not
even across a crash between pages.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from paged_app import build_paged_app
from prefect.client.schemas.objects import State
from prefect.logging import disable_run_logger
from source_passes import make_job, stage_pass
from sqlalchemy import select
from sqlalchemy.orm import Session

from jellyfish.demo.servers import serve_in_thread
from jellyfish.job import Job
from jellyfish.source.client import SourceClient
from jellyfish.source.records import shift_instant
from ledger.engine import get_engine
from ledger.errors import CursorMovedError, SourceError
from ledger.rejections import rejected_counts
from ledger.schema import deliveries, pages, record_versions, rejected_records
from ledger.store import load_cursor
from ledger.types import StageResult
from tasks.fetch import ShardPass, fetch_and_stage_shard, open_reader

Record = dict[str, Any]
CURSOR = ["updated_at:timestamp", "id:integer"]
KEYSET = {
    "kind": "keyset",
    "params": {"after_updated_at": "updated_at", "after_id": "id"},
    "page_size": 3,
}


def record(record_id: int, stamp: str, group: str, **extra: Any) -> Record:
    return {"id": record_id, "updated_at": stamp, "group": group, **extra}


def minutes(group: str, ids: range, **extra: Any) -> list[Record]:
    """Record ``i`` of ``ids`` written at 10:(i mod 100) on 2024-01-01."""
    return [record(i, f"2024-01-01T10:{i % 100:02d}:00Z", group, **extra) for i in ids]


@pytest.fixture
def source() -> Iterator[str]:
    """A fresh paged app per test, so each test loads its own records."""
    with serve_in_thread(build_paged_app()) as url:
        yield url


def load(url: str, records: list[Record]) -> None:
    with httpx.Client(timeout=30.0) as http:
        answer = http.post(f"{url}/admin/load", json=records).json()
    assert answer == {"records": len(records)}


def sent(url: str, run: str) -> list[dict[str, str]]:
    with httpx.Client(timeout=10.0) as http:
        requests: list[dict[str, str]] = http.get(
            f"{url}/admin/requests", params={"run": run}
        ).json()["requests"]
    return requests


def two_shard_job(name: str, url: str, bad: dict[str, Any], **source: Any) -> Job:
    """Shard ``bad`` reads group a with ``bad`` params; ``good`` reads group b."""
    spec = {
        "url": url,
        "records_path": "items",
        "key": ["id"],
        "cursor": CURSOR,
        "pagination": KEYSET,
        "shards": [
            {"name": "bad", "params": {"group": "a", **bad}},
            {"name": "good", "params": {"group": "b"}},
        ],
    }
    return make_job({**spec, **source}, name=name)


def tied_keyset_job(source: str, run: str, name: str) -> Job:
    """A keyset job over the TIED records (loaded here), requests tagged ``run``."""
    load(source, TIED)
    return make_job(
        {
            "url": f"{source}/keyset",
            "records_path": "items",
            "params": {"run": run, "group": "a"},
            "key": ["id"],
            "cursor": CURSOR,
            "pagination": KEYSET,
        },
        name=name,
    )


def run_shard(job: Job, shard: str, ledger_url: str) -> ShardPass:
    """The task's pass, or its Failed state's message raised as SourceError."""
    with disable_run_logger():
        result = fetch_and_stage_shard.fn(job, shard, ledger_url)
    if isinstance(result, State):
        assert result.is_failed()
        raise SourceError(result.message or "")
    return result


def staged_keys(ledger_url: str, job: str, shard: str) -> list[str]:
    with Session(get_engine(ledger_url)) as session:
        keys = session.execute(
            select(record_versions.c.record_key)
            .where(record_versions.c.job == job, record_versions.c.shard == shard)
            .order_by(record_versions.c.id)
        )
        return list(keys.scalars())


def saved_cursor(ledger_url: str, job: str, shard: str) -> str | None:
    with Session(get_engine(ledger_url)) as session:
        return load_cursor(session, job, shard)


def whole(message: str) -> str:
    return f"^{re.escape(message)}$"


def assert_good_shard_staged(job: Job, ledger_url: str, page_count: int) -> None:
    """The healthy shard of the same job stages all its records regardless."""
    assert run_shard(job, "good", ledger_url) == ShardPass("good", page_count, 4, 4)
    assert staged_keys(ledger_url, job.name, "good") == ["101", "102", "103", "104"]
    assert saved_cursor(ledger_url, job.name, "good") == (
        '{"high_water":["2024-01-01T10:04:00Z",104],"position":null,"since":null}'
    )


GROUP_B = minutes("b", range(101, 105))
# Page 1 of shard bad ends on record 3; the cursor stays there when page 2 fails.
AFTER_PAGE_1 = (
    '{"high_water":["2024-01-01T10:03:00Z",3],'
    '"position":["2024-01-01T10:03:00Z",3],"since":null}'
)
AT_PAGE_2 = (
    "at cursor high_water=['2024-01-01T10:03:00Z', 3] "
    'position=["2024-01-01T10:03:00Z", 3]: '
)


def test_fetch_and_stage_shard_oversized_record_is_rejected_and_page_goes_on(
    source: str, ledger_url: str, job_name: str
) -> None:
    big = record(3, "2024-01-01T10:03:00Z", "a", name="r3", blob="x" * 10_000_000)
    load(source, [*minutes("a", range(1, 3), name="r"), big, *GROUP_B])
    job = two_shard_job(
        job_name, f"{source}/keyset", {}, pagination=KEYSET | {"page_size": 5}
    )
    started = dt.datetime.now(dt.UTC)

    result = run_shard(job, "bad", ledger_url)

    assert result == ShardPass("bad", pages=1, fetched=3, staged=2)
    assert staged_keys(ledger_url, job_name, "bad") == ["1", "2"]
    # The rejected record is the page's last; the cursor moves past it.
    assert saved_cursor(ledger_url, job_name, "bad") == (
        '{"high_water":["2024-01-01T10:03:00Z",3],"position":null,"since":null}'
    )
    with Session(get_engine(ledger_url)) as session:
        (page,) = session.execute(
            select(pages).where(pages.c.job == job_name, pages.c.shard == "bad")
        ).all()
        (kept,) = session.execute(
            select(rejected_records).where(rejected_records.c.job == job_name)
        ).all()
        counts = rejected_counts(session, job_name, started)
        later = rejected_counts(session, job_name, dt.datetime.now(dt.UTC))
        owed = session.execute(
            select(deliveries.c.record_key).where(deliveries.c.job == job_name)
        ).scalars()
        assert sorted(owed) == ["1", "2"]
    assert (page.records_fetched, page.versions_staged) == (3, 2)
    assert kept._asdict() == {
        "id": kept.id,
        "job": job_name,
        "shard": "bad",
        "page_id": page.id,
        "record_key": "3",
        "reason": "canonical JSON is 10000078 bytes, above max_record_bytes 1000000",
        "size_bytes": 10_000_078,
        "excerpt": '{"blob":"' + "x" * 191,
        "fetched_at": page.fetched_at,
    }
    assert counts == {"bad": 1}
    assert later == {}
    assert_good_shard_staged(job, ledger_url, page_count=1)


def test_fetch_and_stage_shard_record_before_keyset_position_raises_keeps_cursor(
    source: str, ledger_url: str, job_name: str
) -> None:
    load(source, [*minutes("a", range(1, 8)), *GROUP_B])
    job = two_shard_job(job_name, f"{source}/keyset", {"misbehave": "backwards"})

    with pytest.raises(
        SourceError,
        match=whole(
            f"job {job_name} shard bad {AT_PAGE_2}record 1 of the page (key 1) has "
            "cursor ['2024-01-01T10:01:00Z', 1], before the requested "
            "['2024-01-01T10:03:00Z', 3]; the source ignored the cursor or its "
            "clock went back, so nothing of the page was staged"
        ),
    ):
        run_shard(job, "bad", ledger_url)

    assert staged_keys(ledger_url, job_name, "bad") == ["1", "2", "3"]
    assert saved_cursor(ledger_url, job_name, "bad") == AFTER_PAGE_1
    assert_good_shard_staged(job, ledger_url, page_count=2)


def test_fetch_and_stage_shard_record_before_since_raises_keeps_cursor(
    source: str, ledger_url: str, job_name: str
) -> None:
    load(source, [*minutes("a", range(1, 8)), *GROUP_B])
    job = two_shard_job(
        job_name,
        f"{source}/offset",
        {"misbehave": "backwards"},
        pagination={"kind": "offset", "page_size": 10},
        since_params={"changed_since": "updated_at"},
    )
    first = run_shard(job, "bad", ledger_url)
    load(source, [*minutes("a", range(1, 9)), *GROUP_B])

    with pytest.raises(
        SourceError,
        match=whole(
            f"job {job_name} shard bad at cursor "
            "high_water=['2024-01-01T10:07:00Z', 7]: record 1 of the page (key 1) "
            "has cursor ['2024-01-01T10:01:00Z', 1], before the requested "
            "['2024-01-01T10:07:00Z']; the source ignored the cursor or its clock "
            "went back, so nothing of the page was staged"
        ),
    ):
        run_shard(job, "bad", ledger_url)

    assert first == ShardPass("bad", 1, 7, 7)
    # Record 8 came on the failed page, before the offending one: not staged.
    assert staged_keys(ledger_url, job_name, "bad") == [str(i) for i in range(1, 8)]
    assert saved_cursor(ledger_url, job_name, "bad") == (
        '{"high_water":["2024-01-01T10:07:00Z",7],"position":null,"since":null}'
    )
    assert_good_shard_staged(job, ledger_url, page_count=1)


def test_fetch_and_stage_shard_body_not_utf8_raises_naming_byte(
    source: str, ledger_url: str, job_name: str
) -> None:
    load(source, [*minutes("a", range(1, 8), name="café"), *GROUP_B])
    job = two_shard_job(job_name, f"{source}/keyset", {"misbehave": "latin1"})

    # Byte 77 is the "é" of page 2's first record, {"items":[{"id":4,...,"name":"café.
    with pytest.raises(
        SourceError,
        match=whole(
            f"job {job_name} shard bad {AT_PAGE_2}the page is not valid UTF-8 at "
            "byte 77 (HTTP 200, application/json); the source must send UTF-8 JSON"
        ),
    ):
        run_shard(job, "bad", ledger_url)

    assert staged_keys(ledger_url, job_name, "bad") == ["1", "2", "3"]
    with Session(get_engine(ledger_url)) as session:
        payloads = session.execute(
            select(record_versions.c.payload)
            .where(record_versions.c.job == job_name)
            .order_by(record_versions.c.id)
            .limit(1)
        ).scalars()
        assert list(payloads) == [
            '{"group":"a","id":1,"name":"café","updated_at":"2024-01-01T10:01:00Z"}'
        ]
    assert saved_cursor(ledger_url, job_name, "bad") == AFTER_PAGE_1
    assert_good_shard_staged(job, ledger_url, page_count=2)


def test_fetch_and_stage_shard_lookback_stages_late_write_inside_window_only(
    source: str, ledger_url: str, job_name: str
) -> None:
    run = uuid.uuid4().hex
    on_time = [
        record(1, "2024-01-01T10:00:00Z", "a"),
        record(2, "2024-01-01T11:00:00Z", "a"),
    ]
    late = [
        record(3, "2024-01-01T10:58:00Z", "a"),  # 2 minutes behind: in the window
        record(4, "2024-01-01T10:50:00Z", "a"),  # 10 minutes behind: outside it
    ]
    load(source, on_time)
    job = make_job(
        {
            "url": f"{source}/keyset",
            "records_path": "items",
            "params": {"run": run},
            "key": ["id"],
            "cursor": CURSOR,
            "pagination": KEYSET | {"page_size": 5},
            "shards": [{"name": "a", "params": {"group": "a"}}],
            "lookback_s": 300,
        },
        name=job_name,
    )
    first = run_shard(job, "a", ledger_url)
    load(source, on_time + late)

    second = run_shard(job, "a", ledger_url)
    third = run_shard(job, "a", ledger_url)

    assert first == ShardPass("a", 1, 2, 2)
    assert second == ShardPass("a", 1, 2, 1)
    assert third == ShardPass("a", 1, 2, 0)
    assert staged_keys(ledger_url, job_name, "a") == ["1", "2", "3"]
    # The tie-break parameter is left out: the source reads from the instant.
    looked_back = {
        "run": run,
        "group": "a",
        "after_updated_at": "2024-01-01T10:55:00Z",
        "limit": "5",
    }
    assert sent(source, run) == [
        {"run": run, "group": "a", "limit": "5"},
        looked_back,
        looked_back,
    ]
    # Re-reading older records never lowers the high-water mark.
    assert saved_cursor(ledger_url, job_name, "a") == (
        '{"high_water":["2024-01-01T11:00:00Z",2],"position":null,"since":null}'
    )
    with Session(get_engine(ledger_url)) as session:
        owed = session.execute(
            select(deliveries.c.record_key).where(deliveries.c.job == job_name)
        ).scalars()
        assert sorted(owed) == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("stamp", "moved"),
    [
        pytest.param("2024-01-01T11:00:00Z", "2024-01-01T10:55:00Z", id="zulu"),
        pytest.param(
            "2024-01-01T13:00:00+02:00", "2024-01-01T12:55:00+02:00", id="offset"
        ),
        pytest.param("2024-01-01T11:00:00", "2024-01-01T10:55:00", id="naive"),
        pytest.param(
            "2024-01-01T00:02:30.250000Z", "2023-12-31T23:57:30.250000Z", id="midnight"
        ),
    ],
)
def test_shift_instant_any_offset_style_keeps_that_style(
    stamp: str, moved: str
) -> None:
    assert shift_instant(stamp, -300) == moved


# Eleven records; ids 3 to 9 share 09:00Z, written with different offsets.
TIED = [
    record(1, "2024-01-01T08:00:00Z", "a"),
    record(2, "2024-01-01T08:00:00Z", "a"),
    *(
        record(i, stamp, "a")
        for i, stamp in zip(
            range(3, 10),
            [
                "2024-01-01T09:00:00Z",
                "2024-01-01T11:00:00+02:00",
                "2024-01-01T04:00:00-05:00",
                "2024-01-01T09:00:00",
                "2024-01-01T09:00:00.000000Z",
                "2024-01-01T09:00:00+00:00",
                "2024-01-01T10:30:00+01:30",
            ],
            strict=True,
        )
    ),
    record(10, "2024-01-01T10:00:00Z", "a"),
    record(11, "2024-01-01T10:00:00Z", "a"),
]


@pytest.mark.parametrize(
    ("crash_after", "staged_first", "resume_after"),
    [
        pytest.param(None, 11, None, id="no-crash"),
        pytest.param(1, 3, ["2024-01-01T09:00:00Z", "3"], id="crash-after-page-1"),
        pytest.param(2, 6, ["2024-01-01T09:00:00", "6"], id="crash-after-page-2"),
        pytest.param(3, 9, ["2024-01-01T10:30:00+01:30", "9"], id="crash-after-page-3"),
    ],
)
def test_stage_pass_ties_across_page_boundaries_never_skip_or_double(
    source: str,
    ledger_url: str,
    job_name: str,
    crash_after: int | None,
    staged_first: int,
    resume_after: list[str] | None,
) -> None:
    """Page size 3 puts boundaries inside the 09:00Z tie (after ids 3 and 6)."""
    run = uuid.uuid4().hex
    job = tied_keyset_job(source, run, job_name)

    before = stage_pass(job, "all", ledger_url, stop_after=crash_after)
    staged_before = staged_keys(ledger_url, job_name, "all")
    requests_before = len(sent(source, run))
    after = stage_pass(job, "all", ledger_url) if crash_after else []

    pages_staged = [r.versions_staged for r in before + after]
    assert staged_keys(ledger_url, job_name, "all") == [str(i) for i in range(1, 12)]
    assert pages_staged == [3, 3, 3, 2]
    assert staged_before == [str(i) for i in range(1, staged_first + 1)]
    assert saved_cursor(ledger_url, job_name, "all") == (
        '{"high_water":["2024-01-01T10:00:00Z",11],"position":null,"since":null}'
    )
    if resume_after is not None:
        # The page fetched before the crash is fetched again from the saved cursor.
        resumed = sent(source, run)[requests_before]
        assert [resumed["after_updated_at"], resumed["after_id"]] == resume_after
    with Session(get_engine(ledger_url)) as session:
        owed = session.execute(
            select(deliveries.c.record_key).where(deliveries.c.job == job_name)
        ).scalars()
        assert sorted(owed, key=int) == [str(i) for i in range(1, 12)]


def test_shard_reader_pass_overtaken_by_another_worker_keeps_counts_of_pages_before(
    source: str, ledger_url: str, job_name: str
) -> None:
    """Issue 4 regression: a serve window lost the counts of the pages it had
    staged in a poll that another worker overtook (two workers, 550 of 600)."""
    run = uuid.uuid4().hex
    job = tied_keyset_job(source, run, job_name)

    def other_worker_stages_next_page(result: StageResult) -> None:
        if not other:
            other.extend(stage_pass(job, "all", ledger_url, stop_after=1))

    other: list[StageResult] = []
    engine = get_engine(ledger_url)
    with SourceClient.open_http(job) as http, disable_run_logger():
        reader = open_reader(job, "all", engine, http)
        with pytest.raises(CursorMovedError, match=f"job {job_name} shard all"):
            reader.read_pass(
                logging.getLogger("test"), on_staged=other_worker_stages_next_page
            )

    assert [r.versions_staged for r in other] == [3]
    assert (reader.pages, reader.fetched, reader.staged) == (1, 3, 3)
    assert staged_keys(ledger_url, job_name, "all") == [str(i) for i in range(1, 7)]

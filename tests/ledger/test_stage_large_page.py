"""Pages of 100,000 records stage in one transaction on both ledgers.

Issue "Delivery guarantees": a page's keys went to the database in one
``record_key IN (...)``, past SQLite's stock limit of 32,766 bound parameters
and Postgres' 65,535, so a large page failed and its shard could never move on.
"""

from __future__ import annotations

import sqlite3
import tempfile
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from jellyfish.source.records import stage_record
from ledger.engine import get_engine
from ledger.schema import deliveries, record_versions
from ledger.store import forget_job, load_cursor, stage_page
from ledger.types import StagedVersion, StageResult

RECORDS = 100_000
# Stock SQLite builds allow this many parameters per statement; some
# distributions raise it (Debian: 250,000), which would hide the limit.
SQLITE_STOCK_LIMIT = 32_766


def _stock_sqlite_limit(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "checkout")
    def _limit(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.setlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_STOCK_LIMIT
        )


@pytest.fixture
def big_job(ledger_url: str, job_name: str) -> Iterator[str]:
    """A job whose 100,000 rows leave the shared Postgres ledger afterwards."""
    yield job_name
    with Session(get_engine(ledger_url)) as session, session.begin():
        forget_job(session, job_name)


def _page(changed: tuple[int, ...] = ()) -> list[StagedVersion]:
    """Records with about 230 bytes of canonical JSON each."""
    return [
        stage_record({"id": i, "pad": "p" * 200, "v": 2 if i in changed else 1}, ["id"])
        for i in range(RECORDS)
    ]


def _stage(
    engine: Engine, job: str, versions: list[StagedVersion], before: str | None
) -> StageResult:
    after = f"after-{before}"
    with Session(engine) as session, session.begin():
        return stage_page(
            session,
            job=job,
            shard="s1",
            versions=versions,
            fetched=len(versions),
            cursor_before=before,
            cursor_after=after,
            targets=["t1"],
        )


@pytest.mark.slow
def test_stage_page_100k_records_stages_every_one_in_chunks(
    ledger_url: str, big_job: str
) -> None:
    engine = get_engine(ledger_url)
    _stock_sqlite_limit(engine)
    first_page = _page()
    # Keys at chunk edges (5,000 keys a statement) change on the second page.
    changed = (0, 4_999, 5_000, RECORDS - 1)

    first = _stage(engine, big_job, first_page, None)
    second = _stage(engine, big_job, _page(changed), "after-None")

    with Session(engine) as session:
        version_counts = session.execute(
            select(
                func.count(), func.count(func.distinct(record_versions.c.record_key))
            ).where(record_versions.c.job == big_job)
        ).one()
        statuses = session.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.job == big_job)
            .group_by(deliveries.c.status)
            .order_by(deliveries.c.status)
        ).all()
        superseded = session.execute(
            select(deliveries.c.record_key)
            .where(deliveries.c.job == big_job, deliveries.c.status == "superseded")
            .order_by(deliveries.c.id)
        ).scalars()
        assert list(superseded) == ["0", "4999", "5000", "99999"]
        assert load_cursor(session, big_job, "s1") == "after-after-None"
    assert first == StageResult(RECORDS, RECORDS, 0)
    assert second == StageResult(4, 4, 4)
    assert tuple(version_counts) == (RECORDS + 4, RECORDS)
    assert [tuple(row) for row in statuses] == [
        ("pending", RECORDS),
        ("superseded", 4),
    ]


@pytest.mark.slow
def test_stage_page_100k_records_peak_memory_stays_below_page_size(
    job_name: str,
) -> None:
    """The page itself holds about 80 MB; staging keeps no second copy of it.

    Measured on SQLite only: tracemalloc slows every allocation, and psycopg's
    many small ones would make this a minute-long test on Postgres.
    """
    engine = get_engine(f"sqlite:///{tempfile.mkdtemp()}/ledger.db")
    _stock_sqlite_limit(engine)
    versions = _page()

    tracemalloc.start()
    try:
        result = _stage(engine, job_name, versions, None)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result == StageResult(RECORDS, RECORDS, 0)
    assert peak_bytes < 16_000_000

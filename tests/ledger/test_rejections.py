"""Rejected records: kept with the page that fetched them, counted per shard.

Issue "Delivery guarantees": a record over ``max_record_bytes`` is not staged
but kept with its reason, in the same transaction as its page and cursor.
"""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from jellyfish.source.records import stage_record
from ledger.engine import get_engine
from ledger.rejections import rejected_counts
from ledger.schema import Base, deliveries, pages, record_versions, rejected_records
from ledger.store import load_cursor, stage_page
from ledger.types import RejectedRecord, StageResult

TOO_BIG = RejectedRecord(
    record_key="7",
    reason="canonical JSON is 2000 bytes, above max_record_bytes 1000",
    size_bytes=2000,
    excerpt='{"blob":"' + "x" * 300,
)
NO_KEY = RejectedRecord(
    record_key=None,
    reason="canonical JSON is 1500 bytes, above max_record_bytes 1000",
    size_bytes=1500,
    excerpt='{"blob":"yyy',
)


def _stage(
    session: Session,
    job: str,
    shard: str,
    before: str | None,
    after: str,
    rejected: list[RejectedRecord],
    ids: tuple[int, ...] = (),
) -> StageResult:
    versions = [stage_record({"id": i}, ["id"]) for i in ids]
    return stage_page(
        session,
        job=job,
        shard=shard,
        versions=versions,
        fetched=len(versions) + len(rejected),
        cursor_before=before,
        cursor_after=after,
        targets=["t1"],
        rejected=rejected,
    )


def test_stage_page_rejected_records_kept_with_reason_never_staged(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)

    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, "s1", None, "c1", [TOO_BIG, NO_KEY], (1,))

    with Session(engine) as session:
        (page,) = session.execute(select(pages).where(pages.c.job == job_name)).all()
        kept = session.execute(
            select(rejected_records)
            .where(rejected_records.c.job == job_name)
            .order_by(rejected_records.c.id)
        ).all()
        versions = session.execute(
            select(record_versions.c.record_key).where(
                record_versions.c.job == job_name
            )
        ).scalars()
        assert list(versions) == ["1"]
        owed = session.execute(
            select(deliveries.c.record_key).where(deliveries.c.job == job_name)
        ).scalars()
        assert list(owed) == ["1"]
        assert load_cursor(session, job_name, "s1") == "c1"
    assert result == StageResult(1, 1, 0, rejected=2)
    assert (page.records_fetched, page.versions_staged) == (3, 1)
    assert [row._asdict() | {"id": 0} for row in kept] == [
        {
            "id": 0,
            "job": job_name,
            "shard": "s1",
            "page_id": page.id,
            "record_key": "7",
            "reason": "canonical JSON is 2000 bytes, above max_record_bytes 1000",
            "size_bytes": 2000,
            "excerpt": '{"blob":"' + "x" * 191,
            "fetched_at": page.fetched_at,
        },
        {
            "id": 0,
            "job": job_name,
            "shard": "s1",
            "page_id": page.id,
            "record_key": None,
            "reason": "canonical JSON is 1500 bytes, above max_record_bytes 1000",
            "size_bytes": 1500,
            "excerpt": '{"blob":"yyy',
            "fetched_at": page.fetched_at,
        },
    ]


def test_stage_page_only_rejected_records_kept_and_cursor_moves(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, "s1", None, "c1", [], (1,))

    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, "s1", "c1", "c2", [TOO_BIG])

    with Session(engine) as session:
        keys = session.execute(
            select(rejected_records.c.record_key).where(
                rejected_records.c.job == job_name
            )
        ).scalars()
        assert list(keys) == ["7"]
        assert load_cursor(session, job_name, "s1") == "c2"
    assert result == StageResult(0, 0, 0, rejected=1)


def test_rejected_counts_per_shard_since_moment_counts_that_job_only(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    started = dt.datetime.now(dt.UTC)
    pages_staged = [
        (job_name, "s1", [TOO_BIG, NO_KEY]),
        (job_name, "s2", [NO_KEY]),
        (job_name, "s3", []),
        (job_name + "-other", "s1", [TOO_BIG]),
    ]
    for job, shard, rejected in pages_staged:
        with Session(engine) as session, session.begin():
            _stage(session, job, shard, None, "c1", rejected, (1,))

    with Session(engine) as session:
        counts = rejected_counts(session, job_name, started)
        later = rejected_counts(
            session, job_name, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        )

    assert counts == {"s1": 2, "s2": 1}
    assert later == {}


def test_migrations_applied_ledger_matches_schema_models(ledger_url: str) -> None:
    """Migration 0002 is written by hand; it must create what schema.py says."""
    engine = get_engine(ledger_url)

    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )

    assert differences == []

"""Ledger reads and writes, on the embedded SQLite default and on Postgres."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from jellyfish.source.records import stage_record
from ledger.engine import get_engine
from ledger.errors import CursorMovedError
from ledger.reports import target_status
from ledger.schema import (
    OUTCOME_DEAD,
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    attempts,
    cursors,
    deliveries,
    pages,
    record_versions,
    rejected_records,
)
from ledger.store import (
    claim_due,
    forget_job,
    load_cursor,
    record_attempts,
    stage_page,
)
from ledger.types import AttemptResult, DueDelivery, RejectedRecord

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _versions(*records: dict[str, object]) -> list:
    return [stage_record(r, ["id"]) for r in records]


def _stage(session: Session, job: str, records: list, before, after, targets=("t1",)):
    return stage_page(
        session,
        job=job,
        shard="s1",
        versions=records,
        fetched=len(records),
        cursor_before=before,
        cursor_after=after,
        targets=list(targets),
    )


def _rows(session: Session, table, job: str) -> list:
    return session.execute(select(table).where(table.c.job == job)).all()


def _claim(session: Session, job: str, owner: str = "w1", limit: int = 100):
    return claim_due(
        session,
        job=job,
        target="t1",
        partition=0,
        partitions=1,
        owner=owner,
        limit=limit,
        lease_s=60,
    )


def _result(due: DueDelivery, outcome: str, **extra: object) -> AttemptResult:
    return AttemptResult(
        delivery_id=due.delivery_id,
        attempt_no=due.attempts_before + 1,
        started_at=NOW,
        duration_ms=3.5,
        outcome=outcome,
        **extra,
    )


def test_stage_page_new_records_creates_versions_deliveries_and_cursor(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    records = _versions({"id": 1, "v": "a"}, {"id": 2, "v": "b"})

    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, records, None, '{"p":1}', ("t1", "t2"))

    with Session(engine) as session:
        versions = _rows(session, record_versions, job_name)
        owed = _rows(session, deliveries, job_name)
        assert load_cursor(session, job_name, "s1") == '{"p":1}'
        page = _rows(session, pages, job_name)
    assert (result.versions_staged, result.deliveries_created) == (2, 4)
    assert sorted(v.record_key for v in versions) == ["1", "2"]
    assert {v.payload for v in versions} == {'{"id":1,"v":"a"}', '{"id":2,"v":"b"}'}
    assert sorted((d.target, d.record_key, d.status) for d in owed) == [
        ("t1", "1", "pending"),
        ("t1", "2", "pending"),
        ("t2", "1", "pending"),
        ("t2", "2", "pending"),
    ]
    assert [(p.records_fetched, p.versions_staged) for p in page] == [(2, 2)]


def test_stage_page_unchanged_reread_creates_nothing(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    records = _versions({"id": 1, "v": "a"})
    with Session(engine) as session, session.begin():
        _stage(session, job_name, records, None, "c1")

    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, records, "c1", "c2")

    with Session(engine) as session:
        assert len(_rows(session, record_versions, job_name)) == 1
        assert len(_rows(session, deliveries, job_name)) == 1
    assert result.versions_staged == 0


def test_stage_page_changed_record_supersedes_pending_older_version(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1, "v": "old"}), None, "c1")

    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, _versions({"id": 1, "v": "new"}), "c1", "c2")

    with Session(engine) as session:
        owed = session.execute(
            select(deliveries.c.status, record_versions.c.payload)
            .join(
                record_versions, record_versions.c.id == deliveries.c.record_version_id
            )
            .where(deliveries.c.job == job_name)
            .order_by(deliveries.c.id)
        ).all()
    assert (result.versions_staged, result.superseded) == (1, 1)
    assert [tuple(row) for row in owed] == [
        ("superseded", '{"id":1,"v":"old"}'),
        ("pending", '{"id":1,"v":"new"}'),
    ]


def test_stage_page_changed_record_supersedes_older_version_at_every_target(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    both = ("t1", "t2")
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1, "v": "old"}), None, "c1", both)
        _stage(session, job_name, _versions({"id": 2, "v": "same"}), "c1", "c2", both)

    with Session(engine) as session, session.begin():
        result = _stage(
            session, job_name, _versions({"id": 1, "v": "new"}), "c2", "c3", both
        )

    with Session(engine) as session:
        owed = session.execute(
            select(deliveries.c.target, deliveries.c.record_key, deliveries.c.status)
            .where(deliveries.c.job == job_name)
            .order_by(deliveries.c.target, deliveries.c.id)
        ).all()
    assert (result.versions_staged, result.superseded) == (1, 2)
    assert [tuple(row) for row in owed] == [
        ("t1", "1", "superseded"),
        ("t1", "2", "pending"),
        ("t1", "1", "pending"),
        ("t2", "1", "superseded"),
        ("t2", "2", "pending"),
        ("t2", "1", "pending"),
    ]


def test_stage_page_duplicate_key_in_page_keeps_last(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    records = _versions({"id": 7, "v": 1}, {"id": 7, "v": 2})
    with Session(engine) as session, session.begin():
        result = _stage(session, job_name, records, None, "c1")
    with Session(engine) as session:
        payloads = [v.payload for v in _rows(session, record_versions, job_name)]
    assert result.versions_staged == 1
    assert payloads == ['{"id":7,"v":2}']


def test_stage_page_cursor_moved_by_another_worker_stages_nothing(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1}), None, "c1")

    with (
        pytest.raises(CursorMovedError, match=f"job {job_name} shard s1: the cursor"),
        Session(engine) as session,
        session.begin(),
    ):
        _stage(session, job_name, _versions({"id": 2}), "stale", "c9")

    with Session(engine) as session:
        assert load_cursor(session, job_name, "s1") == "c1"
        assert [v.record_key for v in _rows(session, record_versions, job_name)] == [
            "1"
        ]


def test_stage_page_first_page_twice_raises_cursor_moved(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1}), None, "c1")
    with (
        pytest.raises(CursorMovedError, match="another worker staged the first page"),
        Session(engine) as session,
        session.begin(),
    ):
        _stage(session, job_name, _versions({"id": 2}), None, "c2")
    with Session(engine) as session:
        assert len(_rows(session, record_versions, job_name)) == 1


def test_claim_due_two_owners_never_share_a_delivery(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions(*({"id": i} for i in range(10))), None, "c")

    with Session(engine) as session, session.begin():
        first = _claim(session, job_name, "w1", limit=6)
    with Session(engine) as session, session.begin():
        second = _claim(session, job_name, "w2", limit=6)
    with Session(engine) as session, session.begin():
        third = _claim(session, job_name, "w3", limit=6)

    first_ids = {d.delivery_id for d in first}
    second_ids = {d.delivery_id for d in second}
    assert (len(first), len(second), len(third)) == (6, 4, 0)
    assert first_ids.isdisjoint(second_ids)
    assert [d.payload for d in first][:2] == ['{"id":0}', '{"id":1}']


def test_record_attempts_outcomes_move_deliveries_and_keep_attempts(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1}, {"id": 2}, {"id": 3}), None, "c")
    with Session(engine) as session, session.begin():
        due = _claim(session, job_name)
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)

    with Session(engine) as session, session.begin():
        record_attempts(
            session,
            owner="w1",
            results=[
                _result(due[0], OUTCOME_DELIVERED, http_status=200),
                _result(
                    due[1],
                    OUTCOME_RETRY,
                    http_status=503,
                    error="HTTP 503",
                    next_attempt_at=later,
                ),
                _result(due[2], OUTCOME_DEAD, http_status=404, error="HTTP 404"),
            ],
        )

    with Session(engine) as session:
        owed = session.execute(
            select(
                deliveries.c.record_key,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.next_attempt_at,
                deliveries.c.lease_owner,
                deliveries.c.last_error,
            )
            .where(deliveries.c.job == job_name)
            .order_by(deliveries.c.id)
        ).all()
        kept = session.execute(
            select(attempts.c.attempt_no, attempts.c.http_status, attempts.c.outcome)
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .where(deliveries.c.job == job_name)
            .order_by(attempts.c.id)
        ).all()
        assert _claim(session, job_name) == []
        status = target_status(session, job_name)
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in owed] == [
        ("1", "delivered", 1, None, None),
        ("2", "pending", 1, None, "HTTP 503"),
        ("3", "dead", 1, None, "HTTP 404"),
    ]
    assert owed[1][3] == later
    assert [tuple(k) for k in kept] == [
        (1, 200, "delivered"),
        (1, 503, "retry"),
        (1, 404, "dead"),
    ]
    assert [(s.target, s.retrying, s.delivered, s.dead) for s in status] == [
        ("t1", 1, 1, 1)
    ]


def test_record_attempts_after_lease_taken_over_keeps_attempt_only(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1}), None, "c")
    with Session(engine) as session, session.begin():
        (due,) = _claim(session, job_name, "w1")

    with Session(engine) as session, session.begin():
        record_attempts(session, owner="w2", results=[_result(due, OUTCOME_DELIVERED)])

    with Session(engine) as session:
        (row,) = _rows(session, deliveries, job_name)
        assert session.execute(
            select(attempts.c.outcome).where(attempts.c.delivery_id == due.delivery_id)
        ).scalars().all() == ["delivered"]
    assert (row.status, row.lease_owner) == ("pending", "w1")


def test_record_attempts_retry_with_newer_version_is_superseded(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1, "v": 1}), None, "c1")
    with Session(engine) as session, session.begin():
        (old,) = _claim(session, job_name)
    # The newer version arrives while the older one is in flight.
    with Session(engine) as session, session.begin():
        _stage(session, job_name, _versions({"id": 1, "v": 2}), "c1", "c2")

    with Session(engine) as session, session.begin():
        record_attempts(
            session,
            owner="w1",
            results=[
                _result(old, OUTCOME_RETRY, error="HTTP 500", next_attempt_at=NOW)
            ],
        )

    with Session(engine) as session:
        statuses = (
            session.execute(
                select(deliveries.c.status)
                .where(deliveries.c.job == job_name)
                .order_by(deliveries.c.id)
            )
            .scalars()
            .all()
        )
    assert statuses == ["superseded", "pending"]


def test_forget_job_removes_every_row_of_that_job_only(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    other = job_name + "-other"
    too_big = RejectedRecord("2", "canonical JSON is 9 bytes", 9, '{"id":2}')
    for job in (job_name, other):
        with Session(engine) as session, session.begin():
            stage_page(
                session,
                job=job,
                shard="s1",
                versions=_versions({"id": 1}),
                fetched=2,
                cursor_before=None,
                cursor_after="c",
                targets=["t1"],
                rejected=[too_big],
            )
        with Session(engine) as session, session.begin():
            (due,) = _claim(session, job)
            record_attempts(
                session, owner="w1", results=[_result(due, OUTCOME_DELIVERED)]
            )

    with Session(engine) as session, session.begin():
        forget_job(session, job_name)

    with Session(engine) as session:
        for table in (cursors, pages, record_versions, deliveries, rejected_records):
            assert _rows(session, table, job_name) == []
            assert len(_rows(session, table, other)) == 1

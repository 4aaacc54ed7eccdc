"""Leases of a worker that died: recovered once, with an attempt of unknown outcome."""

from __future__ import annotations

import datetime as dt
import json
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from jellyfish.source.records import stage_record
from ledger.engine import get_engine
from ledger.schema import attempts, deliveries
from ledger.store import (
    claim_due,
    record_attempts,
    recover_expired_leases,
    stage_page,
)
from ledger.types import AttemptResult


def _claim(session: Session, job: str, owner: str, lease_s: float) -> list:
    return claim_due(
        session,
        job=job,
        target="t1",
        partition=0,
        partitions=1,
        owner=owner,
        limit=10,
        lease_s=lease_s,
    )


def _recover(session: Session, job: str) -> int:
    return recover_expired_leases(
        session, job=job, target="t1", partition=0, partitions=1
    )


def test_recover_expired_leases_dead_worker_counts_unknown_attempt(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        stage_page(
            session,
            job=job_name,
            shard="s1",
            versions=[stage_record({"id": i}, ["id"]) for i in (1, 2)],
            fetched=2,
            cursor_before=None,
            cursor_after="c",
            targets=["t1"],
        )
    with Session(engine) as session, session.begin():
        claimed = _claim(session, job_name, "dead-worker", lease_s=0.01)
    time.sleep(0.05)

    with Session(engine) as session, session.begin():
        first = _recover(session, job_name)
    with Session(engine) as session, session.begin():
        second = _recover(session, job_name)
    with Session(engine) as session, session.begin():
        reclaimed = _claim(session, job_name, "new-worker", lease_s=60)

    with Session(engine) as session:
        kept = session.execute(
            select(attempts.c.attempt_no, attempts.c.outcome)
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .where(deliveries.c.job == job_name)
            .order_by(attempts.c.delivery_id)
        ).all()
    assert (len(claimed), first, second) == (2, 2, 0)
    assert [tuple(row) for row in kept] == [(1, "unknown"), (1, "unknown")]
    assert [d.attempts_before for d in reclaimed] == [1, 1]
    assert [d.delivery_id for d in reclaimed] == [d.delivery_id for d in claimed]


def test_recover_expired_leases_live_lease_is_left_alone(
    ledger_url: str, job_name: str
) -> None:
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        stage_page(
            session,
            job=job_name,
            shard="s1",
            versions=[stage_record({"id": 1}, ["id"])],
            fetched=1,
            cursor_before=None,
            cursor_after="c",
            targets=["t1"],
        )
    with Session(engine) as session, session.begin():
        _claim(session, job_name, "live-worker", lease_s=60)

    with Session(engine) as session, session.begin():
        recovered = _recover(session, job_name)

    with Session(engine) as session:
        owner = session.execute(
            select(deliveries.c.lease_owner).where(deliveries.c.job == job_name)
        ).scalar_one()
    assert (recovered, owner) == (0, "live-worker")


def _stage(session: Session, job: str, record: dict, before: str | None) -> None:
    stage_page(
        session,
        job=job,
        shard="s1",
        versions=[stage_record(record, ["id"])],
        fetched=1,
        cursor_before=before,
        cursor_after=f"after-{record['v']}",
        targets=["t1"],
    )


def test_claim_due_newer_version_waits_while_older_is_leased(
    ledger_url: str, job_name: str
) -> None:
    """Regression: a second worker on the same partition took version 2 of a key
    while the first still held version 1, so the target could get 2 before 1.
    """
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, {"id": 7, "v": 1}, None)
    with Session(engine) as session, session.begin():
        first = _claim(session, job_name, "worker-a", lease_s=60)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, {"id": 7, "v": 2}, "after-1")

    with Session(engine) as session, session.begin():
        while_leased = _claim(session, job_name, "worker-b", lease_s=60)
    with Session(engine) as session, session.begin():
        record_attempts(
            session,
            owner="worker-a",
            results=[_delivered(first[0].delivery_id)],
        )
    with Session(engine) as session, session.begin():
        after_delivery = _claim(session, job_name, "worker-b", lease_s=60)

    assert [json.loads(d.payload)["v"] for d in first] == [1]
    assert while_leased == []
    assert [json.loads(d.payload)["v"] for d in after_delivery] == [2]


def _delivered(delivery_id: int) -> AttemptResult:
    return AttemptResult(
        delivery_id=delivery_id,
        attempt_no=1,
        started_at=dt.datetime.now(dt.UTC),
        duration_ms=1.0,
        outcome="delivered",
        http_status=200,
    )

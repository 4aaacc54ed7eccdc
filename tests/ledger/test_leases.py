"""Leases of a worker that died: recovered once, with an attempt of unknown outcome."""

from __future__ import annotations

import datetime as dt
import json
import time

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jellyfish.source.records import stage_record
from ledger.engine import get_engine
from ledger.schema import attempts, deliveries
from ledger.store import (
    claim_due,
    hold_partition,
    recover_expired_leases,
    release_partition,
    stage_page,
)


def _stage_first_page(session: Session, job: str, ids: list[int]) -> None:
    stage_page(
        session,
        job=job,
        shard="s1",
        versions=[stage_record({"id": i}, ["id"]) for i in ids],
        fetched=len(ids),
        cursor_before=None,
        cursor_after="c",
        targets=["t1"],
    )


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
        _stage_first_page(session, job_name, [1, 2])
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
        _stage_first_page(session, job_name, [1])
    with Session(engine) as session, session.begin():
        _claim(session, job_name, "live-worker", lease_s=60)

    with Session(engine) as session, session.begin():
        recovered = _recover(session, job_name)

    with Session(engine) as session:
        owner = session.execute(
            select(deliveries.c.lease_owner).where(deliveries.c.job == job_name)
        ).scalar_one()
    assert (recovered, owner) == (0, "live-worker")


def _hold(session: Session, job: str, owner: str, lease_s: float) -> bool | None:
    return hold_partition(
        session, job=job, target="t1", partition=0, owner=owner, lease_s=lease_s
    )


def test_hold_partition_one_owner_at_a_time_until_its_lease_ends(
    ledger_url: str, job_name: str
) -> None:
    """Regression: two workers pushed one partition at once, so one could send
    version 2 of a key while the other was still sending version 1.
    """
    engine = get_engine(ledger_url)
    steps = []
    for owner, lease_s in [("a", 0.2), ("a", 0.2), ("b", 60), ("b", 60)]:
        with Session(engine) as session, session.begin():
            steps.append(_hold(session, job_name, owner, lease_s))
    time.sleep(0.3)
    with Session(engine) as session, session.begin():
        steps.append(_hold(session, job_name, "b", 60))
    with Session(engine) as session, session.begin():
        steps.append(_hold(session, job_name, "a", 60))
    with Session(engine) as session, session.begin():
        release_partition(session, job=job_name, target="t1", partition=0, owner="b")
    with Session(engine) as session, session.begin():
        steps.append(_hold(session, job_name, "a", 60))

    # a takes, a renews, b waits twice; a's lease ends: b takes, a waits;
    # b hands it back: a takes it at once.
    assert steps == [True, False, None, None, True, None, True]


def test_recover_expired_leases_older_version_with_newer_staged_is_superseded(
    ledger_url: str, job_name: str
) -> None:
    """A dead worker's version 1 must not go out after version 2 was staged."""
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, {"id": 7, "v": 1}, None)
    with Session(engine) as session, session.begin():
        _claim(session, job_name, "dead-worker", lease_s=0.01)
    with Session(engine) as session, session.begin():
        _stage(session, job_name, {"id": 7, "v": 2}, "after-1")
    time.sleep(0.05)

    with Session(engine) as session, session.begin():
        recovered = _recover(session, job_name)
    with Session(engine) as session, session.begin():
        claimed = _claim(session, job_name, "new-worker", lease_s=60)

    with Session(engine) as session:
        rows = session.execute(
            select(deliveries.c.status, attempts.c.outcome)
            .outerjoin(attempts, attempts.c.delivery_id == deliveries.c.id)
            .where(deliveries.c.job == job_name)
            .order_by(deliveries.c.id)
        ).all()
    assert recovered == 1
    assert [json.loads(d.payload)["v"] for d in claimed] == [2]
    assert [tuple(row) for row in rows] == [
        ("superseded", "unknown"),
        ("pending", None),
    ]


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


def test_claim_due_limit_takes_longest_due_first(
    ledger_url: str, job_name: str
) -> None:
    """A retry that fell due an hour ago goes before deliveries due just now."""
    engine = get_engine(ledger_url)
    with Session(engine) as session, session.begin():
        _stage_first_page(session, job_name, [1, 2, 3])
        session.execute(
            update(deliveries)
            .where(deliveries.c.job == job_name, deliveries.c.record_key == "3")
            .values(
                next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                attempts=1,
            )
        )

    with Session(engine) as session, session.begin():
        first = claim_due(
            session,
            job=job_name,
            target="t1",
            partition=0,
            partitions=1,
            owner="w1",
            limit=1,
            lease_s=60,
        )
        rest = _claim(session, job_name, "w1", lease_s=60)

    assert [(d.record_key, d.attempts_before) for d in first] == [("3", 1)]
    assert [d.record_key for d in rest] == ["1", "2"]

"""Read-only figures for monitoring: where deliveries stand, what a run did.

Like ``store``, every function takes the caller's ``Session`` first; these
only read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from ledger.schema import (
    DEAD,
    DELIVERED,
    OUTCOME_DEAD,
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    OUTCOME_UNKNOWN,
    PENDING,
    SUPERSEDED,
    attempts,
    deliveries,
    pages,
    record_versions,
)
from ledger.store import translated
from ledger.types import ShardCounts, TargetCounts, TargetStatus


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@translated("read delivery status")
def target_status(session: Session, job: str) -> list[TargetStatus]:
    """Counts by target and status, and the oldest pending delivery's age."""
    now = _utcnow()
    d = deliveries
    is_pending = d.c.status == PENDING
    leased = and_(
        is_pending, d.c.lease_expires_at.is_not(None), d.c.lease_expires_at >= now
    )

    def count_where(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    rows = session.execute(
        select(
            d.c.target,
            count_where(and_(is_pending, d.c.attempts == 0, ~leased)),
            count_where(and_(is_pending, d.c.attempts > 0, ~leased)),
            count_where(leased),
            count_where(d.c.status == DELIVERED),
            count_where(d.c.status == DEAD),
            count_where(d.c.status == SUPERSEDED),
            func.min(case((is_pending, d.c.created_at), else_=None)),
        )
        .where(d.c.job == job)
        .group_by(d.c.target)
        .order_by(d.c.target)
    ).all()
    return [
        TargetStatus(
            target=row[0],
            pending=int(row[1] or 0),
            retrying=int(row[2] or 0),
            in_flight=int(row[3] or 0),
            delivered=int(row[4] or 0),
            dead=int(row[5] or 0),
            superseded=int(row[6] or 0),
            oldest_pending_at=_as_utc(row[7]),
        )
        for row in rows
    ]


def _as_utc(value: Any) -> dt.datetime | None:
    # MIN() over a TypeDecorator column comes back raw on SQLite (a string).
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(parsed, dt.datetime)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@translated("count staged versions")
def count_versions(session: Session, job: str) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(record_versions)
            .where(record_versions.c.job == job)
        ).scalar_one()
    )


@translated("count a run's pages")
def shard_counts(session: Session, job: str, since: dt.datetime) -> list[ShardCounts]:
    """Pages, records fetched and versions staged per shard since ``since``."""
    rows = session.execute(
        select(
            pages.c.shard,
            func.count(),
            func.sum(pages.c.records_fetched),
            func.sum(pages.c.versions_staged),
        )
        .where(pages.c.job == job, pages.c.fetched_at >= since)
        .group_by(pages.c.shard)
        .order_by(pages.c.shard)
    ).all()
    return [ShardCounts(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]


@translated("count a run's attempts")
def attempt_counts(
    session: Session, job: str, since: dt.datetime
) -> list[TargetCounts]:
    """Attempt outcomes per target since ``since``."""
    a, d = attempts, deliveries
    rows = session.execute(
        select(
            d.c.target,
            func.sum(case((a.c.outcome == OUTCOME_DELIVERED, 1), else_=0)),
            func.sum(
                case((a.c.outcome.in_([OUTCOME_RETRY, OUTCOME_UNKNOWN]), 1), else_=0)
            ),
            func.sum(case((a.c.outcome == OUTCOME_DEAD, 1), else_=0)),
        )
        .join(d, d.c.id == a.c.delivery_id)
        .where(d.c.job == job, a.c.started_at >= since)
        .group_by(d.c.target)
        .order_by(d.c.target)
    ).all()
    return [
        TargetCounts(r[0], int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows
    ]

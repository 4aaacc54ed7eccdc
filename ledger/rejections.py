"""Read rejected records: fetched, kept with a reason, never staged or sent.

Rows are written by ``store.stage_page`` in the same transaction as their page;
this module only reads them. Like ``store``, every function takes the caller's
``Session`` first.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.schema import rejected_records
from ledger.store import translated


@translated("count rejected records")
def rejected_counts(session: Session, job: str, since: dt.datetime) -> dict[str, int]:
    """How many records each shard of ``job`` rejected since a moment.

    Args:
        session: the caller's unit of work.
        job: the job's name.
        since: an aware datetime; rejections fetched at or after it count.

    Returns:
        Shard name -> rejected records, only for shards that rejected any.

    Raises:
        LedgerError: the database refused the query.
    """
    r = rejected_records
    rows = session.execute(
        select(r.c.shard, func.count())
        .where(r.c.job == job, r.c.fetched_at >= since)
        .group_by(r.c.shard)
        .order_by(r.c.shard)
    ).all()
    return {shard: int(count) for shard, count in rows}

"""Every read and write of the ledger.

Each function takes the caller's ``Session`` first and never commits: the
caller owns one short transaction per page or per batch. Statements are
set-based (one per page or batch, not one per record) and portable between
Postgres and SQLite; where the dialects differ, the difference stays here.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar, cast

import psycopg
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from ledger.bulk import each_of, insert_if_absent, insert_rows, is_postgres, one_of
from ledger.errors import CursorMovedError, LedgerError
from ledger.schema import (
    DEAD,
    DELIVERED,
    OUTCOME_DEAD,
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    OUTCOME_UNKNOWN,
    PENDING,
    REJECTED_EXCERPT_CHARS,
    SUPERSEDED,
    attempts,
    cursors,
    deliveries,
    pages,
    partition_leases,
    record_versions,
    rejected_records,
)
from ledger.types import (
    AttemptResult,
    DueDelivery,
    RejectedRecord,
    StagedVersion,
    StageResult,
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# SQLite allows 32,766 bound parameters per statement and Postgres 65,535; a
# page's keys go to the database in slices well below both.
_CHUNK = 5000


def translated(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn database errors into LedgerError naming the operation."""

    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except LedgerError:
                raise
            except (SQLAlchemyError, psycopg.Error) as exc:
                cause = type(getattr(exc, "orig", None) or exc).__name__
                raise LedgerError(
                    f"ledger could not {what} ({cause}); the transaction was "
                    "rolled back and nothing of it was kept"
                ) from exc

        return inner

    return wrap


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rowcount(result: object) -> int:
    """Rows an UPDATE matched (typed results of session.execute hide it)."""
    return int(cast(CursorResult[Any], result).rowcount)


@translated("read a cursor")
def load_cursor(session: Session, job: str, shard: str) -> str | None:
    """The shard's saved cursor state as stored, or None before its first page."""
    row = session.execute(
        select(cursors.c.state).where(cursors.c.job == job, cursors.c.shard == shard)
    ).scalar_one_or_none()
    return row


def _move_cursor(
    session: Session,
    job: str,
    shard: str,
    before: str | None,
    after: str,
    now: dt.datetime,
) -> None:
    """Compare-and-set: the page only counts if nobody moved the cursor first."""
    if before is None:
        try:
            with session.begin_nested():
                session.execute(
                    insert(cursors).values(
                        job=job, shard=shard, state=after, updated_at=now
                    )
                )
        except IntegrityError as exc:
            raise CursorMovedError(
                f"job {job} shard {shard}: another worker staged the first page "
                "at the same time; this page was not staged"
            ) from exc
        return
    moved = session.execute(
        update(cursors)
        .where(
            cursors.c.job == job, cursors.c.shard == shard, cursors.c.state == before
        )
        .values(state=after, updated_at=now)
    )
    if _rowcount(moved) != 1:
        raise CursorMovedError(
            f"job {job} shard {shard}: the cursor moved while this page was "
            "fetched (another worker?); this page was not staged"
        )


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _latest_hashes(session: Session, job: str, keys: Sequence[str]) -> dict[str, str]:
    rv = record_versions
    if is_postgres(session):
        # A plain `= ANY` here, before autovacuum has analysed a growing
        # table, makes Postgres filter every version of the job on each page
        # (89 instead of 2.5 µs a record at 400,000 records).
        wanted = each_of("keys", Text())
        latest = (
            select(rv.c.record_key, rv.c.content_hash)
            .where(rv.c.job == job, rv.c.record_key == wanted.c.value)
            .order_by(rv.c.id.desc())
            .limit(1)
            .lateral()
        )
        found = session.execute(
            select(latest.c.record_key, latest.c.content_hash)
            .select_from(wanted)
            .join(latest, true()),
            {"keys": list(keys)},
        ).all()
        return {key: content_hash for key, content_hash in found}
    rows = session.execute(
        select(rv.c.id, rv.c.record_key, rv.c.content_hash).where(
            rv.c.job == job, one_of(rv.c.record_key, "keys", session)
        ),
        {"keys": list(keys)},
    ).all()
    # Sorting here, not in SQL: an ORDER BY id tempts the planner into walking
    # the whole primary key instead of the (job, record_key, id) index.
    return {key: content_hash for _, key, content_hash in sorted(rows)}


def _new_versions(
    session: Session, job: str, versions: Sequence[StagedVersion]
) -> tuple[list[StagedVersion], list[str]]:
    """The page's new or changed versions (last one per key) and the changed keys."""
    latest_in_page = list({v.key: v for v in versions}.values())
    new: list[StagedVersion] = []
    changed_keys: list[str] = []
    for chunk in _chunks(latest_in_page):
        known = _latest_hashes(session, job, [v.key for v in chunk])
        for version in chunk:
            if known.get(version.key) != version.content_hash:
                new.append(version)
                if version.key in known:
                    changed_keys.append(version.key)
    return new, changed_keys


def _supersede(
    session: Session,
    job: str,
    targets: Sequence[str],
    changed_keys: Sequence[str],
    now: dt.datetime,
) -> int:
    """Retire older pending deliveries of keys that have a new version."""
    d = deliveries
    of_these_keys: ColumnElement[bool]
    if is_postgres(session):
        # Each key looked up through the (job, target, record_key) index, as
        # in _latest_hashes; OFFSET 0 keeps Postgres from folding the lookup
        # into a join that scans every pending delivery of the job.
        wanted = each_of("keys", Text())
        hits = (
            select(d.c.id)
            .where(
                d.c.job == job,
                one_of(d.c.target, "targets", session),
                d.c.record_key == wanted.c.value,
            )
            .offset(0)
            .lateral()
        )
        of_these_keys = d.c.id.in_(
            select(hits.c.id).select_from(wanted).join(hits, true())
        )
    else:
        of_these_keys = and_(
            d.c.job == job,
            one_of(d.c.target, "targets", session),
            one_of(d.c.record_key, "keys", session),
        )
    superseded = 0
    for chunk in _chunks(changed_keys):
        superseded += _rowcount(
            session.execute(
                update(d)
                .where(
                    of_these_keys,
                    d.c.status == PENDING,
                    or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < now),
                )
                .values(status=SUPERSEDED, updated_at=now),
                {"targets": list(targets), "keys": list(chunk)},
            )
        )
    return superseded


_VERSION_COLUMNS = (
    "job",
    "record_key",
    "key_hash",
    "content_hash",
    "payload",
    "shard",
    "page_id",
    "fetched_at",
)
_ATTEMPT_COLUMNS = (
    "delivery_id",
    "attempt_no",
    "started_at",
    "duration_ms",
    "http_status",
    "outcome",
    "error",
    "response_excerpt",
)


def _insert_versions(
    session: Session,
    *,
    job: str,
    shard: str,
    page_id: int,
    new: Sequence[StagedVersion],
    now: dt.datetime,
) -> None:
    # Chunks keep the parameter rows of a 100,000-record page from piling up.
    for chunk in _chunks(new):
        insert_rows(
            session,
            record_versions,
            _VERSION_COLUMNS,
            [
                (job, v.key, v.key_hash, v.content_hash, v.payload, shard, page_id, now)
                for v in chunk
            ],
        )


def _insert_deliveries(
    session: Session, page_id: int, targets: Sequence[str], now: dt.datetime
) -> None:
    """One pending delivery per target for each version the page staged."""
    rv = record_versions
    for target in targets:
        session.execute(
            insert(deliveries).from_select(
                [
                    "job",
                    "target",
                    "record_version_id",
                    "record_key",
                    "key_hash",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "updated_at",
                ],
                select(
                    rv.c.job,
                    literal(target),
                    rv.c.id,
                    rv.c.record_key,
                    rv.c.key_hash,
                    literal(PENDING),
                    literal(0),
                    literal(now, deliveries.c.next_attempt_at.type),
                    literal(now, deliveries.c.created_at.type),
                    literal(now, deliveries.c.updated_at.type),
                )
                .where(rv.c.page_id == page_id)
                .order_by(rv.c.id),
            )
        )


def _keep_rejected(
    session: Session,
    *,
    job: str,
    shard: str,
    page_id: int,
    rejected: Sequence[RejectedRecord],
    now: dt.datetime,
) -> None:
    if not rejected:
        return
    session.execute(
        insert(rejected_records),
        [
            {
                "job": job,
                "shard": shard,
                "page_id": page_id,
                "record_key": r.record_key,
                "reason": r.reason,
                "size_bytes": r.size_bytes,
                "excerpt": r.excerpt[:REJECTED_EXCERPT_CHARS],
                "fetched_at": now,
            }
            for r in rejected
        ],
    )


@translated("stage a page")
def stage_page(
    session: Session,
    *,
    job: str,
    shard: str,
    versions: Sequence[StagedVersion],
    fetched: int,
    cursor_before: str | None,
    cursor_after: str,
    targets: Sequence[str],
    rejected: Sequence[RejectedRecord] = (),
) -> StageResult:
    """Stage one page's new or changed versions and move the shard's cursor.

    Unchanged re-reads create nothing. A changed key supersedes its older
    pending deliveries, so a target never gets an old version after a new one.
    Rejected records are kept with their reason in the same transaction; they
    get no version and no delivery. Lookups and inserts go by chunks of
    5,000 keys, so a page of any size fits the dialects' parameter limits.

    Raises:
        CursorMovedError: another worker moved the cursor; nothing was staged.
        LedgerError: the database refused the page.
    """
    now = _utcnow()
    _move_cursor(session, job, shard, cursor_before, cursor_after, now)

    new, changed_keys = _new_versions(session, job, versions)
    page_id = session.execute(
        insert(pages)
        .values(
            job=job,
            shard=shard,
            fetched_at=now,
            cursor_before=cursor_before,
            cursor_after=cursor_after,
            records_fetched=fetched,
            versions_staged=len(new),
        )
        .returning(pages.c.id)
    ).scalar_one()
    _keep_rejected(
        session, job=job, shard=shard, page_id=page_id, rejected=rejected, now=now
    )
    if not new:
        return StageResult(0, 0, 0, rejected=len(rejected))

    superseded = _supersede(session, job, targets, changed_keys, now)
    _insert_versions(session, job=job, shard=shard, page_id=page_id, new=new, now=now)
    _insert_deliveries(session, page_id, targets, now)
    return StageResult(
        len(new), len(new) * len(targets), superseded, rejected=len(rejected)
    )


@translated("take a partition's lease")
def hold_partition(
    session: Session,
    *,
    job: str,
    target: str,
    partition: int,
    owner: str,
    lease_s: float,
) -> bool | None:
    """Take or renew ``owner``'s lease on one partition of one target.

    Returns:
        True when ``owner`` just took the partition (its first claim, or
        another worker's lease ran out), False when it renewed its own lease,
        None while another owner holds it.
    """
    now = _utcnow()
    p = partition_leases
    this = (p.c.job == job, p.c.target == target, p.c.partition == partition)
    expires = now + dt.timedelta(seconds=lease_s)
    # Writes only, renewal first: SQLite then takes its write lock on the
    # first statement and waits its busy timeout instead of failing.
    renewed = session.execute(
        update(p).where(*this, p.c.owner == owner).values(expires_at=expires)
    )
    if _rowcount(renewed) == 1:
        return False
    taken = session.execute(
        update(p)
        .where(*this, or_(p.c.owner.is_(None), p.c.expires_at < now))
        .values(owner=owner, expires_at=expires)
    )
    if _rowcount(taken) == 1:
        return True
    row = {
        "job": job,
        "target": target,
        "partition": partition,
        "owner": owner,
        "expires_at": expires,
    }
    # None: the row exists, so another worker holds the partition.
    return True if insert_if_absent(session, p, row) else None


@translated("release a partition's lease")
def release_partition(
    session: Session, *, job: str, target: str, partition: int, owner: str
) -> None:
    """Hand the partition back so another worker can take it at once."""
    p = partition_leases
    session.execute(
        update(p)
        .where(
            p.c.job == job,
            p.c.target == target,
            p.c.partition == partition,
            p.c.owner == owner,
        )
        .values(owner=None, expires_at=None)
    )


@translated("claim due deliveries")
def claim_due(
    session: Session,
    *,
    job: str,
    target: str,
    partition: int,
    partitions: int,
    owner: str,
    limit: int,
    lease_s: float,
) -> list[DueDelivery]:
    """Lease up to ``limit`` due deliveries of one partition, longest due first.

    Postgres skips rows another worker has locked, so concurrent claimers never
    share a delivery; SQLite serializes writers, which gives the same meaning.
    The order follows the index of pending deliveries, so a claim reads only
    as far as its ``limit``; per-key order needs no particular claim order,
    because staging supersedes a key's older pending version.
    """
    now = _utcnow()
    d = deliveries
    due = (
        select(d.c.id)
        .where(
            d.c.job == job,
            d.c.target == target,
            d.c.status == PENDING,
            d.c.next_attempt_at <= now,
            or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < now),
            (d.c.key_hash % partitions) == partition,
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = session.execute(
        update(d)
        .where(d.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=lease_s))
        .returning(d.c.id, d.c.record_version_id, d.c.attempts)
    ).all()
    if not claimed:
        return []
    # Two statements, not UPDATE ... FROM: SQLite's RETURNING cannot name the
    # joined table.
    rv = record_versions
    versions = {
        version_id: (key, content_hash, payload)
        for version_id, key, content_hash, payload in session.execute(
            select(rv.c.id, rv.c.record_key, rv.c.content_hash, rv.c.payload).where(
                one_of(rv.c.id, "ids", session)
            ),
            {"ids": [row.record_version_id for row in claimed]},
        )
    }
    # Plain tuples, not Row attributes: this loop runs once per record.
    leased: list[DueDelivery] = []
    for delivery_id, version_id, attempts_before in sorted(map(tuple, claimed)):
        key, content_hash, payload = versions[version_id]
        leased.append(
            DueDelivery(
                delivery_id, key, content_hash, payload, attempts_before, version_id
            )
        )
    return leased


@translated("recover expired leases")
def recover_expired_leases(
    session: Session, *, job: str, target: str, partition: int, partitions: int
) -> int:
    """Free deliveries whose worker died holding them, counting an attempt each.

    Nobody knows whether that worker's push reached the target, so each one
    gets an attempt with outcome "unknown"; the delivery is due again at once
    and keeps its idempotency key.
    """
    now = _utcnow()
    d = deliveries
    expired = (
        select(d.c.id)
        .where(
            d.c.job == job,
            d.c.target == target,
            d.c.status == PENDING,
            d.c.lease_owner.is_not(None),
            d.c.lease_expires_at < now,
            (d.c.key_hash % partitions) == partition,
        )
        .with_for_update(skip_locked=True)
    )
    error = "the worker's lease expired before it recorded an outcome"
    # Updating first makes the recovery count once even when two workers race.
    freed = session.execute(
        update(d)
        .where(d.c.id.in_(expired.scalar_subquery()), d.c.lease_owner.is_not(None))
        .values(
            attempts=d.c.attempts + 1,
            lease_owner=None,
            lease_expires_at=None,
            last_error=error,
            next_attempt_at=now,
            updated_at=now,
        )
        .returning(d.c.id, d.c.attempts)
    ).all()
    if freed:
        _supersede_overtaken(session, [row.id for row in freed], now)
        insert_rows(
            session,
            attempts,
            _ATTEMPT_COLUMNS,
            [
                (row.id, row.attempts, now, 0.0, None, OUTCOME_UNKNOWN, error, None)
                for row in freed
            ],
        )
    return len(freed)


@translated("record attempts")
def record_attempts(
    session: Session, *, owner: str, results: Sequence[AttemptResult]
) -> None:
    """Keep every attempt and move each delivery to its next status.

    Only deliveries still leased by ``owner`` change status: if the lease ran
    out and another worker took over, that worker's outcome wins, but the
    attempt itself is still kept.
    """
    if not results:
        return
    now = _utcnow()
    insert_rows(
        session,
        attempts,
        _ATTEMPT_COLUMNS,
        [
            (
                r.delivery_id,
                r.attempt_no,
                r.started_at,
                r.duration_ms,
                r.http_status,
                r.outcome,
                r.error,
                r.response_excerpt,
            )
            for r in results
        ],
    )
    d = deliveries
    delivered = [r.delivery_id for r in results if r.outcome == OUTCOME_DELIVERED]
    if delivered:
        session.execute(
            update(d)
            .where(one_of(d.c.id, "ids", session), d.c.lease_owner == owner)
            .values(
                status=DELIVERED,
                attempts=d.c.attempts + 1,
                lease_owner=None,
                lease_expires_at=None,
                last_error=None,
                updated_at=now,
            ),
            {"ids": delivered},
        )
    _set_unfinished(session, owner, results, now)


def _set_unfinished(
    session: Session, owner: str, results: Sequence[AttemptResult], now: dt.datetime
) -> None:
    d = deliveries
    rows = [
        {
            "b_id": r.delivery_id,
            "b_status": DEAD if r.outcome == OUTCOME_DEAD else PENDING,
            "b_next": r.next_attempt_at or now,
            "b_error": r.error,
        }
        for r in results
        if r.outcome in (OUTCOME_RETRY, OUTCOME_UNKNOWN, OUTCOME_DEAD)
    ]
    if not rows:
        return
    session.execute(
        update(d)
        .where(d.c.id == bindparam("b_id"), d.c.lease_owner == owner)
        .values(
            status=bindparam("b_status"),
            attempts=d.c.attempts + 1,
            next_attempt_at=bindparam("b_next"),
            last_error=bindparam("b_error"),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
        rows,
    )
    # A retry must not overtake a newer version of the same key later on.
    retried = [
        r.delivery_id for r in results if r.outcome in (OUTCOME_RETRY, OUTCOME_UNKNOWN)
    ]
    _supersede_overtaken(session, retried, now)


def _supersede_overtaken(
    session: Session, delivery_ids: Sequence[int], now: dt.datetime
) -> None:
    """Retire the pending ones among ``delivery_ids`` whose key has a newer version."""
    if not delivery_ids:
        return
    d = deliveries
    newer = aliased(deliveries)
    session.execute(
        update(d)
        .where(
            one_of(d.c.id, "ids", session),
            d.c.status == PENDING,
            exists().where(
                newer.c.job == d.c.job,
                newer.c.target == d.c.target,
                newer.c.record_key == d.c.record_key,
                newer.c.id > d.c.id,
            ),
        )
        .values(status=SUPERSEDED, updated_at=now),
        {"ids": list(delivery_ids)},
    )


@translated("release leases")
def release_leases(session: Session, *, owner: str) -> int:
    """Hand back every lease ``owner`` still holds (e.g. on a clean shutdown)."""
    released = session.execute(
        update(deliveries)
        .where(deliveries.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    return _rowcount(released)


@translated("forget a job")
def forget_job(session: Session, job: str) -> None:
    """Delete every row of ``job``, from attempts and rejected records to cursors."""
    job_deliveries = select(deliveries.c.id).where(deliveries.c.job == job)
    session.execute(delete(attempts).where(attempts.c.delivery_id.in_(job_deliveries)))
    tables = (
        deliveries,
        record_versions,
        rejected_records,
        pages,
        cursors,
        partition_leases,
    )
    for table in tables:
        session.execute(delete(table).where(table.c.job == job))

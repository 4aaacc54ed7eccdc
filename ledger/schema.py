"""The ledger's tables, from cursors and pages to attempts and rejected records.

Payloads are stored as the canonical JSON text that is pushed to targets, so
a push sends stored bytes without re-encoding them. On Postgres a notebook can
still query them with ``payload::jsonb``.

Record versions, deliveries and attempts get a row per record and declare no
foreign keys: their per-row checks cost a third of the ledger's write time,
and ``ledger.store``, the only writer, inserts each parent row before its
children in the same transaction (migration 0004 has the figures). The ids
still join as the names say: ``page_id`` to ``pages``, ``record_version_id``
to ``record_versions``, ``delivery_id`` to ``deliveries``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Postgres wants BIGINT ids; SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Delivery statuses. "pending" rows carry a lease while a push task holds them.
PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
SUPERSEDED = "superseded"
STATUSES = (PENDING, DELIVERED, DEAD, SUPERSEDED)

# Attempt outcomes.
OUTCOME_DELIVERED = "delivered"
OUTCOME_RETRY = "retry"
OUTCOME_DEAD = "dead"
# The push may or may not have reached the target: a timeout, a connection
# cut after sending, or a worker that died holding the lease.
OUTCOME_UNKNOWN = "unknown"


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        value = value.astimezone(dt.UTC)
        # SQLite stores text; a naive UTC value keeps its ordering comparable.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING: dict[str, Any] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Cursor(Base):
    """Where a shard's reading resumes; saved in the same transaction as its page."""

    __tablename__ = "cursors"

    job: Mapped[str] = mapped_column(String(63), primary_key=True)
    shard: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Page(Base):
    """One source answer that was staged."""

    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(63))
    shard: Mapped[str] = mapped_column(String(63))
    fetched_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    cursor_before: Mapped[str | None] = mapped_column(Text)
    cursor_after: Mapped[str] = mapped_column(Text)
    records_fetched: Mapped[int] = mapped_column(Integer)
    versions_staged: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index(None, "job", "shard", "id"),)


class RecordVersion(Base):
    """One content of one key, as fetched."""

    __tablename__ = "record_versions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(63))
    record_key: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    shard: Mapped[str] = mapped_column(String(63))
    page_id: Mapped[int] = mapped_column(Id)
    fetched_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index(None, "job", "record_key", "id"),
        Index(None, "page_id"),
    )


class Delivery(Base):
    """One record version owed to one target."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(63))
    record_version_id: Mapped[int] = mapped_column(Id)
    record_key: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        # Only pending rows, in the order claims take them: a delivered row
        # leaves this index, so claims never walk past the delivered ones.
        Index(
            None,
            "job",
            "target",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(None, "job", "target", "record_key"),
        Index(None, "record_version_id"),
        # Lease updates then stay on the row's page without index writes.
        {"postgresql_with": {"fillfactor": 50}},
    )


class Attempt(Base):
    """One try of a delivery, with its outcome."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(Id)
    attempt_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "delivery_id"),)


class PartitionLease(Base):
    """Which push loop sends one partition of one target, and until when.

    One sender per partition at a time keeps a key's versions in order at
    the target even when several workers run the job; a dead worker's lease
    runs out and another takes the partition over.
    """

    __tablename__ = "partition_leases"

    job: Mapped[str] = mapped_column(String(63), primary_key=True)
    target: Mapped[str] = mapped_column(String(63), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(80))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


# A rejected record keeps the start of its canonical JSON, never all of it.
REJECTED_EXCERPT_CHARS = 200


class Rejection(Base):
    """A fetched record that was not staged, kept with the reason."""

    __tablename__ = "rejected_records"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(63))
    shard: Mapped[str] = mapped_column(String(63))
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))
    # None when the record was rejected before its key could be read.
    record_key: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    excerpt: Mapped[str] = mapped_column(String(REJECTED_EXCERPT_CHARS))
    fetched_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index(None, "job", "fetched_at"),
        Index(None, "page_id"),
    )


cursors = cast(Table, Cursor.__table__)
pages = cast(Table, Page.__table__)
record_versions = cast(Table, RecordVersion.__table__)
deliveries = cast(Table, Delivery.__table__)
attempts = cast(Table, Attempt.__table__)
rejected_records = cast(Table, Rejection.__table__)
partition_leases = cast(Table, PartitionLease.__table__)

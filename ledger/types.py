"""Values that cross the ledger boundary; plain frozen dataclasses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StagedVersion:
    """One record version as fetched, before the ledger decides if it is new."""

    key: str
    key_hash: int
    content_hash: str
    payload: str


@dataclass(frozen=True, slots=True)
class StageResult:
    versions_staged: int
    deliveries_created: int
    superseded: int
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A fetched record the ledger keeps only as a reason, never as a payload."""

    record_key: str | None
    reason: str
    size_bytes: int
    # The start of the canonical JSON, enough to recognise the record by eye.
    excerpt: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery claimed for one push, with the payload it carries."""

    delivery_id: int
    record_key: str
    content_hash: str
    payload: str
    attempts_before: int
    # Increases with every new version of any key, so a target can check order.
    record_version_id: int = 0


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The outcome of one attempt, and what happens to its delivery next."""

    delivery_id: int
    attempt_no: int
    started_at: dt.datetime
    duration_ms: float
    outcome: str
    http_status: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """Where one target's deliveries stand."""

    target: str
    pending: int
    retrying: int
    in_flight: int
    delivered: int
    dead: int
    superseded: int
    oldest_pending_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ShardCounts:
    """What one shard fetched and staged since a moment."""

    shard: str
    pages: int
    fetched: int
    staged: int


@dataclass(frozen=True, slots=True)
class TargetCounts:
    """What one target's attempts came to since a moment."""

    target: str
    delivered: int
    retried: int
    dead: int

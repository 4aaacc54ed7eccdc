"""A small record set for the demo app tests, with ties on ``updated_at``."""

from __future__ import annotations

# (id, updated_at, origin, dep_delay, flight). Timestamps tie on purpose, ids do
# not follow time, and id 12 is written with a +02:00 offset (12:00 UTC).
SMALL_ROWS: list[tuple[int, str, str, float | None, int]] = [
    (1, "2013-01-01T11:00:00Z", "EWR", 2.0, 100),
    (2, "2013-01-01T10:00:00Z", "LGA", None, 200),
    (3, "2013-01-01T10:00:00Z", "EWR", -1.0, 100),
    (4, "2013-01-01T12:00:00Z", "JFK", 0.0, 300),
    (5, "2013-01-01T11:00:00Z", "EWR", None, 200),
    (6, "2013-01-01T10:00:00Z", "JFK", 7.0, 300),
    (7, "2013-01-01T12:00:00Z", "EWR", 3.0, 100),
    (8, "2013-01-01T11:00:00Z", "LGA", 1.0, 200),
    (9, "2013-01-01T10:00:00Z", "EWR", -4.0, 300),
    (10, "2013-01-01T13:00:00Z", "JFK", 5.0, 100),
    (11, "2013-01-01T11:00:00Z", "EWR", 12.0, 200),
    (12, "2013-01-01T14:00:00+02:00", "LGA", 0.0, 300),
]

#: The ids of SMALL_ROWS in (updated_at as UTC, id) order.
SMALL_ORDER = [2, 3, 6, 9, 1, 5, 8, 11, 4, 7, 12, 10]


def small_records() -> list[dict[str, object]]:
    """Fresh copies of the small record set, in id order."""
    return [
        {
            "id": record_id,
            "updated_at": updated_at,
            "origin": origin,
            "dep_delay": dep_delay,
            "flight": flight,
        }
        for record_id, updated_at, origin, dep_delay, flight in SMALL_ROWS
    ]

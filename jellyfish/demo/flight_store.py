"""The demo source's records, kept in keyset order for cheap paging.

Records are ordered by (``updated_at`` as a UTC instant, ``id``): the same
compound cursor a real incremental source offers, with the tie-break on ``id``
that the flights need because thousands of them share a ``time_hour``. A page
is found by bisecting a sorted list of (instant, id) keys, so it costs
O(log n + page) whatever the data set size.
"""

from __future__ import annotations

import gc
import json
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jellyfish.demo.data import content_hash

logger = logging.getLogger(__name__)

Record = dict[str, object]
#: (microseconds since the epoch in UTC, id): the order pages are served in.
Key = tuple[int, int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def instant_us(timestamp: str) -> int:
    """Parse an ISO-8601 timestamp into microseconds since the epoch in UTC.

    Args:
        timestamp: Any ISO-8601 form Python reads, with ``Z``, an offset such as
            ``+02:00``, or no offset (read as UTC).

    Returns:
        The instant, so that equal instants written with different offsets
        compare equal.

    Raises:
        ValueError: ``timestamp`` is not ISO-8601.
    """
    return moment_us(datetime.fromisoformat(timestamp))


def moment_us(moment: datetime) -> int:
    """Microseconds since the epoch of a datetime; a naive one is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_US


def format_instant(microseconds: int) -> str:
    """Format microseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    moment = _EPOCH + timedelta(microseconds=microseconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def field_text(value: object) -> str:
    """The text a shard filter value is compared with: JSON, but bare strings."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class _KeyIndex:
    """Records and their keys, both in keyset order."""

    keys: list[Key] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


class FlightStore:
    """Records in (``updated_at``, ``id``) order, with lazy per-field indexes."""

    def __init__(self, records: Sequence[Mapping[str, object]]) -> None:
        """Copy and sort ``records``.

        Args:
            records: Records with an int ``id`` and an ISO-8601 ``updated_at``;
                they are copied, so the caller's records never change.

        Raises:
            ValueError: A record lacks an int ``id`` or an ISO-8601
                ``updated_at``, or two records share an ``id``.
        """
        # Every object built here lives as long as the store, so the collector
        # would only rescan them again and again: pausing it makes building
        # the store over all flights about three times faster.
        with _collector_paused():
            self._index_copies(records)
        # field -> field text -> index; built on first use, kept up to date.
        self._field_indexes: dict[str, dict[str, _KeyIndex]] = {}
        # id -> content_hash, filled by digest(), dropped per changed record.
        self._hash_by_id: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._all.keys)

    def page(
        self, after: Key | None, filters: Mapping[str, str], limit: int
    ) -> list[Record]:
        """Return up to ``limit`` records strictly after ``after`` in key order.

        Args:
            after: The last key already read, or ``None`` to start at the top.
            filters: Field name to required :func:`field_text`; the first one
                uses an index, the others are checked while scanning.
            limit: The most records to return.

        Returns:
            The records, in (``updated_at``, ``id``) order.
        """
        index = self._all
        remaining = list(filters.items())
        if remaining:
            name, text = remaining.pop(0)
            index = self._field_index(name).get(text, _KeyIndex())
        start = 0 if after is None else bisect_right(index.keys, after)

        if not remaining:
            return index.records[start : start + limit]
        page: list[Record] = []
        for position in range(start, len(index.records)):
            record = index.records[position]
            if all(field_text(record.get(k)) == v for k, v in remaining):
                page.append(record)
                if len(page) == limit:
                    break
        return page

    def change(self, count: int, now: datetime) -> list[int]:
        """Give ``count`` evenly spaced records a new version.

        The records chosen are at positions ``i * n // count`` (``i`` from 0)
        of the ids in ascending order, so a test can predict them. Each gets
        ``dep_delay`` plus 1 (missing or non-numeric becomes 1.0) and an
        ``updated_at`` after every other record's, one microsecond apart.

        Args:
            count: How many records to change; more than there are means all.
            now: The current time; stamps start there unless data is newer.

        Returns:
            The changed ids, in the order of their new ``updated_at``.

        Raises:
            ValueError: ``count`` is below 1.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        ids = sorted(self._by_id)
        count = min(count, len(ids))
        chosen = [ids[i * len(ids) // count] for i in range(count)]

        # Stamps after every existing one move the changed records to the end
        # of each index, so the order holds without a sort.
        newest = self._all.keys[-1][0] if self._all.keys else 0
        stamp = max(moment_us(now), newest + 1)
        for record_id in chosen:
            record = self._by_id[record_id]
            self._unindex(record, self._key_by_id[record_id])
            _bump_version(record, format_instant(stamp))
            new_key = (stamp, record_id)
            self._index(record, new_key)
            self._key_by_id[record_id] = new_key
            self._hash_by_id.pop(record_id, None)
            stamp += 1
        logger.info("changed records=%d", len(chosen))
        return chosen

    def digest(self) -> dict[str, str]:
        """Map each id (as text) to the :func:`content_hash` of its record."""
        hashes = self._hash_by_id
        for record_id, record in self._by_id.items():
            if record_id not in hashes:
                hashes[record_id] = content_hash(record)
        return {str(record_id): hashes[record_id] for record_id in self._by_id}

    def _unindex(self, record: Record, key: Key) -> None:
        """Remove a record from every index it is in."""
        indexes = [self._all]
        for name, groups in self._field_indexes.items():
            indexes.append(groups[field_text(record.get(name))])
        for index in indexes:
            position = bisect_left(index.keys, key)
            del index.keys[position]
            del index.records[position]

    def _index(self, record: Record, key: Key) -> None:
        """Append a record whose key is the newest to every index it belongs in."""
        indexes = [self._all]
        for name, groups in self._field_indexes.items():
            indexes.append(groups.setdefault(field_text(record.get(name)), _KeyIndex()))
        for index in indexes:
            index.keys.append(key)
            index.records.append(record)

    def _index_copies(self, records: Sequence[Mapping[str, object]]) -> None:
        """Build the keyset order, the id lookups and the field names."""
        keyed = _keyed_copies(records)
        self._all = _KeyIndex(
            keys=[key for key, _ in keyed], records=[record for _, record in keyed]
        )
        self._key_by_id: dict[int, Key] = {key[1]: key for key, _ in keyed}
        self._by_id: dict[int, Record] = {key[1]: record for key, record in keyed}
        if len(self._by_id) != len(keyed):
            raise ValueError("records must have distinct 'id' values")

        names: set[str] = set()
        for record in self._all.records:
            names.update(record)
        self.fields: frozenset[str] = frozenset(names)

    def _field_index(self, name: str) -> dict[str, _KeyIndex]:
        """Group every record by one field's text, keeping keyset order."""
        groups = self._field_indexes.get(name)
        if groups is None:
            groups = {}
            for key, record in zip(self._all.keys, self._all.records, strict=True):
                group = groups.setdefault(field_text(record.get(name)), _KeyIndex())
                group.keys.append(key)
                group.records.append(record)
            self._field_indexes[name] = groups
        return groups


def _keyed_copies(records: Sequence[Mapping[str, object]]) -> list[tuple[Key, Record]]:
    """Copy each record with its key, sorted by key; reject records without one."""
    # Thousands of flights share a timestamp, so parse each text once.
    parsed: dict[str, int] = {}
    keyed: list[tuple[Key, Record]] = []
    for position, original in enumerate(records):
        record = dict(original)
        record_id = record.get("id")
        stamp = record.get("updated_at")
        if not isinstance(record_id, int) or isinstance(record_id, bool):
            raise ValueError(
                f"record at position {position} needs an int 'id', "
                f"got {type(record_id).__name__}"
            )
        if not isinstance(stamp, str):
            raise ValueError(
                f"record id={record_id} needs an ISO-8601 'updated_at' string, "
                f"got {type(stamp).__name__}"
            )
        if stamp not in parsed:
            parsed[stamp] = instant_us(stamp)
        keyed.append(((parsed[stamp], record_id), record))
    keyed.sort(key=lambda pair: pair[0])
    return keyed


def _bump_version(record: Record, updated_at: str) -> None:
    """Make a new version: ``dep_delay`` plus 1 (1.0 if missing), a new stamp."""
    delay = record.get("dep_delay")
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        record["dep_delay"] = delay + 1
    else:
        record["dep_delay"] = 1.0
    record["updated_at"] = updated_at


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, if it was running."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

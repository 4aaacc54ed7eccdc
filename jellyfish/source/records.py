"""Turn fetched JSON objects into staged record versions.

A record version is identified by its key and the hash of its canonical JSON;
the canonical text is also the exact body pushed to targets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zlib
from collections.abc import Sequence
from typing import Any

from jellyfish.job import CursorField
from ledger.types import StagedVersion

JsonScalar = str | int | float | bool | None


class RecordShapeError(ValueError):
    """A record lacks a key or cursor field, or holds an unusable value there."""


def canonical_json(record: Any) -> str:
    """Stable JSON text: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_key(record: dict[str, Any], key_fields: Sequence[str]) -> str:
    """The key as text: the bare value for one field, a JSON list for several.

    Raises:
        RecordShapeError: a key field is missing or null.
    """
    values = []
    for field in key_fields:
        value = record.get(field)
        if value is None:
            state = "null" if field in record else "missing"
            raise RecordShapeError(f"key field {field!r} is {state}")
        values.append(value)
    if len(values) == 1:
        return str(values[0])
    return canonical_json(values)


def stage_record(record: dict[str, Any], key_fields: Sequence[str]) -> StagedVersion:
    """Key, hashes and canonical payload of one fetched record."""
    key = record_key(record, key_fields)
    payload = canonical_json(record)
    return StagedVersion(
        key=key,
        key_hash=zlib.crc32(key.encode()) & 0x7FFFFFFF,
        content_hash=hashlib.sha256(payload.encode()).hexdigest(),
        payload=payload,
    )


def parse_instant(value: JsonScalar) -> dt.datetime:
    """An ISO-8601 timestamp as an aware UTC datetime; no offset means UTC."""
    if not isinstance(value, str):
        raise RecordShapeError(
            f"expected an ISO-8601 string, got {type(value).__name__}"
        )
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise RecordShapeError(f"{value[:40]!r} is not an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _comparable(value: JsonScalar, field: CursorField) -> Any:
    if value is None:
        raise RecordShapeError(f"cursor field {field.name!r} is null")
    if field.type == "timestamp":
        return parse_instant(value)
    if field.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise RecordShapeError(
                f"cursor field {field.name!r} should be an integer, "
                f"got {type(value).__name__}"
            )
        try:
            return int(value)
        except ValueError:
            raise RecordShapeError(
                f"cursor field {field.name!r} should be an integer, "
                "got a str that is not one"
            ) from None
    if field.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise RecordShapeError(
                f"cursor field {field.name!r} should be a number, "
                f"got {type(value).__name__}"
            )
        try:
            return float(value)
        except ValueError:
            raise RecordShapeError(
                f"cursor field {field.name!r} should be a number, "
                "got a str that is not one"
            ) from None
    return str(value)


def cursor_values(
    record: dict[str, Any], fields: Sequence[CursorField]
) -> tuple[JsonScalar, ...]:
    """The record's raw cursor values, as the source wrote them."""
    values = []
    for field in fields:
        if field.name not in record:
            raise RecordShapeError(f"cursor field {field.name!r} is missing")
        values.append(record[field.name])
    return tuple(values)


def cursor_order(
    values: Sequence[JsonScalar], fields: Sequence[CursorField]
) -> tuple[Any, ...]:
    """A sort key for raw cursor values: timestamps compare as UTC instants."""
    return tuple(_comparable(v, f) for v, f in zip(values, fields, strict=True))

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
from ledger.schema import REJECTED_EXCERPT_CHARS
from ledger.types import RejectedRecord, StagedVersion

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


def _version(key: str, payload: str, encoded: bytes) -> StagedVersion:
    return StagedVersion(
        key=key,
        key_hash=zlib.crc32(key.encode()) & 0x7FFFFFFF,
        content_hash=hashlib.sha256(encoded).hexdigest(),
        payload=payload,
    )


def stage_record(record: dict[str, Any], key_fields: Sequence[str]) -> StagedVersion:
    """Key, hashes and canonical payload of one fetched record."""
    payload = canonical_json(record)
    return _version(record_key(record, key_fields), payload, payload.encode())


def stage_or_reject(
    record: dict[str, Any], key_fields: Sequence[str], max_record_bytes: int
) -> StagedVersion | RejectedRecord:
    """The record's version, or its rejection when its canonical JSON is too large.

    A rejection keeps the key when it can be read, the size, and an excerpt of
    the canonical JSON, never the whole of it.

    Raises:
        RecordShapeError: a key field of a record within the limit is missing.
    """
    payload = canonical_json(record)
    encoded = payload.encode()
    if len(encoded) <= max_record_bytes:
        return _version(record_key(record, key_fields), payload, encoded)
    try:
        key: str | None = record_key(record, key_fields)
    except RecordShapeError:
        key = None
    return RejectedRecord(
        record_key=key,
        reason=f"canonical JSON is {len(encoded)} bytes, above max_record_bytes "
        f"{max_record_bytes}",
        size_bytes=len(encoded),
        excerpt=payload[:REJECTED_EXCERPT_CHARS],
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


def shift_instant(value: JsonScalar, seconds: float) -> str:
    """An ISO-8601 timestamp moved by ``seconds``, written in the same offset.

    "Z" stays "Z" and a naive value stays naive, so the source reads the moved
    value exactly as it would read one of its own.

    Raises:
        RecordShapeError: ``value`` is not an ISO-8601 string.
    """
    parse_instant(value)  # refuses anything but an ISO-8601 string
    raw = str(value)
    moved = dt.datetime.fromisoformat(raw) + dt.timedelta(seconds=seconds)
    text = moved.isoformat()
    if raw.endswith(("Z", "z")) and text.endswith("+00:00"):
        return text.removesuffix("+00:00") + "Z"
    return text


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

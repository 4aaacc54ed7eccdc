"""What the demo target checks before it keeps anything.

Each check reads one part of a request (the body, the fault settings, the
record version headers, the signature) and either returns what it found or
raises ``BodyError`` / returns a problem whose message goes back in a 400 or
401 answer. ``target_app`` wires them into its routes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from jellyfish.target import headers

SIGNATURE_TOLERANCE_S = 300
_DIGITS = re.compile(r"[0-9]+")


class BodyError(ValueError):
    """A posted body or header has the wrong shape; the message says how."""


@dataclass
class Faults:
    """Which requests fail, which batch items are refused, and the seed."""

    fail_rate: float = 0.0
    status: int = 503
    reject_keys: frozenset[str] = frozenset()
    reject_rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def is_refused(self, key: str) -> bool:
        """Whether the per-item batch route refuses the record keyed ``key``."""
        if key in self.reject_keys:
            return True
        return self.reject_rate > 0 and self.rng.random() < self.reject_rate


def parse_records(
    body: bytes, key_field: str, batch: bool
) -> list[tuple[str, dict[str, object]]]:
    """Check a whole body before anything is stored; pair each record with its key."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise BodyError("the body is not valid JSON") from None

    if not batch:
        items = [payload]
    elif isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict) and isinstance(payload.get("records"), list):
        items = payload["records"]
    else:
        raise BodyError(
            "a batch body must be a JSON array of objects or "
            f'{{"records": [...]}}, got {type(payload).__name__}'
        )

    keyed: list[tuple[str, dict[str, object]]] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise BodyError(
                f"record {position} must be a JSON object, got {type(item).__name__}"
            )
        key = item.get(key_field)
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise BodyError(
                f"record {position} needs the key field {key_field!r} as a string "
                f"or integer, got {type(key).__name__}"
            )
        keyed.append((str(key), item))
    return keyed


def parse_versions(
    request_headers: Mapping[str, str], batch: bool, count: int
) -> list[int | None]:
    """The record version id of each record, or ``None`` each when none was sent.

    A single record's id is in ``X-JellyFish-Record-Version``; a batch's ids
    are in ``X-JellyFish-Record-Versions``, comma-separated, in body order.

    Raises:
        BodyError: The header is not made of integers, or holds another
            number of ids than the body holds records.
    """
    name = headers.RECORD_VERSIONS if batch else headers.RECORD_VERSION
    value = request_headers.get(name)
    if value is None:
        return [None] * count
    parts = value.split(",") if batch else [value]
    if not all(_DIGITS.fullmatch(part.strip()) for part in parts):
        raise BodyError(f"{name} must hold integers, got {value[:40]!r}")
    if len(parts) != count:
        raise BodyError(f"{name} holds {len(parts)} ids for {count} records")
    return [int(part) for part in parts]


def signature_problem(
    request_headers: Mapping[str, str], body: bytes, secret: str, now_s: float
) -> str | None:
    """Why a request's signature is not acceptable, or ``None`` when it is.

    The signature must be ``sha256=`` and the hex HMAC-SHA256, under
    ``secret``, of the timestamp, a dot and the body; the timestamp must be
    within ``SIGNATURE_TOLERANCE_S`` of ``now_s``, so an old request cannot be
    replayed.
    """
    timestamp = request_headers.get(headers.TIMESTAMP)
    sent = request_headers.get(headers.SIGNATURE)
    if timestamp is None or sent is None:
        return f"the request needs {headers.TIMESTAMP} and {headers.SIGNATURE}"
    if not _DIGITS.fullmatch(timestamp):
        return f"{headers.TIMESTAMP} must be Unix seconds"
    if abs(now_s - int(timestamp)) > SIGNATURE_TOLERANCE_S:
        return (
            f"{headers.TIMESTAMP} is more than {SIGNATURE_TOLERANCE_S} s "
            "from the target's clock"
        )
    signed = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    # Compared as bytes in constant time; a header is latin-1 on the wire.
    if not hmac.compare_digest(f"sha256={digest}".encode(), sent.encode("latin-1")):
        return f"{headers.SIGNATURE} does not match the body"
    return None


def parse_faults(body: bytes) -> Faults:
    """Read ``{"fail_rate": 0.5, "status": 503, "seed": 1, "reject_keys": ["7"],
    "reject_rate": 0.1}``; every field is optional."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise BodyError("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BodyError(f"the body must be a JSON object, got {type(payload).__name__}")

    fail_rate = _rate(payload, "fail_rate")
    reject_rate = _rate(payload, "reject_rate")
    status = payload.get("status", 503)
    seed = payload.get("seed", 1)
    reject_keys = payload.get("reject_keys", [])
    if isinstance(status, bool) or not isinstance(status, int):
        raise BodyError(f"status must be an integer, got {type(status).__name__}")
    if not 100 <= status <= 599:
        raise BodyError(f"status must be an HTTP status (100-599), got {status}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BodyError(f"seed must be an integer, got {type(seed).__name__}")
    if not isinstance(reject_keys, list) or not all(
        isinstance(k, str | int) and not isinstance(k, bool) for k in reject_keys
    ):
        raise BodyError("reject_keys must be a list of strings or integers")
    return Faults(
        fail_rate=fail_rate,
        status=status,
        reject_keys=frozenset(str(k) for k in reject_keys),
        reject_rate=reject_rate,
        rng=random.Random(seed),
    )


def _rate(payload: dict[str, object], name: str) -> float:
    value = payload.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise BodyError(f"{name} must be between 0 and 1, got {value}")
    return float(value)

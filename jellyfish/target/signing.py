"""Sign request bodies so a target can tell they came from this job unchanged.

Each signed request carries two headers::

    X-JellyFish-Timestamp: 1767225600
    X-JellyFish-Signature: sha256=<hex HMAC-SHA256(secret, b"1767225600." + body)>

The timestamp is inside the signed text, so a captured request cannot be
replayed later with a new timestamp; a receiver rejects old timestamps. How
to check both is shown in ``docs/signatures.md``.
"""

from __future__ import annotations

import hashlib
import hmac

from jellyfish.target.headers import SIGNATURE, TIMESTAMP

SIGNATURE_PREFIX = "sha256="


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-JellyFish-Signature`` value for ``body`` sent at ``timestamp``.

    Args:
        secret: The shared secret, as text (UTF-8 encoded for the HMAC key).
        timestamp: Unix seconds, as sent in ``X-JellyFish-Timestamp``.
        body: The exact bytes of the request body.

    Returns:
        ``"sha256="`` followed by the lowercase hex HMAC-SHA256 digest.
    """
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Both signing headers for one request."""
    return {
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, body),
    }

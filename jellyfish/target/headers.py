"""Names of the headers Data JellyFish adds to every push, for clients and targets.

    Idempotency-Key                 same on every attempt of a record version
    X-JellyFish-Record-Version      single push: the record version id
    X-JellyFish-Record-Versions     batch: the ids, comma-separated, in body order
    X-JellyFish-Timestamp           signed pushes: Unix seconds when sent
    X-JellyFish-Signature           signed pushes: "sha256=" + hex HMAC

A record version id grows with every new version of any key, so a target can
keep the highest id seen per key and refuse (or count) an older one.
"""

from __future__ import annotations

IDEMPOTENCY_KEY = "Idempotency-Key"
RECORD_VERSION = "X-JellyFish-Record-Version"
RECORD_VERSIONS = "X-JellyFish-Record-Versions"
TIMESTAMP = "X-JellyFish-Timestamp"
SIGNATURE = "X-JellyFish-Signature"

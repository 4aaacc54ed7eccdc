"""A shard's cursor: what has been read, and where the current pass stands.

``high_water`` holds the raw cursor values of the newest record staged so far
(incremental mode). ``since`` freezes that mark (moved back by the source's
``lookback_s``, if any) at the start of a pass so that every page of the pass
asks the same question. ``position`` is the paginator's own place inside the
pass (a keyset, offset, page, token or URL); it is None between passes. The
whole state is saved with each staged page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

JsonValue = Any


@dataclass(frozen=True)
class CursorState:
    high_water: tuple[Any, ...] | None = None
    since: tuple[Any, ...] | None = None
    position: JsonValue = None

    @property
    def is_mid_pass(self) -> bool:
        return self.position is not None

    def start_pass(self, incremental: bool) -> CursorState:
        """The state a pass begins from: resume mid-pass, or ask from the mark."""
        if self.is_mid_pass:
            return self
        return replace(self, since=self.high_water if incremental else None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "high_water": None
                if self.high_water is None
                else list(self.high_water),
                "since": None if self.since is None else list(self.since),
                "position": self.position,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> CursorState:
        if not text:
            return cls()
        data = json.loads(text)
        high_water = data.get("high_water")
        since = data.get("since")
        return cls(
            high_water=None if high_water is None else tuple(high_water),
            since=None if since is None else tuple(since),
            position=data.get("position"),
        )

    def describe(self) -> str:
        """A short form for logs and messages (cursor values are not secrets)."""
        parts = []
        if self.high_water is not None:
            parts.append(f"high_water={list(self.high_water)}")
        if self.position is not None:
            parts.append(f"position={json.dumps(self.position)[:120]}")
        return " ".join(parts) or "start"

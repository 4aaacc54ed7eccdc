"""Read a batch answer that reports each record on its own.

With ``item_results: {path: results, ok_field: ok, error_field: error}`` a
batch of three may be answered::

    {"results": [{"ok": true}, {"ok": false, "error": "stale"}, {"ok": true}]}

The list is in the order the records were sent, one entry per record; the
second record is retried and the others are delivered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jellyfish.job import ItemResults
from jellyfish.source.paginators import lookup
from ledger.errors import JellyFishError


class ItemResultsShapeError(JellyFishError):
    """The answer has no usable per-item list; the message says what it had.

    The target client turns it into a retry of the whole batch; it never
    leaves the client.
    """


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the target said about one record of a batch.

    ``error`` and ``entry`` (the entry as JSON text) come whole from the
    target: the caller redacts secrets before it cuts them to length.
    """

    is_stored: bool
    error: str | None = None
    entry: str | None = None


def read_item_results(answer: Any, rule: ItemResults, count: int) -> list[ItemResult]:
    """One result per record sent, in the order sent.

    Args:
        answer: The decoded JSON answer.
        rule: Where the list and each entry's verdict and error are.
        count: How many records the batch held.

    Returns:
        ``count`` results.

    Raises:
        ItemResultsShapeError: The list is missing, is not a list, has another
            length, or holds something other than objects.
    """
    entries = lookup(answer, rule.path)
    where = f"answer's {rule.path!r}" if rule.path else "answer"
    if not isinstance(entries, list):
        shape = "missing" if entries is None else f"a {type(entries).__name__}"
        raise ItemResultsShapeError(
            f"{where} is {shape}, expected a list of {count} item results"
        )
    if len(entries) != count:
        raise ItemResultsShapeError(
            f"{where} holds {len(entries)} item results, expected {count} "
            "(one per record sent)"
        )
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ItemResultsShapeError(
                f"{where} item {position} of {count} is a "
                f"{type(entry).__name__}, expected an object"
            )
    return [_item(entry, rule, i, count) for i, entry in enumerate(entries, 1)]


def _item(
    entry: dict[str, Any], rule: ItemResults, position: int, count: int
) -> ItemResult:
    verdict = lookup(entry, rule.ok_field)
    # JSON's 1 must not pass for true, nor true for 1, as Python's == allows.
    is_same_kind = isinstance(verdict, bool) == isinstance(rule.ok_equals, bool)
    if verdict == rule.ok_equals and is_same_kind:
        return ItemResult(is_stored=True)
    reason = lookup(entry, rule.error_field) if rule.error_field else None
    if isinstance(reason, str) and reason:
        said = reason
    else:
        said = f"{rule.ok_field!r} is {verdict!r}, expected {rule.ok_equals!r}"
    return ItemResult(
        is_stored=False,
        error=f"target refused item {position} of {count}: {said}",
        entry=json.dumps(entry, ensure_ascii=False, separators=(",", ":")),
    )

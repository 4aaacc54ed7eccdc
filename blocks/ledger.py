"""A Prefect block that holds the ledger's URL as a secret."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from ledger.errors import LedgerError

BLOCK_PREFIX = "block:"


class LedgerConnection(Block):
    """Where a job's ledger lives, kept out of job files and deployment params.

    Save one with ``LedgerConnection(url="postgresql://...").save("prod-ledger")``
    and pass ``ledger="block:prod-ledger"`` to a run.
    """

    _block_type_name = "Data JellyFish Ledger"
    _block_type_slug = "jellyfish-ledger"
    _description = "The ledger database URL of Data JellyFish jobs."

    url: SecretStr = Field(
        description="SQLAlchemy URL, e.g. postgresql://user:password@host/db."
    )


def resolve_ledger(value: str | None) -> str | None:
    """A ledger URL from ``block:NAME``, or ``value`` itself."""
    if value is None or not value.startswith(BLOCK_PREFIX):
        return value
    name = value[len(BLOCK_PREFIX) :]
    try:
        block: LedgerConnection = LedgerConnection.load(name, _sync=True)  # type: ignore[call-arg, assignment]
    except ValueError as exc:
        raise LedgerError(
            f"no LedgerConnection block named {name!r}; save one with "
            f"LedgerConnection(url=...).save({name!r})"
        ) from exc
    return block.url.get_secret_value()

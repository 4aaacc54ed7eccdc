"""Every exception Data JellyFish raises on purpose.

    JellyFishError
    ├── JobConfigError        a job file is missing, unreadable or invalid
    ├── SecretNotFoundError   a secret reference points at nothing
    ├── LedgerError           the ledger database failed or is not reachable
    │   └── CursorMovedError  another worker moved a shard's cursor first
    ├── SourceError           a source page could not be fetched or understood
    │   └── PaginationLoopError  the source served the same page or token again
    └── PassFailedError       a sync pass ended with failed shards or dead letters

Each error keeps its context as attributes and pickles cleanly, because Prefect
may serialize a task's exception into its final state.
"""

from __future__ import annotations


class JellyFishError(Exception):
    """Base of all Data JellyFish errors; ``str(error)`` is the whole message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[JellyFishError], tuple[str]]:
        return (type(self), (self.message,))


class JobConfigError(JellyFishError):
    """A job file is missing, is not YAML, or does not fit the job model."""


class SecretNotFoundError(JellyFishError):
    """An environment variable or Prefect block named by a job does not exist."""


class LedgerError(JellyFishError):
    """The ledger database refused a statement or could not be reached."""


class CursorMovedError(LedgerError):
    """A shard's cursor changed under us: another worker staged the same page."""


class SourceError(JellyFishError):
    """A source page failed: transport error, bad status or unexpected shape."""


class PaginationLoopError(SourceError):
    """The source answered with a page or next-page token it had already served."""


class PassFailedError(JellyFishError):
    """A sync pass finished, but some shards failed or deliveries went dead."""

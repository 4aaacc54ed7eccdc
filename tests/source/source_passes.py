"""Helpers to build a job around a test source and read a pass from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jellyfish.job import Job, parse_job
from jellyfish.source.client import FetchedPage, SourceClient
from jellyfish.source.cursor import CursorState


def make_job(source: dict[str, Any], name: str = "paged") -> Job:
    """A job around ``source``; its target is never called by these tests."""
    data = {
        "name": name,
        "source": source,
        "targets": [{"name": "unused", "url": "http://127.0.0.1:9/records"}],
    }
    return parse_job(data, Path(f"{name}.yaml"))


def read_pass(
    job: Job, saved: CursorState | None = None, shard: str | None = None
) -> list[FetchedPage]:
    """Every page of one pass of ``shard`` (the first one by default)."""
    spec = next(s for s in job.source.shards if shard in (None, s.name))
    with SourceClient.open_http(job) as http:
        client = SourceClient(job, spec, http)
        return list(client.pages(saved or CursorState()))


def keys_of(pages: list[FetchedPage]) -> list[str]:
    """The keys of every record version of ``pages``, in the order read."""
    return [record.key for page in pages for record in page.records]

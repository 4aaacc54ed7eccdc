"""Helpers to build a job around a test source, read a pass and stage it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from jellyfish.job import Job, parse_job
from jellyfish.source.client import FetchedPage, SourceClient
from jellyfish.source.cursor import CursorState
from ledger.engine import get_engine
from ledger.store import load_cursor, stage_page
from ledger.types import StageResult


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


def stage_pass(
    job: Job, shard: str, ledger_url: str, stop_after: int | None = None
) -> list[StageResult]:
    """One pass of ``shard`` staged page by page, as the fetch task does it.

    With ``stop_after=k`` the worker "crashes" once page k is committed: page
    k+1 has been fetched, but it is never staged and the pass goes no further.
    """
    engine = get_engine(ledger_url)
    spec = next(s for s in job.source.shards if s.name == shard)
    with Session(engine) as session:
        saved = load_cursor(session, job.name, shard)
    results: list[StageResult] = []
    with SourceClient.open_http(job) as http:
        pages = SourceClient(job, spec, http).pages(CursorState.from_json(saved))
        for page in pages:
            if len(results) == stop_after:
                break
            after = page.cursor_after.to_json()
            with Session(engine) as session, session.begin():
                results.append(
                    stage_page(
                        session,
                        job=job.name,
                        shard=shard,
                        versions=page.records,
                        fetched=page.fetched,
                        cursor_before=saved,
                        cursor_after=after,
                        targets=[t.name for t in job.targets],
                        rejected=page.rejected,
                    )
                )
            saved = after
        pages.close()
    return results

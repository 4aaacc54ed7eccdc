"""Fetch a shard's pages from the source and stage each one in the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from jellyfish.job import Job
from jellyfish.source.client import SourceClient
from jellyfish.source.cursor import CursorState
from ledger.engine import get_engine
from ledger.store import load_cursor, stage_page


@dataclass(frozen=True)
class ShardPass:
    """What one pass over one shard did."""

    shard: str
    pages: int
    fetched: int
    staged: int


@task(name="fetch-and-stage-shard", cache_policy=NONE)
def fetch_and_stage_shard(job: Job, shard: str, ledger_url: str) -> ShardPass:
    """Read one shard until it is caught up, staging page by page.

    Each page's new record versions, their deliveries and the shard's next
    cursor are committed together, so a crash re-fetches at most one page.

    Args:
        job: the job definition.
        shard: name of one of the job's source shards.
        ledger_url: where the ledger lives.

    Returns:
        Counts of this pass.

    Raises:
        SourceError: a page failed; the cursor stays before that page.
        LedgerError: the ledger refused a page; nothing of it was kept.
    """
    logger = get_run_logger()
    engine = get_engine(ledger_url)
    spec = next(s for s in job.source.shards if s.name == shard)
    targets = [t.name for t in job.targets]

    with Session(engine) as session:
        saved = load_cursor(session, job.name, shard)
    logger.info(
        "job=%s shard=%s pass starts at %s",
        job.name,
        shard,
        CursorState.from_json(saved).describe(),
    )

    pages = fetched = staged = 0
    with SourceClient.open_http(job) as http:
        client = SourceClient(job, spec, http)
        for page in client.pages(CursorState.from_json(saved)):
            after = page.cursor_after.to_json()
            with Session(engine) as session, session.begin():
                result = stage_page(
                    session,
                    job=job.name,
                    shard=shard,
                    versions=page.records,
                    fetched=page.fetched,
                    cursor_before=saved,
                    cursor_after=after,
                    targets=targets,
                    rejected=page.rejected,
                )
            saved = after
            pages, fetched = pages + 1, fetched + page.fetched
            staged += result.versions_staged
            logger.info(
                "job=%s shard=%s page=%d records=%d staged=%d superseded=%d",
                job.name,
                shard,
                page.number,
                page.fetched,
                result.versions_staged,
                result.superseded,
            )
    return ShardPass(shard, pages, fetched, staged)

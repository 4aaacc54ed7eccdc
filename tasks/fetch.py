"""Fetch a shard's pages from the source and stage each one in the ledger."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.schemas.objects import State
from prefect.states import Failed
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from jellyfish.job import Job
from jellyfish.source.client import FetchedPage, SourceClient
from jellyfish.source.cursor import CursorState
from ledger.engine import get_engine
from ledger.errors import CursorMovedError, JellyFishError
from ledger.store import load_cursor, stage_page
from ledger.types import StageResult

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass(frozen=True)
class ShardPass:
    """What one pass over one shard did."""

    shard: str
    pages: int
    fetched: int
    staged: int


class ShardReader:
    """Reads one shard page by page and stages each page with its cursor.

    One pass of ``sync-job`` uses a reader once; continuous mode keeps one for
    a whole window, so its HTTP connection and its copy of the saved cursor
    live across polls and an idle poll never reads the ledger. ``pages``,
    ``fetched`` and ``staged`` count every committed page since the reader
    was opened, including those of a pass that ended in an error.
    """

    def __init__(self, job: Job, shard: str, engine: Engine, client: SourceClient):
        self.job = job
        self.shard = shard
        self._engine = engine
        self._client = client
        self._targets = [t.name for t in job.targets]
        self.saved = self.reload()
        self.pages = self.fetched = self.staged = 0

    def reload(self) -> str | None:
        """Read the shard's saved cursor again, e.g. after another worker moved it."""
        with Session(self._engine) as session:
            self.saved = load_cursor(session, self.job.name, self.shard)
        return self.saved

    def read_pass(
        self,
        logger: Logger,
        *,
        keep_empty_pages: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
        on_staged: Callable[[StageResult], None] = lambda result: None,
    ) -> ShardPass:
        """Read from the saved cursor until the source is caught up.

        Each page's new record versions, their deliveries and the shard's next
        cursor are committed together, so a crash re-fetches at most one page.

        Args:
            logger: where the one INFO line per staged page goes.
            keep_empty_pages: stage a page that holds nothing and does not move
                the cursor; continuous mode skips them so an idle poll writes
                nothing.
            should_stop: asked after each page; True ends the pass there, and
                the next pass resumes from that page's cursor.
            on_staged: called after each committed page.

        Returns:
            Counts of this pass.

        Raises:
            SourceError: a page failed; the cursor stays before that page.
            CursorMovedError: another worker moved the cursor; nothing of
                that page was kept.
            LedgerError: the ledger refused a page; nothing of it was kept.
        """
        pages = fetched = staged = 0
        for page in self._client.pages(CursorState.from_json(self.saved)):
            after = page.cursor_after.to_json()
            is_idle = not page.fetched and after == self.saved
            if keep_empty_pages or not is_idle:
                result = self._stage(page, after)
                self.saved = after
                pages, fetched = pages + 1, fetched + page.fetched
                staged += result.versions_staged
                self.pages += 1
                self.fetched += page.fetched
                self.staged += result.versions_staged
                logger.info(
                    "job=%s shard=%s page=%d records=%d staged=%d superseded=%d",
                    self.job.name,
                    self.shard,
                    page.number,
                    page.fetched,
                    result.versions_staged,
                    result.superseded,
                )
                on_staged(result)
            if should_stop():
                break
        return ShardPass(self.shard, pages, fetched, staged)

    def _stage(self, page: FetchedPage, after: str) -> StageResult:
        with Session(self._engine) as session, session.begin():
            return stage_page(
                session,
                job=self.job.name,
                shard=self.shard,
                versions=page.records,
                fetched=page.fetched,
                cursor_before=self.saved,
                cursor_after=after,
                targets=self._targets,
                rejected=page.rejected,
            )


def open_reader(
    job: Job, shard: str, engine: Engine, http: httpx.Client
) -> ShardReader:
    """A reader of ``shard`` over ``http`` (from ``SourceClient.open_http``)."""
    spec = next(s for s in job.source.shards if s.name == shard)
    return ShardReader(job, shard, engine, SourceClient(job, spec, http))


@task(name="fetch-and-stage-shard", cache_policy=NONE)
def fetch_and_stage_shard(
    job: Job, shard: str, ledger_url: str
) -> ShardPass | State[Any]:
    """Read one shard until it is caught up, staging page by page.

    Each page's new record versions, their deliveries and the shard's next
    cursor are committed together, so a crash re-fetches at most one page.

    Args:
        job: the job definition.
        shard: name of one of the job's source shards.
        ledger_url: where the ledger lives.

    Returns:
        Counts of this pass; or a Failed state naming job, shard, cursor and
        the reason when a page failed (the cursor stays before that page) or
        the ledger refused one (nothing of it was kept). An expected failure
        is one log line, not a traceback.
    """
    logger = get_run_logger()
    engine = get_engine(ledger_url)
    with SourceClient.open_http(job) as http:
        reader = open_reader(job, shard, engine, http)
        logger.info(
            "job=%s shard=%s pass starts at %s",
            job.name,
            shard,
            CursorState.from_json(reader.saved).describe(),
        )
        try:
            return reader.read_pass(logger)
        except CursorMovedError:
            # Another worker is reading this shard right now; it will finish
            # the pass, so this one steps aside instead of failing.
            logger.warning(
                "job=%s shard=%s another worker moved the cursor; leaving the "
                "shard to it",
                job.name,
                shard,
            )
            return ShardPass(shard, 0, 0, 0)
        except JellyFishError as exc:
            # Prefect logs the failed state with this message, once, at ERROR.
            return Failed(message=str(exc))

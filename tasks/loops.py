"""The long-running loops of continuous mode: one per shard, one per partition.

A window of ``serve-job`` starts one ``follow-shard`` task per shard and one
``serve-partition`` task per target x partition; each lives until the window
ends or a stop is requested, so polling never creates Prefect task runs.

    follow-shard     poll the source every interval_s; a full page is followed
                     at once by the next; each staged page rings the doorbell
    serve-partition  push due deliveries; sleep until the doorbell rings or
                     interval_s passes (retries fall due without a ring)

A stop (SIGTERM, SIGINT, or ``request_stop``) lets each loop finish the page or
batch in hand; the partition loops then hand back their leases.
"""

from __future__ import annotations

import asyncio
import time

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from jellyfish.job import Job, TargetSpec
from jellyfish.source.client import SourceClient
from jellyfish.source.cursor import CursorState
from jellyfish.target.client import TargetClient
from ledger.engine import get_engine
from ledger.errors import CursorMovedError, LedgerError, SourceError
from ledger.types import StageResult
from tasks.deliver import Logger, PartitionPusher
from tasks.fetch import ShardReader, open_reader
from tasks.serve_window import LoopTally, ServeWindow

# A failing shard or ledger waits interval_s, doubled per failure up to this.
MAX_BACKOFF_S = 60.0


def _backoff_s(interval_s: float, failures: int) -> float:
    return min(interval_s * 2.0 ** min(failures, 10), MAX_BACKOFF_S)


@task(name="follow-shard", cache_policy=NONE)
def follow_shard(job: Job, shard: str, ledger_url: str, window: ServeWindow) -> None:
    """Poll one shard for the whole window, staging each page as it comes.

    A poll that ends on a full page asks for the next one at once; a poll
    that finds nothing writes nothing. A failed poll is logged and retried at
    the next interval, doubled per failure (at most 60 s). When another worker
    of the job staged a page first, the loop follows that worker's cursor.

    Args:
        job: the job definition.
        shard: name of one of the job's source shards.
        ledger_url: where the ledger lives.
        window: the window this loop belongs to; its figures go there.

    Raises:
        Exception: whatever the loop did not expect; the window ends early.
    """
    logger = get_run_logger()
    tally = window.tally("shard", shard)
    try:
        _follow(job, shard, ledger_url, window, tally, logger)
    except BaseException:
        window.end()
        raise


def _follow(
    job: Job,
    shard: str,
    ledger_url: str,
    window: ServeWindow,
    tally: LoopTally,
    logger: Logger,
) -> None:
    def staged(result: StageResult) -> None:
        if result.deliveries_created:
            window.doorbell.ring()

    engine = get_engine(ledger_url)
    failures = 0
    with SourceClient.open_http(job) as http:
        reader = open_reader(job, shard, engine, http)
        logger.info(
            "job=%s shard=%s follows from %s interval_s=%g",
            job.name,
            shard,
            CursorState.from_json(reader.saved).describe(),
            window.interval_s,
        )
        while not window.is_over:
            started = time.monotonic()
            tally.polls += 1
            try:
                done = reader.read_pass(
                    logger,
                    keep_empty_pages=False,
                    should_stop=lambda: window.is_over,
                    on_staged=staged,
                )
            except CursorMovedError:
                # Another worker of the job staged this page first: follow its
                # cursor from the next poll on. Expected, so not an error.
                _add_read(tally, reader)
                tally.conflicts += 1
                logger.info(
                    "job=%s shard=%s another worker staged the page first; "
                    "following its cursor",
                    job.name,
                    shard,
                )
                reader.reload()
                window.sleep(window.interval_s - (time.monotonic() - started))
                continue
            except (SourceError, LedgerError) as exc:
                _add_read(tally, reader)
                failures += 1
                _count_failure(tally, exc, logger, job.name, shard, window, failures)
                window.sleep(_backoff_s(window.interval_s, failures))
                continue
            failures = 0
            _add_read(tally, reader)
            tally.idle_polls += done.pages == 0
            window.sleep(window.interval_s - (time.monotonic() - started))


def _add_read(tally: LoopTally, reader: ShardReader) -> None:
    # From the reader's totals: a pass that ended in an error still staged
    # the pages before it.
    tally.pages = reader.pages
    tally.fetched = reader.fetched
    tally.staged = reader.staged


def _count_failure(
    tally: LoopTally,
    exc: Exception,
    logger: Logger,
    job: str,
    name: str,
    window: ServeWindow,
    failures: int,
) -> None:
    tally.errors += 1
    tally.last_error = str(exc)
    logger.warning(
        "job=%s loop=%s failed (%s: %s); trying again in %.1f s",
        job,
        name,
        type(exc).__name__,
        exc,
        _backoff_s(window.interval_s, failures),
    )


@task(name="serve-partition", cache_policy=NONE)
def serve_partition(
    job: Job, target: str, partition: int, ledger_url: str, window: ServeWindow
) -> None:
    """Push one partition's due deliveries for the whole window.

    The loop pushes batch after batch while any is due, then sleeps until a
    shard stages a page (the doorbell) or ``interval_s`` passes, so retries
    and deliveries staged by other workers are pushed when due. On a stop or
    at the window's end it finishes the batch in hand and hands back its
    leases.

    Args:
        job: the job definition.
        target: name of one of the job's targets.
        partition: which of the job's ``delivery.partitions`` this loop serves.
        ledger_url: where the ledger lives.
        window: the window this loop belongs to; its figures go there.

    Raises:
        Exception: whatever the loop did not expect; the window ends early and
            the leases in hand run out (their outcome is unknown).
    """
    logger = get_run_logger()
    tally = window.tally("target", f"{target}/{partition}")
    try:
        spec = job.target(target)
        asyncio.run(_serve(job, spec, partition, ledger_url, window, tally, logger))
    except BaseException:
        window.end()
        raise


async def _serve(
    job: Job,
    spec: TargetSpec,
    partition: int,
    ledger_url: str,
    window: ServeWindow,
    tally: LoopTally,
    logger: Logger,
) -> None:
    engine = get_engine(ledger_url)
    bell = window.doorbell.register()
    failures = 0
    try:
        async with TargetClient.open_http(spec) as http:
            client = TargetClient(job.name, spec, http)
            pusher = PartitionPusher(job, spec, partition, engine, client, logger)
            while not window.is_over:
                bell.clear()
                tally.polls += 1
                try:
                    pushed = await pusher.push_batch()
                except LedgerError as exc:
                    failures += 1
                    name = f"{spec.name}/{partition}"
                    _count_failure(tally, exc, logger, job.name, name, window, failures)
                    await window.nap(bell, _backoff_s(window.interval_s, failures))
                    continue
                failures = 0
                _add_push(tally, pusher)
                if not pushed:
                    tally.idle_polls += 1
                    await window.nap(bell, window.interval_s)
            tally.released = pusher.release()
    finally:
        window.doorbell.unregister(bell)


def _add_push(tally: LoopTally, pusher: PartitionPusher) -> None:
    done = pusher.summary()
    tally.batches = done.batches
    tally.delivered = done.delivered
    tally.retried = done.retried
    tally.dead = done.dead

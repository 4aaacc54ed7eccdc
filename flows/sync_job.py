"""One sync pass of a job: fetch every shard until caught up, push what is due."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFutureList, wait
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from blocks.ledger import resolve_ledger
from jellyfish.job import load_job
from ledger.engine import get_engine, ledger_url
from tasks.deliver import push_partition
from tasks.fetch import fetch_and_stage_shard
from tasks.report import RunSummary, publish_run_summary

# Shards and partitions are few (tens); threads mostly wait on HTTP and the
# ledger, so a small cap keeps a 2-core machine responsive.
MAX_THREADS = 8


def _failed(futures: PrefectFutureList[Any], names: list[str]) -> list[str]:
    wait(futures)
    return [
        name
        for name, f in zip(names, futures, strict=True)
        if not f.state.is_completed()
    ]


@flow(
    name="sync-job",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS),  # type: ignore[arg-type]
    validate_parameters=True,
)
def sync_job(job_file: str, ledger: str | None = None) -> RunSummary | State:
    """Run one sync pass of the job in ``job_file``.

    Fetch-and-stage tasks are mapped over the source's shards, then push
    tasks over targets x delivery partitions. The run fails, with the counts
    in its message, when a shard or push failed or a delivery went dead.

    Args:
        job_file: path of the job's YAML file.
        ledger: ledger URL or ``block:NAME`` of a LedgerConnection block;
            default $JELLYFISH_LEDGER_URL, else .jellyfish/ledger.db.

    Returns:
        The run summary, or a Failed state whose message holds the counts.
    """
    logger = get_run_logger()
    job = load_job(job_file)
    url = ledger_url(resolve_ledger(ledger))
    get_engine(url)
    started_at = dt.datetime.now(dt.UTC)

    shard_names = [s.name for s in job.source.shards]
    fetches = fetch_and_stage_shard.map(unmapped(job), shard_names, unmapped(url))
    failed_shards = _failed(fetches, shard_names)

    slots = list(
        itertools.product([t.name for t in job.targets], range(job.delivery.partitions))
    )
    pushes = push_partition.map(
        unmapped(job), [t for t, _ in slots], [p for _, p in slots], unmapped(url)
    )
    failed_pushes = _failed(pushes, [f"{t}/{p}" for t, p in slots])

    summary = publish_run_summary(job, url, started_at, failed_shards, failed_pushes)
    if summary.is_clean:
        return summary
    message = summary.headline()
    if failed_shards:
        message += f" (failed shards: {', '.join(failed_shards)})"
    logger.error("run failed %s", message)
    return Failed(message=message, data=summary)

"""Push due deliveries of one target partition until none are due."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from jellyfish.job import Job, TargetSpec
from jellyfish.target.client import TargetClient
from ledger.engine import get_engine
from ledger.schema import OUTCOME_DEAD, OUTCOME_DELIVERED, OUTCOME_RETRY
from ledger.store import claim_due, record_attempts, recover_expired_leases


@dataclass(frozen=True)
class PushPass:
    """What one push task did for one partition of one target."""

    target: str
    partition: int
    batches: int
    delivered: int
    retried: int
    dead: int


def lease_owner() -> str:
    """A name for this push task's leases, unique across machines and runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@task(name="push-partition", cache_policy=NONE)
def push_partition(job: Job, target: str, partition: int, ledger_url: str) -> PushPass:
    """Claim and push due deliveries of one partition of one target.

    A delivery's key decides its partition, so one task sees all versions of
    a key in order. Failed attempts are rescheduled in the ledger by the
    target's retry policy; this task never waits for them.

    Args:
        job: the job definition.
        target: name of one of the job's targets.
        partition: which of the job's ``delivery.partitions`` this task serves.
        ledger_url: where the ledger lives.

    Returns:
        Counts of this pass.

    Raises:
        LedgerError: the ledger refused a claim or a result; unrecorded
            attempts come back when their lease expires.
    """
    logger = get_run_logger()
    return asyncio.run(
        _push_until_idle(job, job.target(target), partition, ledger_url, logger)
    )


async def _push_until_idle(
    job: Job,
    spec: TargetSpec,
    partition: int,
    ledger_url: str,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> PushPass:
    engine = get_engine(ledger_url)
    owner = lease_owner()
    totals: Counter[str] = Counter()
    batches = 0
    with Session(engine) as session, session.begin():
        recovered = recover_expired_leases(
            session,
            job=job.name,
            target=spec.name,
            partition=partition,
            partitions=job.delivery.partitions,
        )
    if recovered:
        logger.warning(
            "job=%s target=%s recovered=%d deliveries whose worker died "
            "holding them; their outcome is unknown and they are due again",
            job.name,
            spec.name,
            recovered,
        )
    # No lease is released on an error: a batch may have been sent already, so
    # its leases run out and the next pass records its outcome as unknown.
    async with TargetClient.open_http(spec) as http:
        client = TargetClient(job.name, spec, http)
        while True:
            with Session(engine) as session, session.begin():
                due = claim_due(
                    session,
                    job=job.name,
                    target=spec.name,
                    partition=partition,
                    partitions=job.delivery.partitions,
                    owner=owner,
                    limit=job.delivery.claim_size,
                    lease_s=job.delivery.lease_s,
                )
            if not due:
                break
            results = await client.push(due)
            with Session(engine) as session, session.begin():
                record_attempts(session, owner=owner, results=results)
            batches += 1
            counts = Counter(r.outcome for r in results)
            totals.update(counts)
            logger.info(
                "job=%s target=%s partition=%d batch=%d deliveries=%d "
                "delivered=%d retry=%d dead=%d",
                job.name,
                spec.name,
                partition,
                batches,
                len(results),
                counts[OUTCOME_DELIVERED],
                counts[OUTCOME_RETRY],
                counts[OUTCOME_DEAD],
            )
            if counts[OUTCOME_DEAD]:
                first = next(r for r in results if r.outcome == OUTCOME_DEAD)
                logger.error(
                    "job=%s target=%s dead_letters=%d first_reason=%s",
                    job.name,
                    spec.name,
                    counts[OUTCOME_DEAD],
                    first.error,
                )
    return PushPass(
        spec.name,
        partition,
        batches,
        totals[OUTCOME_DELIVERED],
        totals[OUTCOME_RETRY],
        totals[OUTCOME_DEAD],
    )

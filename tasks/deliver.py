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
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from jellyfish.job import Job, TargetSpec
from jellyfish.target.client import TargetClient
from ledger.engine import get_engine
from ledger.schema import (
    OUTCOME_DEAD,
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    OUTCOME_UNKNOWN,
)
from ledger.store import (
    claim_due,
    hold_partition,
    record_attempts,
    recover_expired_leases,
    release_leases,
    release_partition,
)
from ledger.types import DueDelivery

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


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


class PartitionPusher:
    """Claims, pushes and records the due deliveries of one target partition.

    A delivery's key decides its partition, so one pusher sees all versions of
    a key in order. One pass of ``sync-job`` pushes until nothing is due;
    continuous mode keeps one pusher (and its HTTP client) for a whole window.
    """

    def __init__(
        self,
        job: Job,
        spec: TargetSpec,
        partition: int,
        engine: Engine,
        client: TargetClient,
        logger: Logger,
    ) -> None:
        self.job = job
        self.spec = spec
        self.partition = partition
        self.owner = lease_owner()
        self._engine = engine
        self._client = client
        self._logger = logger
        self.batches = 0
        self.totals: Counter[str] = Counter()
        self._waiting = False

    def _claim(self) -> list[DueDelivery]:
        """Renew this pusher's hold on the partition, then lease due deliveries.

        Nothing is claimed while another worker holds the partition. Taking a
        partition first frees the deliveries whose worker died holding them.
        """
        with Session(self._engine) as session, session.begin():
            held = hold_partition(
                session,
                job=self.job.name,
                target=self.spec.name,
                partition=self.partition,
                owner=self.owner,
                lease_s=self.job.delivery.lease_s,
            )
            self._note_holder(held)
            if held is None:
                return []
            if held:
                self._recover(session)
            return claim_due(
                session,
                job=self.job.name,
                target=self.spec.name,
                partition=self.partition,
                partitions=self.job.delivery.partitions,
                owner=self.owner,
                limit=self.job.delivery.claim_size,
                lease_s=self.job.delivery.lease_s,
            )

    def _note_holder(self, held: bool | None) -> None:
        waiting = held is None
        if waiting and not self._waiting:
            self._logger.info(
                "job=%s target=%s partition=%d is held by another worker; "
                "waiting for its lease to end",
                self.job.name,
                self.spec.name,
                self.partition,
            )
        self._waiting = waiting

    def _recover(self, session: Session) -> None:
        recovered = recover_expired_leases(
            session,
            job=self.job.name,
            target=self.spec.name,
            partition=self.partition,
            partitions=self.job.delivery.partitions,
        )
        if recovered:
            self._logger.warning(
                "job=%s target=%s recovered=%d deliveries whose worker died "
                "holding them; their outcome is unknown and they are due again",
                self.job.name,
                self.spec.name,
                recovered,
            )

    async def push_batch(self) -> int:
        """Claim one batch of due deliveries, push it and record every attempt.

        Returns:
            How many deliveries were pushed; 0 when none was due (or another
            worker holds the partition).

        Raises:
            LedgerError: the ledger refused a claim or a result; unrecorded
                attempts come back when their lease expires.
        """
        # No lease is released on an error: a batch may have been sent already,
        # so its leases run out and the next pass records its outcome as unknown.
        due = self._claim()
        if not due:
            return 0
        results = await self._client.push(due)
        with Session(self._engine) as session, session.begin():
            record_attempts(session, owner=self.owner, results=results)
        self.batches += 1
        counts = Counter(r.outcome for r in results)
        self.totals.update(counts)
        self._log_batch(len(results), counts)
        if counts[OUTCOME_DEAD]:
            first = next(r for r in results if r.outcome == OUTCOME_DEAD)
            self._logger.error(
                "job=%s target=%s dead_letters=%d first_reason=%s",
                self.job.name,
                self.spec.name,
                counts[OUTCOME_DEAD],
                first.error,
            )
        return len(results)

    def release(self) -> int:
        """Hand back every lease this pusher still holds (on a clean stop)."""
        with Session(self._engine) as session, session.begin():
            release_partition(
                session,
                job=self.job.name,
                target=self.spec.name,
                partition=self.partition,
                owner=self.owner,
            )
            return release_leases(session, owner=self.owner)

    def summary(self) -> PushPass:
        """Counts of everything this pusher did so far."""
        return PushPass(
            self.spec.name,
            self.partition,
            self.batches,
            self.totals[OUTCOME_DELIVERED],
            self.totals[OUTCOME_RETRY] + self.totals[OUTCOME_UNKNOWN],
            self.totals[OUTCOME_DEAD],
        )

    def _log_batch(self, deliveries: int, counts: Counter[str]) -> None:
        self._logger.info(
            "job=%s target=%s partition=%d batch=%d deliveries=%d "
            "delivered=%d retry=%d unknown=%d dead=%d",
            self.job.name,
            self.spec.name,
            self.partition,
            self.batches,
            deliveries,
            counts[OUTCOME_DELIVERED],
            counts[OUTCOME_RETRY],
            counts[OUTCOME_UNKNOWN],
            counts[OUTCOME_DEAD],
        )


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
    job: Job, spec: TargetSpec, partition: int, ledger_url: str, logger: Logger
) -> PushPass:
    engine = get_engine(ledger_url)
    async with TargetClient.open_http(spec) as http:
        client = TargetClient(job.name, spec, http)
        pusher = PartitionPusher(job, spec, partition, engine, client, logger)
        while await pusher.push_batch():
            pass
        # Handing the partition back at once spares another worker the wait
        # for the lease to run out. After an error it runs out instead.
        pusher.release()
    return pusher.summary()

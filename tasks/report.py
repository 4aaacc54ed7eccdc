"""Sum up a sync run from the ledger and publish it as a Prefect artifact."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from jellyfish.job import Job
from ledger.engine import get_engine
from ledger.reports import attempt_counts, shard_counts, target_status


@dataclass(frozen=True)
class RunRow:
    """One line of a run summary: a shard's or a target's figures."""

    kind: str
    name: str
    pages: int = 0
    fetched: int = 0
    staged: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    pending: int = 0


@dataclass(frozen=True)
class RunSummary:
    job: str
    rows: tuple[RunRow, ...]
    failed_shards: tuple[str, ...]
    failed_pushes: tuple[str, ...]
    seconds: float

    def total(self, field: str) -> int:
        return sum(int(getattr(row, field)) for row in self.rows)

    @property
    def is_clean(self) -> bool:
        """No shard or push failed and no delivery went dead in this run."""
        return not (self.failed_shards or self.failed_pushes or self.total("dead"))

    def headline(self) -> str:
        return (
            f"job={self.job} fetched={self.total('fetched')} "
            f"staged={self.total('staged')} delivered={self.total('delivered')} "
            f"retried={self.total('retried')} dead={self.total('dead')} "
            f"pending={self.total('pending')} "
            f"failed_shards={len(self.failed_shards)} "
            f"failed_pushes={len(self.failed_pushes)} seconds={self.seconds:.1f}"
        )


def artifact_key(job: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return "sync-" + job.replace("_", "-")


@task(name="publish-run-summary", cache_policy=NONE)
def publish_run_summary(
    job: Job,
    ledger_url: str,
    started_at: dt.datetime,
    failed_shards: list[str],
    failed_pushes: list[str],
) -> RunSummary:
    """Count the run's pages and attempts in the ledger and publish a table.

    The figures come from the ledger rather than from task results, so a
    failed shard's pages before its failure still count.
    """
    engine = get_engine(ledger_url)
    with Session(engine) as session:
        shards = {c.shard: c for c in shard_counts(session, job.name, started_at)}
        attempts = {c.target: c for c in attempt_counts(session, job.name, started_at)}
        status = {s.target: s for s in target_status(session, job.name)}

    rows: list[RunRow] = []
    for shard in job.source.shards:
        c = shards.get(shard.name)
        rows.append(
            RunRow("shard", shard.name, c.pages, c.fetched, c.staged)
            if c
            else RunRow("shard", shard.name)
        )
    for target in job.targets:
        a, s = attempts.get(target.name), status.get(target.name)
        rows.append(
            RunRow(
                "target",
                target.name,
                delivered=a.delivered if a else 0,
                retried=a.retried if a else 0,
                dead=a.dead if a else 0,
                pending=(s.pending + s.retrying + s.in_flight) if s else 0,
            )
        )
    seconds = (dt.datetime.now(dt.UTC) - started_at).total_seconds()
    summary = RunSummary(
        job.name, tuple(rows), tuple(failed_shards), tuple(failed_pushes), seconds
    )

    create_table_artifact(
        key=artifact_key(job.name),
        table=[asdict(row) for row in rows],
        description=f"Sync run of job {job.name}: {summary.headline()}",
    )
    get_run_logger().info("run summary %s", summary.headline())
    return summary

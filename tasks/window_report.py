"""Sum up one window of continuous mode and publish it as a Prefect artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from sqlalchemy.orm import Session

from jellyfish.job import Job
from ledger.engine import get_engine
from ledger.reports import target_status
from tasks.serve_window import LoopFigures


@dataclass(frozen=True)
class WindowRow:
    """One line of a window summary: a shard's or a target's figures."""

    kind: str
    name: str
    polls: int = 0
    idle_polls: int = 0
    pages: int = 0
    fetched: int = 0
    staged: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: int = 0
    conflicts: int = 0
    pending: int = 0


@dataclass(frozen=True)
class WindowSummary:
    """What one window did, from its loops' counters and the ledger's backlog."""

    job: str
    rows: tuple[WindowRow, ...]
    failed_loops: tuple[str, ...]
    is_stopped: bool
    seconds: float

    def total(self, field: str) -> int:
        return sum(int(getattr(row, field)) for row in self.rows)

    @property
    def is_clean(self) -> bool:
        """No loop crashed or failed a poll, and no delivery went dead."""
        return not (self.failed_loops or self.total("errors") or self.total("dead"))

    def headline(self) -> str:
        return (
            f"job={self.job} fetched={self.total('fetched')} "
            f"staged={self.total('staged')} delivered={self.total('delivered')} "
            f"retried={self.total('retried')} dead={self.total('dead')} "
            f"pending={self.total('pending')} errors={self.total('errors')} "
            f"failed_loops={len(self.failed_loops)} "
            f"stopped={'yes' if self.is_stopped else 'no'} "
            f"seconds={self.seconds:.1f}"
        )


def artifact_key(job: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return "serve-" + job.replace("_", "-")


def window_rows(
    job: Job, loops: list[LoopFigures], pending: dict[str, int]
) -> list[WindowRow]:
    """One row per shard and one per target, its partitions added up."""
    rows = [
        WindowRow(
            "shard",
            f.name,
            polls=f.polls,
            idle_polls=f.idle_polls,
            pages=f.pages,
            fetched=f.fetched,
            staged=f.staged,
            errors=f.errors,
            conflicts=f.conflicts,
        )
        for f in loops
        if f.kind == "shard"
    ]
    for target in job.targets:
        parts = [
            f
            for f in loops
            if f.kind == "target" and f.name.rpartition("/")[0] == target.name
        ]
        rows.append(
            WindowRow(
                "target",
                target.name,
                polls=sum(f.polls for f in parts),
                idle_polls=sum(f.idle_polls for f in parts),
                delivered=sum(f.delivered for f in parts),
                retried=sum(f.retried for f in parts),
                dead=sum(f.dead for f in parts),
                errors=sum(f.errors for f in parts),
                pending=pending.get(target.name, 0),
            )
        )
    return rows


@task(name="publish-window-summary", cache_policy=NONE)
def publish_window_summary(
    job: Job,
    ledger_url: str,
    loops: list[LoopFigures],
    failed_loops: list[str],
    is_stopped: bool,
    seconds: float,
) -> WindowSummary:
    """Publish a table of the window's figures, with each target's backlog.

    The counts come from the loops' own counters, so a loop that crashed
    still counts what it did; the backlog (pending, retrying, in flight)
    comes from the ledger and covers every worker of the job.
    """
    with Session(get_engine(ledger_url)) as session:
        pending = {
            s.target: s.pending + s.retrying + s.in_flight
            for s in target_status(session, job.name)
        }
    summary = WindowSummary(
        job.name,
        tuple(window_rows(job, loops, pending)),
        tuple(failed_loops),
        is_stopped,
        seconds,
    )
    create_table_artifact(
        key=artifact_key(job.name),
        table=[asdict(row) for row in summary.rows],
        description=f"Serve window of job {job.name}: {summary.headline()}",
    )
    get_run_logger().info("window summary %s", summary.headline())
    return summary

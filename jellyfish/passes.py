"""Run a sync pass as a Prefect flow, and read a job's status from the ledger."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from blocks.ledger import BLOCK_PREFIX, resolve_ledger
from jellyfish.job import Job
from jellyfish.progress import ledger_progress
from ledger.engine import get_engine, ledger_in_environment, ledger_url
from ledger.errors import JellyFishError
from ledger.reports import count_versions, target_status
from ledger.types import TargetStatus


@dataclass(frozen=True)
class PassOutcome:
    state: str
    message: str | None
    seconds: float
    summary: Any


def run_pass(
    job: Job, job_file: Path, ledger: str | None, show_progress: bool
) -> PassOutcome:
    """Run the sync-job flow once and wait for its final state.

    Raises:
        JellyFishError: the run crashed before it could summarise itself.
    """
    from flows.sync_job import sync_job

    url = ledger_url(resolve_ledger(ledger))
    get_engine(url)
    # Flow parameters are stored by the Prefect server and shown in its UI;
    # a ledger URL may hold a password, so it travels in the environment.
    flow_ledger = ledger if ledger and ledger.startswith(BLOCK_PREFIX) else None
    clock = time.perf_counter()
    with ledger_in_environment(url), ledger_progress(url, job.name, show_progress):
        state = sync_job(str(job_file), flow_ledger, return_state=True)
    seconds = time.perf_counter() - clock
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        raise JellyFishError(
            f"job {job.name}: the run ended {state.type.value} without a summary: "
            f"{summary}"
        ) from summary
    return PassOutcome(
        state=state.type.value,
        message=None if state.is_completed() else state.message,
        seconds=seconds,
        summary=summary,
    )


def job_status(job: Job, ledger: str | None) -> dict[str, Any]:
    """Counts by target and status, with the oldest pending delivery's age."""
    now = dt.datetime.now(dt.UTC)
    with Session(get_engine(ledger_url(resolve_ledger(ledger)))) as session:
        versions = count_versions(session, job.name)
        targets = {s.target: s for s in target_status(session, job.name)}
    rows = []
    for target in job.targets:
        status = targets.get(target.name)
        empty = TargetStatus(target.name, 0, 0, 0, 0, 0, 0, None)
        row: dict[str, Any] = asdict(status or empty)
        oldest = status.oldest_pending_at if status else None
        row.pop("oldest_pending_at", None)
        row["oldest_pending_age_s"] = (
            None if oldest is None else round((now - oldest).total_seconds(), 1)
        )
        rows.append(row)
    return {"job": job.name, "versions": versions, "targets": rows}

"""Continuous sync of a job: one flow run per window, many polls inside it.

Each window starts one long-running loop per shard and one per target x
partition (see ``tasks/loops.py``), so the Prefect UI shows one run per
window with a few task runs, not one per poll. ``serve_until_stopped`` runs
windows back to back until SIGTERM or SIGINT.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

from prefect import flow, get_run_logger, unmapped
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture, wait
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.ledger import BLOCK_PREFIX, resolve_ledger
from jellyfish.job import load_job
from ledger.engine import get_engine, ledger_in_environment, ledger_url
from ledger.errors import JellyFishError
from tasks.loops import follow_shard, serve_partition
from tasks.serve_window import STOP, open_window
from tasks.window_report import WindowSummary, publish_window_summary

# Every loop holds a thread for the whole window; a job that needs more loops
# than this is refused rather than left with loops that never start.
MAX_LOOPS = 64

PositiveSeconds = Annotated[float, Field(gt=0)]


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a stop request while the block runs.

    A second SIGINT interrupts at once. Outside the main thread signals cannot
    be caught, so nothing is installed and ``request_stop`` is the way.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and STOP.is_requested:
            raise KeyboardInterrupt
        STOP.request()

    previous = {
        signum: signal.signal(signum, on_signal)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _failed_loops(futures: list[PrefectFuture[None]], names: list[str]) -> list[str]:
    wait(futures)
    return [
        name
        for name, f in zip(names, futures, strict=True)
        if not f.state.is_completed()
    ]


@flow(
    name="serve-job",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_LOOPS),  # type: ignore[arg-type]
    validate_parameters=True,
)
def serve_job(
    job_file: str,
    ledger: str | None = None,
    interval_s: PositiveSeconds = 1.0,
    window_s: PositiveSeconds = 300.0,
) -> WindowSummary | State:
    """Run the job in ``job_file`` continuously for one window.

    Shards are polled every ``interval_s``; due deliveries are pushed as soon
    as they are staged, and retries when they fall due. The window ends after
    ``window_s``, on SIGTERM or SIGINT, or on ``tasks.serve_window.request_stop``;
    each loop then finishes the page or batch in hand and hands back its
    leases, so the next window (or another worker) goes on from there.

    Args:
        job_file: path of the job's YAML file.
        ledger: ledger URL or ``block:NAME`` of a LedgerConnection block;
            default $JELLYFISH_LEDGER_URL, else .jellyfish/ledger.db.
        interval_s: seconds between two polls of a shard; also how often a
            partition loop looks for retries that fell due.
        window_s: how long this flow run serves.

    Returns:
        The window's summary, or a Failed state whose message holds the
        counts when a loop crashed, a poll failed or a delivery went dead.
    """
    logger = get_run_logger()
    job = load_job(job_file)
    url = ledger_url(resolve_ledger(ledger))
    get_engine(url)
    shards = [s.name for s in job.source.shards]
    slots = list(
        itertools.product([t.name for t in job.targets], range(job.delivery.partitions))
    )
    if len(shards) + len(slots) > MAX_LOOPS:
        message = (
            f"job {job.name} needs {len(shards) + len(slots)} loops (shards plus "
            f"targets x partitions), more than {MAX_LOOPS}; lower delivery.partitions"
        )
        logger.error("window failed %s", message)
        return Failed(message=message)

    clock = time.monotonic()
    with open_window(window_s, interval_s) as window, stop_on_signals():
        followers = follow_shard.map(
            unmapped(job), shards, unmapped(url), unmapped(window)
        )
        servers = serve_partition.map(
            unmapped(job),
            [t for t, _ in slots],
            [p for _, p in slots],
            unmapped(url),
            unmapped(window),
        )
        failed = _failed_loops(
            [*followers, *servers], [*shards, *(f"{t}/{p}" for t, p in slots)]
        )

    summary = publish_window_summary(
        job,
        url,
        window.figures(),
        failed,
        STOP.is_requested,
        time.monotonic() - clock,
    )
    if summary.is_clean:
        return summary
    message = summary.headline()
    if failed:
        message += f" (failed loops: {', '.join(failed)})"
    logger.error("window failed %s", message)
    return Failed(message=message, data=summary)


@dataclass(frozen=True)
class WindowOutcome:
    """One finished window, as ``serve_until_stopped`` hands it on."""

    number: int
    state: str
    message: str | None
    summary: WindowSummary


def serve_until_stopped(
    job_file: Path,
    ledger: str | None,
    interval_s: float,
    window_s: float,
    on_window: Callable[[WindowOutcome], Any],
) -> int:
    """Run ``serve-job`` windows back to back until SIGTERM or SIGINT.

    Args:
        job_file: the job's YAML file.
        ledger: ledger URL or ``block:NAME``; see ``serve_job``.
        interval_s: seconds between two polls of a shard.
        window_s: how long each flow run serves.
        on_window: called with each finished window.

    Returns:
        How many windows ran.

    Raises:
        JellyFishError: a window crashed or one of its loops did; serving
            stops so the cause can be fixed (the ledger keeps everything).
    """
    url = ledger_url(resolve_ledger(ledger))
    get_engine(url)
    flow_ledger = ledger if ledger and ledger.startswith(BLOCK_PREFIX) else None
    STOP.clear()
    number = 0
    with ledger_in_environment(url), stop_on_signals():
        while not STOP.is_requested:
            number += 1
            state = serve_job(
                str(job_file), flow_ledger, interval_s, window_s, return_state=True
            )
            summary = state.result(raise_on_failure=False)
            if not isinstance(summary, WindowSummary):
                raise JellyFishError(
                    f"job file {job_file}: window {number} ended {state.type.value} "
                    f"without a summary: {state.message}"
                )
            on_window(
                WindowOutcome(
                    number,
                    state.type.value,
                    None if state.is_completed() else state.message,
                    summary,
                )
            )
            if summary.failed_loops:
                raise JellyFishError(
                    f"job file {job_file}: window {number} lost loops "
                    f"{', '.join(summary.failed_loops)}; see the run's logs"
                )
    return number

"""Show a long pass's progress by reading the ledger while the flow runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session

from ledger.engine import get_engine
from ledger.reports import count_versions, target_status

POLL_INTERVAL_S = 1.0


def _describe(ledger_url: str, job: str, baseline: int) -> str:
    with Session(get_engine(ledger_url)) as session:
        staged = count_versions(session, job) - baseline
        targets = target_status(session, job)
    parts = [f"staged {staged:,}"]
    for t in targets:
        parts.append(
            f"{t.target}: delivered {t.delivered:,}, pending {t.pending + t.retrying:,}"
            + (f", dead {t.dead:,}" if t.dead else "")
        )
    return " | ".join(parts)


@contextmanager
def ledger_progress(ledger_url: str, job: str, enabled: bool) -> Iterator[None]:
    """While the block runs, show staged and delivered counts on stderr."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield
        return
    with Session(get_engine(ledger_url)) as session:
        baseline = count_versions(session, job)
    stop = threading.Event()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        line = progress.add_task(f"job {job}: starting")

        def poll() -> None:
            while not stop.wait(POLL_INTERVAL_S):
                progress.update(line, description=_describe(ledger_url, job, baseline))

        watcher = threading.Thread(target=poll, name="ledger-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()

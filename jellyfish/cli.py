"""The ``jellyfish`` command: run a job, show its status, or run the demo."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jellyfish import runtime
from jellyfish.job import Job, load_job
from ledger.errors import JellyFishError, JobConfigError

app = typer.Typer(
    help="Data JellyFish: keep systems in sync over HTTP, with nothing lost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) is not cut to 80 columns like a terminal's would be.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

JobFile = Annotated[Path, typer.Argument(help="The job's YAML file.")]
LedgerOption = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="Ledger URL (postgresql://... or sqlite:///...), or block:NAME of a "
        "LedgerConnection block. Default: $JELLYFISH_LEDGER_URL, else "
        ".jellyfish/ledger.db in the current directory.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print figures as JSON.")]


def _load(job_file: Path) -> Job:
    try:
        return load_job(job_file)
    except JobConfigError as exc:
        err.print("invalid job file", style="red")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _fail(exc: JellyFishError) -> typer.Exit:
    err.print(
        f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    return typer.Exit(1)


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    if not rows:
        return table
    for column in rows[0]:
        table.add_column(
            column, justify="left" if column in ("kind", "name", "target") else "right"
        )
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    return table


@app.command()
def run(
    job_file: JobFile, ledger: LedgerOption = None, as_json: JsonOption = False
) -> None:
    """Run one sync pass: fetch every shard until caught up, push what is due.

    Exit code 0 when the pass was clean, 1 when a shard or push failed or a
    delivery went dead (the ledger keeps all of it), 2 for an invalid job file.
    """
    job = _load(job_file)
    from jellyfish.passes import run_pass

    try:
        outcome = run_pass(job, job_file, ledger, show_progress=not as_json)
    except JellyFishError as exc:
        raise _fail(exc) from exc
    rows = [asdict(row) for row in outcome.summary.rows]
    if as_json:
        payload = {
            "job": job.name,
            "state": outcome.state,
            "message": outcome.message,
            "seconds": round(outcome.seconds, 3),
            "rows": rows,
        }
        out.print_json(json.dumps(payload))
    else:
        out.print(
            _table(f"job {job.name}: {outcome.state} in {outcome.seconds:.1f} s", rows)
        )
        if outcome.message:
            out.print(outcome.message, highlight=False, soft_wrap=True)
    if outcome.state != "COMPLETED":
        raise typer.Exit(1)


@app.command()
def status(
    job_file: JobFile, ledger: LedgerOption = None, as_json: JsonOption = False
) -> None:
    """Show deliveries by target and status, and the oldest pending one's age."""
    job = _load(job_file)
    from jellyfish.passes import job_status

    try:
        report = job_status(job, ledger)
    except JellyFishError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        _table(
            f"job {job.name}: {report['versions']} record versions", report["targets"]
        )
    )


@app.command()
def serve(
    job_file: JobFile,
    ledger: LedgerOption = None,
    interval_s: Annotated[
        float, typer.Option(min=0.01, help="Seconds between two polls of a shard.")
    ] = 1.0,
    window_s: Annotated[
        float, typer.Option(min=1, help="Seconds of each flow run (window).")
    ] = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Run a job continuously until SIGTERM or SIGINT (Ctrl-C).

    Each shard is polled every --interval-s; records are pushed as soon as
    they are staged. One flow run serves one window of --window-s, and
    windows follow each other. A stop finishes the batch in hand and hands
    back the leases. Exit code 0 after a stop, 1 when a window crashed, 2 for
    an invalid job file.
    """
    job = _load(job_file)
    from flows.serve_job import WindowOutcome, serve_until_stopped

    def show(window: WindowOutcome) -> None:
        if as_json:
            payload = {
                "job": job.name,
                "window": window.number,
                "state": window.state,
                "message": window.message,
                "seconds": round(window.summary.seconds, 3),
                "stopped": window.summary.is_stopped,
                "rows": [asdict(row) for row in window.summary.rows],
            }
            out.print_json(json.dumps(payload))
            return
        out.print(
            f"window {window.number} {window.state}: {window.summary.headline()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    try:
        serve_until_stopped(job_file, ledger, interval_s, window_s, show)
    except JellyFishError as exc:
        raise _fail(exc) from exc


@app.command()
def demo(
    records: Annotated[
        str,
        typer.Option(help="How many flights to sync: a number, or 'all' (336,776)."),
    ] = "20000",
    push: Annotated[
        str, typer.Option(help="'batch' (500 records a request) or 'single'.")
    ] = "batch",
    ledger: LedgerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sync real 2013 NYC flights from a demo source API to a demo target API.

    Starts both apps on free loopback ports, runs the sync on a fresh demo job
    in the ledger, and reports what the target itself received: lost and
    duplicate records are counted there, not taken from the ledger.
    """
    from jellyfish.demo.run import DemoOptions, run_demo

    count = None if records == "all" else _positive(records, "--records")
    if push not in ("batch", "single"):
        err.print("[red]--push must be 'batch' or 'single'[/red]")
        raise typer.Exit(2)
    try:
        report = run_demo(
            DemoOptions(
                records=count, push=push, ledger=ledger, show_progress=not as_json
            )
        )
    except JellyFishError as exc:
        raise _fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(report))
    else:
        out.print(
            _table("demo", [{"figure": k, "value": v} for k, v in report.items()])
        )
    if report["lost"] or report["duplicates"] or report["dead"]:
        raise typer.Exit(1)


def _positive(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        err.print(f"[red]{option} takes a positive number or 'all', got {text!r}[/red]")
        raise typer.Exit(2)
    return value


def main() -> None:
    runtime.prepare()
    app()


if __name__ == "__main__":
    main()

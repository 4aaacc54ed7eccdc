"""The serve-job flow (continuous mode) end to end: real demo apps on loopback,
a real ledger, the session's Prefect test server, and the in-process stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from flows.serve_job import serve_job
from jellyfish.cli import app as cli_app
from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app
from ledger.engine import get_engine
from ledger.reports import target_status
from ledger.schema import deliveries
from tasks.serve_window import STOP, request_stop

FLIGHTS = 600
# A hard cap: every test ends its window itself, long before this.
WINDOW_S = 60.0


@dataclass(frozen=True)
class Apps:
    source: str
    target: str


def _slowed(app: ASGIApp, delay_s: float) -> ASGIApp:
    """The demo target, answering each POST ``delay_s`` later."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await asyncio.sleep(delay_s)
        await app(scope, receive, send)

    return wrapped


def _apps(target_delay_s: float = 0.0) -> Iterator[Apps]:
    target_app: ASGIApp = build_target_app()
    if target_delay_s:
        target_app = _slowed(target_app, target_delay_s)
    with (
        serve_in_thread(build_source_app(load_flights(FLIGHTS))) as source,
        serve_in_thread(target_app) as target,
    ):
        yield Apps(source, target)


@pytest.fixture
def apps() -> Iterator[Apps]:
    yield from _apps()


@pytest.fixture
def slow_apps() -> Iterator[Apps]:
    yield from _apps(target_delay_s=0.05)


@pytest.fixture(autouse=True)
def stop_cleared() -> Iterator[None]:
    """Each test starts with no stop requested, and leaves none behind."""
    STOP.clear()
    yield
    STOP.clear()


def _job(tmp_path: Path, name: str, apps: Apps, **target: Any) -> Path:
    spec: dict[str, Any] = {
        "name": name,
        "source": {
            "url": f"{apps.source}/flights",
            "records_path": "data",
            "key": ["id"],
            "cursor": ["updated_at:timestamp", "id:integer"],
            "pagination": {
                "kind": "keyset",
                "params": {"after_updated_at": "updated_at", "after_id": "id"},
                "page_size": 50,
            },
            "shards": [
                {"name": o.lower(), "params": {"origin": o}}
                for o in ("EWR", "JFK", "LGA")
            ],
        },
        "targets": [
            {
                "name": "warehouse",
                "url": f"{apps.target}/records/batch",
                "batch_size": 40,
                **target,
            }
        ],
        "delivery": {"partitions": 2, "claim_size": 100},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _get(url: str) -> Any:
    return httpx.get(url, timeout=30).json()


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> float:
    """Poll ``condition`` every 20 ms; return the seconds it took to hold."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout_s:
            raise AssertionError(f"condition still false after {timeout_s} s")
        time.sleep(0.02)
    return time.perf_counter() - started


class Driver(threading.Thread):
    """Runs the test's steps beside the window; always ends the window."""

    def __init__(self, steps: Callable[[], None], stop: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._steps = steps
        self._stop = stop
        self.error: BaseException | None = None
        self.stopped_at: float | None = None

    def run(self) -> None:
        try:
            self._steps()
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            self.stopped_at = time.perf_counter()
            self._stop()

    def finish(self) -> None:
        self.join(timeout=WINDOW_S)
        if self.error is not None:
            raise self.error


def _delivered_everything(apps: Apps) -> Callable[[], bool]:
    return lambda: _get(f"{apps.target}/stats")["distinct_keys"] >= FLIGHTS


def _held_leases(ledger_url: str, job: str) -> int:
    with Session(get_engine(ledger_url)) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.job == job, deliveries.c.lease_owner.is_not(None))
            ).scalar_one()
        )


def test_serve_job_window_delivers_backlog_with_one_task_run_per_loop(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)

    def steps() -> None:
        _wait_until(_delivered_everything(apps))
        time.sleep(2.5)  # idle polls: they must add no task runs

    driver = Driver(steps, request_stop)
    driver.start()
    state = serve_job(str(job_file), ledger_url, 0.2, WINDOW_S, return_state=True)
    driver.finish()

    summary = state.result()
    assert state.is_completed(), state.message
    assert (summary.total("fetched"), summary.total("delivered")) == (FLIGHTS, FLIGHTS)
    assert summary.is_stopped
    assert (
        _get(f"{apps.target}/received") == _get(f"{apps.source}/admin/digest")["hashes"]
    )
    assert _get(f"{apps.target}/stats")["duplicates"] == 0
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
    assert (status.delivered, status.pending, status.in_flight) == (FLIGHTS, 0, 0)
    shard_rows = [row for row in summary.rows if row.kind == "shard"]
    assert all(row.idle_polls >= 5 for row in shard_rows)
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    # 3 shard loops, 1 target x 2 partitions, 1 summary: no task run per poll.
    assert sorted(run.name.rsplit("-", 1)[0] for run in task_runs) == [
        "follow-shard",
        "follow-shard",
        "follow-shard",
        "publish-window-summary",
        "serve-partition",
        "serve-partition",
    ]


def test_serve_job_changed_record_reaches_target_within_5_s(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)
    latencies: list[float] = []

    def steps() -> None:
        _wait_until(_delivered_everything(apps))
        (changed,) = httpx.post(f"{apps.source}/admin/change?count=1").json()[
            "changed_ids"
        ]
        clock = time.perf_counter()
        new_hash = _get(f"{apps.source}/admin/digest")["hashes"][str(changed)]
        _wait_until(
            lambda: _get(f"{apps.target}/received").get(str(changed)) == new_hash
        )
        latencies.append(time.perf_counter() - clock)

    driver = Driver(steps, request_stop)
    driver.start()
    state = serve_job(str(job_file), ledger_url, 1.0, WINDOW_S, return_state=True)
    driver.finish()

    assert state.is_completed(), state.message
    (latency_s,) = latencies
    assert latency_s < 5.0
    assert state.result().total("delivered") == FLIGHTS + 1
    assert _get(f"{apps.target}/stats")["duplicates"] == 0


def test_serve_job_stop_mid_backlog_finishes_batch_and_releases_leases(
    tmp_path: Path, slow_apps: Apps, ledger_url: str, job_name: str
) -> None:
    apps = slow_apps
    job_file = _job(tmp_path, job_name, apps, batch_size=10, concurrency=1)

    def first_request_arrived() -> None:
        _wait_until(lambda: _get(f"{apps.target}/stats")["requests"] >= 1)

    driver = Driver(first_request_arrived, request_stop)
    driver.start()
    state = serve_job(str(job_file), ledger_url, 1.0, WINDOW_S, return_state=True)
    ended_at = time.perf_counter()
    driver.finish()

    assert state.is_completed(), state.message
    assert driver.stopped_at is not None
    # A claim of 100 is 10 requests of 50 ms at a time: about 0.5 s in hand.
    assert ended_at - driver.stopped_at < 5.0
    assert _held_leases(ledger_url, job_name) == 0
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
    received = _get(f"{apps.target}/stats")["distinct_keys"]
    assert 0 < status.delivered == received < FLIGHTS
    assert state.result().total("delivered") == status.delivered

    STOP.clear()
    driver = Driver(lambda: _wait_until(_delivered_everything(apps)), request_stop)
    driver.start()
    state = serve_job(str(job_file), ledger_url, 1.0, WINDOW_S, return_state=True)
    driver.finish()

    assert state.is_completed(), state.message
    stats = _get(f"{apps.target}/stats")
    assert (stats["distinct_keys"], stats["duplicates"]) == (FLIGHTS, 0)
    assert _held_leases(ledger_url, job_name) == 0


def test_serve_job_two_workers_share_a_job_and_deliver_each_record_once(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)
    states: list[Any] = []

    def other_worker() -> None:
        states.append(
            serve_job(str(job_file), ledger_url, 0.2, WINDOW_S, return_state=True)
        )

    second = threading.Thread(target=other_worker, daemon=True)
    second.start()
    driver = Driver(lambda: _wait_until(_delivered_everything(apps)), request_stop)
    driver.start()
    states.append(
        serve_job(str(job_file), ledger_url, 0.2, WINDOW_S, return_state=True)
    )
    driver.finish()
    second.join(timeout=WINDOW_S)

    assert [state.is_completed() for state in states] == [True, True]
    summaries = [state.result() for state in states]
    # A page another worker staged first is not staged again: 600 versions.
    assert sum(s.total("staged") for s in summaries) == FLIGHTS
    assert sum(s.total("delivered") for s in summaries) == FLIGHTS
    assert sum(s.total("errors") for s in summaries) == 0
    stats = _get(f"{apps.target}/stats")
    assert (stats["distinct_keys"], stats["duplicates"]) == (FLIGHTS, 0)
    assert _held_leases(ledger_url, job_name) == 0


def test_serve_job_publishes_window_artifact(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)

    state = serve_job(str(job_file), ledger_url, 0.5, 3.0, return_state=True)

    assert state.is_completed(), state.message
    assert not state.result().is_stopped
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"serve-{job_name}"])
            )
        )
    rows = {row["name"]: row for row in json.loads(str(artifact.data))}
    assert sum(rows[s]["fetched"] for s in ("ewr", "jfk", "lga")) == FLIGHTS
    assert (rows["warehouse"]["delivered"], rows["warehouse"]["pending"]) == (
        FLIGHTS,
        0,
    )


def test_serve_cli_sigterm_ends_serving_with_exit_0(
    tmp_path: Path, apps: Apps, job_name: str
) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    job_file = _job(tmp_path, job_name, apps)

    def delivered_then_sigterm() -> None:
        _wait_until(_delivered_everything(apps))
        os.kill(os.getpid(), signal.SIGTERM)

    # Should a step fail, the in-process stop ends serving instead of SIGTERM.
    driver = Driver(delivered_then_sigterm, request_stop)
    driver.start()
    result = CliRunner().invoke(
        cli_app,
        [
            "serve",
            str(job_file),
            "--ledger",
            ledger,
            "--interval-s",
            "0.5",
            "--window-s",
            str(WINDOW_S),
            "--json",
        ],
    )
    driver.finish()

    assert result.exit_code == 0, result.output
    window = json.loads(result.stdout)
    assert (window["window"], window["state"], window["stopped"]) == (
        1,
        "COMPLETED",
        True,
    )
    target = next(row for row in window["rows"] if row["kind"] == "target")
    assert (target["delivered"], target["pending"]) == (FLIGHTS, 0)
    assert _held_leases(ledger, job_name) == 0

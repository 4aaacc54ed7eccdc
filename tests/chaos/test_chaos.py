"""Fault injection: a misbehaving target, killed workers, dropped connections.

The verdict comes from the demo target's own records, and from the ledger
only for what the target cannot know (how many outcomes were unknown).
Each scenario prints one summary line with its figures.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect.settings import PREFECT_API_URL
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from jellyfish.demo.data import load_flights
from jellyfish.demo.faults import FaultInjector, FaultPlan
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app
from ledger.engine import get_engine
from ledger.reports import target_status
from ledger.schema import OUTCOME_UNKNOWN, attempts, deliveries

pytestmark = pytest.mark.chaos

RECORDS = 50_000
KILLS = 3
JELLYFISH = str(Path(sys.executable).parent / "jellyfish")
FAULTS = {
    "500": 0.02,
    "503": 0.02,
    "429": 0.02,
    "slow": 0.01,
    "drop": 0.02,
    "html": 0.02,
    "code1": 0.02,
}


@dataclass(frozen=True)
class Apps:
    source: str
    target: str
    injector: FaultInjector


@pytest.fixture(scope="module")
def flights() -> list[dict[str, object]]:
    return load_flights(RECORDS)


@pytest.fixture
def apps(flights: list[dict[str, object]]) -> Iterator[Apps]:
    injector = FaultInjector(
        build_target_app(), FaultPlan(rates=FAULTS, slow_s=2.0, seed=7)
    )
    with (
        serve_in_thread(build_source_app(flights)) as source,
        serve_in_thread(injector) as target,
    ):
        yield Apps(source, target, injector)


def _job_file(tmp_path: Path, name: str, apps: Apps) -> Path:
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
                "page_size": 500,
            },
            "shards": [
                {"name": o.lower(), "params": {"origin": o}}
                for o in ("EWR", "JFK", "LGA")
            ],
        },
        "targets": [
            {
                "name": "warehouse",
                "preset": "jellyfish",
                "url": f"{apps.target}/jellyfish/records/batch",
                "batch_size": 50,
                "concurrency": 8,
                "timeout_s": 1.0,
                "retry": {
                    "kind": "exponential",
                    "initial_s": 0.2,
                    "max_s": 1.0,
                    "jitter": 0.3,
                    "max_attempts": 100,
                },
            }
        ],
        "delivery": {"partitions": 2, "claim_size": 400, "lease_s": 3},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _worker(job_file: Path, ledger_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.Popen(
        [JELLYFISH, "run", str(job_file), "--ledger", ledger_url, "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _terminate_backends(ledger_url: str) -> int:
    admin = create_engine(
        ledger_url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend'"
                    )
                ).all()
            )
    finally:
        admin.dispose()


def _settled(ledger_url: str, job: str) -> bool:
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job)
    return status.pending + status.retrying + status.in_flight == 0


def _unknown_attempts(ledger_url: str, job: str) -> int:
    with Session(get_engine(ledger_url)) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(attempts)
                .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
                .where(deliveries.c.job == job, attempts.c.outcome == OUTCOME_UNKNOWN)
            ).scalar_one()
        )


def _attempt_rows(ledger_url: str, job: str) -> int:
    with Session(get_engine(ledger_url)) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(attempts)
                .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
                .where(deliveries.c.job == job)
            ).scalar_one()
        )


def test_chaos_killed_workers_and_faults_lose_nothing(
    tmp_path: Path, apps: Apps, postgres_url: str, job_name: str
) -> None:
    job_file = _job_file(tmp_path, job_name, apps)
    rng = random.Random(11)
    clock = time.perf_counter()

    kill_after = []
    for round_no in range(KILLS):
        worker = _worker(job_file, postgres_url)
        delay_s = rng.uniform(3.0, 9.0)
        if round_no == 1:
            # Halfway through this round the ledger drops every connection.
            threading.Timer(delay_s / 2, _terminate_backends, [postgres_url]).start()
        time.sleep(delay_s)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kill_after.append(round(delay_s, 1))

    passes = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        passes += 1
        _worker(job_file, postgres_url).wait(timeout=240)
        if _settled(postgres_url, job_name):
            break
        time.sleep(3.5)  # let leases of killed workers run out
    seconds = time.perf_counter() - clock

    digest = httpx.get(f"{apps.source}/admin/digest", timeout=60).json()["hashes"]
    received = httpx.get(f"{apps.target}/received", timeout=60).json()
    stats = httpx.get(f"{apps.target}/stats", timeout=60).json()
    lost = sum(1 for key, content in digest.items() if received.get(key) != content)
    unknown = _unknown_attempts(postgres_url, job_name)
    attempt_rows = _attempt_rows(postgres_url, job_name)
    print(
        f"chaos records={RECORDS} kills={KILLS} kill_after_s={kill_after} "
        f"passes_after={passes} faults={dict(apps.injector.injected)} "
        f"attempts={attempt_rows} unknown={unknown} delivered={len(received)} "
        f"lost={lost} duplicates={stats['duplicates']} "
        f"older_after_newer={stats.get('older_after_newer', 'n/a')} "
        f"seconds={seconds:.1f}"
    )
    assert _settled(postgres_url, job_name)
    assert len(digest) == RECORDS
    assert lost == 0
    assert stats["duplicates"] <= unknown
    assert stats.get("older_after_newer", 0) == 0
    assert sum(apps.injector.injected.values()) > 0
    assert attempt_rows >= RECORDS


def _overlapping_attempts(ledger_url: str, job: str) -> int:
    """Attempts of one delivery whose time spans overlap: in flight twice."""
    with Session(get_engine(ledger_url)) as session:
        rows = session.execute(
            select(
                attempts.c.delivery_id, attempts.c.started_at, attempts.c.duration_ms
            )
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .where(deliveries.c.job == job)
            .order_by(attempts.c.delivery_id, attempts.c.started_at)
        ).all()
    overlaps = 0
    for previous, current in zip(rows, rows[1:], strict=False):
        if previous.delivery_id != current.delivery_id:
            continue
        ends_at = previous.started_at.timestamp() + previous.duration_ms / 1000
        if current.started_at.timestamp() < ends_at:
            overlaps += 1
    return overlaps


def test_chaos_three_workers_never_push_one_delivery_twice_at_once(
    tmp_path: Path, apps: Apps, postgres_url: str, job_name: str
) -> None:
    apps.injector.pause()
    job_file = _job_file(tmp_path, job_name, apps)
    clock = time.perf_counter()

    workers = [_worker(job_file, postgres_url) for _ in range(3)]
    codes = [worker.wait(timeout=300) for worker in workers]
    while not _settled(postgres_url, job_name):
        _worker(job_file, postgres_url).wait(timeout=300)
    seconds = time.perf_counter() - clock

    digest = httpx.get(f"{apps.source}/admin/digest", timeout=60).json()["hashes"]
    received = httpx.get(f"{apps.target}/received", timeout=60).json()
    stats = httpx.get(f"{apps.target}/stats", timeout=60).json()
    lost = sum(1 for key, content in digest.items() if received.get(key) != content)
    overlaps = _overlapping_attempts(postgres_url, job_name)
    print(
        f"chaos workers=3 exit_codes={codes} records={RECORDS} lost={lost} "
        f"duplicates={stats['duplicates']} overlapping_attempts={overlaps} "
        f"seconds={seconds:.1f}"
    )
    assert (lost, stats["duplicates"], overlaps) == (0, 0, 0)

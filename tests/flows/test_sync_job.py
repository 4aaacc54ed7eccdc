"""The sync-job flow end to end: real demo apps on loopback, a real ledger,
and the session's Prefect test server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flows.sync_job import sync_job
from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app
from ledger.engine import get_engine
from ledger.reports import target_status
from ledger.schema import attempts, deliveries, record_versions
from ledger.store import load_cursor

FLIGHTS = 600


@dataclass(frozen=True)
class Apps:
    source: str
    target: str


def _with_broken_shard(app: ASGIApp) -> ASGIApp:
    """The demo source, except that shard origin=BAD gets an HTML page."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"origin=BAD" in scope.get("query_string", b""):
            await HTMLResponse("<html>maintenance</html>")(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def apps() -> Iterator[Apps]:
    source_app = _with_broken_shard(build_source_app(load_flights(FLIGHTS)))
    with (
        serve_in_thread(source_app) as source,
        serve_in_thread(build_target_app()) as target,
    ):
        yield Apps(source, target)


def _job(tmp_path: Path, name: str, apps: Apps, **overrides: Any) -> Path:
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
            }
        ],
        "delivery": {"partitions": 2, "claim_size": 100},
    }
    for section, value in overrides.items():
        spec[section] = {**spec[section], **value} if section == "source" else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _get(url: str) -> Any:
    return httpx.get(url, timeout=30).json()


def _count(ledger_url: str, table: Any, job: str) -> int:
    with Session(get_engine(ledger_url)) as session:
        if table is attempts:
            query = (
                select(func.count())
                .select_from(attempts)
                .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
                .where(deliveries.c.job == job)
            )
        else:
            query = select(func.count()).select_from(table).where(table.c.job == job)
        return int(session.execute(query).scalar_one())


def test_sync_job_demo_flights_reach_target_once(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)

    state = sync_job(str(job_file), ledger_url, return_state=True)

    summary = state.result()
    assert state.is_completed()
    assert (summary.total("fetched"), summary.total("delivered")) == (FLIGHTS, FLIGHTS)
    assert (
        _get(f"{apps.target}/received") == _get(f"{apps.source}/admin/digest")["hashes"]
    )
    stats = _get(f"{apps.target}/stats")
    assert (stats["distinct_keys"], stats["duplicates"]) == (FLIGHTS, 0)
    assert _count(ledger_url, record_versions, job_name) == FLIGHTS
    assert _count(ledger_url, attempts, job_name) == FLIGHTS
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
    assert (status.delivered, status.pending, status.dead) == (FLIGHTS, 0, 0)


def test_sync_job_second_run_delivers_nothing_new(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)
    sync_job(str(job_file), ledger_url, return_state=True)
    requests_before = _get(f"{apps.target}/stats")["requests"]

    state = sync_job(str(job_file), ledger_url, return_state=True)

    summary = state.result()
    assert (summary.total("staged"), summary.total("delivered")) == (0, 0)
    assert _get(f"{apps.target}/stats")["requests"] == requests_before
    assert _count(ledger_url, record_versions, job_name) == FLIGHTS


def test_sync_job_ten_changed_records_deliver_exactly_ten_versions(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)
    sync_job(str(job_file), ledger_url, return_state=True)
    changed = httpx.post(f"{apps.source}/admin/change?count=10").json()["changed_ids"]

    state = sync_job(str(job_file), ledger_url, return_state=True)

    summary = state.result()
    assert len(changed) == 10
    assert (summary.total("staged"), summary.total("delivered")) == (10, 10)
    assert _count(ledger_url, record_versions, job_name) == FLIGHTS + 10
    assert (
        _get(f"{apps.target}/received") == _get(f"{apps.source}/admin/digest")["hashes"]
    )
    assert _get(f"{apps.target}/stats")["duplicates"] == 0


def test_sync_job_jellyfish_presets_deliver_every_record(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(
        tmp_path,
        job_name,
        apps,
        source={
            "preset": "jellyfish",
            "url": f"{apps.source}/jellyfish/flights",
            "records_path": "data",
            "pagination": None,
        },
        targets=[
            {
                "name": "legacy",
                "preset": "jellyfish",
                "url": f"{apps.target}/jellyfish/records",
                "concurrency": 16,
            }
        ],
    )
    spec = yaml.safe_load(job_file.read_text())
    del spec["source"]["pagination"]
    job_file.write_text(yaml.safe_dump(spec))

    state = sync_job(str(job_file), ledger_url, return_state=True)

    assert state.is_completed(), state.message
    assert state.result().total("delivered") == FLIGHTS
    assert (
        _get(f"{apps.target}/received") == _get(f"{apps.source}/admin/digest")["hashes"]
    )
    headers = _get(f"{apps.target}/headers/last")
    assert len(headers["idempotency-key"]) == 40


def test_sync_job_broken_shard_fails_run_and_keeps_its_cursor(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)
    spec = yaml.safe_load(job_file.read_text())
    spec["source"]["shards"].append({"name": "bad", "params": {"origin": "BAD"}})
    job_file.write_text(yaml.safe_dump(spec))

    state = sync_job(str(job_file), ledger_url, return_state=True)

    assert state.is_failed()
    assert "failed_shards=1" in state.message
    assert "(failed shards: bad)" in state.message
    assert state.result(raise_on_failure=False).total("delivered") == FLIGHTS
    with Session(get_engine(ledger_url)) as session:
        assert load_cursor(session, job_name, "bad") is None
        assert load_cursor(session, job_name, "ewr") is not None


def test_sync_job_target_down_keeps_deliveries_scheduled(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str, free_port: int
) -> None:
    job_file = _job(
        tmp_path,
        job_name,
        apps,
        targets=[
            {
                "name": "down",
                "url": f"http://127.0.0.1:{free_port}/records",
                "batch_size": 100,
                "retry": {"kind": "fixed", "interval_s": 600, "max_attempts": 3},
            }
        ],
    )

    state = sync_job(str(job_file), ledger_url, return_state=True)

    assert state.is_completed()
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
        errors = session.execute(
            select(attempts.c.outcome, attempts.c.error, func.count())
            .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
            .where(deliveries.c.job == job_name)
            .group_by(attempts.c.outcome, attempts.c.error)
        ).all()
    assert (status.retrying, status.delivered, status.dead) == (FLIGHTS, 0, 0)
    assert [tuple(e) for e in errors] == [
        ("retry", "connection failed (ClientConnectorError)", FLIGHTS)
    ]


def test_sync_job_dead_letters_fail_the_run_with_counts(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    httpx.post(f"{apps.target}/admin/faults", json={"fail_rate": 1.0, "status": 503})
    job_file = _job(
        tmp_path,
        job_name,
        apps,
        targets=[
            {
                "name": "flaky",
                "url": f"{apps.target}/records/batch",
                "batch_size": 100,
                "retry": {"kind": "fixed", "interval_s": 0, "max_attempts": 2},
            }
        ],
    )

    state = sync_job(str(job_file), ledger_url, return_state=True)

    assert state.is_failed()
    assert f"dead={FLIGHTS}" in state.message
    assert f"retried={FLIGHTS}" in state.message
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
    assert status.dead == FLIGHTS
    assert _count(ledger_url, attempts, job_name) == 2 * FLIGHTS


def test_sync_job_publishes_counts_artifact(
    tmp_path: Path, apps: Apps, ledger_url: str, job_name: str
) -> None:
    job_file = _job(tmp_path, job_name, apps)

    sync_job(str(job_file), ledger_url, return_state=True)

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"sync-{job_name}"])
            )
        )
    assert artifact.type == "table"
    rows = json.loads(str(artifact.data))
    by_name = {row["name"]: row for row in rows}
    assert sum(by_name[s]["fetched"] for s in ("ewr", "jfk", "lga")) == FLIGHTS
    assert by_name["warehouse"]["delivered"] == FLIGHTS
    assert by_name["warehouse"]["pending"] == 0

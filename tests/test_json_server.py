"""A sync against a third-party REST server: json-server 0.17 (npm) on loopback.

json-server pages ``GET /flights`` with ``_page``/``_limit`` and stores every
``POST /received`` body (answering 201), so it serves as both the source and
the target of one job. The test installs json-server into ``.jellyfish/npm``
on first use and is skipped only when npm or npx is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from flows.sync_job import sync_job
from ledger.engine import get_engine
from ledger.reports import count_versions, target_status

JSON_SERVER = "json-server@0.17.4"
NPM_DIR = Path(__file__).resolve().parents[1] / ".jellyfish" / "npm"
BIN = NPM_DIR / "node_modules" / ".bin" / "json-server"
FLIGHTS = 120
PAGE_SIZE = 25
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

pytestmark = pytest.mark.jsonserver


def flight_records() -> list[dict[str, Any]]:
    """120 flights with ties on ``updated_at``, nested values and non-ASCII text."""
    return [
        {
            "id": number,
            "updated_at": f"2024-01-01T{8 + number // 30:02d}:00:00Z",
            "flight": f"JF{number:04d}",
            "origin": ["EWR", "JFK", "LGA"][number % 3],
            "seats": {"economy": 100 + number, "business": number % 12},
            "note": "délai à Zürich" if number % 10 == 0 else None,
        }
        for number in range(1, FLIGHTS + 1)
    ]


def installed_version() -> str | None:
    manifest = NPM_DIR / "node_modules" / "json-server" / "package.json"
    if not (manifest.exists() and BIN.exists()):
        return None
    version: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return version


@pytest.fixture(scope="module")
def json_server_bin() -> Path:
    """The json-server 0.17 executable, installed with npm on first use."""
    missing = [tool for tool in ("npm", "npx") if shutil.which(tool) is None]
    if missing:
        reason = f"json-server tests need Node.js; {' and '.join(missing)} not found"
        # CI sets JELLYFISH_REQUIRE_NPX: there a missing npx is a failure.
        if os.environ.get("JELLYFISH_REQUIRE_NPX") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    if installed_version() != JSON_SERVER.split("@")[1]:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund"]
            + [JSON_SERVER],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"npm install {JSON_SERVER} exited with {done.returncode}: "
                f"{done.stderr[-2000:]}",
                pytrace=False,
            )
    assert installed_version() == "0.17.4"
    return BIN


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while True:
            # A transport error only means json-server is not listening yet.
            with contextlib.suppress(httpx.TransportError):
                answer = client.get(f"{url}/flights", params={"_limit": 1})
                if answer.status_code == 200:
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                pytest.fail(f"json-server did not come up at {url}: {tail}")
            time.sleep(0.1)


@pytest.fixture
def json_server(json_server_bin: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh json-server over 120 flights and an empty ``received`` list."""
    db = tmp_path / "db.json"
    db.write_text(json.dumps({"flights": flight_records(), "received": []}))
    port = free_port()
    log = tmp_path / "json-server.log"
    command = [str(json_server_bin), "--port", str(port), "--host", "127.0.0.1"]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [*command, "--quiet", str(db)],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# json-server 0.17 answers a bare list; it pages on ?_page=&_limit= and names
# the next page in a Link header, so either pagination kind reads it.
PAGINATIONS = {
    "page_number": f"""\
  pagination:
    kind: page_number
    page_param: _page
    size_param: _limit
    page_size: {PAGE_SIZE}
""",
    "link_header": f"""\
  params: {{_page: 1, _limit: {PAGE_SIZE}}}
  pagination: {{kind: next_url}}
""",
}


def write_job(tmp_path: Path, name: str, url: str, pagination: str) -> Path:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        f"""\
name: {name}
source:
  url: {url}/flights
  mode: full
  key: [id]
{PAGINATIONS[pagination]}\
targets:
  - name: json-server
    url: {url}/received
    retry: {{kind: fixed, interval_s: 0, max_attempts: 3}}
""",
        encoding="utf-8",
    )
    return job_file


def received(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/received", timeout=10.0)
    records: list[dict[str, Any]] = response.json()
    return sorted(records, key=lambda record: record["id"])


@pytest.mark.parametrize(
    "pagination",
    [
        pytest.param("page_number", id="page-number"),
        pytest.param("link_header", id="link-header"),
    ],
)
def test_sync_job_json_server_flights_reach_received_once(
    tmp_path: Path, json_server: str, ledger_url: str, job_name: str, pagination: str
) -> None:
    job_file = write_job(tmp_path, job_name, json_server, pagination)

    first = sync_job(str(job_file), ledger_url, return_state=True)
    after_first = received(json_server)
    second = sync_job(str(job_file), ledger_url, return_state=True)

    assert first.is_completed()
    summary = first.result()
    assert [
        (row.kind, row.name, row.pages, row.fetched, row.staged, row.delivered)
        for row in summary.rows
    ] == [
        ("shard", "all", 5, FLIGHTS, FLIGHTS, 0),
        ("target", "json-server", 0, 0, 0, FLIGHTS),
    ]
    assert after_first == flight_records()
    assert second.is_completed()
    again = second.result()
    assert (again.total("fetched"), again.total("staged")) == (FLIGHTS, 0)
    assert (again.total("delivered"), again.total("retried")) == (0, 0)
    assert received(json_server) == flight_records()
    with Session(get_engine(ledger_url)) as session:
        (status,) = target_status(session, job_name)
        versions = count_versions(session, job_name)
    assert versions == FLIGHTS
    assert (status.delivered, status.pending, status.retrying, status.dead) == (
        FLIGHTS,
        0,
        0,
        0,
    )

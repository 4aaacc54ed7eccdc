"""The jellyfish command: exit codes, figures and --json output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from jellyfish.cli import app
from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app

runner = CliRunner()
FLIGHTS = 200


@pytest.fixture
def urls() -> Iterator[tuple[str, str]]:
    with (
        serve_in_thread(build_source_app(load_flights(FLIGHTS))) as source,
        serve_in_thread(build_target_app()) as target,
    ):
        yield source, target


def _write_job(
    path: Path, name: str, source: str, target: str, **target_extra: Any
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "source": {
                    "url": f"{source}/flights",
                    "records_path": "data",
                    "key": ["id"],
                    "cursor": ["updated_at:timestamp", "id:integer"],
                    "pagination": {
                        "kind": "keyset",
                        "params": {"after_updated_at": "updated_at", "after_id": "id"},
                        "page_size": 64,
                    },
                },
                "targets": [{"name": "warehouse", "url": target, **target_extra}],
            }
        ),
        encoding="utf-8",
    )
    return path


def test_run_invalid_job_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    job = tmp_path / "bad.yaml"
    job.write_text("name: Bad Name\nsource: {url: x}\ntargets: []\n", encoding="utf-8")
    ledger = tmp_path / "ledger.db"

    result = runner.invoke(app, ["run", str(job), "--ledger", f"sqlite:///{ledger}"])

    assert result.exit_code == 2
    assert f"{job}: name: Value error, must be lowercase" in result.stderr
    assert f"{job}: targets: List should have at least 1 item" in result.stderr
    assert not ledger.exists()


def test_run_then_status_json_report_delivered_counts(
    tmp_path: Path, urls: tuple[str, str], ledger_url: str, job_name: str
) -> None:
    source, target = urls
    job = _write_job(tmp_path / "job.yaml", job_name, source, f"{target}/records")

    ran = runner.invoke(app, ["run", str(job), "--ledger", ledger_url, "--json"])
    status = runner.invoke(app, ["status", str(job), "--ledger", ledger_url, "--json"])

    assert ran.exit_code == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["state"] == "COMPLETED"
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["all"]["fetched"] == FLIGHTS
    assert rows["warehouse"]["delivered"] == FLIGHTS
    assert status.exit_code == 0, status.stderr
    (warehouse,) = json.loads(status.stdout)["targets"]
    assert warehouse["delivered"] == FLIGHTS
    assert (warehouse["pending"], warehouse["dead"]) == (0, 0)
    assert warehouse["oldest_pending_age_s"] is None


def test_run_dead_letters_exit_1_with_counts(
    tmp_path: Path, urls: tuple[str, str], ledger_url: str, job_name: str
) -> None:
    source, target = urls
    job = _write_job(tmp_path / "job.yaml", job_name, source, f"{target}/no-such-route")

    result = runner.invoke(app, ["run", str(job), "--ledger", ledger_url])

    assert result.exit_code == 1
    assert f"dead={FLIGHTS}" in result.stdout


def test_status_pending_deliveries_show_oldest_age(
    tmp_path: Path,
    urls: tuple[str, str],
    ledger_url: str,
    job_name: str,
    free_port: int,
) -> None:
    source, _ = urls
    job = _write_job(
        tmp_path / "job.yaml",
        job_name,
        source,
        f"http://127.0.0.1:{free_port}/records",
        batch_size=50,
        retry={"kind": "fixed", "interval_s": 600, "max_attempts": 3},
    )
    runner.invoke(app, ["run", str(job), "--ledger", ledger_url])

    result = runner.invoke(app, ["status", str(job), "--ledger", ledger_url, "--json"])

    (warehouse,) = json.loads(result.stdout)["targets"]
    assert (warehouse["retrying"], warehouse["delivered"]) == (FLIGHTS, 0)
    assert 0 <= warehouse["oldest_pending_age_s"] < 120


def test_demo_json_counts_lost_and_duplicates_at_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(
        app,
        ["demo", "--records", "500", "--push", "single", "--json"],
    )

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source_records"] == 500
    assert report["delivered"] == 500
    assert (report["lost"], report["duplicates"], report["dead"]) == (0, 0, 0)
    assert report["ledger"] == "sqlite:///.jellyfish/ledger.db"
    assert (tmp_path / ".jellyfish" / "ledger.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--records", "0"], "--records takes a positive number", id="zero"
        ),
        pytest.param(["--records", "lots"], "--records takes a positive", id="word"),
        pytest.param(
            ["--push", "many"], "--push must be 'batch' or 'single'", id="push"
        ),
    ],
)
def test_demo_bad_options_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["demo", *args])

    assert result.exit_code == 2
    assert message in result.stderr

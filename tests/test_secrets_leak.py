"""Promise 8: secrets never appear in logs, artifacts, the ledger or messages.

One run with every kind of secret in play (source token, target token,
signing secret, a password in the ledger URL) and a target that echoes the
credentials it receives in its error answers; then everything the run left
behind is searched for each secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from jellyfish.cli import app
from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app
from ledger.engine import get_engine
from ledger.schema import Base

SECRETS = {
    "JF_SOURCE_TOKEN": "fake-source-token-4f2a91",
    "JF_TARGET_TOKEN": "fake-target-token-9c1d07",
    "JF_SIGNING_SECRET": "fake-signing-secret-77b3",
}
DB_PASSWORD = "fake-db-pass-31e8"
ECHOES = 4


def _echoing(app: ASGIApp) -> ASGIApp:
    """Answer the first few requests with 503 and the credentials they carried."""
    left = [ECHOES]

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and left[0] > 0:
            left[0] -= 1
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            body = {
                "error": f"rejected {headers.get('authorization')}",
                "signature": headers.get("x-jellyfish-signature"),
            }
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def urls() -> Iterator[tuple[str, str]]:
    target = build_target_app(signing_secret=SECRETS["JF_SIGNING_SECRET"])
    with (
        serve_in_thread(build_source_app(load_flights(120))) as source,
        serve_in_thread(_echoing(target)) as target_url,
    ):
        yield source, target_url


def test_run_with_every_secret_leaves_none_behind(
    tmp_path: Path,
    urls: tuple[str, str],
    postgres_url: str,
    job_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    ledger = (
        make_url(postgres_url)
        .set(password=DB_PASSWORD)
        .render_as_string(hide_password=False)
    )
    source, target = urls
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": job_name,
                "source": {
                    "url": f"{source}/flights",
                    "records_path": "data",
                    "key": ["id"],
                    "cursor": ["updated_at:timestamp", "id:integer"],
                    "pagination": {
                        "kind": "keyset",
                        "params": {"after_updated_at": "updated_at", "after_id": "id"},
                        "page_size": 50,
                    },
                    "auth": {"kind": "bearer", "token": {"env": "JF_SOURCE_TOKEN"}},
                },
                "targets": [
                    {
                        "name": "warehouse",
                        "url": f"{target}/records",
                        "auth": {"kind": "bearer", "token": {"env": "JF_TARGET_TOKEN"}},
                        "signing_secret": {"env": "JF_SIGNING_SECRET"},
                        "retry": {"kind": "fixed", "interval_s": 0, "max_attempts": 5},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["run", str(job_file), "--ledger", ledger])

    assert result.exit_code == 0, result.stderr
    secrets = [*SECRETS.values(), DB_PASSWORD]
    with Session(get_engine(ledger)) as session:
        ledger_text = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in session.execute(select(table)).all()
        )
        excerpts = ledger_text.count("rejected ***")
    produced = {
        "cli output": result.stdout + result.stderr,
        "ledger": ledger_text,
        **_prefect_records(job_name),
    }
    leaks = [
        (where, secret[:8])
        for where, text in produced.items()
        for secret in secrets
        if secret in text
    ]
    assert leaks == []
    # The echoed answers were kept, with the credential masked.
    assert excerpts == ECHOES


def _prefect_records(job: str) -> dict[str, str]:
    """Logs, parameters and artifacts the Prefect server kept for the run."""
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"sync-{job}"]))
        )
        assert artifact.flow_run_id is not None
        (flow_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[artifact.flow_run_id])
            )
        )
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[artifact.flow_run_id])
            )
        )
    return {
        "flow run parameters": json.dumps(flow_run.parameters),
        "flow run state": str(flow_run.state),
        "artifact": f"{artifact.data} {artifact.description}",
        "logs": "\n".join(log.message for log in logs),
    }

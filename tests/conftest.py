"""Shared fixtures: one Prefect test server, and ledgers on SQLite and Postgres.

The Postgres ledger is required: when it cannot be reached the tests that
need it fail with the reason, they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from jellyfish import runtime

runtime.prepare()

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from ledger.engine import dispose_all  # noqa: E402

POSTGRES_URL = os.environ.get(
    "JELLYFISH_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/jellyfish_test",
)


@pytest.fixture(autouse=True, scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~10 s to start)."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


def _ensure_database(url: str) -> None:
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).scalar()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated Postgres ledger database; the suite fails if it is unreachable."""
    try:
        _ensure_database(POSTGRES_URL)
    except Exception as exc:  # any failure to reach it is the same verdict
        where = make_url(POSTGRES_URL).render_as_string()
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        pytest.fail(
            f"the Postgres ledger tests need {where} ({type(exc).__name__}: "
            f"{first_line}); start Postgres or set JELLYFISH_TEST_POSTGRES_URL",
            pytrace=False,
        )
    yield POSTGRES_URL
    dispose_all()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The same test on the embedded SQLite default and on Postgres."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    return f"sqlite:///{path}"


@pytest.fixture
def job_name() -> str:
    """A job name no other test uses, so tests can share one Postgres database."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

"""Shared fixtures: one Prefect test server, and ledgers on SQLite and Postgres.

The Postgres ledger is required: when it cannot be reached the tests that
need it fail with the reason, they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
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


def _admin(url: str) -> Engine:
    parsed = make_url(url).set(drivername="postgresql+psycopg", database="postgres")
    return create_engine(parsed, isolation_level="AUTOCOMMIT")


def _recreate_database(url: str) -> None:
    admin = _admin(url)
    name = make_url(url).database
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def _drop_database(url: str) -> None:
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh Postgres ledger database for this session, dropped at its end.

    The suite fails, never skips, when Postgres cannot be reached.
    """
    base = make_url(POSTGRES_URL)
    # One database per session: runs never see each other's rows, and the
    # tables do not grow from one run to the next.
    url = base.set(database=f"{base.database}_{os.getpid()}").render_as_string(
        hide_password=False
    )
    try:
        _recreate_database(url)
    except Exception as exc:  # any failure to reach it is the same verdict
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        pytest.fail(
            f"the Postgres ledger tests need {base.render_as_string()} "
            f"({type(exc).__name__}: {first_line}); start Postgres or set "
            "JELLYFISH_TEST_POSTGRES_URL",
            pytrace=False,
        )
    yield url
    dispose_all()
    _drop_database(url)


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

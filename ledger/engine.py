"""Ledger connections: one engine per URL per process, migrated on first use."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import LedgerError

logger = logging.getLogger(__name__)

DEFAULT_LEDGER_URL = "sqlite:///.jellyfish/ledger.db"
LEDGER_ENV = "JELLYFISH_LEDGER_URL"
_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every Data JellyFish process.
_MIGRATION_LOCK_ID = 0x4A454C4C59

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def ledger_url(explicit: str | None = None) -> str:
    """The ledger URL to use: the one given, else $JELLYFISH_LEDGER_URL, else SQLite."""
    return explicit or os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER_URL


@contextmanager
def ledger_in_environment(url: str) -> Iterator[None]:
    """Make ``url`` the default ledger (``$JELLYFISH_LEDGER_URL``) for a while.

    Flow parameters are stored by the Prefect server and shown in its UI; a
    ledger URL may hold a password, so an in-process flow gets it this way.
    """
    previous = os.environ.get(LEDGER_ENV)
    os.environ[LEDGER_ENV] = url
    try:
        yield
    finally:
        if previous is None:
            del os.environ[LEDGER_ENV]
        else:
            os.environ[LEDGER_ENV] = previous


def redact(url: str | URL) -> str:
    """The URL with its password masked, safe for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable ledger URL>"


def _normalize(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite") and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed


def _connect_args(url: URL) -> dict[str, Any]:
    if not url.drivername.startswith("postgresql"):
        return {}
    # psycopg prepares a statement after five runs, and Postgres then tries a
    # generic plan; for a page's `record_key IN (...)` lookup that plan walks
    # the whole table, and staging slowed from 0.1 s to 5 s a page.
    return {"options": "-c plan_cache_mode=force_custom_plan"}


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets status readers run while a pass writes; NORMAL is still
        # crash-safe in WAL mode, and the busy timeout absorbs writer turns.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url``, created and migrated on first use.

    Raises:
        LedgerError: the URL is invalid or the database cannot be reached.
    """
    url = ledger_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = _normalize(url)
            engine = create_engine(
                parsed,
                hide_parameters=True,
                pool_pre_ping=True,
                pool_size=10,
                connect_args=_connect_args(parsed),
            )
        except Exception as exc:
            raise LedgerError(
                f"ledger URL {redact(url)} is not usable: {type(exc).__name__}; "
                "expected e.g. sqlite:///path/ledger.db or postgresql://user@host/db"
            ) from exc
        if engine.dialect.name == "sqlite":
            _tune_sqlite(engine)
        migrate(engine)
        _engines[url] = engine
        return engine


def migrate(engine: Engine) -> None:
    """Bring the ledger schema to the newest migration.

    Raises:
        LedgerError: the database refused the connection or a migration.
    """
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Two workers starting together must not both create the tables.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"),
                    {"id": _MIGRATION_LOCK_ID},
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        raise LedgerError(
            f"ledger {redact(engine.url)} could not be migrated ({cause}); check "
            "that the database is running and the user may create tables"
        ) from exc
    logger.debug("ledger=%s migrated", redact(engine.url))


def dispose_all() -> None:
    """Close every pooled connection, e.g. before a test drops its database."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()

"""Process-wide settings applied before Prefect is imported."""

from __future__ import annotations

import logging
import os

_DEFAULTS = {
    # The temporary server's shutdown prints tracebacks of cancelled writes
    # that are harmless; keep the server's own logs to what matters.
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "jellyfish,ledger",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # The terminal gets warnings and errors; the one-line-per-page INFO logs
    # still reach the Prefect API and UI. INFO here brings them back.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
}


def prepare() -> None:
    """Quiet defaults for Prefect and HTTP logging; explicit settings win."""
    for name, value in _DEFAULTS.items():
        os.environ.setdefault(name, value)
    # httpx logs every request at INFO, URL included; URLs may carry secrets.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Prefect's event flusher reports its backlog at exit; it is not ours.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)

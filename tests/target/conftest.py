"""Fixtures for the target client tests: the demo target on loopback, fresh per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.target_app import build_target_app


@pytest.fixture
def target_url() -> Iterator[str]:
    """The base URL of a demo target that has received nothing yet."""
    with serve_in_thread(build_target_app()) as url:
        yield url


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A client to read the demo target's /stats, /received and /headers/last."""
    with httpx.Client(timeout=10.0) as http_client:
        yield http_client

"""Real source servers on loopback, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from paged_app import build_paged_app

from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app

DEMO_FLIGHTS = 300


@pytest.fixture(scope="module")
def paged_url() -> Iterator[str]:
    """The paged test app; only the property test replaces its records."""
    with serve_in_thread(build_paged_app()) as url:
        yield url


@pytest.fixture(scope="module")
def flights() -> list[dict[str, object]]:
    return load_flights(DEMO_FLIGHTS)


@pytest.fixture(scope="module")
def demo_url(flights: list[dict[str, object]]) -> Iterator[str]:
    """The demo source over the first 300 flights."""
    with serve_in_thread(build_source_app(flights)) as url:
        yield url

"""Fixtures for the demo apps: real servers on loopback, fresh for every test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from demo_sample import small_records

from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as http_client:
        yield http_client


@pytest.fixture
def source_url() -> Iterator[str]:
    with serve_in_thread(build_source_app(small_records())) as url:
        yield url


@pytest.fixture
def target_url() -> Iterator[str]:
    with serve_in_thread(build_target_app()) as url:
        yield url

"""Running the demo apps: in a thread, and each in its own subprocess."""

from __future__ import annotations

import argparse
import pickle

import httpx
import pytest

from jellyfish.demo.serve import parse_records
from jellyfish.demo.servers import (
    DemoServerError,
    DemoServers,
    serve_in_thread,
    start_demo_servers,
)
from jellyfish.demo.target_app import build_target_app


def test_serve_in_thread_serves_then_frees_port(client: httpx.Client) -> None:
    with serve_in_thread(build_target_app()) as url:
        answer = client.get(f"{url}/health").json()

    assert url.startswith("http://127.0.0.1:")
    assert answer == {"ok": True}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2.0)


def test_start_demo_servers_hundred_records_serves_both_apps(
    client: httpx.Client,
) -> None:
    with start_demo_servers(records=100) as servers:
        page = client.get(f"{servers.source_url}/flights", params={"limit": 2}).json()
        stats = client.get(f"{servers.source_url}/admin/stats").json()
        posted = client.post(
            f"{servers.target_url}/jellyfish/records", json=page["data"][0]
        )
        received = client.get(f"{servers.target_url}/stats").json()

    assert isinstance(servers, DemoServers)
    assert servers.source_url != servers.target_url
    assert stats == {"pages_served": 1, "records": 100}
    assert [record["id"] for record in page["data"]] == [1, 2]
    assert posted.json() == {"code": "0"}
    assert (received["records"], received["distinct_keys"]) == (1, 1)
    for url in (servers.source_url, servers.target_url):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2.0)


def test_start_demo_servers_no_time_raises_naming_source() -> None:
    with (
        pytest.raises(
            DemoServerError,
            match=r"^the demo source did not answer GET /health within 0\.0 s; "
            r"its stderr ends with:\n",
        ) as caught,
        start_demo_servers(records=10, timeout_s=0.0),
    ):
        pytest.fail("start_demo_servers yielded without a ready source")

    assert caught.value.app == "source"


def test_demo_server_error_pickles_with_app() -> None:
    error = DemoServerError("the demo target exited", app="target")

    copy = pickle.loads(pickle.dumps(error))

    assert (type(copy), str(copy), copy.app) == (
        DemoServerError,
        "the demo target exited",
        "target",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("all", None, id="all"),
        pytest.param("0", 0, id="zero"),
        pytest.param("1000", 1000, id="count"),
    ],
)
def test_parse_records_valid_text_returns_count(
    text: str, expected: int | None
) -> None:
    assert parse_records(text) == expected


@pytest.mark.parametrize(
    "text", [pytest.param("-1", id="negative"), pytest.param("many", id="word")]
)
def test_parse_records_bad_text_raises(text: str) -> None:
    with pytest.raises(
        argparse.ArgumentTypeError,
        match=f"^expected 'all' or an integer of at least 0, got '{text}'$",
    ):
        parse_records(text)

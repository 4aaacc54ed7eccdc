"""Passes over real sources: every pagination kind reads each record exactly once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from paged_app import NEWEST
from source_passes import keys_of, make_job, read_pass

from jellyfish.demo.flight_store import instant_us
from jellyfish.job import Job
from jellyfish.source.client import FetchedPage, SourceClient
from jellyfish.source.cursor import CursorState

ALL_KEYS = [str(record_id) for record_id in range(1, 24)]
CURSOR = ["updated_at:timestamp", "id:integer"]
KINDS = ["offset", "page_number", "token", "next_url_body", "next_url_link"]


def paged_source(base_url: str, kind: str, page_size: int) -> dict[str, Any]:
    """The source section that reads the paged app with ``kind`` pagination."""
    common = {"key": ["id"], "cursor": CURSOR, "records_path": "items"}
    if kind == "offset":
        return {
            **common,
            "url": f"{base_url}/offset",
            "pagination": {"kind": "offset", "page_size": page_size},
        }
    if kind == "page_number":
        return {
            **common,
            "url": f"{base_url}/pages",
            "pagination": {"kind": "page_number", "page_size": page_size},
        }
    if kind == "token":
        return {
            **common,
            "url": f"{base_url}/token",
            "params": {"size": page_size},
            "pagination": {
                "kind": "token",
                "token_path": "meta.next_token",
                "token_param": "page_token",
            },
        }
    if kind == "next_url_body":
        return {
            **common,
            "url": f"{base_url}/next-body",
            "params": {"size": page_size},
            "pagination": {"kind": "next_url", "next_path": "links.next"},
        }
    return {
        **common,
        "url": f"{base_url}/next-link",
        "params": {"size": page_size},
        "records_path": "",
        "pagination": {"kind": "next_url"},
    }


def first_pages(job: Job, count: int) -> list[FetchedPage]:
    """The first ``count`` pages of a pass; the pass is then abandoned."""
    with SourceClient.open_http(job) as http:
        pages = SourceClient(job, job.source.shards[0], http).pages(CursorState())
        taken = [next(pages) for _ in range(count)]
        pages.close()
    return taken


# Offset and page-number passes learn the end from a short (or empty) page;
# token and next-URL sources say so themselves, with no trailing empty page.
@pytest.mark.parametrize(
    ("kind", "page_size", "page_count"),
    [
        pytest.param("offset", 1, 24, id="offset-1"),
        pytest.param("offset", 5, 5, id="offset-5"),
        pytest.param("offset", 23, 2, id="offset-23"),
        pytest.param("offset", 50, 1, id="offset-50"),
        pytest.param("page_number", 1, 24, id="page-number-1"),
        pytest.param("page_number", 5, 5, id="page-number-5"),
        pytest.param("page_number", 23, 2, id="page-number-23"),
        pytest.param("page_number", 50, 1, id="page-number-50"),
        pytest.param("token", 1, 23, id="token-1"),
        pytest.param("token", 5, 5, id="token-5"),
        pytest.param("token", 23, 1, id="token-23"),
        pytest.param("token", 50, 1, id="token-50"),
        pytest.param("next_url_body", 1, 23, id="next-url-body-1"),
        pytest.param("next_url_body", 5, 5, id="next-url-body-5"),
        pytest.param("next_url_body", 23, 1, id="next-url-body-23"),
        pytest.param("next_url_body", 50, 1, id="next-url-body-50"),
        pytest.param("next_url_link", 1, 23, id="next-url-link-1"),
        pytest.param("next_url_link", 5, 5, id="next-url-link-5"),
        pytest.param("next_url_link", 23, 1, id="next-url-link-23"),
        pytest.param("next_url_link", 50, 1, id="next-url-link-50"),
    ],
)
def test_pages_any_kind_any_size_reads_every_record_once(
    paged_url: str, kind: str, page_size: int, page_count: int
) -> None:
    job = make_job(paged_source(paged_url, kind, page_size))

    pages = read_pass(job)

    assert keys_of(pages) == ALL_KEYS
    assert [page.number for page in pages] == list(range(1, page_count + 1))
    assert pages[-1].cursor_after == CursorState(high_water=NEWEST)


def test_pages_mixed_offsets_high_water_is_newest_instant(paged_url: str) -> None:
    """Text order would pick "...T14:00:00+04:00"; the instant order picks id 21."""
    job = make_job(paged_source(paged_url, "offset", 50))

    pages = read_pass(job)

    assert pages[0].cursor_after.high_water == ("2024-01-01T06:30:00-05:00", 21)
    assert pages[0].cursor_after.to_json() == (
        '{"high_water":["2024-01-01T06:30:00-05:00",21],"position":null,"since":null}'
    )


@pytest.mark.parametrize(
    ("kind", "position"),
    [
        pytest.param("offset", 10, id="offset"),
        pytest.param("page_number", 3, id="page-number"),
        pytest.param("token", "tok-0010", id="token"),
        pytest.param("next_url_body", "/next-body?size=5&start=10", id="next-url-body"),
        pytest.param("next_url_link", "/next-link?size=5&start=10", id="next-url-link"),
    ],
)
def test_pages_resumed_mid_pass_continues_without_gap_or_double(
    paged_url: str, kind: str, position: int | str
) -> None:
    job = make_job(paged_source(paged_url, kind, 5))
    if isinstance(position, str) and position.startswith("/"):
        position = f"{paged_url}{position}"

    head = first_pages(job, 2)
    saved = CursorState.from_json(head[-1].cursor_after.to_json())
    tail = read_pass(job, saved)

    assert saved == CursorState(
        high_water=("2024-01-01T11:30:00Z", 5), position=position
    )
    assert keys_of(head) == ALL_KEYS[:10]
    assert keys_of(tail) == ALL_KEYS[10:]
    assert tail[0].cursor_before == saved
    assert tail[-1].cursor_after == CursorState(high_water=NEWEST)


def sent_requests(base_url: str, run: str) -> list[dict[str, str]]:
    with httpx.Client(timeout=10.0) as http:
        response = http.get(f"{base_url}/admin/requests", params={"run": run})
    requests: list[dict[str, str]] = response.json()["requests"]
    return requests


def since_source(base_url: str, run: str, page_size: int) -> dict[str, Any]:
    return {
        **paged_source(base_url, "offset", page_size),
        "params": {"run": run},
        "since_params": {"changed_since": "updated_at"},
    }


def test_pages_second_pass_sends_high_water_as_since_param(paged_url: str) -> None:
    run = uuid.uuid4().hex
    job = make_job(since_source(paged_url, run, 10))

    first = read_pass(job)
    second = read_pass(job, first[-1].cursor_after)

    assert keys_of(first) == ALL_KEYS
    assert keys_of(second) == []
    assert second[0].cursor_before == CursorState(high_water=NEWEST, since=NEWEST)
    assert second[-1].cursor_after == CursorState(high_water=NEWEST)
    assert sent_requests(paged_url, run) == [
        {"run": run, "offset": "0", "limit": "10"},
        {"run": run, "offset": "10", "limit": "10"},
        {"run": run, "offset": "20", "limit": "10"},
        {
            "run": run,
            "changed_since": "2024-01-01T06:30:00-05:00",
            "offset": "0",
            "limit": "10",
        },
    ]


def test_pages_since_param_is_sent_on_every_page_of_the_pass(paged_url: str) -> None:
    run = uuid.uuid4().hex
    job = make_job(since_source(paged_url, run, 3))
    mark = ("2024-01-01T12:00:00+02:00", 12)

    pages = read_pass(job, CursorState(high_water=mark))

    assert keys_of(pages) == ["5", "6", "10", "13", "16", "17", "21"]
    assert pages[-1].cursor_after == CursorState(high_water=NEWEST)
    assert [r.get("changed_since") for r in sent_requests(paged_url, run)] == [
        "2024-01-01T12:00:00+02:00"
    ] * 3
    assert [r["offset"] for r in sent_requests(paged_url, run)] == ["0", "3", "6"]


def flight_order(flights: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    chosen = [f for f in flights if f["origin"] == origin]
    return sorted(chosen, key=lambda f: (instant_us(f["updated_at"]), f["id"]))


SHARDS = [
    {"name": "ewr", "params": {"origin": "EWR"}},
    {"name": "jfk", "params": {"origin": "JFK"}},
    {"name": "lga", "params": {"origin": "LGA"}},
]


@pytest.mark.parametrize(
    "page_size",
    [pytest.param(1, id="page-size-1"), pytest.param(7, id="page-size-7")],
)
def test_pages_keyset_shards_over_demo_read_each_flight_once(
    demo_url: str, flights: list[dict[str, Any]], page_size: int
) -> None:
    """Hundreds of flights share an ``updated_at``; the id breaks the ties."""
    job = make_job(
        {
            "url": f"{demo_url}/flights",
            "records_path": "data",
            "key": ["id"],
            "cursor": CURSOR,
            "pagination": {
                "kind": "keyset",
                "params": {"after_updated_at": "updated_at", "after_id": "id"},
                "page_size": page_size,
            },
            "shards": SHARDS,
        }
    )

    read: dict[str, list[str]] = {}
    for shard, origin in [("ewr", "EWR"), ("jfk", "JFK"), ("lga", "LGA")]:
        pages = read_pass(job, shard=shard)
        expected = flight_order(flights, origin)
        read[shard] = keys_of(pages)

        assert read[shard] == [str(f["id"]) for f in expected]
        last = expected[-1]
        assert pages[-1].cursor_after == CursorState(
            high_water=(last["updated_at"], last["id"])
        )
    all_keys = [key for keys in read.values() for key in keys]
    assert sorted(all_keys, key=int) == [str(i) for i in range(1, 301)]
    assert [len(keys) for keys in read.values()] == [99, 95, 106]


@pytest.mark.parametrize(
    ("shard", "origin", "page_sizes"),
    [
        pytest.param("ewr", "EWR", [33, 33, 33, 0], id="ewr-exact-multiple"),
        pytest.param("jfk", "JFK", [33, 33, 29, 0], id="jfk"),
        pytest.param("lga", "LGA", [33, 33, 33, 7, 0], id="lga"),
    ],
)
def test_pages_jellyfish_preset_reads_until_empty_page(
    demo_url: str,
    flights: list[dict[str, Any]],
    shard: str,
    origin: str,
    page_sizes: list[int],
) -> None:
    job = make_job(
        {
            "preset": "jellyfish",
            "url": f"{demo_url}/jellyfish/flights",
            "key": ["id"],
            "cursor": CURSOR,
            "params": {"limit": 33},
            "shards": SHARDS,
        }
    )
    expected = flight_order(flights, origin)
    newest = (expected[-1]["updated_at"], expected[-1]["id"])

    first = read_pass(job, shard=shard)
    second = read_pass(job, first[-1].cursor_after, shard=shard)

    assert keys_of(first) == [str(f["id"]) for f in expected]
    assert [page.fetched for page in first] == page_sizes
    assert first[-1].cursor_after == CursorState(high_water=newest)
    assert [page.fetched for page in second] == [0]
    assert second[0].cursor_before == CursorState(high_water=newest, since=newest)

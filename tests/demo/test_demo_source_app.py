"""The demo source over real HTTP: keyset pages, shard filters, both contracts."""

from __future__ import annotations

import re

import httpx
import pytest
from demo_sample import SMALL_ORDER, small_records

from jellyfish.demo.data import content_hash
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.source_app import build_source_app


def read_all_pages(
    client: httpx.Client, url: str, params: dict[str, str | int]
) -> tuple[list[int], int]:
    """Follow ``next`` from the start; return the ids read and the request count."""
    ids: list[int] = []
    requests = 0
    cursor: dict[str, str | int] = {}
    while True:
        response = client.get(f"{url}/flights", params={**params, **cursor})
        requests += 1
        assert response.status_code == 200
        body = response.json()
        ids += [record["id"] for record in body["data"]]
        if body["next"] is None:
            return ids, requests
        cursor = body["next"]


def test_health_answers_ok(client: httpx.Client, source_url: str) -> None:
    response = client.get(f"{source_url}/health")

    assert (response.status_code, response.json()) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("limit", "expected_requests"),
    [
        pytest.param(1, 13, id="page-size-1"),
        pytest.param(2, 7, id="page-size-2"),
        pytest.param(7, 2, id="page-size-7"),
    ],
)
def test_flights_keyset_pages_return_every_record_once(
    client: httpx.Client, source_url: str, limit: int, expected_requests: int
) -> None:
    ids, requests = read_all_pages(client, source_url, {"limit": limit})

    assert ids == SMALL_ORDER
    assert requests == expected_requests
    stats = client.get(f"{source_url}/admin/stats").json()
    assert stats == {"pages_served": expected_requests, "records": 12}


def test_flights_first_page_next_is_last_record_cursor(
    client: httpx.Client, source_url: str
) -> None:
    body = client.get(f"{source_url}/flights", params={"limit": 3}).json()

    assert [record["id"] for record in body["data"]] == [2, 3, 6]
    assert body["data"][0] == {
        "id": 2,
        "updated_at": "2013-01-01T10:00:00Z",
        "origin": "LGA",
        "dep_delay": None,
        "flight": 200,
    }
    assert body["next"] == {"after_updated_at": "2013-01-01T10:00:00Z", "after_id": 6}


def test_flights_short_page_has_no_next(client: httpx.Client, source_url: str) -> None:
    body = client.get(f"{source_url}/flights", params={"limit": 13}).json()

    assert len(body["data"]) == 12
    assert body["next"] is None


def test_flights_origin_filter_pages_only_that_origin(
    client: httpx.Client, source_url: str
) -> None:
    ids, requests = read_all_pages(client, source_url, {"limit": 4, "origin": "EWR"})

    assert ids == [3, 9, 1, 5, 11, 7]
    assert requests == 2


def test_flights_two_filters_match_both_fields(
    client: httpx.Client, source_url: str
) -> None:
    ids, _ = read_all_pages(
        client, source_url, {"limit": 2, "origin": "EWR", "flight": "100"}
    )

    assert ids == [3, 1, 7]


def test_flights_filter_value_absent_returns_empty_page(
    client: httpx.Client, source_url: str
) -> None:
    body = client.get(f"{source_url}/flights", params={"origin": "BOS"}).json()

    assert body == {"data": [], "next": None}


@pytest.mark.parametrize(
    ("after_updated_at", "after_id", "expected_ids"),
    [
        pytest.param(
            "2013-01-01T13:00:00+02:00", 5, [8, 11, 4, 7, 12, 10], id="plus-two-hours"
        ),
        pytest.param(
            "2013-01-01T06:00:00-05:00", 5, [8, 11, 4, 7, 12, 10], id="minus-five-hours"
        ),
        pytest.param("2013-01-01T11:00:00Z", 5, [8, 11, 4, 7, 12, 10], id="zulu"),
        pytest.param("2013-01-01T11:00:00", 11, [4, 7, 12, 10], id="naive-is-utc"),
        pytest.param("2013-01-01T12:00:00Z", 7, [12, 10], id="tie-with-offset-record"),
    ],
)
def test_flights_offset_cursor_compares_as_utc_instant(
    client: httpx.Client,
    source_url: str,
    after_updated_at: str,
    after_id: int,
    expected_ids: list[int],
) -> None:
    params = {"after_updated_at": after_updated_at, "after_id": after_id}

    body = client.get(f"{source_url}/flights", params=params).json()

    assert [record["id"] for record in body["data"]] == expected_ids


def test_flights_timestamp_without_id_includes_that_instant(
    client: httpx.Client, source_url: str
) -> None:
    params = {"after_updated_at": "2013-01-01T12:00:00Z"}

    body = client.get(f"{source_url}/flights", params=params).json()

    assert [record["id"] for record in body["data"]] == [4, 7, 12, 10]


def test_flights_limit_above_maximum_is_clamped(
    client: httpx.Client, source_url: str
) -> None:
    body = client.get(f"{source_url}/flights", params={"limit": 999999}).json()

    assert len(body["data"]) == 12
    assert body["next"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param(
            {"after_updated_at": "yesterday"},
            "the cursor timestamp must be ISO-8601, got 'yesterday'",
            id="bad-timestamp",
        ),
        pytest.param(
            {"after_updated_at": "2013-01-01T10:00:00Z", "after_id": "x"},
            "the cursor id must be an integer, got 'x'",
            id="bad-id",
        ),
        pytest.param(
            {"limit": "0"},
            "limit must be an integer of at least 1, got '0'",
            id="zero-limit",
        ),
        pytest.param(
            {"orign": "EWR"},
            "unknown parameter 'orign'; valid names are: after_id, after_updated_at, "
            "dep_delay, flight, id, limit, origin, updated_at",
            id="unknown-field",
        ),
    ],
)
def test_flights_bad_parameter_returns_400(
    client: httpx.Client, source_url: str, params: dict[str, str], message: str
) -> None:
    response = client.get(f"{source_url}/flights", params=params)

    assert response.status_code == 400
    assert response.json() == {"error": message}


@pytest.mark.parametrize(
    "id_name", [pytest.param("id", id="id"), pytest.param("uId", id="uId")]
)
def test_jellyfish_flights_last_id_either_name_pages_after_it(
    client: httpx.Client, source_url: str, id_name: str
) -> None:
    body = {"offset": "2013-01-01T10:00:00Z", id_name: 6, "limit": 3}

    response = client.post(f"{source_url}/jellyfish/flights", json=body)

    assert response.status_code == 200
    answer = response.json()
    assert answer["code"] == "0"
    assert [record["id"] for record in answer["data"]] == [9, 1, 5]


def test_jellyfish_flights_empty_offset_with_shard_filter_starts_at_top(
    client: httpx.Client, source_url: str
) -> None:
    body = {"offset": "", "id": 0, "origin": "LGA"}

    answer = client.post(f"{source_url}/jellyfish/flights", json=body).json()

    assert answer["code"] == "0"
    assert [record["id"] for record in answer["data"]] == [2, 8, 12]


def test_jellyfish_flights_default_page_is_500(client: httpx.Client) -> None:
    records = [{"id": n, "updated_at": "2013-01-01T10:00:00Z"} for n in range(1, 602)]
    with serve_in_thread(build_source_app(records)) as url:
        first = client.post(f"{url}/jellyfish/flights", json={}).json()
        last_id = first["data"][-1]["id"]
        second = client.post(
            f"{url}/jellyfish/flights",
            json={"offset": "2013-01-01T10:00:00Z", "id": last_id},
        ).json()

    assert (len(first["data"]), last_id) == (500, 500)
    assert [record["id"] for record in second["data"]] == list(range(501, 602))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"[1, 2]", "the body must be a JSON object, got list", id="json-array"
        ),
        pytest.param(
            b"offset=1", "the body must be a JSON object, got invalid JSON", id="form"
        ),
        pytest.param(
            b'{"offset": 5}', "offset must be an ISO-8601 string, got int", id="offset"
        ),
        pytest.param(
            b'{"offset": "2013-01-01T10:00:00Z", "uId": "six"}',
            "the cursor id must be an integer, got 'six'",
            id="uid",
        ),
    ],
)
def test_jellyfish_flights_bad_body_answers_code_400_in_body(
    client: httpx.Client, source_url: str, content: bytes, message: str
) -> None:
    response = client.post(f"{source_url}/jellyfish/flights", content=content)

    assert response.status_code == 200
    assert response.json() == {"code": "400", "message": message}


def test_admin_change_changes_predicted_ids_and_moves_them_last(
    client: httpx.Client, source_url: str
) -> None:
    before = client.get(f"{source_url}/admin/digest").json()["hashes"]

    response = client.post(f"{source_url}/admin/change", params={"count": 3})

    # Positions 0, 4 and 8 of the 12 ids in ascending order.
    assert response.json() == {"changed_ids": [1, 5, 9]}
    records = client.get(f"{source_url}/flights", params={"limit": 100}).json()["data"]
    assert [record["id"] for record in records] == [
        2,
        3,
        6,
        8,
        11,
        4,
        7,
        12,
        10,
        1,
        5,
        9,
    ]
    changed = records[-3:]
    assert [record["dep_delay"] for record in changed] == [3.0, 1.0, -3.0]
    stamps = [record["updated_at"] for record in changed]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
        for stamp in stamps
    )
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3
    after = client.get(f"{source_url}/admin/digest").json()["hashes"]
    assert sorted(k for k in before if before[k] != after[k]) == ["1", "5", "9"]


def test_admin_change_after_filtered_reads_keeps_filter_indexes_current(
    client: httpx.Client, source_url: str
) -> None:
    def filtered_ids(params: dict[str, str]) -> list[int]:
        body = client.get(f"{source_url}/flights", params=params).json()
        return [record["id"] for record in body["data"]]

    assert filtered_ids({"origin": "EWR"}) == [3, 9, 1, 5, 11, 7]
    assert filtered_ids({"dep_delay": "3.0"}) == [7]

    client.post(f"{source_url}/admin/change", params={"count": 3})

    assert filtered_ids({"origin": "EWR"}) == [3, 11, 7, 1, 5, 9]
    assert filtered_ids({"dep_delay": "3.0"}) == [7, 1]
    assert filtered_ids({"dep_delay": "null"}) == [2]


def test_admin_change_old_cursor_then_reads_only_changed(
    client: httpx.Client, source_url: str
) -> None:
    old_cursor = {"after_updated_at": "2013-01-01T13:00:00Z", "after_id": 10}
    client.post(f"{source_url}/admin/change", params={"count": 2})

    body = client.get(f"{source_url}/flights", params=old_cursor).json()

    assert [record["id"] for record in body["data"]] == [1, 7]


def test_admin_change_count_above_size_changes_all(
    client: httpx.Client, source_url: str
) -> None:
    response = client.post(f"{source_url}/admin/change", params={"count": 50})

    assert response.json() == {"changed_ids": list(range(1, 13))}


@pytest.mark.parametrize(
    "count", [pytest.param("0", id="zero"), pytest.param("ten", id="text")]
)
def test_admin_change_bad_count_returns_400(
    client: httpx.Client, source_url: str, count: str
) -> None:
    response = client.post(f"{source_url}/admin/change", params={"count": count})

    assert response.status_code == 400
    assert response.json() == {
        "error": f"count must be an integer of at least 1, got '{count}'"
    }


def test_admin_change_leaves_caller_records_unchanged(client: httpx.Client) -> None:
    records = small_records()
    with serve_in_thread(build_source_app(records)) as url:
        client.post(f"{url}/admin/change", params={"count": 12})

    assert records == small_records()


def test_admin_digest_hashes_every_record_content(
    client: httpx.Client, source_url: str
) -> None:
    digest = client.get(f"{source_url}/admin/digest").json()

    assert digest == {
        "records": 12,
        "hashes": {str(r["id"]): content_hash(r) for r in small_records()},
    }


@pytest.mark.parametrize(
    ("records", "message"),
    [
        pytest.param(
            [{"updated_at": "2013-01-01T10:00:00Z"}],
            "record at position 0 needs an int 'id', got NoneType",
            id="no-id",
        ),
        pytest.param(
            [{"id": 1, "updated_at": None}],
            "record id=1 needs an ISO-8601 'updated_at' string, got NoneType",
            id="no-updated-at",
        ),
        pytest.param(
            [{"id": 1, "updated_at": "2013-01-01T10:00:00Z"}] * 2,
            "records must have distinct 'id' values",
            id="duplicate-id",
        ),
    ],
)
def test_build_source_app_bad_records_raise(
    records: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_source_app(records)

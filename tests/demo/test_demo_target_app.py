"""The demo target over real HTTP: what it keeps, counts and refuses."""

from __future__ import annotations

import random

import httpx
import pytest

from jellyfish.demo.data import content_hash
from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.target_app import build_target_app

FIRST = {"id": 1, "origin": "EWR", "dep_delay": 2.0}
SECOND = {"id": 2, "origin": "LGA", "dep_delay": None}
EMPTY_STATS = {
    "requests": 0,
    "records": 0,
    "distinct_keys": 0,
    "duplicates": 0,
    "faulted": 0,
}


def test_records_single_post_stores_latest_content(
    client: httpx.Client, target_url: str
) -> None:
    response = client.post(f"{target_url}/records", json=FIRST)

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert client.get(f"{target_url}/received").json() == {"1": content_hash(FIRST)}
    assert client.get(f"{target_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 1,
        "records": 1,
        "distinct_keys": 1,
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([FIRST, SECOND], id="json-array"),
        pytest.param({"records": [FIRST, SECOND]}, id="records-object"),
    ],
)
def test_records_batch_post_accepts_every_record(
    client: httpx.Client, target_url: str, body: object
) -> None:
    response = client.post(f"{target_url}/records/batch", json=body)

    assert (response.status_code, response.json()) == (
        200,
        {"ok": True, "accepted": 2},
    )
    assert client.get(f"{target_url}/received").json() == {
        "1": content_hash(FIRST),
        "2": content_hash(SECOND),
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/jellyfish/records", FIRST, id="single"),
        pytest.param("/jellyfish/records/batch", [FIRST], id="batch"),
    ],
)
def test_jellyfish_records_stores_and_answers_code_0(
    client: httpx.Client, target_url: str, path: str, body: object
) -> None:
    response = client.post(f"{target_url}{path}", json=body)

    assert (response.status_code, response.json()) == (200, {"code": "0"})
    assert client.get(f"{target_url}/received").json() == {"1": content_hash(FIRST)}


def test_records_same_version_again_counts_duplicate(
    client: httpx.Client, target_url: str
) -> None:
    changed = {**FIRST, "dep_delay": 3.0}
    # Key order differs from FIRST: the same content must still hash the same.
    reordered = {"dep_delay": 2.0, "origin": "EWR", "id": 1}

    for body in (FIRST, reordered, changed, FIRST):
        client.post(f"{target_url}/records", json=body)

    assert client.get(f"{target_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 4,
        "records": 4,
        "distinct_keys": 1,
        "duplicates": 2,
    }
    assert client.get(f"{target_url}/received").json() == {"1": content_hash(FIRST)}


@pytest.mark.parametrize(
    ("path", "content", "answer"),
    [
        pytest.param(
            "/records",
            b"{not json",
            {"ok": False, "error": "the body is not valid JSON"},
            id="not-json",
        ),
        pytest.param(
            "/records",
            b'{"origin": "EWR"}',
            {
                "ok": False,
                "error": "record 0 needs the key field 'id' as a string or "
                "integer, got NoneType",
            },
            id="no-key",
        ),
        pytest.param(
            "/records/batch",
            b'[{"id": 1}, {"origin": "EWR"}]',
            {
                "ok": False,
                "error": "record 1 needs the key field 'id' as a string or "
                "integer, got NoneType",
            },
            id="batch-second-lacks-key",
        ),
        pytest.param(
            "/records/batch",
            b'{"id": 1}',
            {
                "ok": False,
                "error": 'a batch body must be a JSON array of objects or {"records": '
                "[...]}, got dict",
            },
            id="batch-single-object",
        ),
        pytest.param(
            "/records/batch",
            b"[1]",
            {"ok": False, "error": "record 0 must be a JSON object, got int"},
            id="batch-not-objects",
        ),
        pytest.param(
            "/jellyfish/records",
            b"[]",
            {"code": "400", "message": "record 0 must be a JSON object, got list"},
            id="jellyfish-array",
        ),
    ],
)
def test_records_bad_body_returns_400_and_stores_nothing(
    client: httpx.Client,
    target_url: str,
    path: str,
    content: bytes,
    answer: dict[str, object],
) -> None:
    response = client.post(f"{target_url}{path}", content=content)

    assert (response.status_code, response.json()) == (400, answer)
    assert client.get(f"{target_url}/received").json() == {}
    assert client.get(f"{target_url}/stats").json() == {**EMPTY_STATS, "requests": 1}


def test_records_custom_key_field_keys_by_it(client: httpx.Client) -> None:
    with serve_in_thread(build_target_app(key_field="code")) as url:
        client.post(f"{url}/records", json={"code": "EWR-1", "n": 1})
        refused = client.post(f"{url}/records", json={"id": 1})
        received = client.get(f"{url}/received").json()

    assert refused.status_code == 400
    assert received == {"EWR-1": content_hash({"code": "EWR-1", "n": 1})}


def test_faults_full_rate_answers_status_and_stores_nothing(
    client: httpx.Client, target_url: str
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 503})

    plain = client.post(f"{target_url}/records", json=FIRST)
    jellyfish = client.post(f"{target_url}/jellyfish/records", json=FIRST)
    batch = client.post(f"{target_url}/records/batch", json=[FIRST, SECOND])

    assert (plain.status_code, plain.json()) == (
        503,
        {"ok": False, "error": "fault injected by /admin/faults"},
    )
    assert (jellyfish.status_code, jellyfish.json()) == (503, {"code": "1"})
    assert batch.status_code == 503
    assert client.get(f"{target_url}/received").json() == {}
    assert client.get(f"{target_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 3,
        "faulted": 3,
    }


def test_faults_rate_zero_turns_faults_off(
    client: httpx.Client, target_url: str
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 500})
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 0})

    response = client.post(f"{target_url}/records", json=FIRST)

    assert response.status_code == 200
    assert client.get(f"{target_url}/received").json() == {"1": content_hash(FIRST)}


def test_faults_partial_rate_follows_seeded_random(
    client: httpx.Client, target_url: str
) -> None:
    rng = random.Random(7)
    expected = [429 if rng.random() < 0.5 else 200 for _ in range(20)]
    faults = {"fail_rate": 0.5, "status": 429, "seed": 7}
    client.post(f"{target_url}/admin/faults", json=faults)

    statuses = [
        client.post(f"{target_url}/records", json={"id": n}).status_code
        for n in range(20)
    ]

    assert statuses == expected
    assert 0 < statuses.count(429) < 20
    stats = client.get(f"{target_url}/stats").json()
    assert (stats["faulted"], stats["records"]) == (
        statuses.count(429),
        statuses.count(200),
    )


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        pytest.param(
            {"fail_rate": 1.5}, "fail_rate must be between 0 and 1, got 1.5", id="rate"
        ),
        pytest.param(
            {"fail_rate": 0.5, "status": 99},
            "status must be an HTTP status (100-599), got 99",
            id="status",
        ),
        pytest.param(
            {"fail_rate": "half"}, "fail_rate must be a number, got str", id="type"
        ),
        pytest.param(
            [0.5], "the body must be a JSON object, got list", id="not-object"
        ),
    ],
)
def test_faults_bad_settings_return_400(
    client: httpx.Client, target_url: str, faults: object, error: str
) -> None:
    response = client.post(f"{target_url}/admin/faults", json=faults)

    assert (response.status_code, response.json()) == (
        400,
        {"ok": False, "error": error},
    )


def test_headers_last_shows_idempotency_key(
    client: httpx.Client, target_url: str
) -> None:
    client.post(
        f"{target_url}/records", json=FIRST, headers={"Idempotency-Key": "v1-key-a"}
    )
    client.post(
        f"{target_url}/records", json=SECOND, headers={"Idempotency-Key": "v1-key-b"}
    )

    headers = client.get(f"{target_url}/headers/last").json()

    assert headers["idempotency-key"] == "v1-key-b"
    assert headers["content-type"] == "application/json"


def test_admin_reset_clears_records_counters_and_faults(
    client: httpx.Client, target_url: str
) -> None:
    client.post(f"{target_url}/records", json=FIRST)
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0})
    client.post(f"{target_url}/records", json=FIRST)

    reset = client.post(f"{target_url}/admin/reset")

    assert (reset.status_code, reset.json()) == (200, {"ok": True})
    assert client.get(f"{target_url}/stats").json() == EMPTY_STATS
    assert client.get(f"{target_url}/received").json() == {}
    assert client.get(f"{target_url}/headers/last").json() == {}
    assert client.post(f"{target_url}/records", json=FIRST).status_code == 200

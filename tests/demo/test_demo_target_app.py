"""The demo target over real HTTP: what it keeps, counts and refuses."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jellyfish.demo.data import content_hash
from jellyfish.demo.serve import main as serve_main
from jellyfish.demo.servers import _ServerProcess, serve_in_thread
from jellyfish.demo.target_app import build_target_app

FIRST = {"id": 1, "origin": "EWR", "dep_delay": 2.0}
SECOND = {"id": 2, "origin": "LGA", "dep_delay": None}
EMPTY_STATS = {
    "requests": 0,
    "records": 0,
    "distinct_keys": 0,
    "duplicates": 0,
    "faulted": 0,
    "refused_items": 0,
    "older_after_newer": 0,
    "bad_signatures": 0,
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


def signed_headers(
    body: bytes, secret: str = "fake-demo-secret-7f3b", timestamp: int | None = None
) -> dict[str, str]:
    """Signing headers computed here with hmac, as a careful sender would."""
    sent_at = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), sent_at.encode() + b"." + body, hashlib.sha256)
    return {
        "X-JellyFish-Timestamp": sent_at,
        "X-JellyFish-Signature": "sha256=" + mac.hexdigest(),
    }


@pytest.fixture
def signed_url() -> Iterator[str]:
    with serve_in_thread(
        build_target_app(signing_secret="fake-demo-secret-7f3b")
    ) as url:
        yield url


def test_records_batch_items_reject_keys_refuses_those_stores_rest(
    client: httpx.Client, target_url: str
) -> None:
    client.post(f"{target_url}/admin/faults", json={"reject_keys": [2, "x"]})
    body = [FIRST, SECOND, {"id": 3, "origin": "JFK"}]

    response = client.post(f"{target_url}/records/batch/items", json=body)

    assert (response.status_code, response.json()) == (
        200,
        {
            "results": [
                {"ok": True},
                {"ok": False, "error": "key 2 refused by /admin/faults"},
                {"ok": True},
            ]
        },
    )
    assert client.get(f"{target_url}/received").json() == {
        "1": content_hash(FIRST),
        "3": content_hash({"id": 3, "origin": "JFK"}),
    }
    assert client.get(f"{target_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 1,
        "records": 2,
        "distinct_keys": 2,
        "refused_items": 1,
    }


def test_records_batch_items_reject_rate_follows_seeded_random(
    client: httpx.Client, target_url: str
) -> None:
    rng = random.Random(5)
    expected = [rng.random() >= 0.5 for _ in range(20)]
    client.post(f"{target_url}/admin/faults", json={"reject_rate": 0.5, "seed": 5})

    response = client.post(
        f"{target_url}/records/batch/items", json=[{"id": n} for n in range(20)]
    )

    stored = [entry["ok"] for entry in response.json()["results"]]
    assert stored == expected
    assert 0 < stored.count(True) < 20
    assert sorted(client.get(f"{target_url}/received").json(), key=int) == [
        str(n) for n in range(20) if expected[n]
    ]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/records/batch", id="plain-batch"),
        pytest.param("/jellyfish/records/batch", id="jellyfish-batch"),
    ],
)
def test_faults_reject_keys_only_affect_items_route(
    client: httpx.Client, target_url: str, path: str
) -> None:
    client.post(f"{target_url}/admin/faults", json={"reject_keys": ["1", "2"]})

    response = client.post(f"{target_url}{path}", json=[FIRST, SECOND])

    assert response.status_code == 200
    assert set(client.get(f"{target_url}/received").json()) == {"1", "2"}


def test_records_older_version_after_newer_counted_per_key(
    client: httpx.Client, target_url: str
) -> None:
    posts = [
        (FIRST, "5"),
        (FIRST, "7"),
        (FIRST, "6"),  # older than 7 for key 1: counted
        (FIRST, "7"),  # the same version again: a duplicate, not out of order
        (SECOND, "1"),  # key 2 has its own history
        (SECOND, None),  # no header: nothing to check
    ]

    for record, version in posts:
        headers = {} if version is None else {"X-JellyFish-Record-Version": version}
        client.post(f"{target_url}/records", json=record, headers=headers)

    stats = client.get(f"{target_url}/stats").json()
    assert (stats["records"], stats["older_after_newer"]) == (6, 1)


def test_records_batch_versions_header_checked_in_body_order(
    client: httpx.Client, target_url: str
) -> None:
    url = f"{target_url}/records/batch"
    versions = "X-JellyFish-Record-Versions"

    client.post(url, json=[FIRST, SECOND], headers={versions: "10,11"})
    client.post(url, json=[SECOND, FIRST], headers={versions: "12, 9"})
    client.post(url, json=[FIRST], headers={versions: "8"})

    stats = client.get(f"{target_url}/stats").json()
    assert (stats["records"], stats["older_after_newer"]) == (5, 2)


@pytest.mark.parametrize(
    ("path", "body", "headers", "error"),
    [
        pytest.param(
            "/records",
            FIRST,
            {"X-JellyFish-Record-Version": "v7"},
            "X-JellyFish-Record-Version must hold integers, got 'v7'",
            id="single-not-integer",
        ),
        pytest.param(
            "/records/batch",
            [FIRST, SECOND],
            {"X-JellyFish-Record-Versions": "1,2,3"},
            "X-JellyFish-Record-Versions holds 3 ids for 2 records",
            id="batch-count-mismatch",
        ),
        pytest.param(
            "/records/batch/items",
            [FIRST, SECOND],
            {"X-JellyFish-Record-Versions": "1,,2"},
            "X-JellyFish-Record-Versions must hold integers, got '1,,2'",
            id="batch-empty-id",
        ),
    ],
)
def test_records_bad_version_header_returns_400_and_stores_nothing(
    client: httpx.Client,
    target_url: str,
    path: str,
    body: object,
    headers: dict[str, str],
    error: str,
) -> None:
    response = client.post(f"{target_url}{path}", json=body, headers=headers)

    assert (response.status_code, response.json()) == (
        400,
        {"ok": False, "error": error},
    )
    assert client.get(f"{target_url}/received").json() == {}


def test_signed_target_valid_signature_stores(
    client: httpx.Client, signed_url: str
) -> None:
    body = b'{"id": 1, "origin": "EWR"}'

    response = client.post(
        f"{signed_url}/records", content=body, headers=signed_headers(body)
    )

    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert client.get(f"{signed_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 1,
        "records": 1,
        "distinct_keys": 1,
    }


def _tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"EWR", b"JFK"), signed_headers(body)


@pytest.mark.parametrize(
    ("request_for", "error"),
    [
        pytest.param(
            _tampered,
            "X-JellyFish-Signature does not match the body",
            id="tampered-body",
        ),
        pytest.param(
            lambda body: (body, {}),
            "the request needs X-JellyFish-Timestamp and X-JellyFish-Signature",
            id="unsigned",
        ),
        pytest.param(
            lambda body: (body, signed_headers(body, secret="fake-wrong-secret")),
            "X-JellyFish-Signature does not match the body",
            id="other-secret",
        ),
        pytest.param(
            lambda body: (body, signed_headers(body, timestamp=int(time.time()) - 400)),
            "X-JellyFish-Timestamp is more than 300 s from the target's clock",
            id="stale",
        ),
        pytest.param(
            lambda body: (body, signed_headers(body, timestamp=int(time.time()) + 400)),
            "X-JellyFish-Timestamp is more than 300 s from the target's clock",
            id="future",
        ),
        pytest.param(
            lambda body: (
                body,
                {**signed_headers(body), "X-JellyFish-Timestamp": "soon"},
            ),
            "X-JellyFish-Timestamp must be Unix seconds",
            id="timestamp-not-seconds",
        ),
        pytest.param(
            lambda body: (
                body,
                {
                    **signed_headers(body),
                    "X-JellyFish-Signature": signed_headers(body)[
                        "X-JellyFish-Signature"
                    ].removeprefix("sha256="),
                },
            ),
            "X-JellyFish-Signature does not match the body",
            id="no-sha256-prefix",
        ),
    ],
)
def test_signed_target_bad_signature_returns_401_and_counts(
    client: httpx.Client,
    signed_url: str,
    request_for: Callable[[bytes], tuple[bytes, dict[str, str]]],
    error: str,
) -> None:
    content, headers = request_for(b'{"id": 1, "origin": "EWR"}')

    response = client.post(f"{signed_url}/records", content=content, headers=headers)

    assert (response.status_code, response.json()) == (
        401,
        {"ok": False, "error": error},
    )
    assert client.get(f"{signed_url}/received").json() == {}
    assert client.get(f"{signed_url}/stats").json() == {
        **EMPTY_STATS,
        "requests": 1,
        "bad_signatures": 1,
    }


def test_signed_target_within_tolerance_accepts_older_timestamp(
    client: httpx.Client, signed_url: str
) -> None:
    body = b'{"id": 1}'
    headers = signed_headers(body, timestamp=int(time.time()) - 240)

    response = client.post(f"{signed_url}/records", content=body, headers=headers)

    assert response.status_code == 200


def test_signed_target_jellyfish_route_refuses_in_its_contract(
    client: httpx.Client, signed_url: str
) -> None:
    response = client.post(f"{signed_url}/jellyfish/records", json=FIRST)

    assert (response.status_code, response.json()) == (
        401,
        {
            "code": "401",
            "message": "the request needs X-JellyFish-Timestamp and "
            "X-JellyFish-Signature",
        },
    )


def test_unsigned_target_ignores_signature_headers(
    client: httpx.Client, target_url: str
) -> None:
    headers = signed_headers(b"something else", secret="fake-anything")

    response = client.post(f"{target_url}/records", json=FIRST, headers=headers)

    assert response.status_code == 200
    assert client.get(f"{target_url}/stats").json()["bad_signatures"] == 0


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        pytest.param(
            {"reject_rate": 2},
            "reject_rate must be between 0 and 1, got 2",
            id="reject-rate-above-1",
        ),
        pytest.param(
            {"reject_keys": "7"},
            "reject_keys must be a list of strings or integers",
            id="reject-keys-not-list",
        ),
        pytest.param(
            {"reject_keys": [True]},
            "reject_keys must be a list of strings or integers",
            id="reject-keys-boolean",
        ),
    ],
)
def test_faults_bad_reject_settings_return_400(
    client: httpx.Client, target_url: str, faults: object, error: str
) -> None:
    response = client.post(f"{target_url}/admin/faults", json=faults)

    assert (response.status_code, response.json()) == (
        400,
        {"ok": False, "error": error},
    )


def test_admin_reset_clears_order_refusal_and_signature_counters(
    client: httpx.Client, signed_url: str
) -> None:
    client.post(f"{signed_url}/records", json=FIRST)
    for version, delay in (("9", 1.0), ("8", 2.0)):
        body = json.dumps({**FIRST, "dep_delay": delay}).encode()
        headers = {**signed_headers(body), "X-JellyFish-Record-Version": version}
        client.post(f"{signed_url}/records", content=body, headers=headers)
    client.post(f"{signed_url}/admin/faults", json={"reject_keys": ["2"]})
    body = json.dumps([SECOND]).encode()
    client.post(
        f"{signed_url}/records/batch/items", content=body, headers=signed_headers(body)
    )
    before = client.get(f"{signed_url}/stats").json()

    client.post(f"{signed_url}/admin/reset")

    assert (
        before["bad_signatures"],
        before["older_after_newer"],
        before["refused_items"],
    ) == (1, 1, 1)
    assert client.get(f"{signed_url}/stats").json() == EMPTY_STATS
    # Reset forgets versions too: version 1 after the old 9 is not late now.
    body = json.dumps(FIRST).encode()
    headers = {**signed_headers(body), "X-JellyFish-Record-Version": "1"}
    client.post(f"{signed_url}/records", content=body, headers=headers)
    assert client.get(f"{signed_url}/stats").json()["older_after_newer"] == 0


def test_serve_target_signing_secret_env_unset_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JF_TEST_DEMO_SIGNING", raising=False)

    with pytest.raises(SystemExit) as caught:
        serve_main(["target", "--signing-secret-env", "JF_TEST_DEMO_SIGNING"])

    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: environment variable JF_TEST_DEMO_SIGNING is not set or empty; "
        "export the signing secret in it\n"
    )


def test_serve_target_signing_secret_env_refuses_unsigned(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JF_TEST_DEMO_SIGNING", "fake-demo-secret-7f3b")
    args = ["--signing-secret-env", "JF_TEST_DEMO_SIGNING"]

    with _ServerProcess.start("target", args, tmp_path) as target:
        url = target.wait_ready(time.monotonic() + 60, 60)
        body = json.dumps(FIRST).encode()
        unsigned = client.post(f"{url}/records", content=body)
        signed = client.post(
            f"{url}/records", content=body, headers=signed_headers(body)
        )
        stats = client.get(f"{url}/stats").json()

    assert (unsigned.status_code, signed.status_code) == (401, 200)
    assert (stats["bad_signatures"], stats["records"]) == (1, 1)
    logs = (tmp_path / "target.stdout").read_text() + (
        tmp_path / "target.stderr"
    ).read_text()
    assert "fake-demo-secret" not in logs

"""The target client against real targets: what is sent, and what arrives."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import httpx
import pytest
from target_support import (
    JOB,
    TARGET,
    Answer,
    RecordingTarget,
    due_deliveries,
    flight,
    push,
    target_spec,
)

from jellyfish.demo.data import content_hash
from jellyfish.demo.servers import serve_in_thread
from jellyfish.target.client import idempotency_key
from ledger.types import AttemptResult, DueDelivery


def summary(result: AttemptResult) -> tuple[object, ...]:
    """Every field of a result but its timing."""
    return (
        result.delivery_id,
        result.attempt_no,
        result.outcome,
        result.http_status,
        result.error,
        result.response_excerpt,
        result.next_attempt_at,
    )


def test_push_single_record_sends_stored_payload_bytes_verbatim() -> None:
    payload = '{"id": 7,  "name": "Zoë", "dep_delay": null}'
    due = DueDelivery(
        delivery_id=42,
        record_key="7",
        content_hash="a" * 64,
        payload=payload,
        attempts_before=0,
    )
    target = RecordingTarget()
    before = dt.datetime.now(dt.UTC)

    with serve_in_thread(target.app) as url:
        [result] = push(target_spec(f"{url}/records"), [due])

    after = dt.datetime.now(dt.UTC)
    [request] = target.received
    assert (request.method, request.path, request.body) == (
        "POST",
        "/records",
        payload.encode("utf-8"),
    )
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == idempotency_key(
        JOB, TARGET, "7", "a" * 64
    )
    assert summary(result) == (42, 1, "delivered", 200, None, None, None)
    assert result.started_at.tzinfo is dt.UTC
    assert before <= result.started_at <= after
    assert 0 < result.duration_ms < (after - before).total_seconds() * 1000


def test_push_spec_method_and_headers_are_sent() -> None:
    target = RecordingTarget(Answer(status=201, body=b""))

    with serve_in_thread(target.app) as url:
        spec = target_spec(
            f"{url}/records/7",
            method="PUT",
            headers={"X-Tenant": "acme", "Content-Type": "text/json"},
        )
        [result] = push(spec, due_deliveries(1, first=7))

    [request] = target.received
    assert (request.method, request.path) == ("PUT", "/records/7")
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["content-type"] == "text/json"
    assert (result.outcome, result.http_status) == ("delivered", 201)


def test_push_demo_target_single_records_each_stored_once(
    target_url: str, client: httpx.Client
) -> None:
    due = due_deliveries(5)

    results = push(target_spec(f"{target_url}/records"), due)

    assert [summary(r) for r in results] == [
        (d.delivery_id, 1, "delivered", 200, None, None, None) for d in due
    ]
    assert client.get(f"{target_url}/received").json() == {
        str(n): content_hash(flight(n)) for n in range(1, 6)
    }
    assert client.get(f"{target_url}/stats").json() == {
        "requests": 5,
        "records": 5,
        "distinct_keys": 5,
        "duplicates": 0,
        "faulted": 0,
        "refused_items": 0,
        "older_after_newer": 0,
        "bad_signatures": 0,
    }


@pytest.mark.parametrize(
    ("path", "batch_size", "requests"),
    [
        pytest.param("/jellyfish/records", 1, 3, id="single"),
        pytest.param("/jellyfish/records/batch", 2, 2, id="batch"),
    ],
)
def test_push_jellyfish_preset_code_0_is_delivered(
    target_url: str, client: httpx.Client, path: str, batch_size: int, requests: int
) -> None:
    spec = target_spec(
        f"{target_url}{path}",
        preset="jellyfish",
        batch_size=batch_size,
        batch_key="records" if batch_size > 1 else None,
    )

    results = push(spec, due_deliveries(3))

    assert [(r.outcome, r.http_status, r.error) for r in results] == [
        ("delivered", 200, None)
    ] * 3
    assert client.get(f"{target_url}/received").json() == {
        str(n): content_hash(flight(n)) for n in range(1, 4)
    }
    assert client.get(f"{target_url}/stats").json()["requests"] == requests


@pytest.mark.parametrize(
    ("batch_key", "expected_body"),
    [
        pytest.param(
            None,
            b'[{"id": 1, "origin": "EWR", "dep_delay": 0.5},'
            b'{"id": 2, "origin": "EWR", "dep_delay": 1.0},'
            b'{"id": 3, "origin": "EWR", "dep_delay": 1.5}]',
            id="bare-array",
        ),
        pytest.param(
            "records",
            b'{"records":[{"id": 1, "origin": "EWR", "dep_delay": 0.5},'
            b'{"id": 2, "origin": "EWR", "dep_delay": 1.0},'
            b'{"id": 3, "origin": "EWR", "dep_delay": 1.5}]}',
            id="under-batch-key",
        ),
    ],
)
def test_push_batch_sends_payloads_as_one_json_array(
    batch_key: str | None, expected_body: bytes
) -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        results = push(
            target_spec(f"{url}/batch", batch_size=3, batch_key=batch_key),
            due_deliveries(3),
        )

    [request] = target.received
    assert request.body == expected_body
    assert [r.delivery_id for r in results] == [1001, 1002, 1003]
    assert {(r.outcome, r.http_status, r.started_at) for r in results} == {
        ("delivered", 200, results[0].started_at)
    }


def test_push_batch_key_with_quote_is_escaped_as_json() -> None:
    """Regression: the batch key was pasted between quotes without escaping.

    A key such as ``my "records"`` made the body invalid JSON.
    """
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        push(
            target_spec(f"{url}/batch", batch_size=2, batch_key='my "records"'),
            due_deliveries(2),
        )

    assert json.loads(target.received[0].body) == {
        'my "records"': [flight(1), flight(2)]
    }


def test_push_batch_1200_records_size_500_sends_3_requests(
    target_url: str, client: httpx.Client
) -> None:
    due = due_deliveries(1200)

    results = push(target_spec(f"{target_url}/records/batch", batch_size=500), due)

    assert [r.delivery_id for r in results] == [d.delivery_id for d in due]
    assert {(r.outcome, r.attempt_no, r.http_status) for r in results} == {
        ("delivered", 1, 200)
    }
    assert client.get(f"{target_url}/stats").json() == {
        "requests": 3,
        "records": 1200,
        "distinct_keys": 1200,
        "duplicates": 0,
        "faulted": 0,
        "refused_items": 0,
        "older_after_newer": 0,
        "bad_signatures": 0,
    }
    assert client.get(f"{target_url}/received").json() == {
        str(n): content_hash(flight(n)) for n in range(1, 1201)
    }


def test_push_batch_1200_records_size_500_splits_500_500_200() -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        push(
            target_spec(
                f"{url}/batch", batch_size=500, batch_key="records", concurrency=1
            ),
            due_deliveries(1200),
        )

    batches = [json.loads(r.body)["records"] for r in target.received]
    assert [len(batch) for batch in batches] == [500, 500, 200]
    assert [(batch[0]["id"], batch[-1]["id"]) for batch in batches] == [
        (1, 500),
        (501, 1000),
        (1001, 1200),
    ]


def test_idempotency_key_known_inputs_give_pinned_value() -> None:
    # Pinned: a changed formula would make targets see every version again.
    key = idempotency_key("flights", "warehouse", "1", "0" * 64)

    assert key == "3c87398c3e04c1acbb0f243c312c8ca04730f6df"


@pytest.mark.parametrize(
    ("job", "target", "record_key", "content_hash_"),
    [
        pytest.param("other-job", TARGET, "1", "0" * 64, id="other-job"),
        pytest.param(JOB, "archive", "1", "0" * 64, id="other-target"),
        pytest.param(JOB, TARGET, "2", "0" * 64, id="other-key"),
        pytest.param(JOB, TARGET, "1", "1" * 64, id="other-content-hash"),
    ],
)
def test_idempotency_key_any_part_changed_differs(
    job: str, target: str, record_key: str, content_hash_: str
) -> None:
    base = idempotency_key(JOB, TARGET, "1", "0" * 64)

    assert idempotency_key(job, target, record_key, content_hash_) != base


def test_push_two_attempts_same_version_send_same_idempotency_key(
    target_url: str, client: httpx.Client
) -> None:
    spec = target_spec(f"{target_url}/records")
    [first] = due_deliveries(1)
    second = DueDelivery(
        first.delivery_id, first.record_key, first.content_hash, first.payload, 1
    )

    push(spec, [first])
    first_key = client.get(f"{target_url}/headers/last").json()["idempotency-key"]
    [result] = push(spec, [second])
    second_key = client.get(f"{target_url}/headers/last").json()["idempotency-key"]

    assert (
        first_key == second_key == idempotency_key(JOB, TARGET, "1", first.content_hash)
    )
    assert (result.attempt_no, result.outcome) == (2, "delivered")
    assert client.get(f"{target_url}/stats").json()["duplicates"] == 1


@pytest.mark.parametrize(
    ("target_name", "new_hash"),
    [
        pytest.param(TARGET, "f" * 64, id="changed-content-hash"),
        pytest.param("archive", None, id="other-target"),
    ],
)
def test_push_changed_version_or_target_sends_other_idempotency_key(
    target_url: str, client: httpx.Client, target_name: str, new_hash: str | None
) -> None:
    [due] = due_deliveries(1)
    changed = DueDelivery(
        due.delivery_id, due.record_key, new_hash or due.content_hash, due.payload, 0
    )

    push(target_spec(f"{target_url}/records"), [due])
    first_key = client.get(f"{target_url}/headers/last").json()["idempotency-key"]
    push(
        target_spec(f"{target_url}/records").model_copy(update={"name": target_name}),
        [changed],
    )
    second_key = client.get(f"{target_url}/headers/last").json()["idempotency-key"]

    assert second_key != first_key
    assert second_key == idempotency_key(
        JOB, target_name, "1", new_hash or due.content_hash
    )


def test_push_batch_idempotency_key_hashes_item_keys_and_is_stable() -> None:
    due = due_deliveries(3)
    item_keys = [
        idempotency_key(JOB, TARGET, d.record_key, d.content_hash) for d in due
    ]
    expected = hashlib.sha256("".join(item_keys).encode()).hexdigest()[:40]
    retried = [
        DueDelivery(d.delivery_id, d.record_key, d.content_hash, d.payload, 2)
        for d in due
    ]
    changed = [*due[:2], DueDelivery(1003, "3", "e" * 64, due[2].payload, 0)]
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/batch", batch_size=3)
        for group in (due, retried, changed):
            push(spec, group)

    keys = [r.headers["idempotency-key"] for r in target.received]
    assert keys[0] == keys[1] == expected
    assert keys[2] != expected
    assert len(keys[2]) == 40


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        pytest.param(
            {"kind": "bearer", "token": {"env": "JF_TEST_SECRET"}},
            "authorization",
            "Bearer fake-secret-1",
            id="bearer",
        ),
        pytest.param(
            {
                "kind": "basic",
                "username": "sync",
                "password": {"env": "JF_TEST_SECRET"},
            },
            "authorization",
            "Basic c3luYzpmYWtlLXNlY3JldC0x",
            id="basic",
        ),
        pytest.param(
            {"kind": "api_key", "key": {"env": "JF_TEST_SECRET"}},
            "x-api-key",
            "fake-secret-1",
            id="api-key-default-header",
        ),
        pytest.param(
            {"kind": "api_key", "header": "X-Token", "key": {"env": "JF_TEST_SECRET"}},
            "x-token",
            "fake-secret-1",
            id="api-key-custom-header",
        ),
    ],
)
def test_push_auth_from_env_sends_credential_header(
    target_url: str,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, object],
    header: str,
    expected: str,
) -> None:
    monkeypatch.setenv("JF_TEST_SECRET", "fake-secret-1")

    [result] = push(target_spec(f"{target_url}/records", auth=auth), due_deliveries(1))

    assert result.outcome == "delivered"
    assert client.get(f"{target_url}/headers/last").json()[header] == expected


def test_push_demo_target_faulted_503_schedules_retry_after_fixed_interval(
    target_url: str, client: httpx.Client
) -> None:
    client.post(
        f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 503, "seed": 1}
    )
    spec = target_spec(
        f"{target_url}/records",
        retry={"kind": "fixed", "interval_s": 30, "max_attempts": 5},
    )

    [result] = push(spec, due_deliveries(1))

    assert summary(result) == (
        1001,
        1,
        "retry",
        503,
        "HTTP 503",
        '{"ok":false,"error":"fault injected by /admin/faults"}',
        result.started_at + dt.timedelta(seconds=30),
    )
    stats = client.get(f"{target_url}/stats").json()
    assert (stats["records"], stats["faulted"]) == (0, 1)


def test_push_demo_target_faulted_at_last_attempt_is_dead(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 502})
    spec = target_spec(
        f"{target_url}/records",
        retry={"kind": "fixed", "interval_s": 30, "max_attempts": 5},
    )

    [result] = push(spec, due_deliveries(1, attempts_before=4))

    assert (result.attempt_no, result.outcome, result.http_status) == (5, "dead", 502)
    assert result.error == "gave up after 5 attempts; last: HTTP 502"
    assert result.next_attempt_at is None


def test_push_demo_target_faulted_exponential_retry_within_jitter_bounds(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 503})
    spec = target_spec(
        f"{target_url}/records/batch",
        batch_size=50,
        retry={"kind": "exponential", "initial_s": 1, "multiplier": 2, "jitter": 0.2},
    )

    results = push(spec, due_deliveries(50, attempts_before=2))

    # Attempt 3 waits 1 * 2**2 = 4 s, moved by up to 20 %: [3.2, 4.8] s.
    waits_s = [
        (r.next_attempt_at - r.started_at).total_seconds()
        for r in results
        if r.next_attempt_at is not None
    ]
    assert {(r.attempt_no, r.outcome, r.http_status) for r in results} == {
        (3, "retry", 503)
    }
    assert len(waits_s) == 50
    assert all(3.2 <= w <= 4.8 for w in waits_s)
    assert len(set(waits_s)) >= 45  # jittered apart (microsecond resolution)
    assert client.get(f"{target_url}/stats").json()["requests"] == 1


def test_push_demo_target_jellyfish_code_1_with_200_is_retried(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 200})
    spec = target_spec(f"{target_url}/jellyfish/records", preset="jellyfish")

    [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status, result.response_excerpt) == (
        "retry",
        200,
        '{"code":"1"}',
    )
    assert result.error == "answer's 'code' is '1', expected '0'"
    assert client.get(f"{target_url}/received").json() == {}


def test_push_demo_target_fault_cleared_next_attempt_delivered(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 503})
    spec = target_spec(f"{target_url}/records")
    [due] = due_deliveries(1)

    [first] = push(spec, [due])
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 0.0})
    [second] = push(
        spec,
        [
            DueDelivery(
                due.delivery_id, due.record_key, due.content_hash, due.payload, 1
            )
        ],
    )

    assert [(r.attempt_no, r.outcome) for r in (first, second)] == [
        (1, "retry"),
        (2, "delivered"),
    ]
    assert client.get(f"{target_url}/stats").json() == {
        "requests": 2,
        "records": 1,
        "distinct_keys": 1,
        "duplicates": 0,
        "faulted": 1,
        "refused_items": 0,
        "older_after_newer": 0,
        "bad_signatures": 0,
    }

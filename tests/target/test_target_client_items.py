"""Per-record results in a batch answer: only the refused records are retried."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import httpx
import pytest
from target_support import (
    Answer,
    RecordingTarget,
    due_deliveries,
    flight,
    push,
    target_spec,
)

from jellyfish.demo.data import content_hash
from jellyfish.demo.servers import serve_in_thread
from ledger.types import AttemptResult

FIXED_30 = {"kind": "fixed", "interval_s": 30, "max_attempts": 5}


def outcomes(results: list[AttemptResult]) -> list[tuple[object, ...]]:
    """Each result's delivery, outcome, status, error and excerpt."""
    return [
        (r.delivery_id, r.outcome, r.http_status, r.error, r.response_excerpt)
        for r in results
    ]


def items_spec(url: str, batch_size: int = 5, **fields: Any) -> Any:
    """A batch target at ``url`` that reads per-item results (defaults)."""
    return target_spec(
        url, batch_size=batch_size, item_results={}, retry=FIXED_30, **fields
    )


def test_push_item_results_refused_items_retried_others_delivered(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"reject_keys": ["2", 4]})

    results = push(items_spec(f"{target_url}/records/batch/items"), due_deliveries(5))

    assert outcomes(results) == [
        (1001, "delivered", 200, None, None),
        (
            1002,
            "retry",
            200,
            "target refused item 2 of 5: key 2 refused by /admin/faults",
            '{"ok":false,"error":"key 2 refused by /admin/faults"}',
        ),
        (1003, "delivered", 200, None, None),
        (
            1004,
            "retry",
            200,
            "target refused item 4 of 5: key 4 refused by /admin/faults",
            '{"ok":false,"error":"key 4 refused by /admin/faults"}',
        ),
        (1005, "delivered", 200, None, None),
    ]
    assert [r.next_attempt_at for r in results] == [
        None,
        results[1].started_at + dt.timedelta(seconds=30),
        None,
        results[3].started_at + dt.timedelta(seconds=30),
        None,
    ]
    assert client.get(f"{target_url}/received").json() == {
        str(n): content_hash(flight(n)) for n in (1, 3, 5)
    }
    stats = client.get(f"{target_url}/stats").json()
    assert (stats["requests"], stats["records"], stats["refused_items"]) == (1, 3, 2)


def test_push_item_results_retried_items_delivered_once_faults_clear(
    target_url: str, client: httpx.Client
) -> None:
    spec = items_spec(f"{target_url}/records/batch/items")
    client.post(f"{target_url}/admin/faults", json={"reject_keys": ["2", "4"]})
    first = push(spec, due_deliveries(5))
    client.post(f"{target_url}/admin/faults", json={})
    retried = [
        dataclasses.replace(due, attempts_before=1)
        for due, result in zip(due_deliveries(5), first, strict=True)
        if result.outcome == "retry"
    ]

    second = push(spec, retried)

    assert [(r.delivery_id, r.attempt_no, r.outcome) for r in second] == [
        (1002, 2, "delivered"),
        (1004, 2, "delivered"),
    ]
    assert client.get(f"{target_url}/received").json() == {
        str(n): content_hash(flight(n)) for n in range(1, 6)
    }
    assert client.get(f"{target_url}/stats").json()["duplicates"] == 0


def test_push_item_results_several_batches_map_items_to_their_batch(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"reject_keys": ["3", "6"]})

    results = push(
        items_spec(f"{target_url}/records/batch/items", batch_size=2),
        due_deliveries(7),
    )

    assert [(r.delivery_id, r.outcome, r.error) for r in results] == [
        (1001, "delivered", None),
        (1002, "delivered", None),
        (1003, "retry", "target refused item 1 of 2: key 3 refused by /admin/faults"),
        (1004, "delivered", None),
        (1005, "delivered", None),
        (1006, "retry", "target refused item 2 of 2: key 6 refused by /admin/faults"),
        (1007, "delivered", None),
    ]
    assert client.get(f"{target_url}/stats").json()["requests"] == 4


def test_push_item_results_refused_at_last_attempt_is_dead(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"reject_keys": ["1"]})

    results = push(
        items_spec(f"{target_url}/records/batch/items", batch_size=2),
        due_deliveries(2, attempts_before=4),
    )

    assert [(r.attempt_no, r.outcome, r.error, r.next_attempt_at) for r in results] == [
        (
            5,
            "dead",
            "gave up after 5 attempts; last: target refused item 1 of 2: "
            "key 1 refused by /admin/faults",
            None,
        ),
        (5, "delivered", None, None),
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(
            Answer(body=b'{"results":[{"ok":true},{"ok":true}]}'),
            "answer's 'results' holds 2 item results, expected 3 (one per record sent)",
            id="too-short",
        ),
        pytest.param(
            Answer(body=b'{"results":[{"ok":true},{"ok":true},{"ok":true},{}]}'),
            "answer's 'results' holds 4 item results, expected 3 (one per record sent)",
            id="too-long",
        ),
        pytest.param(
            Answer(body=b'{"results":{"ok":true}}'),
            "answer's 'results' is a dict, expected a list of 3 item results",
            id="object-not-list",
        ),
        pytest.param(
            Answer(body=b'{"ok":true,"accepted":3}'),
            "answer's 'results' is missing, expected a list of 3 item results",
            id="missing",
        ),
        pytest.param(
            Answer(body=b'{"results":[{"ok":true},"ok",{"ok":true}]}'),
            "answer's 'results' item 2 of 3 is a str, expected an object",
            id="entry-not-object",
        ),
        pytest.param(
            Answer(body=b"<html>stored</html>", content_type="text/html"),
            "expected a JSON answer with item results, got text/html; charset=utf-8",
            id="html",
        ),
    ],
)
def test_push_item_results_wrong_shape_retries_whole_batch(
    answer: Answer, error: str
) -> None:
    target = RecordingTarget(answer)

    with serve_in_thread(target.app) as url:
        results = push(items_spec(f"{url}/batch", batch_size=3), due_deliveries(3))

    assert outcomes(results) == [
        (number, "retry", 200, error, answer.body.decode())
        for number in (1001, 1002, 1003)
    ]
    assert {r.next_attempt_at - r.started_at for r in results if r.next_attempt_at} == {
        dt.timedelta(seconds=30)
    }


def test_push_item_results_custom_paths_and_verdict_read_each_entry() -> None:
    body = (
        b'[{"status":"stored"},'
        b'{"status":"conflict","detail":{"message":"version conflict"}},'
        b'{"status":"failed"},'
        b'{"status":true}]'
    )
    target = RecordingTarget(Answer(body=body))
    rule = {
        "path": "",
        "ok_field": "status",
        "ok_equals": "stored",
        "error_field": "detail.message",
    }

    with serve_in_thread(target.app) as url:
        results = push(
            target_spec(f"{url}/batch", batch_size=4, item_results=rule),
            due_deliveries(4),
        )

    assert outcomes(results) == [
        (1001, "delivered", 200, None, None),
        (
            1002,
            "retry",
            200,
            "target refused item 2 of 4: version conflict",
            '{"status":"conflict","detail":{"message":"version conflict"}}',
        ),
        (
            1003,
            "retry",
            200,
            "target refused item 3 of 4: 'status' is 'failed', expected 'stored'",
            '{"status":"failed"}',
        ),
        (
            1004,
            "retry",
            200,
            "target refused item 4 of 4: 'status' is True, expected 'stored'",
            '{"status":true}',
        ),
    ]


@pytest.mark.parametrize(
    ("entry", "outcome"),
    [
        pytest.param(b'{"ok":true}', "delivered", id="true"),
        pytest.param(b'{"ok":1}', "retry", id="one-is-not-true"),
        pytest.param(b'{"ok":"true"}', "retry", id="string-is-not-true"),
        pytest.param(b"{}", "retry", id="missing"),
    ],
)
def test_push_item_results_ok_must_be_json_true(entry: bytes, outcome: str) -> None:
    target = RecordingTarget(Answer(body=b'{"results":[' + entry + b',{"ok":true}]}'))

    with serve_in_thread(target.app) as url:
        first, second = push(
            items_spec(f"{url}/batch", batch_size=2), due_deliveries(2)
        )

    assert (first.outcome, second.outcome) == (outcome, "delivered")


def test_push_item_results_no_error_field_names_the_verdict() -> None:
    target = RecordingTarget(Answer(body=b'{"results":[{"ok":false,"error":"x"}]}'))

    with serve_in_thread(target.app) as url:
        spec = target_spec(
            f"{url}/batch", batch_size=2, item_results={"error_field": None}
        )
        [result] = push(spec, due_deliveries(1))

    assert result.error == "target refused item 1 of 1: 'ok' is False, expected True"


def test_push_item_results_5xx_retries_whole_batch_as_before(
    target_url: str, client: httpx.Client
) -> None:
    client.post(f"{target_url}/admin/faults", json={"fail_rate": 1.0, "status": 503})

    results = push(items_spec(f"{target_url}/records/batch/items"), due_deliveries(3))

    assert [(r.outcome, r.http_status, r.error) for r in results] == [
        ("retry", 503, "HTTP 503")
    ] * 3


def test_push_item_results_success_rule_failing_retries_whole_batch() -> None:
    body = b'{"code":"1","results":[{"ok":true},{"ok":true}]}'
    target = RecordingTarget(Answer(body=body))

    with serve_in_thread(target.app) as url:
        spec = items_spec(f"{url}/batch", batch_size=2, preset="jellyfish")
        results = push(spec, due_deliveries(2))

    assert [(r.outcome, r.error) for r in results] == [
        ("retry", "answer's 'code' is '1', expected '0'")
    ] * 2


def test_push_item_results_token_echoed_in_item_error_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "fake-token-9d41c07be2a35f68"
    monkeypatch.setenv("JF_TEST_TOKEN", token)
    body = f'{{"results":[{{"ok":false,"error":"token {token} expired"}}]}}'
    target = RecordingTarget(Answer(body=body.encode()))
    auth = {"kind": "bearer", "token": {"env": "JF_TEST_TOKEN"}}

    with serve_in_thread(target.app) as url:
        [result] = push(items_spec(f"{url}/batch", auth=auth), due_deliveries(1))

    assert result.error == "target refused item 1 of 1: token *** expired"
    assert result.response_excerpt == '{"ok":false,"error":"token *** expired"}'

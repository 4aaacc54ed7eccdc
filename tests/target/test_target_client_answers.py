"""How the target client judges each answer: delivered, retry later, or dead."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from target_support import (
    Answer,
    RecordingTarget,
    closed_port_url,
    due_deliveries,
    push,
    raw_server,
    target_spec,
)

from jellyfish.demo.servers import serve_in_thread

FIXED_30 = {"kind": "fixed", "interval_s": 30, "max_attempts": 5}


@pytest.mark.parametrize(
    ("status", "outcome", "error"),
    [
        pytest.param(200, "delivered", None, id="200"),
        pytest.param(201, "delivered", None, id="201"),
        pytest.param(202, "delivered", None, id="202"),
        pytest.param(301, "retry", "HTTP 301", id="301-not-followed"),
        pytest.param(400, "dead", "HTTP 400 (permanent)", id="400"),
        pytest.param(401, "dead", "HTTP 401 (permanent)", id="401"),
        pytest.param(404, "dead", "HTTP 404 (permanent)", id="404"),
        pytest.param(409, "dead", "HTTP 409 (permanent)", id="409"),
        pytest.param(413, "dead", "HTTP 413 (permanent)", id="413"),
        pytest.param(422, "dead", "HTTP 422 (permanent)", id="422"),
        pytest.param(408, "retry", "HTTP 408", id="408-transient"),
        pytest.param(425, "retry", "HTTP 425", id="425-transient"),
        pytest.param(429, "retry", "HTTP 429", id="429-transient"),
        pytest.param(500, "retry", "HTTP 500", id="500"),
        pytest.param(502, "retry", "HTTP 502", id="502"),
        pytest.param(503, "retry", "HTTP 503", id="503"),
        pytest.param(504, "retry", "HTTP 504", id="504"),
    ],
)
def test_push_http_status_decides_outcome(
    status: int, outcome: str, error: str | None
) -> None:
    body = b'{"detail":"status %d"}' % status
    target = RecordingTarget(Answer(status=status, body=body))

    with serve_in_thread(target.app) as url:
        [result] = push(
            target_spec(f"{url}/records", retry=FIXED_30), due_deliveries(1)
        )

    assert (result.attempt_no, result.outcome, result.http_status, result.error) == (
        1,
        outcome,
        status,
        error,
    )
    if outcome == "delivered":
        assert (result.response_excerpt, result.next_attempt_at) == (None, None)
    else:
        assert result.response_excerpt == body.decode()
    if outcome == "retry":
        assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=30)
    if outcome == "dead":
        assert result.next_attempt_at is None
    assert len(target.received) == 1


def test_push_4xx_permanent_on_first_attempt_dead_without_retries() -> None:
    target = RecordingTarget(Answer(status=404, body=b"no such route"))

    with serve_in_thread(target.app) as url:
        results = push(
            target_spec(f"{url}/records", retry={"kind": "fixed", "max_attempts": 10}),
            due_deliveries(2),
        )

    assert [(r.attempt_no, r.outcome, r.error) for r in results] == [
        (1, "dead", "HTTP 404 (permanent)")
    ] * 2


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        pytest.param(409, "retry", id="409-listed"),
        pytest.param(429, "dead", id="429-not-listed"),
        pytest.param(503, "retry", id="5xx-always-retried"),
    ],
)
def test_push_custom_transient_statuses_replace_defaults(
    status: int, outcome: str
) -> None:
    target = RecordingTarget(Answer(status=status))

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", transient_statuses=[409])
        [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status) == (outcome, status)


@pytest.mark.parametrize(
    ("success", "answer", "outcome", "error"),
    [
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b'{"code":"0","msg":"stored"}'),
            "delivered",
            None,
            id="code-0",
        ),
        pytest.param(
            {"field": "data.code", "equals": "0"},
            Answer(body=b'{"data":{"code":"0"}}'),
            "delivered",
            None,
            id="dotted-path",
        ),
        pytest.param(
            {"field": "ok", "equals": True},
            Answer(body=b'{"ok":true}'),
            "delivered",
            None,
            id="boolean-true",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b'{"code":"1","msg":"busy"}'),
            "retry",
            "answer's 'code' is '1', expected '0'",
            id="code-1",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b'{"code":0}'),
            "retry",
            "answer's 'code' is 0, expected '0'",
            id="integer-0-is-not-string-0",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b'{"msg":"stored"}'),
            "retry",
            "answer's 'code' is None, expected '0'",
            id="field-missing",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b'["code", "0"]'),
            "retry",
            "answer's 'code' is None, expected '0'",
            id="array-answer",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(
                body=b"<html><body>Maintenance</body></html>", content_type="text/html"
            ),
            "retry",
            "expected a JSON answer, got text/html; charset=utf-8",
            id="html-page",
        ),
        pytest.param(
            {"field": "code", "equals": "0"},
            Answer(body=b""),
            "retry",
            "expected a JSON answer, got application/json",
            id="empty-body",
        ),
    ],
)
def test_push_success_rule_on_2xx_decides_outcome(
    success: dict[str, object], answer: Answer, outcome: str, error: str | None
) -> None:
    target = RecordingTarget(answer)

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", success=success, retry=FIXED_30)
        [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status, result.error) == (outcome, 200, error)
    if outcome == "retry":
        assert result.response_excerpt == answer.body.decode()
        assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=30)


def test_push_html_200_without_success_rule_delivered() -> None:
    target = RecordingTarget(
        Answer(body=b"<html>thanks</html>", content_type="text/html")
    )

    with serve_in_thread(target.app) as url:
        [result] = push(target_spec(f"{url}/records"), due_deliveries(1))

    assert (result.outcome, result.http_status, result.error) == (
        "delivered",
        200,
        None,
    )


def test_push_success_rule_failing_at_last_attempt_is_dead() -> None:
    target = RecordingTarget(Answer(body=b'{"code":"9"}'))

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", preset="jellyfish", retry=FIXED_30)
        [result] = push(spec, due_deliveries(1, attempts_before=4))

    assert (result.attempt_no, result.outcome, result.next_attempt_at) == (
        5,
        "dead",
        None,
    )
    assert result.error == (
        "gave up after 5 attempts; last: answer's 'code' is '9', expected '0'"
    )


def test_push_long_answer_excerpt_cut_at_200_chars() -> None:
    body = ("x" * 150 + "y" * 150).encode()
    target = RecordingTarget(Answer(status=500, body=body, content_type="text/plain"))

    with serve_in_thread(target.app) as url:
        [result] = push(target_spec(f"{url}/records"), due_deliveries(1))

    assert result.response_excerpt == "x" * 150 + "y" * 50


def test_push_slow_answer_past_timeout_is_unknown_and_retried() -> None:
    target = RecordingTarget(Answer(delay_s=0.8))

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", timeout_s=0.2, retry=FIXED_30)
        [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status, result.response_excerpt) == (
        "unknown",
        None,
        None,
    )
    assert result.error == "no answer within 0.2 s"
    assert 200 <= result.duration_ms < 800
    assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=30)


def test_push_slow_answer_at_last_attempt_is_dead() -> None:
    target = RecordingTarget(Answer(delay_s=0.8))

    with serve_in_thread(target.app) as url:
        spec = target_spec(
            f"{url}/records",
            timeout_s=0.2,
            retry={"kind": "exponential", "max_attempts": 3},
        )
        [result] = push(spec, due_deliveries(1, attempts_before=2))

    assert (result.attempt_no, result.outcome, result.next_attempt_at) == (
        3,
        "dead",
        None,
    )
    assert result.error == "gave up after 3 attempts; last: no answer within 0.2 s"


def test_push_connection_refused_schedules_retry() -> None:
    """Regression: a refused connection was reported as a timeout.

    The httpx_aiohttp transport (used before) mapped every aiohttp connection
    error to httpx.ConnectTimeout, so the attempt said "no answer within 10 s"
    for a port nobody listens on.
    """
    spec = target_spec(closed_port_url(), retry=FIXED_30)

    [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status, result.response_excerpt) == (
        "retry",
        None,
        None,
    )
    assert re.fullmatch(r"connection failed \(\w+\)", result.error or "")
    assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=30)


def test_push_connection_refused_at_last_attempt_is_dead() -> None:
    spec = target_spec(closed_port_url(), retry=FIXED_30)

    [result] = push(spec, due_deliveries(1, attempts_before=4))

    assert result.outcome == "dead"
    assert re.fullmatch(
        r"gave up after 5 attempts; last: connection failed \(\w+\)",
        result.error or "",
    )


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(None, r"connection failed \(\w+\)", id="hangs-up"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            r"connection failed \(\w+\)",
            id="body-cut-short",
        ),
        pytest.param(
            b"garbage\r\n\r\n",
            r"invalid HTTP answer \(ClientResponseError\)",
            id="not-http",
        ),
    ],
)
def test_push_broken_answer_is_unknown_and_retried_for_every_record(
    reply: bytes | None, error: str
) -> None:
    """Regression: a status line that is not HTTP escaped push as an aiohttp error.

    The whole push raised, so the attempts of every other batch in it were
    lost; a target that hung up was reported as "no answer within 10 s".
    """
    with raw_server(reply) as url:
        results = push(target_spec(url, retry=FIXED_30), due_deliveries(3))

    assert [(r.delivery_id, r.outcome, r.http_status) for r in results] == [
        (1001, "unknown", None),
        (1002, "unknown", None),
        (1003, "unknown", None),
    ]
    assert all(re.fullmatch(error, r.error or "") for r in results)


def test_push_no_due_deliveries_sends_nothing() -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        results = push(target_spec(f"{url}/records"), [])

    assert (results, target.received) == ([], [])


@pytest.mark.parametrize(
    ("concurrency", "batch_size", "records"),
    [
        pytest.param(3, 1, 12, id="concurrency-3-single"),
        pytest.param(3, 2, 24, id="concurrency-3-batches"),
        pytest.param(5, 1, 20, id="concurrency-5-single"),
    ],
)
def test_push_concurrency_limit_caps_requests_in_flight(
    concurrency: int, batch_size: int, records: int
) -> None:
    target = RecordingTarget(Answer(delay_s=0.05))

    with serve_in_thread(target.app) as url:
        spec = target_spec(
            f"{url}/records", concurrency=concurrency, batch_size=batch_size
        )
        results = push(spec, due_deliveries(records))

    assert 1 < target.peak_in_flight <= concurrency
    assert len(target.received) == records // batch_size
    assert [r.outcome for r in results] == ["delivered"] * records


def test_push_concurrency_1_sends_one_request_at_a_time() -> None:
    target = RecordingTarget(Answer(delay_s=0.02))

    with serve_in_thread(target.app) as url:
        push(target_spec(f"{url}/records", concurrency=1), due_deliveries(6))

    assert target.peak_in_flight == 1
    assert [r.body for r in target.received] == [
        d.payload.encode() for d in due_deliveries(6)
    ]

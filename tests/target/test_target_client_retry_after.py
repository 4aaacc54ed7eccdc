"""A target's Retry-After lengthens the policy's wait, up to the policy's cap."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Any

import pytest
from target_support import Answer, RecordingTarget, due_deliveries, push, target_spec

from jellyfish.demo.servers import serve_in_thread
from ledger.types import AttemptResult

FIXED_30 = {"kind": "fixed", "interval_s": 30, "max_attempts": 5}
FIXED_30_CAP_60 = {**FIXED_30, "max_s": 60}
EXPONENTIAL_NO_JITTER = {
    "kind": "exponential",
    "initial_s": 1,
    "multiplier": 2,
    "max_s": 300,
    "jitter": 0,
}


def push_answered(
    answer: Answer, retry: dict[str, Any], **fields: Any
) -> AttemptResult:
    """Push one record to a target that always gives ``answer``."""
    target = RecordingTarget(answer)
    with serve_in_thread(target.app) as url:
        [result] = push(
            target_spec(f"{url}/records", retry=retry, **fields), due_deliveries(1)
        )
    return result


def waited_s(result: AttemptResult) -> float:
    assert result.next_attempt_at is not None
    return (result.next_attempt_at - result.started_at).total_seconds()


def answered_within_s(result: AttemptResult) -> float:
    """The longest the answer can have taken, from the attempt's start."""
    return result.duration_ms / 1000


@pytest.mark.parametrize(
    ("status", "retry_after", "retry", "error", "asked_s"),
    [
        pytest.param(
            503, "120", FIXED_30, "HTTP 503; Retry-After 120 s", 120, id="503-fixed"
        ),
        pytest.param(
            429, "45", FIXED_30, "HTTP 429; Retry-After 45 s", 45, id="429-fixed"
        ),
        pytest.param(
            500, "90", FIXED_30, "HTTP 500; Retry-After 90 s", 90, id="500-any-retry"
        ),
        pytest.param(
            503,
            "120",
            EXPONENTIAL_NO_JITTER,
            "HTTP 503; Retry-After 120 s",
            120,
            id="503-exponential",
        ),
    ],
)
def test_push_retry_after_seconds_longer_than_policy_waits_from_answer(
    status: int, retry_after: str, retry: dict[str, Any], error: str, asked_s: int
) -> None:
    answer = Answer(status=status, headers={"Retry-After": retry_after})

    result = push_answered(answer, retry)

    assert (result.outcome, result.http_status, result.error) == (
        "retry",
        status,
        error,
    )
    # Counted from the answer (RFC 9110), which came at most one duration in.
    assert asked_s <= waited_s(result) <= asked_s + answered_within_s(result)


@pytest.mark.parametrize(
    ("retry_after", "retry", "error", "expected_s"),
    [
        pytest.param(
            "5", FIXED_30, "HTTP 503; Retry-After 5 s", 30.0, id="fixed-30-over-5"
        ),
        pytest.param(
            "0", FIXED_30, "HTTP 503; Retry-After 0 s", 30.0, id="fixed-30-over-0"
        ),
        pytest.param(
            "7200",
            FIXED_30,
            "HTTP 503; Retry-After 7200 s, capped at 3600 s",
            3600.0,
            id="fixed-default-cap-3600",
        ),
        pytest.param(
            "600",
            FIXED_30_CAP_60,
            "HTTP 503; Retry-After 600 s, capped at 60 s",
            60.0,
            id="fixed-cap-60",
        ),
        pytest.param(
            "100000",
            EXPONENTIAL_NO_JITTER,
            "HTTP 503; Retry-After 100000 s, capped at 300 s",
            300.0,
            id="exponential-max-s-300",
        ),
        pytest.param(
            "Wed, 21 Oct 2099 07:28:00 GMT",
            FIXED_30,
            "HTTP 503; Retry-After 2099-10-21T07:28:00Z, capped at 3600 s",
            3600.0,
            id="far-date-capped",
        ),
        pytest.param(
            "Mon, 01 Jan 2001 00:00:00 GMT",
            FIXED_30,
            "HTTP 503; Retry-After 2001-01-01T00:00:00Z",
            30.0,
            id="past-date-policy-wins",
        ),
    ],
)
def test_push_retry_after_shorter_or_capped_waits_exact_policy_bound(
    retry_after: str, retry: dict[str, Any], error: str, expected_s: float
) -> None:
    answer = Answer(status=503, headers={"Retry-After": retry_after})

    result = push_answered(answer, retry)

    assert (result.outcome, result.error) == ("retry", error)
    assert result.next_attempt_at == result.started_at + dt.timedelta(
        seconds=expected_s
    )


def test_push_retry_after_fixed_interval_above_cap_is_not_shortened() -> None:
    retry = {"kind": "fixed", "interval_s": 7200, "max_s": 60, "max_attempts": 5}

    result = push_answered(Answer(status=503, headers={"Retry-After": "600"}), retry)

    assert result.error == "HTTP 503; Retry-After 600 s, capped at 60 s"
    assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=7200)


@pytest.mark.parametrize(
    "form",
    [
        pytest.param("imf-fixdate", id="imf-fixdate"),
        pytest.param("rfc850", id="rfc850"),
        pytest.param("asctime", id="asctime"),
    ],
)
def test_push_retry_after_http_date_schedules_at_that_moment(form: str) -> None:
    moment = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=600)).replace(
        microsecond=0
    )
    value = {
        "imf-fixdate": format_datetime(moment, usegmt=True),
        "rfc850": moment.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        "asctime": f"{moment:%a %b} {moment.day:>2} {moment:%H:%M:%S %Y}",
    }[form]

    result = push_answered(Answer(status=503, headers={"Retry-After": value}), FIXED_30)

    assert result.error == f"HTTP 503; Retry-After {moment:%Y-%m-%dT%H:%M:%SZ}"
    assert result.next_attempt_at == moment


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("soon", id="word"),
        pytest.param("1.5", id="fraction"),
        pytest.param("-60", id="negative"),
        pytest.param("Thu, 31 Feb 2099 12:00:00 GMT", id="no-such-day"),
        pytest.param("", id="empty"),
    ],
)
def test_push_retry_after_unreadable_ignored_policy_schedules(
    retry_after: str,
) -> None:
    result = push_answered(
        Answer(status=503, headers={"Retry-After": retry_after}), FIXED_30
    )

    assert (result.outcome, result.error) == ("retry", "HTTP 503")
    assert result.next_attempt_at == result.started_at + dt.timedelta(seconds=30)


def test_push_retry_after_on_2xx_failing_success_rule_is_honoured() -> None:
    answer = Answer(body=b'{"code":"1"}', headers={"Retry-After": "3000"})

    result = push_answered(answer, FIXED_30, preset="jellyfish")

    assert result.error == "answer's 'code' is '1', expected '0'; Retry-After 3000 s"
    assert 3000 <= waited_s(result) <= 3000 + answered_within_s(result)


def test_push_retry_after_on_permanent_4xx_still_dead() -> None:
    answer = Answer(status=404, headers={"Retry-After": "120"})

    result = push_answered(answer, FIXED_30)

    assert (result.outcome, result.error, result.next_attempt_at) == (
        "dead",
        "HTTP 404 (permanent)",
        None,
    )


def test_push_retry_after_at_last_attempt_dead_with_reason() -> None:
    target = RecordingTarget(Answer(status=503, headers={"Retry-After": "120"}))

    with serve_in_thread(target.app) as url:
        [result] = push(
            target_spec(f"{url}/records", retry=FIXED_30),
            due_deliveries(1, attempts_before=4),
        )

    assert (result.attempt_no, result.outcome, result.next_attempt_at) == (
        5,
        "dead",
        None,
    )
    assert result.error == "gave up after 5 attempts; last: HTTP 503; Retry-After 120 s"


def test_push_retry_after_batch_applies_to_every_record() -> None:
    target = RecordingTarget(Answer(status=429, headers={"Retry-After": "7200"}))

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records/batch", batch_size=3, retry=FIXED_30)
        results = push(spec, due_deliveries(3))

    assert [(r.delivery_id, r.outcome, r.error) for r in results] == [
        (number, "retry", "HTTP 429; Retry-After 7200 s, capped at 3600 s")
        for number in (1001, 1002, 1003)
    ]
    assert {waited_s(r) for r in results} == {3600.0}

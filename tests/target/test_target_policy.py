"""Retry policies: how long a failed delivery waits, and when it is a dead letter."""

from __future__ import annotations

import random
from typing import Any

import pytest

from jellyfish.job import ExponentialRetry, FixedRetry
from jellyfish.target.policy import is_exhausted, retry_delay_s, retry_wait_s


def exponential(**fields: Any) -> ExponentialRetry:
    return ExponentialRetry.model_validate({"kind": "exponential", **fields})


def fixed(**fields: Any) -> FixedRetry:
    return FixedRetry.model_validate({"kind": "fixed", **fields})


@pytest.mark.parametrize("attempt_no", [1, 2, 7, 50])
def test_retry_delay_s_fixed_policy_waits_interval_every_time(attempt_no: int) -> None:
    policy = fixed(interval_s=45, max_attempts=100)

    assert retry_delay_s(policy, attempt_no, random.Random(3)) == 45.0


def test_retry_delay_s_fixed_policy_default_is_30_s() -> None:
    assert retry_delay_s(fixed(), 1) == 30.0


@pytest.mark.parametrize(
    ("fields", "expected_s"),
    [
        pytest.param(
            {"initial_s": 1, "multiplier": 2, "max_s": 60},
            [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0],
            id="doubling-capped-at-60",
        ),
        pytest.param(
            {"initial_s": 0.5, "multiplier": 3, "max_s": 100},
            [0.5, 1.5, 4.5, 13.5, 40.5, 100.0, 100.0, 100.0],
            id="tripling-capped-at-100",
        ),
        pytest.param(
            {"initial_s": 5, "multiplier": 1, "max_s": 300},
            [5.0] * 8,
            id="multiplier-1-is-constant",
        ),
        pytest.param(
            {"initial_s": 10, "multiplier": 2, "max_s": 4},
            [4.0] * 8,
            id="initial-above-cap",
        ),
    ],
)
def test_retry_delay_s_exponential_without_jitter_grows_then_caps(
    fields: dict[str, float], expected_s: list[float]
) -> None:
    policy = exponential(jitter=0, **fields)

    delays = [retry_delay_s(policy, n, random.Random(1)) for n in range(1, 9)]

    assert delays == expected_s


def test_retry_delay_s_exponential_jitter_stays_within_fraction_of_wait() -> None:
    policy = exponential(initial_s=1, multiplier=2, max_s=300, jitter=0.25)
    rng = random.Random(7)

    delays = [retry_delay_s(policy, 3, rng) for _ in range(2000)]

    # Attempt 3 waits 4 s, moved by up to a quarter either way: [3, 5].
    assert 3.0 <= min(delays) < 3.1
    assert 4.9 < max(delays) <= 5.0
    assert len(set(delays)) == 2000


def test_retry_delay_s_exponential_jitter_at_cap_never_exceeds_max_s() -> None:
    policy = exponential(initial_s=1, multiplier=2, max_s=60, jitter=0.2)
    rng = random.Random(11)

    delays = [retry_delay_s(policy, 20, rng) for _ in range(2000)]

    assert max(delays) == 60.0
    assert 48.0 <= min(delays) < 49.0


def test_retry_delay_s_exponential_same_seed_gives_same_delays() -> None:
    policy = exponential(initial_s=2, multiplier=2, max_s=300, jitter=0.2)
    first, second, other = random.Random(5), random.Random(5), random.Random(6)

    delays = [retry_delay_s(policy, n, first) for n in range(1, 10)]

    assert delays == [retry_delay_s(policy, n, second) for n in range(1, 10)]
    assert delays != [retry_delay_s(policy, n, other) for n in range(1, 10)]


def test_retry_delay_s_exponential_seeded_value_is_base_times_spread() -> None:
    policy = exponential(initial_s=1, multiplier=2, max_s=300, jitter=0.2)

    delay_s = retry_delay_s(policy, 3, random.Random(1))

    # random.Random(1).uniform(-0.2, 0.2) is -0.14625430235503953.
    assert delay_s == pytest.approx(4 * (1 - 0.14625430235503953), abs=1e-12)


def test_retry_delay_s_exponential_full_jitter_never_negative() -> None:
    policy = exponential(initial_s=1, multiplier=2, max_s=300, jitter=1.0)
    rng = random.Random(2)

    delays = [retry_delay_s(policy, 2, rng) for _ in range(2000)]

    assert 0.0 <= min(delays) < 0.05
    assert 3.95 < max(delays) <= 4.0


def test_retry_delay_s_exponential_zero_initial_always_zero() -> None:
    policy = exponential(initial_s=0, multiplier=2, max_s=300, jitter=0.5)

    assert [retry_delay_s(policy, n, random.Random(n)) for n in (1, 5, 5000)] == [
        0.0,
        0.0,
        0.0,
    ]


@pytest.mark.parametrize(
    ("initial_s", "expected_s"),
    [
        pytest.param(1.0, 300.0, id="capped"),
        pytest.param(0.0, 0.0, id="zero-initial"),
    ],
)
def test_retry_delay_s_exponential_far_past_float_range_returns_cap(
    initial_s: float, expected_s: float
) -> None:
    """Regression: 2.0 ** 1099 overflows a float, and the push raised OverflowError.

    A policy such as ``max_attempts: 5000`` reached it at attempt 1100; the
    whole push failed instead of scheduling the next attempt at ``max_s``.
    """
    policy = exponential(
        initial_s=initial_s, multiplier=2, max_s=300, jitter=0, max_attempts=5000
    )

    assert retry_delay_s(policy, 1100) == expected_s


@pytest.mark.parametrize(
    ("policy", "attempt_no", "expected"),
    [
        pytest.param(fixed(max_attempts=3), 1, False, id="fixed-first-of-3"),
        pytest.param(fixed(max_attempts=3), 2, False, id="fixed-second-of-3"),
        pytest.param(fixed(max_attempts=3), 3, True, id="fixed-third-of-3"),
        pytest.param(fixed(max_attempts=3), 4, True, id="fixed-past-limit"),
        pytest.param(fixed(max_attempts=1), 1, True, id="fixed-single-attempt"),
        pytest.param(exponential(), 9, False, id="exponential-default-9-of-10"),
        pytest.param(exponential(), 10, True, id="exponential-default-10-of-10"),
        pytest.param(fixed(), 4, False, id="fixed-default-4-of-5"),
        pytest.param(fixed(), 5, True, id="fixed-default-5-of-5"),
    ],
)
def test_is_exhausted_by_attempt_no_true_from_max_attempts(
    policy: FixedRetry | ExponentialRetry, attempt_no: int, expected: bool
) -> None:
    assert is_exhausted(policy, attempt_no) is expected


def test_fixed_retry_max_s_default_is_3600() -> None:
    assert fixed().max_s == 3600.0


@pytest.mark.parametrize(
    ("policy", "attempt_no", "asked_s", "expected_s"),
    [
        pytest.param(fixed(interval_s=30), 1, None, 30.0, id="fixed-nothing-asked"),
        pytest.param(fixed(interval_s=30), 1, 10.0, 30.0, id="fixed-asked-shorter"),
        pytest.param(fixed(interval_s=30), 1, 120.0, 120.0, id="fixed-asked-longer"),
        pytest.param(fixed(interval_s=30), 1, 1e6, 3600.0, id="fixed-default-cap"),
        pytest.param(
            fixed(interval_s=30, max_s=60), 1, 600.0, 60.0, id="fixed-own-cap"
        ),
        pytest.param(
            fixed(interval_s=120, max_s=60),
            1,
            600.0,
            120.0,
            id="fixed-interval-above-cap-kept",
        ),
        pytest.param(
            exponential(initial_s=1, jitter=0, max_s=300),
            3,
            2.0,
            4.0,
            id="exponential-asked-shorter",
        ),
        pytest.param(
            exponential(initial_s=1, jitter=0, max_s=300),
            3,
            90.0,
            90.0,
            id="exponential-asked-longer",
        ),
        pytest.param(
            exponential(initial_s=1, jitter=0, max_s=300),
            3,
            1e9,
            300.0,
            id="exponential-capped-at-max-s",
        ),
    ],
)
def test_retry_wait_s_asked_wait_lengthens_never_shortens_up_to_cap(
    policy: FixedRetry | ExponentialRetry,
    attempt_no: int,
    asked_s: float | None,
    expected_s: float,
) -> None:
    assert retry_wait_s(policy, attempt_no, asked_s, random.Random(1)) == expected_s

"""When a failed delivery is tried again, and when it becomes a dead letter."""

from __future__ import annotations

import math
import random

from jellyfish.job import ExponentialRetry, RetryPolicy


def is_exhausted(policy: RetryPolicy, attempt_no: int) -> bool:
    """True once ``attempt_no`` attempts have been made and none may follow."""
    return attempt_no >= policy.max_attempts


def retry_delay_s(
    policy: RetryPolicy, attempt_no: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt_no`` (1-based).

    Exponential waits grow by ``multiplier`` from ``initial_s``, are capped at
    ``max_s``, then moved by up to ``jitter`` of themselves either way so that
    many deliveries failing together do not all come back together.
    """
    if not isinstance(policy, ExponentialRetry):
        return policy.interval_s
    try:
        grown_s = policy.initial_s * policy.multiplier ** (attempt_no - 1)
    except OverflowError:
        # Far past the cap (e.g. attempt 1100 at x2): max_s applies anyway.
        grown_s = math.inf if policy.initial_s > 0 else 0.0
    base = min(policy.max_s, grown_s)
    spread = (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(0.0, min(policy.max_s, base * (1 + spread)))


def retry_wait_s(
    policy: RetryPolicy,
    attempt_no: int,
    asked_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The policy's wait after ``attempt_no``, lengthened to what the target asked.

    A target's ``Retry-After`` (``asked_s``) never shortens the policy's own
    wait, and is itself cut to the policy's ``max_s``: a target cannot park a
    delivery for longer than the job allows.
    """
    delay_s = retry_delay_s(policy, attempt_no, rng)
    if asked_s is None:
        return delay_s
    return max(delay_s, min(asked_s, policy.max_s))

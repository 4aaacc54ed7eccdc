"""Reading Retry-After values (RFC 9110): seconds, three date forms, and junk."""

from __future__ import annotations

import datetime as dt

import pytest

from jellyfish.target.retry_after import RetryAfter, parse_retry_after

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", RetryAfter(120.0, "120 s"), id="seconds"),
        pytest.param("0", RetryAfter(0.0, "0 s"), id="zero"),
        pytest.param(" \t120 ", RetryAfter(120.0, "120 s"), id="surrounding-space"),
        pytest.param("007", RetryAfter(7.0, "7 s"), id="leading-zeros"),
        pytest.param(
            "9" * 30, RetryAfter(1e9, "1000000000 s"), id="absurdly-long-kept-finite"
        ),
        pytest.param(
            "Thu, 01 Jan 2026 12:02:00 GMT",
            RetryAfter(120.0, "2026-01-01T12:02:00Z"),
            id="imf-fixdate",
        ),
        pytest.param(
            "Thursday, 01-Jan-26 12:02:00 GMT",
            RetryAfter(120.0, "2026-01-01T12:02:00Z"),
            id="rfc850",
        ),
        pytest.param(
            "Thu Jan  1 12:02:00 2026",
            RetryAfter(120.0, "2026-01-01T12:02:00Z"),
            id="asctime-one-digit-day",
        ),
        pytest.param(
            "Sat Jan 31 12:00:00 2026",
            RetryAfter(30 * 86400.0, "2026-01-31T12:00:00Z"),
            id="asctime-two-digit-day",
        ),
        pytest.param(
            "Wed, 31 Dec 2025 23:00:00 GMT",
            RetryAfter(0.0, "2025-12-31T23:00:00Z"),
            id="past-date-waits-0",
        ),
        pytest.param(
            "Thu, 01 Jan 2026 11:59:60 GMT",
            RetryAfter(0.0, "2026-01-01T11:59:59Z"),
            id="leap-second",
        ),
        pytest.param(
            "Friday, 01-Jan-76 00:00:00 GMT",
            # 50 years ahead is still the future; the wait stops at 10**9 s.
            RetryAfter(1e9, "2076-01-01T00:00:00Z"),
            id="rfc850-year-50-ahead-is-future",
        ),
        pytest.param(
            "Friday, 01-Jan-77 00:00:00 GMT",
            RetryAfter(0.0, "1977-01-01T00:00:00Z"),
            id="rfc850-year-past-50-ahead-is-past",
        ),
    ],
)
def test_parse_retry_after_valid_value_gives_wait_and_text(
    value: str, expected: RetryAfter
) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("soon", id="word"),
        pytest.param("1.5", id="fraction"),
        pytest.param("-5", id="negative"),
        pytest.param("+5", id="plus-sign"),
        pytest.param("1_000", id="underscore"),
        pytest.param("\u0661\u0662\u0660", id="non-ascii-digits"),
        pytest.param("120 s", id="unit"),
        pytest.param("120, 120", id="repeated-header"),
        pytest.param("Thu, 01 Jan 2026 12:02:00 UTC", id="zone-not-gmt"),
        pytest.param("thu, 01 jan 2026 12:02:00 gmt", id="lowercase"),
        pytest.param("Thu, 31 Feb 2026 12:02:00 GMT", id="no-such-day"),
        pytest.param("Thu, 01 Jan 2026 25:00:00 GMT", id="no-such-hour"),
        pytest.param("Thu, 1 Jan 2026 12:02:00 GMT", id="one-digit-day-imf"),
        pytest.param("2026-01-01T12:02:00Z", id="iso-8601"),
    ],
)
def test_parse_retry_after_unreadable_value_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None

"""Read a target's ``Retry-After`` header (RFC 9110, section 10.2.3).

The header holds either whole seconds or an HTTP-date::

    Retry-After: 120
    Retry-After: Wed, 21 Oct 2099 07:28:00 GMT     (IMF-fixdate)
    Retry-After: Wednesday, 21-Oct-99 07:28:00 GMT (obsolete RFC 850 form)
    Retry-After: Wed Oct 21 07:28:00 2099          (obsolete asctime form)

Anything else is not understood and yields ``None``, so the caller keeps its
own schedule.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# Longer waits than this are not worth a float or a timedelta: every retry
# policy caps far below it.
_LONGEST_S = 10**9

_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_LONG_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTH = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTH.split("|"), 1)}
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
_SECONDS = re.compile(r"[0-9]+")
_IMF_FIXDATE = re.compile(
    rf"(?:{_DAYS}), (?P<day>\d\d) (?P<month>{_MONTH}) (?P<year>\d{{4}}) {_TIME} GMT"
)
_RFC850 = re.compile(
    rf"(?:{_LONG_DAYS}), (?P<day>\d\d)-(?P<month>{_MONTH})-(?P<year>\d\d) {_TIME} GMT"
)
_ASCTIME = re.compile(
    rf"(?:{_DAYS}) (?P<month>{_MONTH}) (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})"
)


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """What the target asked for: a wait from its answer, and how it said so."""

    wait_s: float
    # "120 s" or "2099-10-21T07:28:00Z": for attempt errors, never the raw value.
    text: str


def parse_retry_after(value: str, now: dt.datetime) -> RetryAfter | None:
    """Read one ``Retry-After`` value; ``None`` when it is not understood.

    Args:
        value: The header value as received.
        now: When the answer arrived (timezone-aware); an HTTP-date is
            turned into a wait from this moment, a past date into 0 s.

    Returns:
        The wait and a short description of it, or ``None`` for a value
        that is neither whole seconds nor an HTTP-date.
    """
    # Surrounding spaces and tabs are optional whitespace around a field value.
    value = value.strip(" \t")
    if _SECONDS.fullmatch(value):
        seconds = min(int(value), _LONGEST_S)
        return RetryAfter(float(seconds), f"{seconds} s")
    moment = _http_date(value, now)
    if moment is None:
        return None
    wait_s = min(max(0.0, (moment - now).total_seconds()), float(_LONGEST_S))
    return RetryAfter(wait_s, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _http_date(value: str, now: dt.datetime) -> dt.datetime | None:
    """The UTC moment of an HTTP-date in any of its three forms, or ``None``."""
    match = (
        _IMF_FIXDATE.fullmatch(value)
        or _RFC850.fullmatch(value)
        or _ASCTIME.fullmatch(value)
    )
    if match is None:
        return None
    year = int(match["year"])
    if len(match["year"]) == 2:
        year = _full_year(year, now.year)
    try:
        return dt.datetime(
            year,
            _MONTH_NUMBERS[match["month"]],
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            # A leap second (60) is read as the last whole second before it.
            min(int(match["second"]), 59),
            tzinfo=dt.UTC,
        )
    except ValueError:
        # Fits the pattern but names no real moment, such as 31 Feb or 25:00.
        return None


def _full_year(two_digits: int, this_year: int) -> int:
    """RFC 9110: a two-digit year more than 50 years ahead is in the past."""
    year = this_year - this_year % 100 + two_digits
    if year > this_year + 50:
        year -= 100
    return year

"""Property: whatever the ties and offsets, a keyset pass stages each record once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paged_app import keyset_order
from source_passes import keys_of, make_job, read_pass

from jellyfish.source.cursor import CursorState

_BASE = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC)
_OFFSETS = [None, dt.timedelta(0), dt.timedelta(hours=2), dt.timedelta(hours=-5)]


def _stamp(minute: int, offset: dt.timedelta | None) -> str:
    """One of a few instants, written as naive UTC, Z or with an offset."""
    moment = _BASE + dt.timedelta(minutes=minute)
    if offset is None:
        return moment.replace(tzinfo=None).isoformat()
    text = moment.astimezone(dt.timezone(offset)).isoformat()
    return text.replace("+00:00", "Z")


# Four instants for up to 40 records: most records tie with others.
_RECORDS = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(_OFFSETS)), max_size=40
).map(
    lambda stamps: [
        {"id": index, "updated_at": _stamp(minute, offset), "n": index * 7}
        for index, (minute, offset) in enumerate(stamps, start=1)
    ]
)


@pytest.fixture(scope="module")
def admin(paged_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=paged_url, timeout=10.0) as client:
        yield client


@settings(
    max_examples=30,
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(records=_RECORDS, page_size=st.integers(1, 10))
def test_pages_keyset_any_ties_any_page_size_stage_each_record_once(
    paged_url: str, admin: httpx.Client, records: list[dict[str, Any]], page_size: int
) -> None:
    assert admin.post("/admin/load", json=records).json() == {"records": len(records)}
    job = make_job(
        {
            "url": f"{paged_url}/keyset",
            "records_path": "items",
            "key": ["id"],
            "cursor": ["updated_at:timestamp", "id:integer"],
            "pagination": {
                "kind": "keyset",
                "params": {"after_updated_at": "updated_at", "after_id": "id"},
                "page_size": page_size,
            },
        }
    )
    ordered = keyset_order(records)

    pages = read_pass(job)

    assert keys_of(pages) == [str(record["id"]) for record in ordered]
    assert len(pages) == len(records) // page_size + 1
    newest = (ordered[-1]["updated_at"], ordered[-1]["id"]) if ordered else None
    assert pages[-1].cursor_after == CursorState(high_water=newest)

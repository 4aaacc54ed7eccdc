"""The demo data set: flights as JSON-safe records, and the content hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from jellyfish.demo.data import content_hash, load_flights


def test_load_flights_five_rows_exact_values() -> None:
    records = load_flights(5)

    assert [record["id"] for record in records] == [1, 2, 3, 4, 5]
    assert records[0] == {
        "year": 2013,
        "month": 1,
        "day": 1,
        "dep_time": 517.0,
        "sched_dep_time": 515,
        "dep_delay": 2.0,
        "arr_time": 830.0,
        "sched_arr_time": 819,
        "arr_delay": 11.0,
        "carrier": "UA",
        "flight": 1545,
        "tailnum": "N14228",
        "origin": "EWR",
        "dest": "IAH",
        "air_time": 227.0,
        "distance": 1400,
        "hour": 5,
        "minute": 15,
        "time_hour": "2013-01-01T10:00:00Z",
        "id": 1,
        "updated_at": "2013-01-01T10:00:00Z",
    }
    assert [record["updated_at"] for record in records] == [
        record["time_hour"] for record in records
    ]
    assert [record["origin"] for record in records] == [
        "EWR",
        "LGA",
        "JFK",
        "JFK",
        "LGA",
    ]


def test_load_flights_values_are_plain_python_types() -> None:
    record = load_flights(1)[0]

    assert {name: type(value) for name, value in record.items()} == {
        **{name: int for name in ("year", "month", "day", "sched_dep_time")},
        **{name: int for name in ("sched_arr_time", "flight", "distance")},
        **{name: int for name in ("hour", "minute", "id")},
        **{name: float for name in ("dep_time", "dep_delay", "arr_time")},
        **{name: float for name in ("arr_delay", "air_time")},
        **{name: str for name in ("carrier", "tailnum", "origin", "dest")},
        **{name: str for name in ("time_hour", "updated_at")},
    }


def test_load_flights_cancelled_flight_nan_becomes_none() -> None:
    records = load_flights(1783)

    cancelled = records[838]
    assert cancelled["id"] == 839
    assert {
        name: cancelled[name] for name in ("dep_time", "dep_delay", "air_time")
    } == {
        "dep_time": None,
        "dep_delay": None,
        "air_time": None,
    }
    assert (cancelled["flight"], cancelled["tailnum"]) == (4308, "N18120")
    # tailnum is a text column: its missing values must become None too.
    assert records[1782]["tailnum"] is None
    json.dumps(records, allow_nan=False)


def test_load_flights_zero_returns_empty_list() -> None:
    assert load_flights(0) == []


def test_load_flights_negative_limit_raises() -> None:
    with pytest.raises(ValueError, match="^limit must be None or at least 0, got -1$"):
        load_flights(-1)


@pytest.mark.slow
def test_load_flights_all_returns_every_flight() -> None:
    records = load_flights(None)

    assert len(records) == 336776
    assert records[-1]["id"] == 336776
    assert sum(1 for record in records if record["dep_time"] is None) == 8255
    json.dumps(records[-1000:], allow_nan=False)


def test_content_hash_ignores_key_order_and_is_sha256_of_compact_json() -> None:
    first = content_hash({"id": 1, "origin": "EWR", "dep_delay": None})
    second = content_hash({"dep_delay": None, "origin": "EWR", "id": 1})

    assert first == second
    # sha256 of b'{"dep_delay":null,"id":1,"origin":"EWR"}'
    assert first == "8cb3ed332eff7e9f4f2aa92e88f9c4d6f9950ac12d35946bdca0250803bd4ddb"


def test_content_hash_non_ascii_text_hashed_as_utf8() -> None:
    expected = hashlib.sha256('{"dest":"Zürich"}'.encode()).hexdigest()

    assert content_hash({"dest": "Zürich"}) == expected

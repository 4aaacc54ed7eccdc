"""Every push names its record versions, so a target can check order itself."""

from __future__ import annotations

import json

import httpx
import pytest
from target_support import RecordingTarget, due_deliveries, push, target_spec

from jellyfish.demo.data import content_hash
from jellyfish.demo.servers import serve_in_thread
from ledger.types import DueDelivery


def version_of(number: int, delay: float, version_id: int) -> DueDelivery:
    """Flight ``number`` with ``dep_delay`` ``delay`` as record version ``version_id``.

    The delivery id is the version id too.
    """
    record = {"id": number, "origin": "EWR", "dep_delay": delay}
    return DueDelivery(
        delivery_id=version_id,
        record_key=str(number),
        content_hash=content_hash(record),
        payload=json.dumps(record),
        attempts_before=0,
        record_version_id=version_id,
    )


def test_push_single_records_carry_their_record_version_header() -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        push(target_spec(f"{url}/records", concurrency=1), due_deliveries(3))

    assert [r.headers["x-jellyfish-record-version"] for r in target.received] == [
        "5001",
        "5002",
        "5003",
    ]
    assert all("x-jellyfish-record-versions" not in r.headers for r in target.received)


@pytest.mark.parametrize(
    ("batch_size", "expected"),
    [
        pytest.param(3, ["5001,5002,5003", "5004,5005,5006", "5007"], id="size-3"),
        pytest.param(10, ["5001,5002,5003,5004,5005,5006,5007"], id="one-batch"),
    ],
)
def test_push_batches_carry_versions_in_body_order(
    batch_size: int, expected: list[str]
) -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        push(
            target_spec(f"{url}/batch", batch_size=batch_size, concurrency=1),
            due_deliveries(7),
        )

    assert [r.headers["x-jellyfish-record-versions"] for r in target.received] == (
        expected
    )
    assert [
        [str(5000 + record["id"]) for record in json.loads(r.body)]
        for r in target.received
    ] == [header.split(",") for header in expected]
    assert all("x-jellyfish-record-version" not in r.headers for r in target.received)


def test_push_demo_target_counts_older_version_after_newer(
    target_url: str, client: httpx.Client
) -> None:
    spec = target_spec(f"{target_url}/records")

    for due in (
        version_of(1, 1.0, 10),
        version_of(1, 2.0, 12),
        version_of(1, 2.0, 12),  # the same version again: a duplicate, not late
        version_of(1, 1.5, 11),
        version_of(2, 9.0, 3),
    ):
        [result] = push(spec, [due])
        assert result.outcome == "delivered"

    stats = client.get(f"{target_url}/stats").json()
    assert (stats["records"], stats["duplicates"], stats["older_after_newer"]) == (
        5,
        1,
        1,
    )


def test_push_demo_target_batches_in_order_count_nothing_late(
    target_url: str, client: httpx.Client
) -> None:
    spec = target_spec(f"{target_url}/records/batch", batch_size=2)

    push(spec, [version_of(1, 1.0, 20), version_of(2, 1.0, 21)])
    push(spec, [version_of(1, 2.0, 22), version_of(2, 2.0, 23)])
    push(spec, [version_of(1, 0.5, 19)])

    stats = client.get(f"{target_url}/stats").json()
    assert (stats["records"], stats["older_after_newer"]) == (5, 1)

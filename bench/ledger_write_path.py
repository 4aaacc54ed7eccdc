"""The ledger's write path alone: microseconds per record for each step.

A push of one record costs the ledger four steps: staging its page (record
version, delivery, cursor), claiming it (lease), and recording its attempt
(attempt row, delivery status). This bench runs those steps straight against
the store, with no HTTP and no Prefect, so each step's cost per record shows
by itself, together with the CPU seconds Postgres spent on it.

    .venv/bin/python bench/ledger_write_path.py                   # Postgres
    .venv/bin/python bench/ledger_write_path.py --records 200000 --json
    .venv/bin/python bench/ledger_write_path.py --ledger sqlite:///x.db

On Postgres it uses a database ``<name>_bench`` beside the one given, created
fresh and dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from continuous_procs import drop_ledger, fresh_ledger, postgres_cpu_s  # noqa: E402

from ledger.engine import dispose_all, get_engine  # noqa: E402
from ledger.schema import OUTCOME_DELIVERED  # noqa: E402
from ledger.store import claim_due, record_attempts, stage_page  # noqa: E402
from ledger.types import AttemptResult, StagedVersion  # noqa: E402

JOB = "write-path"
TARGET = "bench"


def _versions(start: int, count: int) -> list[StagedVersion]:
    rows = []
    for record_id in range(start, start + count):
        payload = json.dumps(
            {
                "id": record_id,
                "carrier": "UA",
                "flight": record_id % 2000,
                "origin": "EWR",
                "dest": "IAH",
                "dep_delay": 2.0,
                "arr_delay": 11.0,
                "tailnum": "N14228",
                "updated_at": "2013-01-01T10:00:00Z",
            }
        )
        rows.append(
            StagedVersion(
                key=str(record_id),
                key_hash=record_id * 2654435761 % 2**31,
                content_hash=hashlib.sha256(payload.encode()).hexdigest(),
                payload=payload,
            )
        )
    return rows


class Clock:
    """Wall seconds and Postgres CPU seconds, added up per step."""

    def __init__(self, is_postgres: bool) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.db_cpu: dict[str, float] = defaultdict(float)
        self._is_postgres = is_postgres

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        cpu = postgres_cpu_s() if self._is_postgres else 0.0
        clock = time.perf_counter()
        yield
        self.wall[name] += time.perf_counter() - clock
        if self._is_postgres:
            self.db_cpu[name] += postgres_cpu_s() - cpu


def run(url: str, records: int, page_size: int, claim_size: int) -> dict[str, object]:
    engine = get_engine(url)
    clock = Clock(engine.dialect.name == "postgresql")
    cursor: str | None = None
    for start in range(1, records + 1, page_size):
        versions = _versions(start, min(page_size, records + 1 - start))
        after = json.dumps({"id": start + len(versions) - 1})
        with clock.step("stage"), Session(engine) as session, session.begin():
            stage_page(
                session,
                job=JOB,
                shard="s0",
                versions=versions,
                fetched=len(versions),
                cursor_before=cursor,
                cursor_after=after,
                targets=[TARGET],
            )
        cursor = after
    while True:
        with clock.step("claim"), Session(engine) as session, session.begin():
            due = claim_due(
                session,
                job=JOB,
                target=TARGET,
                partition=0,
                partitions=1,
                owner="bench",
                limit=claim_size,
                lease_s=60,
            )
        if not due:
            break
        now = dt.datetime.now(dt.UTC)
        results = [
            AttemptResult(d.delivery_id, 1, now, 1.0, OUTCOME_DELIVERED, 200)
            for d in due
        ]
        with clock.step("record"), Session(engine) as session, session.begin():
            record_attempts(session, owner="bench", results=results)
    dispose_all()
    steps = {
        name: {
            "us_per_record": round(seconds / records * 1e6, 1),
            "db_cpu_us_per_record": round(clock.db_cpu[name] / records * 1e6, 1),
        }
        for name, seconds in clock.wall.items()
    }
    total = sum(clock.wall.values())
    return {
        "records": records,
        "steps": steps,
        "total_us_per_record": round(total / records * 1e6, 1),
        "records_per_s": round(records / total),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ledger", default="postgresql://postgres@127.0.0.1:5432/jellyfish"
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--claim-size", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        url = fresh_ledger(args.ledger, Path(scratch), "write-path")
        try:
            figures = run(url, args.records, args.page_size, args.claim_size)
        finally:
            drop_ledger(url)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"records={figures['records']} records/s={figures['records_per_s']}")
    print("| step | µs / record | Postgres CPU µs / record |")
    print("|---|---|---|")
    for name, step in figures["steps"].items():  # type: ignore[attr-defined]
        print(f"| {name} | {step['us_per_record']} | {step['db_cpu_us_per_record']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

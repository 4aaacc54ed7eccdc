"""Demo throughput on both ledgers, for a single-record and a batch target.

Runs `jellyfish demo --json` for every combination, interleaving the rounds so
that machine noise hits all of them alike, and prints a markdown table (and
writes bench/results/demo_throughput.json).

    .venv/bin/python bench/demo_throughput.py --records all --rounds 1
    .venv/bin/python bench/demo_throughput.py --postgres postgresql://postgres@127.0.0.1/jellyfish
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "demo_throughput.json"


def run_demo(records: str, push: str, ledger: str | None) -> dict[str, Any]:
    command = [
        str(Path(sys.executable).parent / "jellyfish"),
        "demo",
        "--records",
        records,
        "--push",
        push,
        "--json",
    ]
    if ledger:
        command += ["--ledger", ledger]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({push}, {ledger}):\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="all", help="a number or 'all'")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/jellyfish",
        help="Postgres ledger URL ('' to skip Postgres)",
    )
    args = parser.parse_args()

    ledgers: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.postgres:
        ledgers.append(("postgres", args.postgres))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        for ledger_name, url in ledgers:
            for push in ("single", "batch"):
                report = run_demo(args.records, push, url)
                runs.setdefault((ledger_name, push), []).append(report)
                print(
                    f"round {round_no + 1} ledger={ledger_name} push={push} "
                    f"records/s={report['records_per_second']} "
                    f"lost={report['lost']} duplicates={report['duplicates']}",
                    file=sys.stderr,
                )

    rows = []
    for (ledger_name, push), reports in runs.items():
        rows.append(
            {
                "ledger": ledger_name,
                "push": push,
                "records": reports[0]["source_records"],
                "delivered": min(r["delivered"] for r in reports),
                "lost": max(r["lost"] for r in reports),
                "duplicates": max(r["duplicates"] for r in reports),
                "sync_seconds": statistics.median(r["sync_seconds"] for r in reports),
                "records_per_second": statistics.median(
                    r["records_per_second"] for r in reports
                ),
            }
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")


if __name__ == "__main__":
    main()

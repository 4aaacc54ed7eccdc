"""Continuous mode against a non-durable baseline: throughput, latency, costs.

One command measures, interleaving the contenders so machine noise hits them
alike (see docs/continuous.md):

1. backfill records/s of the durable worker (``jellyfish serve``, Postgres
   ledger) and of ``bench/baseline.py`` (no ledger), single-record and batch
   (500) targets, at 100,000 and 1,000,000 records; the ratio durable/baseline;
2. continuous latency, from a record becoming visible at the source to its
   receipt at the target, p50/p95/p99 at 200 and 2,000 offered records/s;
3. the worker's peak RSS, CPU seconds per 1,000 records, ledger rows and
   bytes per record, and its CPU per idle second (one idle cycle a second);
4. where the machine's CPU goes: CPU seconds per 1,000 records of Postgres
   and of the whole machine (apps included) for each contender. With every
   core busy, the ratio of machine CPU per record bounds the throughput ratio.

    .venv/bin/python bench/continuous_bench.py --quick      # ~3 minutes
    .venv/bin/python bench/continuous_bench.py              # full, ~25 minutes
    .venv/bin/python bench/continuous_bench.py --ledger sqlite:///x.db

Writes bench/results/continuous.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from continuous_procs import (  # noqa: E402
    ROOT,
    VENV_BIN,
    BenchError,
    Proc,
    drop_ledger,
    fresh_ledger,
    ledger_figures,
    machine_busy_s,
    postgres_cpu_s,
    run_measured,
    start_prefect_server,
)

RESULTS = ROOT / "bench" / "results" / "continuous.json"
SHARDS = 2
PARTITIONS = 2
PAGE_SIZE = 1000
# Requests in flight per partition loop; the baseline gets the same total.
PUSH = {
    "single": {"batch_size": 1, "concurrency": 32, "path": "/records"},
    "batch": {"batch_size": 500, "concurrency": 4, "path": "/records/batch"},
}


@dataclass
class Bench:
    """The running apps, the Prefect server and where everything goes."""

    args: argparse.Namespace
    source: str
    target: str
    env: dict[str, str]
    scratch: Path
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))
    runs: int = 0

    def release(self, count: int, rate: float = 0.0) -> None:
        self.http.post(
            f"{self.source}/admin/release", params={"count": count, "rate": rate}
        ).raise_for_status()

    def source_stats(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.source}/admin/stats").json())

    def target_stats(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.target}/stats").json())

    def reset_target(self) -> None:
        self.http.post(f"{self.target}/admin/reset").raise_for_status()

    def wait_received(self, count: int, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats = self.target_stats()
            if stats["distinct"] >= count:
                return stats
            time.sleep(0.2)
        raise BenchError(f"the target had {stats['distinct']} of {count} records")

    def job_file(self, run: str, push: str) -> Path:
        target = PUSH[push]
        spec = {
            "name": run,
            "source": {
                "url": f"{self.source}/flights",
                "records_path": "data",
                "key": ["id"],
                "cursor": ["updated_at:timestamp", "id:integer"],
                "pagination": {
                    "kind": "keyset",
                    "params": {"after_updated_at": "updated_at", "after_id": "id"},
                    "page_size": PAGE_SIZE,
                },
                "shards": [
                    {"name": f"p{k}", "params": {"part": k, "parts": SHARDS}}
                    for k in range(SHARDS)
                ],
            },
            "targets": [
                {
                    "name": "bench",
                    "url": self.target + str(target["path"]),
                    "batch_size": target["batch_size"],
                    "concurrency": target["concurrency"],
                }
            ],
            "delivery": {"partitions": PARTITIONS, "claim_size": 2000},
        }
        path = self.scratch / f"{run}.yaml"
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        return path

    @contextmanager
    def worker(self, push: str, window_s: float) -> Iterator[tuple[Proc, str]]:
        """A ``jellyfish serve`` worker on a fresh ledger, already polling."""
        self.runs += 1
        run = f"bench-{self.runs}"
        ledger = fresh_ledger(self.args.ledger, self.scratch, run)
        command = [
            str(VENV_BIN / "jellyfish"),
            "serve",
            str(self.job_file(run, push)),
            "--ledger",
            ledger,
            "--interval-s",
            str(self.args.interval_s),
            "--window-s",
            str(window_s),
        ]
        proc = Proc.start(f"worker-{run}", command, self.scratch, self.env)
        try:
            self._wait_polling(proc)
            yield proc, ledger
        finally:
            proc.stop()
            if not self.args.keep_ledgers:
                drop_ledger(ledger)

    def _wait_polling(self, proc: Proc) -> None:
        before = self.source_stats()["requests"]
        deadline = time.monotonic() + 120
        while self.source_stats()["requests"] < before + 2 * SHARDS:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the worker did not start polling: {proc.tail()}")
            time.sleep(0.2)
        time.sleep(1.0)


def durable_backfill(bench: Bench, records: int, push: str) -> dict[str, Any]:
    bench.reset_target()
    bench.release(0)
    with bench.worker(push, window_s=3600) as (worker, ledger):
        cpu_before = worker.cpu_s()
        machine_before, postgres_before = machine_busy_s(), postgres_cpu_s()
        bench.release(records)
        stats = bench.wait_received(records, timeout_s=60 + records / 300)
        cpu = worker.cpu_s() - cpu_before
        machine = machine_busy_s() - machine_before
        postgres = postgres_cpu_s() - postgres_before
        source = bench.source_stats()
        time.sleep(2.0)
        idle = idle_cost(bench, worker)
        rss = worker.peak_rss_mb()
        exit_code, stop_s = worker.stop()
        figures = ledger_figures(ledger, records)
    seconds = stats["last_at"] - source["first_data_at"]
    return {
        "contender": "durable",
        "records": records,
        "push": push,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "duplicates": stats["duplicates"],
        "worker_peak_rss_mb": round(rss, 1),
        "worker_cpu_s_per_1k": round(cpu / records * 1000, 4),
        "worker_cpu_share": round(cpu / seconds, 2),
        "postgres_cpu_s_per_1k": round(postgres / records * 1000, 4),
        "machine_cpu_s_per_1k": round(machine / records * 1000, 4),
        "idle_cpu_ms_per_s": idle["cpu_ms_per_s"],
        "idle_polls_per_s": idle["polls_per_s"],
        "stop_exit_code": exit_code,
        "stop_seconds": round(stop_s, 2),
        "ledger": figures,
    }


def idle_cost(bench: Bench, worker: Proc) -> dict[str, float]:
    """Worker CPU per second while nothing is new anywhere."""
    seconds = bench.args.idle_s
    polls, cpu = bench.source_stats()["requests"], worker.cpu_s()
    time.sleep(seconds)
    polls = bench.source_stats()["requests"] - polls
    return {
        "cpu_ms_per_s": round((worker.cpu_s() - cpu) / seconds * 1000, 1),
        "polls_per_s": round(polls / seconds, 2),
    }


def baseline_backfill(bench: Bench, records: int, push: str) -> dict[str, Any]:
    bench.reset_target()
    bench.release(records)
    target = PUSH[push]
    command = [
        sys.executable,
        str(ROOT / "bench" / "baseline.py"),
        "--source",
        bench.source,
        "--target",
        bench.target,
        "--shards",
        str(SHARDS),
        "--page-size",
        str(PAGE_SIZE),
        "--batch-size",
        str(target["batch_size"]),
        "--concurrency",
        str(int(target["concurrency"]) * PARTITIONS),
    ]
    machine_before = machine_busy_s()
    code, out, cpu, rss = run_measured(
        command, bench.env, 60 + records / 300, bench.scratch
    )
    machine = machine_busy_s() - machine_before
    if code != 0:
        raise BenchError(f"the baseline failed ({code}): {out[-500:]}")
    stats = bench.target_stats()
    source = bench.source_stats()
    seconds = stats["last_at"] - source["first_data_at"]
    return {
        "contender": "baseline",
        "records": records,
        "push": push,
        "seconds": round(seconds, 2),
        "records_per_s": round(stats["distinct"] / seconds),
        "delivered": stats["distinct"],
        "duplicates": stats["duplicates"],
        "peak_rss_mb": round(rss, 1),
        "cpu_s_per_1k": round(cpu / records * 1000, 4),
        "machine_cpu_s_per_1k": round(machine / records * 1000, 4),
    }


def latency(bench: Bench, rate: float, push: str) -> dict[str, Any]:
    """Offer ``rate`` records/s for a while; seconds from visible to received."""
    count = int(rate * bench.args.latency_s)
    bench.reset_target()
    bench.release(0)
    with bench.worker(push, window_s=bench.args.window_s) as (worker, _):
        cpu_before = worker.cpu_s()
        bench.release(count, rate)
        stats = bench.wait_received(count, timeout_s=bench.args.latency_s + 120)
        cpu = worker.cpu_s() - cpu_before
        lag = bench.http.get(f"{bench.target}/latency").json()
        rss = worker.peak_rss_mb()
    return {
        "offered_per_s": rate,
        "push": push,
        "records": count,
        "duplicates": stats["duplicates"],
        **{k: round(v, 3) for k, v in lag.items() if k != "count"},
        "worker_cpu_s_per_1k": round(cpu / count * 1000, 4),
        "worker_peak_rss_mb": round(rss, 1),
    }


def schedule(args: argparse.Namespace) -> list[tuple[int, str, str]]:
    """Backfill runs, interleaved: each round alternates who goes first."""
    runs: list[tuple[int, str, str]] = []
    for records in args.records:
        rounds = args.rounds if records <= 200_000 else args.big_rounds
        for round_no in range(rounds):
            for push in args.push:
                pair = ["durable", "baseline"]
                runs += [(records, push, c) for c in pair[:: 1 - 2 * (round_no % 2)]]
    return runs


def summarize(backfills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["records"], r["push"]) for r in backfills})
    for records, push in keys:
        mine = [r for r in backfills if (r["records"], r["push"]) == (records, push)]
        durable = [r for r in mine if r["contender"] == "durable"]
        baseline = [r for r in mine if r["contender"] == "baseline"]

        def median(runs: list[dict[str, Any]], key: str) -> float:
            return statistics.median(float(r[key]) for r in runs)

        rows.append(
            {
                "records": records,
                "push": push,
                "runs": len(durable),
                "durable_rec_s": round(median(durable, "records_per_s")),
                "baseline_rec_s": round(median(baseline, "records_per_s")),
                "ratio": round(
                    median(durable, "records_per_s")
                    / median(baseline, "records_per_s"),
                    2,
                ),
                "worker_peak_rss_mb": round(median(durable, "worker_peak_rss_mb")),
                "worker_cpu_s_per_1k": round(median(durable, "worker_cpu_s_per_1k"), 3),
                "postgres_cpu_s_per_1k": round(
                    median(durable, "postgres_cpu_s_per_1k"), 3
                ),
                "machine_cpu_s_per_1k": round(
                    median(durable, "machine_cpu_s_per_1k"), 3
                ),
                "baseline_machine_cpu_s_per_1k": round(
                    median(baseline, "machine_cpu_s_per_1k"), 3
                ),
                "ledger_rows_per_record": durable[0]["ledger"]["rows_per_record"],
                "ledger_bytes_per_record": durable[0]["ledger"]["bytes_per_record"],
                "idle_cpu_ms_per_s": round(median(durable, "idle_cpu_ms_per_s")),
                "duplicates": max(r["duplicates"] for r in mine),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 minutes")
    parser.add_argument(
        "--ledger",
        default="postgresql://postgres@127.0.0.1:5432/jellyfish",
        help="Postgres URL (runs use the database <name>_bench) or sqlite:///...",
    )
    parser.add_argument("--records", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--big-rounds", type=int, default=1)
    parser.add_argument(
        "--push", nargs="+", default=list(PUSH), choices=list(PUSH), help="backfills"
    )
    parser.add_argument("--rates", type=float, nargs="*", default=[200, 2000])
    parser.add_argument(
        "--latency-push", nargs="+", default=["single", "batch"], choices=list(PUSH)
    )
    parser.add_argument("--latency-s", type=float, default=None)
    parser.add_argument("--idle-s", type=float, default=None)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--window-s", type=float, default=300.0)
    parser.add_argument("--keep-ledgers", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    args.records = args.records or ([100_000] if quick else [100_000, 1_000_000])
    args.rounds = args.rounds or (1 if quick else 2)
    args.latency_s = args.latency_s or (10.0 if quick else 60.0)
    args.idle_s = args.idle_s or (5.0 if quick else 10.0)
    return args


def start_apps(
    stack: ExitStack, scratch: Path, env: dict[str, str]
) -> tuple[str, str, str]:
    apps = str(ROOT / "bench" / "backfill_apps.py")
    source = Proc.start("source", [sys.executable, apps, "source"], scratch, env)
    stack.callback(source.stop)
    target = Proc.start("target", [sys.executable, apps, "target"], scratch, env)
    stack.callback(target.stop)
    home = scratch / "prefect-home"
    home.mkdir()
    server, api = start_prefect_server(home, scratch, env)
    stack.callback(server.stop)
    return source.wait_listening(), target.wait_listening(), api


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        source, target, api = start_apps(stack, scratch, env)
        env = {**env, "PREFECT_API_URL": api, "PREFECT_HOME": str(scratch / "ph")}
        bench = Bench(args, source, target, env, scratch)
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)  # noqa: E731
        backfills = []
        for records, push, contender in schedule(args):
            run = durable_backfill if contender == "durable" else baseline_backfill
            result = run(bench, records, push)
            log(f"backfill {contender} {push} {records}: {result['records_per_s']}/s")
            backfills.append(result)
        latencies = []
        for push in args.latency_push:
            for rate in args.rates:
                result = latency(bench, rate, push)
                log(f"latency {push} {rate}/s: p50={result['p50']} p99={result['p99']}")
                latencies.append(result)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "mode": "quick" if args.quick else "full",
        "ledger": args.ledger.split("@")[-1],
        "seconds": round(time.perf_counter() - started),
        "summary": summarize(backfills),
        "latency": latencies,
        "backfill_runs": backfills,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"{report['date']} {report['machine']}, ledger {report['ledger']}")
    print(markdown(report["summary"]))
    print()
    print(markdown(latencies))


if __name__ == "__main__":
    main()

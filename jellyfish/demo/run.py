"""The demo: real flights from the demo source to the demo target, through a pass.

The figures that matter, lost and duplicate records, are counted by the
target itself against the source's own digest, not taken from the ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy.orm import Session

from blocks.ledger import resolve_ledger
from jellyfish.demo.servers import start_demo_servers
from jellyfish.job import load_job
from jellyfish.passes import run_pass
from ledger.engine import get_engine, ledger_url, redact
from ledger.store import forget_job

DEMO_JOB = "flights-demo"
DEMO_DIR = Path(".jellyfish/demo")


@dataclass(frozen=True)
class DemoOptions:
    records: int | None
    push: str
    ledger: str | None
    show_progress: bool


def demo_job(source_url: str, target_url: str, push: str) -> dict[str, Any]:
    """The demo job: three shards by origin airport, one target."""
    single = {
        "name": "warehouse",
        "url": f"{target_url}/records",
        "concurrency": 32,
    }
    batch = {
        "name": "warehouse",
        "url": f"{target_url}/records/batch",
        "batch_size": 500,
        "concurrency": 4,
    }
    return {
        "name": DEMO_JOB,
        "source": {
            "url": f"{source_url}/flights",
            "records_path": "data",
            "key": ["id"],
            "cursor": ["updated_at:timestamp", "id:integer"],
            "pagination": {
                "kind": "keyset",
                "params": {"after_updated_at": "updated_at", "after_id": "id"},
                "page_size": 1000,
            },
            "shards": [
                {"name": origin.lower(), "params": {"origin": origin}}
                for origin in ("EWR", "JFK", "LGA")
            ],
        },
        "targets": [single if push == "single" else batch],
        "delivery": {"partitions": 2, "claim_size": 2000},
    }


def target_tally(source_url: str, target_url: str) -> dict[str, int]:
    """Lost and duplicate records, as the target counts them against the source."""
    with httpx.Client(timeout=120) as http:
        digest = http.get(f"{source_url}/admin/digest").json()["hashes"]
        received = http.get(f"{target_url}/received").json()
        stats = http.get(f"{target_url}/stats").json()
    lost = sum(1 for key, content in digest.items() if received.get(key) != content)
    return {
        "source_records": len(digest),
        "target_records": int(stats["distinct_keys"]),
        "lost": lost,
        "duplicates": int(stats["duplicates"]),
    }


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Start the demo apps, run one pass of the demo job, and report figures."""
    url = ledger_url(resolve_ledger(options.ledger))
    clock = time.perf_counter()
    with start_demo_servers(options.records) as servers:
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        job_file = DEMO_DIR / f"{DEMO_JOB}.yaml"
        spec = demo_job(servers.source_url, servers.target_url, options.push)
        job_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        job = load_job(job_file)
        with Session(get_engine(url)) as session, session.begin():
            forget_job(session, job.name)
        outcome = run_pass(job, job_file, url, options.show_progress)
        tally = target_tally(servers.source_url, servers.target_url)
    summary = outcome.summary
    sync_s = summary.seconds
    return {
        **tally,
        "delivered": summary.total("delivered"),
        "dead": summary.total("dead"),
        "pending": summary.total("pending"),
        "state": outcome.state,
        "push": options.push,
        "ledger": redact(url),
        "sync_seconds": round(sync_s, 2),
        "records_per_second": round(summary.total("delivered") / sync_s)
        if sync_s
        else 0,
        "seconds": round(time.perf_counter() - clock, 2),
    }

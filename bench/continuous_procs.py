"""Processes and measurements for the continuous-mode bench.

Each contender runs in its own process so its CPU time and peak memory can be
read from ``/proc`` (Linux only); the apps run in processes of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A bench step did not happen in time; the message says which."""


@dataclass
class Proc:
    """A child process with its output in files; stopped by its own pid."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @classmethod
    def start(
        cls, name: str, command: Sequence[str], log_dir: Path, env: dict[str, str]
    ) -> Proc:
        stdout, stderr = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            popen = subprocess.Popen(
                list(command), stdout=out, stderr=err, env=env, cwd=ROOT
            )
        return cls(name, popen, stdout, stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_listening(self, timeout_s: float = 120.0) -> str:
        """The URL of the ``listening http://...`` first line of stdout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            first = self.stdout.read_text(errors="replace").split("\n", 1)
            if len(first) == 2 and first[0].startswith("listening "):
                return first[0].split()[1]
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not start: {self.tail()}")

    def cpu_s(self) -> float:
        """User plus system CPU seconds of the process so far (all threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout_s: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM, then wait; kill if it does not exit. (exit code, seconds)."""
        clock = time.perf_counter()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                return None, time.perf_counter() - clock
        return self.popen.returncode, time.perf_counter() - clock

    def tail(self, chars: int = 3000) -> str:
        return self.stderr.read_text(errors="replace")[-chars:]


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idling and waiting, so far."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def postgres_cpu_s() -> float:
    """CPU seconds of the Postgres processes alive now (server and backends).

    A backend that exits between two readings takes its seconds with it; the
    bench reads while the worker's pooled connections are still open.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def run_measured(
    command: Sequence[str], env: dict[str, str], timeout_s: float, log_dir: Path
) -> tuple[int, str, float, float]:
    """Run to the end: (exit code, stdout, CPU seconds, peak RSS in MB)."""
    out_path, err_path = log_dir / "measured.stdout", log_dir / "measured.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(
            list(command), stdout=out, stderr=err, env=env, cwd=ROOT
        )
    deadline = time.monotonic() + timeout_s
    while True:
        # wait4, not Popen.poll: it reaps the child and hands back its usage.
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            popen.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            text_out = out_path.read_text(errors="replace")
            if popen.returncode:
                text_out += err_path.read_text(errors="replace")[-2000:]
            return popen.returncode, text_out, cpu, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            popen.kill()
            raise BenchError(f"{command[1]} ran longer than {timeout_s:.0f} s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_prefect_server(
    home: Path, log_dir: Path, env: dict[str, str]
) -> tuple[Proc, str]:
    """A Prefect server of the bench's own and its API URL; workers report to it."""
    port = free_port()
    server_env = {**env, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false"}
    command = [
        str(VENV_BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = Proc.start("prefect-server", command, log_dir, server_env)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{api}/health").status_code == 200:
                    return proc, api
            except httpx.TransportError:
                pass
            if proc.popen.poll() is not None:
                break
            time.sleep(0.25)
    proc.stop()
    raise BenchError(f"the Prefect server did not start: {proc.tail()}")


def fresh_ledger(base_url: str, scratch: Path, run: str) -> str:
    """An empty ledger for one run, so its size is that run's alone.

    Postgres: the database ``<name>_bench`` beside the given one, dropped and
    created again. SQLite: a new file in the scratch directory.
    """
    url = make_url(base_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{scratch / f'{run}.db'}"
    bench_db = f"{url.database}_bench"
    admin = create_engine(
        url.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{bench_db}"'))
    admin.dispose()
    return url.set(database=bench_db).render_as_string(hide_password=False)


def drop_ledger(url_text: str) -> None:
    url = make_url(url_text)
    if url.get_backend_name() == "sqlite":
        return
    admin = create_engine(
        url.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(
            text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        )
    admin.dispose()


_TABLES = ("pages", "record_versions", "deliveries", "attempts", "cursors")


def ledger_figures(url_text: str, records: int) -> dict[str, Any]:
    """Rows and bytes of the (fresh) ledger per record the run delivered."""
    url = make_url(url_text)
    is_sqlite = url.get_backend_name() == "sqlite"
    engine = create_engine(
        url if is_sqlite else url.set(drivername="postgresql+psycopg")
    )
    with engine.connect() as connection:
        rows = {
            t: int(connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in _TABLES
        }
        if is_sqlite:
            path = Path(str(url.database))
            size = sum(
                p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()
            )
        else:
            size = int(
                connection.execute(
                    text(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
                    )
                ).scalar_one()
            )
    engine.dispose()
    return {
        "rows": rows,
        "rows_per_record": round(sum(rows.values()) / records, 3),
        "bytes": size,
        "bytes_per_record": round(size / records),
    }

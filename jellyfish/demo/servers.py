"""Run the demo apps on loopback: in a thread for tests, in subprocesses for demos.

A thread is enough for tests over a few records. The demo over all flights
runs the source and the target each in its own process, so serving pages and
receiving records do not compete with the sync for one interpreter lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from ledger.errors import JellyFishError

logger = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_S = 60.0
_THREAD_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.05
_STDERR_TAIL_CHARS = 2000
_PR_SET_PDEATHSIG = 1
_LISTENING = re.compile(r"^listening (http://\S+)$")


class DemoServerError(JellyFishError):
    """A demo app did not come up; ``app`` names which one."""

    def __init__(self, message: str, app: str) -> None:
        super().__init__(message)
        self.app = app

    def __reduce__(self) -> tuple[type[DemoServerError], tuple[str, str]]:  # type: ignore[override]
        return (type(self), (self.message, self.app))


@dataclass(frozen=True)
class DemoServers:
    """Where the running demo apps listen."""

    source_url: str
    target_url: str


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Bind a TCP socket for uvicorn; port 0 lets the system pick a free one.

    Binding before uvicorn starts means the port is known (and held) at once,
    with no window in which another process could take it.
    """
    # An explicit IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted
    # connections only when the listening socket says so, and without it each
    # response waits ~40 ms for a delayed ACK (headers and body are two writes).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def build_server(app: ASGIApp) -> uvicorn.Server:
    """A quiet uvicorn server: warnings only, no access log, lifespan or websockets."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
    )
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free loopback port from a daemon thread.

    Args:
        app: The ASGI app, such as :func:`~jellyfish.demo.source_app.build_source_app`
            returns.
        host: The IPv4 address to listen on.

    Yields:
        The base URL, such as ``"http://127.0.0.1:54321"``.

    Raises:
        DemoServerError: The server did not start within 10 seconds.
    """
    sock = bind_socket(host)
    port: int = sock.getsockname()[1]
    server = build_server(app)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"demo-server-{port}",
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + _THREAD_START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise DemoServerError(
                    f"the demo server on port {port} did not start within "
                    f"{_THREAD_START_TIMEOUT_S:.0f} s; see the uvicorn log above",
                    app="thread",
                )
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_STOP_TIMEOUT_S)
        sock.close()


@contextmanager
def start_demo_servers(
    records: int | None, timeout_s: float = DEFAULT_START_TIMEOUT_S
) -> Iterator[DemoServers]:
    """Start the demo source and target, each in its own subprocess.

    Args:
        records: How many flights the source serves; ``None`` serves all.
        timeout_s: How long each app may take to answer ``GET /health``.

    Yields:
        The base URLs of both apps; both are stopped when the block exits.

    Raises:
        DemoServerError: An app exited or did not answer in time; the message
            names it and ends with its stderr tail.
    """
    with (
        tempfile.TemporaryDirectory(prefix="jellyfish-demo-") as log_dir,
        ExitStack() as stack,
    ):
        source = stack.enter_context(
            _ServerProcess.start(
                "source",
                ["--records", "all" if records is None else str(records)],
                Path(log_dir),
            )
        )
        target = stack.enter_context(_ServerProcess.start("target", [], Path(log_dir)))

        # Both started before either is awaited: the source's load overlaps.
        deadline = time.monotonic() + timeout_s
        servers = DemoServers(
            source_url=source.wait_ready(deadline, timeout_s),
            target_url=target.wait_ready(deadline, timeout_s),
        )
        logger.info(
            "demo servers ready source=%s target=%s records=%s",
            servers.source_url,
            servers.target_url,
            "all" if records is None else records,
        )
        yield servers


def _die_with_parent() -> None:
    """Ask Linux to stop the child when its parent dies, even by SIGKILL.

    Without this, a demo killed from outside leaves its servers running.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _ServerProcess:
    """One ``python -m jellyfish.demo.serve`` child, its output kept in files."""

    def __init__(self, app: str, process: subprocess.Popen[bytes], log_dir: Path):
        self.app = app
        self.process = process
        self.stdout_path = log_dir / f"{app}.stdout"
        self.stderr_path = log_dir / f"{app}.stderr"

    @classmethod
    @contextmanager
    def start(
        cls, app: str, args: Sequence[str], log_dir: Path
    ) -> Iterator[_ServerProcess]:
        """Launch the child and stop it when the block exits."""
        # Files, not pipes: a child that logs a lot can never block on a full
        # pipe, and the parent reads them only to learn the URL or show errors.
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (package_root, env.get("PYTHONPATH")) if part
        )
        command = [sys.executable, "-m", "jellyfish.demo.serve", app, *args]
        command += ["--port", "0"]
        with (
            open(log_dir / f"{app}.stdout", "wb") as stdout,
            open(log_dir / f"{app}.stderr", "wb") as stderr,
        ):
            process = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                env=env,
                preexec_fn=_die_with_parent,
            )
        child = cls(app, process, log_dir)
        try:
            yield child
        finally:
            child.stop()

    def wait_ready(self, deadline: float, timeout_s: float) -> str:
        """Wait for the ``listening`` line, then for ``GET /health``; return the URL."""
        url = None
        with httpx.Client(timeout=2.0) as client:
            while True:
                if url is None:
                    url = self._listening_url()
                if url is not None and self._is_healthy(client, url):
                    return url
                exit_code = self.process.poll()
                if exit_code is not None:
                    raise self._error(f"exited with code {exit_code} before it was up")
                if time.monotonic() > deadline:
                    raise self._error(
                        f"did not answer GET /health within {timeout_s} s"
                    )
                time.sleep(_POLL_INTERVAL_S)

    def stop(self) -> None:
        """Ask the child to stop, and kill it if it does not."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("demo %s ignored SIGTERM; killing it", self.app)
                self.process.kill()
                self.process.wait()

    def _listening_url(self) -> str | None:
        text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        if "\n" not in text:
            return None
        match = _LISTENING.match(text.split("\n", 1)[0].strip())
        return match.group(1) if match else None

    @staticmethod
    def _is_healthy(client: httpx.Client, url: str) -> bool:
        try:
            response = client.get(f"{url}/health")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _error(self, what: str) -> DemoServerError:
        tail = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        tail = tail[-_STDERR_TAIL_CHARS:].strip() or "(empty)"
        return DemoServerError(
            f"the demo {self.app} {what}; its stderr ends with:\n{tail}", app=self.app
        )

"""What the loops of one continuous-mode window share, and how they are stopped.

``STOP`` is process-wide: SIGTERM, SIGINT or ``request_stop`` set it, and every
window of the process ends after the page or batch in hand. A ``ServeWindow``
holds its end time, the doorbell that wakes partition loops when a page is
staged, and each loop's live counters. No Prefect imports: plain threading.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class StopSwitch:
    """Asks every serve loop of this process to finish its batch and stop.

    Safe to call from a signal handler: ``request`` takes no lock.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._listeners: list[Callable[[], None]] = []

    def request(self) -> None:
        """Ask the loops to stop; the windows that listen are woken at once."""
        self._event.set()
        for listener in list(self._listeners):
            listener()

    def clear(self) -> None:
        """Let windows run again, e.g. before a new ``jellyfish serve``."""
        self._event.clear()

    @property
    def is_requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True when a stop came meanwhile."""
        return self._event.wait(max(timeout_s, 0.0))

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


STOP = StopSwitch()


def request_stop() -> None:
    """Ask this process's serve loops to finish their batch and stop."""
    STOP.request()


class Doorbell:
    """Wakes the partition loops of a window when a page was staged.

    Each partition loop runs its own event loop in its own thread; ringing
    hands the wake-up to each of them thread-safely. The list of waiters is
    replaced, never changed in place, so ``ring`` needs no lock and a signal
    handler may ring.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def register(self) -> asyncio.Event:
        """An event of the running loop that each ring sets."""
        bell = asyncio.Event()
        with self._lock:
            self._waiters = [*self._waiters, (asyncio.get_running_loop(), bell)]
        return bell

    def unregister(self, bell: asyncio.Event) -> None:
        with self._lock:
            self._waiters = [(lp, b) for lp, b in self._waiters if b is not bell]

    def ring(self) -> None:
        for loop, bell in self._waiters:
            try:
                loop.call_soon_threadsafe(bell.set)
            except RuntimeError:
                # That loop closed between our copy and the call: nothing to wake.
                continue


@dataclass
class LoopTally:
    """Live counters of one loop, kept by the window so a crash keeps them."""

    kind: str
    name: str
    polls: int = 0
    idle_polls: int = 0
    pages: int = 0
    fetched: int = 0
    staged: int = 0
    batches: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: int = 0
    conflicts: int = 0
    released: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class LoopFigures:
    """What one loop did in one window."""

    kind: str
    name: str
    polls: int
    idle_polls: int
    pages: int
    fetched: int
    staged: int
    batches: int
    delivered: int
    retried: int
    dead: int
    errors: int
    conflicts: int
    released: int
    last_error: str | None


class ServeWindow:
    """What the loops of one window share: its end, its doorbell, its tallies."""

    def __init__(self, window_s: float, interval_s: float) -> None:
        self.interval_s = interval_s
        self.deadline = time.monotonic() + window_s
        self.doorbell = Doorbell()
        self.tallies: dict[str, LoopTally] = {}
        self._ended = threading.Event()

    @property
    def is_over(self) -> bool:
        """The window's time is up, a stop was requested, or a loop crashed."""
        return (
            STOP.is_requested
            or self._ended.is_set()
            or time.monotonic() >= self.deadline
        )

    @property
    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def end(self) -> None:
        """End the window early for every loop (e.g. one of them crashed)."""
        self._ended.set()
        self.doorbell.ring()

    def tally(self, kind: str, name: str) -> LoopTally:
        tally = LoopTally(kind, name)
        self.tallies[f"{kind}/{name}"] = tally
        return tally

    def figures(self) -> list[LoopFigures]:
        return [
            LoopFigures(**dataclasses.asdict(t))
            for t in sorted(self.tallies.values(), key=lambda t: (t.kind, t.name))
        ]

    def sleep(self, timeout_s: float) -> None:
        """Sleep in a shard loop until ``timeout_s`` passes or the window ends."""
        timeout_s = min(timeout_s, self.remaining_s)
        if timeout_s > 0 and not self._ended.is_set():
            STOP.wait(timeout_s)

    async def nap(self, bell: asyncio.Event, timeout_s: float) -> None:
        """Sleep in a partition loop until the doorbell rings or time passes."""
        timeout_s = min(timeout_s, self.remaining_s)
        if timeout_s <= 0 or self.is_over:
            return
        try:
            await asyncio.wait_for(bell.wait(), timeout_s)
        except TimeoutError:
            return


@contextmanager
def open_window(window_s: float, interval_s: float) -> Iterator[ServeWindow]:
    """A window whose loops are woken at once when a stop is requested."""
    window = ServeWindow(window_s, interval_s)
    STOP.subscribe(window.doorbell.ring)
    try:
        yield window
    finally:
        STOP.unsubscribe(window.doorbell.ring)

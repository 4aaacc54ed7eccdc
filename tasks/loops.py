"""The long-running loops of continuous mode: one per shard, one per partition.

A window of ``serve-job`` starts one ``follow-shard`` task per shard and one
``serve-partition`` task per target x partition; each lives until the window
ends or a stop is requested, so polling never creates Prefect task runs.

    follow-shard     poll the source every interval_s; a full page is followed
                     at once by the next; each staged page rings the doorbell
    serve-partition  push due deliveries; sleep until the doorbell rings or
                     interval_s passes (retries fall due without a ring)

A stop (SIGTERM, SIGINT, or ``request_stop``) lets each loop finish the page or
batch in hand; the partition loops then hand back their leases.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from jellyfish.job import Job, TargetSpec
from jellyfish.source.client import SourceClient
from jellyfish.source.cursor import CursorState
from jellyfish.target.client import TargetClient
from ledger.engine import get_engine
from ledger.errors import CursorMovedError, LedgerError, SourceError
from ledger.types import StageResult
from tasks.deliver import Logger, PartitionPusher
from tasks.fetch import open_reader

# A failing shard or ledger waits interval_s, doubled per failure up to this.
MAX_BACKOFF_S = 60.0


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


def _backoff_s(interval_s: float, failures: int) -> float:
    return min(interval_s * 2.0 ** min(failures, 10), MAX_BACKOFF_S)


@task(name="follow-shard", cache_policy=NONE)
def follow_shard(job: Job, shard: str, ledger_url: str, window: ServeWindow) -> None:
    """Poll one shard for the whole window, staging each page as it comes.

    A poll that ends on a full page asks for the next one at once; a poll
    that finds nothing writes nothing. A failed poll is logged and retried at
    the next interval, doubled per failure (at most 60 s).

    Args:
        job: the job definition.
        shard: name of one of the job's source shards.
        ledger_url: where the ledger lives.
        window: the window this loop belongs to; its figures go there.

    Raises:
        Exception: whatever the loop did not expect; the window ends early.
    """
    logger = get_run_logger()
    tally = window.tally("shard", shard)
    try:
        _follow(job, shard, ledger_url, window, tally, logger)
    except BaseException:
        window.end()
        raise


def _follow(
    job: Job,
    shard: str,
    ledger_url: str,
    window: ServeWindow,
    tally: LoopTally,
    logger: Logger,
) -> None:
    def staged(result: StageResult) -> None:
        if result.deliveries_created:
            window.doorbell.ring()

    engine = get_engine(ledger_url)
    failures = 0
    with SourceClient.open_http(job) as http:
        reader = open_reader(job, shard, engine, http)
        logger.info(
            "job=%s shard=%s follows from %s interval_s=%g",
            job.name,
            shard,
            CursorState.from_json(reader.saved).describe(),
            window.interval_s,
        )
        while not window.is_over:
            started = time.monotonic()
            tally.polls += 1
            try:
                done = reader.read_pass(
                    logger,
                    keep_empty_pages=False,
                    should_stop=lambda: window.is_over,
                    on_staged=staged,
                )
            except (SourceError, LedgerError) as exc:
                failures += 1
                _count_failure(tally, exc, logger, job.name, shard, window, failures)
                if isinstance(exc, CursorMovedError):
                    reader.reload()
                window.sleep(_backoff_s(window.interval_s, failures))
                continue
            failures = 0
            tally.pages += done.pages
            tally.fetched += done.fetched
            tally.staged += done.staged
            tally.idle_polls += done.pages == 0
            window.sleep(window.interval_s - (time.monotonic() - started))


def _count_failure(
    tally: LoopTally,
    exc: Exception,
    logger: Logger,
    job: str,
    name: str,
    window: ServeWindow,
    failures: int,
) -> None:
    tally.errors += 1
    tally.last_error = str(exc)
    logger.warning(
        "job=%s loop=%s failed (%s: %s); trying again in %.1f s",
        job,
        name,
        type(exc).__name__,
        exc,
        _backoff_s(window.interval_s, failures),
    )


@task(name="serve-partition", cache_policy=NONE)
def serve_partition(
    job: Job, target: str, partition: int, ledger_url: str, window: ServeWindow
) -> None:
    """Push one partition's due deliveries for the whole window.

    The loop pushes batch after batch while any is due, then sleeps until a
    shard stages a page (the doorbell) or ``interval_s`` passes, so retries
    and deliveries staged by other workers are pushed when due. On a stop or
    at the window's end it finishes the batch in hand and hands back its
    leases.

    Args:
        job: the job definition.
        target: name of one of the job's targets.
        partition: which of the job's ``delivery.partitions`` this loop serves.
        ledger_url: where the ledger lives.
        window: the window this loop belongs to; its figures go there.

    Raises:
        Exception: whatever the loop did not expect; the window ends early and
            the leases in hand run out (their outcome is unknown).
    """
    logger = get_run_logger()
    tally = window.tally("target", f"{target}/{partition}")
    try:
        spec = job.target(target)
        asyncio.run(_serve(job, spec, partition, ledger_url, window, tally, logger))
    except BaseException:
        window.end()
        raise


async def _serve(
    job: Job,
    spec: TargetSpec,
    partition: int,
    ledger_url: str,
    window: ServeWindow,
    tally: LoopTally,
    logger: Logger,
) -> None:
    engine = get_engine(ledger_url)
    bell = window.doorbell.register()
    failures = 0
    try:
        async with TargetClient.open_http(spec) as http:
            client = TargetClient(job.name, spec, http)
            pusher = PartitionPusher(job, spec, partition, engine, client, logger)
            pusher.recover()
            while not window.is_over:
                bell.clear()
                tally.polls += 1
                try:
                    pushed = await pusher.push_batch()
                except LedgerError as exc:
                    failures += 1
                    name = f"{spec.name}/{partition}"
                    _count_failure(tally, exc, logger, job.name, name, window, failures)
                    await window.nap(bell, _backoff_s(window.interval_s, failures))
                    continue
                failures = 0
                _add_push(tally, pusher)
                if not pushed:
                    tally.idle_polls += 1
                    await window.nap(bell, window.interval_s)
            tally.released = pusher.release()
    finally:
        window.doorbell.unregister(bell)


def _add_push(tally: LoopTally, pusher: PartitionPusher) -> None:
    done = pusher.summary()
    tally.batches = done.batches
    tally.delivered = done.delivered
    tally.retried = done.retried
    tally.dead = done.dead

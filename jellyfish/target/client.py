"""Push claimed deliveries to one target and judge each answer.

One record goes as the JSON body, or ``batch_size`` records go as a JSON
array (optionally under ``batch_key``). Every request carries an
``Idempotency-Key`` that is the same on each attempt of the same record
version (or the same batch) to the same target.

    success:        2xx, and the success rule holds (e.g. {"code": "0"})
    retry later:    timeouts, connection errors, 5xx, transient 4xx,
                    a 2xx whose body fails the success rule
    dead at once:   any other 4xx
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from jellyfish.job import TargetSpec
from jellyfish.secrets import auth_headers, redact_text, secret_values
from jellyfish.source.paginators import lookup
from jellyfish.target.policy import is_exhausted, retry_delay_s
from ledger.schema import OUTCOME_DEAD, OUTCOME_DELIVERED, OUTCOME_RETRY
from ledger.types import AttemptResult, DueDelivery

EXCERPT_CHARS = 200
ERROR_CHARS = 500


@dataclass(frozen=True)
class _Verdict:
    outcome: str
    http_status: int | None = None
    error: str | None = None
    excerpt: str | None = None


def idempotency_key(job: str, target: str, record_key: str, content_hash: str) -> str:
    """The key a target can use to recognise a record version it already has."""
    text = f"{job}\x1f{target}\x1f{record_key}\x1f{content_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class TargetClient:
    """Sends deliveries to one target of one job."""

    def __init__(self, job: str, spec: TargetSpec, http: httpx.AsyncClient) -> None:
        self._job = job
        self._spec = spec
        self._http = http
        self._headers = {
            "Content-Type": "application/json",
            **spec.headers,
            **auth_headers(spec.auth),
        }
        self._secrets = secret_values(spec.auth)

    @classmethod
    def open_http(cls, spec: TargetSpec) -> httpx.AsyncClient:
        """The HTTP client for one push task; the caller closes it.

        aiohttp's transport spends a fraction of httpx's own per request,
        which is what bounds single-record targets on a small machine.
        """
        return httpx.AsyncClient(
            transport=AiohttpTransport(),
            timeout=spec.timeout_s,
            limits=httpx.Limits(max_connections=spec.concurrency),
        )

    async def push(self, due: Sequence[DueDelivery]) -> list[AttemptResult]:
        """Send ``due`` with at most ``concurrency`` requests in flight."""
        size = self._spec.batch_size
        groups = [list(due[i : i + size]) for i in range(0, len(due), size)]
        gate = asyncio.Semaphore(self._spec.concurrency)

        async def send(group: list[DueDelivery]) -> list[AttemptResult]:
            async with gate:
                return await self._send(group)

        answers = await asyncio.gather(*(send(group) for group in groups))
        return [result for answer in answers for result in answer]

    def _body(self, group: list[DueDelivery]) -> str:
        if self._spec.batch_size == 1:
            return group[0].payload
        array = "[" + ",".join(d.payload for d in group) + "]"
        if self._spec.batch_key is None:
            return array
        return "{" + json.dumps(self._spec.batch_key) + ":" + array + "}"

    def _key(self, group: list[DueDelivery]) -> str:
        keys = [
            idempotency_key(self._job, self._spec.name, d.record_key, d.content_hash)
            for d in group
        ]
        if len(keys) == 1:
            return keys[0]
        return hashlib.sha256("".join(keys).encode()).hexdigest()[:40]

    async def _send(self, group: list[DueDelivery]) -> list[AttemptResult]:
        started_at = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        headers = {**self._headers, "Idempotency-Key": self._key(group)}
        try:
            response = await self._http.request(
                self._spec.method,
                self._spec.url,
                content=self._body(group).encode(),
                headers=headers,
            )
            verdict = self._judge(response)
        except httpx.HTTPError as exc:
            verdict = self._transport_failure(exc)
        except aiohttp.ClientError as exc:
            # httpx_aiohttp lets some aiohttp errors through unmapped, such as
            # ClientResponseError for a malformed status line.
            verdict = _Verdict(
                OUTCOME_RETRY, error=f"invalid HTTP answer ({type(exc).__name__})"
            )
        duration_ms = (time.perf_counter() - clock) * 1000
        return [self._result(d, verdict, started_at, duration_ms) for d in group]

    def _transport_failure(self, exc: httpx.HTTPError) -> _Verdict:
        """Tell a timeout from a failed connection."""
        # httpx_aiohttp maps every aiohttp connection error, a refused
        # connection included, to httpx.ConnectTimeout; only the cause tells.
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError):
            timed_out, name = isinstance(cause, TimeoutError), type(cause).__name__
        else:
            timed_out = isinstance(exc, httpx.TimeoutException)
            name = type(exc).__name__
        if timed_out:
            return _Verdict(
                OUTCOME_RETRY, error=f"no answer within {self._spec.timeout_s:g} s"
            )
        return _Verdict(OUTCOME_RETRY, error=f"connection failed ({name})")

    def _judge(self, response: httpx.Response) -> _Verdict:
        status = response.status_code
        if 200 <= status < 300:
            failure = self._success_failure(response)
            if failure is None:
                return _Verdict(OUTCOME_DELIVERED, status)
            return _Verdict(OUTCOME_RETRY, status, failure, self._excerpt(response))
        transient = status >= 500 or status in self._spec.transient_statuses
        if transient or status < 400:
            return _Verdict(
                OUTCOME_RETRY, status, f"HTTP {status}", self._excerpt(response)
            )
        return _Verdict(
            OUTCOME_DEAD, status, f"HTTP {status} (permanent)", self._excerpt(response)
        )

    def _success_failure(self, response: httpx.Response) -> str | None:
        rule = self._spec.success
        if rule is None:
            return None
        try:
            body: Any = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content-type")
            return f"expected a JSON answer, got {kind}"
        value = lookup(body, rule.field)
        if value != rule.equals:
            return f"answer's {rule.field!r} is {value!r}, expected {rule.equals!r}"
        return None

    def _excerpt(self, response: httpx.Response) -> str:
        # Redact before cutting: a secret across the cut would leak its start.
        return redact_text(response.text, self._secrets)[:EXCERPT_CHARS]

    def _result(
        self,
        delivery: DueDelivery,
        verdict: _Verdict,
        started_at: dt.datetime,
        duration_ms: float,
    ) -> AttemptResult:
        attempt_no = delivery.attempts_before + 1
        outcome, error, next_at = verdict.outcome, verdict.error, None
        if outcome == OUTCOME_RETRY:
            policy = self._spec.retry
            if is_exhausted(policy, attempt_no):
                outcome = OUTCOME_DEAD
                error = f"gave up after {attempt_no} attempts; last: {error}"
            else:
                delay_s = retry_delay_s(policy, attempt_no)
                next_at = started_at + dt.timedelta(seconds=delay_s)
        return AttemptResult(
            delivery_id=delivery.delivery_id,
            attempt_no=attempt_no,
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=outcome,
            http_status=verdict.http_status,
            error=None
            if error is None
            else redact_text(error, self._secrets)[:ERROR_CHARS],
            response_excerpt=verdict.excerpt,
            next_attempt_at=next_at,
        )

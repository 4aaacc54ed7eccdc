"""Push claimed deliveries to one target and judge each answer.

One record goes as the JSON body, or ``batch_size`` records go as a JSON
array (optionally under ``batch_key``). Every request carries an
``Idempotency-Key`` that is the same on each attempt of the same record
version (or the same batch) to the same target, the record version id(s) so
the target can check order, and, with a ``signing_secret``, an HMAC signature
of the exact body bytes (see ``jellyfish.target.headers``).

    success:        2xx, and the success rule holds (e.g. {"code": "0"});
                    with ``item_results``, only the records the answer
                    reports as stored
    retry later:    timeouts, connection errors, 5xx, transient 4xx,
                    a 2xx whose body fails the success rule or the item
                    results (the whole batch, or just the refused records)
    dead at once:   any other 4xx

A retried answer's ``Retry-After`` can lengthen the policy's wait, up to the
policy's ``max_s``; it never shortens it.
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

from jellyfish.job import ItemResults, TargetSpec
from jellyfish.secrets import auth_headers, redact_text, resolve, secret_values
from jellyfish.source.paginators import lookup
from jellyfish.target import headers
from jellyfish.target.items import ItemResultsShapeError, read_item_results
from jellyfish.target.policy import is_exhausted, retry_wait_s
from jellyfish.target.retry_after import parse_retry_after
from jellyfish.target.signing import signature_headers
from ledger.errors import SecretNotFoundError
from ledger.schema import (
    OUTCOME_DEAD,
    OUTCOME_DELIVERED,
    OUTCOME_RETRY,
    OUTCOME_UNKNOWN,
)
from ledger.types import AttemptResult, DueDelivery

EXCERPT_CHARS = 200
ERROR_CHARS = 500


@dataclass(frozen=True)
class _Verdict:
    outcome: str
    http_status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    # The target's Retry-After as seconds from the attempt's start.
    asked_wait_s: float | None = None


@dataclass(frozen=True)
class _Answer:
    """A target's answer, read whole before the connection goes back to the pool."""

    status: int
    headers: Any  # aiohttp's case-insensitive CIMultiDictProxy
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Asked:
    """A Retry-After the client understood: the wait and the note for errors."""

    wait_s: float
    note: str


def idempotency_key(job: str, target: str, record_key: str, content_hash: str) -> str:
    """The key a target can use to recognise a record version it already has."""
    text = f"{job}\x1f{target}\x1f{record_key}\x1f{content_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class TargetClient:
    """Sends deliveries to one target of one job."""

    def __init__(self, job: str, spec: TargetSpec, http: aiohttp.ClientSession) -> None:
        self._job = job
        self._spec = spec
        self._http = http
        self._headers = {
            "Content-Type": "application/json",
            **spec.headers,
            **auth_headers(spec.auth),
        }
        self._signing_secret = self._resolve_signing_secret()
        self._secrets = secret_values(spec.auth)
        if self._signing_secret is not None:
            self._secrets.append(self._signing_secret)

    def _resolve_signing_secret(self) -> str | None:
        """The signing secret's value; ``None`` when requests go unsigned.

        Raises:
            SecretNotFoundError: The secret is missing, or empty: an empty
                key would sign requests that anyone can forge.
        """
        ref = self._spec.signing_secret
        if ref is None:
            return None
        secret = resolve(ref)
        if not secret:
            where = (
                f"environment variable {ref.env}" if ref.env else f"block {ref.block!r}"
            )
            raise SecretNotFoundError(
                f"job {self._job!r} target {self._spec.name!r}: the signing secret "
                f"in {where} is empty; set it to a long random value"
            )
        return secret

    @classmethod
    def open_http(cls, spec: TargetSpec) -> aiohttp.ClientSession:
        """The HTTP session for one push loop; the caller closes it.

        A bare aiohttp session: per request it costs about a third of the CPU
        of httpx over aiohttp's transport (bench/backfill_client_paths.py),
        and that CPU is what bounds a single-record target on a small machine.
        """
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=spec.concurrency),
            timeout=aiohttp.ClientTimeout(total=spec.timeout_s),
            # Requests carry exactly the configured headers: no cookie jar
            # lets one answer change what the next request sends.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def push(self, due: Sequence[DueDelivery]) -> list[AttemptResult]:
        """Send ``due`` with at most ``concurrency`` requests in flight."""
        size = self._spec.batch_size
        groups = [list(due[i : i + size]) for i in range(0, len(due), size)]
        answers: list[list[AttemptResult]] = [[] for _ in groups]
        queue = iter(enumerate(groups))

        # A few senders that take the next request when theirs is answered
        # cost a fifth less CPU per request than one task per request behind
        # a semaphore (bench/backfill_client_paths.py).
        async def sender() -> None:
            for index, group in queue:
                answers[index] = await self._send(group)

        senders = min(self._spec.concurrency, len(groups))
        await asyncio.gather(*(sender() for _ in range(senders)))
        return [result for answer in answers for result in answer]

    def _body(self, group: list[DueDelivery]) -> str:
        if self._spec.batch_size == 1:
            return group[0].payload
        array = "[" + ",".join(d.payload for d in group) + "]"
        if self._spec.batch_key is None:
            return array
        return "{" + json.dumps(self._spec.batch_key) + ":" + array + "}"

    def _request_headers(self, group: list[DueDelivery], body: bytes) -> dict[str, str]:
        """Headers for one request: configured ones, then what identifies it."""
        request_headers = {**self._headers, headers.IDEMPOTENCY_KEY: self._key(group)}
        if self._spec.batch_size == 1:
            request_headers[headers.RECORD_VERSION] = str(group[0].record_version_id)
        else:
            request_headers[headers.RECORD_VERSIONS] = ",".join(
                str(d.record_version_id) for d in group
            )
        if self._signing_secret is not None:
            # Each attempt signs with its own time, so a retry hours later
            # still falls inside the receiver's tolerance window.
            timestamp = int(time.time())
            request_headers.update(
                signature_headers(self._signing_secret, timestamp, body)
            )
        return request_headers

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
        body = self._body(group).encode()
        try:
            async with self._http.request(
                self._spec.method,
                self._spec.url,
                data=body,
                headers=self._request_headers(group, body),
                allow_redirects=False,
            ) as response:
                answer = _Answer(
                    response.status, response.headers, await response.read()
                )
            verdicts = self._judge(answer, len(group), started_at)
        except (aiohttp.ClientError, TimeoutError) as exc:
            verdicts = [self._transport_failure(exc)] * len(group)
        duration_ms = (time.perf_counter() - clock) * 1000
        return [
            self._result(d, verdict, started_at, duration_ms)
            for d, verdict in zip(group, verdicts, strict=True)
        ]

    def _transport_failure(self, exc: aiohttp.ClientError | TimeoutError) -> _Verdict:
        """Tell a request that never left from one whose fate is unknown.

        A refused or timed-out connection sent nothing: plain retry. A timeout
        waiting for the answer, or a connection cut after sending, may have
        reached the target: the outcome is unknown, and the retry may make a
        duplicate that the idempotency key lets the target recognise.
        """
        name = type(exc).__name__
        if isinstance(
            exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
        ):
            return _Verdict(OUTCOME_RETRY, error=f"connection failed ({name})")
        if isinstance(exc, TimeoutError):
            return _Verdict(
                OUTCOME_UNKNOWN, error=f"no answer within {self._spec.timeout_s:g} s"
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            # A status line or headers that are not HTTP: the request was
            # sent, so the target may have acted on it.
            return _Verdict(OUTCOME_UNKNOWN, error=f"invalid HTTP answer ({name})")
        return _Verdict(OUTCOME_UNKNOWN, error=f"connection failed ({name})")

    def _judge(
        self, response: _Answer, count: int, started_at: dt.datetime
    ) -> list[_Verdict]:
        """One verdict per record of the request, in the order sent."""
        status = response.status
        asked = self._asked_wait(response, started_at)
        if 200 <= status < 300:
            failure = self._success_failure(response)
            if failure is not None:
                excerpt = self._excerpt(response)
                return [_retry(status, failure, excerpt, asked)] * count
            rule = self._spec.item_results
            if rule is None:
                return [_Verdict(OUTCOME_DELIVERED, status)] * count
            return self._item_verdicts(response, rule, count, asked)
        transient = status >= 500 or status in self._spec.transient_statuses
        if transient or status < 400:
            excerpt = self._excerpt(response)
            return [_retry(status, f"HTTP {status}", excerpt, asked)] * count
        verdict = _Verdict(
            OUTCOME_DEAD, status, f"HTTP {status} (permanent)", self._excerpt(response)
        )
        return [verdict] * count

    def _asked_wait(self, response: _Answer, started_at: dt.datetime) -> _Asked | None:
        """The answer's Retry-After as a wait from ``started_at``, if understood."""
        value = response.headers.get("retry-after")
        if value is None:
            return None
        answered_at = dt.datetime.now(dt.UTC)
        asked = parse_retry_after(value, answered_at)
        if asked is None:
            return None
        # Seconds count from the answer (RFC 9110); the ledger's wait counts
        # from the attempt's start, so the request's own time is added.
        wait_s = (answered_at - started_at).total_seconds() + asked.wait_s
        note = f"Retry-After {asked.text}"
        cap_s = self._spec.retry.max_s
        if asked.wait_s > cap_s:
            note += f", capped at {cap_s:g} s"
        return _Asked(wait_s, note)

    def _item_verdicts(
        self,
        response: _Answer,
        rule: ItemResults,
        count: int,
        asked: _Asked | None,
    ) -> list[_Verdict]:
        """Deliver the records the answer reports stored; retry the others."""
        status = response.status
        try:
            answer: Any = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content-type")
            error = f"expected a JSON answer with item results, got {kind}"
            return [_retry(status, error, self._excerpt(response), asked)] * count
        try:
            items = read_item_results(answer, rule, count)
        except ItemResultsShapeError as exc:
            return [_retry(status, str(exc), self._excerpt(response), asked)] * count
        return [
            _Verdict(OUTCOME_DELIVERED, status)
            if item.is_stored
            else _retry(status, item.error, self._redacted(item.entry), asked)
            for item in items
        ]

    def _success_failure(self, response: _Answer) -> str | None:
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

    def _excerpt(self, response: _Answer) -> str:
        return self._redacted(response.text) or ""

    def _redacted(self, text: str | None) -> str | None:
        # Redact before cutting: a secret across the cut would leak its start.
        if text is None:
            return None
        return redact_text(text, self._secrets)[:EXCERPT_CHARS]

    def _result(
        self,
        delivery: DueDelivery,
        verdict: _Verdict,
        started_at: dt.datetime,
        duration_ms: float,
    ) -> AttemptResult:
        attempt_no = delivery.attempts_before + 1
        outcome, error, next_at = verdict.outcome, verdict.error, None
        if outcome in (OUTCOME_RETRY, OUTCOME_UNKNOWN):
            policy = self._spec.retry
            if is_exhausted(policy, attempt_no):
                outcome = OUTCOME_DEAD
                error = f"gave up after {attempt_no} attempts; last: {error}"
            else:
                wait_s = retry_wait_s(policy, attempt_no, verdict.asked_wait_s)
                next_at = started_at + dt.timedelta(seconds=wait_s)
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


def _retry(
    status: int, error: str | None, excerpt: str | None, asked: _Asked | None
) -> _Verdict:
    """A retry verdict for an answer, carrying its Retry-After if understood."""
    if asked is None:
        return _Verdict(OUTCOME_RETRY, status, error, excerpt)
    return _Verdict(
        OUTCOME_RETRY, status, f"{error}; {asked.note}", excerpt, asked.wait_s
    )

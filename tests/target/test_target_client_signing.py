"""HMAC signatures over the exact bytes sent, and the demo target checking them."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from target_support import (
    Answer,
    RecordingTarget,
    due_deliveries,
    push,
    target_spec,
)

from jellyfish.demo.servers import serve_in_thread
from jellyfish.demo.target_app import build_target_app
from ledger.errors import SecretNotFoundError

# Fake; long enough that any cut-off piece of it is recognisable.
SECRET = "fake-signing-secret-3e7a90c1d2"
SIGNED = {"signing_secret": {"env": "JF_TEST_SIGNING"}}
DOC = Path(__file__).resolve().parents[2] / "docs" / "signatures.md"


@pytest.fixture(autouse=True)
def secret_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JF_TEST_SIGNING", SECRET)
    yield


@pytest.fixture
def signed_target_url() -> Iterator[str]:
    """A demo target that answers 401 unless requests are signed with SECRET."""
    with serve_in_thread(build_target_app(signing_secret=SECRET)) as url:
        yield url


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature recomputed here, independently of the client's code."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@pytest.mark.parametrize(
    ("batch_size", "path"),
    [
        pytest.param(1, "/records", id="single"),
        pytest.param(3, "/records/batch", id="batch"),
    ],
)
def test_push_signing_secret_signs_exact_body_bytes(batch_size: int, path: str) -> None:
    target = RecordingTarget()
    before = int(time.time())

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}{path}", batch_size=batch_size, **SIGNED)
        push(spec, due_deliveries(3))

    after = int(time.time())
    assert len(target.received) == 3 // batch_size
    for request in target.received:
        timestamp = request.headers["x-jellyfish-timestamp"]
        assert re.fullmatch(r"[0-9]+", timestamp)
        assert before <= int(timestamp) <= after
        assert request.headers["x-jellyfish-signature"] == expected_signature(
            SECRET, timestamp, request.body
        )


def test_push_without_signing_secret_sends_no_signature_headers() -> None:
    target = RecordingTarget()

    with serve_in_thread(target.app) as url:
        push(target_spec(f"{url}/records"), due_deliveries(1))

    [request] = target.received
    assert "x-jellyfish-timestamp" not in request.headers
    assert "x-jellyfish-signature" not in request.headers


def test_push_signed_to_demo_target_with_same_secret_delivered(
    signed_target_url: str, client: httpx.Client
) -> None:
    results = push(
        target_spec(f"{signed_target_url}/records/batch", batch_size=2, **SIGNED),
        due_deliveries(3),
    )

    assert [(r.outcome, r.http_status) for r in results] == [("delivered", 200)] * 3
    stats = client.get(f"{signed_target_url}/stats").json()
    assert (stats["records"], stats["bad_signatures"]) == (3, 0)


def test_push_signed_with_other_secret_dead_on_401(
    signed_target_url: str, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JF_TEST_SIGNING", "fake-other-secret-11aa22bb")

    [result] = push(
        target_spec(f"{signed_target_url}/records", **SIGNED), due_deliveries(1)
    )

    assert (result.outcome, result.http_status, result.error) == (
        "dead",
        401,
        "HTTP 401 (permanent)",
    )
    assert result.response_excerpt == (
        '{"ok":false,"error":"X-JellyFish-Signature does not match the body"}'
    )
    stats = client.get(f"{signed_target_url}/stats").json()
    assert (stats["records"], stats["bad_signatures"]) == (0, 1)


def test_push_unsigned_to_signing_demo_target_dead_on_401(
    signed_target_url: str,
) -> None:
    [result] = push(target_spec(f"{signed_target_url}/records"), due_deliveries(1))

    assert (result.outcome, result.http_status) == ("dead", 401)
    assert result.response_excerpt == (
        '{"ok":false,"error":"the request needs X-JellyFish-Timestamp and '
        'X-JellyFish-Signature"}'
    )


def test_push_signing_secret_echoed_by_target_redacted() -> None:
    body = f'{{"code":"1","msg":"secret {SECRET} refused"}}'.encode()
    target = RecordingTarget(Answer(body=body))

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", preset="jellyfish", **SIGNED)
        [result] = push(spec, due_deliveries(1))

    assert result.response_excerpt == '{"code":"1","msg":"secret *** refused"}'
    for name, value in dataclasses.asdict(result).items():
        assert SECRET[:8] not in str(value), name


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(
            None, "environment variable JF_TEST_SIGNING is not set", id="unset"
        ),
        pytest.param(
            "",
            "job 'flights' target 'warehouse': the signing secret in environment "
            "variable JF_TEST_SIGNING is empty",
            id="empty",
        ),
    ],
)
def test_push_signing_secret_missing_or_empty_raises_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str | None, match: str
) -> None:
    if value is None:
        monkeypatch.delenv("JF_TEST_SIGNING")
    else:
        monkeypatch.setenv("JF_TEST_SIGNING", value)

    with pytest.raises(SecretNotFoundError, match=re.escape(match)) as caught:
        push(target_spec("http://127.0.0.1:9/records", **SIGNED), due_deliveries(1))

    assert SECRET not in str(caught.value)


def doc_snippet() -> Callable[[bytes, dict[str, str], bytes], bool]:
    """The receiver-side check from docs/signatures.md, run as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)
    check: Callable[[bytes, dict[str, str], bytes], bool] = namespace[
        "is_signed_by_jellyfish"
    ]
    return check


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        pytest.param(lambda body: body, True, id="as-sent"),
        pytest.param(lambda body: body.replace(b"EWR", b"JFK"), False, id="tampered"),
        pytest.param(lambda body: body + b" ", False, id="trailing-space"),
    ],
)
def test_signatures_doc_snippet_accepts_sent_request_only(
    tamper: Callable[[bytes], bytes], expected: bool
) -> None:
    target = RecordingTarget()
    with serve_in_thread(target.app) as url:
        push(target_spec(f"{url}/records", **SIGNED), due_deliveries(1))
    [request] = target.received

    is_signed = doc_snippet()(SECRET.encode(), request.headers, tamper(request.body))

    assert is_signed is expected

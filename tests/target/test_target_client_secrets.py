"""Secrets a target echoes back never reach an attempt result (promise 8)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator

import pytest
from target_support import (
    Answer,
    Received,
    RecordingTarget,
    due_deliveries,
    push,
    target_spec,
)

from jellyfish.demo.servers import serve_in_thread
from ledger.types import AttemptResult

# Fake; long enough that any cut-off piece of it is recognisable.
TOKEN = "fake-token-5f2c9a71d3e84b06"
BASIC = base64.b64encode(f"sync:{TOKEN}".encode()).decode()
AUTHS = [
    pytest.param(
        {"kind": "bearer", "token": {"env": "JF_TEST_TOKEN"}},
        "authorization",
        f"Bearer {TOKEN}",
        id="bearer",
    ),
    pytest.param(
        {"kind": "basic", "username": "sync", "password": {"env": "JF_TEST_TOKEN"}},
        "authorization",
        f"Basic {BASIC}",
        id="basic",
    ),
    pytest.param(
        {"kind": "api_key", "key": {"env": "JF_TEST_TOKEN"}},
        "x-api-key",
        TOKEN,
        id="api-key",
    ),
]


@pytest.fixture(autouse=True)
def token_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JF_TEST_TOKEN", TOKEN)
    yield


def assert_no_secret(result: AttemptResult, *secrets: str) -> None:
    """No field of ``result`` holds a secret, nor its first 8 characters."""
    for name, value in dataclasses.asdict(result).items():
        for secret in secrets:
            assert secret[:8] not in str(value), name


def echo(status: int, header: str) -> RecordingTarget:
    """A target that answers ``status`` and repeats the credential header it got."""

    def answer(request: Received) -> Answer:
        credential = request.headers[header]
        body = f'{{"error":"credential {credential} rejected"}}'
        return Answer(status=status, body=body.encode())

    return RecordingTarget(answer)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        pytest.param(503, "retry", id="retry"),
        pytest.param(401, "dead", id="dead"),
    ],
)
@pytest.mark.parametrize(("auth", "header", "credential"), AUTHS)
def test_push_credential_echoed_in_error_body_redacted_in_excerpt(
    auth: dict[str, object], header: str, credential: str, status: int, outcome: str
) -> None:
    target = echo(status, header)

    with serve_in_thread(target.app) as url:
        [result] = push(target_spec(f"{url}/records", auth=auth), due_deliveries(1))

    assert (result.outcome, result.http_status) == (outcome, status)
    assert result.response_excerpt == '{"error":"credential *** rejected"}'
    assert target.received[0].headers[header] == credential
    assert_no_secret(result, TOKEN, BASIC)


def test_push_bearer_token_echoed_as_code_redacted_in_error() -> None:
    body = f'{{"code":"{TOKEN}"}}'.encode()
    target = RecordingTarget(Answer(body=body))
    auth = {"kind": "bearer", "token": {"env": "JF_TEST_TOKEN"}}

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records", preset="jellyfish", auth=auth)
        [result] = push(spec, due_deliveries(1))

    assert (result.outcome, result.http_status) == ("retry", 200)
    assert result.error == "answer's 'code' is '***', expected '0'"
    assert result.response_excerpt == '{"code":"***"}'
    assert_no_secret(result, TOKEN)


def test_push_token_across_excerpt_cut_fully_redacted() -> None:
    """Regression: the excerpt was cut at 200 characters before redaction.

    A token starting at character 195 was no longer whole when redacted, so
    its first five characters were kept in the ledger's response excerpt.
    """
    body = ("x" * 195 + TOKEN + "y" * 20).encode()
    target = RecordingTarget(Answer(status=500, body=body, content_type="text/plain"))
    auth = {"kind": "bearer", "token": {"env": "JF_TEST_TOKEN"}}

    with serve_in_thread(target.app) as url:
        [result] = push(target_spec(f"{url}/records", auth=auth), due_deliveries(1))

    assert result.response_excerpt == "x" * 195 + "***" + "yy"
    assert_no_secret(result, TOKEN)


def test_push_batch_token_echoed_redacted_for_every_record() -> None:
    target = echo(503, "authorization")
    auth = {"kind": "bearer", "token": {"env": "JF_TEST_TOKEN"}}

    with serve_in_thread(target.app) as url:
        spec = target_spec(f"{url}/records/batch", auth=auth, batch_size=4)
        results = push(spec, due_deliveries(4))

    assert [r.response_excerpt for r in results] == [
        '{"error":"credential *** rejected"}'
    ] * 4
    for result in results:
        assert_no_secret(result, TOKEN)

"""Secrets named by a job: from the environment or a Prefect Secret block."""

from __future__ import annotations

import uuid

import pytest
from prefect.blocks.system import Secret

from blocks.ledger import LedgerConnection, resolve_ledger
from jellyfish.job import ApiKeyAuth, BasicAuth, BearerAuth, SecretRef
from jellyfish.secrets import auth_headers, redact_text, resolve
from ledger.errors import LedgerError, SecretNotFoundError


def test_resolve_env_set_returns_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JF_TEST_TOKEN", "fake-token-1")

    assert resolve(SecretRef(env="JF_TEST_TOKEN")) == "fake-token-1"


def test_resolve_env_missing_names_variable_not_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JF_TEST_MISSING", raising=False)

    with pytest.raises(SecretNotFoundError, match="JF_TEST_MISSING is not set"):
        resolve(SecretRef(env="JF_TEST_MISSING"))


def test_resolve_secret_block_returns_saved_value() -> None:
    name = f"jf-{uuid.uuid4().hex[:8]}"
    Secret(value="fake-block-secret").save(name)

    assert resolve(SecretRef(block=name)) == "fake-block-secret"


def test_resolve_secret_block_missing_raises_with_block_name() -> None:
    with pytest.raises(SecretNotFoundError, match="block 'jf-no-such-block' was not"):
        resolve(SecretRef(block="jf-no-such-block"))


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        pytest.param(
            BearerAuth(kind="bearer", token=SecretRef(env="JF_T")),
            {"Authorization": "Bearer fake-t"},
            id="bearer",
        ),
        pytest.param(
            BasicAuth(kind="basic", username="ann", password=SecretRef(env="JF_T")),
            {"Authorization": "Basic YW5uOmZha2UtdA=="},
            id="basic",
        ),
        pytest.param(
            ApiKeyAuth(kind="api_key", header="X-Key", key=SecretRef(env="JF_T")),
            {"X-Key": "fake-t"},
            id="api-key",
        ),
    ],
)
def test_auth_headers_each_kind_builds_header(
    monkeypatch: pytest.MonkeyPatch, auth: object, expected: dict[str, str]
) -> None:
    monkeypatch.setenv("JF_T", "fake-t")

    assert auth_headers(auth) == expected  # type: ignore[arg-type]


def test_redact_text_masks_every_occurrence() -> None:
    assert redact_text("a fake-t b fake-t", ["fake-t"]) == "a *** b ***"


def test_resolve_ledger_block_returns_url_and_missing_block_raises() -> None:
    name = f"jf-{uuid.uuid4().hex[:8]}"
    LedgerConnection(url="sqlite:///fake.db").save(name)

    assert resolve_ledger(f"block:{name}") == "sqlite:///fake.db"
    assert resolve_ledger("sqlite:///plain.db") == "sqlite:///plain.db"
    with pytest.raises(LedgerError, match="no LedgerConnection block named 'jf-nope'"):
        resolve_ledger("block:jf-nope")

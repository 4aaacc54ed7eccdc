"""Resolve the secrets a job names, and build auth headers from them."""

from __future__ import annotations

import base64
import os

from jellyfish.job import ApiKeyAuth, Auth, BasicAuth, SecretRef
from ledger.errors import SecretNotFoundError


def resolve(ref: SecretRef) -> str:
    """The secret's value, from the environment or a Prefect Secret block.

    Raises:
        SecretNotFoundError: naming the variable or block (never the value).
    """
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise SecretNotFoundError(
                f"environment variable {ref.env} is not set; export it before the run"
            )
        return value
    from prefect.blocks.system import Secret

    name = str(ref.block)
    try:
        block: Secret[str] = Secret.load(name, _sync=True)  # type: ignore[call-arg, assignment]
    except ValueError as exc:
        raise SecretNotFoundError(
            f"Prefect Secret block {name!r} was not found; create it with "
            "prefect.blocks.system.Secret(value=...).save(name)"
        ) from exc
    return str(block.get())


def auth_headers(auth: Auth | None) -> dict[str, str]:
    """The request headers that carry ``auth``."""
    if auth is None:
        return {}
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{resolve(auth.password)}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if isinstance(auth, ApiKeyAuth):
        return {auth.header: resolve(auth.key)}
    return {"Authorization": f"Bearer {resolve(auth.token)}"}


def secret_values(auth: Auth | None) -> list[str]:
    """The raw secrets behind ``auth``, to mask them wherever text is kept."""
    headers = auth_headers(auth)
    values = list(headers.values())
    if auth is not None and isinstance(auth, BasicAuth):
        values.append(resolve(auth.password))
    elif auth is not None and not isinstance(auth, ApiKeyAuth):
        values.append(resolve(auth.token))
    return [v for v in values if v]


def redact_text(text: str, secrets: list[str]) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text

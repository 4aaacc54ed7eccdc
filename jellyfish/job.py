"""The job model: one YAML file describes a source, its shards and its targets.

A job file is loaded into frozen pydantic models; anything that does not fit
raises ``JobConfigError`` naming the file, the field path and the reason.

    name: flights
    source:
      url: http://127.0.0.1:8001/flights
      key: [id]
      cursor: [updated_at:timestamp, id:integer]
      pagination: {kind: keyset, params: {after_updated_at: updated_at, after_id: id}}
      shards: [{name: ewr, params: {origin: EWR}}]
    targets:
      - name: warehouse
        url: http://127.0.0.1:8002/records
        retry: {kind: exponential, initial_s: 1, max_s: 300, max_attempts: 8}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.errors import JobConfigError

Scalar = str | int | float | bool | None
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"must be an http:// or https:// URL with a host, got {value[:60]!r}"
        )
    return value


HttpUrlText = Annotated[str, AfterValidator(_check_http_url)]


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"must be lowercase letters, digits, '-' or '_' (at most 63), got {value!r}"
        )
    return value


class SecretRef(_Model):
    """Where a secret lives: an environment variable or a Prefect Secret block."""

    env: str | None = Field(None, description="Environment variable name.")
    block: str | None = Field(None, description="Name of a Prefect Secret block.")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.block is None):
            raise ValueError("give exactly one of 'env' or 'block'")
        return self


class BearerAuth(_Model):
    kind: Literal["bearer"]
    token: SecretRef


class BasicAuth(_Model):
    kind: Literal["basic"]
    username: str
    password: SecretRef


class ApiKeyAuth(_Model):
    kind: Literal["api_key"]
    header: str = "X-API-Key"
    key: SecretRef


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="kind")]


class SuccessRule(_Model):
    """A JSON body check on top of the HTTP status, e.g. ``code == "0"``."""

    field: str = Field(description="Dotted path into the JSON answer.")
    equals: Scalar = Field(description="The value that means success.")


class CursorField(_Model):
    """One field of a (possibly compound) cursor; timestamps compare in UTC."""

    name: str
    type: Literal["timestamp", "integer", "number", "string"]


class KeysetPagination(_Model):
    """Ask for the records after the last record's cursor fields."""

    kind: Literal["keyset"]
    params: dict[str, str] = Field(
        description="Request parameter name -> cursor field it carries."
    )
    page_size: int = Field(500, ge=1)
    page_size_param: str | None = "limit"
    stop: Literal["short_page", "empty_page"] = "short_page"


class OffsetPagination(_Model):
    kind: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: int = Field(500, ge=1)


class PageNumberPagination(_Model):
    kind: Literal["page_number"]
    page_param: str = "page"
    first_page: int = Field(1, ge=0)
    size_param: str | None = "per_page"
    page_size: int = Field(500, ge=1)


class TokenPagination(_Model):
    """The answer carries a next-page token that the next request sends back."""

    kind: Literal["token"]
    token_path: str = Field(description="Dotted path of the token in the answer.")
    token_param: str = Field(description="Request parameter that carries it.")


class NextUrlPagination(_Model):
    """The answer names the next page's URL, in the body or in a Link header."""

    kind: Literal["next_url"]
    next_path: str | None = Field(
        None, description="Dotted path of the URL in the body; None: Link header."
    )


Pagination = Annotated[
    KeysetPagination
    | OffsetPagination
    | PageNumberPagination
    | TokenPagination
    | NextUrlPagination,
    Field(discriminator="kind"),
]


class ShardSpec(_Model):
    name: str
    params: dict[str, Scalar] = Field(default_factory=dict)

    _name = field_validator("name")(_check_name)


def _parse_cursor_field(value: Any) -> Any:
    if isinstance(value, str):
        name, _, kind = value.partition(":")
        if not kind:
            # Guessing would compare ids as text ("10" < "9"): ask instead.
            raise ValueError(
                f"cursor field {name!r} needs a type: {name}:timestamp, "
                f"{name}:integer, {name}:number or {name}:string"
            )
        return {"name": name, "type": kind}
    return value


def _apply_source_preset(data: dict[str, Any]) -> dict[str, Any]:
    """Fill in the original Data JellyFish source contract: POST the last
    ``offset`` and ``id``, read ``{"code": "0", "data": [...]}``."""
    cursor = [_parse_cursor_field(c) for c in data.get("cursor") or []]
    key = data.get("key") or []
    offset_field = cursor[0]["name"] if cursor else "updated_at"
    id_field = cursor[1]["name"] if len(cursor) > 1 else (key[0] if key else "id")
    data = dict(data)
    data.setdefault("method", "POST")
    data.setdefault("records_path", "data")
    data.setdefault("success", {"field": "code", "equals": "0"})
    # Deployments read the last id as `id` or as `uId`; sending both serves either.
    data.setdefault(
        "pagination",
        {
            "kind": "keyset",
            "params": {"offset": offset_field, "id": id_field, "uId": id_field},
            "page_size_param": None,
            "stop": "empty_page",
        },
    )
    return data


class SourceSpec(_Model):
    """The HTTP endpoint records are read from."""

    preset: Literal["jellyfish"] | None = None
    url: HttpUrlText
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Scalar] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    records_path: str = Field("", description="Dotted path of the record list.")
    success: SuccessRule | None = None
    mode: Literal["incremental", "full"] = "incremental"
    key: list[str] = Field(min_length=1)
    cursor: list[CursorField] = Field(default_factory=list)
    pagination: Pagination
    since_params: dict[str, str] = Field(
        default_factory=dict,
        description="Parameter -> cursor field sent on a pass's first request.",
    )
    shards: list[ShardSpec] = Field(
        default_factory=lambda: [ShardSpec(name="all")], min_length=1
    )
    timeout_s: float = Field(30.0, gt=0)
    max_record_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Largest record, as canonical UTF-8 JSON, that is staged; a "
        "larger one is kept in the ledger as rejected, with its reason.",
    )
    lookback_s: float = Field(
        0.0,
        ge=0,
        description="Each pass re-reads this far behind the high-water mark, so "
        "records written late with an older timestamp are still staged.",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("preset") == "jellyfish":
            data = _apply_source_preset(data)
        if "cursor" in data and isinstance(data["cursor"], list):
            data = {**data, "cursor": [_parse_cursor_field(c) for c in data["cursor"]]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SourceSpec:
        names = [s.name for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must be unique, got {names}")
        cursor_names = {c.name for c in self.cursor}
        if self.mode == "incremental" and not self.cursor:
            raise ValueError("an incremental source needs at least one cursor field")
        referenced = dict(self.since_params)
        if isinstance(self.pagination, KeysetPagination):
            referenced.update(self.pagination.params)
        for param, field in referenced.items():
            if field not in cursor_names:
                raise ValueError(
                    f"parameter {param!r} carries {field!r}, which is not a cursor "
                    f"field; cursor fields are {sorted(cursor_names)}"
                )
        return self

    @model_validator(mode="after")
    def _lookback_needs_timestamp(self) -> SourceSpec:
        if self.lookback_s == 0:
            return self
        first = self.cursor[0] if self.cursor else None
        if self.mode != "incremental" or first is None or first.type != "timestamp":
            shown = None if first is None else f"{first.name}:{first.type}"
            raise ValueError(
                "lookback_s needs an incremental source whose first cursor field "
                f"is a timestamp; mode is {self.mode!r}, first cursor field {shown!r}"
            )
        return self


class FixedRetry(_Model):
    kind: Literal["fixed"]
    interval_s: float = Field(30.0, ge=0)
    max_s: float = Field(
        3600.0,
        ge=0,
        description="Longest wait a target's Retry-After may ask for; the "
        "interval itself is never cut to it.",
    )
    max_attempts: int = Field(5, ge=1)


class ExponentialRetry(_Model):
    kind: Literal["exponential"]
    initial_s: float = Field(1.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_s: float = Field(300.0, ge=0, description="Longest wait, Retry-After included.")
    jitter: float = Field(0.2, ge=0, le=1, description="Fraction of the wait.")
    max_attempts: int = Field(10, ge=1)


RetryPolicy = Annotated[FixedRetry | ExponentialRetry, Field(discriminator="kind")]


class ItemResults(_Model):
    """Where a batch's 2xx answer says, item by item, what the target stored.

    The list holds one entry per record, in the order they were sent, e.g.
    ``{"results": [{"ok": true}, {"ok": false, "error": "stale"}]}``.
    """

    path: str = Field(
        "results", description="Dotted path of the list in the answer; '': all of it."
    )
    ok_field: str = Field("ok", description="Dotted path in an entry of its verdict.")
    ok_equals: Scalar = Field(True, description="The verdict that means stored.")
    error_field: str | None = Field(
        "error", description="Dotted path in an entry of the reason it was refused."
    )


class TargetSpec(_Model):
    """An HTTP endpoint records are pushed to."""

    preset: Literal["jellyfish"] | None = None
    name: str
    url: HttpUrlText
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    batch_size: int = Field(1, ge=1, description="1: one record as the JSON body.")
    batch_key: str | None = Field(
        None, description="Wrap a batch as {batch_key: [...]}; None: a bare array."
    )
    success: SuccessRule | None = None
    timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight.")
    transient_statuses: list[int] = Field(
        default_factory=lambda: [408, 425, 429],
        description="4xx statuses retried later; 5xx always are, other 4xx never.",
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: ExponentialRetry(kind="exponential")
    )
    item_results: ItemResults | None = Field(
        None,
        description="Read per-record results from a batch's answer and retry only "
        "the refused records; None: the answer's status covers the whole batch.",
    )
    signing_secret: SecretRef | None = Field(
        None,
        description="Sign each request body with HMAC-SHA256 under this secret "
        "(X-JellyFish-Timestamp, X-JellyFish-Signature headers).",
    )

    _name = field_validator("name")(_check_name)

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "jellyfish":
            data = {**data}
            data.setdefault("success", {"field": "code", "equals": "0"})
        return data

    @model_validator(mode="after")
    def _items_need_batches(self) -> TargetSpec:
        if self.item_results is not None and self.batch_size == 1:
            raise ValueError(
                "item_results needs batch_size above 1: a single record is sent "
                "as one JSON object, and its answer's status already covers it"
            )
        return self


class DeliverySpec(_Model):
    partitions: int = Field(2, ge=1, le=64, description="Push tasks per target.")
    claim_size: int = Field(1000, ge=1, description="Deliveries claimed at once.")
    lease_s: float = Field(300.0, gt=0)


class Job(_Model):
    """One sync definition: a source, its shards and one or more targets."""

    name: str
    source: SourceSpec
    targets: list[TargetSpec] = Field(min_length=1)
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)

    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _unique_targets(self) -> Job:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        return self

    def target(self, name: str) -> TargetSpec:
        """The target called ``name``; raises KeyError listing the valid names."""
        for target in self.targets:
            if target.name == name:
                return target
        valid = ", ".join(t.name for t in self.targets)
        raise KeyError(f"job {self.name!r} has no target {name!r}; targets: {valid}")


def _describe(error: ValidationError, path: Path) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: {location}: {item['msg']}")
    return "\n".join(lines)


def parse_job(data: object, path: Path) -> Job:
    """Validate already-parsed YAML as a job; ``path`` only names it in errors.

    Raises:
        JobConfigError: naming the file, each field path and the reason.
    """
    if not isinstance(data, dict):
        raise JobConfigError(
            f"{path}: expected a mapping with name, source and targets, "
            f"got {type(data).__name__}"
        )
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        raise JobConfigError(_describe(exc, path)) from exc


def load_job(path: str | Path) -> Job:
    """Read and validate a job file.

    Raises:
        JobConfigError: the file is missing, is not YAML, or does not fit.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobConfigError(f"{path}: cannot read job file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise JobConfigError(f"{path}: not valid YAML{where}") from exc
    return parse_job(data, path)

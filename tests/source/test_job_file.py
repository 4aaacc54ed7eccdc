"""Job files: a bad file fails with JobConfigError naming the file and the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from jellyfish.job import KeysetPagination, load_job, parse_job
from ledger.errors import JobConfigError

VALID = """\
name: flights
source:
  url: http://127.0.0.1:8001/flights
  key: [id]
  cursor: [updated_at:timestamp, id:integer]
  pagination: {kind: keyset, params: {after_updated_at: updated_at, after_id: id}}
  shards: [{name: ewr, params: {origin: EWR}}, {name: jfk, params: {origin: JFK}}]
targets:
  - name: warehouse
    url: http://127.0.0.1:8002/records
"""

MISSING = None  # no file is written

BAD_JOB_FILES = [
    pytest.param(
        VALID.replace("kind: keyset", "kind: cursor"),
        "source.pagination: Input tag 'cursor' found using 'kind' does not match "
        "any of the expected tags: 'keyset', 'offset', 'page_number', 'token', "
        "'next_url'",
        id="unknown-pagination-kind",
    ),
    pytest.param(
        VALID.replace("id:integer]", "id]"),
        "source: Value error, cursor field 'id' needs a type: id:timestamp, "
        "id:integer, id:number or id:string",
        id="cursor-field-without-type",
    ),
    pytest.param(
        VALID.replace("url: http://127.0.0.1:8001/flights", "url: flights-host"),
        "source.url: Value error, must be an http:// or https:// URL with a host, "
        "got 'flights-host'",
        id="source-url-without-scheme",
    ),
    pytest.param(
        VALID.replace("  key: [id]\n", ""),
        "source.key: Field required",
        id="missing-key",
    ),
    pytest.param(
        VALID.replace("  cursor: [updated_at:timestamp, id:integer]\n", "").replace(
            "{kind: keyset, params: {after_updated_at: updated_at, after_id: id}}",
            "{kind: offset}",
        ),
        "source: Value error, an incremental source needs at least one cursor field",
        id="incremental-without-cursor",
    ),
    pytest.param(
        VALID.replace("after_id: id}", "after_id: flight_id}"),
        "source: Value error, parameter 'after_id' carries 'flight_id', which is "
        "not a cursor field; cursor fields are ['id', 'updated_at']",
        id="keyset-param-not-a-cursor-field",
    ),
    pytest.param(
        VALID.replace("name: jfk", "name: ewr"),
        "source: Value error, shard names must be unique, got ['ewr', 'ewr']",
        id="duplicate-shard-names",
    ),
    pytest.param(
        VALID.replace("name: flights", "name: Flights!"),
        "name: Value error, must be lowercase letters, digits, '-' or '_' "
        "(at most 63), got 'Flights!'",
        id="bad-job-name-characters",
    ),
    pytest.param(
        VALID.replace("name: ewr", "name: EWR east"),
        "source.shards.0.name: Value error, must be lowercase letters, digits, "
        "'-' or '_' (at most 63), got 'EWR east'",
        id="bad-shard-name-characters",
    ),
    pytest.param(
        VALID.replace(
            "cursor: [updated_at:timestamp, id:integer]",
            "cursor: [id:integer, updated_at:timestamp]\n  lookback_s: 60",
        ),
        "source: Value error, lookback_s needs an incremental source whose first "
        "cursor field is a timestamp; mode is 'incremental', first cursor field "
        "'id:integer'",
        id="lookback-without-timestamp-cursor",
    ),
    pytest.param(
        VALID.replace("  key: [id]\n", "  key: [id]\n  mode: full\n  lookback_s: 60\n"),
        "source: Value error, lookback_s needs an incremental source whose first "
        "cursor field is a timestamp; mode is 'full', first cursor field "
        "'updated_at:timestamp'",
        id="lookback-full-mode",
    ),
    pytest.param(
        VALID.replace("  key: [id]\n", "  key: [id]\n  lookback_s: -5\n"),
        "source.lookback_s: Input should be greater than or equal to 0",
        id="lookback-negative",
    ),
    pytest.param(
        VALID.replace("  key: [id]\n", "  key: [id]\n  max_record_bytes: 0\n"),
        "source.max_record_bytes: Input should be greater than or equal to 1",
        id="max-record-bytes-zero",
    ),
    pytest.param(
        "- name: flights\n- name: other\n",
        "expected a mapping with name, source and targets, got list",
        id="not-a-mapping",
    ),
    pytest.param(
        VALID.replace("  key: [id]\n", "  key: [id\n"),
        "not valid YAML at line 5",
        id="invalid-yaml",
    ),
    pytest.param(
        MISSING, "cannot read job file: No such file or directory", id="missing-file"
    ),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_JOB_FILES)
def test_load_job_bad_file_raises_naming_file_and_reason(
    tmp_path: Path, text: str | None, fragment: str
) -> None:
    path = tmp_path / "job.yaml"
    if text is not MISSING:
        path.write_text(text, encoding="utf-8")

    with pytest.raises(JobConfigError) as caught:
        load_job(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())


def test_load_job_valid_file_builds_keyset_source(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(VALID, encoding="utf-8")

    job = load_job(path)

    assert job.name == "flights"
    assert (job.source.max_record_bytes, job.source.lookback_s) == (1_000_000, 0.0)
    assert job.source.pagination == KeysetPagination(
        kind="keyset", params={"after_updated_at": "updated_at", "after_id": "id"}
    )
    assert [(c.name, c.type) for c in job.source.cursor] == [
        ("updated_at", "timestamp"),
        ("id", "integer"),
    ]
    assert [(s.name, s.params) for s in job.source.shards] == [
        ("ewr", {"origin": "EWR"}),
        ("jfk", {"origin": "JFK"}),
    ]


def test_parse_job_preset_input_is_not_mutated() -> None:
    data = {
        "name": "legacy",
        "source": {
            "preset": "jellyfish",
            "url": "http://127.0.0.1:8001/jellyfish/flights",
            "key": ["id"],
            "cursor": ["updated_at:timestamp", "id:integer"],
            "shards": [{"name": "ewr", "params": {"origin": "EWR"}}],
        },
        "targets": [
            {"preset": "jellyfish", "name": "legacy", "url": "http://127.0.0.1:8002/r"}
        ],
    }
    before = copy.deepcopy(data)

    job = parse_job(data, Path("legacy.yaml"))

    assert data == before
    assert job.source.method == "POST"
    assert job.source.pagination == KeysetPagination(
        kind="keyset",
        params={"offset": "updated_at", "id": "id", "uId": "id"},
        page_size_param=None,
        stop="empty_page",
    )
    assert job.targets[0].success is not None
    assert (job.targets[0].success.field, job.targets[0].success.equals) == (
        "code",
        "0",
    )


def test_parse_job_invalid_input_is_not_mutated() -> None:
    data = {
        "name": "flights",
        "source": {"url": "http://x", "cursor": ["updated_at:timestamp"]},
        "targets": [],
    }
    before = copy.deepcopy(data)

    with pytest.raises(JobConfigError, match=r"^flights\.yaml: source\.key: Field"):
        parse_job(data, Path("flights.yaml"))

    assert data == before

"""Target settings for delivery guarantees: defaults and refused configurations."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from jellyfish.job import ItemResults, SecretRef, parse_job
from ledger.errors import JobConfigError

JOB_YAML = """
name: flights
source:
  url: http://127.0.0.1:8001/flights
  key: [id]
  cursor: [updated_at:timestamp, id:integer]
  pagination: {kind: keyset, params: {after_updated_at: updated_at, after_id: id}}
targets:
  - name: warehouse
    url: http://127.0.0.1:8002/records
"""


def job_with_target(**fields: Any) -> dict[str, Any]:
    """The job above, with ``fields`` set on its one target."""
    data: dict[str, Any] = yaml.safe_load(JOB_YAML)
    data["targets"][0].update(fields)
    return data


def test_target_spec_defaults_leave_new_guarantees_off() -> None:
    target = parse_job(job_with_target(), Path("job.yaml")).targets[0]

    assert (target.item_results, target.signing_secret) == (None, None)


def test_target_spec_item_results_empty_mapping_takes_defaults() -> None:
    data = job_with_target(batch_size=50, item_results={})

    target = parse_job(data, Path("job.yaml")).targets[0]

    assert target.item_results == ItemResults(
        path="results", ok_field="ok", ok_equals=True, error_field="error"
    )


def test_target_spec_signing_secret_reads_secret_ref() -> None:
    data = job_with_target(signing_secret={"block": "warehouse-signing"})

    target = parse_job(data, Path("job.yaml")).targets[0]

    assert target.signing_secret == SecretRef(block="warehouse-signing")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        pytest.param(
            {"item_results": {}},
            "job.yaml: targets.0: Value error, item_results needs batch_size above 1",
            id="item-results-single-record",
        ),
        pytest.param(
            {"batch_size": 10, "item_results": {"ok": True}},
            "job.yaml: targets.0.item_results.ok: Extra inputs are not permitted",
            id="item-results-unknown-field",
        ),
        pytest.param(
            {"signing_secret": {"env": "A", "block": "b"}},
            "job.yaml: targets.0.signing_secret: Value error, give exactly one of "
            "'env' or 'block'",
            id="signing-secret-two-sources",
        ),
        pytest.param(
            {"signing_secret": "plain-text-secret"},
            "job.yaml: targets.0.signing_secret: Input should be a valid dictionary",
            id="signing-secret-inline-value",
        ),
        pytest.param(
            {"retry": {"kind": "fixed", "max_s": -1}},
            "job.yaml: targets.0.retry.fixed.max_s: Input should be greater than or "
            "equal to 0",
            id="fixed-max-s-negative",
        ),
    ],
)
def test_parse_job_bad_target_guarantee_settings_name_field(
    fields: dict[str, Any], fragment: str
) -> None:
    data = job_with_target(**fields)
    before = copy.deepcopy(data)

    with pytest.raises(JobConfigError, match=re.escape(fragment)):
        parse_job(data, Path("job.yaml"))

    assert data == before

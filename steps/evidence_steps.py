"""Evidence plumbing for steps: attach each record to the Allure step that produced it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import allure
import pytest

from byok.evidence import StepRecord


class RunEvidence:
    """Every evidence record of the run, in order, for the run's evidence file."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def add(self, record: StepRecord, scenario: str | None = None) -> None:
        entry = record.to_dict()
        if scenario:
            entry["scenario"] = scenario
        self.records.append(entry)


@pytest.fixture(scope="session")
def run_evidence(pytestconfig: pytest.Config, run_id: str, profile) -> Iterator[RunEvidence]:
    """The run's evidence; written to ``--byok-evidence`` when the session ends."""
    collected = RunEvidence()
    yield collected
    target = pytestconfig.getoption("--byok-evidence", default=None)
    if target:
        document = {
            "run": {"id": run_id, "profile": profile.name, "wrapping_algorithm": profile.kms.wrapping_algorithm},
            "records": collected.records,
        }
        Path(target).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


def attach(record: StepRecord) -> None:
    """Attach a record as JSON to the current Allure step."""
    allure.attach(record.to_json(), name=f"evidence: {record.step}", attachment_type=allure.attachment_type.JSON)


@pytest.fixture
def evidence(run_evidence: RunEvidence, request: pytest.FixtureRequest):
    """A callable that attaches a record to the report and keeps it for the run's evidence."""

    def keep(record: StepRecord) -> StepRecord:
        attach(record)
        run_evidence.add(record, scenario=request.node.name)
        return record

    return keep

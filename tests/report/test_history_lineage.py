"""Report history is carried only between runs of the same report (the same profile)."""

from __future__ import annotations

import json
from pathlib import Path

from byok.report.build import previous_run


def make_run(folder: Path, *, build_order: int, report_name: str) -> Path:
    results = folder / "allure-results"
    results.mkdir(parents=True)
    (results / "executor.json").write_text(json.dumps({"buildOrder": build_order, "reportName": report_name}))
    return folder


def test_previous_run_same_profile_only(tmp_path) -> None:
    make_run(tmp_path / "a", build_order=1, report_name="byok certify: softhsm-emulator")
    make_run(tmp_path / "b", build_order=2, report_name="byok certify: softhsm-fips")
    current = tmp_path / "c"
    current.mkdir()
    found = previous_run(current, "byok certify: softhsm-emulator")
    assert found is not None
    assert found[0].name == "a"
    assert found[1] == 1


def test_previous_run_none_for_new_profile(tmp_path) -> None:
    make_run(tmp_path / "a", build_order=4, report_name="byok certify: softhsm-emulator")
    current = tmp_path / "c"
    current.mkdir()
    assert previous_run(current, "byok certify: opencryptoki-emulator") is None

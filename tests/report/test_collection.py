"""Collection-time checks: undefined Gherkin steps stop the run, and every plain tag is a registered marker."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from byok.certify import EXIT_USAGE, _exit_status
from byok.pytest_plugin import _ALLURE_LABEL_TAGS

ROOT = Path(__file__).resolve().parents[2]

FEATURE = """Feature: Collection check
  Scenario: One step is defined, one is not
    Given a defined step
    When a step nobody wrote
    Then another defined step
"""

TEST_MODULE = """
from pytest_bdd import given, then, scenarios

scenarios("collection.feature")


@given("a defined step")
def defined() -> None:
    pass


@then("another defined step")
def another() -> None:
    pass
"""


def run_pytest(folder: Path) -> subprocess.CompletedProcess:
    (folder / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(folder)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


def test_undefined_step_stops_run(tmp_path: Path) -> None:
    (tmp_path / "collection.feature").write_text(FEATURE)
    (tmp_path / "test_collection_check.py").write_text(TEST_MODULE)
    completed = run_pytest(tmp_path)
    assert completed.returncode == 4, completed.stdout
    assert "1 Gherkin step(s) have no step definition" in completed.stdout
    assert "collection.feature:4: When a step nobody wrote" in completed.stdout
    assert "passed" not in completed.stdout, "a scenario ran although a step was undefined"


def test_all_steps_defined_runs(tmp_path: Path) -> None:
    (tmp_path / "collection.feature").write_text(FEATURE.replace("    When a step nobody wrote\n", ""))
    (tmp_path / "test_collection_check.py").write_text(TEST_MODULE)
    completed = run_pytest(tmp_path)
    assert completed.returncode == 0, completed.stdout


def test_unregistered_tag_rejected(tmp_path: Path) -> None:
    (tmp_path / "collection.feature").write_text("@not-registered\n" + FEATURE.replace("    When a step nobody wrote\n", ""))
    (tmp_path / "test_collection_check.py").write_text(TEST_MODULE)
    completed = run_pytest(tmp_path)
    assert completed.returncode != 0
    assert "not-registered" in completed.stdout


def test_usage_error_maps_to_exit_2() -> None:
    summary = {"secret_scan": {"hits": []}, "scenarios": []}
    assert _exit_status(4, summary) == EXIT_USAGE


def test_feature_tags_registered() -> None:
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    registered = {marker.split(":", 1)[0].strip() for marker in markers}
    unregistered = {}
    for feature in sorted((ROOT / "features").glob("*.feature")):
        for number, line in enumerate(feature.read_text().splitlines(), start=1):
            if not line.strip().startswith("@"):
                continue
            for tag in re.findall(r"@(\S+)", line):
                name, separator, _ = tag.partition(":")
                if separator and name in _ALLURE_LABEL_TAGS:
                    continue
                if tag not in registered:
                    unregistered[f"{feature.name}:{number}"] = tag
    assert unregistered == {}, f"tags that are not markers in pyproject.toml: {unregistered}"

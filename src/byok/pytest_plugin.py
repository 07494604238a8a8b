"""byok's pytest plugin: Gherkin tags to Allure metadata, blocked checks, and the run summary.

Loaded through the ``pytest11`` entry point, so it is active in every pytest run in the
project's environment; everything it does is keyed on pytest-bdd scenarios or on the
``--byok-summary`` option, so plain library tests are unaffected.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from byok.errors import BlockedByEnvironment
from byok.evidence.leaks import install_redaction

BLOCKED_PREFIX = "blocked by environment: "

# Tags of the form name:value that become Allure labels instead of pytest markers.
_ALLURE_LABEL_TAGS = {"epic", "feature", "story", "severity", "guide", "control", "owner", "layer"}
_RUNTIME_SKIP_TAGS = {
    "emulator-only": "runs only against the byok KMS emulator; this profile uses the real KMS",
    "live-only": "runs only against the real Alibaba Cloud KMS; this profile uses the emulator",
}

_scenarios: dict[str, dict[str, Any]] = {}
_results: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("byok").addoption(
        "--byok-summary",
        default=None,
        help="write a JSON summary of scenario outcomes to this file",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Redact registered secrets from every log record, whichever handler captures it.
    install_redaction(logging.getLogger())


def pytest_bdd_apply_tag(tag: str, function) -> bool | None:
    name, separator, value = tag.partition(":")
    if not separator or name not in _ALLURE_LABEL_TAGS:
        return None
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest-bdd is a dependency
        return True
    allure.label(name, value)(function)
    return True


@pytest.hookimpl(trylast=True)
def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature, scenario) -> None:
    _scenarios[request.node.nodeid] = {
        "feature": feature.name,
        "scenario": scenario.name,
        "feature_file": feature.rel_filename,
        "line": scenario.line_number,
    }
    for tag, reason in _RUNTIME_SKIP_TAGS.items():
        if tag not in scenario.tags:
            continue
        profile = request.getfixturevalue("profile")
        uses_emulator = profile.kms.uses_emulator
        if (tag == "emulator-only" and not uses_emulator) or (tag == "live-only" and uses_emulator):
            # Skipping here, after the Allure listener opened the test case, keeps the
            # scenario in the report as skipped with its reason.
            pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    try:
        return (yield)
    except BlockedByEnvironment as blocked:
        pytest.skip(BLOCKED_PREFIX + blocked.diagnostics().replace("\n", " "))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _scenarios and not report.nodeid.startswith("steps/"):
        return
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "reason": ""})
    entry["duration"] += report.duration
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        crash = getattr(report.longrepr, "reprcrash", None)
        entry["reason"] = crash.message.splitlines()[0][:500] if crash else _first_line(report.longreprtext)
    elif report.skipped and entry["outcome"] == "passed":
        reason = _skip_reason(report)
        entry["outcome"] = "blocked" if reason.startswith(BLOCKED_PREFIX) else "skipped"
        entry["reason"] = reason


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = session.config.getoption("--byok-summary", default=None)
    if not target:
        return
    rows = []
    for nodeid, result in _results.items():
        names = _scenarios.get(nodeid, {})
        rows.append(
            {
                "nodeid": nodeid,
                "feature": names.get("feature", ""),
                "scenario": names.get("scenario", nodeid),
                "feature_file": names.get("feature_file", ""),
                "line": names.get("line", 0),
                "outcome": result["outcome"],
                "duration": round(result["duration"], 3),
                "reason": result["reason"],
            }
        )
    rows.sort(key=lambda row: (row["feature_file"], row["line"]))
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"exitstatus": int(exitstatus), "finished": time.time(), "scenarios": rows}, indent=2),
        encoding="utf-8",
    )


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: ")
    return _first_line(report.longreprtext)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return ""

"""byok's pytest plugin: Gherkin tags to Allure metadata, blocked checks, and the run summary.

It is loaded through the ``pytest11`` entry point, so it is active in every pytest run in
the project's environment. Everything it does is keyed on pytest-bdd scenarios or on the
``--byok-summary`` option, so plain library tests are unaffected.

Before any scenario runs, every Gherkin step is looked up the way pytest-bdd's
``--generate-missing`` does; a step without a definition stops the run as a usage error.
The summary records, per scenario, the status Allure gives it (same rules as
allure-pytest-bdd 2.16.2) so ``byok certify`` can reconcile the report with pytest, and
the run's environment (profile, token facts, library versions) for the report.
"""

from __future__ import annotations

import json
import logging
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from byok.errors import BlockedByEnvironment
from byok.evidence.leaks import install_redaction, scan_paths

BLOCKED_PREFIX = "blocked by environment: "

# Tags of the form name:value that become Allure labels instead of pytest markers.
_ALLURE_LABEL_TAGS = {"epic", "feature", "story", "severity", "guide", "control", "owner", "layer"}
_RUNTIME_SKIP_TAGS = {
    "emulator-only": "runs only against the byok KMS emulator; this profile uses the real KMS",
    "live-only": "runs only against the real Alibaba Cloud KMS; this profile uses the emulator",
}

# Tags whose value is also shown as an Allure tag, because Allure 2 displays tags on the
# test page but not custom labels.
_VISIBLE_LABEL_TAGS = {"guide", "control"}

# Distributions whose versions go into the report's environment.
_REPORTED_DISTRIBUTIONS = (
    "byok",
    "PyKCS11",
    "cryptography",
    "aliyun-python-sdk-core",
    "aliyun-python-sdk-kms",
    "alibabacloud-kms20160120",
    "pytest",
    "pytest-bdd",
    "allure-pytest-bdd",
)

_scenarios: dict[str, dict[str, Any]] = {}
_results: dict[str, dict[str, Any]] = {}
_environment: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("byok").addoption(
        "--byok-summary",
        default=None,
        help="write a JSON summary of scenario outcomes to this file",
    )
    parser.getgroup("byok").addoption(
        "--byok-evidence",
        default=None,
        help="write every step's evidence record of the run to this JSON file",
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
    if name in _VISIBLE_LABEL_TAGS:
        allure.tag(f"{name}:{value}")(function)
    return True


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stop the run before any scenario executes when a selected scenario has a step without a definition.

    Runs last, after ``-k`` and ``-m`` deselection, so a subset can run while another
    feature is being written; a full run checks every scenario.
    """
    missing = find_undefined_steps(session, items)
    if missing:
        listed = "\n".join(f"  {path}:{line}: {step}" for path, line, step in missing)
        raise pytest.UsageError(
            f"{len(missing)} Gherkin step(s) have no step definition:\n{listed}\n"
            "Fix: add a step definition under steps/ (pytest --generate-missing --feature features steps prints stubs), "
            "or correct the step text in the feature file"
        )


def find_undefined_steps(session: pytest.Session, items: list[pytest.Item]) -> list[tuple[str, int, str]]:
    """Return (feature file, line, step text) for every scenario step no definition matches."""
    # The same lookup pytest-bdd 9's --generate-missing performs (generation.py); the
    # helper is private, so pytest-bdd is pinned below 10 in pyproject.toml.
    from pytest_bdd.generation import _find_step_fixturedef
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    missing: dict[tuple[str, int, str], None] = {}
    for item in items:
        template = scenario_wrapper_template_registry.get(getattr(item, "obj", None))
        if template is None:
            continue
        example = getattr(item, "callspec", None)
        context = example.params.get("_pytest_bdd_example", {}) if example else {}
        scenario = template.render(context)
        for step in scenario.steps:
            if not _find_step_fixturedef(session._fixturemanager, item, step):
                where = os.path.relpath(scenario.feature.filename, session.config.rootpath)
                missing[(where, step.line_number, f"{step.keyword.strip()} {step.name}")] = None
    return sorted(missing)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    """Record non-secret facts about the run from the fixtures that establish it."""
    value = yield
    try:
        _record_environment(fixturedef.argname, value)
    except Exception as error:  # noqa: BLE001 - facts for the report must never fail a run
        logging.getLogger(__name__).warning("could not record %s facts for the report: %s", fixturedef.argname, error)
    return value


def _record_environment(name: str, value: Any) -> None:
    if name == "profile" and value is not None:
        _environment.update(
            {
                "profile": value.name,
                "hsm.family": value.hsm.family,
                "hsm.module": value.hsm.module,
                "hsm.token.label": value.hsm.token_label,
                "kms.endpoint": value.kms.endpoint,
                "kms.region": value.kms.region,
                "kms.wrapping_algorithm": value.kms.wrapping_algorithm,
                "kms.wrapping_key_spec": value.kms.wrapping_key_spec,
                "fips": value.fips,
            }
        )
    elif name == "hsm" and value is not None and hasattr(value, "token_info"):
        token = value.token_info()
        _environment.update(
            {
                "hsm.token.label": token.label,
                "hsm.token.manufacturer": token.manufacturer_id,
                "hsm.token.model": token.model,
                "hsm.token.firmware": token.firmware_version,
                "hsm.token.hardware": token.hardware_version,
                "hsm.library": f"{token.library_description} {token.library_version}",
                "hsm.cryptoki": token.cryptoki_version,
            }
        )
    elif name == "kms" and value is not None and hasattr(value, "endpoint"):
        endpoint = value.endpoint
        _environment["kms.endpoint"] = f"{endpoint.protocol}://{endpoint.host}:{endpoint.port}"
        _environment["kms.region"] = value.region


def run_environment() -> dict[str, Any]:
    """Return the run's environment facts: fixtures' facts, then library versions."""
    facts = dict(_environment)
    for distribution in _REPORTED_DISTRIBUTIONS:
        try:
            facts[f"version.{distribution}"] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            facts[f"version.{distribution}"] = "not installed"
    return facts


@pytest.hookimpl(trylast=True)
def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature, scenario) -> None:
    callspec = getattr(request.node, "callspec", None)
    example = callspec.params.get("_pytest_bdd_example", {}) if callspec else {}
    _scenarios[request.node.nodeid] = {
        "feature": feature.name,
        "scenario": scenario.name,
        "feature_file": feature.rel_filename,
        "line": scenario.line_number,
        # The fullName allure-pytest-bdd gives the result, and the outline values it
        # records as parameters: the keys the reconciliation matches on.
        "allure_full_name": f"{os.path.normpath(feature.rel_filename)}:{scenario.name}",
        "parameters": {str(name): str(value) for name, value in example.items()},
    }
    # The Suites tab then lists the guide's sections (one feature each) at the top level;
    # the Behaviors tab nests them under the epic.
    _allure_suite_label(feature.name)
    for tag, reason in _RUNTIME_SKIP_TAGS.items():
        if tag not in scenario.tags:
            continue
        profile = request.getfixturevalue("profile")
        uses_emulator = profile.kms.uses_emulator
        if (tag == "emulator-only" and not uses_emulator) or (tag == "live-only" and uses_emulator):
            # Skipping here, after the Allure listener opened the test case, keeps the
            # scenario in the report as skipped with its reason.
            pytest.skip(reason)


def _allure_suite_label(name: str) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest-bdd is a dependency
        return
    allure.dynamic.label("suite", name)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    try:
        return (yield)
    except BlockedByEnvironment as blocked:
        pytest.skip(BLOCKED_PREFIX + blocked.diagnostics().replace("\n", " "))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if item.nodeid in _scenarios or item.nodeid.startswith("steps/"):
        status = _allure_status(report, call)
        entry = _results.setdefault(item.nodeid, {"outcome": "passed", "duration": 0.0, "reason": ""})
        current = entry.get("allure_status")
        # allure-pytest-bdd keeps the first non-passed status of setup and call, and lets
        # a failing teardown override only a pass.
        if current is None or current == "passed":
            if report.when != "teardown" or status in ("failed", "broken"):
                entry["allure_status"] = status
    return report


def _allure_status(report: pytest.TestReport, call: pytest.CallInfo) -> str:
    if report.failed:
        if call.excinfo is None:
            return "broken"
        if isinstance(call.excinfo.value, (pytest.skip.Exception, pytest.xfail.Exception)):
            return "skipped"
        if isinstance(call.excinfo.value, (AssertionError, pytest.fail.Exception)):
            return "failed"
        return "broken"
    if report.skipped:
        return "skipped"
    return "passed"


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
                "allure_status": result.get("allure_status", "unknown"),
                "allure_full_name": names.get("allure_full_name", ""),
                "parameters": names.get("parameters", {}),
                "duration": round(result["duration"], 3),
                "reason": result["reason"],
            }
        )
    rows.sort(key=lambda row: (row["feature_file"], row["line"]))
    path = Path(target)
    # This process registered every Secret it created, import tokens included; the
    # parent process cannot know those values, so the Allure results are scanned here.
    results_scan: dict[str, Any] = {"files_scanned": 0, "hits": []}
    alluredir = session.config.getoption("--alluredir", default=None)
    if alluredir and Path(alluredir).is_dir():
        # The run folder (where the summary goes) contains the results and the evidence file
        # written at fixture teardown; nothing outside it is scanned.
        run_folder = path.parent.resolve()
        scanned_paths = [run_folder] if Path(alluredir).resolve().is_relative_to(run_folder) else [Path(alluredir)]
        hits, scanned = scan_paths(scanned_paths)
        results_scan = {
            "files_scanned": scanned,
            "hits": [{"file": hit.path, "secret": hit.secret_name, "encoding": hit.encoding} for hit in hits],
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "exitstatus": int(exitstatus),
                "finished": time.time(),
                "environment": run_environment(),
                "results_secret_scan": results_scan,
                "scenarios": rows,
            },
            indent=2,
            default=str,
        ),
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

"""Files written into ``allure-results/`` before generation: environment, categories, executor.

Allure 2 reads ``environment.properties`` (Environment widget), ``categories.json``
(failure categories, matched against the status message and trace) and
``executor.json`` (build name and order, which label the trend charts). None of them
may hold a secret: the values come from the profile, the token's C_GetTokenInfo and
package metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Allure 2 matches messageRegex and traceRegex with Java's Pattern.matches, so each
# pattern must match the whole text: (?s) lets ".*" cross the lines of a trace. The
# first matching category wins, so the most specific come first.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Secret leak",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?si).*(secret leak|SecretLeak|leaked secret).*",
    },
    {
        "name": "Inconsistent key state",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?si).*inconsistent key state.*",
    },
    {
        "name": "KMS rejections",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*\b[A-Z][A-Za-z]+ failed: [A-Z][A-Za-z]*(\.[A-Za-z]+)* \(HTTP \d{3}\).*",
    },
    {
        "name": "PKCS#11 errors",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*\bCKR_[A-Z0-9_]+.*",
    },
    {
        "name": "HSM object attributes differ from the guide",
        "matchedStatuses": ["failed"],
        "messageRegex": r"(?s).*reads back CKA_[A-Z_]+=.*",
    },
    {
        "name": "Blocked by environment",
        "matchedStatuses": ["skipped"],
        "messageRegex": r"(?si).*blocked by environment.*",
    },
    {
        "name": "Not applicable to this profile",
        "matchedStatuses": ["skipped"],
        "messageRegex": r"(?s).*runs only against the .*",
    },
]


def _escape_properties(text: str, *, key: bool) -> str:
    # java.util.Properties escapes: backslash, line breaks, and in keys also = : and spaces.
    text = str(text).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if key:
        for character in "=: ":
            text = text.replace(character, "\\" + character)
    return text


def write_environment(results_dir: Path, environment: Mapping[str, Any]) -> Path:
    """Write ``environment.properties`` with one ``key=value`` line per entry, in order."""
    lines = [f"{_escape_properties(key, key=True)}={_escape_properties(value, key=False)}" for key, value in environment.items()]
    path = results_dir / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_categories(results_dir: Path) -> Path:
    path = results_dir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2), encoding="utf-8")
    return path


def write_executor(results_dir: Path, *, run_id: str, build_order: int, report_name: str) -> Path:
    """Write ``executor.json``; ``buildOrder`` must grow per run so trend points are labelled."""
    executor = {
        "name": "byok",
        "type": "byok-certify",
        "buildName": run_id,
        "buildOrder": build_order,
        "reportName": report_name,
    }
    path = results_dir / "executor.json"
    path.write_text(json.dumps(executor, indent=2), encoding="utf-8")
    return path


def read_report_name(run_dir: Path) -> str | None:
    """Return the ``reportName`` recorded in a run folder, or None when it has none."""
    try:
        executor = json.loads((run_dir / "allure-results" / "executor.json").read_text(encoding="utf-8"))
        return str(executor["reportName"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_build_order(run_dir: Path) -> int | None:
    """Return the ``buildOrder`` recorded in a run folder, or None when it has none."""
    try:
        executor = json.loads((run_dir / "allure-results" / "executor.json").read_text(encoding="utf-8"))
        return int(executor["buildOrder"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

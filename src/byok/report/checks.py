"""Checks that decide whether a generated Allure report may be handed to an auditor.

1. No external host: the page must open offline and send nothing anywhere. Every
   ``http(s)://`` URL in the page and in every base64 payload decoded from it must be on
   the allow-list below, whose entries are identifiers or inert strings, never fetched.
2. Reconciliation: the outcomes the report shows must equal pytest's own, scenario by
   scenario. Allure's generator skips result files it cannot read, for example one whose
   parameter value is a JSON object instead of a string, which older allure-pytest-bdd
   versions wrote for failing outline rows. A report can then look healthier than the
   run, so any difference marks the report incomplete.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byok.report.singlefile import decoded_texts, embedded_files, embedded_json

ALLURE_STATUSES = ("passed", "failed", "broken", "skipped", "unknown")

_URL = re.compile(r"""https?://[^\s"'<>()`\\]*""")

# URL prefixes allowed in the page. Each is an XML namespace name, which a browser
# compares as a string and never fetches, or a string in Allure 2.46.1's bundled
# scripts that the page does not load. A new Allure version that adds a URL fails the
# check until someone reviews the URL and adds it here.
ALLOWED_URL_PREFIXES: dict[str, str] = {
    "http://www.w3.org/2000/svg": "SVG namespace",
    "http://www.w3.org/1999/xhtml": "XHTML namespace",
    "http://www.w3.org/1999/xlink": "XLink namespace",
    "http://www.w3.org/XML/1998/namespace": "xml: prefix namespace",
    "http://www.w3.org/2000/xmlns/": "xmlns: prefix namespace",
    "http://www.w3.org/1998/Math/MathML": "MathML namespace",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns": "RDF namespace in the metadata of Allure's SVG logo",
    "http://purl.org/dc/": "Dublin Core namespace in the metadata of Allure's SVG logo",
    "http://creativecommons.org/ns": "Creative Commons namespace in the metadata of Allure's SVG logo",
    "http://www.inkscape.org/": "Inkscape namespace in the metadata of Allure's SVG logo",
    "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd": "Sodipodi namespace in the metadata of Allure's SVG logo",
    "https://allure.local": "base URL Allure's script passes to new URL() to classify links; never fetched",
    "https://github.com/highlightjs/highlight.js/": "text of highlight.js console warnings",
    # Allure offers this viewer only for Playwright trace attachments, which byok never writes.
    "https://trace.playwright.dev": "link target for Playwright trace attachments",
}
# A template literal such as `https://${n}` builds a link from report data at run time.
# The data itself is scanned, so the template is not a reference.
_TEMPLATE_URL = re.compile(r"^https?://\$\{")
LOOPBACK_HOSTS = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class ExternalReference:
    """A URL in the report that is not on the allow-list, with where it was found."""

    url: str
    where: str


def find_external_references(html: str, *, allowed_hosts: tuple[str, ...] = ()) -> list[ExternalReference]:
    """Return every URL in the page or its decoded payloads that is not allowed.

    URLs to loopback hosts (the emulator's endpoint in recorded evidence) and to
    ``allowed_hosts`` (the run's own KMS endpoint) are evidence text, not references.
    """
    found: dict[str, ExternalReference] = {}
    for where, text in decoded_texts(html):
        for match in _URL.finditer(text):
            url = match.group(0)
            if _is_allowed(url, allowed_hosts) or url in found:
                continue
            found[url] = ExternalReference(url, where)
    return sorted(found.values(), key=lambda reference: reference.url)


def _is_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    if _TEMPLATE_URL.match(url) or any(url.startswith(prefix) for prefix in ALLOWED_URL_PREFIXES):
        return True
    host = url.split("://", 1)[1].split("/", 1)[0]
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return hostname.startswith(LOOPBACK_HOSTS) or hostname in allowed_hosts


# -- reconciliation ----------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """Outcome counts from pytest, the Allure result files and the generated report."""

    pytest_counts: dict[str, int]
    results_counts: dict[str, int]
    report_counts: dict[str, int]
    differences: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.differences


def _key(full_name: str, parameters: dict[str, str]) -> str:
    if not parameters:
        return full_name
    listed = ", ".join(f"{name}={value}" for name, value in sorted(parameters.items()))
    return f"{full_name} [{listed}]"


def _check_result_file(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Read one ``*-result.json``; return (result, None) or (None, why it is unusable)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path.name} cannot be read as JSON: {error}"
    if not isinstance(result, dict):
        return None, f"{path.name} holds a {type(result).__name__}, not a JSON object"
    for name in ("name", "fullName", "status"):
        if not isinstance(result.get(name), str):
            return None, f"{path.name} has no string {name}"
    if result["status"] not in ALLURE_STATUSES:
        return None, f"{path.name} has status {result['status']!r}, not one of {', '.join(ALLURE_STATUSES)}"
    for kind in ("parameters", "labels"):
        for entry in result.get(kind) or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("value"), str):
                return None, f"{path.name} has a {kind[:-1]} whose name or value is not a string: {entry!r}"
    return result, None


def _pytest_entries(summary: dict[str, Any]) -> Counter:
    entries: Counter = Counter()
    for row in summary.get("scenarios", []):
        full_name = row.get("allure_full_name") or row.get("nodeid", "")
        entries[(_key(full_name, row.get("parameters") or {}), row.get("allure_status", "unknown"))] += 1
    return entries


def _parameters_of(result: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in result.get("parameters") or []}


def _report_entries(html: str) -> tuple[Counter, dict[str, int] | None, list[str]]:
    files = embedded_files(html)
    problems = []
    entries: Counter = Counter()
    for name in sorted(files):
        if not name.startswith("data/test-cases/"):
            continue
        try:
            case = embedded_json(files, name)
        except ValueError as error:
            problems.append(str(error))
            continue
        entries[(_key(case.get("fullName", ""), _parameters_of(case)), case.get("status", "unknown"))] += 1
    statistic = None
    try:
        statistic = embedded_json(files, "widgets/summary.json").get("statistic")
    except ValueError as error:
        problems.append(str(error))
    return entries, statistic, problems


def _counts(entries: Counter) -> dict[str, int]:
    counts = dict.fromkeys(ALLURE_STATUSES, 0)
    for (_, status), number in entries.items():
        counts[status] = counts.get(status, 0) + number
    counts["total"] = sum(entries.values())
    return counts


def reconcile(summary: dict[str, Any], results_dir: Path, report_html: str) -> Reconciliation:
    """Compare pytest's outcomes with the Allure result files and with the generated report."""
    differences: list[str] = []
    results: Counter = Counter()
    for path in sorted(results_dir.glob("*-result.json")):
        result, problem = _check_result_file(path)
        if problem:
            differences.append(f"unreadable result file: {problem}")
            continue
        results[(_key(result["fullName"], _parameters_of(result)), result["status"])] += 1

    expected = _pytest_entries(summary)
    shown, statistic, problems = _report_entries(report_html)
    differences.extend(f"report data: {problem}" for problem in problems)

    for label, actual in (("Allure results", results), ("the generated report", shown)):
        for (name, status), number in sorted((expected - actual).items()):
            others = sorted(other_status for (other_name, other_status) in actual if other_name == name)
            if others:
                differences.append(f"{name}: pytest {status}, {label} {'/'.join(others)}")
            else:
                differences.append(f"{name}: pytest {status}, missing from {label}" + (f" ({number}x)" if number > 1 else ""))
        for (name, status), number in sorted((actual - expected).items()):
            if not any(expected_name == name for (expected_name, _) in expected):
                differences.append(f"{name}: {status} in {label} but not among pytest's outcomes")

    report_counts = _counts(shown)
    if statistic is not None:
        for status in (*ALLURE_STATUSES, "total"):
            if int(statistic.get(status, 0)) != report_counts.get(status, 0):
                differences.append(
                    f"the report's summary widget counts {statistic.get(status, 0)} {status}, "
                    f"its test cases {report_counts.get(status, 0)}"
                )
    return Reconciliation(_counts(expected), _counts(results), report_counts, differences)

"""The report checks on synthetic single-file pages and result folders: external hosts and reconciliation."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from byok.report.checks import find_external_references, reconcile
from byok.report.sidefiles import CATEGORIES, write_environment


def embedded(name: str, data: str) -> str:
    return f"d('{name}','{base64.b64encode(data.encode()).decode()}')"


def page(*calls: str, body: str = "") -> str:
    return f"<html><body>{body}<script>{','.join(calls)}</script></body></html>"


def test_namespaces_and_loopback_allowed() -> None:
    html = page(
        embedded("data/attachments/a.json", '{"endpoint": "http://127.0.0.1:41234"}'),
        body='<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"></svg>',
    )
    assert find_external_references(html) == []


def test_external_host_in_page_found() -> None:
    references = find_external_references(page(body='<script src="https://cdn.example.com/x.js"></script>'))
    assert [reference.url for reference in references] == ["https://cdn.example.com/x.js"]
    assert references[0].where == "index.html"


def test_external_host_in_embedded_file_found() -> None:
    html = page(embedded("data/test-cases/1.json", '{"link": "https://tracker.example.org/T-1"}'))
    references = find_external_references(html)
    assert [reference.url for reference in references] == ["https://tracker.example.org/T-1"]
    assert references[0].where == "embedded data/test-cases/1.json"


def test_external_host_in_data_uri_found() -> None:
    script = base64.b64encode(b"fetch('https://www.googletagmanager.com/gtag/js')").decode()
    html = page(body=f'<script src="data:text/javascript; charset=utf-8;base64,{script}"></script>')
    urls = [reference.url for reference in find_external_references(html)]
    assert urls == ["https://www.googletagmanager.com/gtag/js"]


def test_run_endpoint_allowed_when_named() -> None:
    html = page(embedded("data/attachments/a.json", "KmsClient(endpoint=https://kms.cn-hangzhou.aliyuncs.com:443)"))
    assert len(find_external_references(html)) == 1
    assert find_external_references(html, allowed_hosts=("kms.cn-hangzhou.aliyuncs.com",)) == []


# -- reconciliation -----------------------------------------------------------------------------


def write_result(folder: Path, name: str, full_name: str, status: str, parameters: list | None = None) -> None:
    result = {"name": full_name.split(":")[-1], "fullName": full_name, "status": status, "parameters": parameters or []}
    (folder / f"{name}-result.json").write_text(json.dumps(result))


def report_page(cases: list[tuple[str, str, dict]]) -> str:
    calls = []
    statistic = {"passed": 0, "failed": 0, "broken": 0, "skipped": 0, "unknown": 0, "total": len(cases)}
    for number, (full_name, status, parameters) in enumerate(cases):
        case = {"fullName": full_name, "status": status, "parameters": [{"name": k, "value": v} for k, v in parameters.items()]}
        calls.append(embedded(f"data/test-cases/{number}.json", json.dumps(case)))
        statistic[status] += 1
    calls.append(embedded("widgets/summary.json", json.dumps({"statistic": statistic})))
    return page(*calls)


SUMMARY = {
    "scenarios": [
        {"allure_full_name": "features/a.feature:One", "allure_status": "passed", "parameters": {}},
        {"allure_full_name": "features/a.feature:Outline", "allure_status": "failed", "parameters": {"algorithm": "A"}},
        {"allure_full_name": "features/a.feature:Outline", "allure_status": "passed", "parameters": {"algorithm": "B"}},
    ]
}
CASES = [
    ("features/a.feature:One", "passed", {}),
    ("features/a.feature:Outline", "failed", {"algorithm": "A"}),
    ("features/a.feature:Outline", "passed", {"algorithm": "B"}),
]


def complete_results(folder: Path) -> None:
    write_result(folder, "1", "features/a.feature:One", "passed")
    write_result(folder, "2", "features/a.feature:Outline", "failed", [{"name": "algorithm", "value": "A"}])
    write_result(folder, "3", "features/a.feature:Outline", "passed", [{"name": "algorithm", "value": "B"}])


def test_matching_outcomes_complete(tmp_path: Path) -> None:
    complete_results(tmp_path)
    outcome = reconcile(SUMMARY, tmp_path, report_page(CASES))
    assert outcome.differences == []
    assert outcome.pytest_counts["failed"] == 1
    assert outcome.report_counts["total"] == 3


def test_failed_outline_row_missing_from_report(tmp_path: Path) -> None:
    complete_results(tmp_path)
    outcome = reconcile(SUMMARY, tmp_path, report_page([CASES[0], CASES[2]]))
    assert not outcome.complete
    assert outcome.differences == [
        "features/a.feature:Outline [algorithm=A]: pytest failed, missing from the generated report"
    ]


def test_non_string_parameter_unreadable(tmp_path: Path) -> None:
    complete_results(tmp_path)
    write_result(tmp_path, "2", "features/a.feature:Outline", "failed", [{"name": "algorithm", "value": {"row": "A"}}])
    outcome = reconcile(SUMMARY, tmp_path, report_page(CASES))
    assert any("2-result.json has a parameter whose name or value is not a string" in line for line in outcome.differences)
    assert any("missing from Allure results" in line for line in outcome.differences)


def test_invalid_json_unreadable(tmp_path: Path) -> None:
    complete_results(tmp_path)
    (tmp_path / "3-result.json").write_text('{"name": ')
    outcome = reconcile(SUMMARY, tmp_path, report_page(CASES))
    assert any(line.startswith("unreadable result file: 3-result.json cannot be read as JSON") for line in outcome.differences)


def test_outcome_differs_named(tmp_path: Path) -> None:
    complete_results(tmp_path)
    cases = [CASES[0], ("features/a.feature:Outline", "passed", {"algorithm": "A"}), CASES[2]]
    outcome = reconcile(SUMMARY, tmp_path, report_page(cases))
    assert "features/a.feature:Outline [algorithm=A]: pytest failed, the generated report passed" in outcome.differences


def test_summary_widget_disagreement_found(tmp_path: Path) -> None:
    complete_results(tmp_path)
    html = report_page(CASES).replace(
        embedded("widgets/summary.json", json.dumps({"statistic": {"passed": 2, "failed": 1, "broken": 0, "skipped": 0, "unknown": 0, "total": 3}})),
        embedded("widgets/summary.json", json.dumps({"statistic": {"passed": 3, "failed": 0, "broken": 0, "skipped": 0, "unknown": 0, "total": 3}})),
    )
    outcome = reconcile(SUMMARY, tmp_path, html)
    assert "the report's summary widget counts 3 passed, its test cases 2" in outcome.differences


# -- side files -----------------------------------------------------------------------------------


def category_of(message: str, status: str) -> str | None:
    # Allure 2 applies Java's Pattern.matches (a full match) in list order.
    for category in CATEGORIES:
        if status in category["matchedStatuses"] and re.fullmatch(category["messageRegex"], message):
            return category["name"]
    return None


def test_categories_classify_messages() -> None:
    kms = "byok.errors.KmsError: ImportKeyMaterial failed: InvalidKeyMaterial (HTTP 400): key material is invalid"
    assert category_of(kms, "broken") == "KMS rejections"
    assert category_of("HsmError: C_WrapKey returned CKR_MECHANISM_INVALID\nsecond line", "broken") == "PKCS#11 errors"
    assert category_of("blocked by environment: SoftHSM2 2.6.1 has no OAEP SHA-256", "skipped") == "Blocked by environment"
    assert category_of("CheckFailed: inconsistent key state for k after ImportKeyMaterial", "failed") == "Inconsistent key state"
    assert category_of("AssertionError: byok-wrap-1 reads back CKA_TOKEN=True", "failed") == "HSM object attributes differ from the guide"
    assert category_of("AssertionError: something else", "failed") is None


def test_environment_properties_escaped(tmp_path: Path) -> None:
    path = write_environment(tmp_path, {"hsm token": "a=b", "multi": "one\ntwo"})
    assert path.read_text() == "hsm\\ token=a=b\nmulti=one\\ntwo\n"

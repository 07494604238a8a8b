"""End-to-end runs of ``byok certify`` on the default profile, as a validation engineer runs it.

Two runs go into the same reports folder, so the second report must carry the first
one's history.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from byok.evidence.leaks import secret_variants
from byok.report.checks import find_external_references
from byok.report.singlefile import embedded_files

GUIDE_FEATURES = {
    "Create a CMK with external key material and download the import parameters",
    "Import the wrapping public key into the HSM",
    "Generate the AES-256 key in the HSM",
    "Wrap the AES key with the wrapping public key",
    "Upload the key material",
    "Use the CMK to encrypt and decrypt",
}
BEYOND_GUIDE_FEATURES = {
    "Key material lifecycle: expiry, deletion and re-import",
    "Preconditions checked before any key material reaches KMS",
    "Binding proof: KMS holds exactly the HSM's key",
}
FEATURE_FILES = (
    "01_create_external_cmk",
    "02_import_wrapping_public_key",
    "03_generate_aes_key",
    "04_wrap_aes_key",
    "05_upload_key_material",
    "06_encrypt_decrypt",
    "09_key_material_lifecycle",
    "10_preconditions",
    "11_binding_proof",
)


def run_byok(args: list[str], state: Path, cwd: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    environment.pop("BYOK_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "byok.cli", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )


def allure_results(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*-result.json"))]


def feature_of(result: dict) -> str:
    for label in result.get("labels", []):
        if label["name"] == "feature" and " " in label["value"]:
            return label["value"]
    return next((label["value"] for label in result.get("labels", []) if label["name"] == "parentSuite"), "")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, list[subprocess.CompletedProcess]]:
    state = tmp_path_factory.mktemp("state")
    workdir = tmp_path_factory.mktemp("work")
    runs = [run_byok(["certify", "--output", str(workdir / f"run{n}")], state, workdir) for n in (1, 2)]
    return state, workdir, runs


def test_certify_passes_twice(two_runs) -> None:
    _, _, runs = two_runs
    for run in runs:
        assert run.returncode == 0, run.stdout[-4000:]
        assert "verdict: PASSED" in run.stdout


def test_allure_results_cover_every_section(two_runs) -> None:
    _, workdir, _ = two_runs
    for name in ("run1", "run2"):
        results = allure_results(workdir / name / "allure-results")
        statuses = {result["status"] for result in results}
        assert statuses <= {"passed", "skipped"}, f"{name}: statuses {statuses}"
        for result in results:
            if result["status"] == "skipped":
                assert result.get("statusDetails", {}).get("message"), f"{name}: {result['name']} skipped without a reason"
        full_names = " ".join(result.get("fullName", "") for result in results)
        for feature_file in FEATURE_FILES:
            assert feature_file in full_names, f"{name}: no result for {feature_file}"


def test_second_run_reuses_token(two_runs) -> None:
    state, _, _ = two_runs
    tokens = list((state / "softhsm2" / "tokens").iterdir())
    assert len(tokens) == 1, f"expected one SoftHSM2 token folder, found {len(tokens)}"


def test_secret_files_are_private(two_runs) -> None:
    state, _, _ = two_runs
    files = sorted((state / "secrets").iterdir())
    assert {path.name for path in files} >= {"softhsm-user-pin", "softhsm-so-pin", "emulator-root-access-key-secret"}
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by group or others"


def test_no_secret_in_reports_or_console(two_runs) -> None:
    state, workdir, runs = two_runs
    values = {path.name: path.read_text().strip() for path in (state / "secrets").iterdir()}
    assert all(values.values()), "a secret file is empty"
    haystacks = {f"console of run {n + 1}": run.stdout.encode() for n, run in enumerate(runs)}
    for path in workdir.rglob("*"):
        if path.is_file():
            haystacks[str(path.relative_to(workdir))] = path.read_bytes()
    for where, data in haystacks.items():
        for name, value in values.items():
            for encoding, needle in secret_variants(value).items():
                assert needle not in data, f"{name} ({encoding}) appears in {where}"


def test_summary_lists_scenarios(two_runs) -> None:
    _, workdir, _ = two_runs
    summary = json.loads((workdir / "run1" / "summary.json").read_text())
    features = {row["feature"] for row in summary["scenarios"]}
    assert GUIDE_FEATURES <= features
    assert BEYOND_GUIDE_FEATURES <= features
    assert summary["secret_scan"]["hits"] == []


# -- the Allure report ------------------------------------------------------------------------


def test_report_is_one_offline_file(two_runs) -> None:
    _, workdir, _ = two_runs
    for name in ("run1", "run2"):
        report = workdir / name / "allure-report"
        assert sorted(path.name for path in report.iterdir()) == ["history", "index.html"]
        html = (report / "index.html").read_text()
        assert "googletagmanager" not in html
        assert find_external_references(html) == [], f"{name}: external references in the report"


def test_report_reconciled_with_pytest(two_runs) -> None:
    _, workdir, _ = two_runs
    for name in ("run1", "run2"):
        summary = json.loads((workdir / name / "summary.json").read_text())
        assert summary["report"]["complete"] is True, summary["report"]["problems"]
        assert summary["report"]["problems"] == []
        statistic = json.loads(embedded_files((workdir / name / "allure-report" / "index.html").read_text())["widgets/summary.json"])["statistic"]
        assert statistic["total"] == len(summary["scenarios"])
        assert statistic["passed"] == sum(row["outcome"] == "passed" for row in summary["scenarios"])


def test_outline_rows_are_separate_results(two_runs) -> None:
    _, workdir, _ = two_runs
    results = allure_results(workdir / "run1" / "allure-results")
    algorithms = sorted(
        parameter["value"]
        for result in results
        if result["name"] == "Import parameters for each wrapping algorithm KMS offers"
        for parameter in result.get("parameters", [])
    )
    assert algorithms == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSAES_PKCS1_V1_5"]


def test_second_report_has_history(two_runs) -> None:
    _, workdir, runs = two_runs
    assert "report history: none (first run of this profile in this folder)" in runs[0].stdout
    assert "report history: from run run1 (build 1)" in runs[1].stdout
    files = embedded_files((workdir / "run2" / "allure-report" / "index.html").read_text())
    trend = json.loads(files["history/history-trend.json"])
    assert [point["buildOrder"] for point in trend] == [2, 1]
    assert all(point["data"]["failed"] == 0 for point in trend)
    history = json.loads(files["history/history.json"])
    assert any(len(entry["items"]) == 2 for entry in history.values()), "no test has two runs in its history"


def test_side_files_written(two_runs) -> None:
    _, workdir, _ = two_runs
    for order, name in enumerate(("run1", "run2"), start=1):
        results = workdir / name / "allure-results"
        executor = json.loads((results / "executor.json").read_text())
        assert executor["name"] == "byok"
        assert executor["buildOrder"] == order
        assert executor["buildName"] == json.loads((workdir / name / "summary.json").read_text())["environment"].get("run_id", executor["buildName"])
        categories = {category["name"] for category in json.loads((results / "categories.json").read_text())}
        assert {"KMS rejections", "PKCS#11 errors", "Blocked by environment", "Secret leak", "Inconsistent key state"} <= categories
    properties = dict(
        line.split("=", 1) for line in (workdir / "run1" / "allure-results" / "environment.properties").read_text().splitlines()
    )
    assert properties["history"] == "none (first run of this profile in this folder)"
    assert properties["profile"] == "softhsm-emulator"
    assert properties["hsm.token.manufacturer"] == "SoftHSM project"
    assert properties["hsm.token.firmware"]
    assert properties["kms.wrapping_algorithm"] == "RSAES_OAEP_SHA_1"
    assert properties["kms.endpoint"].startswith("http://127.0.0.1:")
    for distribution in ("byok", "PyKCS11", "cryptography", "aliyun-python-sdk-kms", "pytest-bdd", "allure-pytest-bdd"):
        assert properties[f"version.{distribution}"] != "not installed", distribution


def test_guide_and_control_tags_visible(two_runs) -> None:
    _, workdir, _ = two_runs
    results = allure_results(workdir / "run1" / "allure-results")
    upload = next(result for result in results if result["name"] == "Importing the wrapped AES key enables the CMK")
    tags = {label["value"] for label in upload["labels"] if label["name"] == "tag"}
    assert {"guide:upload-key-material", "control:KMS-01"} <= tags


def test_live_only_skipped_with_reason(two_runs) -> None:
    _, workdir, _ = two_runs
    results = allure_results(workdir / "run1" / "allure-results")
    live = [result for result in results if result["name"] == "Against the real service the binding proof is informational"]
    assert [result["status"] for result in live] == ["skipped"]
    assert "runs only against the real Alibaba Cloud KMS" in live[0]["statusDetails"]["message"]


def test_no_import_token_in_results(two_runs) -> None:
    state, workdir, _ = two_runs
    # The emulator stores only SHA-256 hashes of the tokens it issued; hash every base64
    # run in the results and look for one of them.
    with sqlite3.connect(state / "emulator" / "kms.sqlite3") as database:
        token_hashes = {bytes(row[0]) for row in database.execute("SELECT token_sha256 FROM import_tokens")}
    assert token_hashes, "the emulator issued no import token"
    for name in ("run1", "run2"):
        for path in (workdir / name).rglob("*"):
            if not path.is_file() or path.suffix == ".html":
                continue
            for candidate in re.findall(rb"[A-Za-z0-9+/]{40,}={0,2}", path.read_bytes()):
                try:
                    decoded = base64.b64decode(candidate, validate=True)
                except (binascii.Error, ValueError):
                    continue
                assert hashlib.sha256(decoded).digest() not in token_hashes, f"an import token appears in {path}"
        summary = json.loads((workdir / name / "summary.json").read_text())
        assert summary["results_secret_scan"]["files_scanned"] > 0
        assert summary["results_secret_scan"]["hits"] == []


def test_run_folder_is_sealed(two_runs) -> None:
    _, workdir, runs = two_runs
    folder = workdir / "run1"
    for name in ("SHA256SUMS", "SHA256SUMS.p7s", "report-signer.pem", "evidence.json"):
        assert (folder / name).is_file(), f"{name} missing from the run folder"
    assert "sealed: SHA256SUMS" in runs[0].stdout
    openssl = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "SHA256SUMS.p7s", "-content", "SHA256SUMS",
         "-CAfile", "report-signer.pem", "-out", "/dev/null"],
        cwd=folder, capture_output=True, text=True, check=False,
    )
    assert openssl.returncode == 0, openssl.stderr
    sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, check=False)
    assert sums.returncode == 0, sums.stdout[-2000:]
    verify = run_byok(["report", "verify", str(folder)], workdir, workdir)
    assert verify.returncode == 0, verify.stdout


def test_evidence_file_lists_guide_steps(two_runs) -> None:
    _, workdir, _ = two_runs
    document = json.loads((workdir / "run1" / "evidence.json").read_text())
    steps = {record["step"] for record in document["records"]}
    for step in ("create_external_key", "get_import_parameters", "import_wrapping_public_key",
                 "generate_aes_key", "wrap_aes_key", "import_key_material", "encrypt_decrypt"):
        assert step in steps, f"evidence.json has no record of {step}"

"""End-to-end runs of ``byok certify`` on the default profile, as a validation engineer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from byok.evidence.leaks import secret_variants

GUIDE_FEATURES = {
    "Create a CMK with external key material and download the import parameters",
    "Import the wrapping public key into the HSM",
    "Generate the AES-256 key in the HSM",
    "Wrap the AES key with the wrapping public key",
    "Upload the key material",
    "Use the CMK to encrypt and decrypt",
}


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
        assert statuses == {"passed"}, f"{name}: statuses {statuses}"
        full_names = " ".join(result.get("fullName", "") for result in results)
        for feature_file in (
            "01_create_external_cmk",
            "02_import_wrapping_public_key",
            "03_generate_aes_key",
            "04_wrap_aes_key",
            "05_upload_key_material",
            "06_encrypt_decrypt",
        ):
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
    assert summary["secret_scan"]["hits"] == []

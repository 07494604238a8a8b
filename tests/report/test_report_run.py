"""Reports of runs that do not simply pass: a broken control, skipped scenarios, and the page in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from byok.report.singlefile import embedded_files

ROOT = Path(__file__).resolve().parents[2]
BROKEN_PROFILE = ROOT / "profiles" / "testing" / "public-key-on-token.toml"
LIVE_ENDPOINT_PROFILE = ROOT / "profiles" / "testing" / "live-endpoint-unused.toml"
BROKEN_SCENARIO = "The wrapping public key is a PKCS#11 object allowed to wrap"

# Chromium flags that keep a headless run offline and free of first-run work.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--window-size=1400,900",
    "--virtual-time-budget=8000",
]


def run_byok(args: list[str], state: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, BYOK_STATE_DIR=str(state), **(extra_env or {}))
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


def results_of(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((folder / "allure-results").glob("*-result.json"))]


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    state = tmp_path_factory.mktemp("state")
    workdir = tmp_path_factory.mktemp("work")
    output = workdir / "broken"
    completed = run_byok(["certify", "--profile", str(BROKEN_PROFILE), "--output", str(output)], state, workdir)
    return output, completed


def test_broken_control_fails_run(broken_run) -> None:
    output, completed = broken_run
    assert completed.returncode == 1, completed.stdout[-4000:]
    assert "verdict: FAILED" in completed.stdout
    summary = json.loads((output / "summary.json").read_text())
    failed = [row["scenario"] for row in summary["scenarios"] if row["outcome"] == "failed"]
    assert failed == [BROKEN_SCENARIO]
    assert summary["report"]["complete"] is True, summary["report"]["problems"]


def test_broken_control_in_report_with_evidence(broken_run) -> None:
    output, _ = broken_run
    results = [result for result in results_of(output) if result["name"] == BROKEN_SCENARIO]
    assert [result["status"] for result in results] == ["failed"]
    result = results[0]
    assert "reads back CKA_TOKEN=True" in result["statusDetails"]["message"]
    attachments = [attachment["name"] for step in result["steps"] for attachment in step.get("attachments", [])]
    assert "evidence: import_wrapping_public_key" in attachments
    failing_step = next(step for step in result["steps"] if step["status"] == "failed")
    assert failing_step["name"] == "And the public key object is a session object"


def test_broken_control_categorized(broken_run) -> None:
    output, _ = broken_run
    files = embedded_files((output / "allure-report" / "index.html").read_text())
    categories = json.loads(files["data/categories.json"])
    names = {child["name"]: child for child in categories["children"]}
    assert "HSM object attributes differ from the guide" in names
    # Allure 2 groups a category's cases by message: category, message, test case.
    messages = names["HSM object attributes differ from the guide"]["children"]
    cases = [case["name"] for message in messages for case in message["children"]]
    assert cases == [BROKEN_SCENARIO]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed; run make setup")
def test_report_renders_in_chromium(broken_run, tmp_path: Path) -> None:
    output, _ = broken_run
    page = f"file://{output / 'allure-report' / 'index.html'}"
    screenshot = tmp_path / "suites.png"
    base = ["chromium", *CHROMIUM_FLAGS]
    shot = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={screenshot}", page + "#suites"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.returncode == 0, shot.stdout[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    dump = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", page + "#suites"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=120,
        check=False,
    )
    assert dump.returncode == 0
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", dump.stdout, flags=re.DOTALL)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", visible))
    for section in (
        "Create a CMK with external key material and download the import parameters",
        "Import the wrapping public key into the HSM",
        "Generate the AES-256 key in the HSM",
        "Wrap the AES key with the wrapping public key",
        "Upload the key material",
        "Use the CMK to encrypt and decrypt",
        "Key material lifecycle: expiry, deletion and re-import",
    ):
        assert section in text, f"the Suites page does not show {section!r}"


def test_emulator_only_skipped_with_reason(tmp_path: Path) -> None:
    # Only @emulator-only scenarios are selected, and they are skipped before any step,
    # so nothing is sent to the profile's real endpoint.
    completed = run_byok(
        ["certify", "--profile", str(LIVE_ENDPOINT_PROFILE), "--output", str(tmp_path / "skip"), "-k", "lifecycle"],
        tmp_path / "state",
        tmp_path,
        # Placeholders: byok checks that a live profile's AccessKey variables are set
        # before it starts, and these scenarios send no request.
        {
            "BYOK_TESTING_UNUSED_ACCESS_KEY_ID": "placeholder-id-never-sent",
            "BYOK_TESTING_UNUSED_ACCESS_KEY_SECRET": "placeholder-secret-never-sent",
        },
    )
    assert completed.returncode == 0, completed.stdout[-4000:]
    results = results_of(tmp_path / "skip")
    assert len(results) == 6
    for result in results:
        assert result["status"] == "skipped", result["name"]
        assert "runs only against the byok KMS emulator" in result["statusDetails"]["message"]
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["report"]["complete"] is True, summary["report"]["problems"]

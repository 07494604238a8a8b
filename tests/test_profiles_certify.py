"""``byok certify`` on the second token, the FIPS stand-in and a blocked wrapping algorithm, each in a fresh state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIPS_SCENARIO = "In FIPS mode PKCS#1 v1.5 key transport is refused before any HSM call"


def certify(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    state = tmp_path / "state"
    output = tmp_path / "report"
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    for name in ("BYOK_PROFILE", "BYOK_HSM_PIN", "BYOK_OPENCRYPTOKI_PIN"):
        environment.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-m", "byok.cli", "certify", "--output", str(output), *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )
    summary_path = output / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"scenarios": []}
    return completed, summary


def outcomes(summary: dict) -> dict[str, str]:
    return {row["scenario"]: row["outcome"] for row in summary["scenarios"]}


def test_softhsm_fips_shows_refusal(tmp_path: Path) -> None:
    completed, summary = certify(["--profile", "softhsm-fips"], tmp_path)

    assert completed.returncode == 0, completed.stdout[-3000:]
    assert outcomes(summary).get(FIPS_SCENARIO) == "passed", outcomes(summary)
    assert not [name for name, outcome in outcomes(summary).items() if outcome == "failed"]


def test_default_profile_skips_fips_scenario(tmp_path: Path) -> None:
    completed, summary = certify([], tmp_path)

    assert completed.returncode == 0, completed.stdout[-3000:]
    row = next(row for row in summary["scenarios"] if row["scenario"] == FIPS_SCENARIO)
    assert row["outcome"] == "skipped"
    assert "not in FIPS mode" in row["reason"]


def test_sha256_on_softhsm_is_blocked(tmp_path: Path) -> None:
    completed, summary = certify(["--wrapping-algorithm", "RSAES_OAEP_SHA_256"], tmp_path)

    assert completed.returncode == 3, completed.stdout[-3000:]
    assert "blocked reason 1: token 'byok-softhsm'" in completed.stdout
    assert "cannot wrap with CKM_RSA_PKCS_OAEP(hashAlg=CKM_SHA256" in completed.stdout
    blocked = next(row for row in summary["scenarios"] if row["outcome"] == "blocked")
    assert "C_WrapKey returned CKR_ARGUMENTS_BAD" in blocked["reason"]
    assert "use WrappingAlgorithm RSAES_OAEP_SHA_1" in blocked["reason"]
    results = outcomes(summary)
    assert results["The AES key is a sensitive 256-bit token key generated on the HSM"] == "passed"
    assert results["The HSM wraps the AES key with the mechanism the WrappingAlgorithm names"] == "blocked"
    assert "failed" not in results.values()


@pytest.mark.skipif(os.geteuid() != 0, reason="opencryptoki's pkcsslotd and /var/lib/opencryptoki need root")
def test_opencryptoki_profile_passes(tmp_path: Path) -> None:
    daemon_before = _pkcsslotd_running()

    completed, summary = certify(["--profile", "opencryptoki-emulator"], tmp_path)

    assert completed.returncode == 0, completed.stdout[-3000:]
    results = outcomes(summary)
    assert results["The HSM wraps the AES key with the mechanism the WrappingAlgorithm names"] == "passed"
    assert "failed" not in results.values(), results
    # byok stops the pkcsslotd it started, and only that one.
    assert _pkcsslotd_running() == daemon_before


def _pkcsslotd_running() -> bool:
    """Return whether a pkcsslotd process runs (zombies left by a container's PID 1 do not count)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != "pkcsslotd":
                continue
            state = (comm.parent / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False

"""Helpers for the runbook tests: run ``byok`` as an operator does, in a temporary state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parent / "notebooks"


def run_byok(args: list[str], state: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    environment.pop("BYOK_PROFILE", None)
    environment.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "byok.cli", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def openssl_verify(folder: Path, ca_file: str = "report-signer.pem") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "SHA256SUMS.p7s",
            "-content", "SHA256SUMS", "-CAfile", ca_file, "-out", "/dev/null",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def sha256sum_check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, check=False)


@pytest.fixture(scope="package")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A state directory and a working directory shared by the runbook tests of this package."""
    return tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("work")

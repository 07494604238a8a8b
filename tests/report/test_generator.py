"""Finding the Allure command line, and byok certify stopping before the suite when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from byok.report.generator import ALLURE_ENV, AllureNotAvailable, find_allure_cli


def test_installed_cli_found() -> None:
    cli = find_allure_cli()
    assert cli.executable.is_file()
    assert cli.version == "2.46.1"
    assert int(cli.java_version.split(".")[0]) >= 17


def test_missing_cli_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLURE_ENV, str(tmp_path / "no-allure"))
    with pytest.raises(AllureNotAvailable) as raised:
        find_allure_cli()
    assert str(tmp_path / "no-allure") in raised.value.message
    assert "make setup" in raised.value.fix


def test_certify_without_allure_exits_2(tmp_path: Path) -> None:
    environment = dict(os.environ, BYOK_STATE_DIR=str(tmp_path / "state"), **{ALLURE_ENV: str(tmp_path / "no-allure")})
    completed = subprocess.run(
        [sys.executable, "-m", "byok.cli", "certify", "--output", str(tmp_path / "run")],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2, completed.stdout
    assert "the Allure command line was not found" in completed.stdout
    assert not (tmp_path / "run").exists(), "the suite ran although no report could be generated"

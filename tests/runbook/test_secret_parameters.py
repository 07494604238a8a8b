"""A secret value passed as a notebook parameter is rejected before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from byok.secrets import write_secret_file

from .conftest import run_byok

PIN = "4829301746582910"


def test_pin_as_parameter_rejected(tmp_path: Path) -> None:
    state = tmp_path / "state"
    work = tmp_path / "work"
    work.mkdir()
    write_secret_file(state / "secrets" / "softhsm-user-pin", PIN)

    completed = run_byok(["import", "-p", "key_description", f"key for {PIN}"], state, work)

    assert completed.returncode == 2, completed.stdout[-2000:]
    assert "parameter 'key_description' contains the value of softhsm-user-pin" in completed.stdout
    assert PIN not in completed.stdout
    assert not (work / "reports").exists()
    assert not (state / "emulator").exists()


def test_import_without_people_warns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    work = tmp_path / "work"
    work.mkdir()

    completed = run_byok(["import", "--output", str(work / "bundle")], state, work)

    assert completed.returncode == 0, completed.stdout[-3000:]
    record = json.loads((work / "bundle" / "evidence.json").read_text())
    assert any(warning.startswith("people: no operator declared") for warning in record["run"]["warnings"])

"""byok emulator serve, clock and faults as an operator uses them under the state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def byok(*args: str, state: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    return subprocess.run(
        [sys.executable, "-m", "byok.cli", *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def wait_for(path: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written within {timeout} s")


@pytest.fixture
def served(tmp_path):
    """'byok emulator serve' with no options, as the README shows it."""
    environment = dict(os.environ, BYOK_STATE_DIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "byok.cli", "emulator", "serve"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = wait_for(tmp_path / "emulator" / "ready.json")
        yield tmp_path, ready
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_defaults_under_state_dir(served) -> None:
    state, ready = served
    assert ready["access_key_secret_file"] == str(state / "secrets" / "emulator-root-access-key-secret")
    assert (state / "secrets" / "emulator-root-access-key-secret").stat().st_mode & 0o077 == 0
    listed = byok("kms", "list-keys", state=state)
    assert listed.returncode == 0, listed.stderr
    assert "TotalCount" in json.loads(listed.stdout)


def test_second_server_keeps_first_ready_file(served, tmp_path) -> None:
    state, ready = served
    from byok.emulator.process import EmulatorProcess

    with EmulatorProcess(state / "emulator", ready_file=tmp_path / "second-ready.json", log_file=tmp_path / "second.log"):
        pass
    remaining = json.loads((state / "emulator" / "ready.json").read_text())
    assert remaining["pid"] == ready["pid"]


def test_clock_reset(served) -> None:
    state, _ = served
    advanced = byok("emulator", "clock", "--data-dir", str(state / "emulator"), "--advance", "25h", state=state)
    assert advanced.returncode == 0, advanced.stderr
    assert "offset: 90000 s" in advanced.stdout
    reset = byok("emulator", "clock", "--data-dir", str(state / "emulator"), "--reset", state=state)
    assert reset.returncode == 0, reset.stderr
    assert "offset: 0 s" in reset.stdout


def test_faults_rejects_unknown_action(tmp_path) -> None:
    (tmp_path / "emulator").mkdir()
    result = byok(
        "emulator", "faults", "--data-dir", str(tmp_path / "emulator"), "--action", "ListKey", "--code", "Throttling",
        state=tmp_path,
    )
    assert result.returncode == 2
    assert "'ListKey'" in result.stderr
    assert "ListKeys" in result.stderr
    assert not (tmp_path / "emulator" / "faults.json").exists()


def test_second_serve_on_same_ready_file_refused(served) -> None:
    state, ready = served
    result = subprocess.run(
        [sys.executable, "-m", "byok.cli", "emulator", "serve"],
        env=dict(os.environ, BYOK_STATE_DIR=str(state)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"PID {ready['pid']}" in result.stderr
    remaining = json.loads((state / "emulator" / "ready.json").read_text())
    assert remaining["pid"] == ready["pid"]

"""An interrupted byok certify stops what its test run started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A stopped child of ours not yet reaped by its parent counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def test_sigint_stops_emulator(tmp_path: Path) -> None:
    state = tmp_path / "state"
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    environment.pop("BYOK_PROFILE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "byok.cli", "certify", "--output", str(tmp_path / "run")],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready_files: list[Path] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ready_files:
        ready_files = list((state / "emulator").glob("ready-certify-*.json")) if (state / "emulator").is_dir() else []
        time.sleep(0.05)
    assert ready_files, "the test run never started its emulator"
    emulator_pid = json.loads(ready_files[0].read_text())["pid"]

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)

    assert process.returncode == 130, output[-2000:]
    assert "interrupted" in output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(emulator_pid):
        time.sleep(0.1)
    assert not alive(emulator_pid), f"emulator PID {emulator_pid} still runs after the interrupt"
    assert not (tmp_path / "run" / "SHA256SUMS.p7s").exists()

"""The runbook commands reuse an emulator the operator already serves on the state directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from byok.emulator.process import EmulatorProcess
from byok.errors import ConfigError
from byok.kms import KmsClient
from byok.profile import load_profile
from byok.runbook.cli import start_emulator

from .conftest import NOTEBOOKS, run_byok


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    return folder


def _operator_emulator(state: Path, region: str = "cn-hangzhou") -> EmulatorProcess:
    """The server 'byok emulator serve --data-dir <state>/emulator --ready-file <state>/emulator/ready.json' runs."""
    return EmulatorProcess(data_dir=state / "emulator", ready_file=state / "emulator" / "ready.json", region=region)


def _ready_pid(state: Path) -> int:
    return json.loads((state / "emulator" / "ready.json").read_text())["pid"]


def _closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def _write_ready_file(state: Path, pid: int, port: int) -> None:
    folder = state / "emulator"
    folder.mkdir(parents=True, exist_ok=True)
    content = {"endpoint": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port, "pid": pid, "region": "cn-hangzhou"}
    (folder / "ready.json").write_text(json.dumps(content))


def test_running_emulator_is_reused(state: Path) -> None:
    profile = load_profile("softhsm-emulator")

    with _operator_emulator(state) as operator:
        emulator = start_emulator(profile, state)
        emulator.stop()

        assert emulator.ready["pid"] == operator.pid
        assert operator.is_running()
        assert _ready_pid(state) == operator.pid


def test_stale_ready_file_starts_own_emulator(state: Path) -> None:
    profile = load_profile("softhsm-emulator")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    _write_ready_file(state, exited.pid, _closed_port())

    emulator = start_emulator(profile, state)
    started_pid = emulator.pid
    emulator.stop()

    assert started_pid != exited.pid
    assert not emulator.is_running()
    assert not (state / "emulator" / "ready.json").exists()


def test_live_pid_with_closed_port_starts_own_emulator(state: Path) -> None:
    profile = load_profile("softhsm-emulator")
    # This test process is alive, but nothing listens on the port, as when a PID was reused.
    _write_ready_file(state, os.getpid(), _closed_port())

    emulator = start_emulator(profile, state)
    started_pid = emulator.pid
    emulator.stop()

    assert started_pid != os.getpid()
    assert not emulator.is_running()


def test_running_emulator_of_other_region_is_rejected(state: Path) -> None:
    profile = load_profile("softhsm-emulator")

    with _operator_emulator(state, region="ap-southeast-1") as operator:
        with pytest.raises(ConfigError) as raised:
            start_emulator(profile, state)

        assert "serves region 'ap-southeast-1'" in raised.value.message
        assert f"stop PID {operator.pid}" in raised.value.fix
        assert operator.is_running()


def test_import_uses_operator_emulator(state: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bundle = work / "bundle"

    with _operator_emulator(state) as operator:
        completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "uses_the_emulator.ipynb"), "--output", str(bundle)], state, work)
        book = nbformat.read(bundle / "uses_the_emulator.ipynb", as_version=4)
        result = book.cells[-1].outputs[0]["data"]["application/vnd.byok.result+json"]
        client = KmsClient(
            endpoint=operator.endpoint,
            region=operator.region,
            access_key_id=operator.access_key_id,
            access_key_secret=operator.access_key_secret(),
        )
        described = client.describe_key(result["key_id"]).metadata

        assert completed.returncode == 0, completed.stdout
        assert result["emulator"] == {"pid": operator.pid, "endpoint": operator.endpoint}
        assert described.description == "created by uses_the_emulator.ipynb"
        assert operator.is_running()
        assert _ready_pid(state) == operator.pid

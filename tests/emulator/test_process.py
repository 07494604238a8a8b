"""The launcher, the ready file, the root account and the files in the data directory."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from byok.emulator.process import EmulatorProcess, EmulatorStartError
from tests.emulator.raw import encode_query, send, v1_params


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ready_file_fields(shared_emulator: EmulatorProcess) -> None:
    ready = json.loads(shared_emulator.ready_file.read_text())
    assert ready == shared_emulator.ready
    assert ready["endpoint"] == f"http://127.0.0.1:{ready['port']}"
    assert ready["port"] > 0
    assert ready["region"] == "cn-hangzhou"
    assert len(ready["account_id"]) == 16
    assert ready["account_id"].isdigit()
    assert ready["access_key_id"].startswith("LTAI")
    assert len(ready["access_key_id"]) == 24
    assert ready["pid"] == shared_emulator.pid
    assert Path(ready["data_dir"]) == shared_emulator.data_dir.resolve()
    assert Path(ready["access_key_secret_file"]) == (shared_emulator.data_dir / "root-access-key-secret").resolve()


def test_secret_files_private(shared_emulator: EmulatorProcess) -> None:
    assert file_mode(shared_emulator.access_key_secret_file) == 0o600
    assert file_mode(shared_emulator.data_dir / "master.key") == 0o600
    # Plain booleans keep the secret out of pytest's assertion report.
    value = shared_emulator.access_key_secret().reveal()
    length_is_30 = len(value) == 30
    alphanumeric = value.isalnum()
    assert length_is_30, "root AccessKey secret is not 30 characters long"
    assert alphanumeric, "root AccessKey secret is not alphanumeric"


def test_command_line_holds_no_secret(shared_emulator: EmulatorProcess) -> None:
    secret = shared_emulator.access_key_secret().reveal()
    on_command_line = any(secret in argument for argument in shared_emulator.command())
    in_log = secret in shared_emulator.log_file.read_text()
    assert not on_command_line, "root AccessKey secret is on the emulator command line"
    assert not in_log, f"root AccessKey secret is in {shared_emulator.log_file}"


def test_secret_not_stored_in_clear(shared_emulator: EmulatorProcess) -> None:
    secret = shared_emulator.access_key_secret().reveal().encode()
    database_files = list(shared_emulator.data_dir.glob("kms.sqlite3*"))
    assert database_files
    for path in database_files:
        found = secret in path.read_bytes()
        assert not found, f"root AccessKey secret stored in clear in {path.name}"


def test_custom_secret_file_and_region(tmp_path: Path) -> None:
    secret_file = tmp_path / "secrets" / "kms-secret"
    with EmulatorProcess(tmp_path / "data", secret_file, region="ap-southeast-1") as emulator:
        assert emulator.access_key_secret_file == secret_file.resolve()
        assert file_mode(secret_file) == 0o600
        response = send(emulator, "POST", encode_query(v1_params(emulator, "CreateKey")))
        assert response.body["KeyMetadata"]["Arn"].startswith(f"acs:kms:ap-southeast-1:{emulator.account_id}:key/")


def test_stop_removes_ready_file(tmp_path: Path) -> None:
    emulator = EmulatorProcess(tmp_path / "data").start()
    assert emulator.ready_file.exists()
    assert emulator.is_running()
    emulator.stop()
    assert not emulator.is_running()
    assert not emulator.ready_file.exists()
    assert "stopped" in emulator.log_tail()


def test_other_host_rejected(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "byok.emulator", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "'0.0.0.0' is not allowed" in completed.stderr
    assert "127.0.0.1" in completed.stderr


def test_start_failure_reports_log(tmp_path: Path) -> None:
    # Click takes the last --host, so this overrides the launcher's own 127.0.0.1.
    emulator = EmulatorProcess(tmp_path / "data", extra_args=["--host", "::"])
    with pytest.raises(EmulatorStartError, match="exited with status 2"):
        emulator.start()
    assert not emulator.is_running()


def test_corrupt_master_key_rejected(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with EmulatorProcess(data_dir):
        pass
    (data_dir / "master.key").write_bytes(b"short")
    with pytest.raises(EmulatorStartError, match="master key file"):
        EmulatorProcess(data_dir).start()

"""The emulated clock: duration parsing, the shared offset file and the ``clock`` command."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from byok.emulator import clock
from byok.emulator.cli import emulator
from byok.emulator.process import EmulatorProcess
from byok.errors import ConfigError
from tests.emulator.raw import encode_query, v1_params

# Allowed difference, in seconds, between a Date header and the time the test expects:
# the header has one-second resolution and the test process may be descheduled.
DATE_TOLERANCE_SECONDS = 120


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("25h", 90000), ("90m", 5400), ("7d", 604800), ("3600s", 3600), ("0s", 0)],
)
def test_parse_duration_units(text: str, seconds: int) -> None:
    assert clock.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5h", "5", "h", "1.5h", "5w", "", "5 hours", "1e3s"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        clock.parse_duration(text)


def test_advance_rejects_negative(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot move the emulated clock back"):
        clock.advance(tmp_path, -1)


def test_advance_requires_existing_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        clock.advance(tmp_path / "missing", 60)


def test_advance_accumulates(tmp_path: Path) -> None:
    clock.advance(tmp_path, 3600)
    clock.advance(tmp_path, 60)
    assert clock.read_offset(tmp_path) == 3660
    assert json.loads((tmp_path / "clock.json").read_text()) == {"offset_seconds": 3660}


def test_clock_sees_later_advance(tmp_path: Path) -> None:
    emulated = clock.EmulatedClock(tmp_path)
    assert emulated.offset() == 0
    clock.advance(tmp_path, 86400)
    assert emulated.offset() == 86400
    assert emulated.now() - time.time() > 86400 - 60


def test_clock_rejects_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "clock.json").write_text("not json")
    with pytest.raises(ConfigError, match="is not valid"):
        clock.EmulatedClock(tmp_path).offset()


def test_cli_clock_advance(tmp_path: Path) -> None:
    result = CliRunner().invoke(emulator, ["clock", "--data-dir", str(tmp_path), "--advance", "25h"])
    assert result.exit_code == 0, result.output
    assert "offset: 90000 s" in result.output
    assert clock.read_offset(tmp_path) == 90000


@pytest.mark.parametrize("duration", ["-1h", "soon"])
def test_cli_clock_rejects_bad_duration(tmp_path: Path, duration: str) -> None:
    result = CliRunner().invoke(emulator, ["clock", "--data-dir", str(tmp_path), "--advance", duration])
    assert result.exit_code == 2
    assert "invalid duration" in result.output
    assert not (tmp_path / "clock.json").exists()


def test_module_entry_point_runs_clock(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "byok.emulator", "clock", "--data-dir", str(tmp_path), "--advance", "90m"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert clock.read_offset(tmp_path) == 5400


def _date_headers(emulator_process: EmulatorProcess) -> list[str]:
    """Send a signed DescribeRegions and return every Date header of the response."""
    connection = http.client.HTTPConnection("127.0.0.1", emulator_process.port, timeout=30)
    try:
        query = encode_query(v1_params(emulator_process, "DescribeRegions"))
        connection.request("POST", f"/?{query}", headers={"Content-Length": "0"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        return [value for name, value in response.getheaders() if name.lower() == "date"]
    finally:
        connection.close()


def test_date_header_follows_clock_advance(own_emulator: EmulatorProcess) -> None:
    before = _date_headers(own_emulator)
    assert len(before) == 1
    assert before[0].endswith(" GMT")
    assert abs(parsedate_to_datetime(before[0]).timestamp() - time.time()) < DATE_TOLERANCE_SECONDS

    result = CliRunner().invoke(emulator, ["clock", "--data-dir", str(own_emulator.data_dir), "--advance", "25h"])
    assert result.exit_code == 0, result.output

    after = _date_headers(own_emulator)
    assert len(after) == 1
    expected = time.time() + 25 * 3600
    assert abs(parsedate_to_datetime(after[0]).timestamp() - expected) < DATE_TOLERANCE_SECONDS

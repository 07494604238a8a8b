"""The emulated clock: real time plus an offset shared through ``<data-dir>/clock.json``.

The offset only moves key lifecycle time (import token expiry, key material expiry).
Request signatures are checked against the real wall clock, because the SDKs stamp
requests with it. An advance takes effect at the next request of every process that uses
the data directory, because ``EmulatedClock`` re-reads the file whenever its stat changes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from byok.errors import ConfigError

logger = logging.getLogger(__name__)

CLOCK_FILE_NAME = "clock.json"

_DURATION_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Parse a duration such as ``25h``, ``90m``, ``7d`` or ``3600s`` into seconds."""
    match = _DURATION_PATTERN.match(text)
    if match is None:
        raise ConfigError(
            f"invalid duration {text!r}: expected a non-negative whole number followed by "
            "s, m, h or d",
            fix="write the duration like 3600s, 90m, 25h or 7d",
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def clock_file(data_dir: Path) -> Path:
    return Path(data_dir) / CLOCK_FILE_NAME


def read_offset(data_dir: Path) -> float:
    """Return the stored offset in seconds, 0 when the clock file does not exist."""
    path = clock_file(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0.0
    try:
        offset = float(json.loads(text)["offset_seconds"])
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"clock file {path} is not valid: {error}",
            fix=f'write {{"offset_seconds": 0}} into {path}, or delete it to reset the clock',
        ) from None
    return offset


def advance(data_dir: Path, seconds: int) -> float:
    """Move the emulated clock of ``data_dir`` forward by ``seconds`` and return the new offset.

    The file is replaced atomically (write, then rename), so a reader never sees half a file.
    Two concurrent advances may lose one of them; the CLI is the only writer.
    """
    if seconds < 0:
        raise ConfigError(
            f"cannot move the emulated clock back by {-seconds} seconds",
            fix="pass a non-negative duration, or 'byok emulator clock --reset' to go back to this machine's time",
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(
            f"emulator data directory {data_dir} does not exist",
            fix="pass the --data-dir the emulator was started with",
        )
    offset = read_offset(data_dir) + seconds
    path = clock_file(data_dir)
    temporary = path.with_name(f".{CLOCK_FILE_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"offset_seconds": offset}) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    logger.info("emulated clock of %s advanced by %d s, offset now %.0f s", data_dir, seconds, offset)
    return offset


def reset(data_dir: Path) -> float:
    """Set the emulated clock of ``data_dir`` back to this machine's time and return 0.

    Keys whose material expired or whose deletion window ended while the clock was ahead
    stay as they are: the store keeps those changes.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(
            f"emulator data directory {data_dir} does not exist",
            fix="pass the --data-dir the emulator was started with",
        )
    path = clock_file(data_dir)
    temporary = path.with_name(f".{CLOCK_FILE_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"offset_seconds": 0}) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    logger.info("emulated clock of %s reset to this machine's time", data_dir)
    return 0.0


class EmulatedClock:
    """Current emulated time in Unix seconds, following changes to the clock file."""

    def __init__(self, data_dir: Path) -> None:
        self._path = clock_file(data_dir)
        self._data_dir = Path(data_dir)
        self._signature: tuple[int, int, int] | None = None
        self._offset = 0.0

    def offset(self) -> float:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            self._signature = None
            self._offset = 0.0
            return 0.0
        # os.replace gives the file a new inode, so an advance within one mtime tick is seen too.
        signature = (info.st_mtime_ns, info.st_ino, info.st_size)
        if signature != self._signature:
            self._offset = read_offset(self._data_dir)
            self._signature = signature
        return self._offset

    def now(self) -> float:
        return time.time() + self.offset()

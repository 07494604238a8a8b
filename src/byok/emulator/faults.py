"""Fault injection without restart: per-action errors, latency and dropped connections.

The settings live in ``<data-dir>/faults.json``, written by ``byok emulator faults``.
Each server process re-reads the file only when its stat changes, like the clock file,
so a change applies from the next request and costs one ``os.stat`` per request.
Codes, statuses and messages are those of the KMS common error table; the Tea SDK raises
ThrottlingException when ``x-acs-retry-after`` is present.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from byok.emulator.errors import ApiError
from byok.errors import ConfigError

logger = logging.getLogger(__name__)

FAULTS_FILE_NAME = "faults.json"
# Code -> (HTTP status, message), as the KMS API reference and gateway return them.
FAULT_CODES: dict[str, tuple[int, str]] = {
    "Throttling": (400, "Request was denied due to request throttling."),
    "Rejected.Throttling": (429, "The QPS upper limit is exceeded."),
    "InternalFailure": (500, "Internal Failure."),
    "ServiceUnavailableTemporary": (503, "Service Unavailable Temporary."),
}
ALL_ACTIONS = "*"


@dataclass(frozen=True)
class Fault:
    """An injected fault for matching requests: fail with ``code``, wait, or drop the connection.

    ``rate`` is the probability (0 to 1) that a request is affected; the latency applies
    to affected requests only. ``retry_after`` (seconds) adds ``x-acs-retry-after``.
    """

    code: str | None = None
    rate: float = 1.0
    latency_ms: int = 0
    drop_connection: bool = False
    retry_after: int | None = None

    def validate(self, action: str) -> None:
        if self.code is not None and self.code not in FAULT_CODES:
            raise ConfigError(
                f"unknown fault code {self.code!r} for {action}",
                fix=f"use one of {', '.join(FAULT_CODES)}",
            )
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"fault rate {self.rate} for {action} is outside 0..1", fix="pass a rate such as 0.5")
        if self.latency_ms < 0:
            raise ConfigError(f"fault latency {self.latency_ms} ms for {action} is negative", fix="pass 0 or more")
        if self.retry_after is not None and self.retry_after < 1:
            raise ConfigError(f"retry-after {self.retry_after} for {action} is not positive", fix="pass 1 or more seconds")
        if self.code is None and not self.drop_connection and self.latency_ms == 0:
            raise ConfigError(f"the fault for {action} does nothing", fix="set an error code, a latency or a dropped connection")

    def error(self) -> ApiError:
        assert self.code is not None
        status, message = FAULT_CODES[self.code]
        error = ApiError(self.code, status, message)
        if self.retry_after is not None:
            error.headers = [(b"x-acs-retry-after", str(self.retry_after).encode("ascii"))]
        return error


def faults_file(data_dir: Path) -> Path:
    return Path(data_dir) / FAULTS_FILE_NAME


def read_faults(data_dir: Path) -> dict[str, Fault]:
    path = faults_file(data_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise ConfigError(f"faults file {path} is not valid JSON: {error}", fix="run 'byok emulator faults --clear'") from None
    try:
        return {action: Fault(**settings) for action, settings in raw.get("actions", {}).items()}
    except TypeError as error:
        raise ConfigError(f"faults file {path} is not valid: {error}", fix="run 'byok emulator faults --clear'") from None


def write_faults(data_dir: Path, faults: dict[str, Fault]) -> None:
    """Replace the faults file atomically (write, then rename)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"emulator data directory {data_dir} does not exist", fix="pass the --data-dir the emulator was started with")
    for action, fault in faults.items():
        fault.validate(action)
    path = faults_file(data_dir)
    if not faults:
        path.unlink(missing_ok=True)
        logger.info("cleared injected faults of %s", data_dir)
        return
    content: dict[str, Any] = {"actions": {action: asdict(fault) for action, fault in faults.items()}}
    temporary = path.with_name(f".{FAULTS_FILE_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    logger.info("injected faults into %s: %s", data_dir, ", ".join(sorted(faults)))


class FaultInjector:
    """The faults of one data directory, re-read by the server process when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir)
        self._path = faults_file(data_dir)
        self._signature: tuple[int, int, int] | None = None
        self._faults: dict[str, Fault] = {}
        self._random = random.Random()

    def _current(self) -> dict[str, Fault]:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            self._signature = None
            self._faults = {}
            return self._faults
        signature = (info.st_mtime_ns, info.st_ino, info.st_size)
        if signature != self._signature:
            try:
                self._faults = read_faults(self._data_dir)
            except ConfigError as error:
                logger.error("ignoring the faults file: %s", error.diagnostics())
                self._faults = {}
            self._signature = signature
        return self._faults

    def pick(self, action: str) -> Fault | None:
        """Return the fault to apply to this request of ``action``, or None."""
        faults = self._current()
        if not faults:
            return None
        fault = faults.get(action) or faults.get(ALL_ACTIONS)
        if fault is None or self._random.random() >= fault.rate:
            return None
        return fault

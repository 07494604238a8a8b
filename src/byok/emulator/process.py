"""Start and stop the emulator as a subprocess; used by test fixtures and by byok's CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from byok.errors import ByokError
from byok.secrets import Secret, read_secret_file

logger = logging.getLogger(__name__)

READY_FILE_NAME = "ready.json"
LOG_FILE_NAME = "emulator.log"


class EmulatorStartError(ByokError):
    """The emulator process exited or did not become ready in time."""


class EmulatorProcess:
    """``python -m byok.emulator serve`` as a context manager.

    On entry it starts the server on a free port of 127.0.0.1, waits for the ready file
    and exposes its fields (``endpoint``, ``port``, ``region``, ``account_id``,
    ``access_key_id``, ``access_key_secret_file``, ``pid``, ``data_dir``). On exit it
    sends SIGTERM to that PID, then SIGKILL if the process has not ended in time.
    The server log is appended to ``log_file`` (default ``<data_dir>/emulator.log``).
    """

    def __init__(
        self,
        data_dir: Path,
        secret_file: Path | None = None,
        *,
        region: str = "cn-hangzhou",
        ready_file: Path | None = None,
        log_file: Path | None = None,
        log_level: str = "INFO",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.secret_file = Path(secret_file) if secret_file is not None else self.data_dir / "root-access-key-secret"
        self.region = region
        self.ready_file = Path(ready_file) if ready_file is not None else self.data_dir / READY_FILE_NAME
        self.log_file = Path(log_file) if log_file is not None else self.data_dir / LOG_FILE_NAME
        self.log_level = log_level
        self.extra_args = tuple(extra_args)
        self.env = dict(env) if env is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.ready: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """Return the argument list that starts the server; it contains no secret."""
        return [
            sys.executable, "-m", "byok.emulator", "serve",
            "--host", "127.0.0.1",
            "--port", "0",
            "--data-dir", str(self.data_dir),
            "--ready-file", str(self.ready_file),
            "--access-key-secret-file", str(self.secret_file),
            "--region", self.region,
            "--log-level", self.log_level,
            *self.extra_args,
        ]

    def start(self) -> Self:
        if self._process is not None and self._process.poll() is None:
            raise EmulatorStartError(
                f"the emulator for {self.data_dir} is already running as PID {self._process.pid}",
                fix="call stop() before start()",
            )
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A ready file left by a killed server would look like a running one, so it is
        # removed. One that names a live server belongs to that server and stays.
        from byok.emulator.server import refuse_live_ready_file

        refuse_live_ready_file(self.ready_file)
        self.ready_file.unlink(missing_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
            )
        logger.info("started KMS emulator PID %d for %s", self._process.pid, self.data_dir)
        try:
            self.ready = self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> dict[str, Any]:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            content = self._read_ready_file()
            if content is not None and content.get("pid") == self._process.pid:
                return content
            status = self._process.poll()
            if status is not None:
                raise EmulatorStartError(
                    f"the KMS emulator exited with status {status} before it was ready; "
                    f"last log lines:\n{self.log_tail()}",
                    fix=f"read {self.log_file} for the cause",
                )
            if time.monotonic() > deadline:
                raise EmulatorStartError(
                    f"the KMS emulator (PID {self._process.pid}) did not write {self.ready_file} "
                    f"within {self.start_timeout:.0f} s; last log lines:\n{self.log_tail()}",
                    fix=f"read {self.log_file}, or raise start_timeout on a slow machine",
                )
            time.sleep(0.02)

    def _read_ready_file(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.ready_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            # Written by something other than the atomic rename; read again.
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """Stop the server by its PID and return its exit status (None if it was not started)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("KMS emulator PID %d ignored SIGTERM for %.0f s; sending SIGKILL", process.pid, self.stop_timeout)
                process.kill()
                process.wait()
        logger.info("stopped KMS emulator PID %d with status %s", process.pid, process.returncode)
        self._process = None
        return process.returncode

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Fields of the ready file.

    @property
    def endpoint(self) -> str:
        return self.ready["endpoint"]

    @property
    def host(self) -> str:
        return self.ready["host"]

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def account_id(self) -> str:
        return self.ready["account_id"]

    @property
    def access_key_id(self) -> str:
        return self.ready["access_key_id"]

    @property
    def access_key_secret_file(self) -> Path:
        return Path(self.ready["access_key_secret_file"])

    @property
    def pid(self) -> int:
        return int(self.ready["pid"])

    def access_key_secret(self) -> Secret:
        """Read the root AccessKey secret from its file (mode 0600 is checked)."""
        return read_secret_file(self.access_key_secret_file, f"AccessKey secret of {self.access_key_id}")

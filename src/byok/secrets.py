"""Secret values, the state directory and the files that hold generated secrets.

A ``Secret`` hides its value from ``repr`` and ``str``, so it can pass through logs,
tracebacks and Allure step parameters without leaking. Every ``Secret`` created in a
process is recorded in a registry, which the evidence layer uses to scan artifacts
for leaks before they are signed.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
import threading
from pathlib import Path

from byok.errors import ConfigError, SecretNotFound

STATE_DIR_ENV = "BYOK_STATE_DIR"
DEFAULT_STATE_DIR = ".byok"

_registry_lock = threading.Lock()
_registry: dict[str, str] = {}


class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or formatting."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"secret {name!r} must be a str, not {type(value).__name__}")
        self._value = value
        self.name = name
        register_secret_value(name, value)

    def reveal(self) -> str:
        """Return the value; call this only where the value is handed to its consumer."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, '********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return _random.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self):  # pragma: no cover - guard against pickling into artifacts
        raise TypeError(f"secret {self.name!r} cannot be pickled")


def register_secret_value(name: str, value: str) -> None:
    """Record a secret value so leak scans look for it."""
    if not value:
        return
    with _registry_lock:
        _registry[value] = name


def known_secret_values() -> dict[str, str]:
    """Return a copy of the registry as {value: name}."""
    with _registry_lock:
        return dict(_registry)


def state_dir() -> Path:
    """Return the state directory: ``$BYOK_STATE_DIR`` or ``.byok`` in the working directory."""
    configured = os.environ.get(STATE_DIR_ENV)
    path = Path(configured) if configured else Path.cwd() / DEFAULT_STATE_DIR
    return path.resolve()


def secrets_dir(base: Path | None = None) -> Path:
    """Return ``<state>/secrets``, creating it with mode 0700."""
    path = (base or state_dir()) / "secrets"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_secret_file(path: Path, value: str) -> None:
    """Write one secret value to ``path`` with mode 0600, never widening it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value.encode("utf-8"))
    finally:
        os.close(fd)


def read_secret_file(path: Path, name: str) -> Secret:
    """Read a secret file, rejecting it when group or others may read it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretNotFound(
            f"secret file {path} for {name} does not exist",
            fix="run 'byok softhsm init' for a byok-managed token, or set the environment variable the profile names",
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file {path} for {name} has mode {stat.S_IMODE(info.st_mode):04o}; "
            "group and others must have no access",
            fix=f"chmod 600 {path}",
        )
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ConfigError(f"secret file {path} for {name} is empty", fix=f"write the value into {path}")
    return Secret(value, name)


def generate_secret_file(path: Path, name: str, *, length: int = 16, alphabet: str = "0123456789") -> Secret:
    """Return the secret stored in ``path``, generating and storing a new one if absent."""
    if path.exists():
        return read_secret_file(path, name)
    value = "".join(_random.choice(alphabet) for _ in range(length))
    write_secret_file(path, value)
    return Secret(value, name)


def load_secret(name: str, *, env: str | None, file: Path | None) -> Secret:
    """Load a secret from the environment variable ``env`` or else from ``file``.

    The environment wins so an operator can override a generated value without
    touching the state directory.
    """
    if env:
        value = os.environ.get(env)
        if value:
            return Secret(value, name)
    if file is not None and file.exists():
        return read_secret_file(file, name)
    where = []
    if env:
        where.append(f"environment variable {env}")
    if file is not None:
        where.append(f"file {file}")
    raise SecretNotFound(
        f"{name} not found in {' or '.join(where) or 'any configured place'}",
        fix=(f"export {env}=... (never pass it on the command line)" if env else "configure the secret")
        + (f", or write it to {file} with mode 0600" if file is not None else ""),
    )

"""The opencryptoki soft token (Debian package opencryptoki 3.8.1) as a byok-managed second token.

opencryptoki keeps its soft token machine-wide under /var/lib/opencryptoki/swtok and
serves every process through the ``pkcsslotd`` daemon, which must run before
libopencryptoki.so is initialized. byok therefore, as root:

* creates the runtime folders the package's tmpfiles.d entry names
  (``systemd-tmpfiles --create`` where present, else the same folders by hand);
* starts ``pkcsslotd`` unless it already runs, records the PID it wrote and stops
  exactly that process later, never one it did not start;
* initializes the soft token in this process through PyKCS11: C_InitToken with the
  package's default SO PIN 87654321, C_SetPIN to a generated SO PIN, C_InitPIN and a
  user C_SetPIN to a generated user PIN. Both PINs go to files under the state
  folder's ``secrets/`` and never onto a command line.

Because the token is machine-wide but PINs live in a state folder, byok writes the
state folder that contains the PINs into ``swtok/.byok-owner``. A new state folder
copies the PIN files from there. When that folder is gone, nobody can log in to the
token any more, and byok resets the token files to the package's empty state before
initializing it again.
"""

from __future__ import annotations

import fcntl
import grp
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import PyKCS11

from byok.errors import ConfigError, HsmError
from byok.hsm import library
from byok.hsm.ckr import translate_error
from byok.hsm.config import resolve_pin
from byok.hsm.session import Hsm, TokenInfo
from byok.profile import HsmSettings
from byok.secrets import Secret, generate_secret_file, read_secret_file, write_secret_file

logger = logging.getLogger(__name__)

PKCSSLOTD = Path("/usr/sbin/pkcsslotd")
PKCSSLOTD_PID_FILE = Path("/var/run/pkcsslotd.pid")
TMPFILES_CONF = Path("/usr/lib/tmpfiles.d/opencryptoki.conf")
DATA_DIR = Path("/var/lib/opencryptoki")
SOFT_TOKEN_DIR = DATA_DIR / "swtok"
OWNER_FILE = SOFT_TOKEN_DIR / ".byok-owner"
# Held from token preparation until the daemon stops, so byok runs on one machine take
# turns with the machine-wide token instead of stopping each other's daemon.
RUN_LOCK = Path("/var/lock/opencryptoki/byok.lock")
# Model string of the soft token in C_GetTokenInfo (opencryptoki 3.8.1, observed).
SOFT_TOKEN_MODEL = "IBM SoftTok"
# Factory SO PIN of a new opencryptoki token (opencryptoki documentation, pkcsconf -I).
DEFAULT_SO_PIN = "87654321"
# The soft token accepts PINs of 4 to 8 characters (C_GetTokenInfo ulMinPinLen/ulMaxPinLen).
PIN_DIGITS = 8
TOKEN_LABEL_BYTES = 32
# Folders of the package's tmpfiles.d entry, for machines without systemd-tmpfiles.
_RUNTIME_DIRS = (
    "/var/lock/opencryptoki",
    "/var/lock/opencryptoki/swtok",
    "/var/lib/opencryptoki",
    "/var/lib/opencryptoki/swtok",
    "/var/lib/opencryptoki/swtok/TOK_OBJ",
)
_DAEMON_WAIT_SECONDS = 10.0


def is_managed_opencryptoki(settings: HsmSettings) -> bool:
    return settings.family == "opencryptoki" and settings.managed


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ConfigError(
            "the opencryptoki soft token needs root: pkcsslotd and /var/lib/opencryptoki belong to root "
            "and the pkcs11 group",
            fix="run byok as root (as 'make certify' does in CI), or use the softhsm-emulator profile",
        )


def ensure_runtime_dirs() -> None:
    """Create the folders of the package's tmpfiles.d entry, mode 0770, owner root, group pkcs11."""
    tmpfiles = shutil.which("systemd-tmpfiles")
    if tmpfiles and TMPFILES_CONF.is_file():
        subprocess.run([tmpfiles, "--create", str(TMPFILES_CONF)], check=True, capture_output=True)
        return
    try:
        group = grp.getgrnam("pkcs11").gr_gid
    except KeyError:
        raise ConfigError(
            "the pkcs11 group does not exist, so the opencryptoki package is not installed",
            fix="run 'make certify', which installs the Debian package opencryptoki",
        ) from None
    for folder in _RUNTIME_DIRS:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, group)
        os.chmod(path, 0o770)


def _pid_alive(pid: int) -> bool:
    """Return whether ``pid`` is a running process; a zombie is not running.

    pkcsslotd forks into the background, so its parent becomes PID 1, which in a
    container may never reap it: a stopped daemon can stay as a zombie.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    # The state letter follows the parenthesised command name (proc(5)).
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _running_daemon_pid() -> int | None:
    try:
        pid = int(PKCSSLOTD_PID_FILE.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        command = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return pid if command == "pkcsslotd" else None


@dataclass
class SlotDaemon:
    """The pkcsslotd process; ``started`` is True only when byok started it and must stop it."""

    pid: int
    started: bool
    lock_fd: int | None = None

    def stop(self) -> None:
        """Stop the daemon by its PID if byok started it, wait until it is gone, and release the run lock."""
        try:
            self._stop_process()
        finally:
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None

    def _stop_process(self) -> None:
        if not self.started or not _pid_alive(self.pid):
            return
        library.unload_module_if_loaded(_module_path_hint())
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + _DAEMON_WAIT_SECONDS
        while _pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(self.pid):
            logger.warning("pkcsslotd (PID %d) did not stop after SIGTERM; sending SIGKILL", self.pid)
            os.kill(self.pid, signal.SIGKILL)
        logger.info("Stopped pkcsslotd (PID %d)", self.pid)
        self.started = False


def _module_path_hint() -> str | None:
    for path in library.loaded_modules():
        if Path(path).name.startswith("libopencryptoki"):
            return path
    return None


def start_daemon() -> SlotDaemon:
    """Start pkcsslotd unless it runs already; return its PID and whether byok started it."""
    _require_root()
    ensure_runtime_dirs()
    running = _running_daemon_pid()
    if running is not None:
        logger.info("pkcsslotd already runs (PID %d); byok will not stop it", running)
        return SlotDaemon(running, started=False)

    if not PKCSSLOTD.is_file():
        raise ConfigError(
            f"{PKCSSLOTD} does not exist", fix="install the Debian package opencryptoki ('make certify' does)"
        )
    # pkcsslotd forks, writes its PID file and exits in the parent.
    completed = subprocess.run([str(PKCSSLOTD)], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise HsmError(
            f"{PKCSSLOTD} exited with status {completed.returncode}: {completed.stderr.strip()}",
            operation="pkcsslotd",
            fix="check /var/log/opencryptoki and that /var/lib/opencryptoki belongs to root:pkcs11",
        )

    deadline = time.monotonic() + _DAEMON_WAIT_SECONDS
    pid = _running_daemon_pid()
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
        pid = _running_daemon_pid()
    if pid is None:
        raise HsmError(
            f"pkcsslotd did not write a live PID to {PKCSSLOTD_PID_FILE} within {_DAEMON_WAIT_SECONDS:.0f} s",
            operation="pkcsslotd",
            fix="run /usr/sbin/pkcsslotd by hand and read its messages in the system log",
        )
    logger.info("Started pkcsslotd (PID %d)", pid)
    return SlotDaemon(pid, started=True)


# -- token ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpencryptokiInitResult:
    """Outcome of ``init_token``: whether the token was (re)created and where its PINs are."""

    token_label: str
    created: bool
    reset: bool
    pin_file: Path
    so_pin_file: Path
    token_info: TokenInfo


def _check_settings(settings: HsmSettings) -> None:
    if not is_managed_opencryptoki(settings):
        raise ConfigError(
            f"token {settings.token_label!r} is not a byok-managed opencryptoki token "
            f"(family {settings.family!r}, managed {settings.managed})",
            fix='use a profile with family = "opencryptoki" and managed = true, such as opencryptoki-emulator',
        )
    if not settings.pin_file or not settings.so_pin_file:
        raise ConfigError(
            "[hsm] pin_file and so_pin_file are both needed for a managed opencryptoki token",
            fix='add pin_file = "secrets/opencryptoki-user-pin" and so_pin_file = "secrets/opencryptoki-so-pin"',
        )
    encoded = settings.token_label.encode("utf-8")
    if not encoded or len(encoded) > TOKEN_LABEL_BYTES or settings.token_label != settings.token_label.strip():
        raise ConfigError(
            f"token label {settings.token_label!r} must be 1 to {TOKEN_LABEL_BYTES} bytes without outer blanks",
            fix="choose a shorter label under [hsm] token_label",
        )


def _soft_token_slot(hsm: Hsm) -> tuple[int, PyKCS11.CK_TOKEN_INFO]:
    lib = hsm._module().lib
    try:
        for slot in lib.getSlotList(tokenPresent=True):
            info = lib.getTokenInfo(slot)
            if info.model.rstrip(" \x00") == SOFT_TOKEN_MODEL:
                return slot, info
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_GetSlotList/C_GetTokenInfo") from None
    raise HsmError(
        f"no opencryptoki slot has a token of model {SOFT_TOKEN_MODEL!r}",
        operation="C_GetTokenInfo",
        fix="check that /etc/opencryptoki/opencryptoki.conf has a slot with stdll = libpkcs11_sw.so",
    )


def _read_owner() -> Path | None:
    try:
        data = json.loads(OWNER_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as error:
        logger.warning("Ignoring unreadable %s: %s", OWNER_FILE, error)
        return None
    owner = data.get("state_dir") if isinstance(data, dict) else None
    return Path(owner) if isinstance(owner, str) else None


def _write_owner(state_dir: Path, label: str) -> None:
    text = json.dumps({"state_dir": str(state_dir), "token_label": label}) + "\n"
    temporary = OWNER_FILE.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o600)
    os.replace(temporary, OWNER_FILE)


def reset_soft_token_files() -> None:
    """Delete the soft token's files and recreate its empty object folder; pkcsslotd must not run."""
    if _running_daemon_pid() is not None:
        raise HsmError(
            "cannot reset the opencryptoki soft token while pkcsslotd runs",
            operation="reset",
            fix="stop pkcsslotd first",
        )
    for entry in SOFT_TOKEN_DIR.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    ensure_runtime_dirs()
    logger.warning("Reset the opencryptoki soft token under %s to its empty state", SOFT_TOKEN_DIR)


def _pin_sources(settings: HsmSettings, state_dir: Path) -> tuple[Path, Path]:
    assert settings.pin_file and settings.so_pin_file
    return state_dir / settings.pin_file, state_dir / settings.so_pin_file


def _adopt_owner_pins(settings: HsmSettings, state_dir: Path, owner: Path) -> bool:
    """Copy the PIN files of the state folder that owns the token; return False when they are gone."""
    pin_file, so_pin_file = _pin_sources(settings, state_dir)
    owner_pin, owner_so_pin = _pin_sources(settings, owner)
    if owner == state_dir:
        return pin_file.exists() and so_pin_file.exists()
    if not (owner_pin.exists() and owner_so_pin.exists()):
        return False
    for source, target, name in ((owner_pin, pin_file, "user PIN"), (owner_so_pin, so_pin_file, "SO PIN")):
        write_secret_file(target, read_secret_file(source, f"{name} of token {settings.token_label}").reveal())
    logger.info("Copied the opencryptoki PIN files from state folder %s", owner)
    return True


def _session(lib: PyKCS11.PyKCS11Lib, slot: int, label: str) -> PyKCS11.Session:
    try:
        return lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_OpenSession", labels=[label]) from None


def _initialize(hsm: Hsm, slot: int, settings: HsmSettings, so_pin: Secret, user_pin: Secret) -> None:
    """C_InitToken with the factory SO PIN, then set the SO PIN, the user PIN and change the user PIN once."""
    lib = hsm._module().lib
    label = settings.token_label
    padded = label.encode("utf-8").ljust(TOKEN_LABEL_BYTES, b" ").decode("utf-8")
    factory = Secret(DEFAULT_SO_PIN, "factory SO PIN of opencryptoki")
    # A first user PIN that C_SetPIN replaces: opencryptoki marks a PIN set by C_InitPIN
    # as CKF_USER_PIN_TO_BE_CHANGED.
    first_user_pin = Secret("".join(reversed(user_pin.reveal())), "first user PIN")
    try:
        lib.initToken(slot, factory.reveal(), padded)
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_InitToken", labels=[label]) from None

    session = _session(lib, slot, label)
    try:
        for operation, call in (
            ("C_Login(CKU_SO)", lambda: session.login(factory.reveal(), PyKCS11.CKU_SO)),
            ("C_SetPIN(SO)", lambda: session.setPin(factory.reveal(), so_pin.reveal())),
            ("C_InitPIN", lambda: session.initPin(first_user_pin.reveal())),
            ("C_Logout(CKU_SO)", session.logout),
            ("C_Login(CKU_USER)", lambda: session.login(first_user_pin.reveal(), PyKCS11.CKU_USER)),
            ("C_SetPIN(user)", lambda: session.setPin(first_user_pin.reveal(), user_pin.reveal())),
            ("C_Logout(CKU_USER)", session.logout),
        ):
            try:
                call()
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(error, operation=operation, labels=[label]) from None
    finally:
        try:
            session.closeSession()
        except PyKCS11.PyKCS11Error as error:
            logger.warning("C_CloseSession on token %r failed: %s", label, error)


def init_token(settings: HsmSettings, state_dir: Path) -> OpencryptokiInitResult:
    """Create the byok-managed opencryptoki soft token, or check the existing one; safe to repeat.

    pkcsslotd must run (``start_daemon``). Raises ConfigError when the soft token was
    initialized outside byok, or by byok under another label, because byok then has no
    PIN for it.
    """
    _require_root()
    _check_settings(settings)
    state_dir = Path(state_dir).resolve()
    pin_file, so_pin_file = _pin_sources(settings, state_dir)
    hsm = Hsm.attach(settings, state_dir)
    slot, info = _soft_token_slot(hsm)
    initialized = bool(info.flags & PyKCS11.CKF_TOKEN_INITIALIZED)
    current_label = info.label.rstrip(" \x00")
    owner = _read_owner()

    if initialized:
        if owner is None or current_label != settings.token_label:
            raise ConfigError(
                f"the opencryptoki soft token is initialized with label {current_label!r} outside byok "
                f"(no {OWNER_FILE} for label {settings.token_label!r}), so byok has no PIN for it",
                fix="re-initialize it with pkcsconf, or remove the files under "
                f"{SOFT_TOKEN_DIR} while pkcsslotd is stopped if its keys are not needed",
            )
        if not _adopt_owner_pins(settings, state_dir, owner):
            raise HsmError(
                f"the PIN files of opencryptoki token {settings.token_label!r} are in neither {state_dir} "
                f"nor {owner}",
                operation="C_Login",
                fix="restore the PIN files, or run byok again so that it resets the token",
            )
        if owner != state_dir:
            _write_owner(state_dir, settings.token_label)

    created = False
    if not initialized:
        so_pin = generate_secret_file(so_pin_file, f"SO PIN of token {settings.token_label}", length=PIN_DIGITS)
        user_pin = generate_secret_file(pin_file, f"user PIN of token {settings.token_label}", length=PIN_DIGITS)
        _initialize(hsm, slot, settings, so_pin, user_pin)
        _write_owner(state_dir, settings.token_label)
        created = True
        logger.info("Initialized opencryptoki soft token %r (PINs in %s)", settings.token_label, pin_file.parent)

    with hsm.session(resolve_pin(settings, state_dir)):
        pass
    return OpencryptokiInitResult(
        token_label=settings.token_label,
        created=created,
        reset=False,
        pin_file=pin_file,
        so_pin_file=so_pin_file,
        token_info=hsm.token_info(),
    )


def _pins_lost(settings: HsmSettings) -> bool:
    """Return whether byok initialized the token from a state folder whose PIN files are gone."""
    owner = _read_owner()
    if owner is None:
        return False
    owner_pin, owner_so_pin = _pin_sources(settings, owner)
    return not (owner_pin.exists() and owner_so_pin.exists())


def _acquire_run_lock() -> int:
    ensure_runtime_dirs()
    fd = os.open(RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.info("Another byok run uses the opencryptoki token; waiting for %s", RUN_LOCK)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def prepare_token(settings: HsmSettings, state_dir: Path) -> tuple[SlotDaemon, OpencryptokiInitResult]:
    """Start pkcsslotd and initialize the token, resetting it first when its PINs are gone for good.

    The reset happens before the module is loaded, because libopencryptoki 3.8.1
    crashes when it is loaded again in the same process (observed). The caller stops
    the returned daemon with ``SlotDaemon.stop`` when done.
    """
    _require_root()
    _check_settings(settings)
    lock_fd = _acquire_run_lock()
    try:
        return _prepare_locked(settings, state_dir, lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def _prepare_locked(settings: HsmSettings, state_dir: Path, lock_fd: int) -> tuple[SlotDaemon, OpencryptokiInitResult]:
    reset = False
    if _pins_lost(settings) and Path(state_dir).resolve() != _read_owner():
        running = _running_daemon_pid()
        if running is not None:
            raise ConfigError(
                f"the opencryptoki soft token must be reset because the state folder {_read_owner()} with its "
                f"PINs is gone, but pkcsslotd (PID {running}) runs and byok stops only a daemon it started",
                fix=f"stop pkcsslotd (kill {running}), then run byok again",
            )
        logger.warning(
            "State folder %s with the PINs of opencryptoki token %r is gone; resetting the token",
            _read_owner(),
            settings.token_label,
        )
        ensure_runtime_dirs()
        reset_soft_token_files()
        reset = True
    daemon = start_daemon()
    try:
        result = init_token(settings, state_dir)
    except BaseException:
        daemon.stop()
        raise
    daemon.lock_fd = lock_fd
    return daemon, OpencryptokiInitResult(**{**result.__dict__, "reset": reset})

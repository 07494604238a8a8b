"""Loading PKCS#11 modules once per process.

PyKCS11 keeps one loaded copy of each library per process, and SoftHSM2 reads
SOFTHSM2_CONF and scans its token folder only in C_Initialize: a process that
loaded SoftHSM2 does not see tokens another process creates later (observed with
Debian softhsm2 2.6.1-2.1). So this module keeps one PyKCS11Lib per module path and
records the SoftHSM2 configuration it was initialized with. It finalizes and
reloads the module when that configuration must change or a token may have
appeared. It reloads only while no session of this process is open, because a
reload closes every session and SoftHSM2 renumbers its slots.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import PyKCS11

from byok.errors import HsmError
from byok.hsm.config import SOFTHSM2_CONF_ENV

logger = logging.getLogger(__name__)

_lock = threading.RLock()


@dataclass
class LoadedModule:
    """One loaded PKCS#11 module and the process-wide state that goes with it."""

    path: str
    lib: PyKCS11.PyKCS11Lib
    softhsm_conf: str | None
    conf_fingerprint: str | None
    open_sessions: int = 0
    # Totals over the life of the process, for the per-scenario session hygiene check.
    sessions_opened: int = 0
    sessions_closed: int = 0
    # PKCS#11 login state belongs to the application, not to one session, so byok counts
    # the sessions that need the user login on each slot and logs out after the last.
    logins: dict[int, int] = field(default_factory=dict)
    generation: int = 0
    # False until the slots were listed once after C_Initialize; a token missing from the
    # first listing cannot have been created after it.
    scanned: bool = False


_modules: dict[str, LoadedModule] = {}


def _conf_fingerprint(conf: Path | None) -> str | None:
    if conf is None:
        return None
    digest = hashlib.sha256(str(conf).encode("utf-8") + b"\0" + conf.read_bytes())
    return digest.hexdigest()


def _load(path: str, conf: Path | None) -> PyKCS11.PyKCS11Lib:
    if conf is not None:
        os.environ[SOFTHSM2_CONF_ENV] = str(conf)
    try:
        return PyKCS11.PyKCS11Lib().load(path)
    except PyKCS11.PyKCS11Error as error:
        raise HsmError(
            f"loading PKCS#11 module {path} failed: {error}",
            ckr=int(error.value),
            operation="C_Initialize",
            fix="check that the module is the PKCS#11 library of the HSM client and that its "
            "configuration (SOFTHSM2_CONF, Chrystoki.conf) is readable",
        ) from None


def load_module(path: Path, *, softhsm_conf: Path | None = None) -> LoadedModule:
    """Return the process-wide loaded module at ``path``, initialized with ``softhsm_conf`` when given.

    With ``softhsm_conf`` None the module is used with whatever configuration it has.
    Raises HsmError when the module must be re-initialized for another SoftHSM2
    configuration while this process still has a session open on it.
    """
    key = str(path)
    fingerprint = _conf_fingerprint(softhsm_conf)
    with _lock:
        entry = _modules.get(key)
        if entry is None:
            lib = _load(key, softhsm_conf)
            entry = LoadedModule(
                path=key,
                lib=lib,
                softhsm_conf=str(softhsm_conf) if softhsm_conf else None,
                conf_fingerprint=fingerprint,
            )
            _modules[key] = entry
            logger.info("Loaded PKCS#11 module %s (SOFTHSM2_CONF=%s)", key, entry.softhsm_conf)
            return entry
        if fingerprint is None or fingerprint == entry.conf_fingerprint:
            return entry
        if entry.open_sessions:
            raise HsmError(
                f"PKCS#11 module {key} is initialized with SoftHSM2 configuration {entry.softhsm_conf}, "
                f"but {softhsm_conf} is needed, and {entry.open_sessions} session(s) of this process "
                "are still open; SoftHSM2 reads its configuration only in C_Initialize",
                operation="C_Initialize",
                fix="close the other sessions first, or use one state directory per process",
            )
        reload_module(entry, softhsm_conf=softhsm_conf, reason="the SoftHSM2 configuration changed")
        return entry


def reload_module(entry: LoadedModule, *, softhsm_conf: Path | None = None, reason: str) -> None:
    """Finalize and re-initialize a module; the caller guarantees no session is open."""
    with _lock:
        if entry.open_sessions:
            raise HsmError(
                f"cannot re-initialize PKCS#11 module {entry.path} while {entry.open_sessions} "
                "session(s) of this process are open",
                operation="C_Finalize",
                fix="close the sessions first",
            )
        conf = (
            softhsm_conf
            if softhsm_conf is not None
            else (Path(entry.softhsm_conf) if entry.softhsm_conf else None)
        )
        entry.lib.unload()
        entry.lib = _load(entry.path, conf)
        entry.softhsm_conf = str(conf) if conf else None
        entry.conf_fingerprint = _conf_fingerprint(conf)
        entry.logins.clear()
        entry.scanned = False
        entry.generation += 1
        logger.info(
            "Re-initialized PKCS#11 module %s because %s (SOFTHSM2_CONF=%s)",
            entry.path,
            reason,
            entry.softhsm_conf,
        )


def open_session_counts() -> dict[str, int]:
    """Return {module path: sessions byok opened and has not closed} for every loaded module."""
    with _lock:
        return {path: entry.open_sessions for path, entry in _modules.items()}


def loaded_modules() -> list[str]:
    """Return the paths of the modules loaded in this process."""
    with _lock:
        return list(_modules)


def unload_module_if_loaded(path: str | None) -> None:
    """C_Finalize and forget the module at ``path``; the next ``load_module`` initializes it again.

    opencryptoki's module is attached to pkcsslotd's shared memory, so it is unloaded
    before that daemon stops. Raises HsmError while a session of this process is open.
    """
    if path is None:
        return
    with _lock:
        entry = _modules.get(path)
        if entry is None:
            return
        if entry.open_sessions:
            raise HsmError(
                f"cannot unload PKCS#11 module {path} while {entry.open_sessions} session(s) of this process are open",
                operation="C_Finalize",
                fix="close the sessions first",
            )
        entry.lib.unload()
        del _modules[path]
        logger.info("Unloaded PKCS#11 module %s", path)

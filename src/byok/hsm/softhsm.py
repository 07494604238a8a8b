"""Bootstrap of the byok-managed SoftHSM2 token under the state directory.

The token is initialized in this process through PyKCS11 (C_InitToken, then C_Login
as the Security Officer and C_InitPIN), never through ``softhsm2-util``, whose
command line would carry both PINs. It runs in-process rather than in a child
process, because SoftHSM2 2.6.1 scans its token folder only in C_Initialize: a
process that already initialized the module does not see a token another process
creates. In-process, SoftHSM2 shows the new token in the same slot at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import PyKCS11

from byok.errors import ConfigError, HsmError
from byok.hsm.ckr import translate_error
from byok.hsm.config import (
    is_managed_softhsm,
    resolve_pin,
    softhsm_conf_path,
    softhsm_token_dir,
)
from byok.hsm.session import Hsm, TokenInfo
from byok.profile import HsmSettings
from byok.secrets import Secret, generate_secret_file, read_secret_file

logger = logging.getLogger(__name__)

# C_InitToken takes a 32-byte CK_UTF8CHAR label padded with blanks. PyKCS11 passes the string
# as given, and SoftHSM2 2.6.1 then pads a short label with NUL bytes (observed).
TOKEN_LABEL_BYTES = 32
PIN_DIGITS = 16


@dataclass(frozen=True)
class TokenInitResult:
    """Outcome of ``init_token``: whether a token was created, where its files are, and its token info."""

    token_label: str
    created: bool
    conf_path: Path
    token_dir: Path
    pin_file: Path | None
    so_pin_file: Path
    user_pin_source: str
    token_info: TokenInfo


def _check_settings(settings: HsmSettings) -> None:
    if not is_managed_softhsm(settings):
        raise ConfigError(
            f"token {settings.token_label!r} is not a byok-managed SoftHSM2 token "
            f"(family {settings.family!r}, managed {settings.managed})",
            fix='use a profile with family = "softhsm" and managed = true, such as softhsm-emulator',
        )
    if not settings.so_pin_file:
        raise ConfigError(
            "[hsm] so_pin_file is missing for a managed SoftHSM2 token",
            fix='add so_pin_file = "secrets/softhsm-so-pin" under [hsm]',
        )
    if not settings.pin_file and not settings.pin_env:
        raise ConfigError(
            "[hsm] has neither pin_file nor pin_env for a managed SoftHSM2 token",
            fix='add pin_file = "secrets/softhsm-user-pin" under [hsm]',
        )
    encoded = settings.token_label.encode("utf-8")
    if (
        not encoded
        or len(encoded) > TOKEN_LABEL_BYTES
        or settings.token_label != settings.token_label.strip()
    ):
        raise ConfigError(
            f"token label {settings.token_label!r} is invalid: it must be 1 to {TOKEN_LABEL_BYTES} bytes "
            "of UTF-8 without leading or trailing blanks",
            fix="choose a shorter label under [hsm] token_label",
        )


def _uninitialized_slot(hsm: Hsm) -> int:
    lib = hsm._module().lib
    try:
        for slot in lib.getSlotList(tokenPresent=True):
            if not lib.getTokenInfo(slot).flags & PyKCS11.CKF_TOKEN_INITIALIZED:
                return slot
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_GetSlotList/C_GetTokenInfo") from None
    raise HsmError(
        f"SoftHSM2 module {hsm.module_path} offers no uninitialized slot for token {hsm.token_label!r}",
        operation="C_InitToken",
        fix="check directories.tokendir in the SoftHSM2 configuration and its permissions",
    )


def _init_user_pin(hsm: Hsm, so_pin: Secret, user_pin: Secret) -> None:
    """Log in as the Security Officer and set the user PIN with C_InitPIN."""
    slot = hsm._find_slot()
    module = hsm._module()
    lib = module.lib
    try:
        pk_session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_OpenSession", labels=[hsm.token_label]) from None
    module.open_sessions += 1
    try:
        try:
            pk_session.login(so_pin.reveal(), PyKCS11.CKU_SO)
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_Login(CKU_SO)", labels=[hsm.token_label]
            ) from None
        try:
            pk_session.initPin(user_pin.reveal())
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(error, operation="C_InitPIN", labels=[hsm.token_label]) from None
        finally:
            try:
                pk_session.logout()
            except PyKCS11.PyKCS11Error as error:
                logger.warning("C_Logout(CKU_SO) on token %r failed: %s", hsm.token_label, error)
    finally:
        try:
            pk_session.closeSession()
        except PyKCS11.PyKCS11Error as error:
            logger.warning("C_CloseSession on token %r failed: %s", hsm.token_label, error)
        module.open_sessions -= 1


def _new_user_pin(settings: HsmSettings, state_dir: Path) -> tuple[Secret, str]:
    """Return the user PIN for a new token: the environment variable when set, else a generated file."""
    if settings.pin_env and os.environ.get(settings.pin_env):
        return resolve_pin(settings, state_dir), f"environment variable {settings.pin_env}"
    if settings.pin_file is None:
        raise ConfigError(
            f"environment variable {settings.pin_env} is not set and [hsm] has no pin_file, "
            "so there is no user PIN for the new token",
            fix=f'export {settings.pin_env}=... or add pin_file = "secrets/softhsm-user-pin" under [hsm]',
        )
    path = state_dir / settings.pin_file
    pin = generate_secret_file(path, f"user PIN of token {settings.token_label}", length=PIN_DIGITS)
    return pin, f"file {path}"


def init_token(settings: HsmSettings, state_dir: Path) -> TokenInitResult:
    """Create the managed SoftHSM2 token and its PIN files, or check the existing one; safe to repeat.

    A new token gets a generated 16-digit SO PIN in ``<state>/<so_pin_file>`` and a user
    PIN from ``settings.pin_env`` when that variable is set, else a generated one in
    ``<state>/<pin_file>`` (files mode 0600). For an existing token the user PIN is
    resolved the same way and must log in. Raises ConfigError for an unmanaged
    profile and HsmError for a failing PKCS#11 call.
    """
    _check_settings(settings)
    state_dir = Path(state_dir).resolve()
    hsm = Hsm.attach(settings, state_dir)
    so_pin_path = state_dir / settings.so_pin_file
    pin_path = state_dir / settings.pin_file if settings.pin_file else None

    created = False
    if hsm._find_slot_or_none() is None:
        so_pin = generate_secret_file(
            so_pin_path, f"SO PIN of token {settings.token_label}", length=PIN_DIGITS
        )
        user_pin, user_pin_source = _new_user_pin(settings, state_dir)
        slot = _uninitialized_slot(hsm)
        lib = hsm._module().lib
        label = settings.token_label.encode("utf-8").ljust(TOKEN_LABEL_BYTES, b" ").decode("utf-8")
        try:
            lib.initToken(slot, so_pin.reveal(), label)
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_InitToken", labels=[settings.token_label]
            ) from None
        _init_user_pin(hsm, so_pin, user_pin)
        created = True
        logger.info(
            "Initialized SoftHSM2 token %r under %s (user PIN from %s)",
            settings.token_label,
            softhsm_token_dir(state_dir),
            user_pin_source,
        )
    else:
        user_pin = resolve_pin(settings, state_dir)
        user_pin_source = (
            f"environment variable {settings.pin_env}"
            if settings.pin_env and os.environ.get(settings.pin_env)
            else f"file {pin_path}"
        )
        if not hsm.token_info().flags & PyKCS11.CKF_USER_PIN_INITIALIZED:
            # An earlier run stopped between C_InitToken and C_InitPIN.
            so_pin = read_secret_file(so_pin_path, f"SO PIN of token {settings.token_label}")
            _init_user_pin(hsm, so_pin, user_pin)
            logger.info("Set the missing user PIN of SoftHSM2 token %r", settings.token_label)

    # Logging in proves that the PIN byok will use matches the token.
    with hsm.session(user_pin):
        pass

    return TokenInitResult(
        token_label=settings.token_label,
        created=created,
        conf_path=softhsm_conf_path(state_dir, settings.mechanisms),
        token_dir=softhsm_token_dir(state_dir),
        pin_file=pin_path,
        so_pin_file=so_pin_path,
        user_pin_source=user_pin_source,
        token_info=hsm.token_info(),
    )

"""The SoftHSM2 configuration file of a byok-managed token, and where the user PIN comes from."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from byok.errors import ConfigError
from byok.profile import HsmSettings
from byok.secrets import Secret, load_secret

logger = logging.getLogger(__name__)

SOFTHSM2_CONF_ENV = "SOFTHSM2_CONF"


def softhsm_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "softhsm2"


def softhsm_conf_path(state_dir: Path, mechanisms: str | None = None) -> Path:
    """Return the configuration file for a ``slots.mechanisms`` value.

    Every profile shares the token folder, but a profile that restricts mechanisms
    (softhsm-fips) gets its own file, named after the restriction, so switching
    profiles never rewrites the configuration another profile uses.
    """
    value = slots_mechanisms_value(mechanisms)
    if value == "ALL":
        return softhsm_dir(state_dir) / "softhsm2.conf"
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
    return softhsm_dir(state_dir) / f"softhsm2-mechanisms-{digest}.conf"


def softhsm_token_dir(state_dir: Path) -> Path:
    return softhsm_dir(state_dir) / "tokens"


def is_managed_softhsm(settings: HsmSettings) -> bool:
    return settings.family == "softhsm" and settings.managed


def slots_mechanisms_value(mechanisms: str | None) -> str:
    """Return the ``slots.mechanisms`` value for SoftHSM2's configuration file.

    Debian softhsm2 2.6.1 ignores ``-CKM_RSA_PKCS``, which still lists CKM_RSA_PKCS
    (observed), because the minus stays attached to the first name. Writing the
    minus as its own entry, ``-,CKM_RSA_PKCS``, removes the mechanism.
    """
    if not mechanisms or not mechanisms.strip():
        return "ALL"
    names = [name.strip() for name in mechanisms.split(",") if name.strip()]
    if names[0].startswith("-") and names[0] != "-":
        names = ["-", names[0][1:].strip(), *names[1:]]
    return ",".join(names)


def softhsm_conf_text(state_dir: Path, mechanisms: str | None) -> str:
    """Return the text of the SoftHSM2 configuration file for a token under ``state_dir``."""
    return (
        "# Written by byok for its managed SoftHSM2 token; byok rewrites it when the profile changes.\n"
        f"directories.tokendir = {softhsm_token_dir(state_dir)}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        f"slots.mechanisms = {slots_mechanisms_value(mechanisms)}\n"
    )


def ensure_softhsm_conf(settings: HsmSettings, state_dir: Path) -> Path:
    """Write ``<state>/softhsm2/softhsm2.conf`` and its token folder when missing or different; return the path.

    SoftHSM2 reads the file named by SOFTHSM2_CONF only in C_Initialize, so the file
    must be in place before the module is loaded.
    """
    if not is_managed_softhsm(settings):
        raise ConfigError(
            f"token {settings.token_label!r} is not a byok-managed SoftHSM2 token "
            f"(family {settings.family!r}, managed {settings.managed})",
            fix='set family = "softhsm" and managed = true under [hsm] to let byok manage the token',
        )
    token_dir = softhsm_token_dir(state_dir)
    token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(token_dir, 0o700)

    path = softhsm_conf_path(state_dir, settings.mechanisms)
    text = softhsm_conf_text(state_dir, settings.mechanisms)
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current != text:
        temporary = path.with_suffix(".conf.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
        logger.info(
            "Wrote SoftHSM2 configuration %s (slots.mechanisms = %s)",
            path,
            slots_mechanisms_value(settings.mechanisms),
        )
    return path


def resolve_pin(settings: HsmSettings, state_dir: Path) -> Secret:
    """Load the token's user PIN from ``settings.pin_env`` when set, else from ``<state>/<pin_file>``.

    Raises SecretNotFound (a ConfigError) naming both places when neither has it.
    """
    pin_file = Path(state_dir).resolve() / settings.pin_file if settings.pin_file else None
    return load_secret(
        f"user PIN of token {settings.token_label}",
        env=settings.pin_env,
        file=pin_file,
    )

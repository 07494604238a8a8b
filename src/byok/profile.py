"""Profiles: which HSM, which KMS endpoint, which algorithm, and where secrets come from.

A profile is a TOML file under ``profiles/`` (or any path). It names environment
variables and files that hold secrets, never the secrets themselves, and the loader
rejects unknown keys so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import os
import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byok.errors import ConfigError

DEFAULT_PROFILE = "softhsm-emulator"

WRAPPING_ALGORITHMS = ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5")
WRAPPING_KEY_SPECS = ("RSA_2048",)
HSM_FAMILIES = ("softhsm", "opencryptoki", "luna", "dpod")
FIPS_MODES = ("detect", "required", "off")
WRAP_ATTRIBUTE_MODES = ("template", "set-after-import")

# Debian installs PKCS#11 modules under these folders; a profile may name a bare file
# name so it works on every architecture.
_MODULE_SEARCH_DIRS = (
    "/usr/lib/softhsm",
    "/usr/lib/{multiarch}/softhsm",
    "/usr/lib/{multiarch}/opencryptoki",
    "/usr/lib/{multiarch}/pkcs11",
    "/usr/lib/{multiarch}",
    "/usr/lib",
)


@dataclass(frozen=True)
class HsmSettings:
    family: str
    module: str
    token_label: str
    pin_env: str | None = None
    pin_file: str | None = None
    so_pin_file: str | None = None
    managed: bool = False
    wrap_attribute: str = "template"
    public_key_token_object: bool = False
    aes_key_label_prefix: str = "byok-aes"
    mechanisms: str | None = None

    def module_path(self) -> Path:
        """Resolve ``module`` to an existing shared library."""
        return resolve_module(self.module)


@dataclass(frozen=True)
class KmsSettings:
    endpoint: str
    region: str
    access_key_id_env: str | None = None
    access_key_secret_env: str | None = None
    wrapping_algorithm: str = "RSAES_OAEP_SHA_1"
    wrapping_key_spec: str = "RSA_2048"
    protection_level: str = "SOFTWARE"

    @property
    def uses_emulator(self) -> bool:
        return self.endpoint == "emulator"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    hsm: HsmSettings
    kms: KmsSettings
    fips: str = "off"
    report_signer_label: str = "byok-report-signer"
    # PEM certificate issued for an existing signing key on the token; None lets byok
    # create the key pair and a self-signed certificate on first use.
    report_signer_certificate: Path | None = None
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def with_wrapping_algorithm(self, algorithm: str) -> Profile:
        """Return a copy of this profile that requests another WrappingAlgorithm."""
        if algorithm not in WRAPPING_ALGORITHMS:
            raise ConfigError(
                f"--wrapping-algorithm {algorithm!r} is not a KMS WrappingAlgorithm",
                fix=f"use one of {', '.join(WRAPPING_ALGORITHMS)}",
            )
        kms = KmsSettings(**{**self.kms.__dict__, "wrapping_algorithm": algorithm})
        return Profile(**{**self.__dict__, "kms": kms})


def project_root() -> Path:
    """Return the checkout that contains ``profiles/`` and ``features/``.

    byok is installed in editable mode from its checkout, so the root is found from
    this file; ``BYOK_PROJECT_ROOT`` overrides it for unusual installs.
    """
    configured = os.environ.get("BYOK_PROJECT_ROOT")
    if configured:
        return Path(configured).resolve()
    return Path(__file__).resolve().parents[2]


def profiles_dir() -> Path:
    return project_root() / "profiles"


def available_profiles() -> list[str]:
    return sorted(path.stem for path in profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str | os.PathLike[str] | None = None) -> Profile:
    """Load a profile by name from ``profiles/`` or from a TOML file path."""
    reference = str(name_or_path) if name_or_path else os.environ.get("BYOK_PROFILE", DEFAULT_PROFILE)
    candidate = Path(reference)
    if candidate.suffix == ".toml" or os.sep in reference:
        path = candidate
    else:
        path = profiles_dir() / f"{reference}.toml"
    if not path.is_file():
        raise ConfigError(
            f"profile {reference!r} not found (looked for {path})",
            fix=f"use one of {', '.join(available_profiles())} or the path of a TOML file",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"profile {path} is not valid TOML: {error}", fix="correct the file") from None
    return parse_profile(data, source=path)


def parse_profile(data: dict[str, Any], *, source: Path | None = None) -> Profile:
    """Build a Profile from parsed TOML, rejecting unknown keys and invalid values."""
    where = str(source) if source else "profile"
    _check_keys(data, {"name", "description", "hsm", "kms", "fips", "report"}, where)
    hsm_data = _table(data, "hsm", where)
    kms_data = _table(data, "kms", where)
    _check_keys(hsm_data, set(HsmSettings.__dataclass_fields__), f"{where} [hsm]")
    _check_keys(kms_data, set(KmsSettings.__dataclass_fields__), f"{where} [kms]")
    report = data.get("report", {})
    _check_keys(report, {"signer_label", "signer_certificate"}, f"{where} [report]")

    for required in ("family", "module", "token_label"):
        if not hsm_data.get(required):
            raise ConfigError(f"{where}: [hsm] {required} is missing", fix=f"add {required} = \"...\" under [hsm]")
    for required in ("endpoint", "region"):
        if not kms_data.get(required):
            raise ConfigError(f"{where}: [kms] {required} is missing", fix=f"add {required} = \"...\" under [kms]")

    hsm = HsmSettings(**hsm_data)
    kms = KmsSettings(**kms_data)
    fips = data.get("fips", "off")
    _check_choice("hsm.family", hsm.family, HSM_FAMILIES, source)
    _check_choice("hsm.wrap_attribute", hsm.wrap_attribute, WRAP_ATTRIBUTE_MODES, source)
    _check_choice("kms.wrapping_algorithm", kms.wrapping_algorithm, WRAPPING_ALGORITHMS, source)
    _check_choice("kms.wrapping_key_spec", kms.wrapping_key_spec, WRAPPING_KEY_SPECS, source)
    _check_choice("fips", fips, FIPS_MODES, source)
    if not kms.uses_emulator and not (kms.access_key_id_env and kms.access_key_secret_env):
        raise ConfigError(
            f"{where}: a real KMS endpoint needs access_key_id_env and access_key_secret_env under [kms]",
            fix="name the environment variables that hold the AccessKey pair",
        )

    return Profile(
        name=data.get("name") or (source.stem if source else "unnamed"),
        description=data.get("description", ""),
        hsm=hsm,
        kms=kms,
        fips=fips,
        report_signer_label=report.get("signer_label", "byok-report-signer"),
        report_signer_certificate=_relative_to(source, report.get("signer_certificate")),
        source=source,
        raw=data,
    )


def _relative_to(source: Path | None, value: str | None) -> Path | None:
    """Resolve a path from a profile relative to the profile file's folder."""
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    return path


def resolve_module(module: str) -> Path:
    """Find a PKCS#11 module given as a path or as a file name in Debian's library folders."""
    expanded_text = os.path.expandvars(os.path.expanduser(module))
    if "$" in expanded_text:
        raise ConfigError(
            f"PKCS#11 module {module} names an environment variable that is not set",
            fix="export the variable (for DPoD, DPOD_CLIENT_DIR: the folder the DPoD client was unpacked in)",
        )
    expanded = Path(expanded_text)
    if expanded.is_absolute() or os.sep in module:
        if expanded.is_file():
            return expanded
        raise ConfigError(
            f"PKCS#11 module {module} does not exist",
            fix="install the HSM client or correct [hsm] module in the profile",
        )
    multiarch = f"{platform.machine()}-linux-gnu"
    for folder in _MODULE_SEARCH_DIRS:
        candidate = Path(folder.format(multiarch=multiarch)) / module
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"PKCS#11 module {module} not found in the standard library folders",
        fix="run 'make certify' to install the Debian packages, or give the module's full path in the profile",
    )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: table [{key}] is missing", fix=f"add a [{key}] table")
    return value


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            fix=f"allowed keys are {', '.join(sorted(allowed))}",
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...], source: Path | None) -> None:
    if value not in choices:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}{name} = {value!r} is not valid", fix=f"use one of {', '.join(choices)}")

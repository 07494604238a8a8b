"""FIPS mode of the token: read from Luna policies, declared by the profile, or probed.

SafeNet Luna 7 is in FIPS mode when HSM policy 12 "Allow non-FIPS algorithms" is 0,
or, from firmware 7.7.1, when partition policy 43 of the same name is 0 for the
partition. Luna's client library exports the SafeNet extension functions next to the
PKCS#11 ones (signatures as in Thales' pycryptoki, ``cryptoki/func_defs.py``):

    CK_RV CA_GetHSMPolicySetting(CK_SLOT_ID, CK_ULONG policy, CK_ULONG_PTR value);
    CK_RV CA_GetUserContainerNumber(CK_SLOT_ID, CK_ULONG_PTR container);
    CK_RV CA_GetContainerPolicySetting(CK_SLOT_ID, CK_ULONG container, CK_ULONG policy,
                                       CK_ULONG_PTR value);

They are looked up by name in the module's exports rather than through the
CA_GetFunctionList table, whose layout differs between client versions. Mechanism
lists are no FIPS indicator on Luna: client 10.1 and later re-insert remapped RSA
mechanisms (Thales "RSA mechanism remap").

From Luna firmware 7.8.4 and DPoD firmware 3.0, FIPS mode forbids CKM_RSA_PKCS for
wrap, unwrap, encrypt and decrypt, so byok refuses RSAES_PKCS1_V1_5 in FIPS mode
before calling the token.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PyKCS11

from byok.errors import ConfigError
from byok.hsm.ckr import ckr_name
from byok.hsm.mechanisms import WrapMechanism

logger = logging.getLogger(__name__)

HSM_POLICY_ALLOW_NON_FIPS = 12
PARTITION_POLICY_ALLOW_NON_FIPS = 43
LUNA_FAMILIES = ("luna", "dpod")

# How the FIPS state became known.
SOURCE_READ = "read"
SOURCE_DECLARED = "declared"
SOURCE_PROBED = "probed"


class FipsModeRefusal(ConfigError):
    """A wrapping algorithm that FIPS mode forbids was requested; raised before any PKCS#11 call."""


@dataclass(frozen=True)
class LunaPolicies:
    """Luna's "Allow non-FIPS algorithms" policies; None where the module returned an error."""

    hsm_policy_12: int | None
    partition_policy_43: int | None
    container: int | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def fips_mode(self) -> bool | None:
        """True when either policy is 0, False when every policy read is non-zero, None when none was read."""
        values = [value for value in (self.hsm_policy_12, self.partition_policy_43) if value is not None]
        if not values:
            return None
        return any(value == 0 for value in values)


@dataclass(frozen=True)
class FipsState:
    """Whether the token works in FIPS mode, and how byok knows it."""

    enabled: bool
    source: str
    profile_setting: str
    detail: str
    policies: LunaPolicies | None = None

    def as_dict(self) -> dict[str, Any]:
        table: dict[str, Any] = {
            "FIPS mode": self.enabled,
            "known by": self.source,
            "profile fips": self.profile_setting,
            "detail": self.detail,
        }
        if self.policies is not None:
            table["HSM policy 12 (Allow non-FIPS algorithms)"] = self.policies.hsm_policy_12
            table["partition policy 43 (Allow non-FIPS algorithms)"] = self.policies.partition_policy_43
            table["policy read errors"] = dict(self.policies.errors)
        return table


def _function(library: ctypes.CDLL, name: str, argtypes: list[Any]) -> Any | None:
    try:
        function = getattr(library, name)
    except AttributeError:
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_ulong
    return function


def read_luna_policies(library_path: Path | str, slot_id: int) -> LunaPolicies | None:
    """Read HSM policy 12 and partition policy 43 for ``slot_id`` through the module's CA_* exports.

    Returns None when the module exports none of the functions (not a Luna client
    library). The module must already be initialized (C_Initialize) in this process
    when it is a real Luna library; dlopen of the same path shares that state.
    """
    try:
        library = ctypes.CDLL(str(library_path))
    except OSError as error:
        raise ConfigError(
            f"cannot load PKCS#11 module {library_path} to read its FIPS policies: {error}",
            fix="check [hsm] module in the profile",
        ) from None
    ulong_pointer = ctypes.POINTER(ctypes.c_ulong)
    hsm_setting = _function(
        library, "CA_GetHSMPolicySetting", [ctypes.c_ulong, ctypes.c_ulong, ulong_pointer]
    )
    container_number = _function(library, "CA_GetUserContainerNumber", [ctypes.c_ulong, ulong_pointer])
    container_setting = _function(
        library,
        "CA_GetContainerPolicySetting",
        [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ulong_pointer],
    )
    if hsm_setting is None and container_setting is None:
        return None

    errors: dict[str, str] = {}
    hsm_policy: int | None = None
    partition_policy: int | None = None
    container: int | None = None

    if hsm_setting is not None:
        value = ctypes.c_ulong(0)
        rv = hsm_setting(slot_id, HSM_POLICY_ALLOW_NON_FIPS, ctypes.byref(value))
        if rv == PyKCS11.CKR_OK:
            hsm_policy = int(value.value)
        else:
            errors["CA_GetHSMPolicySetting(12)"] = ckr_name(int(rv))

    # The partition policy needs the partition's container number first.
    if container_setting is not None and container_number is not None:
        number = ctypes.c_ulong(0)
        rv = container_number(slot_id, ctypes.byref(number))
        if rv == PyKCS11.CKR_OK:
            container = int(number.value)
            value = ctypes.c_ulong(0)
            rv = container_setting(
                slot_id, container, PARTITION_POLICY_ALLOW_NON_FIPS, ctypes.byref(value)
            )
            if rv == PyKCS11.CKR_OK:
                partition_policy = int(value.value)
            else:
                errors["CA_GetContainerPolicySetting(43)"] = ckr_name(int(rv))
        else:
            errors["CA_GetUserContainerNumber"] = ckr_name(int(rv))
    elif container_setting is not None:
        errors["CA_GetUserContainerNumber"] = "not exported by the module"

    policies = LunaPolicies(hsm_policy, partition_policy, container, errors)
    logger.info(
        "Luna policies of slot %d in %s: HSM policy 12 = %s, partition policy 43 = %s, errors %s",
        slot_id,
        library_path,
        hsm_policy,
        partition_policy,
        errors or "none",
    )
    return policies


def declared_state(profile_setting: str) -> FipsState | None:
    """Return the state a profile declares ("required" or "off"), or None for "detect"."""
    if profile_setting == "required":
        return FipsState(True, SOURCE_DECLARED, profile_setting, 'the profile sets fips = "required"')
    if profile_setting == "off":
        return FipsState(False, SOURCE_DECLARED, profile_setting, 'the profile sets fips = "off"')
    if profile_setting == "detect":
        return None
    raise ConfigError(
        f"fips = {profile_setting!r} is not valid", fix='use "detect", "required" or "off"'
    )


def state_from_policies(profile_setting: str, policies: LunaPolicies) -> FipsState | None:
    """Turn Luna policy values into a FIPS state, or None when no policy could be read."""
    enabled = policies.fips_mode
    if enabled is None:
        return None
    detail = (
        f"HSM policy 12 = {policies.hsm_policy_12}, partition policy 43 = "
        f"{policies.partition_policy_43}; 0 means non-FIPS algorithms are not allowed"
    )
    return FipsState(enabled, SOURCE_READ, profile_setting, detail, policies)


def policy_state(
    family: str, library_path: Path | str, slot_id: Callable[[], int], profile_setting: str
) -> FipsState | None:
    """Return the declared state, or for fips = "detect" on Luna/DPoD the state read from the policies.

    ``slot_id`` is called only when the policies are read. Returns None when nothing
    declares or reads the state, so the caller must probe.
    """
    declared = declared_state(profile_setting)
    if declared is not None:
        return declared
    if family not in LUNA_FAMILIES:
        return None
    policies = read_luna_policies(library_path, slot_id())
    if policies is None:
        logger.info("Module %s exports no Luna policy function; FIPS mode will be probed", library_path)
        return None
    return state_from_policies(profile_setting, policies)


def check_wrap_allowed(mechanism: WrapMechanism, fips: FipsState | None, token_label: str) -> None:
    """Raise FipsModeRefusal when FIPS mode forbids ``mechanism`` for C_WrapKey; call before any HSM call."""
    if fips is None or not fips.enabled:
        return
    if mechanism.mechanism == PyKCS11.CKM_RSA_PKCS:
        raise FipsModeRefusal(
            f"token {token_label!r} is in FIPS mode ({fips.source}: {fips.detail}), and FIPS mode "
            f"forbids key transport with CKM_RSA_PKCS (PKCS#1 v1.5), which WrappingAlgorithm "
            f"{mechanism.algorithm} needs; byok did not call the token",
            fix="use WrappingAlgorithm RSAES_OAEP_SHA_256 (or RSAES_OAEP_SHA_1 where the KMS accepts it)",
        )

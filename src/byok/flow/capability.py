"""Capability negotiation: can this token wrap with what the profile's WrappingAlgorithm needs?

Runs once per run, before any KMS call, so a token that cannot do the wrap blocks the
run with one clear sentence instead of failing after a CMK was created. For every
KMS wrapping algorithm it records whether the mechanism is in the raw
C_GetMechanismList, its C_GetMechanismInfo flags, and the result of a throw-away
wrap of a session AES key under a session RSA-2048 public key whose private half
byok keeps in software, so the blob is unwrapped and compared with the key's check
value. A mechanism list alone proves nothing: SoftHSM2 2.6.1 lists CKM_RSA_PKCS_OAEP
but accepts only SHA-1 parameters, and Luna clients re-insert remapped mechanisms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import PyKCS11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from byok.errors import BlockedByEnvironment, HsmError
from byok.evidence import INFORMATIONAL, PASSED, StepRecord
from byok.hsm import Hsm, WrapMechanism, mechanism_name, wrap_mechanism_for
from byok.hsm.fips import (
    SOURCE_PROBED,
    FipsModeRefusal,
    FipsState,
    check_wrap_allowed,
    policy_state,
)
from byok.hsm.session import aes_check_value
from byok.profile import WRAPPING_ALGORITHMS
from byok.secrets import Secret

logger = logging.getLogger(__name__)

SECTION_CAPABILITY = "Check the HSM can wrap with the KMS wrapping algorithm"

# Mechanisms whose presence and flags the record lists, beyond the wrap mechanisms.
INVENTORY_MECHANISMS = (
    "CKM_RSA_PKCS_OAEP",
    "CKM_RSA_PKCS",
    "CKM_RSA_X_509",
    "CKM_AES_KEY_GEN",
    "CKM_AES_GCM",
    "CKM_AES_ECB",
)

# Known limits of token families, quoted in the "blocked" sentence.
_KNOWN_LIMITS = {
    "softhsm": "SoftHSM2 2.6.1 does OAEP only with SHA-1",
}


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of the trial wrap for one wrapping algorithm."""

    algorithm: str
    mechanism: WrapMechanism
    listed: bool
    wrap_flag: bool
    outcome: str
    ckr_name: str | None = None
    detail: str = ""

    @property
    def works(self) -> bool:
        return self.outcome == "wrapped and verified"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism.describe(),
            "in C_GetMechanismList": self.listed,
            "CKF_WRAP": self.wrap_flag,
            "trial wrap": self.outcome,
            "CKR": self.ckr_name,
            "detail": self.detail,
        }


@dataclass
class Capability:
    """The negotiated capability of the token for this run; ``require`` re-raises a blocked result."""

    wrapping_algorithm: str
    fips: FipsState
    probes: dict[str, ProbeResult]
    mechanisms: list[int]
    record: StepRecord
    warnings: list[str] = field(default_factory=list)
    blocked: BlockedByEnvironment | None = None

    def require(self) -> StepRecord:
        """Raise the stored BlockedByEnvironment when the token cannot do the profile's wrap."""
        if self.blocked is not None:
            raise self.blocked
        return self.record

    def usable_algorithm(self) -> str:
        """Return the profile's wrapping algorithm when it works, else the first one that does.

        Raises BlockedByEnvironment when the token wraps with none of them.
        """
        if self.probes[self.wrapping_algorithm].works:
            return self.wrapping_algorithm
        for algorithm, probe in self.probes.items():
            if probe.works:
                return algorithm
        raise self.blocked or BlockedByEnvironment(
            "the token wraps with none of the KMS wrapping algorithms",
            fix="use a token that supports CKM_RSA_PKCS_OAEP for C_WrapKey",
        )

    @property
    def mechanism_names(self) -> list[str]:
        return [mechanism_name(number) for number in self.mechanisms]


def _oaep_padding(mechanism: WrapMechanism) -> padding.AsymmetricPadding:
    hash_classes = {"CKM_SHA_1": hashes.SHA1, "CKM_SHA256": hashes.SHA256}
    digest = hash_classes[mechanism.hash_alg_name or ""]
    mgf_digest = {"CKG_MGF1_SHA1": hashes.SHA1, "CKG_MGF1_SHA256": hashes.SHA256}[mechanism.mgf_name or ""]
    return padding.OAEP(mgf=padding.MGF1(mgf_digest()), algorithm=digest(), label=None)


def _unwrap(private_key: rsa.RSAPrivateKey, mechanism: WrapMechanism, blob: bytes) -> bytes:
    if mechanism.is_oaep:
        return private_key.decrypt(blob, _oaep_padding(mechanism))
    return private_key.decrypt(blob, padding.PKCS1v15())


def _probe(
    session: Any,
    private_key: rsa.RSAPrivateKey,
    algorithm: str,
    listed_mechanisms: set[int],
    flags: dict[int, tuple[str, ...]],
    fips: FipsState,
    token_label: str,
) -> ProbeResult:
    mechanism = wrap_mechanism_for(algorithm)
    listed = mechanism.mechanism in listed_mechanisms
    wrap_flag = "CKF_WRAP" in flags.get(mechanism.mechanism, ())
    try:
        check_wrap_allowed(mechanism, fips, token_label)
    except FipsModeRefusal:
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "refused by byok in FIPS mode", detail="not sent to the token"
        )
    if not listed:
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "not attempted", detail="not in C_GetMechanismList"
        )
    try:
        trial = session.trial_wrap(mechanism, private_key.public_key())
    except HsmError as error:
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "rejected by the token",
            ckr_name=error.ckr_name, detail=f"{error.operation} returned {error.ckr_name}",
        )
    try:
        value = _unwrap(private_key, mechanism, trial.blob)
    except ValueError:
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "wrapped but not verified",
            ckr_name="CKR_OK", detail="the blob did not decrypt with the test private key",
        )
    if len(value) != 32:
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "wrapped but not verified",
            ckr_name="CKR_OK", detail=f"the blob decrypted to {len(value)} bytes, not 32",
        )
    if trial.check_value is not None and trial.check_value != aes_check_value(value):
        return ProbeResult(
            algorithm, mechanism, listed, wrap_flag, "wrapped but not verified",
            ckr_name="CKR_OK", detail=f"the unwrapped key does not match {trial.check_source}",
        )
    detail = (
        f"unwrapped 32 bytes match the key check value from {trial.check_source}"
        if trial.check_value is not None
        else "unwrapped 32 bytes; the token offers no key check value to compare"
    )
    return ProbeResult(algorithm, mechanism, listed, wrap_flag, "wrapped and verified", ckr_name="CKR_OK", detail=detail)


def negotiate(
    hsm: Hsm, pin: Secret, *, wrapping_algorithm: str, profile_fips: str
) -> Capability:
    """Probe the token for every KMS wrapping algorithm and decide whether ``wrapping_algorithm`` can run.

    Sets ``hsm.fips_state`` so later sessions refuse what FIPS mode forbids. Never
    raises for a token that cannot wrap: the result's ``blocked`` contains the
    BlockedByEnvironment that ``Capability.require`` raises. Raises HsmError or
    ConfigError when the token cannot be opened at all.
    """
    wanted = wrap_mechanism_for(wrapping_algorithm)
    token = hsm.token_info()
    record = StepRecord(
        "negotiate_capabilities",
        SECTION_CAPABILITY,
        inputs={
            "token label": token.label,
            "WrappingAlgorithm": wrapping_algorithm,
            "mechanism parameters": wanted.as_dict(),
            "profile fips": profile_fips,
        },
    )
    record.observe("token", {
        "label": token.label,
        "manufacturer": token.manufacturer_id,
        "model": token.model,
        "serial number": token.serial_number,
        "firmware": token.firmware_version,
        "library": f"{token.library_description} {token.library_version} ({token.library_manufacturer})",
        "Cryptoki version": token.cryptoki_version,
    })

    mechanisms = hsm.raw_mechanism_list()
    listed = set(mechanisms)
    flags: dict[int, tuple[str, ...]] = {}
    inventory: dict[str, Any] = {}
    for name in INVENTORY_MECHANISMS:
        number = getattr(PyKCS11, name)
        if number not in listed:
            inventory[name] = "not in C_GetMechanismList"
            continue
        try:
            info = hsm.mechanism_info(number)
        except HsmError as error:
            inventory[name] = f"C_GetMechanismInfo returned {error.ckr_name}"
            continue
        flags[number] = info.flag_names
        inventory[name] = {
            "min key size": info.min_key_size,
            "max key size": info.max_key_size,
            "flags": list(info.flag_names),
        }
    record.observe("C_GetMechanismList count", len(mechanisms))
    record.observe("mechanism inventory", inventory)
    record.observe("C_GetMechanismList", [mechanism_name(number) for number in mechanisms])

    warnings: list[str] = []
    if "CKF_WRAP" in flags.get(PyKCS11.CKM_RSA_X_509, ()):
        warnings.append(
            "the token gives CKM_RSA_X_509 (raw RSA without padding) the CKF_WRAP flag; "
            "byok never wraps with it, and a partition policy should forbid it"
        )

    fips = policy_state(hsm.settings.family, hsm.module_path, hsm._find_slot, profile_fips)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    probes: dict[str, ProbeResult] = {}
    with hsm.session(pin) as session:
        if fips is None:
            # No policy to read: probe CKM_RSA_PKCS, which FIPS mode forbids for wrapping.
            unknown = FipsState(False, SOURCE_PROBED, profile_fips, "")
            pkcs1 = _probe(session, private_key, "RSAES_PKCS1_V1_5", listed, flags, unknown, token.label)
            probes["RSAES_PKCS1_V1_5"] = pkcs1
            enabled = not pkcs1.works
            fips = FipsState(
                enabled,
                SOURCE_PROBED,
                profile_fips,
                f"no FIPS policy readable for family {hsm.settings.family!r}; a trial wrap with "
                f"CKM_RSA_PKCS was {pkcs1.outcome}",
            )
        for algorithm in WRAPPING_ALGORITHMS:
            if algorithm not in probes:
                probes[algorithm] = _probe(session, private_key, algorithm, listed, flags, fips, token.label)
    hsm.fips_state = fips

    record.observe("FIPS", fips.as_dict())
    record.observe("trial wraps", {algorithm: probe.as_dict() for algorithm, probe in probes.items()})
    if warnings:
        record.observe("warnings", warnings)
        for warning in warnings:
            logger.warning("Token %r: %s", token.label, warning)

    # Later wraps with an algorithm that failed here are blocked, not sent to the token.
    hsm.blocked_wraps = {
        algorithm: _blocked_sentence(token, hsm, probe, probes, fips)
        for algorithm, probe in probes.items()
        if not probe.works and probe.outcome != "refused by byok in FIPS mode"
    }
    capability = Capability(wrapping_algorithm, fips, probes, mechanisms, record, warnings)
    chosen = probes[wrapping_algorithm]
    record.check(f"trial wrap with {wrapping_algorithm}", "wrapped and verified", chosen.outcome)
    if chosen.works:
        record.finish(PASSED)
        return capability

    capability.blocked = BlockedByEnvironment(_blocked_sentence(token, hsm, chosen, probes, fips))
    record.observe("blocked", capability.blocked.message)
    # Blocked is not failed: the token is outside what the run certifies.
    record.finish(INFORMATIONAL)
    return capability


def _blocked_sentence(token: Any, hsm: Hsm, chosen: ProbeResult, probes: dict[str, ProbeResult], fips: FipsState) -> str:
    who = f"token {token.label!r} ({token.manufacturer_id}, {token.model})"
    if chosen.outcome == "refused by byok in FIPS mode":
        reason = f"the token is in FIPS mode ({fips.source}), which forbids CKM_RSA_PKCS for key transport"
    elif chosen.outcome == "not attempted":
        reason = "the mechanism is not in C_GetMechanismList"
    elif chosen.ckr_name and chosen.ckr_name != "CKR_OK":
        reason = f"C_WrapKey returned {chosen.ckr_name}"
    else:
        reason = chosen.detail
    limit = _KNOWN_LIMITS.get(hsm.settings.family)
    if limit and chosen.mechanism.is_oaep and chosen.mechanism.hash_alg_name != "CKM_SHA_1":
        reason += f"; {limit}"
    working = [algorithm for algorithm, probe in probes.items() if probe.works]
    suggestion = (
        "use WrappingAlgorithm " + " or ".join(working)
        if working
        else "use a token that can wrap with RSA-OAEP"
    )
    if hsm.settings.family == "softhsm" and chosen.mechanism.is_oaep:
        suggestion += " or the opencryptoki-emulator profile"
    return f"{who} cannot wrap with {chosen.mechanism.describe()}: {reason}; {suggestion}"


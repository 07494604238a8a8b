"""PKCS#11 return values (CKR_*) and their translation into HsmError.

The standard names come from PyKCS11's CKR table. The SafeNet Luna vendor codes are
CKR_VENDOR_DEFINED + 0x0D, 0x1A, 0x20 and 0x30 in the Luna SDK's cryptoki header.
PyKCS11 prints them only as "Vendor error (0x...)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import PyKCS11

from byok.errors import HsmError

if TYPE_CHECKING:
    from byok.hsm.mechanisms import WrapMechanism

LUNA_VENDOR_CODES: dict[int, str] = {
    0x8000000D: "CKR_WRAPPING_ERROR",
    0x8000001A: "CKR_USER_NOT_AUTHORIZED",
    0x80000020: "CKR_PARTITION_DISABLED",
    0x80000030: "CKR_OPERATION_NOT_ALLOWED",
}

CKR_NAMES: dict[int, str] = {
    **{
        value: name
        for value, name in PyKCS11.CKR.items()
        if isinstance(value, int)
        and value >= 0
        and isinstance(name, str)
        and name.startswith("CKR_")
    },
    **LUNA_VENDOR_CODES,
}

# Debian softhsm2 2.6.1 returns CKR_ARGUMENTS_BAD for any other OAEP parameters (observed
# for SHA-256 here; its check is MechParamCheckRSAPKCSOAEP in SoftHSMv2's SoftHSM.cpp).
SOFTHSM_OAEP_LIMIT = (
    "SoftHSM2 2.6.1 accepts CKM_RSA_PKCS_OAEP only with hashAlg=CKM_SHA_1, "
    "mgf=CKG_MGF1_SHA1, source=CKZ_DATA_SPECIFIED and no label"
)


def ckr_name(ckr: int) -> str:
    """Return the CKR_* name of a return value, or a hex form for codes no table names."""
    name = CKR_NAMES.get(ckr)
    if name:
        return name
    if ckr < 0:
        return f"PyKCS11 error {ckr} ({PyKCS11.CKR.get(ckr, 'unknown')})"
    if ckr & PyKCS11.CKR_VENDOR_DEFINED:
        return f"CKR_VENDOR_DEFINED+0x{ckr & ~PyKCS11.CKR_VENDOR_DEFINED & 0xFFFFFFFF:X}"
    return f"CKR_0x{ckr:08X}"


@dataclass(frozen=True)
class _Explanation:
    cause: str
    fix: str


def _explain(
    ckr: int,
    *,
    operation: str,
    mechanism: WrapMechanism | None,
) -> _Explanation:
    """Return the likely cause and fix of ``ckr`` for one operation, in plain words."""
    name = CKR_NAMES.get(ckr, "")
    wrapping = operation == "C_WrapKey"

    if operation.startswith("C_Decrypt") and name in (
        "CKR_ENCRYPTED_DATA_INVALID",
        "CKR_ENCRYPTED_DATA_LEN_RANGE",
        "CKR_GENERAL_ERROR",
    ):
        return _Explanation(
            "the AES-GCM tag did not verify: the key, the IV, the additional data (the "
            "EncryptionContext) or the ciphertext differs from what was encrypted; SoftHSM2 2.6.1 "
            "reports a failed tag check as CKR_GENERAL_ERROR",
            "decrypt with the AES key whose material KMS holds, the IV from the blob and the same "
            "EncryptionContext that Encrypt used",
        )
    if name == "CKR_KEY_FUNCTION_NOT_PERMITTED":
        if wrapping:
            return _Explanation(
                "the wrapping public key does not have CKA_WRAP=true",
                'import the wrapping public key with CKA_WRAP=true (wrap_attribute = "template"), '
                'or set CKA_WRAP=true after the import (wrap_attribute = "set-after-import") '
                "where the token allows changing attributes",
            )
        return _Explanation(
            "an attribute of the key (CKA_ENCRYPT, CKA_WRAP, CKA_SIGN, ...) does not permit this operation",
            "create the key with the attribute this operation needs set to true",
        )
    if name in ("CKR_KEY_UNEXTRACTABLE", "CKR_KEY_NOT_WRAPPABLE"):
        return _Explanation(
            "the AES key was created non-extractable (CKA_EXTRACTABLE=false), or with "
            "CKA_WRAP_WITH_TRUSTED=true and an untrusted wrapping key; "
            "the token never turns CKA_EXTRACTABLE back to true",
            "generate a new AES key with CKA_EXTRACTABLE=true and CKA_WRAP_WITH_TRUSTED=false",
        )
    if name in ("CKR_ARGUMENTS_BAD", "CKR_MECHANISM_PARAM_INVALID") and mechanism is not None:
        if mechanism.is_oaep:
            params = mechanism.packed_parameters()
            return _Explanation(
                f"the token rejected the OAEP parameters it was sent: hashAlg={mechanism.hash_alg_name} "
                f"(0x{mechanism.hash_alg:X}), mgf={mechanism.mgf_name} (0x{mechanism.mgf:X}), "
                f"source={mechanism.source_name} (0x{mechanism.source:X}), pSourceData=NULL, "
                f"ulSourceDataLen=0, packed as {len(params)} bytes {params.hex()}. {SOFTHSM_OAEP_LIMIT}",
                "use RSAES_OAEP_SHA_1 with SoftHSM2, or a token that wraps with OAEP SHA-256 "
                "(opencryptoki, SafeNet Luna) for RSAES_OAEP_SHA_256",
            )
        return _Explanation(
            f"the token rejected the parameters of {mechanism.describe()}",
            "check that the token supports this mechanism for C_WrapKey",
        )
    if name == "CKR_MECHANISM_INVALID":
        return _Explanation(
            "the token does not offer this mechanism for this operation, or its configuration "
            "disables it (SoftHSM2 slots.mechanisms, a Luna FIPS-mode policy)",
            "choose a wrapping algorithm whose mechanism the token lists in C_GetMechanismList "
            "with the CKF_WRAP flag",
        )
    if name == "CKR_WRAPPING_KEY_TYPE_INCONSISTENT":
        return _Explanation(
            "the wrapping key is not of the type the mechanism needs (an RSA public key for RSA mechanisms)",
            "import the KMS wrapping public key as CKO_PUBLIC_KEY/CKK_RSA and wrap with that object",
        )
    if name == "CKR_PIN_INCORRECT":
        return _Explanation(
            "the token rejected the user PIN",
            "check the PIN in the profile's environment variable or PIN file; "
            "repeated wrong PINs may lock the token",
        )
    if name == "CKR_PIN_LOCKED":
        return _Explanation(
            "the user PIN is locked after too many wrong attempts",
            "have the Security Officer reset the user PIN (C_InitPIN)",
        )
    if name == "CKR_USER_PIN_NOT_INITIALIZED":
        return _Explanation(
            "the token has no user PIN yet",
            "run 'byok softhsm init' for a byok-managed token, or have the Security Officer set the user PIN",
        )
    if name == "CKR_USER_NOT_LOGGED_IN":
        return _Explanation(
            "the session is not logged in as the user, and the objects involved are private",
            "open the session with Hsm.session(pin), which logs in as CKU_USER",
        )
    if name in (
        "CKR_TOKEN_NOT_PRESENT",
        "CKR_DEVICE_REMOVED",
        "CKR_SLOT_ID_INVALID",
        "CKR_TOKEN_NOT_RECOGNIZED",
    ):
        return _Explanation(
            "the token is no longer present in its slot",
            "reconnect the HSM or partition, then open the token again by its label",
        )
    if name in ("CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED"):
        return _Explanation(
            "the session was closed, for example by C_Finalize or by a token reset",
            "open a new session with Hsm.session(pin)",
        )
    if name == "CKR_SESSION_READ_ONLY":
        return _Explanation(
            "the session is read-only, so it cannot create or change token objects",
            "open a read/write session (Hsm.session opens CKF_RW_SESSION)",
        )
    if name in ("CKR_ATTRIBUTE_READ_ONLY", "CKR_ACTION_PROHIBITED"):
        return _Explanation(
            "the token does not allow changing this attribute (the object has CKA_MODIFIABLE=false, "
            "or a Luna partition policy 'Allow changing key attributes' is off)",
            'set the attribute in the creation template instead (wrap_attribute = "template")',
        )
    if name == "CKR_ATTRIBUTE_SENSITIVE":
        return _Explanation(
            "the attribute is sensitive and the token never reveals it",
            "read a non-sensitive attribute such as CKA_CHECK_VALUE instead",
        )
    if name in (
        "CKR_ATTRIBUTE_VALUE_INVALID",
        "CKR_ATTRIBUTE_TYPE_INVALID",
        "CKR_TEMPLATE_INCONSISTENT",
        "CKR_TEMPLATE_INCOMPLETE",
    ):
        return _Explanation(
            "the token rejected the object template (an attribute is unknown, has an invalid value, "
            "conflicts with another, or a required attribute is missing)",
            "compare the template with the token's documentation; for AES-256 CKA_VALUE_LEN must be 32",
        )
    if name == "CKR_DEVICE_MEMORY":
        return _Explanation("the token is out of memory", "remove unused objects from the token")
    if name == "CKR_FUNCTION_NOT_SUPPORTED":
        return _Explanation(
            "the PKCS#11 module does not implement this function",
            "use a module that implements it; DPoD firmware 3.0 returns this for HA logins "
            "from Luna clients older than 10.8.0",
        )
    if name == "CKR_WRAPPING_ERROR":
        return _Explanation(
            "the Luna partition refused the wrap (vendor code)",
            "check partition policy 5 'Allow secret key wrapping' and the key's CKA_EXTRACTABLE",
        )
    if name == "CKR_USER_NOT_AUTHORIZED":
        return _Explanation(
            "the logged-in Luna role is not authorized for this operation (vendor code)",
            "log in as the partition's Crypto Officer, or ask the partition administrator for the right role",
        )
    if name == "CKR_OPERATION_NOT_ALLOWED":
        return _Explanation(
            "a Luna HSM or partition policy forbids this operation (vendor code); in FIPS mode "
            "firmware 7.8.4 and later forbid CKM_RSA_PKCS for wrapping",
            "use RSAES_OAEP_SHA_256, or ask the HSM administrator which policy blocks the operation",
        )
    if name == "CKR_PARTITION_DISABLED":
        return _Explanation(
            "the Luna partition is disabled (vendor code)",
            "ask the HSM administrator to enable the partition",
        )
    if name == "CKR_CRYPTOKI_NOT_INITIALIZED":
        return _Explanation(
            "the PKCS#11 module is not initialized in this process",
            "open the token through Hsm.open, which loads and initializes the module",
        )
    return _Explanation(
        "the token returned an error byok has no specific explanation for",
        f"look up {ckr_name(ckr)} in the PKCS#11 specification and the token's log",
    )


def translate_error(
    error: PyKCS11.PyKCS11Error,
    *,
    operation: str,
    labels: Sequence[str] = (),
    mechanism: WrapMechanism | None = None,
) -> HsmError:
    """Turn a PyKCS11Error into an HsmError that names the operation, objects, mechanism, cause and fix.

    The raw value stays in ``HsmError.ckr`` and its name in ``HsmError.ckr_name``.
    """
    return hsm_error_for_ckr(
        int(error.value), operation=operation, labels=labels, mechanism=mechanism
    )


def hsm_error_for_ckr(
    ckr: int,
    *,
    operation: str,
    labels: Sequence[str] = (),
    mechanism: WrapMechanism | None = None,
) -> HsmError:
    """Build the HsmError for a raw CKR value returned by ``operation``."""
    name = ckr_name(ckr)
    objects = ", ".join(repr(label) for label in labels)
    explanation = _explain(ckr, operation=operation, mechanism=mechanism)

    message = f"{operation} failed with {name} (0x{ckr & 0xFFFFFFFF:08X})"
    if objects:
        message += f" on {objects}"
    if mechanism is not None:
        message += f" using {mechanism.describe()}"
    message += f": {explanation.cause}"
    return HsmError(message, ckr=ckr, ckr_name=name, operation=operation, fix=explanation.fix)

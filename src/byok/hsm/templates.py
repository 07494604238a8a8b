"""Object templates for the AES key and the imported wrapping public key, per HSM family.

Tokens disagree on defaults: SoftHSM2 2.6.1 makes a generated secret key
non-extractable, and opencryptoki 3.8.1 makes it extractable. Thales documents Luna
keys as session objects and generated public keys as non-wrapping by default. So
every attribute that matters is set explicitly for every family, and the session
reads each one back.

NOTE: the Luna and DPoD rules here follow Thales' documentation and were not run
against a Luna or DPoD partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import PyKCS11

from byok.errors import ConfigError
from byok.profile import HSM_FAMILIES

Template = list[tuple[int, Any]]


@dataclass(frozen=True)
class FamilyRules:
    """Template constraints of one HSM family."""

    # Thales documents that Luna Cloud HSM (DPoD) requires CKA_PRIVATE=1 and CKA_SENSITIVE=1
    # on every generated, derived or unwrapped key.
    requires_private_and_sensitive: bool = False


_FAMILY_RULES: dict[str, FamilyRules] = {
    "softhsm": FamilyRules(),
    "opencryptoki": FamilyRules(),
    "luna": FamilyRules(),
    "dpod": FamilyRules(requires_private_and_sensitive=True),
}


def family_rules(family: str) -> FamilyRules:
    """Return the template rules of an HSM family; raise ConfigError for an unknown family."""
    try:
        return _FAMILY_RULES[family]
    except KeyError:
        raise ConfigError(
            f"HSM family {family!r} is not supported", fix=f"use one of {', '.join(HSM_FAMILIES)}"
        ) from None


def aes_key_template(
    family: str,
    *,
    label: str,
    key_id: bytes,
    value_len: int = 32,
    token: bool = True,
    extractable: bool = True,
    private: bool = True,
    sensitive: bool = True,
) -> Template:
    """Build the C_GenerateKey template of an AES key with every usage attribute explicit.

    The key may only encrypt and decrypt: CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_VERIFY and
    CKA_DERIVE are false, because SoftHSM2 and opencryptoki default CKA_SIGN and CKA_VERIFY
    to true on AES keys.
    """
    rules = family_rules(family)
    if rules.requires_private_and_sensitive and not (private and sensitive):
        raise ConfigError(
            f"HSM family {family!r} requires CKA_PRIVATE=true and CKA_SENSITIVE=true on generated keys",
            fix="generate the key with private=True and sensitive=True",
        )
    if (
        not isinstance(value_len, int)
        or isinstance(value_len, bool)
        or value_len not in (16, 24, 32)
    ):
        raise ConfigError(
            f"AES key length {value_len!r} is invalid; CKA_VALUE_LEN is in bytes",
            fix="use 32 (AES-256, the length Aliyun_AES_256 key material needs), 24 or 16",
        )
    if not label:
        raise ConfigError("the AES key label is empty", fix="give the key a label")

    # PyKCS11 stores a boolean as (value == CK_TRUE), so only True or 1 reach the token as true.
    return [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
        (PyKCS11.CKA_VALUE_LEN, int(value_len)),
        (PyKCS11.CKA_TOKEN, bool(token)),
        (PyKCS11.CKA_PRIVATE, bool(private)),
        (PyKCS11.CKA_SENSITIVE, bool(sensitive)),
        (PyKCS11.CKA_EXTRACTABLE, bool(extractable)),
        (PyKCS11.CKA_ENCRYPT, True),
        (PyKCS11.CKA_DECRYPT, True),
        (PyKCS11.CKA_WRAP, False),
        (PyKCS11.CKA_UNWRAP, False),
        (PyKCS11.CKA_SIGN, False),
        (PyKCS11.CKA_VERIFY, False),
        (PyKCS11.CKA_DERIVE, False),
        (PyKCS11.CKA_MODIFIABLE, True),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, bytes(key_id)),
    ]


def public_key_template(
    family: str,
    *,
    modulus: bytes,
    public_exponent: bytes,
    label: str,
    key_id: bytes,
    token: bool = False,
    wrap: bool = True,
) -> Template:
    """Build the C_CreateObject template of the RSA wrapping public key.

    CKA_TOKEN and CKA_PRIVATE are explicit on every family because Luna defaults
    CKA_PRIVATE to true when the Crypto Officer is logged in.
    """
    family_rules(family)
    if not label:
        raise ConfigError("the wrapping public key label is empty", fix="give the key a label")
    return [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_RSA),
        (PyKCS11.CKA_TOKEN, bool(token)),
        (PyKCS11.CKA_PRIVATE, False),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, bytes(key_id)),
        (PyKCS11.CKA_MODULUS, bytes(modulus)),
        (PyKCS11.CKA_PUBLIC_EXPONENT, bytes(public_exponent)),
        (PyKCS11.CKA_WRAP, bool(wrap)),
        (PyKCS11.CKA_ENCRYPT, True),
        (PyKCS11.CKA_VERIFY, False),
        (PyKCS11.CKA_MODIFIABLE, True),
    ]

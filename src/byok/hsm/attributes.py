"""Attribute names, values and exact-CKR reads through PyKCS11's LowLevel layer.

PyKCS11's ``Session.getAttributeValue`` returns None both for a sensitive attribute
and for one the token does not support, so byok reads one attribute at a time with
``C_GetAttributeValue`` and keeps the return value.
"""

from __future__ import annotations

from typing import Any

import PyKCS11
import PyKCS11.LowLevel

from byok.errors import ConfigError
from byok.hsm.mechanisms import mechanism_name

# CK_UNAVAILABLE_INFORMATION is (CK_ULONG)~0. CKA_KEY_GEN_MECHANISM contains it for keys
# that were not generated on the token, such as imported or unwrapped keys.
CK_UNAVAILABLE_INFORMATION = PyKCS11.CK_UNAVAILABLE_INFORMATION
# The attributes PyKCS11 converts as CK_BBOOL; ``Session.isBool`` does not use its instance.
BOOLEAN_ATTRIBUTES = frozenset(
    attribute
    for attribute in PyKCS11.CKA.values()
    if isinstance(attribute, int) and PyKCS11.Session.isBool(None, attribute)  # type: ignore[arg-type]
)


def attribute_type(name: str) -> int:
    """Return the CKA_* number of an attribute name; raise ConfigError for an unknown name."""
    value = PyKCS11.CKA.get(name)
    if not isinstance(value, int):
        raise ConfigError(
            f"attribute {name!r} is not a PKCS#11 attribute name known to PyKCS11",
            fix="use a CKA_* name such as CKA_WRAP or CKA_CHECK_VALUE",
        )
    return value


def attribute_name(attribute: int) -> str:
    """Return the CKA_* name of an attribute number, or its hex value when unknown."""
    name = PyKCS11.CKA.get(attribute)
    return name if isinstance(name, str) else f"CKA_0x{attribute:X}"


def object_class_value(object_class: str | int) -> int:
    """Return the CKO_* number for a class given by name or number."""
    if isinstance(object_class, int):
        return object_class
    value = PyKCS11.CKO.get(object_class)
    if not isinstance(value, int):
        raise ConfigError(
            f"object class {object_class!r} is not a PKCS#11 class name",
            fix="use CKO_SECRET_KEY, CKO_PUBLIC_KEY or CKO_PRIVATE_KEY",
        )
    return value


def object_class_name(object_class: int) -> str:
    name = PyKCS11.CKO.get(object_class)
    return name if isinstance(name, str) else f"CKO_0x{object_class:X}"


def read_raw_attribute(session: PyKCS11.Session, handle: Any, attribute: int) -> tuple[int, Any]:
    """Read one attribute with C_GetAttributeValue; return (CKR, value or None when CKR is not CKR_OK).

    The value is decoded by the attribute's type in PyKCS11's tables: bool, int, str or bytes.
    """
    template = PyKCS11.LowLevel.ckattrlist(1)
    template[0].SetType(attribute)
    # The first call returns the length and reserves the buffer, and the second fetches the value.
    rv = session.lib.C_GetAttributeValue(session.session, handle, template)
    if rv != PyKCS11.CKR_OK:
        return rv, None
    rv = session.lib.C_GetAttributeValue(session.session, handle, template)
    if rv != PyKCS11.CKR_OK:
        return rv, None

    item = template[0]
    if item.IsBool():
        return rv, bool(item.GetBool())
    if item.IsNum():
        return rv, int(item.GetNum())
    if item.IsString():
        return rv, item.GetString()
    return rv, bytes(item.GetBin())


def display_value(name: str, value: Any) -> Any:
    """Convert a raw attribute value into the form byok reports: CK* names for enums, hex for bytes."""
    if value is None:
        return None
    if name == "CKA_CLASS":
        return object_class_name(value)
    if name == "CKA_KEY_TYPE":
        key_type = PyKCS11.CKK.get(value)
        return key_type if isinstance(key_type, str) else f"CKK_0x{value:X}"
    if name == "CKA_KEY_GEN_MECHANISM":
        if value == CK_UNAVAILABLE_INFORMATION:
            return "CK_UNAVAILABLE_INFORMATION"
        return mechanism_name(value)
    if isinstance(value, bytes):
        return value.hex()
    return value

"""Token lookup by label, login, and the object operations of the BYOK flow.

Objects are always found by label and class in the current session. No method of
the public API takes or returns an object handle or a slot number: SoftHSM2
renumbers slots when it re-initializes, and handles die with their session.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PyKCS11
import PyKCS11.LowLevel
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from byok.errors import BlockedByEnvironment, ConfigError, HsmError, KeyFormatError
from byok.hsm import gcm, library, templates
from byok.hsm.attributes import (
    BOOLEAN_ATTRIBUTES,
    attribute_type,
    display_value,
    object_class_name,
    object_class_value,
    read_raw_attribute,
)
from byok.hsm.ckr import ckr_name, hsm_error_for_ckr, translate_error
from byok.hsm.config import ensure_softhsm_conf, is_managed_softhsm
from byok.hsm.fips import FipsState, check_wrap_allowed
from byok.hsm.mechanisms import WrapMechanism, mechanism_name
from byok.profile import WRAP_ATTRIBUTE_MODES, HsmSettings, resolve_module
from byok.secrets import Secret

logger = logging.getLogger(__name__)

# Attributes read back after importing the wrapping public key.
PUBLIC_KEY_READBACK = (
    "CKA_CLASS",
    "CKA_KEY_TYPE",
    "CKA_LABEL",
    "CKA_ID",
    "CKA_TOKEN",
    "CKA_PRIVATE",
    "CKA_MODIFIABLE",
    "CKA_WRAP",
    "CKA_ENCRYPT",
    "CKA_VERIFY",
    "CKA_LOCAL",
    "CKA_MODULUS_BITS",
    "CKA_MODULUS",
    "CKA_PUBLIC_EXPONENT",
)

# Attributes read back after generating the AES key.
AES_KEY_READBACK = (
    "CKA_CLASS",
    "CKA_KEY_TYPE",
    "CKA_LABEL",
    "CKA_ID",
    "CKA_VALUE_LEN",
    "CKA_TOKEN",
    "CKA_PRIVATE",
    "CKA_SENSITIVE",
    "CKA_EXTRACTABLE",
    "CKA_LOCAL",
    "CKA_ALWAYS_SENSITIVE",
    "CKA_NEVER_EXTRACTABLE",
    "CKA_KEY_GEN_MECHANISM",
    "CKA_CHECK_VALUE",
    "CKA_ENCRYPT",
    "CKA_DECRYPT",
    "CKA_WRAP",
    "CKA_UNWRAP",
    "CKA_SIGN",
    "CKA_VERIFY",
    "CKA_DERIVE",
    "CKA_MODIFIABLE",
)

# CK_GCM_PARAMS as KMS uses them: a 96-bit IV and a 128-bit tag after the ciphertext.
GCM_IV_BYTES = 12
GCM_TAG_BYTES = 16

_TOKEN_FLAG_NAMES = PyKCS11.CK_TOKEN_INFO.flags_dict
_MECHANISM_FLAG_NAMES = PyKCS11.CK_MECHANISM_INFO.flags_dict


def _flag_names(flags: int, names: dict[int, str]) -> tuple[str, ...]:
    return tuple(name for bit, name in sorted(names.items()) if flags & bit)


def _padded_text(value: str) -> str:
    """Strip the blank (and, from some modules, NUL) padding of a CK_UTF8CHAR field."""
    return value.rstrip(" \x00")


@dataclass(frozen=True)
class TokenInfo:
    """C_GetTokenInfo of the token and C_GetInfo of its module, with padding removed."""

    label: str
    manufacturer_id: str
    model: str
    serial_number: str
    firmware_version: str
    hardware_version: str
    flags: int
    flag_names: tuple[str, ...]
    library_description: str
    library_version: str
    library_manufacturer: str
    cryptoki_version: str
    module_path: str


@dataclass(frozen=True)
class MechanismInfo:
    """C_GetMechanismInfo of one mechanism; key sizes are in the unit the mechanism defines."""

    mechanism: int
    name: str
    min_key_size: int
    max_key_size: int
    flags: int
    flag_names: tuple[str, ...]


class Hsm:
    """A token in a loaded PKCS#11 module, identified by its label."""

    def __init__(self, settings: HsmSettings, module_path: Path, softhsm_conf: Path | None) -> None:
        self.settings = settings
        self.module_path = module_path
        self.softhsm_conf = softhsm_conf
        # Set by capability negotiation; sessions refuse what FIPS mode forbids once it is known.
        self.fips_state: FipsState | None = None
        # Set by capability negotiation: {WrappingAlgorithm: why the token cannot wrap with it}.
        # A session raises BlockedByEnvironment for these instead of calling C_WrapKey.
        self.blocked_wraps: dict[str, str] = {}

    @classmethod
    def open(cls, settings: HsmSettings, state_dir: Path) -> Hsm:
        """Load the module (writing SoftHSM2's configuration first for a managed token) and find the token.

        Raises ConfigError for a missing module and HsmError when no token has the label.
        """
        hsm = cls.attach(settings, state_dir)
        hsm._find_slot()
        return hsm

    @classmethod
    def attach(cls, settings: HsmSettings, state_dir: Path) -> Hsm:
        """Load the module like ``open`` without requiring the token to exist yet (for token bootstrap)."""
        conf = ensure_softhsm_conf(settings, state_dir) if is_managed_softhsm(settings) else None
        module_path = resolve_module(settings.module)
        hsm = cls(settings, module_path, conf)
        hsm._module()
        return hsm

    @property
    def token_label(self) -> str:
        return self.settings.token_label

    # Slots and module ---------------------------------------------------------------

    def _module(self) -> library.LoadedModule:
        return library.load_module(self.module_path, softhsm_conf=self.softhsm_conf)

    def _token_labels(self, module: library.LoadedModule) -> dict[int, str]:
        """Return {slot: token label} for every slot with a token present."""
        try:
            slots = module.lib.getSlotList(tokenPresent=True)
            return {slot: _padded_text(module.lib.getTokenInfo(slot).label) for slot in slots}
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(error, operation="C_GetSlotList/C_GetTokenInfo") from None

    def _find_slot_or_none(self) -> int | None:
        module = self._module()
        listed_before = module.scanned
        matches = [
            slot for slot, label in self._token_labels(module).items() if label == self.token_label
        ]
        module.scanned = True
        if not matches and listed_before and not module.open_sessions:
            # A token created by another process after this one initialized the module
            # is only visible after C_Finalize and C_Initialize (SoftHSM2 2.6.1).
            library.reload_module(module, reason=f"token {self.token_label!r} was not found")
            matches = [
                slot
                for slot, label in self._token_labels(module).items()
                if label == self.token_label
            ]
        if len(matches) > 1:
            raise HsmError(
                f"{len(matches)} tokens in module {self.module_path} have the label {self.token_label!r}",
                operation="C_GetTokenInfo",
                fix="give each token a unique label; byok finds tokens by label, never by slot number",
            )
        return matches[0] if matches else None

    def _find_slot(self) -> int:
        slot = self._find_slot_or_none()
        if slot is not None:
            return slot
        labels = sorted(self._token_labels(self._module()).values())
        found_labels = ", ".join(repr(label) for label in labels) if labels else "none"
        fix = (
            "run 'byok softhsm init' to create the byok-managed token"
            if is_managed_softhsm(self.settings)
            else "correct [hsm] token_label in the profile, or initialize a token with that label"
        )
        raise HsmError(
            f"no token labelled {self.token_label!r} in PKCS#11 module {self.module_path}; "
            f"token labels found: {found_labels}",
            operation="C_GetTokenInfo",
            fix=fix,
        )

    # Information ----------------------------------------------------------------------

    def token_info(self) -> TokenInfo:
        """Read C_GetTokenInfo and C_GetInfo."""
        slot = self._find_slot()
        lib = self._module().lib
        try:
            token = lib.getTokenInfo(slot)
            info = lib.getInfo()
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_GetTokenInfo", labels=[self.token_label]
            ) from None
        return TokenInfo(
            label=_padded_text(token.label),
            manufacturer_id=_padded_text(token.manufacturerID),
            model=_padded_text(token.model),
            serial_number=_padded_text(token.serialNumber),
            firmware_version="{}.{}".format(*token.firmwareVersion),
            hardware_version="{}.{}".format(*token.hardwareVersion),
            flags=int(token.flags),
            flag_names=_flag_names(int(token.flags), _TOKEN_FLAG_NAMES),
            library_description=_padded_text(info.libraryDescription),
            library_version="{}.{}".format(*info.libraryVersion),
            library_manufacturer=_padded_text(info.manufacturerID),
            cryptoki_version="{}.{}".format(*info.cryptokiVersion),
            module_path=str(self.module_path),
        )

    def raw_mechanism_list(self) -> list[int]:
        """Return C_GetMechanismList as the token reports it.

        PyKCS11 1.5.19 and 1.5.20 append a fake 0x1D (CKM_ML_DSA) entry in
        ``getMechanismList``, so this calls the LowLevel function directly.
        """
        slot = self._find_slot()
        lib = self._module().lib
        mechanisms = PyKCS11.LowLevel.ckulonglist()
        rv = lib.lib.C_GetMechanismList(slot, mechanisms)
        if rv != PyKCS11.CKR_OK:
            raise hsm_error_for_ckr(rv, operation="C_GetMechanismList", labels=[self.token_label])
        return [int(mechanism) for mechanism in mechanisms]

    def mechanism_info(self, ckm: int | str) -> MechanismInfo:
        """Read C_GetMechanismInfo for a mechanism given by number or CKM_* name.

        SoftHSM2 2.6.1 returns CKR_OK even for mechanisms that slots.mechanisms removed,
        so capability checks must also test membership in ``raw_mechanism_list``.
        """
        if isinstance(ckm, str):
            number = PyKCS11.CKM.get(ckm)
            if not isinstance(number, int):
                raise ConfigError(
                    f"mechanism {ckm!r} is not a PKCS#11 mechanism name",
                    fix="use a CKM_* name such as CKM_RSA_PKCS_OAEP",
                )
        else:
            number = int(ckm)
        slot = self._find_slot()
        lib = self._module().lib
        info = PyKCS11.LowLevel.CK_MECHANISM_INFO()
        rv = lib.lib.C_GetMechanismInfo(slot, number, info)
        if rv != PyKCS11.CKR_OK:
            raise hsm_error_for_ckr(
                rv,
                operation=f"C_GetMechanismInfo({mechanism_name(number)})",
                labels=[self.token_label],
            )
        return MechanismInfo(
            mechanism=number,
            name=mechanism_name(number),
            min_key_size=int(info.ulMinKeySize),
            max_key_size=int(info.ulMaxKeySize),
            flags=int(info.flags),
            flag_names=_flag_names(int(info.flags), _MECHANISM_FLAG_NAMES),
        )

    def is_logged_in(self) -> bool:
        """Return whether a session of this process is logged in to the token as the user."""
        return self._module().logins.get(self._find_slot(), 0) > 0

    # Sessions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, pin: Secret) -> Iterator[HsmSession]:
        """Open a read/write session logged in as CKU_USER; log out and close it on exit, also after errors.

        NOTE: while another session of this process is logged in to the token, C_Login is
        skipped and ``pin`` is not checked, because PKCS#11 login state belongs to the
        application rather than to one session.
        """
        if not isinstance(pin, Secret):
            raise TypeError(
                "pin must be a byok.secrets.Secret, so it never appears in logs or errors"
            )
        slot = self._find_slot()
        module = self._module()
        try:
            pk_session = module.lib.openSession(
                slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION
            )
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_OpenSession", labels=[self.token_label]
            ) from None

        module.open_sessions += 1
        module.sessions_opened += 1
        logged_in = False
        try:
            self._login(module, pk_session, slot, pin)
            logged_in = True
            yield HsmSession(pk_session, self.settings, self)
        finally:
            if logged_in:
                self._logout(module, pk_session, slot)
            try:
                pk_session.closeSession()
            except PyKCS11.PyKCS11Error as error:
                logger.warning(
                    "C_CloseSession on token %r failed: %s", self.token_label, ckr_name(error.value)
                )
            module.open_sessions -= 1
            module.sessions_closed += 1

    def _login(
        self, module: library.LoadedModule, pk_session: PyKCS11.Session, slot: int, pin: Secret
    ) -> None:
        if module.logins.get(slot, 0) == 0:
            try:
                pk_session.login(pin.reveal(), PyKCS11.CKU_USER)
            except PyKCS11.PyKCS11Error as error:
                if error.value != PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
                    raise translate_error(
                        error, operation="C_Login(CKU_USER)", labels=[self.token_label]
                    ) from None
        module.logins[slot] = module.logins.get(slot, 0) + 1

    def _logout(self, module: library.LoadedModule, pk_session: PyKCS11.Session, slot: int) -> None:
        module.logins[slot] = module.logins.get(slot, 1) - 1
        if module.logins[slot] > 0:
            return
        try:
            pk_session.logout()
        except PyKCS11.PyKCS11Error as error:
            if error.value != PyKCS11.CKR_USER_NOT_LOGGED_IN:
                logger.warning(
                    "C_Logout on token %r failed: %s", self.token_label, ckr_name(error.value)
                )


class HsmSession:
    """A logged-in read/write session; created only by ``Hsm.session``."""

    def __init__(
        self, pk_session: PyKCS11.Session, settings: HsmSettings, token: Hsm | None = None
    ) -> None:
        self._session = pk_session
        self._settings = settings
        # Read at each wrap, because negotiation may finish after this session opened.
        self._token = token

    @property
    def fips_state(self) -> FipsState | None:
        return self._token.fips_state if self._token is not None else None

    def _check_not_blocked(self, mechanism: WrapMechanism) -> None:
        reason = self._token.blocked_wraps.get(mechanism.algorithm) if self._token is not None else None
        if reason is not None:
            raise BlockedByEnvironment(reason)

    # Object lookup ----------------------------------------------------------------------

    def _find(self, label: str | None, object_class: int | None) -> list[Any]:
        template: list[tuple[int, Any]] = []
        if label is not None:
            template.append((PyKCS11.CKA_LABEL, label))
        if object_class is not None:
            template.append((PyKCS11.CKA_CLASS, object_class))
        try:
            return list(self._session.findObjects(template))
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_FindObjects", labels=[label] if label else []
            ) from None

    def _find_one(self, label: str, object_class: int, role: str) -> Any:
        handles = self._find(label, object_class)
        class_name = object_class_name(object_class)
        if not handles:
            raise HsmError(
                f"{role} not found: no {class_name} object labelled {label!r} is visible in this session",
                operation="C_FindObjects",
                fix="create or import the object first; session objects disappear when their session closes",
            )
        if len(handles) > 1:
            raise HsmError(
                f"{role} is ambiguous: {len(handles)} {class_name} objects are labelled {label!r}",
                operation="C_FindObjects",
                fix=f"remove the extra objects (HsmSession.destroy_objects({label!r}, {class_name!r})) "
                "or use a unique label",
            )
        return handles[0]

    def _read(self, handle: Any, names: Sequence[str], label: str) -> dict[str, Any]:
        """Read attributes one by one; an attribute the token does not support reads as None."""
        table: dict[str, Any] = {}
        for name in names:
            rv, value = read_raw_attribute(self._session, handle, attribute_type(name))
            if rv == PyKCS11.CKR_ATTRIBUTE_TYPE_INVALID:
                table[name] = None
                continue
            if rv != PyKCS11.CKR_OK:
                raise hsm_error_for_ckr(
                    rv, operation=f"C_GetAttributeValue({name})", labels=[label]
                )
            table[name] = display_value(name, value)
        return table

    def _destroy_handle(self, handle: Any, label: str) -> None:
        try:
            self._session.destroyObject(handle)
        except PyKCS11.PyKCS11Error as error:
            logger.warning("C_DestroyObject of %r failed: %s", label, ckr_name(error.value))

    # Wrapping public key ------------------------------------------------------------------

    def import_wrapping_public_key(
        self,
        public_key: rsa.RSAPublicKey,
        label: str,
        *,
        wrap_attribute: str | None = None,
        token: bool | None = None,
        key_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Import the KMS wrapping public key with C_CreateObject and return its read-back attributes.

        ``wrap_attribute`` and ``token`` default to the profile's ``wrap_attribute`` and
        ``public_key_token_object``. ``wrap_attribute="template"`` sets CKA_WRAP=true in the template.
        ``"set-after-import"`` creates the key with CKA_WRAP=false and then sets it with
        C_SetAttributeValue, as Luna's ckdemo does. CKA_ID defaults to the SHA-1 of the
        modulus, so every import of the same KMS key gets the same id. Raises HsmError
        when the label is taken. Also raises HsmError when the read-back differs from
        the template, after destroying the new object.
        """
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise KeyFormatError(
                f"the wrapping public key is a {type(public_key).__name__}, not an RSA public key",
                fix="load the PEM that GetParametersForImport returned with cryptography's load_pem_public_key",
            )
        if public_key.key_size < 2048:
            raise KeyFormatError(
                f"the wrapping public key has {public_key.key_size} bits; KMS issues RSA-2048 wrapping keys",
                fix="use the public key returned by GetParametersForImport with WrappingKeySpec RSA_2048",
            )
        if wrap_attribute is None:
            wrap_attribute = self._settings.wrap_attribute
        if token is None:
            token = self._settings.public_key_token_object
        if wrap_attribute not in WRAP_ATTRIBUTE_MODES:
            raise ConfigError(
                f"wrap_attribute {wrap_attribute!r} is not valid",
                fix=f"use one of {', '.join(WRAP_ATTRIBUTE_MODES)}",
            )
        if self._find(label, PyKCS11.CKO_PUBLIC_KEY):
            raise HsmError(
                f"a CKO_PUBLIC_KEY object labelled {label!r} already exists",
                operation="C_CreateObject",
                fix=f"remove it with HsmSession.destroy_objects({label!r}, 'CKO_PUBLIC_KEY') or use another label",
            )

        numbers = public_key.public_numbers()
        modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        exponent = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        object_id = key_id if key_id is not None else hashlib.sha1(modulus).digest()
        set_after_import = wrap_attribute == "set-after-import"
        template = templates.public_key_template(
            self._settings.family,
            modulus=modulus,
            public_exponent=exponent,
            label=label,
            key_id=object_id,
            token=token,
            wrap=not set_after_import,
        )

        try:
            handle = self._session.createObject(template)
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_CreateObject(CKO_PUBLIC_KEY)", labels=[label]
            ) from None
        if set_after_import:
            try:
                self._session.setAttributeValue(handle, [(PyKCS11.CKA_WRAP, True)])
            except PyKCS11.PyKCS11Error as error:
                self._destroy_handle(handle, label)
                raise translate_error(
                    error, operation="C_SetAttributeValue(CKA_WRAP=true)", labels=[label]
                ) from None

        table = self._read(handle, PUBLIC_KEY_READBACK, label)
        expected = {
            "CKA_CLASS": "CKO_PUBLIC_KEY",
            "CKA_KEY_TYPE": "CKK_RSA",
            "CKA_LABEL": label,
            "CKA_ID": object_id.hex(),
            "CKA_TOKEN": bool(token),
            "CKA_PRIVATE": False,
            "CKA_MODIFIABLE": True,
            "CKA_WRAP": True,
            "CKA_ENCRYPT": True,
            "CKA_VERIFY": False,
            "CKA_MODULUS": modulus.hex(),
            "CKA_PUBLIC_EXPONENT": exponent.hex(),
        }
        self._check_readback(handle, label, table, expected, "wrapping public key")
        logger.info("Imported wrapping public key %r (%s, token=%s)", label, wrap_attribute, token)
        return table

    # AES key ------------------------------------------------------------------------------

    def generate_aes_key(
        self,
        label: str,
        key_id: bytes,
        *,
        value_len: int = 32,
        token: bool = True,
        extractable: bool = True,
    ) -> dict[str, Any]:
        """Generate an AES key with C_GenerateKey(CKM_AES_KEY_GEN) and return its read-back attributes.

        Attributes the token does not support (CKA_CHECK_VALUE, CKA_KEY_GEN_MECHANISM on
        opencryptoki 3.8.1) read as None. Raises HsmError when a secret key with the
        label exists. Also raises HsmError when the read-back differs from the template,
        after destroying the new key.
        """
        if not isinstance(key_id, bytes) or not key_id:
            raise ConfigError(
                "the AES key CKA_ID must be non-empty bytes",
                fix="pass key_id as bytes, e.g. a run id",
            )
        template = templates.aes_key_template(
            self._settings.family,
            label=label,
            key_id=key_id,
            value_len=value_len,
            token=token,
            extractable=extractable,
        )
        if self._find(label, PyKCS11.CKO_SECRET_KEY):
            raise HsmError(
                f"a CKO_SECRET_KEY object labelled {label!r} already exists on token {self._settings.token_label!r}",
                operation="C_GenerateKey",
                fix="choose a new label; byok never replaces an existing key, because it may be the only "
                "copy of key material already imported into KMS",
            )

        try:
            handle = self._session.generateKey(template, PyKCS11.MechanismAESGENERATEKEY)
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_GenerateKey(CKM_AES_KEY_GEN)", labels=[label]
            ) from None

        table = self._read(handle, AES_KEY_READBACK, label)
        expected = {
            "CKA_CLASS": "CKO_SECRET_KEY",
            "CKA_KEY_TYPE": "CKK_AES",
            "CKA_LABEL": label,
            "CKA_ID": key_id.hex(),
            "CKA_VALUE_LEN": value_len,
            "CKA_TOKEN": bool(token),
            "CKA_PRIVATE": True,
            "CKA_SENSITIVE": True,
            "CKA_EXTRACTABLE": bool(extractable),
            "CKA_ENCRYPT": True,
            "CKA_DECRYPT": True,
            "CKA_WRAP": False,
            "CKA_UNWRAP": False,
            "CKA_SIGN": False,
            "CKA_VERIFY": False,
            "CKA_DERIVE": False,
            "CKA_MODIFIABLE": True,
        }
        self._check_readback(handle, label, table, expected, "AES key")
        logger.info(
            "Generated AES key %r (%d bytes, token=%s, extractable=%s)",
            label,
            value_len,
            token,
            extractable,
        )
        return table

    def _check_readback(
        self, handle: Any, label: str, table: dict[str, Any], expected: dict[str, Any], role: str
    ) -> None:
        differences = [
            f"{name} is {table.get(name)!r}, expected {value!r}"
            for name, value in expected.items()
            if table.get(name) != value
        ]
        if not differences:
            return
        self._destroy_handle(handle, label)
        raise HsmError(
            f"the {role} {label!r} does not have the attributes byok set, so it was destroyed: "
            + "; ".join(differences),
            operation="C_GetAttributeValue",
            fix="the token changed or ignored template attributes; check its policies and defaults",
        )

    # Attributes and hygiene ---------------------------------------------------------------

    def read_attributes(
        self, label: str, object_class: str | int, attribute_names: Sequence[str]
    ) -> dict[str, Any]:
        """Read attributes of the one object with this label and class.

        Values are bool, int, CK* names (class, key type, key generation mechanism) or hex
        strings for byte values. An attribute the token does not support is None; a
        sensitive one raises HsmError with ckr_name CKR_ATTRIBUTE_SENSITIVE.
        """
        class_value = object_class_value(object_class)
        handle = self._find_one(label, class_value, f"{object_class_name(class_value)} {label!r}")
        return self._read(handle, attribute_names, label)

    def attribute_ckr(self, label: str, object_class: str | int, attribute: str) -> int:
        """Return the raw CKR of C_GetAttributeValue for one attribute, e.g. CKR_ATTRIBUTE_SENSITIVE for CKA_VALUE."""
        class_value = object_class_value(object_class)
        handle = self._find_one(label, class_value, f"{object_class_name(class_value)} {label!r}")
        rv, _value = read_raw_attribute(self._session, handle, attribute_type(attribute))
        return int(rv)

    def set_attribute(
        self, label: str, object_class: str | int, attribute: str, value: Any
    ) -> None:
        """Set one attribute of the one object with this label and class with C_SetAttributeValue.

        Booleans must be True or False, because PyKCS11 sends any other value as false.
        """
        class_value = object_class_value(object_class)
        attribute_number = attribute_type(attribute)
        if attribute_number in BOOLEAN_ATTRIBUTES and not isinstance(value, bool):
            raise ConfigError(f"{attribute} needs True or False, not {value!r}", fix="pass a bool")
        handle = self._find_one(label, class_value, f"{object_class_name(class_value)} {label!r}")
        try:
            self._session.setAttributeValue(handle, [(attribute_number, value)])
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation=f"C_SetAttributeValue({attribute})", labels=[label]
            ) from None
        logger.info("Set %s=%r on %s %r", attribute, value, object_class_name(class_value), label)

    def create_rsa_public_key(
        self, public_key: rsa.RSAPublicKey, label: str, *, wrap: bool, token: bool = False
    ) -> dict[str, Any]:
        """Create an RSA public key object with CKA_WRAP as given and return its read-back attributes.

        Unlike ``import_wrapping_public_key`` this keeps CKA_WRAP=false when asked, for the
        negative control that such a key cannot wrap. Raises HsmError when the read-back
        CKA_WRAP differs, after destroying the object.
        """
        numbers = public_key.public_numbers()
        modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        template = templates.public_key_template(
            self._settings.family,
            modulus=modulus,
            public_exponent=numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"),
            label=label,
            key_id=hashlib.sha1(modulus).digest(),
            token=token,
            wrap=wrap,
        )
        try:
            handle = self._session.createObject(template)
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error, operation="C_CreateObject(CKO_PUBLIC_KEY)", labels=[label]
            ) from None
        table = self._read(handle, PUBLIC_KEY_READBACK, label)
        self._check_readback(handle, label, table, {"CKA_WRAP": wrap}, "public key")
        return table

    def key_separation_violations(self) -> list[dict[str, Any]]:
        """Return the objects visible in this session that have both CKA_WRAP and CKA_DECRYPT true.

        Such a key lets anyone with the session wrap a sensitive key and decrypt the
        result in clear (the Tookan "wrap and decrypt" attack). Attributes the token
        does not support count as false.
        """
        violations = []
        for handle in self._find(None, None):
            values: dict[str, Any] = {}
            for name in ("CKA_LABEL", "CKA_CLASS", "CKA_WRAP", "CKA_DECRYPT"):
                rv, value = read_raw_attribute(self._session, handle, attribute_type(name))
                values[name] = display_value(name, value) if rv == PyKCS11.CKR_OK else None
            if values["CKA_WRAP"] is True and values["CKA_DECRYPT"] is True:
                violations.append({"label": values["CKA_LABEL"], "class": values["CKA_CLASS"]})
        return violations

    def private_keys_with_modulus(self, modulus: bytes) -> list[str | None]:
        """Return the labels of private keys visible in this session whose CKA_MODULUS is ``modulus``."""
        wanted = bytes(modulus).lstrip(b"\x00")
        labels = []
        for handle in self._find(None, PyKCS11.CKO_PRIVATE_KEY):
            rv, value = read_raw_attribute(self._session, handle, PyKCS11.CKA_MODULUS)
            if rv != PyKCS11.CKR_OK or value is None:
                continue
            if bytes(value).lstrip(b"\x00") == wanted:
                rv, label = read_raw_attribute(self._session, handle, PyKCS11.CKA_LABEL)
                labels.append(display_value("CKA_LABEL", label) if rv == PyKCS11.CKR_OK else None)
        return labels

    def find_objects(
        self, label: str | None = None, object_class: str | int | None = None
    ) -> list[dict[str, Any]]:
        """Summarize the objects visible in this session, filtered by label and class when given.

        Each summary has label, class, key_type, id (CKA_ID hex) and token (CKA_TOKEN).
        """
        class_value = object_class_value(object_class) if object_class is not None else None
        summaries = []
        for handle in self._find(label, class_value):
            values: dict[str, Any] = {}
            for name in ("CKA_LABEL", "CKA_CLASS", "CKA_KEY_TYPE", "CKA_ID", "CKA_TOKEN"):
                rv, value = read_raw_attribute(self._session, handle, attribute_type(name))
                values[name] = display_value(name, value) if rv == PyKCS11.CKR_OK else None
            summaries.append(
                {
                    "label": values["CKA_LABEL"],
                    "class": values["CKA_CLASS"],
                    "key_type": values["CKA_KEY_TYPE"],
                    "id": values["CKA_ID"],
                    "token": values["CKA_TOKEN"],
                }
            )
        return summaries

    def destroy_objects(self, label: str, object_class: str | int) -> int:
        """Destroy every object with this label and class; return how many were destroyed."""
        if not label:
            raise ConfigError(
                "destroy_objects needs a non-empty label", fix="name the objects to destroy"
            )
        class_value = object_class_value(object_class)
        handles = self._find(label, class_value)
        for handle in handles:
            try:
                self._session.destroyObject(handle)
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(error, operation="C_DestroyObject", labels=[label]) from None
        if handles:
            logger.info(
                "Destroyed %d %s object(s) labelled %r",
                len(handles),
                object_class_name(class_value),
                label,
            )
        return len(handles)

    # Wrapping -----------------------------------------------------------------------------

    def wrap_key(self, wrapping_key_label: str, key_label: str, mechanism: WrapMechanism) -> bytes:
        """Wrap the secret key ``key_label`` under the public key ``wrapping_key_label`` with C_WrapKey.

        Raises HsmError for CKM_RSA_X_509 before any call: raw RSA has no padding, so it
        is no key transport scheme (opencryptoki 3.8.1 accepts it and returns the key
        behind 224 zero bytes). Raises FipsModeRefusal for CKM_RSA_PKCS, also before any
        call, when the token is known to be in FIPS mode, and BlockedByEnvironment when
        capability negotiation found that the token cannot wrap with the mechanism.
        """
        if not isinstance(mechanism, WrapMechanism):
            raise TypeError("mechanism must be a WrapMechanism from byok.hsm.wrap_mechanism_for")
        check_wrap_allowed(mechanism, self.fips_state, self._settings.token_label)
        self._check_not_blocked(mechanism)
        if mechanism.mechanism == PyKCS11.CKM_RSA_X_509:
            raise HsmError(
                "C_WrapKey with CKM_RSA_X_509 was rejected before calling the token: raw RSA without "
                "padding is not a key transport scheme",
                operation="C_WrapKey",
                fix="use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1 or RSAES_PKCS1_V1_5",
            )
        wrapping_key = self._find_one(
            wrapping_key_label, PyKCS11.CKO_PUBLIC_KEY, "wrapping public key"
        )
        key = self._find_one(key_label, PyKCS11.CKO_SECRET_KEY, "key to wrap")
        try:
            wrapped = self._session.wrapKey(wrapping_key, key, mechanism.to_pykcs11())
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(
                error,
                operation="C_WrapKey",
                labels=[wrapping_key_label, key_label],
                mechanism=mechanism,
            ) from None
        blob = bytes(wrapped)
        logger.info(
            "Wrapped %r under %r with %s: %d bytes",
            key_label,
            wrapping_key_label,
            mechanism.describe(),
            len(blob),
        )
        return blob

    # Decryption with the AES key ----------------------------------------------------------

    def decrypt_aes_gcm(
        self, key_label: str, iv: bytes, ciphertext_and_tag: bytes, aad: bytes = b""
    ) -> bytes:
        """Decrypt AES-GCM data with the secret key ``key_label`` through C_Decrypt(CKM_AES_GCM).

        The parameters are CK_GCM_PARAMS with a 12-byte IV, ``aad`` as additional
        authenticated data and a 128-bit tag that ends ``ciphertext_and_tag``
        (PKCS#11 2.40 section 2.14.3). Decrypting a KMS CiphertextBlob this way proves
        that KMS has the same key as the HSM. Raises HsmError when the tag does not
        verify (CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 2.6.1 returns CKR_GENERAL_ERROR), and
        BlockedByEnvironment when the token has no CKM_AES_GCM (CKR_MECHANISM_INVALID).
        On opencryptoki, whose soft token has no CKM_AES_GCM, the GCM arithmetic runs in
        software over C_Encrypt(CKM_AES_ECB) blocks instead (byok.hsm.gcm).
        """
        if not isinstance(iv, bytes) or len(iv) != GCM_IV_BYTES:
            raise ConfigError(
                f"the AES-GCM IV must be {GCM_IV_BYTES} bytes, not "
                f"{len(iv) if isinstance(iv, bytes) else type(iv).__name__}",
                fix="pass the 12 bytes that follow the 36-byte key version id in the CiphertextBlob",
            )
        if not isinstance(ciphertext_and_tag, bytes) or len(ciphertext_and_tag) < GCM_TAG_BYTES:
            raise ConfigError(
                f"the AES-GCM input must be bytes of at least {GCM_TAG_BYTES} bytes "
                "(ciphertext followed by the 16-byte tag)",
                fix="pass everything after the IV in the CiphertextBlob",
            )
        if not isinstance(aad, bytes):
            raise ConfigError(
                f"the AES-GCM additional data must be bytes, not {type(aad).__name__}",
                fix="pass the canonical EncryptionContext JSON encoded as UTF-8, or b''",
            )
        key = self._find_one(key_label, PyKCS11.CKO_SECRET_KEY, "AES key")
        mechanism = PyKCS11.AES_GCM_Mechanism(iv, aad, GCM_TAG_BYTES * 8)
        try:
            plaintext = self._session.decrypt(key, ciphertext_and_tag, mechanism)
        except PyKCS11.PyKCS11Error as error:
            if error.value == PyKCS11.CKR_MECHANISM_INVALID and self._settings.family == "opencryptoki":
                # The opencryptoki 3.8.1 soft token lists no CKM_AES_GCM (observed), but has CKM_AES_ECB.
                return self._decrypt_gcm_with_ecb(key, key_label, iv, ciphertext_and_tag, aad)
            if error.value == PyKCS11.CKR_MECHANISM_INVALID:
                raise BlockedByEnvironment(
                    f"token {self._settings.token_label!r} cannot decrypt with CKM_AES_GCM: C_Decrypt "
                    "returned CKR_MECHANISM_INVALID, so the token does not implement AES-GCM",
                    fix="run this check on a token with CKM_AES_GCM (SoftHSM2, SafeNet Luna)",
                ) from None
            raise translate_error(
                error, operation="C_Decrypt(CKM_AES_GCM)", labels=[key_label]
            ) from None
        logger.info(
            "Decrypted %d bytes of AES-GCM data with %r", len(ciphertext_and_tag), key_label
        )
        return bytes(plaintext)

    def _decrypt_gcm_with_ecb(
        self, key: Any, key_label: str, iv: bytes, ciphertext_and_tag: bytes, aad: bytes
    ) -> bytes:
        """AES-GCM from C_Encrypt(CKM_AES_ECB) blocks, for test tokens without CKM_AES_GCM (see byok.hsm.gcm)."""
        operation = "C_Decrypt(CKM_AES_GCM from C_Encrypt(CKM_AES_ECB))"

        def encrypt_blocks(blocks: bytes) -> bytes:
            try:
                return bytes(self._session.encrypt(key, blocks, PyKCS11.Mechanism(PyKCS11.CKM_AES_ECB)))
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(error, operation=operation, labels=[key_label]) from None

        plaintext = gcm.decrypt_with_block_cipher(encrypt_blocks, iv, ciphertext_and_tag, aad, GCM_TAG_BYTES)
        if plaintext is None:
            raise hsm_error_for_ckr(
                PyKCS11.CKR_ENCRYPTED_DATA_INVALID, operation=operation, labels=[key_label]
            )
        logger.info(
            "Decrypted %d bytes of AES-GCM data with %r through CKM_AES_ECB blocks (token has no CKM_AES_GCM)",
            len(ciphertext_and_tag),
            key_label,
        )
        return plaintext

    # Throw-away wrap for capability negotiation -------------------------------------------

    def trial_wrap(self, mechanism: WrapMechanism, public_key: rsa.RSAPublicKey) -> TrialWrap:
        """Wrap a new session AES-256 key under ``public_key`` imported as a session object.

        Both objects are session objects labelled ``byok-probe-<random>`` and are destroyed
        before returning, also after errors. The result carries the key check value of
        the AES key as the token computes it (CKA_CHECK_VALUE, or C_Encrypt(CKM_AES_ECB)
        of a zero block where the token lacks that attribute), so the caller can confirm
        the unwrapped value. Raises HsmError with the token's CKR when a call fails.
        """
        if mechanism.mechanism == PyKCS11.CKM_RSA_X_509:
            raise HsmError(
                "a trial wrap with CKM_RSA_X_509 was rejected before calling the token: raw RSA "
                "without padding is not a key transport scheme",
                operation="C_WrapKey",
                fix="probe CKM_RSA_PKCS_OAEP or CKM_RSA_PKCS",
            )
        check_wrap_allowed(mechanism, self.fips_state, self._settings.token_label)
        suffix = secrets.token_hex(6)
        wrap_label = f"{PROBE_LABEL_PREFIX}wrap-{suffix}"
        aes_label = f"{PROBE_LABEL_PREFIX}aes-{suffix}"
        numbers = public_key.public_numbers()
        public_template = templates.public_key_template(
            self._settings.family,
            modulus=numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
            public_exponent=numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"),
            label=wrap_label,
            key_id=suffix.encode("ascii"),
            token=False,
            wrap=True,
        )
        aes_template = templates.aes_key_template(
            self._settings.family,
            label=aes_label,
            key_id=suffix.encode("ascii"),
            token=False,
            extractable=True,
        )
        handles: list[tuple[Any, str]] = []
        try:
            try:
                wrapping_key = self._session.createObject(public_template)
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(
                    error, operation="C_CreateObject(CKO_PUBLIC_KEY)", labels=[wrap_label]
                ) from None
            handles.append((wrapping_key, wrap_label))
            try:
                aes_key = self._session.generateKey(aes_template, PyKCS11.MechanismAESGENERATEKEY)
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(
                    error, operation="C_GenerateKey(CKM_AES_KEY_GEN)", labels=[aes_label]
                ) from None
            handles.append((aes_key, aes_label))
            try:
                blob = bytes(self._session.wrapKey(wrapping_key, aes_key, mechanism.to_pykcs11()))
            except PyKCS11.PyKCS11Error as error:
                raise translate_error(
                    error, operation="C_WrapKey", labels=[wrap_label, aes_label], mechanism=mechanism
                ) from None
            check_value, check_source = self._key_check_value(aes_key, aes_label)
        finally:
            for handle, label in reversed(handles):
                self._destroy_handle(handle, label)
        return TrialWrap(mechanism=mechanism, blob=blob, check_value=check_value, check_source=check_source)

    def _key_check_value(self, handle: Any, label: str) -> tuple[bytes | None, str]:
        rv, value = read_raw_attribute(self._session, handle, PyKCS11.CKA_CHECK_VALUE)
        if rv == PyKCS11.CKR_OK and value:
            return bytes(value)[:3], "CKA_CHECK_VALUE"
        try:
            encrypted = self._session.encrypt(handle, bytes(16), PyKCS11.Mechanism(PyKCS11.CKM_AES_ECB))
        except PyKCS11.PyKCS11Error as error:
            logger.info(
                "Token offers neither CKA_CHECK_VALUE nor C_Encrypt(CKM_AES_ECB) for %r (%s)",
                label,
                ckr_name(error.value),
            )
            return None, "not available"
        return bytes(encrypted)[:3], "C_Encrypt(CKM_AES_ECB) of a zero block"


# Label prefix of the session objects that trial wraps create and destroy.
PROBE_LABEL_PREFIX = "byok-probe-"


def aes_check_value(key: bytes) -> bytes:
    """Return the PKCS#11 key check value of an AES key: AES-ECB of a zero block, first 3 bytes."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3]


@dataclass(frozen=True)
class TrialWrap:
    """The blob of a trial wrap and the token's key check value of the wrapped session key."""

    mechanism: WrapMechanism
    blob: bytes = field(repr=False)
    check_value: bytes | None
    check_source: str

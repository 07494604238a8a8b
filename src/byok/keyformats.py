"""Parsing and encoding of the artefacts exchanged with Alibaba Cloud KMS during a key import.

GetParametersForImport returns ``PublicKey`` (base64 of a DER SubjectPublicKeyInfo, RFC 5280
section 4.1.2.7) and ``ImportToken`` (an opaque base64 string). ImportKeyMaterial takes
``EncryptedKeyMaterial``, the base64 of the HSM's wrapped blob. Operators hand these over as
base64 text, line-wrapped base64, binary DER or PEM under whatever label their tool chose.
Every input is therefore classified by parsing its content, never by PEM label or file name.

Base64 handling is strict (RFC 4648 section 4 alphabet, padding required) but tolerates
spaces, tabs and line breaks anywhere. Error messages name the form that was found, the
cause and the fix, and never quote the input, because an import token or a mistakenly
supplied private key is a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from byok.errors import KeyFormatError, KeyMaterialLengthError

logger = logging.getLogger(__name__)

# WrappingKeySpec RSA_2048 (Alibaba Cloud KMS API reference, GetParametersForImport).
WRAPPING_KEY_SIZE_BITS = 2048
WRAPPING_KEY_PUBLIC_EXPONENT = 65537

# Aliyun_AES_256 material is 256 bits and Aliyun_SM4 material 128 bits
# (Alibaba Cloud KMS API reference, ImportKeyMaterial).
KEY_MATERIAL_LENGTHS: dict[str, int] = {"Aliyun_AES_256": 32, "Aliyun_SM4": 16}

SUBJECT_PUBLIC_KEY_INFO = "SubjectPublicKeyInfo"
PKCS1_RSA_PUBLIC_KEY = "PKCS#1 RSAPublicKey"

_PUBLIC_KEY_FIX = (
    "supply the PublicKey value that GetParametersForImport returned (base64 text) or the "
    "public key file downloaded from the KMS console (DER or PEM)"
)


@dataclass(frozen=True)
class WrappingPublicKey:
    """An RSA wrapping public key together with the form it arrived in."""

    key: RSAPublicKey
    form: str
    key_size: int
    fingerprint_sha256: str
    """Hex SHA-256 of ``spki_der``, so every input form of one key has the same fingerprint."""
    spki_der: bytes
    """DER SubjectPublicKeyInfo re-encoded by cryptography, whatever the input structure was."""
    encoding: str
    """Encoding of the input: "DER", "PEM" or "base64"."""
    structure: str
    """ASN.1 structure of the input: SUBJECT_PUBLIC_KEY_INFO or PKCS1_RSA_PUBLIC_KEY."""

    @property
    def modulus(self) -> int:
        return self.key.public_numbers().n

    @property
    def public_exponent(self) -> int:
        return self.key.public_numbers().e

    @property
    def spki_base64(self) -> str:
        """Single-line base64 of ``spki_der``, the form of the PublicKey response field."""
        return base64.b64encode(self.spki_der).decode("ascii")

    @property
    def spki_pem(self) -> str:
        """PEM SubjectPublicKeyInfo under the PUBLIC KEY label (RFC 7468 section 13)."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


# --- strict base64 (RFC 4648) -------------------------------------------------------------

_BASE64_INVALID_CHARACTER = re.compile(r"[^A-Za-z0-9+/= \t\r\n]")
_BASE64_WHITESPACE = re.compile(r"[ \t\r\n]+")
_UTF8_BOM = "\ufeff"


class _Base64Error(ValueError):
    """Internal: the reason a text is not strict base64. Callers add the value's name."""


def _describe_position(text: str, index: int) -> str:
    # A final line break does not make a one-line value worth describing by line numbers.
    if "\n" not in text.rstrip("\r\n"):
        return f"position {index + 1}"
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def _decode_strict_base64(text: str, start: int = 0, end: int | None = None) -> tuple[bytes, str]:
    """Decode ``text[start:end]`` as RFC 4648 base64 and return the bytes and the compact text.

    Spaces, tabs, CR and LF are removed first. Any other character outside the alphabet,
    missing or misplaced padding, and non-zero padding bits raise ``_Base64Error``.
    The reason names a position but never the character, because the text may be a secret.
    """
    if end is None:
        end = len(text)
    invalid = _BASE64_INVALID_CHARACTER.search(text, start, end)
    if invalid is not None:
        reason = (
            f"the character at {_describe_position(text, invalid.start())} is outside the "
            "RFC 4648 base64 alphabet"
        )
        if invalid.group() in "-_":
            reason += " (it belongs to the base64url alphabet, which KMS does not accept)"
        raise _Base64Error(reason)

    compact = _BASE64_WHITESPACE.sub("", text[start:end])
    if len(compact) % 4:
        raise _Base64Error(
            f"it has {len(compact)} base64 characters, which is not a multiple of 4, so the "
            "'=' padding is missing or the value is truncated"
        )
    first_padding = compact.find("=")
    if first_padding != -1 and (
        compact[first_padding:] != "=" * (len(compact) - first_padding)
        or len(compact) - first_padding > 2
    ):
        raise _Base64Error("'=' padding appears before the end of the value")

    try:
        decoded = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        # binascii's messages describe the structure, never the data.
        raise _Base64Error(str(error)) from None
    # A canonical encoding round-trips. Non-zero bits in the last character before the
    # padding (RFC 4648 section 3.5) do not, and point to a corrupted or hand-edited value.
    if base64.b64encode(decoded).decode("ascii") != compact:
        raise _Base64Error("the last character before the padding has non-zero padding bits")
    return decoded, compact


def _require_bytes_or_str(data: object, value_name: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"{value_name} must be bytes or str, not {type(data).__name__}")


def _ascii_text(data: bytes | bytearray | memoryview | str, value_name: str) -> str:
    """Decode ``data`` as ASCII text without a UTF-8 BOM, for values that must be base64 text."""
    if isinstance(data, str):
        return data.removeprefix(_UTF8_BOM)
    raw = bytes(data).removeprefix(_UTF8_BOM.encode("utf-8"))
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as error:
        raise KeyFormatError(
            f"{value_name} is not base64 text: the byte at offset {error.start} is not ASCII",
            fix=f"pass {value_name} as the base64 text from the API, not as raw binary",
        ) from None


# --- minimal DER reader (X.690 definite-length encoding) ------------------------------------

_TAG_INTEGER = 0x02
_TAG_BIT_STRING = 0x03
_TAG_OCTET_STRING = 0x04
_TAG_OID = 0x06
_TAG_SEQUENCE = 0x30
_TAG_CONTEXT_0 = 0xA0

_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_KEY_ALGORITHM_DESCRIPTIONS = {
    "1.2.840.113549.1.1.10": "an RSASSA-PSS public key, restricted to signatures",
    "1.2.840.10040.4.1": "a DSA public key",
    "1.2.840.10046.2.1": "a Diffie-Hellman public key",
    "1.3.101.110": "an X25519 public key",
    "1.3.101.111": "an X448 public key",
    "1.3.101.112": "an Ed25519 public key",
    "1.3.101.113": "an Ed448 public key",
}
_CURVE_NAMES = {
    "1.2.840.10045.3.1.7": "secp256r1",
    "1.3.132.0.34": "secp384r1",
    "1.3.132.0.35": "secp521r1",
    "1.3.132.0.10": "secp256k1",
    "1.2.156.10197.1.301": "SM2",
}


class _DerError(ValueError):
    """Internal: why a byte string is not the DER structure expected."""


@dataclass(frozen=True)
class _Tlv:
    tag: int
    content_start: int
    end: int

    def content(self, data: bytes) -> bytes:
        return data[self.content_start : self.end]


def _read_tlv(data: bytes, offset: int, limit: int) -> _Tlv:
    if offset + 2 > limit:
        raise _DerError(f"it ends inside a DER header at byte {offset}")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise _DerError(f"it uses a multi-byte DER tag at byte {offset}")
    first_length_byte = data[offset + 1]
    header_end = offset + 2
    if first_length_byte < 0x80:
        length = first_length_byte
    elif first_length_byte == 0x80:
        raise _DerError(
            f"it uses an indefinite length at byte {offset}, which BER allows but DER does not"
        )
    else:
        length_size = first_length_byte & 0x7F
        if length_size > 4 or header_end + length_size > limit:
            raise _DerError(f"it has an invalid or truncated DER length at byte {offset}")
        length = int.from_bytes(data[header_end : header_end + length_size], "big")
        header_end += length_size
    if header_end + length > limit:
        raise _DerError(
            f"it is truncated (the DER header at byte {offset} declares {length} content bytes, "
            f"but only {limit - header_end} follow)"
        )
    return _Tlv(tag=tag, content_start=header_end, end=header_end + length)


def _read_children(data: bytes, parent: _Tlv) -> list[_Tlv]:
    children = []
    offset = parent.content_start
    while offset < parent.end:
        child = _read_tlv(data, offset, parent.end)
        children.append(child)
        offset = child.end
    return children


def _read_single_sequence(data: bytes) -> _Tlv:
    """Read the outer SEQUENCE of ``data`` and reject anything after it."""
    if not data:
        raise _DerError("it decodes to zero bytes")
    if data[0] != _TAG_SEQUENCE:
        raise _DerError("it does not start with a DER SEQUENCE tag (0x30)")
    outer = _read_tlv(data, 0, len(data))
    if outer.end != len(data):
        raise _DerError(
            f"it has {len(data) - outer.end} trailing bytes after the DER structure, "
            f"which ends at byte {outer.end}"
        )
    return outer


def _decode_oid(content: bytes) -> str:
    if not content:
        raise _DerError("it contains an empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if content[-1] & 0x80:
        raise _DerError("it contains a truncated OBJECT IDENTIFIER")
    first = arcs[0]
    leading = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in leading + arcs[1:])


def _decode_positive_integer(content: bytes, name: str) -> int:
    if not content:
        raise _DerError(f"its {name} is an empty INTEGER")
    if content[0] & 0x80:
        raise _DerError(
            f"its {name} is a negative INTEGER, which usually means the leading zero byte "
            "is missing"
        )
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise _DerError(f"its {name} INTEGER has a redundant leading zero byte, which DER forbids")
    return int.from_bytes(content, "big")


# --- DER structure classification ---------------------------------------------------------

# Structures that contain a private key.
_PRIVATE_KEY_STRUCTURES = {
    "PKCS#8 PrivateKeyInfo",
    "PKCS#8 EncryptedPrivateKeyInfo",
    "PKCS#1 RSAPrivateKey",
    "OpenSSL DSAPrivateKey",
    "SEC 1 ECPrivateKey",
}
# Signed X.509 structures, each with the noun phrase used in messages.
_CERTIFICATE_STRUCTURES = {
    "X.509 certificate": "a certificate",
    "PKCS#10 certificate request": "a certificate signing request",
    "signed X.509 structure": "a signed X.509 structure (certificate, request or CRL)",
}


def _classify_sequence(data: bytes, outer: _Tlv) -> tuple[str, list[_Tlv]]:
    """Name the ASN.1 structure of ``outer`` from the tags of its elements.

    The shapes come from RFC 5280 (SubjectPublicKeyInfo, Certificate), RFC 8017 appendix A.1
    (RSAPublicKey, RSAPrivateKey), RFC 5208 and RFC 5958 (PKCS#8), RFC 5915 (ECPrivateKey)
    and RFC 2986 (PKCS#10).
    """
    children = _read_children(data, outer)
    tags = [child.tag for child in children]

    if tags == [_TAG_SEQUENCE, _TAG_BIT_STRING]:
        return SUBJECT_PUBLIC_KEY_INFO, children
    if tags == [_TAG_INTEGER, _TAG_INTEGER]:
        return PKCS1_RSA_PUBLIC_KEY, children
    if len(tags) >= 9 and set(tags) == {_TAG_INTEGER}:
        return "PKCS#1 RSAPrivateKey", children
    if len(tags) == 6 and set(tags) == {_TAG_INTEGER}:
        return "OpenSSL DSAPrivateKey", children
    if tags[:3] == [_TAG_INTEGER, _TAG_SEQUENCE, _TAG_OCTET_STRING]:
        return "PKCS#8 PrivateKeyInfo", children
    if tags == [_TAG_SEQUENCE, _TAG_OCTET_STRING]:
        return "PKCS#8 EncryptedPrivateKeyInfo", children
    if tags[:2] == [_TAG_INTEGER, _TAG_OCTET_STRING]:
        return "SEC 1 ECPrivateKey", children
    if tags == [_TAG_SEQUENCE, _TAG_SEQUENCE, _TAG_BIT_STRING]:
        signed_tags = [child.tag for child in _read_children(data, children[0])]
        if signed_tags[:1] == [_TAG_CONTEXT_0] or (
            len(signed_tags) >= 6 and signed_tags[0] == _TAG_INTEGER
        ):
            return "X.509 certificate", children
        if len(signed_tags) == 4 and signed_tags[-1] == _TAG_CONTEXT_0:
            return "PKCS#10 certificate request", children
        return "signed X.509 structure", children
    return "", children


def _rsa_numbers_from_pkcs1(data: bytes, children: list[_Tlv]) -> tuple[int, int]:
    modulus = _decode_positive_integer(children[0].content(data), "modulus")
    exponent = _decode_positive_integer(children[1].content(data), "public exponent")
    return modulus, exponent


def _describe_non_rsa_algorithm(data: bytes, algorithm: _Tlv) -> str | None:
    """Describe the key type of a non-RSA AlgorithmIdentifier, or return None for rsaEncryption."""
    parts = _read_children(data, algorithm)
    if not parts or parts[0].tag != _TAG_OID:
        raise _DerError("its AlgorithmIdentifier does not start with an OBJECT IDENTIFIER")
    oid = _decode_oid(parts[0].content(data))
    if oid == _OID_RSA_ENCRYPTION:
        return None
    if oid == _OID_EC_PUBLIC_KEY:
        if len(parts) > 1 and parts[1].tag == _TAG_OID:
            curve_oid = _decode_oid(parts[1].content(data))
            curve = _CURVE_NAMES.get(curve_oid, f"OID {curve_oid}")
            return f"an EC public key on curve {curve}"
        return "an EC public key with explicit or missing curve parameters"
    return _KEY_ALGORITHM_DESCRIPTIONS.get(oid, f"a public key with algorithm OID {oid}")


def _rsa_numbers_from_spki(data: bytes, children: list[_Tlv]) -> tuple[int, int] | str:
    """Return (modulus, exponent) of an RSA SubjectPublicKeyInfo, or describe a non-RSA key."""
    non_rsa_key = _describe_non_rsa_algorithm(data, children[0])
    if non_rsa_key is not None:
        return non_rsa_key
    bit_string = children[1].content(data)
    if not bit_string or bit_string[0] != 0:
        raise _DerError("its subjectPublicKey BIT STRING does not start with zero unused bits")
    inner = bit_string[1:]
    try:
        inner_sequence = _read_single_sequence(inner)
        inner_children = _read_children(inner, inner_sequence)
    except _DerError as error:
        raise _DerError(f"its embedded RSAPublicKey is invalid: {error}") from None
    if [child.tag for child in inner_children] != [_TAG_INTEGER, _TAG_INTEGER]:
        raise _DerError("its embedded RSAPublicKey is not a SEQUENCE of two INTEGERs")
    return _rsa_numbers_from_pkcs1(inner, inner_children)


# --- wrapping public key ------------------------------------------------------------------

# RFC 7468 section 3 allows hyphens inside a label, so the label match is non-greedy.
_PEM_BEGIN = re.compile(r"-----BEGIN ([^\r\n]*?)-----")
_PEM_END = re.compile(r"-----END ([^\r\n]*?)-----")
_HEXADECIMAL = re.compile(r"[0-9A-Fa-f]+")


def _label_phrase(label: str) -> str:
    """Return "a PUBLIC KEY label" or "an RSA PUBLIC KEY label", reading initialisms as letters."""
    if not label:
        return "an empty label"
    first_word = label.split()[0]
    takes_an = first_word[0] in "AEIOUX" or first_word in {"RSA", "SM2"}
    return f"{'an' if takes_an else 'a'} {label} label"


# The label each structure normally has (RFC 7468, and OpenSSL for the traditional forms).
_NATIVE_PEM_LABELS = {
    SUBJECT_PUBLIC_KEY_INFO: "PUBLIC KEY",
    PKCS1_RSA_PUBLIC_KEY: "RSA PUBLIC KEY",
    "PKCS#8 PrivateKeyInfo": "PRIVATE KEY",
    "PKCS#8 EncryptedPrivateKeyInfo": "ENCRYPTED PRIVATE KEY",
    "PKCS#1 RSAPrivateKey": "RSA PRIVATE KEY",
    "OpenSSL DSAPrivateKey": "DSA PRIVATE KEY",
    "SEC 1 ECPrivateKey": "EC PRIVATE KEY",
    "X.509 certificate": "CERTIFICATE",
    "PKCS#10 certificate request": "CERTIFICATE REQUEST",
}


def _form_text(encoding: str, structure: str, label: str | None, modifiers: list[str]) -> str:
    form = f"{encoding} {structure}"
    if label is not None and _NATIVE_PEM_LABELS.get(structure) != label:
        form += f" under {_label_phrase(label)}"
    return ", ".join([form, *modifiers])


def _load_public_key_der(
    der: bytes, *, encoding: str, container: str, label: str | None, modifiers: list[str]
) -> WrappingPublicKey:
    """Parse DER as SubjectPublicKeyInfo or PKCS#1 RSAPublicKey and check it is RSA-2048, e=65537.

    ``container`` describes where the DER came from ("binary DER", "base64 text", ...) for
    messages about DER that does not parse, before its structure is known.
    """
    try:
        outer = _read_single_sequence(der)
        structure, children = _classify_sequence(der, outer)
    except _DerError as error:
        raise KeyFormatError(
            f"wrapping public key ({container}, {len(der)} bytes) is not a valid DER public "
            f"key, because {error}",
            fix=_PUBLIC_KEY_FIX,
        ) from None

    if not structure:
        raise KeyFormatError(
            f"wrapping public key ({container}) is a DER SEQUENCE that is neither a "
            f"{SUBJECT_PUBLIC_KEY_INFO} nor a {PKCS1_RSA_PUBLIC_KEY}",
            fix=_PUBLIC_KEY_FIX,
        )
    form = _form_text(encoding, structure, label, modifiers)
    if structure in _PRIVATE_KEY_STRUCTURES:
        raise KeyFormatError(
            f"a private key was supplied ({form}) where the wrapping public key was expected",
            fix=(
                "supply the public key only. KMS never hands out the private half of its "
                "wrapping key, so check which file was passed, and treat this private key as "
                "exposed unless it is a test key"
            ),
        )
    if structure in _CERTIFICATE_STRUCTURES:
        raise KeyFormatError(
            f"{_CERTIFICATE_STRUCTURES[structure]} was supplied ({form}) where the bare "
            "wrapping public key was expected",
            fix=f"{_PUBLIC_KEY_FIX}. KMS returns a SubjectPublicKeyInfo, never a certificate",
        )

    try:
        if structure == SUBJECT_PUBLIC_KEY_INFO:
            numbers = _rsa_numbers_from_spki(der, children)
        else:
            numbers = _rsa_numbers_from_pkcs1(der, children)
    except _DerError as error:
        raise KeyFormatError(
            f"wrapping public key ({form}) is malformed, because {error}", fix=_PUBLIC_KEY_FIX
        ) from None
    if isinstance(numbers, str):
        raise KeyFormatError(
            f"wrapping public key ({form}) is {numbers}, but KMS wrapping keys are RSA "
            f"(WrappingKeySpec RSA_2048)",
            fix=f"{_PUBLIC_KEY_FIX}. byok supports only the RSA_2048 wrapping key spec",
        )

    modulus, exponent = numbers
    return _check_rsa_wrapping_key(modulus, exponent, form, encoding=encoding, structure=structure)


def _check_rsa_wrapping_key(
    modulus: int, exponent: int, form: str, *, encoding: str, structure: str
) -> WrappingPublicKey:
    key_size = modulus.bit_length()
    if key_size != WRAPPING_KEY_SIZE_BITS:
        raise KeyFormatError(
            f"wrapping public key ({form}) is RSA-{key_size}, but KMS wrapping keys "
            f"(WrappingKeySpec RSA_2048) are {WRAPPING_KEY_SIZE_BITS} bits",
            fix=f"{_PUBLIC_KEY_FIX}, requested with WrappingKeySpec RSA_2048",
        )
    if exponent != WRAPPING_KEY_PUBLIC_EXPONENT:
        raise KeyFormatError(
            f"wrapping public key ({form}) has public exponent {exponent}, but KMS wrapping "
            f"keys use {WRAPPING_KEY_PUBLIC_EXPONENT}",
            fix=_PUBLIC_KEY_FIX,
        )
    try:
        key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as error:
        # cryptography's message names the violated condition, never the numbers.
        raise KeyFormatError(
            f"wrapping public key ({form}) is not a valid RSA public key ({error})",
            fix=_PUBLIC_KEY_FIX,
        ) from None

    spki_der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return WrappingPublicKey(
        key=key,
        form=form,
        key_size=key.key_size,
        fingerprint_sha256=hashlib.sha256(spki_der).hexdigest(),
        spki_der=spki_der,
        encoding=encoding,
        structure=structure,
    )


def _identify_pem(text: str, modifiers: list[str]) -> WrappingPublicKey:
    begins = list(_PEM_BEGIN.finditer(text))
    if len(begins) > 1:
        raise KeyFormatError(
            f"wrapping public key input contains {len(begins)} PEM blocks, but exactly one "
            "was expected",
            fix="supply a file with only the public key block",
        )
    if not begins:
        raise KeyFormatError(
            "wrapping public key contains '-----BEGIN' but no complete PEM BEGIN line",
            fix="copy the whole PEM block, including its -----BEGIN ...----- line",
        )
    begin = begins[0]
    label = begin.group(1).strip()
    end = _PEM_END.search(text, begin.end())
    if end is None:
        raise KeyFormatError(
            f"wrapping public key is PEM under {_label_phrase(label)} whose BEGIN line has "
            "no matching END line, so the file is truncated",
            fix="copy the whole PEM block, including its -----END ...----- line",
        )

    body_start, body_end = begin.end(), end.start()
    if ":" in text[body_start:body_end]:
        if "Proc-Type" in text[body_start:body_end]:
            raise KeyFormatError(
                f"a private key was supplied (PEM under {_label_phrase(label)} with an "
                "encryption header) where the wrapping public key was expected",
                fix="supply the public key only, never a private key",
            )
        raise KeyFormatError(
            f"wrapping public key is PEM under {_label_phrase(label)} with RFC 1421 header "
            "lines, which a public key file never has",
            fix=_PUBLIC_KEY_FIX,
        )

    try:
        der, _ = _decode_strict_base64(text, body_start, body_end)
    except _Base64Error as error:
        raise KeyFormatError(
            f"wrapping public key is PEM under {_label_phrase(label)} whose body is not "
            f"valid base64, because {error}",
            fix=_PUBLIC_KEY_FIX,
        ) from None
    if not der:
        raise KeyFormatError(
            f"wrapping public key is PEM under {_label_phrase(label)} whose body decodes "
            "to zero bytes",
            fix=_PUBLIC_KEY_FIX,
        )
    return _load_public_key_der(
        der,
        encoding="PEM",
        container=f"PEM body under {_label_phrase(label)}",
        label=label,
        modifiers=modifiers,
    )


def _identify_base64(text: str, modifiers: list[str]) -> WrappingPublicKey:
    stripped = text.strip(" \t\r\n")
    # Hexadecimal digits are all in the base64 alphabet, so hex text often decodes as base64
    # into garbage. Saying so turns a puzzling DER error into an obvious fix.
    looks_hexadecimal = _HEXADECIMAL.fullmatch(stripped) is not None and len(stripped) % 2 == 0
    fix = _PUBLIC_KEY_FIX
    if looks_hexadecimal:
        fix += ". The input looks like hexadecimal: convert it to binary DER or base64 first"
    try:
        der, _ = _decode_strict_base64(text)
    except _Base64Error as error:
        raise KeyFormatError(
            f"wrapping public key is neither PEM, DER nor valid base64 text, because {error}",
            fix=fix,
        ) from None

    if der.lstrip().startswith(b"-----BEGIN"):
        raise KeyFormatError(
            "wrapping public key is base64 text that decodes to PEM text, so it was encoded twice",
            fix="supply the PEM file itself, or the base64 text without the extra encoding",
        )
    if any(character in stripped for character in "\r\n"):
        modifiers = ["line-wrapped", *modifiers]
    container = "base64 text that looks like hexadecimal" if looks_hexadecimal else "base64 text"
    try:
        return _load_public_key_der(
            der, encoding="base64", container=container, label=None, modifiers=modifiers
        )
    except KeyFormatError as error:
        if looks_hexadecimal:
            error.fix = fix
        raise


def _is_printable_ascii(data: bytes) -> bool:
    return all(0x20 <= byte < 0x7F or byte in b"\t\r\n" for byte in data)


def identify_wrapping_public_key(data: bytes | str) -> WrappingPublicKey:
    """Parse a wrapping public key in any supported form and record which form it was.

    Accepted: SubjectPublicKeyInfo or PKCS#1 RSAPublicKey, each as binary DER, as base64
    text (single-line or line-wrapped, LF or CRLF) or as PEM under any label. The PEM label
    is ignored and the body is classified by its ASN.1 structure. A UTF-8 byte order mark
    is removed, and so is whitespace around text input. The key must be RSA-2048 with exponent 65537.

    Raises:
        KeyFormatError: the input is empty, is not PEM, DER or base64, is a certificate or a
            private key, is not RSA, has the wrong size or exponent, or is malformed DER.
    """
    _require_bytes_or_str(data, "wrapping public key")
    modifiers: list[str] = []
    if isinstance(data, str):
        text = data
        if text.startswith(_UTF8_BOM):
            text = text[1:]
            modifiers.append("with a UTF-8 byte order mark")
    else:
        raw = bytes(data)
        if raw.startswith(_UTF8_BOM.encode("utf-8")):
            raw = raw[3:]
            modifiers.append("with a UTF-8 byte order mark")
        # DER of a key contains control or non-ASCII bytes (the INTEGER tag 0x02, long-form
        # lengths such as 0x82), while base64 text starting with "0" (also 0x30) has neither.
        if raw[:1] == b"\x30" and not _is_printable_ascii(raw):
            wrapping_key = _load_public_key_der(
                raw, encoding="DER", container="binary DER", label=None, modifiers=modifiers
            )
            _log_detected(wrapping_key)
            return wrapping_key
        text = _decode_text_input(raw)

    if not text:
        raise KeyFormatError("wrapping public key is empty (0 bytes)", fix=_PUBLIC_KEY_FIX)
    if not text.strip(" \t\r\n"):
        raise KeyFormatError(
            "wrapping public key is empty (it contains only whitespace)", fix=_PUBLIC_KEY_FIX
        )
    if "-----BEGIN" in text:
        wrapping_key = _identify_pem(text, modifiers)
    else:
        wrapping_key = _identify_base64(text, modifiers)
    _log_detected(wrapping_key)
    return wrapping_key


def _decode_text_input(raw: bytes) -> str:
    if b"-----BEGIN" in raw:
        # Explanatory text around the armour may be in any encoding (RFC 7468 section 5.2),
        # and the base64 body is ASCII either way.
        return raw.decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError(
            f"wrapping public key ({len(raw)} bytes) is binary data that is not DER "
            "(it does not start with a SEQUENCE tag), and it is neither PEM nor base64 text",
            fix=_PUBLIC_KEY_FIX,
        ) from None


def _log_detected(wrapping_key: WrappingPublicKey) -> None:
    logger.debug(
        "wrapping public key detected as %s: RSA-%d, SPKI SHA-256 %s",
        wrapping_key.form,
        wrapping_key.key_size,
        wrapping_key.fingerprint_sha256,
    )


def load_wrapping_public_key(data: bytes | str) -> RSAPublicKey:
    """Parse a wrapping public key like ``identify_wrapping_public_key`` and return the key only."""
    return identify_wrapping_public_key(data).key


def public_key_to_spki_base64(key: RSAPublicKey | WrappingPublicKey) -> str:
    """Encode a public key as single-line base64 of its DER SubjectPublicKeyInfo (PublicKey form)."""
    if isinstance(key, WrappingPublicKey):
        return key.spki_base64
    if not isinstance(key, RSAPublicKey):
        raise TypeError(f"key must be an RSAPublicKey, not {type(key).__name__}")
    spki_der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(spki_der).decode("ascii")


# --- import token -------------------------------------------------------------------------


def load_import_token(data: bytes | str) -> str:
    """Validate an ImportToken and return it as compact single-line base64.

    Line breaks and spaces are removed, so a token wrapped by a tool or pasted across lines
    works. The token is opaque, so only its base64 syntax is checked. Messages give its
    length, never its value.
    """
    _require_bytes_or_str(data, "import token")
    text = _ascii_text(data, "import token")
    if not text.strip(" \t\r\n"):
        raise KeyFormatError(
            "import token is empty",
            fix="pass the ImportToken value that GetParametersForImport returned",
        )
    try:
        decoded, compact = _decode_strict_base64(text)
    except _Base64Error as error:
        raise KeyFormatError(
            f"import token ({len(text)} characters) is not valid base64, because {error}",
            fix=(
                "pass the ImportToken exactly as GetParametersForImport returned it, without "
                "URL encoding, quotes or other characters added by the transport"
            ),
        ) from None
    logger.debug(
        "import token: %d base64 characters on %d line(s), %d bytes decoded",
        len(compact),
        text.strip(" \t\r\n").count("\n") + 1,
        len(decoded),
    )
    return compact


# --- wrapped key material -----------------------------------------------------------------


def encode_key_material(
    blob: bytes, *, wrapping_key_size_bits: int = WRAPPING_KEY_SIZE_BITS
) -> str:
    """Encode the HSM's wrapped blob as the single-line base64 EncryptedKeyMaterial value.

    An RSA ciphertext is exactly as long as the modulus (RFC 8017 sections 7.1.1 and 7.2.1),
    so the blob must be ``wrapping_key_size_bits / 8`` bytes.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"blob must be bytes, not {type(blob).__name__}")
    if wrapping_key_size_bits <= 0 or wrapping_key_size_bits % 8:
        raise ValueError(
            f"wrapping_key_size_bits must be a positive multiple of 8, not {wrapping_key_size_bits}"
        )
    blob = bytes(blob)
    expected = wrapping_key_size_bits // 8
    if len(blob) != expected:
        raise KeyFormatError(
            f"EncryptedKeyMaterial is {len(blob)} bytes, but a key wrapped with an "
            f"RSA-{wrapping_key_size_bits} public key is exactly {expected} bytes",
            fix=_wrong_blob_length_fix(len(blob), "EncryptedKeyMaterial", expected),
        )
    return base64.b64encode(blob).decode("ascii")


def _wrong_blob_length_fix(actual: int, field: str, expected: int) -> str:
    if actual == 0:
        return "the wrap returned no data, so check the HSM wrap call and its output buffer"
    if actual in {16, 24, 32}:
        return (
            "the value has the length of an unwrapped AES key, so wrap the key material with "
            "the KMS public key first and never send it in plaintext"
        )
    return f"pass the whole {field} value, which must decode to exactly {expected} bytes"


def decode_blob(
    data: bytes | str, *, expected_length: int | None = 256, field: str = "EncryptedKeyMaterial"
) -> bytes:
    """Decode a base64 field such as EncryptedKeyMaterial and check its length.

    Spaces and line breaks are tolerated. ``expected_length`` is in bytes. Pass ``None`` to
    accept any non-zero length.
    """
    _require_bytes_or_str(data, field)
    text = _ascii_text(data, field)
    if not text.strip(" \t\r\n"):
        raise KeyFormatError(
            f"{field} is empty (0 bytes)",
            fix=f"pass the base64 of the wrapped key ({expected_length or 'non-zero'} bytes)",
        )
    try:
        decoded, _ = _decode_strict_base64(text)
    except _Base64Error as error:
        raise KeyFormatError(
            f"{field} ({len(text)} characters) is not valid base64, because {error}",
            fix=f"pass {field} as standard base64 text (RFC 4648 section 4)",
        ) from None

    if expected_length is not None and len(decoded) != expected_length:
        message = (
            f"{field} decodes to {len(decoded)} bytes, but {expected_length} bytes were expected"
        )
        fix = _wrong_blob_length_fix(len(decoded), field, expected_length)
        if _is_base64_of_expected_length(decoded, expected_length):
            message += " (the decoded bytes are themselves base64 text, so it was encoded twice)"
            fix = "base64-encode the wrapped blob once"
        raise KeyFormatError(message, fix=fix)
    return decoded


def _is_base64_of_expected_length(decoded: bytes, expected_length: int) -> bool:
    if len(decoded) != 4 * -(-expected_length // 3) or not _is_printable_ascii(decoded):
        return False
    try:
        inner, _ = _decode_strict_base64(decoded.decode("ascii"))
    except _Base64Error:
        return False
    return len(inner) == expected_length


# --- key material length ------------------------------------------------------------------


def check_key_material_length(
    length_bytes: int, key_spec: str = "Aliyun_AES_256", *, source: str
) -> None:
    """Check the plaintext key material length (in bytes) against its KMS key spec.

    ``source`` names where the length came from, for example ``"CKA_VALUE_LEN of the HSM key"``.

    Raises:
        KeyMaterialLengthError: the length differs. The message gives bytes and bits.
        KeyFormatError: ``key_spec`` is not a spec that accepts imported material.
    """
    if isinstance(length_bytes, bool) or not isinstance(length_bytes, int):
        raise TypeError(f"length_bytes must be an int, not {type(length_bytes).__name__}")
    expected = KEY_MATERIAL_LENGTHS.get(key_spec)
    if expected is None:
        raise KeyFormatError(
            f"key spec {key_spec!r} has no known key material length",
            fix=f"use one of {', '.join(sorted(KEY_MATERIAL_LENGTHS))}",
        )
    if length_bytes != expected:
        raise KeyMaterialLengthError(key_spec, expected, length_bytes, source=source)

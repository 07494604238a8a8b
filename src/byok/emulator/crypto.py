"""Cryptography of the emulator: wrapping keys, unwrap, ciphertext blobs, encryption at rest."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byok.errors import ConfigError

# WrappingAlgorithm values for WrappingKeySpec RSA_2048 (GetParametersForImport API
# reference). Both OAEP variants use MGF1 with the same hash and an empty label, as
# Alibaba's Java and Go import samples do.
WRAPPING_ALGORITHMS = ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5")
WRAPPING_KEY_BITS = 2048
MASTER_KEY_BYTES = 32
KEY_VERSION_ID_LENGTH = 36
GCM_IV_LENGTH = 12
GCM_TAG_LENGTH = 16
BLOB_HEADER_LENGTH = KEY_VERSION_ID_LENGTH + GCM_IV_LENGTH
# Alibaba's KMS transfer SDK (decrypt_transfer_handler.py) rejects blobs of 48 bytes or
# fewer with InvalidParameter. A blob here also needs its 16-byte tag to be valid.
MIN_BLOB_LENGTH = BLOB_HEADER_LENGTH + GCM_TAG_LENGTH


class UnwrapError(ValueError):
    """The encrypted key material does not decrypt under the token's key and algorithm."""


class BlobFormatError(ValueError):
    """A CiphertextBlob is too short or does not start with a key version id."""


def generate_wrapping_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    """Generate a fresh RSA-2048 key pair; return the private key and the DER SubjectPublicKeyInfo."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=WRAPPING_KEY_BITS)
    public_der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_key, public_der


def private_key_to_der(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_der(der: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"stored wrapping key is {type(key).__name__}, not an RSA private key")
    return key


def unwrap_key_material(private_key: rsa.RSAPrivateKey, algorithm: str, ciphertext: bytes) -> bytes:
    """Decrypt ``ciphertext`` with exactly ``algorithm``; raise UnwrapError on any failure."""
    modulus_bytes = (private_key.key_size + 7) // 8
    if len(ciphertext) != modulus_bytes:
        raise UnwrapError(f"ciphertext is {len(ciphertext)} bytes, the modulus {modulus_bytes}")
    if algorithm == "RSAES_OAEP_SHA_256":
        scheme = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    elif algorithm == "RSAES_OAEP_SHA_1":
        scheme = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    elif algorithm == "RSAES_PKCS1_V1_5":
        return _decrypt_pkcs1_v15_strict(private_key, ciphertext)
    else:
        raise UnwrapError(f"unknown wrapping algorithm {algorithm!r}")
    try:
        return private_key.decrypt(ciphertext, scheme)
    except ValueError:
        raise UnwrapError(f"{algorithm} decryption failed") from None


def _decrypt_pkcs1_v15_strict(private_key: rsa.RSAPrivateKey, ciphertext: bytes) -> bytes:
    """Decrypt PKCS#1 v1.5 (RFC 8017 section 7.2.2) and reject bad padding explicitly.

    OpenSSL 3.2 and later return a random "implicit rejection" message instead of an
    error when the padding is wrong, and pyca/cryptography passes that message through. An import
    must reject a wrong wrap, so the emulator does the raw RSA step itself and checks
    the padding. The only outcome a client sees is InvalidKeyMaterial, for bad padding
    and bad length alike.
    """
    numbers = private_key.private_numbers()
    modulus = numbers.public_numbers.n
    modulus_bytes = (private_key.key_size + 7) // 8
    value = int.from_bytes(ciphertext, "big")
    if value >= modulus:
        raise UnwrapError("ciphertext is not smaller than the modulus")

    # Chinese remainder theorem: two half-size exponentiations.
    m1 = pow(value, numbers.dmp1, numbers.p)
    m2 = pow(value, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (m1 - m2)) % numbers.p
    encoded = (m2 + h * numbers.q).to_bytes(modulus_bytes, "big")

    # EM = 0x00 || 0x02 || PS (at least 8 non-zero bytes) || 0x00 || M
    if encoded[0] != 0 or encoded[1] != 2:
        raise UnwrapError("PKCS#1 v1.5 block type is not 2")
    separator = encoded.find(b"\x00", 2)
    if separator < 0 or separator - 2 < 8:
        raise UnwrapError("PKCS#1 v1.5 padding string is missing or shorter than 8 bytes")
    return encoded[separator + 1:]


def canonical_encryption_context(text: str | None) -> bytes | None:
    """Return the canonical JSON of an EncryptionContext, the AES-GCM AAD; raise ValueError if invalid.

    The context is a JSON object whose values are strings, at most 8192 characters
    (KMS "EncryptionContext" documentation). Key order and whitespace do not matter,
    because Decrypt accepts any equivalent context.
    """
    if text is None or text == "":
        return None
    if len(text) > 8192:
        raise ValueError("EncryptionContext is longer than 8192 characters")
    context = json.loads(text)
    # ValueError, not TypeError: every invalid context is one InvalidParameter for the caller.
    if not isinstance(context, dict):
        raise ValueError("EncryptionContext is not a JSON object")  # noqa: TRY004
    for key, value in context.items():
        if not isinstance(value, str):
            raise ValueError(f"EncryptionContext value of {key!r} is not a string")  # noqa: TRY004
    if not context:
        return None
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encrypt_blob(cipher: AESGCM, key_version_id: str, plaintext: bytes, aad: bytes | None) -> bytes:
    """Build a CiphertextBlob: key version id (36 ASCII) ‖ 12-byte IV ‖ AES-256-GCM ciphertext ‖ tag.

    The layout follows Alibaba's KMS transfer SDK (encrypt_transfer_handler.py), whose
    blobs the 2016-01-20 API accepts.
    NOTE: the position of the 16-byte tag (at the end) is inferred because the SDK does not show it.
    """
    iv = os.urandom(GCM_IV_LENGTH)
    return key_version_id.encode("ascii") + iv + cipher.encrypt(iv, plaintext, aad)


def parse_blob(blob: bytes) -> tuple[str, bytes, bytes]:
    """Split a CiphertextBlob into key version id, IV and ciphertext-with-tag."""
    if len(blob) < MIN_BLOB_LENGTH:
        raise BlobFormatError(f"blob is {len(blob)} bytes, shorter than {MIN_BLOB_LENGTH}")
    try:
        key_version_id = blob[:KEY_VERSION_ID_LENGTH].decode("ascii")
    except UnicodeDecodeError:
        raise BlobFormatError("blob does not start with an ASCII key version id") from None
    iv = blob[KEY_VERSION_ID_LENGTH:BLOB_HEADER_LENGTH]
    return key_version_id, iv, blob[BLOB_HEADER_LENGTH:]


def decrypt_blob(cipher: AESGCM, iv: bytes, ciphertext: bytes, aad: bytes | None) -> bytes:
    """Decrypt the ciphertext part of a blob; raise InvalidTag when tag, key or context differ."""
    return cipher.decrypt(iv, ciphertext, aad)


@dataclass(frozen=True)
class MasterKey:
    """The key that encrypts material, wrapping private keys and AccessKey secrets at rest."""

    _cipher: AESGCM
    _binding_key: bytes

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read ``path`` (32 bytes, mode 0600), creating it with fresh random bytes on first start."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, secrets.token_bytes(MASTER_KEY_BYTES))
            finally:
                os.close(fd)
        info = path.stat()
        if info.st_mode & 0o077:
            raise ConfigError(
                f"master key file {path} has mode {info.st_mode & 0o777:04o}; group and others must have no access",
                fix=f"chmod 600 {path}",
            )
        raw = path.read_bytes()
        if len(raw) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"master key file {path} is {len(raw)} bytes, expected {MASTER_KEY_BYTES}",
                fix="restore the file from the data directory it belongs to; a new data directory creates its own",
            )
        binding_key = hmac.new(raw, b"byok-emulator material binding", hashlib.sha256).digest()
        return cls(AESGCM(raw), binding_key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext`` for storage; ``context`` (a row id) is the AAD that pins it to its row."""
        iv = os.urandom(GCM_IV_LENGTH)
        return iv + self._cipher.encrypt(iv, plaintext, context.encode("utf-8"))

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._cipher.decrypt(sealed[:GCM_IV_LENGTH], sealed[GCM_IV_LENGTH:], context.encode("utf-8"))
        except InvalidTag:
            raise ConfigError(
                f"stored value for {context} does not decrypt under the master key",
                fix="use the master.key file that was created with this data directory",
            ) from None

    def material_fingerprint(self, key_id: str, material: bytes) -> bytes:
        """Return HMAC-SHA256 of the material, for the constant-time re-import comparison."""
        return hmac.new(self._binding_key, key_id.encode("ascii") + b"\x00" + material, hashlib.sha256).digest()


def fingerprints_equal(left: bytes, right: bytes) -> bool:
    return hmac.compare_digest(left, right)

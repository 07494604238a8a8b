"""AES-GCM decryption with an HSM key of a blob in the KMS emulator's CiphertextBlob layout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import PyKCS11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byok.emulator.crypto import canonical_encryption_context, encrypt_blob, parse_blob
from byok.errors import ConfigError, HsmError
from byok.hsm import HsmSession, wrap_mechanism_for
from byok.hsm.gcm import decrypt_with_block_cipher

from .conftest import SoftHsmToken

KEY_VERSION_ID = str(uuid.UUID(int=7))


@pytest.fixture
def session(softhsm_token: SoftHsmToken) -> Iterator[HsmSession]:
    with softhsm_token.hsm.session(softhsm_token.pin) as opened:
        yield opened


@pytest.fixture
def hsm_aes_key(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> Iterator[tuple[str, bytes]]:
    """An AES-256 session key on the token and its value, recovered by wrapping it to a test RSA key."""
    aes_label = f"{unique_label}-aes"
    wrap_label = f"{unique_label}-wrap"
    session.generate_aes_key(aes_label, b"gcm-test", token=False)
    session.import_wrapping_public_key(rsa_key.public_key(), wrap_label)
    blob = session.wrap_key(wrap_label, aes_label, wrap_mechanism_for("RSAES_OAEP_SHA_1"))
    value = rsa_key.decrypt(
        blob, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    yield aes_label, value
    session.destroy_objects(aes_label, "CKO_SECRET_KEY")
    session.destroy_objects(wrap_label, "CKO_PUBLIC_KEY")


def test_decrypt_emulator_blob_without_context(
    session: HsmSession, hsm_aes_key: tuple[str, bytes]
) -> None:
    label, value = hsm_aes_key
    blob = encrypt_blob(AESGCM(value), KEY_VERSION_ID, b"binding proof", None)
    key_version_id, iv, rest = parse_blob(blob)

    assert key_version_id == KEY_VERSION_ID
    assert session.decrypt_aes_gcm(label, iv, rest) == b"binding proof"


def test_decrypt_emulator_blob_with_context(
    session: HsmSession, hsm_aes_key: tuple[str, bytes]
) -> None:
    label, value = hsm_aes_key
    aad = canonical_encryption_context('{"b": "2", "a": "1"}')
    assert aad is not None
    blob = encrypt_blob(AESGCM(value), KEY_VERSION_ID, b"with context", aad)
    _, iv, rest = parse_blob(blob)

    assert session.decrypt_aes_gcm(label, iv, rest, aad=aad) == b"with context"


def test_decrypt_wrong_context_fails(session: HsmSession, hsm_aes_key: tuple[str, bytes]) -> None:
    label, value = hsm_aes_key
    blob = encrypt_blob(AESGCM(value), KEY_VERSION_ID, b"with context", b'{"a":"1"}')
    _, iv, rest = parse_blob(blob)

    with pytest.raises(HsmError) as raised:
        session.decrypt_aes_gcm(label, iv, rest, aad=b'{"a":"2"}')

    assert raised.value.operation == "C_Decrypt(CKM_AES_GCM)"
    # SoftHSM2 2.6.1 reports a failed GCM tag check as CKR_GENERAL_ERROR (observed).
    assert raised.value.ckr_name in ("CKR_ENCRYPTED_DATA_INVALID", "CKR_GENERAL_ERROR")
    assert "EncryptionContext" in str(raised.value)
    assert label in str(raised.value)


def test_decrypt_tampered_tag_fails(session: HsmSession, hsm_aes_key: tuple[str, bytes]) -> None:
    label, value = hsm_aes_key
    blob = encrypt_blob(AESGCM(value), KEY_VERSION_ID, b"payload", None)
    _, iv, rest = parse_blob(blob)
    tampered = rest[:-1] + bytes([rest[-1] ^ 1])

    with pytest.raises(HsmError):
        session.decrypt_aes_gcm(label, iv, tampered)


@pytest.mark.parametrize(
    ("iv", "data", "aad"),
    [
        (bytes(11), bytes(32), b""),
        (bytes(12), bytes(15), b""),
        (bytes(12), bytes(32), "text"),
    ],
    ids=["short-iv", "shorter-than-tag", "aad-not-bytes"],
)
def test_decrypt_rejects_invalid_input(
    session: HsmSession, hsm_aes_key: tuple[str, bytes], iv: bytes, data: bytes, aad: object
) -> None:
    label, _ = hsm_aes_key
    with pytest.raises(ConfigError):
        session.decrypt_aes_gcm(label, iv, data, aad=aad)  # type: ignore[arg-type]


def test_generate_aes_128_key(session: HsmSession, unique_label: str) -> None:
    table = session.generate_aes_key(unique_label, b"aes-128", value_len=16, token=False)
    try:
        assert table["CKA_VALUE_LEN"] == 16
        assert table["CKA_KEY_TYPE"] == "CKK_AES"
    finally:
        session.destroy_objects(unique_label, "CKO_SECRET_KEY")


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 100])
@pytest.mark.parametrize("aad", [b"", b'{"a":"1"}', bytes(40)])
def test_gcm_from_block_cipher_matches_aesgcm(length: int, aad: bytes) -> None:
    key = bytes(range(32))
    iv = bytes(range(12))
    plaintext = bytes((7 * index) & 0xFF for index in range(length))
    sealed = AESGCM(key).encrypt(iv, plaintext, aad)

    def encrypt_blocks(blocks: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return encryptor.update(blocks) + encryptor.finalize()

    assert decrypt_with_block_cipher(encrypt_blocks, iv, sealed, aad) == plaintext
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    assert decrypt_with_block_cipher(encrypt_blocks, iv, tampered, aad) is None


def test_gcm_fallback_on_softhsm_key(session: HsmSession, hsm_aes_key: tuple[str, bytes]) -> None:
    # SoftHSM2 has CKM_AES_GCM; this runs the opencryptoki fallback against the same key.
    label, value = hsm_aes_key
    blob = encrypt_blob(AESGCM(value), KEY_VERSION_ID, b"through ECB blocks", b"ctx")
    _, iv, rest = parse_blob(blob)
    key = session._find_one(label, PyKCS11.CKO_SECRET_KEY, "AES key")

    assert session._decrypt_gcm_with_ecb(key, label, iv, rest, b"ctx") == b"through ECB blocks"
    with pytest.raises(HsmError) as raised:
        session._decrypt_gcm_with_ecb(key, label, iv, rest, b"other")
    assert raised.value.ckr_name == "CKR_ENCRYPTED_DATA_INVALID"

"""Unit tests of byok.keyformats, driven by the files in fixtures/keyformats/."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from byok.errors import KeyFormatError, KeyMaterialLengthError
from byok.keyformats import (
    KEY_MATERIAL_LENGTHS,
    PKCS1_RSA_PUBLIC_KEY,
    SUBJECT_PUBLIC_KEY_INFO,
    check_key_material_length,
    decode_blob,
    encode_key_material,
    identify_wrapping_public_key,
    load_import_token,
    load_wrapping_public_key,
    public_key_to_spki_base64,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keyformats"
FIXTURES_README = FIXTURES.parent / "README.md"

# Every form of the one wrapping key, with the form text the parser must report.
ACCEPTED_PUBLIC_KEYS = {
    "spki-base64-single-line.txt": "base64 SubjectPublicKeyInfo",
    "spki-base64-trailing-newline.txt": "base64 SubjectPublicKeyInfo",
    "spki-base64-wrapped-64.txt": "base64 SubjectPublicKeyInfo, line-wrapped",
    "spki-base64-wrapped-76.txt": "base64 SubjectPublicKeyInfo, line-wrapped",
    "spki-base64-crlf.txt": "base64 SubjectPublicKeyInfo, line-wrapped",
    "spki-base64-with-bom.txt": "base64 SubjectPublicKeyInfo, with a UTF-8 byte order mark",
    "spki.der": "DER SubjectPublicKeyInfo",
    "spki.pem": "PEM SubjectPublicKeyInfo",
    "spki-with-explanatory-text.pem": "PEM SubjectPublicKeyInfo",
    "spki-under-rsa-public-key-label.pem": "PEM SubjectPublicKeyInfo under an RSA PUBLIC KEY label",
    "spki-certutil-armour.txt": "PEM SubjectPublicKeyInfo under a CERTIFICATE label",
    "pkcs1.pem": "PEM PKCS#1 RSAPublicKey",
    "pkcs1-under-public-key-label.pem": "PEM PKCS#1 RSAPublicKey under a PUBLIC KEY label",
    "pkcs1.der": "DER PKCS#1 RSAPublicKey",
    "pkcs1-base64.txt": "base64 PKCS#1 RSAPublicKey",
}

# Rejected inputs, with a pattern the error message must match.
REJECTED_PUBLIC_KEYS = {
    "empty.txt": r"^wrapping public key is empty \(0 bytes\)",
    "whitespace-only.txt": r"is empty \(it contains only whitespace\)",
    "pem-empty-body.pem": r"PEM under a PUBLIC KEY label whose body decodes to zero bytes",
    "pem-missing-end-line.pem": r"no matching END line",
    "pem-two-blocks.pem": r"contains 2 PEM blocks",
    "base64-invalid-alphabet.txt": r"neither PEM, DER nor valid base64 .* position 101 is outside the RFC 4648",
    "spki-base64-non-breaking-space.txt": r"position 201 is outside the RFC 4648 base64 alphabet",
    "spki-base64url.txt": r"belongs to the base64url alphabet",
    "base64-missing-padding.txt": r"391 base64 characters, which is not a multiple of 4",
    "spki-hex.txt": r"base64 text that looks like hexadecimal, 441 bytes\) is not a valid DER",
    "spki-pem-base64-encoded.txt": r"decodes to PEM text, so it was encoded twice",
    "binary-not-der.bin": r"\(64 bytes\) is binary data that is not DER",
    "spki-truncated.der": r"binary DER, 200 bytes\) .* truncated .* declares 290 content bytes, but only 196",
    "spki-trailing-garbage.der": r"4 trailing bytes after the DER structure, which ends at byte 294",
    "pkcs1-modulus-negative.der": r"\(DER PKCS#1 RSAPublicKey\) is malformed, because its modulus is a negative",
    "rsa-1024-spki.der": r"\(DER SubjectPublicKeyInfo\) is RSA-1024, but .* 2048 bits",
    "rsa-3072-spki.der": r"is RSA-3072, but",
    "rsa-exponent-3-spki.der": r"has public exponent 3, but KMS wrapping keys use 65537",
    "ec-p256-spki.pem": r"\(PEM SubjectPublicKeyInfo\) is an EC public key on curve secp256r1, but",
    "ec-sm2-spki.der": r"is an EC public key on curve SM2, but",
    "ed25519-spki.pem": r"is an Ed25519 public key, but",
    "rsa-private-key-pkcs8.pem": r"^a private key was supplied \(PEM PKCS#8 PrivateKeyInfo\)",
    "rsa-private-key-pkcs1.pem": r"^a private key was supplied \(PEM PKCS#1 RSAPrivateKey\)",
    "rsa-private-key-pkcs8-base64.txt": r"^a private key was supplied \(base64 PKCS#8 PrivateKeyInfo\)",
    "certificate-self-signed.pem": r"^a certificate was supplied \(PEM X\.509 certificate\)",
}

IMPORT_TOKEN_FIXTURES = {
    "import-token-single-line-1500.txt",
    "import-token-wrapped-64.txt",
    "import-token-url-encoded.txt",
    "import-token-missing-padding.txt",
}


def read_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def expected_fingerprint() -> str:
    return hashlib.sha256(read_fixture("spki.der")).hexdigest()


def content_fragments(content: bytes, width: int = 16) -> set[str]:
    """Return every ``width``-character window of the content as text, base64 and hex."""
    representations = [base64.b64encode(content).decode("ascii"), content.hex()]
    try:
        representations.append(re.sub(r"\s+", "", content.decode("utf-8")))
    except UnicodeDecodeError:
        pass
    fragments = set()
    for representation in representations:
        for start in range(max(len(representation) - width + 1, 0)):
            fragments.add(representation[start : start + width])
    return fragments


def assert_no_content_in(error: KeyFormatError, content: bytes) -> None:
    text = error.diagnostics()
    leaked = [fragment for fragment in content_fragments(content) if fragment in text]
    assert leaked == [], f"message quotes the input: {leaked[:3]}"


# --- wrapping public key ------------------------------------------------------------------


@pytest.mark.parametrize("name, form", sorted(ACCEPTED_PUBLIC_KEYS.items()))
def test_public_key_accepted_as_bytes(name: str, form: str) -> None:
    wrapping_key = identify_wrapping_public_key(read_fixture(name))

    assert wrapping_key.form == form
    assert wrapping_key.fingerprint_sha256 == expected_fingerprint()
    assert wrapping_key.key_size == 2048
    assert wrapping_key.public_exponent == 65537
    assert wrapping_key.spki_der == read_fixture("spki.der")
    assert form.startswith(f"{wrapping_key.encoding} {wrapping_key.structure}")


@pytest.mark.parametrize(
    "name, form",
    sorted(
        (name, form) for name, form in ACCEPTED_PUBLIC_KEYS.items() if not name.endswith(".der")
    ),
)
def test_public_key_accepted_as_str(name: str, form: str) -> None:
    wrapping_key = identify_wrapping_public_key(read_fixture(name).decode("utf-8"))

    assert wrapping_key.form == form
    assert wrapping_key.fingerprint_sha256 == expected_fingerprint()


@pytest.mark.parametrize("name, pattern", sorted(REJECTED_PUBLIC_KEYS.items()))
def test_public_key_rejected(name: str, pattern: str) -> None:
    content = read_fixture(name)

    with pytest.raises(KeyFormatError, match=pattern) as caught:
        identify_wrapping_public_key(content)

    assert caught.value.fix, "every rejection suggests a fix"
    assert_no_content_in(caught.value, content)


@pytest.mark.parametrize(
    "data, pattern",
    [
        ("-----BEGIN PUBLIC KEY\nMIIB\n", "no complete PEM BEGIN line"),
        (b"\x30\x80\x02\x01\x00", "indefinite length at byte 0"),
        (
            b"\x30\x06\x02\x01\x01\x04\x01\x00",
            r"^a private key was supplied \(DER SEC 1 ECPrivateKey\)",
        ),
        (b"\x30\x03\x01\x01\xff", "neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey"),
        (
            "-----BEGIN X-509 THING-----\nAAAA\n-----END X-509 THING-----\n",
            r"PEM body under an X-509 THING label, 3 bytes\) .* SEQUENCE tag",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PUBLIC KEY-----\n",
            "private key was supplied .* encryption header",
        ),
    ],
    ids=[
        "broken-begin-line",
        "ber-indefinite",
        "sec1",
        "unknown-sequence",
        "hyphen-label",
        "proc-type",
    ],
)
def test_public_key_rejected_inline(data: bytes | str, pattern: str) -> None:
    with pytest.raises(KeyFormatError, match=pattern):
        identify_wrapping_public_key(data)


@pytest.mark.parametrize("name", ["spki.der", "pkcs1.der"])
def test_public_key_damage_raises_key_format_error(name: str) -> None:
    """Every truncation and every single-byte change either parses or raises KeyFormatError."""
    der = read_fixture(name)
    damaged = [der[:length] for length in range(len(der))]
    damaged += [
        der[:index] + bytes([der[index] ^ 0xFF]) + der[index + 1 :] for index in range(len(der))
    ]

    for data in damaged:
        try:
            identify_wrapping_public_key(data)
        except KeyFormatError:
            pass


def test_public_key_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        load_wrapping_public_key(b"")


def test_private_key_message_says_public_only() -> None:
    with pytest.raises(KeyFormatError) as caught:
        identify_wrapping_public_key(read_fixture("rsa-private-key-pkcs8.pem"))

    assert "supply the public key only" in caught.value.diagnostics()


def test_public_key_helpers_match_fixtures() -> None:
    wrapping_key = identify_wrapping_public_key(read_fixture("pkcs1.der"))

    assert wrapping_key.modulus.bit_length() == 2048
    assert wrapping_key.spki_base64 == read_fixture("spki-base64-single-line.txt").decode("ascii")
    assert wrapping_key.spki_pem == read_fixture("spki.pem").decode("ascii")


@pytest.mark.parametrize(
    "name, encoding, structure",
    [
        ("spki.der", "DER", SUBJECT_PUBLIC_KEY_INFO),
        ("pkcs1-under-public-key-label.pem", "PEM", PKCS1_RSA_PUBLIC_KEY),
        ("spki-base64-crlf.txt", "base64", SUBJECT_PUBLIC_KEY_INFO),
    ],
)
def test_public_key_encoding_and_structure(name: str, encoding: str, structure: str) -> None:
    wrapping_key = identify_wrapping_public_key(read_fixture(name))

    assert wrapping_key.encoding == encoding
    assert wrapping_key.structure == structure


def test_pkcs1_numbers_agree_with_cryptography() -> None:
    reference = serialization.load_der_public_key(read_fixture("pkcs1.der"))

    wrapping_key = identify_wrapping_public_key(read_fixture("pkcs1.der"))

    assert wrapping_key.key.public_numbers() == reference.public_numbers()


def test_load_returns_cryptography_key() -> None:
    key = load_wrapping_public_key(bytearray(read_fixture("spki.der")))

    assert isinstance(key, RSAPublicKey)
    assert key.key_size == 2048


def test_public_key_accepts_memoryview() -> None:
    wrapping_key = identify_wrapping_public_key(memoryview(read_fixture("spki.pem")))

    assert wrapping_key.form == "PEM SubjectPublicKeyInfo"


def test_public_key_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="bytes or str, not int"):
        identify_wrapping_public_key(42)  # type: ignore[arg-type]


def test_public_key_bom_only_is_empty() -> None:
    with pytest.raises(KeyFormatError, match="is empty"):
        identify_wrapping_public_key(b"\xef\xbb\xbf")


def test_public_key_logs_detected_form(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="byok.keyformats")

    identify_wrapping_public_key(read_fixture("spki-base64-wrapped-64.txt"))

    messages = [
        record.getMessage() for record in caplog.records if record.name == "byok.keyformats"
    ]
    assert any("base64 SubjectPublicKeyInfo, line-wrapped" in message for message in messages)
    assert any(expected_fingerprint() in message for message in messages)


def test_spki_base64_round_trip() -> None:
    key = load_wrapping_public_key(read_fixture("pkcs1.pem"))

    encoded = public_key_to_spki_base64(key)

    assert encoded == read_fixture("spki-base64-single-line.txt").decode("ascii")
    assert identify_wrapping_public_key(encoded).fingerprint_sha256 == expected_fingerprint()


def test_spki_base64_rejects_non_key() -> None:
    with pytest.raises(TypeError, match="RSAPublicKey"):
        public_key_to_spki_base64("not a key")  # type: ignore[arg-type]


# --- import token -------------------------------------------------------------------------


def single_line_token() -> str:
    return read_fixture("import-token-single-line-1500.txt").decode("ascii").strip()


def test_import_token_single_line_1500() -> None:
    token = load_import_token(read_fixture("import-token-single-line-1500.txt"))

    assert len(token) == 1500
    assert token == single_line_token()
    assert "\n" not in token


def test_import_token_wrapped_is_joined() -> None:
    token = load_import_token(read_fixture("import-token-wrapped-64.txt").decode("ascii"))

    assert token == single_line_token()


def test_import_token_crlf_and_spaces() -> None:
    original = single_line_token()
    pasted = (
        "  " + "\r\n".join(original[index : index + 76] for index in range(0, 1500, 76)) + " \r\n"
    )

    assert load_import_token(pasted) == original


@pytest.mark.parametrize(
    "name, pattern",
    [
        (
            "import-token-url-encoded.txt",
            r"import token \(1597 characters\) is not valid base64, because .* outside the RFC 4648",
        ),
        (
            "import-token-missing-padding.txt",
            r"1499 base64 characters, which is not a multiple of 4",
        ),
    ],
)
def test_import_token_rejected(name: str, pattern: str) -> None:
    content = read_fixture(name)

    with pytest.raises(KeyFormatError, match=pattern) as caught:
        load_import_token(content)

    assert_no_content_in(caught.value, content)


@pytest.mark.parametrize("data", ["", " \r\n\t", b"", b"\xef\xbb\xbf\n"])
def test_import_token_empty(data: bytes | str) -> None:
    with pytest.raises(KeyFormatError, match="^import token is empty"):
        load_import_token(data)


def test_import_token_binary_rejected() -> None:
    with pytest.raises(KeyFormatError, match="byte at offset 2 is not ASCII"):
        load_import_token(b"AA\xff\xfe")


def test_import_token_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="byok.keyformats")

    load_import_token(read_fixture("import-token-wrapped-64.txt"))

    assert "1500 base64 characters on 24 line(s)" in caplog.text
    assert single_line_token()[:16] not in caplog.text


# --- wrapped key material -----------------------------------------------------------------

BLOB = bytes(range(256))


def test_encode_key_material_256_bytes() -> None:
    encoded = encode_key_material(BLOB)

    assert len(encoded) == 344
    assert "\n" not in encoded
    assert "\r" not in encoded
    assert base64.b64decode(encoded) == BLOB


@pytest.mark.parametrize("length", [0, 255, 257, 32])
def test_encode_key_material_wrong_length(length: int) -> None:
    pattern = (
        rf"^EncryptedKeyMaterial is {length} bytes, but .* RSA-2048 public key is exactly 256 bytes"
    )

    with pytest.raises(KeyFormatError, match=pattern):
        encode_key_material(BLOB[:length] if length <= 256 else BLOB + b"\x00")


def test_encode_key_material_plaintext_hint() -> None:
    with pytest.raises(KeyFormatError) as caught:
        encode_key_material(bytes(32))

    assert "unwrapped AES key" in caught.value.diagnostics()


def test_encode_key_material_other_key_size() -> None:
    assert base64.b64decode(encode_key_material(bytes(384), wrapping_key_size_bits=3072)) == bytes(
        384
    )


def test_encode_key_material_rejects_str() -> None:
    with pytest.raises(TypeError, match="blob must be bytes"):
        encode_key_material("AAAA")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "encode",
    [
        lambda blob: base64.b64encode(blob).decode("ascii"),
        lambda blob: base64.encodebytes(blob).decode("ascii"),
        lambda blob: base64.encodebytes(blob).replace(b"\n", b"\r\n"),
        lambda blob: "\n" + base64.b64encode(blob).decode("ascii") + "\n\n",
    ],
    ids=["single-line", "wrapped-76", "wrapped-crlf-bytes", "surrounding-newlines"],
)
def test_decode_blob_accepted(encode) -> None:
    assert decode_blob(encode(BLOB)) == BLOB


def test_decode_blob_round_trip() -> None:
    assert decode_blob(encode_key_material(BLOB)) == BLOB


@pytest.mark.parametrize("length", [1, 255, 257])
def test_decode_blob_wrong_length(length: int) -> None:
    blob = (BLOB * 2)[:length]
    pattern = rf"^EncryptedKeyMaterial decodes to {length} bytes, but 256 bytes were expected"

    with pytest.raises(KeyFormatError, match=pattern):
        decode_blob(base64.b64encode(blob))


@pytest.mark.parametrize("data", ["", "\r\n", b"   "])
def test_decode_blob_empty(data: bytes | str) -> None:
    with pytest.raises(KeyFormatError, match=r"^EncryptedKeyMaterial is empty \(0 bytes\)"):
        decode_blob(data)


def test_decode_blob_names_field() -> None:
    with pytest.raises(KeyFormatError, match=r"^CiphertextBlob decodes to 3 bytes, but 16 bytes"):
        decode_blob("AAAA", expected_length=16, field="CiphertextBlob")


def test_decode_blob_any_length() -> None:
    assert decode_blob("AAAA", expected_length=None) == b"\x00\x00\x00"


def test_decode_blob_double_encoded() -> None:
    twice = base64.b64encode(base64.b64encode(BLOB))

    with pytest.raises(KeyFormatError, match="decodes to 344 bytes, .* encoded twice"):
        decode_blob(twice)


def test_decode_blob_raw_binary() -> None:
    with pytest.raises(
        KeyFormatError, match="not base64 text: the byte at offset 128 is not ASCII"
    ):
        decode_blob(BLOB)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("QR==", "non-zero padding bits"),
        ("QQ==QQ==", "padding appears before the end"),
        ("QQ===", "not a multiple of 4"),
        ("QQ*=", "position 3 is outside the RFC 4648 base64 alphabet"),
        ("QQ==\nQ*==", "line 2, column 2 is outside"),
    ],
)
def test_decode_blob_strict_base64(text: str, pattern: str) -> None:
    with pytest.raises(KeyFormatError, match=pattern):
        decode_blob(text, expected_length=None)


# --- key material length ------------------------------------------------------------------


def test_key_material_lengths() -> None:
    assert KEY_MATERIAL_LENGTHS == {"Aliyun_AES_256": 32, "Aliyun_SM4": 16}


def test_key_material_32_bytes_accepted() -> None:
    check_key_material_length(32, source="CKA_VALUE_LEN")


def test_sm4_material_16_bytes_accepted() -> None:
    check_key_material_length(16, "Aliyun_SM4", source="CKA_VALUE_LEN")


@pytest.mark.parametrize("length", [16, 24, 256, 0])
def test_key_material_wrong_length(length: int) -> None:
    with pytest.raises(KeyMaterialLengthError) as caught:
        check_key_material_length(length, "Aliyun_AES_256", source="CKA_VALUE_LEN")

    message = str(caught.value)
    assert f"CKA_VALUE_LEN is {length} bytes ({length * 8} bits)" in message
    assert "32 bytes (256 bits)" in message
    assert "Aliyun_AES_256" in message
    assert caught.value.expected_bytes == 32
    assert caught.value.actual_bytes == length
    assert isinstance(caught.value, KeyFormatError)


def test_sm4_material_32_bytes_rejected() -> None:
    with pytest.raises(KeyMaterialLengthError, match=r"16 bytes \(128 bits\)"):
        check_key_material_length(32, "Aliyun_SM4", source="key material")


def test_key_material_unknown_spec() -> None:
    with pytest.raises(
        KeyFormatError, match="key spec 'Aliyun_AES_128' has no known key material length"
    ):
        check_key_material_length(16, "Aliyun_AES_128", source="key material")


def test_key_material_length_rejects_bool() -> None:
    with pytest.raises(TypeError, match="must be an int"):
        check_key_material_length(True, source="key material")  # type: ignore[arg-type]


# --- fixtures -----------------------------------------------------------------------------


def fixture_names() -> set[str]:
    return {path.name for path in FIXTURES.iterdir() if path.is_file() and path.suffix != ".py"}


def test_every_fixture_has_a_test() -> None:
    covered = set(ACCEPTED_PUBLIC_KEYS) | set(REJECTED_PUBLIC_KEYS) | IMPORT_TOKEN_FIXTURES

    assert fixture_names() - covered == set()
    assert covered - fixture_names() == set()


def test_every_fixture_is_documented() -> None:
    readme = FIXTURES_README.read_text(encoding="utf-8")
    section = readme.split("## keyformats/", 1)[1].split("\n## ", 1)[0]

    undocumented = sorted(name for name in fixture_names() if f"`{name}`" not in section)
    assert undocumented == []


@pytest.mark.slow
def test_fixtures_are_reproducible() -> None:
    result = subprocess.run(
        [sys.executable, str(FIXTURES / "make_fixtures.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr

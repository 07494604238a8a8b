"""Public key import, AES key generation, attribute reads and wrapping on a real SoftHSM2 token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import PyKCS11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from byok.errors import ConfigError, HsmError
from byok.hsm import Hsm, HsmSession, WrapMechanism, wrap_mechanism_for

from .conftest import SoftHsmToken


@pytest.fixture
def session(softhsm_token: SoftHsmToken) -> Iterator[HsmSession]:
    with softhsm_token.hsm.session(softhsm_token.pin) as opened:
        yield opened


def kcv(key: bytes) -> bytes:
    """Key check value: the first 3 bytes of AES-ECB over one zero block (PKCS#11 CKA_CHECK_VALUE)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3]


@pytest.mark.parametrize("wrap_attribute", ["template", "set-after-import"])
def test_import_public_key_reads_back_wrap(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str, wrap_attribute: str
) -> None:
    table = session.import_wrapping_public_key(
        rsa_key.public_key(), unique_label, wrap_attribute=wrap_attribute
    )

    assert table["CKA_WRAP"] is True
    assert table["CKA_ENCRYPT"] is True
    assert table["CKA_VERIFY"] is False
    assert table["CKA_TOKEN"] is False
    assert table["CKA_PRIVATE"] is False
    assert table["CKA_MODULUS_BITS"] == 2048
    assert table["CKA_LABEL"] == unique_label
    assert table["CKA_CLASS"] == "CKO_PUBLIC_KEY"
    assert session.read_attributes(unique_label, "CKO_PUBLIC_KEY", ["CKA_WRAP"]) == {
        "CKA_WRAP": True
    }


def test_import_public_key_duplicate_label(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    session.import_wrapping_public_key(rsa_key.public_key(), unique_label)

    with pytest.raises(HsmError) as raised:
        session.import_wrapping_public_key(rsa_key.public_key(), unique_label)

    assert "already exists" in raised.value.message
    assert "destroy_objects" in raised.value.fix


def test_generate_aes_key_read_back(session: HsmSession, unique_label: str) -> None:
    table = session.generate_aes_key(unique_label, b"\x10\x20")

    assert table["CKA_VALUE_LEN"] == 32
    assert table["CKA_TOKEN"] is True
    assert table["CKA_PRIVATE"] is True
    assert table["CKA_SENSITIVE"] is True
    assert table["CKA_EXTRACTABLE"] is True
    assert table["CKA_LOCAL"] is True
    assert table["CKA_ALWAYS_SENSITIVE"] is True
    assert table["CKA_NEVER_EXTRACTABLE"] is False
    assert table["CKA_KEY_GEN_MECHANISM"] == "CKM_AES_KEY_GEN"
    assert len(bytes.fromhex(table["CKA_CHECK_VALUE"])) == 3
    assert table["CKA_ID"] == "1020"
    for name in ("CKA_WRAP", "CKA_UNWRAP", "CKA_SIGN", "CKA_VERIFY", "CKA_DERIVE"):
        assert table[name] is False, name
    assert table["CKA_ENCRYPT"] is True
    assert table["CKA_DECRYPT"] is True


def test_generate_aes_key_duplicate_label(session: HsmSession, unique_label: str) -> None:
    session.generate_aes_key(unique_label, b"\x01", token=False)

    with pytest.raises(HsmError) as raised:
        session.generate_aes_key(unique_label, b"\x02", token=False)

    assert "already exists" in raised.value.message
    assert "new label" in raised.value.fix


def test_value_read_is_sensitive(session: HsmSession, unique_label: str) -> None:
    session.generate_aes_key(unique_label, b"\x01", token=False)

    assert (
        session.attribute_ckr(unique_label, "CKO_SECRET_KEY", "CKA_VALUE")
        == PyKCS11.CKR_ATTRIBUTE_SENSITIVE
    )
    assert (
        session.attribute_ckr(unique_label, "CKO_SECRET_KEY", "CKA_CHECK_VALUE") == PyKCS11.CKR_OK
    )
    with pytest.raises(HsmError) as raised:
        session.read_attributes(unique_label, "CKO_SECRET_KEY", ["CKA_VALUE"])
    assert raised.value.ckr_name == "CKR_ATTRIBUTE_SENSITIVE"


def test_unsupported_attribute_reads_none(session: HsmSession, unique_label: str) -> None:
    session.generate_aes_key(unique_label, b"\x01", token=False)

    table = session.read_attributes(
        unique_label, "CKO_SECRET_KEY", ["CKA_MODULUS", "CKA_VALUE_LEN"]
    )

    assert table == {"CKA_MODULUS": None, "CKA_VALUE_LEN": 32}


@pytest.mark.parametrize(
    ("algorithm", "rsa_padding"),
    [
        (
            "RSAES_OAEP_SHA_1",
            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        ),
        ("RSAES_PKCS1_V1_5", padding.PKCS1v15()),
    ],
)
def test_wrap_unwraps_to_check_value(
    session: HsmSession,
    rsa_key: rsa.RSAPrivateKey,
    unique_label: str,
    algorithm: str,
    rsa_padding: padding.AsymmetricPadding,
) -> None:
    wrapping_label = f"{unique_label}-wrap"
    aes_label = f"{unique_label}-aes"
    session.import_wrapping_public_key(rsa_key.public_key(), wrapping_label)
    table = session.generate_aes_key(aes_label, b"\x01")

    blob = session.wrap_key(wrapping_label, aes_label, wrap_mechanism_for(algorithm))

    assert len(blob) == 256
    material = rsa_key.decrypt(blob, rsa_padding)
    assert len(material) == 32
    assert kcv(material).hex() == table["CKA_CHECK_VALUE"]


def test_wrap_oaep_sha256_rejected_by_softhsm(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    session.import_wrapping_public_key(rsa_key.public_key(), f"{unique_label}-wrap")
    session.generate_aes_key(f"{unique_label}-aes", b"\x01", token=False)

    with pytest.raises(HsmError) as raised:
        session.wrap_key(
            f"{unique_label}-wrap", f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_256")
        )

    assert raised.value.ckr_name == "CKR_ARGUMENTS_BAD"
    assert raised.value.operation == "C_WrapKey"
    assert "hashAlg=CKM_SHA256" in raised.value.message
    assert "mgf=CKG_MGF1_SHA256" in raised.value.message
    assert "ulSourceDataLen=0" in raised.value.message
    assert "RSAES_OAEP_SHA_1" in raised.value.fix


def test_wrap_without_cka_wrap_translated(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    wrapping_label = f"{unique_label}-wrap"
    session.import_wrapping_public_key(rsa_key.public_key(), wrapping_label)
    session.set_attribute(wrapping_label, "CKO_PUBLIC_KEY", "CKA_WRAP", False)
    session.generate_aes_key(f"{unique_label}-aes", b"\x01", token=False)

    with pytest.raises(HsmError) as raised:
        session.wrap_key(
            wrapping_label, f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_1")
        )

    assert raised.value.ckr_name == "CKR_KEY_FUNCTION_NOT_PERMITTED"
    assert raised.value.ckr == 0x68
    assert "does not have CKA_WRAP=true" in raised.value.message
    assert repr(wrapping_label) in raised.value.message


def test_wrap_non_extractable_translated(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    session.import_wrapping_public_key(rsa_key.public_key(), f"{unique_label}-wrap")
    table = session.generate_aes_key(f"{unique_label}-aes", b"\x01", token=False, extractable=False)
    assert table["CKA_NEVER_EXTRACTABLE"] is True

    with pytest.raises(HsmError) as raised:
        session.wrap_key(
            f"{unique_label}-wrap", f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_1")
        )

    assert raised.value.ckr_name == "CKR_KEY_UNEXTRACTABLE"
    assert "non-extractable" in raised.value.message
    assert "CKA_EXTRACTABLE=true" in raised.value.fix


def test_wrap_raw_rsa_rejected_before_call(session: HsmSession, unique_label: str) -> None:
    raw = WrapMechanism(
        algorithm="raw", mechanism=PyKCS11.CKM_RSA_X_509, mechanism_name="CKM_RSA_X_509"
    )

    with pytest.raises(HsmError) as raised:
        session.wrap_key(f"{unique_label}-wrap", f"{unique_label}-aes", raw)

    assert raised.value.ckr is None
    assert "CKM_RSA_X_509" in raised.value.message


def test_wrap_missing_label_named(session: HsmSession, unique_label: str) -> None:
    session.generate_aes_key(f"{unique_label}-aes", b"\x01", token=False)

    with pytest.raises(HsmError) as raised:
        session.wrap_key(
            f"{unique_label}-absent", f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_1")
        )

    assert f"'{unique_label}-absent'" in raised.value.message
    assert "CKO_PUBLIC_KEY" in raised.value.message


def test_find_and_destroy_objects(
    session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    session.generate_aes_key(unique_label, b"\xab\xcd", token=False)
    session.import_wrapping_public_key(rsa_key.public_key(), unique_label)

    found = session.find_objects(label=unique_label)
    secret_keys = session.find_objects(label=unique_label, object_class="CKO_SECRET_KEY")

    assert sorted(summary["class"] for summary in found) == ["CKO_PUBLIC_KEY", "CKO_SECRET_KEY"]
    assert secret_keys == [
        {
            "label": unique_label,
            "class": "CKO_SECRET_KEY",
            "key_type": "CKK_AES",
            "id": "abcd",
            "token": False,
        }
    ]
    assert session.destroy_objects(unique_label, "CKO_SECRET_KEY") == 1
    assert session.destroy_objects(unique_label, "CKO_SECRET_KEY") == 0
    assert [summary["class"] for summary in session.find_objects(label=unique_label)] == [
        "CKO_PUBLIC_KEY"
    ]


def test_set_attribute_rejects_non_bool(session: HsmSession, unique_label: str) -> None:
    session.generate_aes_key(unique_label, b"\x01", token=False)

    with pytest.raises(ConfigError) as raised:
        session.set_attribute(unique_label, "CKO_SECRET_KEY", "CKA_ENCRYPT", 1)

    assert "True or False" in raised.value.message


def test_errors_never_contain_pin(
    softhsm_token: SoftHsmToken, session: HsmSession, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    session.import_wrapping_public_key(rsa_key.public_key(), f"{unique_label}-wrap")
    session.generate_aes_key(f"{unique_label}-aes", b"\x01", token=False, extractable=False)
    attempts = [
        lambda: session.wrap_key(
            f"{unique_label}-wrap", f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_1")
        ),
        lambda: session.wrap_key(
            f"{unique_label}-wrap", f"{unique_label}-aes", wrap_mechanism_for("RSAES_OAEP_SHA_256")
        ),
        lambda: session.read_attributes(f"{unique_label}-aes", "CKO_SECRET_KEY", ["CKA_VALUE"]),
        lambda: session.generate_aes_key(f"{unique_label}-aes", b"\x01"),
    ]
    pin = softhsm_token.pin.reveal()

    for attempt in attempts:
        with pytest.raises(HsmError) as raised:
            attempt()
        assert pin not in raised.value.diagnostics()
        assert pin not in repr(raised.value)


def test_import_defaults_from_profile(
    softhsm_token: SoftHsmToken, rsa_key: rsa.RSAPrivateKey, unique_label: str
) -> None:
    settings = replace(
        softhsm_token.settings, public_key_token_object=True, wrap_attribute="set-after-import"
    )
    hsm = Hsm.open(settings, softhsm_token.state_dir)

    with hsm.session(softhsm_token.pin) as session:
        table = session.import_wrapping_public_key(rsa_key.public_key(), unique_label)
        assert table["CKA_TOKEN"] is True
        assert table["CKA_WRAP"] is True
        assert session.destroy_objects(unique_label, "CKO_PUBLIC_KEY") == 1
